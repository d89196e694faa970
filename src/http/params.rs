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
