//! Serving a finished file from disk — recordings now, attachments later — over GET and
//! HEAD with the validators and the single byte range RFC 9110 describes.
//!
//! The caller (a route that maps a token to a stored file) says what the file must be:
//! its path, size and SHA-256. [`serve`] refuses to send anything else: it checks the
//! open file's size first and sends at most `size` bytes with `Content-Length` always
//! set, so a file that changed since it was described is answered 500, and a file cut
//! while it is sent ends the connection short of its announced length rather than
//! looking complete. The content itself is not re-hashed per request (the files served
//! are never rewritten; a size check costs one `fstat`).
//!
//! Decisions the RFC leaves open:
//! - a `Range` of several ranges (or several `Range` fields) is answered with the whole
//!   file, 200 (RFC 9110 §14.2: a server may ignore `Range`); so is a syntactically
//!   invalid range (`bytes=5-2`, `bytes=x`) or another unit;
//! - `If-Range` holding a date is treated as not matching (the whole file, 200): the
//!   strong `ETag` is what clients resume with, and a date is a weaker validator;
//! - `If-Match` and `If-Unmodified-Since` are not evaluated: these resources are read
//!   only and never change under their token.
//!
//! Errors are answered in the calls family's envelope (`{"code", "message"}`, as
//! `conversation` answers them); the path is logged, never echoed.

use std::borrow::Cow;
use std::io::SeekFrom;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use httpdate::HttpDate;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::conversation::CallError;

/// How much of the file one read of the body takes.
const READ_CHUNK: usize = 64 * 1024;

/// A finished file as the caller knows it.
#[derive(Clone, Debug)]
pub struct ServedFile {
    pub path: PathBuf,
    /// The size it had when it was described; a file on disk of another size is refused.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex: the strong `ETag`.
    pub sha256: String,
    /// `Content-Type` (`audio/wav` for recordings); `application/octet-stream` is sent
    /// when it is not a valid header value.
    pub content_type: Cow<'static, str>,
    /// Sent as `Content-Disposition: attachment` with this file name when set.
    pub download_name: Option<String>,
}

/// Answers `method` on `file` given the request's `headers`: 200 with the whole file,
/// 206 with one range, 304 when the client's copy is current, 416 for a range past the
/// end, 405 for methods other than GET and HEAD, 500 when the file on disk is missing or
/// not `file.size` bytes long. HEAD answers what GET would, without the body.
///
/// Cancel-safe: dropping the future or the response body only closes the file.
pub async fn serve(method: &Method, headers: &HeaderMap, file: ServedFile) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET and HEAD are allowed here.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut opened = match tokio::fs::File::open(&file.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %file.path.display(), error = %e, "a served file cannot be opened");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The file cannot be read on the server.",
            );
        }
    };
    let meta = match opened.metadata().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(path = %file.path.display(), error = %e, "a served file cannot be examined");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The file cannot be read on the server.",
            );
        }
    };
    if meta.len() != file.size {
        tracing::error!(
            path = %file.path.display(),
            on_disk = meta.len(),
            expected = file.size,
            "a served file changed size since it was described; not served"
        );
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "The file on the server has {} bytes, not the {} it was stored with; it is not served.",
                meta.len(),
                file.size
            ),
        );
    }
    let etag = format!("\"{}\"", file.sha256);
    let Ok(etag_value) = HeaderValue::from_str(&etag) else {
        tracing::error!(path = %file.path.display(), "a served file's sha256 is no header value");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The file cannot be read on the server.",
        );
    };
    let modified = meta.modified().ok().map(HttpDate::from);
    let mut validators = HeaderMap::new();
    validators.insert(header::ETAG, etag_value);
    if let Some(m) = modified {
        insert_text(&mut validators, header::LAST_MODIFIED, &m.to_string());
    }

    if not_modified(headers, &etag, modified) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().extend(validators);
        return response;
    }

    let ask = if method == Method::GET && if_range_holds(headers, &etag) {
        range(headers, file.size)
    } else {
        Ask::Whole
    };
    let (status, start, len) = match ask {
        Ask::Whole => (StatusCode::OK, 0, file.size),
        Ask::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Ask::Unsatisfiable => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "The range asked for is outside the file's {} bytes.",
                    file.size
                ),
            );
            insert_text(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{}", file.size),
            );
            return response;
        }
    };

    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        if let Err(e) = opened.seek(SeekFrom::Start(start)).await {
            tracing::error!(path = %file.path.display(), error = %e, "a served file cannot be read");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The file cannot be read on the server.",
            );
        }
        // At most `len` bytes, whatever the file does meanwhile: with Content-Length set, a
        // file cut short ends the connection early instead of passing for complete.
        Body::from_stream(ReaderStream::with_capacity(opened.take(len), READ_CHUNK))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.extend(validators);
    insert_text(h, header::CONTENT_LENGTH, &len.to_string());
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        insert_text(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{}", start + len - 1, file.size),
        );
    }
    if let Some(name) = &file.download_name {
        insert_text(h, header::CONTENT_DISPOSITION, &content_disposition(name));
    }
    response
}

