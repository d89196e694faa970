//! The number a caller dialled, as the FastAGI `inbound` route sees it
//! (`agi_extension`): it chooses the team and thread an inbound call joins.

use std::fmt;
use std::str::FromStr;

/// The longest dialled number accepted, the leading `+` included.
pub const MAX_NUMBER_LEN: usize = 32;

/// Why a text is not a dialled number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("must be 1–{MAX_NUMBER_LEN} characters: digits with an optional leading +")]
    Length,
    #[error("must be digits with an optional leading +")]
    NotDigits,
}

/// A dialled number: digits with an optional leading `+`, at most 32 characters. Kept as
/// written (`+74951234567` and `74951234567` are two numbers): the route compares it with
/// the extension the dialplan hands over, which is written one way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundNumber(String);

impl InboundNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InboundNumber {
    type Err = NumberError;
    fn from_str(text: &str) -> Result<InboundNumber, NumberError> {
        let digits = text.strip_prefix('+').unwrap_or(text);
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberError::NotDigits);
        }
        if digits.is_empty() || text.len() > MAX_NUMBER_LEN {
            return Err(NumberError::Length);
        }
        Ok(InboundNumber(text.to_string()))
    }
}

impl fmt::Display for InboundNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialled_number_is_digits_with_an_optional_plus_and_at_most_32_characters() {
        for good in [
            "74951234567",
            "+74951234567",
            "1",
            "+1",
            &"9".repeat(32),
            &format!("+{}", "9".repeat(31)),
        ] {
            assert_eq!(good.parse::<InboundNumber>().unwrap().as_str(), good);
        }
        for (bad, why) in [
            ("", NumberError::Length),
            ("+", NumberError::Length),
            (&"9".repeat(33) as &str, NumberError::Length),
            (&format!("+{}", "9".repeat(32)), NumberError::Length),
            ("7495 123", NumberError::NotDigits),
            ("++7495", NumberError::NotDigits),
            ("7495+", NumberError::NotDigits),
            ("7495\r\n", NumberError::NotDigits),
            ("s", NumberError::NotDigits),
            ("٣", NumberError::NotDigits),
        ] {
            assert_eq!(bad.parse::<InboundNumber>(), Err(why), "{bad:?}");
        }
    }
}
