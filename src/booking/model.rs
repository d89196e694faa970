//! The booking's small values: GUIDs, age categories and their masks, an LPU's offset
//! from UTC. Parse, don't validate: each type's constructors check the value.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};

use crate::directory::DoctorIdError;
use crate::directory::doctor::guid_text;

/// An LPU's, a cell's or a ticket's GUID, in lowercase; never the nil GUID (the seed's
/// "none").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(String);

impl Guid {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new random (version 4) GUID.
    pub fn random() -> Guid {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        Guid::from_bytes(b)
    }

    /// A new time-ordered (version 7) GUID for a ticket made at `now`: 48 bits of Unix
    /// milliseconds, then 74 random bits. Tickets made one after another sort one after
    /// another, so their rows are appended (a group commit dirties few pages), and the
    /// random part keeps them unguessable.
    pub fn time_ordered(now: DateTime<Utc>) -> Guid {
        let mut b: [u8; 16] = rand::random();
        let ms = u64::try_from(now.timestamp_millis())
            .unwrap_or(0)
            .to_be_bytes();
        b[..6].copy_from_slice(&ms[2..]);
        b[6] = (b[6] & 0x0f) | 0x70;
        Guid::from_bytes(b)
    }

    /// `b` with the RFC 9562 variant bits, as text.
    fn from_bytes(mut b: [u8; 16]) -> Guid {
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Guid(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        ))
    }
}

impl FromStr for Guid {
    type Err = DoctorIdError;
    fn from_str(text: &str) -> Result<Guid, DoctorIdError> {
        guid_text(text).map(Guid)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Guid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Guid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The seed's age categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AgeCategory {
    /// 0–14 years.
    Child,
    /// 15–17 years.
    Teen,
    /// 18 and older.
    Adult,
}

impl AgeCategory {
    pub const ALL: [AgeCategory; 3] = [AgeCategory::Child, AgeCategory::Teen, AgeCategory::Adult];

    /// The word the API uses: `CHILD`, `TEEN`, `ADULT`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeCategory::Child => "CHILD",
            AgeCategory::Teen => "TEEN",
            AgeCategory::Adult => "ADULT",
        }
    }

    /// Exactly the API's word (no other case, no spaces).
    pub fn parse(word: &str) -> Option<AgeCategory> {
        AgeCategory::ALL.into_iter().find(|c| c.as_str() == word)
    }

    fn bit(self) -> u8 {
        match self {
            AgeCategory::Child => 1,
            AgeCategory::Teen => 2,
            AgeCategory::Adult => 4,
        }
    }
}

/// The age categories a cell is open to (stored as a bit mask: 1 CHILD, 2 TEEN, 4
/// ADULT). Never empty: a cell open to nobody is refused by the import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgeMask(u8);

impl AgeMask {
    pub const ALL: AgeMask = AgeMask(7);

    /// The mask of `categories`; `None` if there are none.
    pub fn of(categories: impl IntoIterator<Item = AgeCategory>) -> Option<AgeMask> {
        let bits = categories.into_iter().fold(0, |m, c| m | c.bit());
        (bits != 0).then_some(AgeMask(bits))
    }

    /// The stored bits; `None` for a value no mask has (0, or above 7).
    pub fn from_bits(bits: i64) -> Option<AgeMask> {
        (1..=7)
            .contains(&bits)
            .then(|| AgeMask(u8::try_from(bits).unwrap_or(7)))
    }

    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    pub fn allows(self, category: AgeCategory) -> bool {
        self.0 & category.bit() != 0
    }

    /// The categories, in the API's order.
    pub fn categories(self) -> Vec<AgeCategory> {
        AgeCategory::ALL
            .into_iter()
            .filter(|c| self.allows(*c))
            .collect()
    }
}

/// An LPU's offset from UTC (`+03:00`): its local time for answers and `num` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UtcOffset(FixedOffset);

impl UtcOffset {
    /// Moscow time, the offset of an LPU whose entry names none.
    pub const MOSCOW_MINUTES: i32 = 180;

    /// `minutes` east of UTC; `None` beyond ±18 hours.
    pub fn from_minutes(minutes: i64) -> Option<UtcOffset> {
        let minutes = i32::try_from(minutes).ok()?;
        if minutes.abs() > 18 * 60 {
            return None;
        }
        FixedOffset::east_opt(minutes * 60).map(UtcOffset)
    }

    pub fn minutes(self) -> i64 {
        i64::from(self.0.local_minus_utc() / 60)
    }

    pub fn offset(self) -> FixedOffset {
        self.0
    }

    /// `t` in this offset as the seed writes times: `2019-04-18T08:45:00+03:00`.
    pub fn seed_time(self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.0)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// The local day of `t`: `2019-04-18`.
    pub fn day(self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.0).format("%Y-%m-%d").to_string()
    }
}

