//! A doctor's two identifiers: the consultation APIs' `doctorId` (seeds 000/001: an
//! integer) and the booking API's `docGuid` (seed 004: a GUID).
//!
//! Parse, don't validate: each type's only constructors check the value, so a
//! `DoctorId` is positive and a `DoctorGuid` is a GUID in lowercase, one spelling per doctor.

use std::fmt;
use std::str::FromStr;

/// Why a value is not a doctor's id or GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoctorIdError {
    #[error("must be a positive integer, got {0}")]
    NotPositive(i64),
    #[error("must be a positive integer")]
    NotAnInteger,
    #[error("must be a GUID (8-4-4-4-12 hexadecimal digits)")]
    NotAGuid,
    #[error("must not be the nil GUID, which names no doctor")]
    NilGuid,
}

/// A doctor's `doctorId` in the consultation APIs (seeds 000/001): a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DoctorId(i64);

impl DoctorId {
    /// # Errors
    /// `id` is zero or negative.
    pub fn new(id: i64) -> Result<DoctorId, DoctorIdError> {
        if id > 0 {
            Ok(DoctorId(id))
        } else {
            Err(DoctorIdError::NotPositive(id))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl FromStr for DoctorId {
    type Err = DoctorIdError;
    fn from_str(text: &str) -> Result<DoctorId, DoctorIdError> {
        // Digits only: `+5` and ` 5` are not how a client writes an id.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DoctorIdError::NotAnInteger);
        }
        DoctorId::new(text.parse().map_err(|_| DoctorIdError::NotAnInteger)?)
    }
}

impl fmt::Display for DoctorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for DoctorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DoctorId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DoctorId, D::Error> {
        DoctorId::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A doctor's GUID (seed 004's `docGuid`): `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, kept in
/// lowercase. The nil GUID (all zeros), which the seed uses for "none", is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DoctorGuid(String);

impl DoctorGuid {
    /// The GUID as text: lowercase, with its four hyphens.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DoctorGuid {
    type Err = DoctorIdError;
    fn from_str(text: &str) -> Result<DoctorGuid, DoctorIdError> {
        guid_text(text).map(DoctorGuid)
    }
}

/// `text` as a GUID in lowercase: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hexadecimal,
/// never the nil GUID. The one GUID check of medcall (doctors here, the booking's LPUs,
/// cells and tickets in `booking`).
///
/// # Errors
/// Not a GUID, or the nil GUID.
pub fn guid_text(text: &str) -> Result<String, DoctorIdError> {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if lengths != [8, 4, 4, 4, 12] || !hex {
        return Err(DoctorIdError::NotAGuid);
    }
    if text.bytes().all(|b| b == b'0' || b == b'-') {
        return Err(DoctorIdError::NilGuid);
    }
    Ok(text.to_ascii_lowercase())
}

impl fmt::Display for DoctorGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for DoctorGuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DoctorGuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DoctorGuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doctor_id_is_a_positive_integer() {
        assert_eq!(DoctorId::new(17).unwrap().get(), 17);
        assert_eq!(
            "17".parse::<DoctorId>().unwrap(),
            DoctorId::new(17).unwrap()
        );
        assert_eq!(DoctorId::new(0), Err(DoctorIdError::NotPositive(0)));
        assert_eq!(DoctorId::new(-3), Err(DoctorIdError::NotPositive(-3)));
        for bad in ["", "+5", " 5", "5.0", "x", "99999999999999999999"] {
            assert_eq!(
                bad.parse::<DoctorId>(),
                Err(DoctorIdError::NotAnInteger),
                "{bad:?}"
            );
        }
        let id: DoctorId = serde_json::from_str("42").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert!(serde_json::from_str::<DoctorId>("0").is_err());
        assert!(serde_json::from_str::<DoctorId>("\"42\"").is_err());
    }

    #[test]
    fn a_doctor_guid_is_a_lowercased_guid_and_never_the_nil_one() {
        let guid: DoctorGuid = "F05D7650-a2a0-49dc-99f1-bb57829bc46a".parse().unwrap();
        assert_eq!(guid.as_str(), "f05d7650-a2a0-49dc-99f1-bb57829bc46a");
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<DoctorGuid>(),
            Err(DoctorIdError::NilGuid)
        );
        for bad in [
            "",
            "f05d7650a2a049dc99f1bb57829bc46a",
            "{f05d7650-a2a0-49dc-99f1-bb57829bc46a}",
            "f05d7650-a2a0-49dc-99f1-bb57829bc46",
            "f05d7650-a2a0-49dc-99f1-bb57829bc46g",
            "f05d7650-a2a0-49dc-99f1-bb57829bc4\r\n",
            "f05d7650-a2a0-49dc-99f1-bb57829bc46a-",
        ] {
            assert_eq!(
                bad.parse::<DoctorGuid>(),
                Err(DoctorIdError::NotAGuid),
                "{bad:?}"
            );
        }
        let guid: DoctorGuid =
            serde_json::from_str("\"c3c977af-c3b4-4517-9d57-50a6844ec660\"").unwrap();
        assert_eq!(
            serde_json::to_string(&guid).unwrap(),
            "\"c3c977af-c3b4-4517-9d57-50a6844ec660\""
        );
    }
}
