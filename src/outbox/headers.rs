//! The headers medcall adds to a webhook's `GET`, and the text it signs — the contract
//! with receivers, so every name and every byte of the signed text is fixed here.
//!
//! | header | value |
//! | --- | --- |
//! | `X-Medcall-Event-Id` | the status change's id (a UUID): the same on every attempt and every re-send, for deduplication |
//! | `X-Medcall-Consultation-Id` | the consultation's id (decimal) |
//! | `X-Medcall-Status` | the status it changed to (`CallingDoctor`) |
//! | `X-Medcall-Changed-At` | when it changed (RFC 3339, UTC, microseconds) |
//! | `X-Medcall-Timestamp` | this attempt's time, Unix seconds |
//! | `X-Medcall-Signature` | with a key configured: lowercase hex HMAC-SHA256 of the text below |
//!
//! The signed text is `signing::canonical` of the request, with the headers' values as
//! its last part:
//!
//! ```text
//! GET\n<path>[?<query>]\n<timestamp>\n<event id>\n<consultation id>\n<status>\n<changed at>
//! ```
//!
//! `<path>[?<query>]` is the target of the request line exactly as sent (the URL's
//! path, and `?` with the query only when the URL has one); no newline at the end. A
//! receiver rebuilds it from the request it got, checks the timestamp is recent (a
//! replay outside its window is refused), compares the signature in constant time,
//! and deduplicates by the event id.

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::model::Pending;
use crate::secret::Secret;
use crate::signing;
use crate::timefmt;

pub const EVENT_ID: &str = "x-medcall-event-id";
pub const CONSULTATION_ID: &str = "x-medcall-consultation-id";
pub const STATUS: &str = "x-medcall-status";
pub const CHANGED_AT: &str = "x-medcall-changed-at";
pub const TIMESTAMP: &str = "x-medcall-timestamp";
pub const SIGNATURE: &str = "x-medcall-signature";

/// The request target as the request line carries it: path, and `?query` if any.
pub fn target(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// The signed text of an attempt (see the module documentation).
pub fn canonical(
    target: &str,
    timestamp: i64,
    event_id: &str,
    consultation_id: i64,
    status: &str,
    changed_at: &str,
) -> Vec<u8> {
    let values = format!("{event_id}\n{consultation_id}\n{status}\n{changed_at}");
    signing::canonical("GET", target, &timestamp.to_string(), values.as_bytes())
}

/// A value medcall cannot send as a header (a status word with a control character).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {0} header cannot carry the stored value")]
pub struct UnsendableHeader(&'static str);

/// The headers of an attempt at `timestamp` (Unix seconds) to `url`, signed under `key`
/// when there is one.
///
/// # Errors
/// A stored value is not a valid header value.
pub fn for_attempt(
    pending: &Pending,
    url: &Url,
    timestamp: i64,
    key: Option<&Secret>,
) -> Result<HeaderMap, UnsendableHeader> {
    let changed_at = timefmt::rfc3339_micros(&pending.changed_at);
    let consultation_id = pending.consultation_id.to_string();
    let timestamp_text = timestamp.to_string();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        let value = HeaderValue::from_str(value).map_err(|_| UnsendableHeader(name))?;
        headers.insert(HeaderName::from_static(name), value);
        Ok::<(), UnsendableHeader>(())
    };
    put(EVENT_ID, &pending.event_id)?;
    put(CONSULTATION_ID, &consultation_id)?;
    put(STATUS, &pending.status)?;
    put(CHANGED_AT, &changed_at)?;
    put(TIMESTAMP, &timestamp_text)?;
    if let Some(key) = key {
        let text = canonical(
            &target(url),
            timestamp,
            &pending.event_id,
            pending.consultation_id,
            &pending.status,
            &changed_at,
        );
        put(SIGNATURE, &signing::sign(key, &text))?;
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        let t = timefmt::parse_rfc3339("2030-01-01T09:00:03.5Z").unwrap();
        Pending {
            id: 7,
            event_id: "5b0f1e9a-3c1d-4e8f-9a2b-0c4d6e8f1a2b".into(),
            consultation_id: 42,
            url: "https://crm.example/hook/42?src=medcall".into(),
            status: "CallingDoctor".into(),
            changed_at: t,
            created_at: t,
            attempts: 0,
        }
    }

    #[test]
    fn the_target_is_the_path_and_the_query_only_when_there_is_one() {
        let t = |s: &str| target(&Url::parse(s).unwrap());
        assert_eq!(
            t("https://crm.example/hook/42?src=medcall"),
            "/hook/42?src=medcall"
        );
        assert_eq!(t("https://crm.example/hook/42"), "/hook/42");
        assert_eq!(t("https://crm.example"), "/");
        assert_eq!(t("https://crm.example/h?"), "/h?");
        assert_eq!(t("https://crm.example/a%20b?q=%D0%B0"), "/a%20b?q=%D0%B0");
        assert_eq!(
            t("https://crm.example/a b?q=а"),
            "/a%20b?q=%D0%B0",
            "as sent"
        );
    }

    #[test]
    fn the_signed_text_is_method_target_timestamp_and_the_values_on_lines() {
        assert_eq!(
            canonical("/hook/42?src=medcall", 1_893_488_403, "ev", 42, "CallingDoctor", "2030-01-01T09:00:03.500000Z"),
            b"GET\n/hook/42?src=medcall\n1893488403\nev\n42\nCallingDoctor\n2030-01-01T09:00:03.500000Z".to_vec()
        );
    }

    // Known answer computed with OpenSSL:
    //   printf 'GET\n/hook/42?src=medcall\n1893488403\n5b0f1e9a-3c1d-4e8f-9a2b-0c4d6e8f1a2b\n42\nCallingDoctor\n2030-01-01T09:00:03.500000Z' \
    //     | openssl dgst -sha256 -hmac 'webhook-secret-0123'
    #[test]
    fn every_header_is_set_and_the_signature_matches_openssl() {
        let p = pending();
        let url = Url::parse(&p.url).unwrap();
        let key = Secret::new("webhook-secret-0123");
        let h = for_attempt(&p, &url, 1_893_488_403, Some(&key)).unwrap();
        let get = |n: &str| h.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(
            get("X-Medcall-Event-Id"),
            "5b0f1e9a-3c1d-4e8f-9a2b-0c4d6e8f1a2b"
        );
        assert_eq!(get("X-Medcall-Consultation-Id"), "42");
        assert_eq!(get("X-Medcall-Status"), "CallingDoctor");
        assert_eq!(get("X-Medcall-Changed-At"), "2030-01-01T09:00:03.500000Z");
        assert_eq!(get("X-Medcall-Timestamp"), "1893488403");
        assert_eq!(
            get("X-Medcall-Signature"),
            "e3c308ef56f67d3e3305ec2ff1886d1e4ae25467eb8fe44134bb9a6f426a322a"
        );
        assert_eq!(h.len(), 6);
    }

    #[test]
    fn without_a_key_nothing_is_signed() {
        let p = pending();
        let url = Url::parse(&p.url).unwrap();
        let h = for_attempt(&p, &url, 1, None).unwrap();
        assert!(h.get(SIGNATURE).is_none());
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn a_value_that_cannot_be_a_header_is_an_error_not_a_panic() {
        let mut p = pending();
        p.status = "Calling\nDoctor".into();
        let url = Url::parse(&p.url).unwrap();
        assert_eq!(
            for_attempt(&p, &url, 1, None).unwrap_err().to_string(),
            "the x-medcall-status header cannot carry the stored value"
        );
    }
}
