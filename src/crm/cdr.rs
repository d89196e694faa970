//! Call detail records as the CRM posts them (`callDetailRecord`): the validated record,
//! the stored one, and the rule that makes posting idempotent on the CRM's event id.

use chrono::{DateTime, Utc};

/// Direction of a recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    Incoming,
    Outgoing,
}

impl CallType {
    /// The word stored and served: `incoming` or `outgoing`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Incoming => "incoming",
            CallType::Outgoing => "outgoing",
        }
    }

    /// `incoming` or `outgoing`; anything else is not a call type.
    pub fn parse(text: &str) -> Option<CallType> {
        match text {
            "incoming" => Some(CallType::Incoming),
            "outgoing" => Some(CallType::Outgoing),
            _ => None,
        }
    }
}

/// Who reported a call detail record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdrSource {
    /// The CRM, through `callDetailRecord`.
    Api,
    /// The PBX, as an AMI `Cdr` event.
    Ami,
}

impl CdrSource {
    /// The word stored and served: `api` or `ami`.
    pub fn as_str(self) -> &'static str {
        match self {
            CdrSource::Api => "api",
            CdrSource::Ami => "ami",
        }
    }
}

/// A call detail record (from the CRM's API or from AMI).
#[derive(Debug, Clone, PartialEq)]
pub struct CallDetailRecord {
    pub id: i64,
    pub source: CdrSource,
    pub event_id: Option<i64>,
    pub call_id: Option<i64>,
    pub phone: Option<String>,
    pub extension: Option<String>,
    pub path: Option<String>,
    /// As stored: RFC 3339 to the second for the CRM's records, Asterisk's own text for
    /// AMI's; served as it is.
    pub call_at: Option<String>,
    pub call_type: Option<CallType>,
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

/// What to do with a posted record.
#[derive(Debug, Clone, PartialEq)]
pub enum CdrPlan {
    /// Its event id is stored already: answer the stored record unchanged, write nothing.
    Existing(CallDetailRecord),
    /// New: store it.
    Insert(NewCallDetailRecord),
}

/// The idempotency rule of `callDetailRecord`: the first record of an event id is the one
/// kept; `stored` is the record already stored under `new.event_id`, if any.
pub fn record_cdr(stored: Option<CallDetailRecord>, new: NewCallDetailRecord) -> CdrPlan {
    match stored {
        Some(existing) => CdrPlan::Existing(existing),
        None => CdrPlan::Insert(new),
    }
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
        // Characters, not bytes: the limit every other parameter has, and one the API's
        // schema can state (`maxLength`); 1 024 characters are at most 4 KiB, PATH_MAX.
        if text.chars().count() > 1024 {
            return Err("`path` is longer than 1024 characters.".into());
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
        assert!(RecordingPath::parse(&"a".repeat(1024)).is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x.wav",
            "a/../../x.wav",
            "a/./b",
            "a//b",
            "a\\b",
            "a\nb",
            "a\0b",
            &"a".repeat(1025),
        ] {
            assert!(RecordingPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn call_types_are_exactly_their_two_words() {
        for t in [CallType::Incoming, CallType::Outgoing] {
            assert_eq!(CallType::parse(t.as_str()), Some(t));
        }
        for bad in ["", "Incoming", "sideways", "incoming "] {
            assert_eq!(CallType::parse(bad), None, "{bad:?}");
        }
    }

    fn new(event_id: i64) -> NewCallDetailRecord {
        NewCallDetailRecord {
            event_id,
            phone: "89001234567".into(),
            extension: "101".into(),
            path: RecordingPath::parse("a/b.wav").unwrap(),
            call_at: None,
            call_type: Some(CallType::Incoming),
            duration: Some(3),
        }
    }

    #[test]
    fn the_first_record_of_an_event_id_is_kept() {
        let stored = CallDetailRecord {
            id: 1,
            source: CdrSource::Api,
            event_id: Some(9),
            call_id: None,
            phone: Some("89990000000".into()),
            extension: Some("1".into()),
            path: Some("first.wav".into()),
            call_at: None,
            call_type: None,
            duration: None,
            received_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let cases = [
            (None, CdrPlan::Insert(new(9))),
            (Some(stored.clone()), CdrPlan::Existing(stored)),
        ];
        for (stored, plan) in cases {
            assert_eq!(record_cdr(stored, new(9)), plan);
        }
    }
}
