//! How a user or doctor is dialled: an Asterisk dial string (`PJSIP/1001`,
//! `Local/5b44…@dial-user/n`, `AudioSocket/127.0.0.1:9092/<uuid>/c(slin16)`).

use std::fmt;
use std::str::FromStr;

/// The longest dial string accepted; Asterisk's own channel names stay far below.
pub const MAX_ENDPOINT_LEN: usize = 200;

/// Why a text is not a dial string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("must be TECH/resource, e.g. PJSIP/1001")]
    NoTechnology,
    #[error("must be at most {MAX_ENDPOINT_LEN} characters")]
    TooLong,
    #[error("must not contain control characters or spaces")]
    ControlOrSpace,
}

/// A validated dial string: `TECH/resource`, printable ASCII without spaces, so it can be
/// an AMI `Channel:` value as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A Local channel: Asterisk makes two halves, so the leg has two uniqueids.
    pub fn is_local(&self) -> bool {
        self.0
            .get(..6)
            .is_some_and(|t| t.eq_ignore_ascii_case("Local/"))
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        if text.len() > MAX_ENDPOINT_LEN {
            return Err(EndpointError::TooLong);
        }
        if text.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(EndpointError::ControlOrSpace);
        }
        match text.split_once('/') {
            Some((tech, rest)) if !tech.is_empty() && !rest.is_empty() => {
                Ok(Endpoint(text.to_string()))
            }
            _ => Err(EndpointError::NoTechnology),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_strings_are_tech_slash_resource_without_spaces_or_controls() {
        assert!("PJSIP/1001".parse::<Endpoint>().is_ok());
        let local: Endpoint = "Local/5b44@dial-user/n".parse().unwrap();
        assert!(local.is_local());
        assert!(!"PJSIP/1001".parse::<Endpoint>().unwrap().is_local());
        assert_eq!("1001".parse::<Endpoint>(), Err(EndpointError::NoTechnology));
        assert_eq!(
            "/1001".parse::<Endpoint>(),
            Err(EndpointError::NoTechnology)
        );
        assert_eq!(
            "PJSIP/".parse::<Endpoint>(),
            Err(EndpointError::NoTechnology)
        );
        assert_eq!(
            "PJSIP/10\r\n01".parse::<Endpoint>(),
            Err(EndpointError::ControlOrSpace)
        );
        assert_eq!(
            "PJSIP/10 01".parse::<Endpoint>(),
            Err(EndpointError::ControlOrSpace)
        );
        assert_eq!(
            format!("PJSIP/{}", "1".repeat(MAX_ENDPOINT_LEN)).parse::<Endpoint>(),
            Err(EndpointError::TooLong)
        );
    }
}
