//! The directory's identifiers: 24 hexadecimal digits each (the CRM's object ids), kept
//! in lowercase so one id has one spelling everywhere (store keys, conference names,
//! channel variables, AMI `Account`).
//!
//! Parse, don't validate: the only constructor is [`std::str::FromStr`] (and `Deserialize`,
//! which goes through it), so an id that exists is 24 hex digits and can be written to
//! AMI or AGI without a CR, LF or NUL.

use std::fmt;
use std::str::FromStr;

/// Why a text is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be 24 hexadecimal digits, got {0} characters")]
    Length(usize),
    #[error("must be 24 hexadecimal digits, found {0:?}")]
    NotHex(char),
}

fn parse_object_id(text: &str) -> Result<String, IdError> {
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(IdError::NotHex(bad));
    }
    if text.len() != 24 {
        return Err(IdError::Length(text.chars().count()));
    }
    Ok(text.to_ascii_lowercase())
}

macro_rules! object_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id as text: 24 lowercase hex digits.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<$name, IdError> {
                parse_object_id(text).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

object_id!(
    /// A conversation thread of the CRM: at most one active call each.
    ThreadId
);
object_id!(
    /// A team of the CRM; API keys of the `calls` scope may be limited to some.
    TeamId
);
object_id!(
    /// A user of the CRM, dialled into a thread's call.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_24_hex_digits_kept_in_lowercase() {
        let id: ThreadId = "5B0525134c0319001573485e".parse().unwrap();
        assert_eq!(id.as_str(), "5b0525134c0319001573485e");
        assert_eq!(id.to_string(), "5b0525134c0319001573485e");
    }

    #[test]
    fn other_texts_are_refused_with_the_reason() {
        assert_eq!("abc".parse::<UserId>(), Err(IdError::Length(3)));
        assert_eq!(
            "5b0525134c0319001573485e0".parse::<UserId>(),
            Err(IdError::Length(25))
        );
        assert_eq!(
            "5b0525134c031900157348\r\n".parse::<TeamId>(),
            Err(IdError::NotHex('\r'))
        );
        assert_eq!(
            "5b0525134c0319001573485g".parse::<TeamId>(),
            Err(IdError::NotHex('g'))
        );
        assert_eq!("".parse::<TeamId>(), Err(IdError::Length(0)));
        assert_eq!(
            "ёёёёёёёёёёёёёёёёёёёёёёёё".parse::<TeamId>(),
            Err(IdError::NotHex('ё'))
        );
    }

    #[test]
    fn json_goes_through_the_same_check() {
        let id: UserId = serde_json::from_str("\"5b4458eb1b2b33001bf213bf\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"5b4458eb1b2b33001bf213bf\""
        );
        assert!(serde_json::from_str::<UserId>("\"5b4458eb\"").is_err());
    }
}
