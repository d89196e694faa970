//! The clients document (`medcall import clients FILE`, `PUT /admin/clients`): parsed,
//! then validated whole before anything is written, so a bad phone on line 900 000 does
//! not leave 899 999 clients half-imported.

use serde::Deserialize;

use super::phone::PhoneNumber;
use super::{RequestSource, RequestStatus};

/// The document as JSON.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientsDocument {
    #[serde(default)]
    pub clients: Vec<ClientIn>,
    #[serde(default)]
    pub contracts: Vec<ContractIn>,
    #[serde(default)]
    pub requests: Vec<RequestIn>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIn {
    pub id: i64,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub phones: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractIn {
    pub id: i64,
    #[serde(default)]
    pub client_id: Option<i64>,
    #[serde(default)]
    pub phones: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestIn {
    pub id: i64,
    pub client_id: Option<i64>,
    /// `text` (default) or `call`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub source_id: Option<i64>,
    /// `open` (default) or `closed`.
    #[serde(default)]
    pub status: Option<String>,
}

/// A validated client.
#[derive(Debug, Clone)]
pub struct ValidClient {
    pub id: i64,
    pub full_name: Option<String>,
    pub phones: Vec<PhoneNumber>,
}

/// A validated contract.
#[derive(Debug, Clone)]
pub struct ValidContract {
    pub id: i64,
    pub client_id: Option<i64>,
    pub phones: Vec<PhoneNumber>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub id: i64,
    pub client_id: Option<i64>,
    pub source: RequestSource,
    pub source_id: i64,
    pub status: RequestStatus,
}

/// The whole document, validated.
#[derive(Debug, Default, Clone)]
pub struct ValidDocument {
    pub clients: Vec<ValidClient>,
    pub contracts: Vec<ValidContract>,
    pub requests: Vec<ValidRequest>,
}

const MAX_PHONES: usize = 32;
const MAX_NAME: usize = 512;

impl ClientsDocument {
    /// Validates every entry; returns every problem found (up to 50), each naming the entry.
    ///
    /// # Errors
    /// The list of problems.
    pub fn validate(self) -> Result<ValidDocument, Vec<String>> {
        let mut problems = Vec::new();
        let mut out = ValidDocument::default();
        let phones =
            |what: &str, list: Vec<String>, problems: &mut Vec<String>| -> Vec<PhoneNumber> {
                if list.len() > MAX_PHONES {
                    problems.push(format!("{what}: more than {MAX_PHONES} phones"));
                }
                list.iter()
                    .enumerate()
                    .filter_map(|(i, p)| match PhoneNumber::parse(p) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            problems.push(format!("{what}, phone {i}: {e}"));
                            None
                        }
                    })
                    .collect()
            };
        for c in self.clients {
            let what = format!("client {}", c.id);
            if c.id <= 0 {
                problems.push(format!("{what}: id must be positive"));
            }
            if let Some(name) = &c.full_name {
                if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
                    problems.push(format!("{what}: fullName must be at most {MAX_NAME} characters, no control characters"));
                }
            }
            let phones = phones(&what, c.phones, &mut problems);
            out.clients.push(ValidClient {
                id: c.id,
                full_name: c.full_name,
                phones,
            });
        }
        for c in self.contracts {
            let what = format!("contract {}", c.id);
            if c.id <= 0 {
                problems.push(format!("{what}: id must be positive"));
            }
            let phones = phones(&what, c.phones, &mut problems);
            out.contracts.push(ValidContract {
                id: c.id,
                client_id: c.client_id,
                phones,
            });
        }
        for r in self.requests {
            let what = format!("request {}", r.id);
            let source = match r.source.as_deref() {
                None | Some("text") => RequestSource::Text,
                Some("call") => RequestSource::Call,
                Some(other) => {
                    problems.push(format!("{what}: source `{other}` is neither text nor call"));
                    RequestSource::Text
                }
            };
            let status = match r.status.as_deref() {
                None | Some("open") => RequestStatus::Open,
                Some("closed") => RequestStatus::Closed,
                Some(other) => {
                    problems.push(format!(
                        "{what}: status `{other}` is neither open nor closed"
                    ));
                    RequestStatus::Open
                }
            };
            if r.id <= 0 {
                problems.push(format!("{what}: id must be positive"));
            }
            out.requests.push(ValidRequest {
                id: r.id,
                client_id: r.client_id,
                source,
                source_id: r.source_id.unwrap_or(r.id),
                status,
            });
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            problems.truncate(50);
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_and_every_bad_one_is_named() {
        let doc: ClientsDocument = serde_json::from_str(
            r#"{"clients":[{"id":1,"fullName":"Иванов","phones":["+7 900 123-45-67","8 (900) 7654321"]},
                           {"id":2,"phones":["12345"]}],
                "contracts":[{"id":7000,"clientId":1,"phones":["79001112233","call me"]}],
                "requests":[{"id":5,"clientId":1,"source":"fax"}]}"#,
        )
        .unwrap();
        let problems = doc.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("client 2, phone 0"));
        assert!(problems[1].starts_with("contract 7000, phone 1"));
        assert!(problems[2].contains("fax"));

        let ok: ClientsDocument = serde_json::from_str(
            r#"{"clients":[{"id":1,"phones":["+7 900 123-45-67","8 (900) 7654321"]}]}"#,
        )
        .unwrap();
        let v = ok.validate().unwrap();
        assert_eq!(v.clients[0].phones[1].as_str(), "79007654321");
    }

    fn client_document(phones: usize, full_name: &str) -> ClientsDocument {
        ClientsDocument {
            clients: vec![ClientIn {
                id: 1,
                full_name: Some(full_name.to_string()),
                phones: (0..phones).map(|i| format!("7900{i:07}")).collect(),
            }],
            contracts: vec![ContractIn {
                id: 7000,
                client_id: Some(1),
                phones: (0..phones).map(|i| format!("7911{i:07}")).collect(),
            }],
            requests: vec![],
        }
    }

    #[test]
    fn an_entry_holds_at_most_thirty_two_phones() {
        let v = client_document(32, "Иванов").validate().unwrap();
        assert_eq!(v.clients[0].phones.len(), 32);
        assert_eq!(v.contracts[0].phones.len(), 32);
        let problems = client_document(33, "Иванов").validate().unwrap_err();
        assert_eq!(
            problems,
            [
                "client 1: more than 32 phones",
                "contract 7000: more than 32 phones"
            ]
        );
    }

    #[test]
    fn a_full_name_is_at_most_512_characters_and_has_no_control_characters() {
        let longest = "Я".repeat(512);
        let v = client_document(1, &longest).validate().unwrap();
        assert_eq!(v.clients[0].full_name.as_deref(), Some(longest.as_str()));
        for bad in [
            "Я".repeat(513),
            "Иванов\nИван".to_string(),
            "\u{7}".to_string(),
        ] {
            let problems = client_document(1, &bad).validate().unwrap_err();
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
            assert!(
                problems[0].starts_with("client 1: fullName"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<ClientsDocument>(r#"{"clientz":[]}"#).is_err());
    }
}