/// An error in the envelope.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(CallError {
            code: status.as_u16(),
            message: message.into(),
        }),
    )
        .into_response()
}

/// Inserts text this module built from digits, hex and `attr-char`s (always a valid
/// header value).
fn insert_text(headers: &mut HeaderMap, name: HeaderName, text: &str) {
    if let Ok(v) = HeaderValue::from_str(text) {
        headers.insert(name, v);
    }
}

/// Every comma-separated element of every `name` field, trimmed, empty ones dropped
/// (RFC 9110 §5.6.1: recipients accept empty list elements).
fn list<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// RFC 9110 §13.1.2 and §13.1.3, in the order of §13.2.2: `If-None-Match` (weak
/// comparison, `*` matches the existing file) decides when present; otherwise
/// `If-Modified-Since` when it parses and the file has a modification time.
fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<HttpDate>) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        return list(headers, &header::IF_NONE_MATCH)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<HttpDate>().ok());
    matches!((since, modified), (Some(since), Some(m)) if m <= since)
}

/// RFC 9110 §13.1.5: without `If-Range` the range is honoured; with it, only when it is
/// our strong `ETag` (strong comparison: a weak tag or a date never matches).
fn if_range_holds(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| v.trim() == etag),
    }
}

/// What a request's `Range` asks of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// No range, or one this module ignores: the whole file.
    Whole,
    /// Bytes `first..=last`, both within the file.
    Part { first: u64, last: u64 },
    /// One range, wholly past the end (or an empty suffix): 416.
    Unsatisfiable,
}

/// The request's `Range` (RFC 9110 §14.1.1):
///
/// ```text
/// ranges-specifier = range-unit "=" range-set
/// range-set        = 1#range-spec
/// range-spec       = int-range / suffix-range / other-range
/// int-range        = first-pos "-" [ last-pos ]
/// suffix-range     = "-" suffix-length
/// ```
///
/// Only one `bytes` range is served; anything else is the whole file.
fn range(headers: &HeaderMap, size: u64) -> Ask {
    let mut fields = headers.get_all(header::RANGE).iter();
    let (Some(field), None) = (fields.next(), fields.next()) else {
        return Ask::Whole;
    };
    let Some((unit, set)) = field.to_str().ok().and_then(|v| v.split_once('=')) else {
        return Ask::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ask::Whole;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return Ask::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ask::Whole;
    };
    match (
        number(first),
        number(last),
        first.is_empty(),
        last.is_empty(),
    ) {
        // -n: the last n bytes (all of them when the file is shorter).
        (None, Some(n), true, false) => {
            if n == 0 || size == 0 {
                Ask::Unsatisfiable
            } else {
                Ask::Part {
                    first: size - n.min(size),
                    last: size - 1,
                }
            }
        }
        // a- and a-b: from a to b or the end.
        (Some(a), b, false, open) if open || b.is_some() => {
            let last = b.unwrap_or(u64::MAX);
            if last < a {
                Ask::Whole
            } else if a >= size {
                Ask::Unsatisfiable
            } else {
                Ask::Part {
                    first: a,
                    last: last.min(size - 1),
                }
            }
        }
        _ => Ask::Whole,
    }
}

