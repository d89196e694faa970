//! The one text form of a point in time that medcall stores and serves: RFC 3339 in UTC
//! with microseconds (`2026-11-22T09:07:54.539565Z`). Every time column holds it, so
//! text order is time order.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// `t` as RFC 3339 UTC with microseconds. Written by hand because it runs for every
/// timeline entry, and chrono's general formatter costs several times more; the output is
/// byte-for-byte chrono's (a test holds it to that).
pub fn rfc3339_micros(t: &DateTime<Utc>) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339_micros(&mut out, t);
    out
}

/// Appends `t` as [`rfc3339_micros`] writes it.
pub fn push_rfc3339_micros(out: &mut String, t: &DateTime<Utc>) {
    let date = t.date_naive();
    let year = date.year();
    let nanos = t.nanosecond();
    // Years chrono would sign or widen, and leap seconds, take the general path.
    let Ok(year @ 0..=9999) = u32::try_from(year) else {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        return;
    };
    if nanos >= 1_000_000_000 {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        return;
    }
    let secs = t.num_seconds_from_midnight();
    // The text is built in place, then appended at once: one capacity check, not 27.
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text, 0, year, 4);
    put_digits(&mut text, 5, date.month(), 2);
    put_digits(&mut text, 8, date.day(), 2);
    put_digits(&mut text, 11, secs / 3600, 2);
    put_digits(&mut text, 14, secs / 60 % 60, 2);
    put_digits(&mut text, 17, secs % 60, 2);
    put_digits(&mut text, 20, nanos / 1000, 6);
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Writes `n` in decimal into `text[at..at + width]`, zero-padded (higher digits are
/// dropped).
fn put_digits(text: &mut [u8], at: usize, mut n: u32, width: usize) {
    if let Some(slots) = text.get_mut(at..at + width) {
        for slot in slots.iter_mut().rev() {
            // `n % 10` is below 10, so the digit is ASCII.
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
}

/// Reads the stored form back (any RFC 3339 offset is accepted).
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_exactly_as_chrono_writes_them() {
        let cases = [
            DateTime::from_timestamp(0, 0).unwrap(),
            DateTime::from_timestamp(1_800_000_123, 250_000_000).unwrap(),
            DateTime::from_timestamp(1_800_000_123, 999_999_999).unwrap(),
            DateTime::from_timestamp(253_402_300_799, 1_000).unwrap(), // 9999-12-31T23:59:59
            DateTime::from_timestamp(253_402_300_800, 0).unwrap(),     // year 10000
            DateTime::from_timestamp(-62_167_219_200 - 1, 0).unwrap(), // before year 0
            DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(), // leap second
        ];
        for t in cases {
            assert_eq!(
                rfc3339_micros(&t),
                t.to_rfc3339_opts(SecondsFormat::Micros, true)
            );
            if (0..=9999).contains(&t.year()) {
                let back = parse_rfc3339(&rfc3339_micros(&t));
                assert_eq!(back.map(|p| p.timestamp()), Some(t.timestamp()));
            }
        }
    }
}
