//! One attempt: a bare `GET` of the notification's URL — no query added, no body —
//! with medcall's headers (`headers`), through the network guard, within the timeout.
//!
//! The target passes the guard of audio fetches (`media::fetch::guarded_client`: the
//! host resolved here, every address checked, the connection pinned to them, no proxy).
//! A redirect is not followed: a webhook's receiver answers it, or it failed (a 3xx is
//! retried like any other non-2xx). The answer's body is never read.

use std::time::Duration;

use super::headers;
use super::model::{Outcome, Pending};
use crate::media::fetch::{self, FetchError};
use crate::media::netguard::NetGuard;
use crate::secret::Secret;

/// Sent as `User-Agent`.
pub const USER_AGENT: &str = concat!("medcall/", env!("CARGO_PKG_VERSION"), " (webhook)");

/// Most characters of an error kept as an attempt's outcome.
const MAX_ERROR_CHARS: usize = 500;

/// What one attempt needs besides the notification.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub guard: &'a NetGuard,
    pub timeout: Duration,
    pub key: Option<&'a Secret>,
}

/// Attempts `pending` once, at `timestamp` (Unix seconds, sent and signed).
///
/// Cancel-safe: dropping the future closes the connection; nothing is recorded here.
pub async fn attempt(pending: &Pending, timestamp: i64, target: &Target<'_>) -> Outcome {
    let send = async {
        let url = fetch::parse(&pending.url).map_err(|e| e.to_string())?;
        let headers = headers::for_attempt(pending, &url, timestamp, target.key)
            .map_err(|e| e.to_string())?;
        let client = fetch::guarded_client(&url, target.guard, target.timeout, USER_AGENT)
            .await
            .map_err(|e| e.to_string())?;
        let host = url.host_str().unwrap_or_default().to_string();
        let response = client
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| describe(&fetch::send_error(&host, &e)))?;
        Ok::<u16, String>(response.status().as_u16())
    };
    let outcome = match tokio::time::timeout(target.timeout, send).await {
        Err(_) => Err(format!(
            "no answer within {} ms",
            target.timeout.as_millis()
        )),
        Ok(result) => result,
    };
    match outcome {
        Ok(status) => Outcome::Answered(status),
        Err(why) => Outcome::Failed(why.chars().take(MAX_ERROR_CHARS).collect()),
    }
}

fn describe(e: &FetchError) -> String {
    e.to_string()
}
