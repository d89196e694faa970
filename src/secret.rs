//! [`Secret`]: a value that must never be shown — an AMI secret today, webhook and
//! signing keys later.
//!
//! Owns the redaction: `Debug` and `Serialize` print `***`, so a secret inside a logged
//! struct or a rendered configuration stays hidden. It must never offer `Display`, and
//! the text leaves only through [`Secret::expose`], at the one place that must send it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that must never be shown: `Debug` and `Serialize` print `***`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (e.g. the AMI login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_in_debug_and_serialized_form_and_exposed_only_on_request() {
        let s = Secret::new("topsecret-value");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(format!("{:?}", Some(&s)), "Some(\"***\")");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "topsecret-value");
        let read: Secret = serde_json::from_str("\"from-a-file\"").unwrap();
        assert_eq!(read, Secret::new("from-a-file"));
        assert_ne!(read, Secret::default());
    }
}
