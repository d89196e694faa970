//! [`AgiText`]: a byte string that came from Asterisk (an environment value, reply
//! data). Owns lossless storage of peer bytes and their lossy display.
//!
//! It must never assume UTF-8: caller names arrive in CP1251 or truncated UTF-8, and
//! a value must survive unchanged even when it cannot be shown.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// Bytes received from Asterisk, kept exactly as sent.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgiText(Bytes);

impl AgiText {
    /// Wraps received bytes.
    pub fn new(bytes: impl Into<Bytes>) -> AgiText {
        AgiText(bytes.into())
    }

    /// The bytes as Asterisk sent them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text when it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The text, invalid UTF-8 sequences replaced by `U+FFFD`.
    pub fn to_str_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for AgiText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_str_lossy(), f)
    }
}

impl fmt::Display for AgiText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

impl From<&str> for AgiText {
    fn from(s: &str) -> AgiText {
        AgiText(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for AgiText {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for AgiText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}