impl FromStr for UtcOffset {
    type Err = String;
    /// `+03:00`, `-05:30`, `+00:00` (the sign is required, as in RFC 3339).
    fn from_str(text: &str) -> Result<UtcOffset, String> {
        let bad = || format!("must be an offset from UTC such as +03:00, got {text:?}");
        let b = text.as_bytes();
        let [sign, h1, h2, b':', m1, m2] = b else {
            return Err(bad());
        };
        let sign = match sign {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        let digit = |d: &u8| d.is_ascii_digit().then(|| i64::from(d - b'0'));
        let (Some(h1), Some(h2), Some(m1), Some(m2)) = (digit(h1), digit(h2), digit(m1), digit(m2))
        else {
            return Err(bad());
        };
        let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
        if minutes >= 60 {
            return Err(bad());
        }
        UtcOffset::from_minutes(sign * (hours * 60 + minutes)).ok_or_else(bad)
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.minutes();
        let sign = if m < 0 { '-' } else { '+' };
        write!(f, "{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_is_lowercased_and_a_random_one_is_version_4() {
        let g: Guid = "C3C977AF-c3b4-4517-9d57-50a6844ec660".parse().unwrap();
        assert_eq!(g.as_str(), "c3c977af-c3b4-4517-9d57-50a6844ec660");
        assert!(
            "00000000-0000-0000-0000-000000000000"
                .parse::<Guid>()
                .is_err()
        );
        assert!("x".parse::<Guid>().is_err());
        assert_eq!(g.to_string(), "c3c977af-c3b4-4517-9d57-50a6844ec660");
        let r = Guid::random();
        assert_eq!(r.as_str().parse::<Guid>().unwrap(), r);
        assert_eq!(&r.as_str()[14..15], "4");
        assert!(matches!(&r.as_str()[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(Guid::random(), r);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let t1 = Guid::time_ordered(at("2030-01-01T09:00:00.001Z"));
        let t2 = Guid::time_ordered(at("2030-01-01T09:00:00.002Z"));
        assert!(t1 < t2, "{t1} {t2}");
        assert_eq!(
            &t1.as_str()[..15],
            "01b8dcb4-1681-7",
            "milliseconds, then version 7"
        );
        assert!(matches!(&t1.as_str()[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(t1.as_str().parse::<Guid>().unwrap(), t1);
    }

    #[test]
    fn age_categories_are_the_api_words_exactly() {
        assert_eq!(AgeCategory::parse("CHILD"), Some(AgeCategory::Child));
        assert_eq!(AgeCategory::parse("TEEN"), Some(AgeCategory::Teen));
        assert_eq!(AgeCategory::parse("ADULT"), Some(AgeCategory::Adult));
        for bad in ["child", " ADULT", "ADULTS", ""] {
            assert_eq!(AgeCategory::parse(bad), None, "{bad:?}");
        }
        let json: AgeCategory = serde_json::from_str("\"TEEN\"").unwrap();
        assert_eq!(json, AgeCategory::Teen);
    }

    #[test]
    fn an_age_mask_allows_exactly_its_categories() {
        let m = AgeMask::of([AgeCategory::Child, AgeCategory::Teen]).unwrap();
        assert!(m.allows(AgeCategory::Child));
        assert!(m.allows(AgeCategory::Teen));
        assert!(!m.allows(AgeCategory::Adult));
        assert_eq!(m.bits(), 3);
        assert_eq!(AgeMask::from_bits(3), Some(m));
        assert_eq!(m.categories(), vec![AgeCategory::Child, AgeCategory::Teen]);
        assert_eq!(AgeMask::of([]), None);
        let twice = AgeMask::of([AgeCategory::Teen, AgeCategory::Teen]).unwrap();
        assert_eq!(twice.bits(), 2, "a category named twice is allowed once");
        assert_eq!(AgeMask::from_bits(0), None);
        assert_eq!(AgeMask::from_bits(8), None);
        assert_eq!(AgeMask::from_bits(7), Some(AgeMask::ALL));
        assert_eq!(AgeMask::of([AgeCategory::Adult]).unwrap().bits(), 4);
    }

    #[test]
    fn an_offset_reads_and_writes_the_rfc3339_form() {
        let o: UtcOffset = "+03:00".parse().unwrap();
        assert_eq!(o.minutes(), 180);
        assert_eq!(o.to_string(), "+03:00");
        let o: UtcOffset = "+05:45".parse().unwrap();
        assert_eq!(o.minutes(), 345);
        assert_eq!("+00:00".parse::<UtcOffset>().unwrap().to_string(), "+00:00");
        let o: UtcOffset = "-05:30".parse().unwrap();
        assert_eq!(o.minutes(), -330);
        assert_eq!(o.to_string(), "-05:30");
        for bad in ["03:00", "+3:00", "+03:60", "+19:00", "+03:00 ", "Z", ""] {
            assert!(bad.parse::<UtcOffset>().is_err(), "{bad:?}");
        }
        assert!(UtcOffset::from_minutes(18 * 60).is_some());
        assert!(UtcOffset::from_minutes(18 * 60 + 1).is_none());
        let t = DateTime::parse_from_rfc3339("2019-04-18T05:45:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let msk = UtcOffset::from_minutes(180).unwrap();
        assert_eq!(msk.seed_time(t), "2019-04-18T08:45:00+03:00");
        let late = DateTime::parse_from_rfc3339("2019-04-18T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(msk.day(late), "2019-04-19");
    }
}
