//! Phone numbers as the clinic uses them: Russian numbers, normalised so that
//! `+7 900 123-45-67`, `8 (900) 1234567` and `79001234567` are one number.

use std::fmt;

/// A normalised Russian phone number: 11 digits starting with `7`.
///
/// The only constructor validates; the stored form is `7XXXXXXXXXX`, the dial form
/// (what `getNumberFromId` answers) is `8XXXXXXXXXX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Why a text is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("`{0}` contains characters that are not part of a phone number")]
    BadCharacters(String),
    #[error(
        "`{0}` has {1} digits; a Russian number has 10 (9001234567) or 11 (79001234567, 89001234567)"
    )]
    WrongLength(String, usize),
    #[error("`{0}` is not a Russian number (+7 or 8)")]
    NotRussian(String),
}

impl PhoneNumber {
    /// Normalises `text`: digits with optional `+`, spaces, `-`, `(`, `)` and `.`.
    ///
    /// # Errors
    /// [`PhoneError`] describing what is wrong, with the text quoted.
    pub fn parse(text: &str) -> Result<PhoneNumber, PhoneError> {
        let shown: String = text.chars().take(40).collect();
        let trimmed = text.trim();
        let mut digits = String::with_capacity(11);
        for (i, c) in trimmed.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' | '.' | '\u{a0}' => {}
                _ => return Err(PhoneError::BadCharacters(shown)),
            }
            if digits.len() > 15 {
                return Err(PhoneError::WrongLength(shown, digits.len()));
            }
        }
        let plus = trimmed.starts_with('+');
        if plus && !digits.starts_with('7') && digits.len() >= 8 {
            return Err(PhoneError::NotRussian(shown));
        }
        let normalised = match digits.len() {
            10 if !plus => format!("7{digits}"),
            11 if digits.starts_with('7') => digits,
            11 if digits.starts_with('8') && !plus => {
                format!("7{}", digits.get(1..).unwrap_or_default())
            }
            11 => return Err(PhoneError::NotRussian(shown)),
            n => return Err(PhoneError::WrongLength(shown, n)),
        };
        Ok(PhoneNumber(normalised))
    }

    /// `79001234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `89001234567`: the form operators and the seed's API use.
    pub fn dial_form(&self) -> String {
        format!("8{}", self.0.get(1..).unwrap_or_default())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_spellings_are_one_number() {
        for text in [
            "+7 900 123-45-67",
            "8 (900) 1234567",
            "79001234567",
            "89001234567",
            "9001234567",
            " +7(900)123.45.67 ",
        ] {
            let p = PhoneNumber::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.as_str(), "79001234567", "{text}");
            assert_eq!(p.dial_form(), "89001234567");
        }
    }

    #[test]
    fn what_is_not_a_russian_number_is_refused_with_a_reason() {
        for (text, want) in [
            ("", "0 digits"),
            ("12345", "5 digits"),
            ("+44 20 7946 0958", "not a Russian number"),
            ("+8 900 123 45 67", "not a Russian number"),
            ("900-CALL-NOW", "characters"),
            ("7900123456789012345", "digits"),
            ("79001234567\n", "79001234567"),
        ] {
            match PhoneNumber::parse(text) {
                Err(e) => assert!(e.to_string().contains(want), "{text:?}: {e}"),
                Ok(p) if want == "79001234567" => assert_eq!(p.as_str(), want),
                Ok(p) => panic!("{text:?} accepted as {p}"),
            }
        }
    }

    #[test]
    fn a_plus_is_read_only_at_the_start_and_only_before_an_eleven_digit_number() {
        for (text, want) in [
            ("7900+1234567", "characters"),
            ("79001234567+", "characters"),
            // Ten digits are a number without its 7 or 8, never one written with `+`.
            ("+7900123456", "10 digits"),
            ("+7 900 123 45 6", "10 digits"),
        ] {
            match PhoneNumber::parse(text) {
                Err(e) => assert!(e.to_string().contains(want), "{text:?}: {e}"),
                Ok(p) => panic!("{text:?} accepted as {p}"),
            }
        }
    }

    #[test]
    fn an_eleven_digit_number_starts_with_seven_or_eight() {
        for text in ["19001234567", "99001234567", "09001234567"] {
            match PhoneNumber::parse(text) {
                Err(e) => assert!(
                    e.to_string().contains("not a Russian number"),
                    "{text:?}: {e}"
                ),
                Ok(p) => panic!("{text:?} accepted as {p}"),
            }
        }
    }

    #[test]
    fn an_overlong_number_is_refused_once_it_passes_fifteen_digits() {
        // The scan stops at the 16th digit: what follows is never read.
        let e = PhoneNumber::parse("1234567890123456xyz").unwrap_err();
        assert_eq!(e, PhoneError::WrongLength("1234567890123456xyz".into(), 16));
        let e = PhoneNumber::parse("123456789012345").unwrap_err();
        assert_eq!(e, PhoneError::WrongLength("123456789012345".into(), 15));
        let e = PhoneNumber::parse("123456789012345x").unwrap_err();
        assert_eq!(e, PhoneError::BadCharacters("123456789012345x".into()));
    }

    #[test]
    fn a_number_is_shown_in_its_international_form() {
        let p = PhoneNumber::parse("8 (900) 123-45-67").unwrap();
        assert_eq!(p.to_string(), "+79001234567");
    }
}
