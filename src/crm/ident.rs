//! The identifiers an operator dials instead of a number (seed 003, `getNumberFromId`):
//! `+{request}s{client}` and `+{contract}d{index}`, and the rule saying which phone one
//! stands for, decided from the facts the store loaded.

use std::fmt;

use super::PhoneNumber;

/// A parsed dial identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialIdent {
    /// `+123456s654321`: the phone of client 654321 of request 123456.
    RequestClient { request: i64, client: i64 },
    /// `+7000d0`: phone number 0 (0-based) of contract 7000.
    ContractPhone { contract: i64, index: u32 },
}

/// Why an identifier is malformed. Messages name what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("the identifier is empty")]
    Empty,
    #[error("`{0}` must start with `+`, e.g. +123456s654321 or +7000d0")]
    NoPlus(String),
    #[error(
        "`{0}` must be +{{request}}s{{client}} or +{{contract}}d{{index}} with decimal numbers"
    )]
    Malformed(String),
    #[error("`{0}` has a number too large to be an id")]
    TooLarge(String),
}

impl DialIdent {
    /// Parses an identifier. A leading space is read as `+`, because an unescaped `+` in
    /// a URL query string arrives as a space.
    ///
    /// # Errors
    /// [`IdentError`] naming the problem.
    pub fn parse(text: &str) -> Result<DialIdent, IdentError> {
        let shown: String = text.chars().take(40).collect();
        let t = text.trim_end();
        let body = if let Some(rest) = t.strip_prefix('+') {
            rest
        } else if let Some(rest) = t.strip_prefix(' ') {
            rest.trim_start()
        } else if t.is_empty() {
            return Err(IdentError::Empty);
        } else {
            return Err(IdentError::NoPlus(shown));
        };
        let (kind, left, right) = match (body.split_once('s'), body.split_once('d')) {
            (Some((l, r)), None) => ('s', l, r),
            (None, Some((l, r))) => ('d', l, r),
            _ => return Err(IdentError::Malformed(shown)),
        };
        let number = |s: &str| -> Result<i64, IdentError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IdentError::Malformed(shown.clone()));
            }
            s.parse::<i64>()
                .map_err(|_| IdentError::TooLarge(shown.clone()))
        };
        let l = number(left)?;
        let r = number(right)?;
        Ok(match kind {
            's' => DialIdent::RequestClient {
                request: l,
                client: r,
            },
            _ => DialIdent::ContractPhone {
                contract: l,
                index: u32::try_from(r).map_err(|_| IdentError::TooLarge(shown.clone()))?,
            },
        })
    }
}

impl fmt::Display for DialIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialIdent::RequestClient { request, client } => write!(f, "+{request}s{client}"),
            DialIdent::ContractPhone { contract, index } => write!(f, "+{contract}d{index}"),
        }
    }
}

/// What the store knows of the entry a [`DialIdent`] names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentFacts {
    /// For `+{request}s{client}`: the client request `request` is filed under (`None`: no
    /// such request, or one without a client). Not read for a contract.
    pub request_client: Option<i64>,
    /// The phone the entry holds: client `client`'s first phone, or contract
    /// `contract`'s phone at `index`.
    pub phone: Option<PhoneNumber>,
}

/// The phone `ident` stands for: a request's client is dialled only through that
/// request (an identifier pairing a request with another client's id finds nothing, so
/// a guessed pair never reaches a patient); a contract's phone by its position.
pub fn resolve(ident: DialIdent, facts: IdentFacts) -> Option<PhoneNumber> {
    match ident {
        DialIdent::RequestClient { client, .. } if facts.request_client == Some(client) => {
            facts.phone
        }
        DialIdent::RequestClient { .. } => None,
        DialIdent::ContractPhone { .. } => facts.phone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_resolves_only_to_the_phone_its_entry_holds() {
        let request = DialIdent::RequestClient {
            request: 5,
            client: 1,
        };
        let contract = DialIdent::ContractPhone {
            contract: 7000,
            index: 1,
        };
        let phone = || Some(PhoneNumber::parse("+79001234567").unwrap());
        let facts = |request_client, phone| IdentFacts {
            request_client,
            phone,
        };
        let cases = [
            (request, facts(Some(1), phone()), phone()),
            (request, facts(Some(2), phone()), None),
            (request, facts(None, phone()), None),
            (request, facts(Some(1), None), None),
            (contract, facts(None, phone()), phone()),
            (contract, facts(Some(3), phone()), phone()),
            (contract, facts(None, None), None),
        ];
        for (ident, facts, want) in cases {
            assert_eq!(resolve(ident, facts.clone()), want, "{ident} {facts:?}");
        }
    }

    #[test]
    fn both_forms_parse_and_print_back() {
        for (text, want) in [
            (
                "+123456s654321",
                DialIdent::RequestClient {
                    request: 123456,
                    client: 654321,
                },
            ),
            (
                "+7000d0",
                DialIdent::ContractPhone {
                    contract: 7000,
                    index: 0,
                },
            ),
            (
                " 7000d2",
                DialIdent::ContractPhone {
                    contract: 7000,
                    index: 2,
                },
            ),
        ] {
            let got = DialIdent::parse(text).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(DialIdent::parse(&got.to_string()).unwrap(), got);
        }
    }

    #[test]
    fn malformed_identifiers_say_why() {
        for (text, want) in [
            ("", "empty"),
            ("7000d0", "must start with `+`"),
            ("+12s", "+{request}s{client}"),
            ("+s1", "+{request}s{client}"),
            ("+12x3", "+{request}s{client}"),
            ("+1s2d3", "+{request}s{client}"),
            ("+-1s2", "+{request}s{client}"),
            ("+99999999999999999999s1", "too large"),
            ("+1d99999999999", "too large"),
            ("+1s2\r\nAction: Originate", "+{request}s{client}"),
        ] {
            let e = DialIdent::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
