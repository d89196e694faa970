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
    let year = t.year();
    // Years chrono would sign or widen, and leap seconds, take the general path.
    if !(0..=9999).contains(&year) || t.nanosecond() >= 1_000_000_000 {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        return;
    }
    push_digits(out, year.unsigned_abs(), 4);
    out.push('-');
    push_digits(out, t.month(), 2);
    out.push('-');
    push_digits(out, t.day(), 2);
    out.push('T');
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second(), 2);
    out.push('.');
    push_digits(out, t.nanosecond() / 1000, 6);
    out.push('Z');
}

/// `n` in decimal, zero-padded to `width` digits (higher digits are dropped).
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (n / 10u32.pow(place)) % 10;
        out.push(char::from_digit(digit, 10).unwrap_or('0'));
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
