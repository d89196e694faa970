//! The one stored time: [`StoredTime`], a point in time as a column holds it.
//!
//! Written only as `timefmt::rfc3339_micros` (RFC 3339, UTC, microseconds, so text order
//! is time order), read back strictly: a column whose text is not a time is an error
//! naming the column ([`super::StoreError::BadValue`]), never 1970. The scheduler and
//! booking compare stored times; a time that could silently read as 1970 would fire a
//! job at once or free a held place. This module must never hand out a default time.

use chrono::{DateTime, SubsecRound, Utc};
use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use super::column::{read, unreadable};
use crate::timefmt;

/// A point in time as medcall stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredTime(DateTime<Utc>);

impl StoredTime {
    /// Now, to the microsecond: what is in memory is exactly what the column will hold,
    /// so a value answered right after a write equals the one read back later.
    pub fn now() -> StoredTime {
        StoredTime(Utc::now().trunc_subsecs(6))
    }

    pub fn at(time: DateTime<Utc>) -> StoredTime {
        StoredTime(time)
    }

    pub fn time(self) -> DateTime<Utc> {
        self.0
    }

    /// The column's text.
    pub fn text(self) -> String {
        timefmt::rfc3339_micros(&self.0)
    }
}

impl From<DateTime<Utc>> for StoredTime {
    fn from(time: DateTime<Utc>) -> StoredTime {
        StoredTime(time)
    }
}

impl From<StoredTime> for DateTime<Utc> {
    fn from(t: StoredTime) -> DateTime<Utc> {
        t.0
    }
}

impl ToSql for StoredTime {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.text()))
    }
}

impl FromSql for StoredTime {
    /// Any RFC 3339 text is read (rows written before every time went through `timefmt`
    /// may carry `+00:00` and nanoseconds: the `api_keys.created_at` of old databases).
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<StoredTime> {
        let text = value.as_str()?;
        timefmt::parse_rfc3339(text)
            .map(StoredTime)
            .ok_or_else(|| unreadable(text, "an RFC 3339 time"))
    }
}

/// The time in column `idx` of `row`, which must hold one.
pub(super) fn time(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    read::<StoredTime>(row, idx).map(StoredTime::time)
}

/// The time in column `idx` of `row`, or `None` for NULL.
pub(super) fn time_opt(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    Ok(read::<Option<StoredTime>>(row, idx)?.map(StoredTime::time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_whole_microseconds_and_round_trips_through_its_text() {
        let t = StoredTime::now();
        assert_eq!(t.time().timestamp_subsec_nanos() % 1000, 0);
        assert_eq!(timefmt::parse_rfc3339(&t.text()).map(StoredTime), Some(t));
    }

    fn read_back(text: &str) -> rusqlite::Result<StoredTime> {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.query_row("SELECT ?1 AS at", [text], |r| r.get(0))
    }

    #[test]
    fn stored_times_are_written_in_the_one_form_and_bad_text_is_refused() {
        let t = StoredTime::at(DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap());
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let written: String = c.query_row("SELECT ?1", [t], |r| r.get(0)).unwrap();
        assert_eq!(written, "2027-01-15T08:00:00.123456Z");
        // Rows of old databases (`api_keys.created_at` was `to_rfc3339()`) still read.
        assert_eq!(read_back("2027-01-15T08:00:00.123456789+00:00").unwrap(), t);
        assert_eq!(read_back("2027-01-15T11:00:00.123456789+03:00").unwrap(), t);
        for bad in [
            "",
            "yesterday",
            "2027-01-15",
            "2027-01-15 08:00:00",
            "1970-01-01T00:00:00",
        ] {
            let e = read_back(bad).unwrap_err();
            assert!(e.to_string().contains("RFC 3339"), "{bad:?}: {e}");
        }
    }
}
