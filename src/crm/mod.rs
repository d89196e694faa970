//! The clinic CRM's side of calls (seed 003, SPEC §6 and §8): clients and contracts with
//! ordered phones, requests (заявки) made from text leads and calls, the patient's
//! arrival, call detail records, and number lookup by dial identifier.
//!
//! This module holds the domain types and their validation; persistence is in
//! `store::crm`, the HTTP surface in `http::events`, the dialplan's in `routes`.

pub mod ident;
pub mod import;
pub mod phone;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use ident::{DialIdent, IdentError};
pub use phone::{PhoneError, PhoneNumber};

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestSource {
    /// A text lead in the CRM; `sourceId` is its id there.
    Text,
    /// A call; `sourceId` is medcall's call id.
    Call,
}

impl RequestSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestSource::Text => "text",
            RequestSource::Call => "call",
        }
    }
    pub fn from_stored(s: &str) -> RequestSource {
        if s == "call" {
            RequestSource::Call
        } else {
            RequestSource::Text
        }
    }
}

/// A request (заявка).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub id: i64,
    pub source: RequestSource,
    pub source_id: i64,
    pub client_id: Option<i64>,
    /// `open` or `closed`.
    pub status: String,
    pub created: DateTime<Utc>,
    /// When the patient arrived (`/api/events/coming`); the first mark is kept.
    pub arrived_at: Option<DateTime<Utc>>,
}

/// A client with their phones in order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    pub id: i64,
    pub full_name: Option<String>,
    /// Normalised `7XXXXXXXXXX`, in the CRM's order.
    pub phones: Vec<String>,
}

/// What `call_asterisk` did with an incoming call.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncomingCall {
    pub call_id: i64,
    /// The caller's number as the PBX gave it.
    pub caller: Option<String>,
    pub client: Option<Client>,
    pub client_created: bool,
    pub request: Option<Request>,
    pub request_created: bool,
    /// The incoming-call event recorded for the CRM.
    pub event_id: i64,
}

/// Direction of a recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    Incoming,
    Outgoing,
}

/// A call detail record (from the CRM's API or from AMI).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallDetailRecord {
    pub id: i64,
    /// `api` or `ami`.
    pub source: String,
    pub event_id: Option<i64>,
    pub call_id: Option<i64>,
    pub phone: Option<String>,
    pub extension: Option<String>,
    pub path: Option<String>,
    pub call_at: Option<String>,
    #[serde(rename = "type")]
    pub call_type: Option<String>,
    pub duration: Option<i64>,
    pub received_at: DateTime<Utc>,
}

/// A validated record for `callDetailRecord`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCallDetailRecord {
    pub event_id: i64,
    pub phone: String,
    pub extension: String,
    pub path: RecordingPath,
    pub call_at: Option<DateTime<Utc>>,
    pub call_type: Option<CallType>,
    pub duration: Option<i64>,
}

/// A recording's path: relative, below the recordings root, no `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPath(String);

impl RecordingPath {
    /// # Errors
    /// A message saying why the path is refused.
    pub fn parse(text: &str) -> Result<RecordingPath, String> {
        if text.is_empty() {
            return Err("`path` must not be empty.".into());
        }
        if text.len() > 1024 {
            return Err("`path` is longer than 1024 bytes.".into());
        }
        if text.chars().any(|c| c.is_control()) || text.contains('\\') {
            return Err("`path` must not contain control characters or backslashes.".into());
        }
        if text.starts_with('/') {
            return Err("`path` must be relative to the recordings root, not absolute.".into());
        }
        for segment in text.split('/') {
            match segment {
                ".." => return Err("`path` must stay below the recordings root: no `..`.".into()),
                "." | "" => return Err("`path` must not contain empty or `.` segments.".into()),
                _ => {}
            }
        }
        Ok(RecordingPath(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_paths_stay_below_the_root() {
        assert!(RecordingPath::parse("2026/11/22/call-1.wav").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x.wav",
            "a/../../x.wav",
            "a/./b",
            "a\\b",
            "a\nb",
            "a\0b",
        ] {
            assert!(RecordingPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