/// 1*DIGIT as a number (`str::parse` alone would take a leading `+`); `None` when empty,
/// not digits, or too large.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `attachment` with the name as a quoted ASCII `filename` (anything outside printable
/// ASCII, and `"`, `\`, `/`, `%`, replaced by `_`) and, when that lost something, the
/// exact name as RFC 8187's `filename*=UTF-8''…` (percent-encoded outside `attr-char`).
fn content_disposition(name: &str) -> String {
    // A path is never sent: only its last part, as browsers would save it.
    let name = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%') => c,
            _ => '_',
        })
        .collect();
    let mut value = format!("attachment; filename=\"{fallback}\"");
    if fallback != name {
        value.push_str("; filename*=UTF-8''");
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                value.push(char::from(b));
            } else {
                value.push_str(&format!("%{b:02X}"));
            }
        }
    }
    value
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn with(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ask(value: &str, size: u64) -> Ask {
        range(&with(&[(header::RANGE, value)]), size)
    }

    #[test]
    fn each_single_range_form_selects_its_bytes() {
        assert_eq!(ask("bytes=0-9", 100), Ask::Part { first: 0, last: 9 });
        assert_eq!(
            ask("bytes=10-", 100),
            Ask::Part {
                first: 10,
                last: 99
            }
        );
        assert_eq!(
            ask("bytes=-10", 100),
            Ask::Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            ask("bytes=99-99", 100),
            Ask::Part {
                first: 99,
                last: 99
            }
        );
        // A last position past the end stops at the end; a suffix longer than the file
        // is the whole file (as a range).
        assert_eq!(
            ask("bytes=50-1000", 100),
            Ask::Part {
                first: 50,
                last: 99
            }
        );
        assert_eq!(ask("bytes=-1000", 100), Ask::Part { first: 0, last: 99 });
        // The unit is case-insensitive; whitespace around list elements is allowed, and
        // an empty element is none.
        assert_eq!(ask("Bytes= 5-6 ,", 100), Ask::Part { first: 5, last: 6 });
    }

    #[test]
    fn a_range_starting_past_the_end_or_an_empty_suffix_is_unsatisfiable() {
        assert_eq!(ask("bytes=100-", 100), Ask::Unsatisfiable);
        assert_eq!(ask("bytes=100-200", 100), Ask::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 100), Ask::Unsatisfiable);
        assert_eq!(ask("bytes=0-", 0), Ask::Unsatisfiable);
        assert_eq!(ask("bytes=-5", 0), Ask::Unsatisfiable);
    }

    #[test]
    fn invalid_multiple_or_foreign_ranges_are_ignored_for_the_whole_file() {
        for value in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=-",
            "bytes=",
            "bytes=1",
            "bytes 0-1",
            "bytes=99999999999999999999-",
            "bytes=--1",
        ] {
            assert_eq!(ask(value, 100), Ask::Whole, "{value}");
        }
        let two = with(&[(header::RANGE, "bytes=0-1"), (header::RANGE, "bytes=2-3")]);
        assert_eq!(range(&two, 100), Ask::Whole);
        assert_eq!(range(&HeaderMap::new(), 100), Ask::Whole);
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_if_modified_since() {
        let etag = "\"abc\"";
        let t = HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        let later = HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000));
        for (value, hit) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
        ] {
            assert_eq!(
                not_modified(&with(&[(header::IF_NONE_MATCH, value)]), etag, Some(t)),
                hit,
                "{value}"
            );
        }
        // A mismatching tag means "send it", whatever If-Modified-Since says.
        let both = with(&[
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, &later.to_string()),
        ]);
        assert!(!not_modified(&both, etag, Some(t)));
    }

    #[test]
    fn if_modified_since_holds_for_a_file_not_changed_since() {
        let t = HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        let before = HttpDate::from(SystemTime::UNIX_EPOCH + Duration::from_secs(999_999));
        let ims = |d: &HttpDate| with(&[(header::IF_MODIFIED_SINCE, &d.to_string())]);
        assert!(not_modified(&ims(&t), "\"a\"", Some(t)));
        assert!(!not_modified(&ims(&before), "\"a\"", Some(t)));
        assert!(!not_modified(&ims(&t), "\"a\"", None));
        assert!(!not_modified(
            &with(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
            "\"a\"",
            Some(t)
        ));
        assert!(!not_modified(&HeaderMap::new(), "\"a\"", Some(t)));
    }

    #[test]
    fn if_range_holds_only_for_our_strong_etag() {
        let etag = "\"abc\"";
        assert!(if_range_holds(&HeaderMap::new(), etag));
        assert!(if_range_holds(
            &with(&[(header::IF_RANGE, "\"abc\"")]),
            etag
        ));
        for value in ["W/\"abc\"", "\"abd\"", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert!(
                !if_range_holds(&with(&[(header::IF_RANGE, value)]), etag),
                "{value}"
            );
        }
    }

    #[test]
    fn a_download_name_is_quoted_safely_with_the_exact_name_beside_it() {
        assert_eq!(
            content_disposition("rec-1.wav"),
            "attachment; filename=\"rec-1.wav\""
        );
        assert_eq!(
            content_disposition("a \"b\"%.wav"),
            "attachment; filename=\"a _b__.wav\"; filename*=UTF-8''a%20%22b%22%25.wav"
        );
        assert_eq!(
            content_disposition("Запись.wav"),
            "attachment; filename=\"______.wav\"; filename*=UTF-8''%D0%97%D0%B0%D0%BF%D0%B8%D1%81%D1%8C.wav"
        );
        assert_eq!(
            content_disposition("../../etc/x\r\n.wav"),
            "attachment; filename=\"x__.wav\"; filename*=UTF-8''x%0D%0A.wav"
        );
        assert_eq!(
            content_disposition("dir\\win.wav"),
            "attachment; filename=\"win.wav\""
        );
        for name in ["a\"b", "x\r\ny", "Запись", "~!#$&+-.^_`|"] {
            assert!(
                HeaderValue::from_str(&content_disposition(name)).is_ok(),
                "{name}"
            );
        }
    }

    /// A file served by a tiny router on a real listener, as the recordings route will.
    struct Site {
        url: String,
        path: PathBuf,
        content: Vec<u8>,
        _dir: tempfile::TempDir,
    }

    async fn site(content: Vec<u8>, download_name: Option<&str>) -> Site {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        std::fs::write(&path, &content).unwrap();
        let file = ServedFile {
            path: path.clone(),
            size: content.len() as u64,
            sha256: hex::encode(Sha256::digest(&content)),
            content_type: Cow::Borrowed("audio/wav"),
            download_name: download_name.map(str::to_owned),
        };
        let app = axum::Router::new().route(
            "/f",
            axum::routing::any(move |method: Method, headers: HeaderMap| {
                let file = file.clone();
                async move { serve(&method, &headers, file).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/f", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Site {
            url,
            path,
            content,
            _dir: dir,
        }
    }

    fn sample() -> Vec<u8> {
        (0..1000u32).map(|i| (i * 7 % 256) as u8).collect()
    }

    async fn send(
        site: &Site,
        method: reqwest::Method,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new().request(method, &site.url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    fn text(r: &reqwest::Response, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn expected_etag(content: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        format!("\"{}\"", hex::encode(Sha256::digest(content)))
    }

    #[tokio::test]
    async fn get_sends_the_whole_file_with_its_validators_and_length() {
        let site = site(sample(), Some("rec 1.wav")).await;
        let r = send(&site, reqwest::Method::GET, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(text(&r, "content-length").as_deref(), Some("1000"));
        assert_eq!(text(&r, "content-type").as_deref(), Some("audio/wav"));
        assert_eq!(text(&r, "accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(
            text(&r, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(text(&r, "etag"), Some(expected_etag(&site.content)));
        let modified = std::fs::metadata(&site.path).unwrap().modified().unwrap();
        assert_eq!(
            text(&r, "last-modified"),
            Some(HttpDate::from(modified).to_string())
        );
        assert_eq!(
            text(&r, "content-disposition").as_deref(),
            Some("attachment; filename=\"rec 1.wav\"")
        );
        assert_eq!(text(&r, "content-range"), None);
        assert_eq!(r.bytes().await.unwrap(), site.content);
    }

    #[tokio::test]
    async fn head_sends_the_same_headers_and_no_body() {
        let site = site(sample(), None).await;
        let r = send(&site, reqwest::Method::HEAD, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(text(&r, "content-length").as_deref(), Some("1000"));
        assert_eq!(text(&r, "etag"), Some(expected_etag(&site.content)));
        assert_eq!(text(&r, "accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(text(&r, "content-disposition"), None);
        assert!(r.bytes().await.unwrap().is_empty());
        // HEAD ignores Range (RFC 9110 §14.2: only GET has ranges).
        let r = send(&site, reqwest::Method::HEAD, &[("range", "bytes=0-9")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(text(&r, "content-length").as_deref(), Some("1000"));
    }

    #[tokio::test]
    async fn each_range_form_is_answered_206_with_its_bytes_and_content_range() {
        let site = site(sample(), None).await;
        for (range, first, last) in [
            ("bytes=0-9", 0usize, 9usize),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=500-5000", 500, 999),
        ] {
            let r = send(&site, reqwest::Method::GET, &[("range", range)]).await;
            assert_eq!(r.status(), 206, "{range}");
            assert_eq!(
                text(&r, "content-range"),
                Some(format!("bytes {first}-{last}/1000")),
                "{range}"
            );
            assert_eq!(
                text(&r, "content-length"),
                Some((last - first + 1).to_string())
            );
            assert_eq!(text(&r, "etag"), Some(expected_etag(&site.content)));
            assert_eq!(
                r.bytes().await.unwrap(),
                site.content[first..=last],
                "{range}"
            );
        }
    }

    #[tokio::test]
    async fn a_range_past_the_end_is_416_with_the_size() {
        let site = site(sample(), None).await;
        let r = send(&site, reqwest::Method::GET, &[("range", "bytes=1000-")]).await;
        assert_eq!(r.status(), 416);
        assert_eq!(text(&r, "content-range").as_deref(), Some("bytes */1000"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], 416);
        assert!(
            body["message"].as_str().unwrap().contains("1000 bytes"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn multiple_ranges_get_the_whole_file() {
        let site = site(sample(), None).await;
        let r = send(&site, reqwest::Method::GET, &[("range", "bytes=0-1,5-6")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), site.content);
    }

    #[tokio::test]
    async fn a_current_copy_is_answered_304_without_a_body() {
        let site = site(sample(), None).await;
        let etag = expected_etag(&site.content);
        let r = send(&site, reqwest::Method::GET, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status(), 304);
        assert_eq!(text(&r, "etag"), Some(etag.clone()));
        assert!(text(&r, "last-modified").is_some());
        assert!(r.bytes().await.unwrap().is_empty());
        let modified = send(&site, reqwest::Method::GET, &[]).await;
        let since = text(&modified, "last-modified").unwrap();
        let r = send(
            &site,
            reqwest::Method::GET,
            &[("if-modified-since", &since)],
        )
        .await;
        assert_eq!(r.status(), 304);
        let r = send(&site, reqwest::Method::HEAD, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status(), 304);
        let r = send(
            &site,
            reqwest::Method::GET,
            &[("if-none-match", "\"stale\"")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), site.content);
    }

    #[tokio::test]
    async fn if_range_with_another_etag_gets_the_whole_file_and_with_ours_the_range() {
        let site = site(sample(), None).await;
        let etag = expected_etag(&site.content);
        let r = send(
            &site,
            reqwest::Method::GET,
            &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(text(&r, "content-range"), None);
        assert_eq!(r.bytes().await.unwrap(), site.content);
        let r = send(
            &site,
            reqwest::Method::GET,
            &[("range", "bytes=0-9"), ("if-range", &etag)],
        )
        .await;
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), site.content[..10]);
    }

    #[tokio::test]
    async fn a_file_whose_size_changed_is_refused_in_the_envelope() {
        let site = site(sample(), None).await;
        let mut longer = site.content.clone();
        longer.extend_from_slice(b"more");
        std::fs::write(&site.path, &longer).unwrap();
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = send(&site, method.clone(), &[]).await;
            assert_eq!(r.status(), 500, "{method}");
            assert_eq!(text(&r, "etag"), None);
        }
        let r = send(&site, reqwest::Method::GET, &[("range", "bytes=0-9")]).await;
        assert_eq!(r.status(), 500);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], 500);
        assert_eq!(
            body["message"],
            "The file on the server has 1004 bytes, not the 1000 it was stored with; it is not served."
        );
        std::fs::remove_file(&site.path).unwrap();
        let r = send(&site, reqwest::Method::GET, &[]).await;
        assert_eq!(r.status(), 500);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["message"], "The file cannot be read on the server.");
    }

    #[tokio::test]
    async fn a_file_cut_while_it_is_sent_fails_the_download_instead_of_ending_it() {
        // Larger than what the socket buffers hold, so most of it is read after the cut.
        let content: Vec<u8> = (0..32 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        let site = site(content, None).await;
        let mut r = send(&site, reqwest::Method::GET, &[]).await;
        assert_eq!(r.status(), 200);
        let mut got = r.chunk().await.unwrap().unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&site.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let end = loop {
            match r.chunk().await {
                Ok(Some(c)) => got += c.len(),
                Ok(None) => break Ok(got),
                Err(e) => break Err(e),
            }
        };
        assert!(end.is_err(), "the body ended cleanly after {got} bytes");
        assert!(got < site.content.len());
    }

    #[tokio::test]
    async fn methods_other_than_get_and_head_are_405_with_allow() {
        let site = site(sample(), None).await;
        let r = send(&site, reqwest::Method::POST, &[]).await;
        assert_eq!(r.status(), 405);
        assert_eq!(text(&r, "allow").as_deref(), Some("GET, HEAD"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], 405);
    }

    #[tokio::test]
    async fn a_content_type_that_is_no_header_value_is_sent_as_octet_stream() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"abc").unwrap();
        let file = ServedFile {
            path,
            size: 3,
            sha256: hex::encode(Sha256::digest(b"abc")),
            content_type: Cow::Owned("audio/wav\r\nx: y".into()),
            download_name: None,
        };
        let r = serve(&Method::GET, &HeaderMap::new(), file).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
    }
}
