//! Fetching a client-given URL, on the assumption that the URL, its DNS and its server
//! are all hostile.
//!
//! - Only `http` and `https`.
//! - The host is resolved here, every address it resolves to is checked by the
//!   [`NetGuard`], and the connection is pinned to those checked addresses (a client
//!   built for the one request with `resolve_to_addrs`), so a second DNS answer
//!   (rebinding) cannot send the connection elsewhere. No system proxy is used.
//! - Redirects are not followed by the HTTP client: each `Location` is parsed, resolved
//!   and checked again here, at most `max_redirects` times.
//! - One deadline covers everything, DNS, connect, headers and body: a server that
//!   drips a byte a second times out. Connecting has its own shorter timeout.
//! - The size limit is enforced while reading: a `Content-Length` over it is refused
//!   before the body, and a body without one (or with a false one) is dropped as soon
//!   as the count passes the limit. The connection is closed, never read to its end.
//! - Conditional revalidation: [`fetch_if_changed`] sends `If-None-Match` /
//!   `If-Modified-Since` and answers [`Fetch::NotModified`] on a 304.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    LOCATION,
};
use reqwest::{StatusCode, Url, redirect};
use tokio::time::Instant;

use super::netguard::{NetGuard, Refusal};

/// How fetches behave. Plain values; the daemon maps configuration onto them.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub guard: NetGuard,
    /// Largest body accepted (default 10 MB = 10 485 760 bytes).
    pub max_bytes: u64,
    /// Time to open one TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Time for the whole fetch, redirects and body included (default 30 s).
    pub total_timeout: Duration,
    /// Redirects followed at most (default 3).
    pub max_redirects: u8,
    pub user_agent: String,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            guard: NetGuard::default(),
            max_bytes: 10_485_760,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(30),
            max_redirects: 3,
            user_agent: concat!("medcall/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The validators of an earlier answer, for a conditional request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A body fetched whole, within the limit.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL the body came from (after redirects).
    pub url: Url,
    pub body: Bytes,
    pub validators: Validators,
    /// As the server said; for logs only, never to decide what the body is.
    pub content_type: Option<String>,
}

/// The answer to a conditional fetch.
#[derive(Debug, Clone)]
pub enum Fetch {
    Body(Fetched),
    NotModified,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("not a valid URL: {0}")]
    BadUrl(String),
    #[error("the URL scheme {0:?} is not allowed (only http and https)")]
    Scheme(String),
    #[error("{host} resolves to {addr}, {why}, which is not allowed")]
    Denied {
        host: String,
        addr: IpAddr,
        why: Refusal,
    },
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the fetch took longer than {0:?}")]
    Timeout(Duration),
    #[error("{host} cannot be resolved: {detail}")]
    Dns { host: String, detail: String },
    #[error("cannot connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("more than {0} redirects")]
    TooManyRedirects(u8),
    #[error("a redirect without a usable Location: {0}")]
    BadRedirect(String),
    #[error("the transfer failed: {0}")]
    Transport(String),
}

/// Fetches `url` whole. See the module documentation for what is checked.
///
/// Cancel-safe: dropping the future closes the connection.
///
/// # Errors
/// A [`FetchError`]. A body over `max_bytes` is never read further than the network
/// read that passed the limit.
pub async fn fetch(url: &str, s: &FetchSettings) -> Result<Fetched, FetchError> {
    match fetch_if_changed(url, &Validators::default(), s).await? {
        Fetch::Body(f) => Ok(f),
        // Only a conditional request can be answered 304; a server that does anyway
        // gave no body.
        Fetch::NotModified => Err(FetchError::Status(304)),
    }
}

/// Fetches `url` unless it still has `validators` (then [`Fetch::NotModified`]).
///
/// # Errors
/// As [`fetch`].
pub async fn fetch_if_changed(
    url: &str,
    validators: &Validators,
    s: &FetchSettings,
) -> Result<Fetch, FetchError> {
    let deadline = Instant::now() + s.total_timeout;
    match tokio::time::timeout_at(deadline, follow(url, validators, s)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(s.total_timeout)),
    }
}

async fn follow(
    url: &str,
    validators: &Validators,
    s: &FetchSettings,
) -> Result<Fetch, FetchError> {
    let mut url = parse(url)?;
    let mut hops = 0u8;
    loop {
        let response = request(&url, validators, s).await?;
        let status = response.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            if hops >= s.max_redirects {
                return Err(FetchError::TooManyRedirects(s.max_redirects));
            }
            hops += 1;
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FetchError::BadRedirect(format!("HTTP {}", status.as_u16())))?;
            let next = url
                .join(location)
                .map_err(|e| FetchError::BadRedirect(format!("{location:?}: {e}")))?;
            check_scheme(&next)?;
            url = next;
            continue;
        }
        if status == StatusCode::NOT_MODIFIED && !validators.is_empty() {
            return Ok(Fetch::NotModified);
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        return read_body(url, response, s.max_bytes).await.map(Fetch::Body);
    }
}

