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
    #[serde(deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = 1)]
    pub id: i64,
    #[serde(default)]
    #[schema(max_length = 512, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub full_name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<PhoneText>, max_items = 32)]
    pub phones: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractIn {
    #[serde(deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = 1)]
    pub id: i64,
    #[serde(default, deserialize_with = "crate::json::some_whole_number")]
    pub client_id: Option<i64>,
    #[serde(default)]
    #[schema(value_type = Vec<PhoneText>, max_items = 32)]
    pub phones: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestIn {
    #[serde(deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = 1)]
    pub id: i64,
    #[serde(default, deserialize_with = "crate::json::some_whole_number")]
    pub client_id: Option<i64>,
    /// `text` (default) or `call`.
    #[serde(default)]
    #[schema(value_type = Option<RequestSourceText>)]
    pub source: Option<String>,
    #[serde(default, deserialize_with = "crate::json::some_whole_number")]
    pub source_id: Option<i64>,
    /// `open` (default) or `closed`.
    #[serde(default)]
    #[schema(value_type = Option<RequestStatusText>)]
    pub status: Option<String>,
}

// The schema of `ClientIn::phones` and `ContractIn::phones` (the text stays a `String`
// until `validate` reads it); the pattern is `PhoneNumber::parse`'s rule.
/// A Russian phone as the CRM writes it: 10 digits, or 11 starting with 7 (`+7`) or 8;
/// spaces, `-`, `(`, `)` and `.` may stand between the digits.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Phone, pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:\+[ ().\xa0-]*7|[ ().\xa0-]*[78]?)[ ().\xa0-]*(?:[0-9][ ().\xa0-]*){10}[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
pub struct PhoneText(pub String);

// The schema of `RequestIn::source`.
/// Where a request came from.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RequestSourceIn)]
pub enum RequestSourceText {
    Text,
    Call,
}

// The schema of `RequestIn::status`.
/// Whether a request is still open.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RequestStatusIn)]
pub enum RequestStatusText {
    Open,
    Closed,
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

impl ValidDocument {
    /// The client ids that contracts and requests name but the document does not hold,
    /// ascending, each once: the store must already know them.
    pub fn outside_client_ids(&self) -> Vec<i64> {
        let own: std::collections::HashSet<i64> = self.clients.iter().map(|c| c.id).collect();
        let mut ids: Vec<i64> = self
            .contracts
            .iter()
            .filter_map(|c| c.client_id)
            .chain(self.requests.iter().filter_map(|r| r.client_id))
            .filter(|id| !own.contains(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// One problem per contract or request naming a client of `unknown` (ids neither in
    /// the document nor in the store), up to 50, as `validate` names them.
    pub fn unknown_client_problems(&self, unknown: &[i64]) -> Vec<String> {
        let named = |id: Option<i64>| id.filter(|id| unknown.binary_search(id).is_ok());
        self.contracts
            .iter()
            .filter_map(|c| {
                named(c.client_id).map(|id| format!("contract {}: client {id} is not known", c.id))
            })
            .chain(self.requests.iter().filter_map(|r| {
                named(r.client_id).map(|id| format!("request {}: client {id} is not known", r.id))
            }))
            .take(50)
            .collect()
    }
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
    fn ids_may_be_written_as_whole_floats_but_not_as_fractions() {
        let doc: ClientsDocument = serde_json::from_str(
            r#"{"clients":[{"id":7e3}],"contracts":[{"id":2.0,"clientId":-5.0}],
                "requests":[{"id":3,"clientId":null,"sourceId":4.0}]}"#,
        )
        .unwrap();
        assert_eq!(doc.clients[0].id, 7000);
        assert_eq!(
            (doc.contracts[0].id, doc.contracts[0].client_id),
            (2, Some(-5))
        );
        assert_eq!(
            (doc.requests[0].client_id, doc.requests[0].source_id),
            (None, Some(4))
        );
        for bad in [
            r#"{"clients":[{"id":1.5}]}"#,
            r#"{"clients":[{"id":9007199254740992.0}]}"#,
            r#"{"clients":[{"id":9223372036854775808}]}"#,
            r#"{"contracts":[{"id":1,"clientId":0.25}]}"#,
            r#"{"requests":[{"id":"1"}]}"#,
        ] {
            assert!(
                serde_json::from_str::<ClientsDocument>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn contracts_and_requests_naming_a_client_outside_the_document_are_found_and_named() {
        let doc: ClientsDocument = serde_json::from_str(
            r#"{"clients":[{"id":1}],
                "contracts":[{"id":7000,"clientId":1},{"id":7001,"clientId":9},{"id":7002}],
                "requests":[{"id":5,"clientId":9},{"id":6,"clientId":4},{"id":8,"clientId":null}]}"#,
        )
        .unwrap();
        let v = doc.validate().unwrap();
        assert_eq!(v.outside_client_ids(), [4, 9]);
        assert_eq!(
            v.unknown_client_problems(&[9]),
            [
                "contract 7001: client 9 is not known",
                "request 5: client 9 is not known"
            ]
        );
        assert!(v.unknown_client_problems(&[]).is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<ClientsDocument>(r#"{"clientz":[]}"#).is_err());
    }
}
