//! Parameters the seed-003 routes accept alike from a query string (GET) and from a form
//! or JSON body (POST), merged into one map: body values win over query values.

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use super::error::ApiError;

/// The longest value accepted for any parameter.
pub const MAX_VALUE_CHARS: usize = 1024;

/// Merged request parameters.
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut map: HashMap<String, String> = match req.uri().query() {
            Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map_err(|_| ApiError::bad_request("The query string is malformed."))?
                .into_iter()
                .collect(),
            None => HashMap::new(),
        };
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(e.status(), "The request body is too large.")
                } else {
                    ApiError::bad_request("The request body could not be read.")
                }
            })?;
        if !body.is_empty() {
            if content_type.starts_with("application/json") {
                let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    ApiError::bad_request(format!("The JSON body is malformed: {e}."))
                })?;
                let serde_json::Value::Object(obj) = value else {
                    return Err(ApiError::bad_request("The JSON body must be an object."));
                };
                for (k, v) in obj {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Null => continue,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "`{k}` must be a string or a number."
                            )));
                        }
                    };
                    map.insert(k, text);
                }
            } else if content_type.starts_with("application/x-www-form-urlencoded")
                || content_type.is_empty()
            {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
                    .map_err(|_| ApiError::bad_request("The form body is malformed."))?;
                map.extend(pairs);
            } else {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Send parameters as a query string, a form (application/x-www-form-urlencoded) or JSON.",
                ));
            }
        }
        if let Some((k, _)) = map
            .iter()
            .find(|(_, v)| v.chars().count() > MAX_VALUE_CHARS)
        {
            return Err(ApiError::bad_request(format!(
                "`{k}` is longer than {MAX_VALUE_CHARS} characters."
            )));
        }
        Ok(Params(map))
    }
}

impl Params {
    /// A present, non-empty value.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A required value.
    ///
    /// # Errors
    /// 400 naming the missing parameter.
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.text(key)
            .ok_or_else(|| ApiError::bad_request(format!("`{key}` is required.")))
    }

    /// An optional positive integer id.
    ///
    /// # Errors
    /// 400 when present but not a positive integer that fits in 63 bits.
    pub fn id(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.text(key).map(|v| parse_id(key, v)).transpose()
    }

    /// A required positive integer id.
    ///
    /// # Errors
    /// 400 when missing or malformed.
    pub fn required_id(&self, key: &str) -> Result<i64, ApiError> {
        parse_id(key, self.required(key)?)
    }
}

fn parse_id(key: &str, v: &str) -> Result<i64, ApiError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "`{key}` must be a positive whole number."
        )));
    }
    match v.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(ApiError::bad_request(format!(
            "`{key}` must be a positive whole number."
        ))),
        Err(_) => Err(ApiError::bad_request(format!("`{key}` is too large."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;

    async fn params(
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Result<Params, ApiError> {
        let mut req = axum::http::Request::builder().method("POST").uri(uri);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        Params::from_request(req.body(body.into()).unwrap(), &()).await
    }

    fn sorted(p: &Params) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = p.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        v.sort_unstable();
        v
    }

    fn refusal(r: Result<Params, ApiError>) -> (StatusCode, String) {
        match r {
            Ok(p) => panic!("accepted: {:?}", sorted(&p)),
            Err(e) => (e.status, e.messages.join(" ")),
        }
    }

    #[tokio::test]
    async fn query_form_and_json_merge_and_the_body_wins() {
        let form = params(
            "/x?a=1&b=2",
            Some("application/x-www-form-urlencoded"),
            "b=3&c=4",
        )
        .await
        .unwrap();
        assert_eq!(sorted(&form), [("a", "1"), ("b", "3"), ("c", "4")]);
        // A body without a content type is read as a form (curl -d without -H).
        let bare = params("/x?a=1", None, "b=%2B7000d0").await.unwrap();
        assert_eq!(sorted(&bare), [("a", "1"), ("b", "+7000d0")]);
        let json = params(
            "/x?a=1&n=0",
            Some("Application/JSON; charset=utf-8"),
            r#"{"a":"text","n":42,"t":true,"f":false,"gone":null}"#,
        )
        .await
        .unwrap();
        assert_eq!(
            sorted(&json),
            [("a", "text"), ("f", "false"), ("n", "42"), ("t", "true")]
        );
        let none = params("/x", Some("application/json"), "").await.unwrap();
        assert!(none.0.is_empty());
    }

    #[tokio::test]
    async fn a_body_that_is_not_flat_parameters_is_refused_with_its_reason() {
        for (ct, body, status, want) in [
            (
                Some("application/json"),
                r#"{"a":[1]}"#,
                400,
                "`a` must be a string or a number",
            ),
            (
                Some("application/json"),
                r#"{"a":{"b":1}}"#,
                400,
                "`a` must be a string or a number",
            ),
            (Some("application/json"), "[1,2]", 400, "must be an object"),
            (Some("application/json"), "{", 400, "JSON body is malformed"),
            (Some("text/plain"), "a=1", 415, "Send parameters as"),
        ] {
            let (s, m) = refusal(params("/x", ct, body).await);
            assert_eq!(s.as_u16(), status, "{body}: {m}");
            assert!(m.contains(want), "{body}: {m}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_not_a_bad_request() {
        let big = vec![b'a'; 3 * 1024 * 1024];
        let (s, m) = refusal(params("/x", None, big).await);
        assert_eq!(
            (s, m.as_str()),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large."
            )
        );
    }

    #[tokio::test]
    async fn a_value_may_be_1024_characters_and_no_longer() {
        let longest = "я".repeat(MAX_VALUE_CHARS);
        let p = params(
            "/x",
            Some("application/json"),
            format!(r#"{{"v":"{longest}"}}"#),
        )
        .await
        .unwrap();
        assert_eq!(p.text("v"), Some(longest.as_str()));
        let (s, m) = refusal(
            params(
                "/x",
                Some("application/json"),
                format!(r#"{{"v":"{longest}я"}}"#),
            )
            .await,
        );
        assert_eq!(
            (s.as_u16(), m.as_str()),
            (400, "`v` is longer than 1024 characters.")
        );
    }

    fn of(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_blank_value_is_absent_and_an_id_is_a_positive_whole_number() {
        let p = of(&[
            ("blank", "  "),
            ("id", " 42 "),
            ("one", "1"),
            ("zero", "0"),
            ("neg", "-3"),
            ("frac", "1.5"),
            ("huge", "99999999999999999999"),
        ]);
        assert_eq!(p.text("blank"), None);
        assert_eq!(p.text("missing"), None);
        assert_eq!(p.text("one"), Some("1"));
        assert_eq!(p.required("one").unwrap(), "1");
        assert_eq!(p.id("id").unwrap(), Some(42));
        assert_eq!(p.id("missing").unwrap(), None);
        assert_eq!(p.id("blank").unwrap(), None);
        assert_eq!(p.required_id("id").unwrap(), 42);
        assert_eq!(p.required_id("one").unwrap(), 1);
        let message = |r: Result<i64, ApiError>| r.unwrap_err().messages.join(" ");
        assert_eq!(message(p.required_id("blank")), "`blank` is required.");
        assert_eq!(
            p.required("missing").unwrap_err().messages,
            ["`missing` is required."]
        );
        for key in ["zero", "neg", "frac"] {
            assert_eq!(
                message(p.required_id(key)),
                format!("`{key}` must be a positive whole number."),
            );
            assert!(p.id(key).is_err(), "{key}");
        }
        assert_eq!(message(p.required_id("huge")), "`huge` is too large.");
    }
}