/// `url` parsed, if it is an absolute `http` or `https` URL with a host.
///
/// # Errors
/// [`FetchError::BadUrl`] or [`FetchError::Scheme`].
pub(crate) fn parse(url: &str) -> Result<Url, FetchError> {
    let parsed = Url::parse(url.trim()).map_err(|e| FetchError::BadUrl(e.to_string()))?;
    check_scheme(&parsed)?;
    Ok(parsed)
}

fn check_scheme(url: &Url) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(FetchError::Scheme(other.to_owned())),
    }
    if url.host().is_none() {
        return Err(FetchError::BadUrl("no host".into()));
    }
    Ok(())
}

/// Resolves the URL's host, checks every address, and sends one GET pinned to them.
async fn request(
    url: &Url,
    validators: &Validators,
    s: &FetchSettings,
) -> Result<reqwest::Response, FetchError> {
    let client = guarded_client(url, &s.guard, s.connect_timeout, &s.user_agent).await?;
    let host_text = url.host_str().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Some(v) = validators
        .etag
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(IF_NONE_MATCH, v);
    }
    if let Some(v) = validators
        .last_modified
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(IF_MODIFIED_SINCE, v);
    }
    client
        .get(url.clone())
        .headers(headers)
        .send()
        .await
        .map_err(|e| send_error(host_text, &e))
}

/// A client for one request to `url`, which may connect only where `guard` allows: the
/// host is resolved here, every address it resolves to is checked (one refused address
/// refuses the host), and the client is pinned to exactly those addresses with
/// `resolve_to_addrs`, so a second DNS answer cannot move the connection. No system
/// proxy, no redirects followed (the caller decides about a `Location`, if at all).
/// Shared with the webhook outbox, whose targets pass the same guard.
///
/// # Errors
/// The URL has no host or port, the host does not resolve, an address is refused
/// ([`FetchError::Denied`]), or the client cannot be built.
pub(crate) async fn guarded_client(
    url: &Url,
    guard: &NetGuard,
    connect_timeout: Duration,
    user_agent: &str,
) -> Result<reqwest::Client, FetchError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadUrl("no port".into()))?;
    let host = url
        .host()
        .ok_or_else(|| FetchError::BadUrl("no host".into()))?;
    let mut builder = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .user_agent(user_agent);
    let host_text = host.to_string();
    match host {
        url::Host::Ipv4(ip) => check(guard, &host_text, IpAddr::V4(ip))?,
        url::Host::Ipv6(ip) => check(guard, &host_text, IpAddr::V6(ip))?,
        url::Host::Domain(name) => {
            let addrs = resolve(name, port).await?;
            for a in &addrs {
                check(guard, name, a.ip())?;
            }
            builder = builder.resolve_to_addrs(name, &addrs);
        }
    }
    builder
        .build()
        .map_err(|e| FetchError::Transport(e.to_string()))
}

async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    let dns = |detail: String| FetchError::Dns {
        host: name.to_owned(),
        detail,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| dns(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(dns("no addresses".into()));
    }
    Ok(addrs)
}

fn check(guard: &NetGuard, host: &str, addr: IpAddr) -> Result<(), FetchError> {
    guard.check(addr).map_err(|why| FetchError::Denied {
        host: host.to_owned(),
        addr,
        why,
    })
}

/// What a failed `send` was: a connect failure (refused, unreachable, TLS, timed out
/// connecting) or another transport failure, with the error's whole chain as text.
pub(crate) fn send_error(host: &str, e: &reqwest::Error) -> FetchError {
    let detail = chain(e);
    if e.is_connect() {
        FetchError::Connect {
            host: host.to_owned(),
            detail,
        }
    } else if e.is_timeout() {
        FetchError::Connect {
            host: host.to_owned(),
            detail: format!("timed out: {detail}"),
        }
    } else {
        FetchError::Transport(detail)
    }
}

/// The error and its sources on one line ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Reads the body chunk by chunk, refusing as soon as it is over `limit`.
async fn read_body(
    url: Url,
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Fetched, FetchError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge { limit });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let content_type = header(CONTENT_TYPE);
    let capacity = response.content_length().unwrap_or(64 * 1024).min(limit);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Transport(chain(&e)))?
    {
        if body.len() as u64 + chunk.len() as u64 > limit {
            // Dropping the response closes the connection: the rest is never read.
            return Err(FetchError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        url,
        body: body.freeze(),
        validators,
        content_type,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;
