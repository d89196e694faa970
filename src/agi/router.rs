//! Which handler serves a session: routes by the script path of
//! `agi://host:port/<path>?<query>`, with `{name}` path parameters.
//!
//! Owns route patterns, the typed [`Request`] a handler receives, and the
//! [`Handler`] trait. It must never know what a route does: handlers live in the
//! application layer (`crate::routes`), which registers them here.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::env::AgiEnv;
use super::session::Session;
use super::text::AgiText;

/// What a handler may fail with; the server logs it, never sends it to Asterisk.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A handler's outcome.
pub type HandlerResult = Result<(), BoxError>;
/// The future a handler returns, borrowing the session.
pub type HandlerFuture<'s> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 's>>;

/// Serves one AGI session. Implemented for any function
/// `fn(Request, &mut Session) -> HandlerFuture<'_>` (closures rarely infer the
/// higher-ranked lifetime; a named `fn` or a struct implementing this trait does):
///
/// ```
/// use medcall::agi::{HandlerFuture, Request, Router, Session};
/// fn hello<'s>(request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
///     Box::pin(async move {
///         let name = request.param("name").unwrap_or("world").to_string();
///         session.set_variable("GREETING", &format!("hello {name}")).await?;
///         Ok(())
///     })
/// }
/// assert!(Router::new().route("hello/{name}", hello).is_ok());
/// ```
pub trait Handler: Send + Sync + 'static {
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s>;
}

impl<F> Handler for F
where
    F: for<'s> Fn(Request, &'s mut Session) -> HandlerFuture<'s> + Send + Sync + 'static,
{
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        self(request, session)
    }
}

/// Caller id as the channel had it when AGI started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    pub number: AgiText,
    pub name: AgiText,
}

/// Everything a handler knows about the call before sending a command.
#[derive(Debug, Clone)]
pub struct Request {
    /// The pattern that matched (`calls/{id}`), for logs and metrics.
    pub route: &'static str,
    /// The script path as sent, query removed (`calls/42`).
    pub path: String,
    /// Names are the route pattern's own text.
    params: Vec<(&'static str, String)>,
    query: Vec<(String, String)>,
    /// `agi_arg_1…N`, in order: the arguments after the URL in `AGI(url,a,b)`.
    pub args: Vec<AgiText>,
    pub channel: String,
    /// `agi_uniqueid`: links this session to the channel's AMI events.
    pub uniqueid: String,
    /// `agi_linkedid` (absent before Asterisk sends it: empty).
    pub linkedid: String,
    pub caller_id: CallerId,
    pub account_code: String,
    pub context: String,
    pub extension: String,
    pub priority: String,
    /// The PBX address the session came from.
    pub peer: SocketAddr,
    /// The whole environment, unknown variables included.
    pub env: AgiEnv,
}

impl Request {
    /// A `{name}` path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query argument (`?name=value`), percent-decoded; the first if repeated.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every query argument in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    fn from_env(
        env: AgiEnv,
        peer: SocketAddr,
        route: &'static str,
        path: String,
        params: Vec<(&'static str, String)>,
        query: Vec<(String, String)>,
    ) -> Request {
        // One pass over the environment; the first of a repeated name wins, as in
        // `AgiEnv::get`.
        let mut known: [Option<usize>; 9] = [None; 9];
        for (i, (name, _)) in env.pairs().enumerate() {
            let slot = match name {
                b"agi_channel" => 0,
                b"agi_uniqueid" => 1,
                b"agi_linkedid" => 2,
                b"agi_callerid" => 3,
                b"agi_calleridname" => 4,
                b"agi_accountcode" => 5,
                b"agi_context" => 6,
                b"agi_extension" => 7,
                b"agi_priority" => 8,
                _ => continue,
            };
            if let Some(none @ None) = known.get_mut(slot) {
                *none = Some(i);
            }
        }
        let [
            channel,
            uniqueid,
            linkedid,
            number,
            name,
            account_code,
            context,
            extension,
            priority,
        ] = known;
        let text = |i: Option<usize>| i.and_then(|i| env.value(i)).map(lossy).unwrap_or_default();
        let agi_text = |i: Option<usize>| i.and_then(|i| env.value_text(i)).unwrap_or_default();
        Request {
            route,
            path,
            params,
            query,
            args: env.args(),
            channel: text(channel),
            uniqueid: text(uniqueid),
            linkedid: text(linkedid),
            caller_id: CallerId {
                number: agi_text(number),
                name: agi_text(name),
            },
            account_code: text(account_code),
            context: text(context),
            extension: text(extension),
            priority: text(priority),
            peer,
            env,
        }
    }
}

/// `bytes` as text, invalid UTF-8 replaced (one copy when it is valid, as it
/// almost always is).
fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A route pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("route pattern {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("route pattern {0:?} is registered twice")]
    Duplicate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

struct Route {
    pattern: &'static str,
    segments: Vec<Segment>,
    handler: Arc<dyn Handler>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

/// Maps script paths to handlers.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    by_literal: HashMap<String, usize>,
}

/// A resolved session: the handler and the request it receives.
pub struct Resolved {
    pub handler: Arc<dyn Handler>,
    pub request: Request,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// Why a session found no handler; the server answers `MEDCALL_STATUS=NOROUTE`.
#[derive(Debug)]
pub struct NoRoute {
    /// The script path asked for (empty when Asterisk sent none).
    pub path: String,
    pub env: AgiEnv,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Registers `handler` for `pattern`: segments separated by `/`, `{name}` for a
    /// parameter (`calls/{id}/hold`). Literal segments match exactly; routes are tried
    /// in registration order, all-literal routes first.
    ///
    /// # Errors
    /// An empty segment, or a pattern registered twice.
    pub fn route(
        mut self,
        pattern: &'static str,
        handler: impl Handler,
    ) -> Result<Router, PatternError> {
        let trimmed = pattern.trim_matches('/');
        let mut segments = Vec::new();
        for part in trimmed.split('/') {
            if part.is_empty() {
                return Err(PatternError::EmptySegment(pattern.to_string()));
            }
            segments.push(
                match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !name.is_empty() => Segment::Param(name),
                    _ => Segment::Literal(part),
                },
            );
        }
        let same_shape = |a: &[Segment]| {
            a.len() == segments.len()
                && a.iter().zip(&segments).all(|pair| match pair {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
        };
        if self.routes.iter().any(|r| same_shape(&r.segments)) {
            return Err(PatternError::Duplicate(pattern.to_string()));
        }
        if segments.iter().all(|s| matches!(s, Segment::Literal(_))) {
            self.by_literal
                .insert(trimmed.to_string(), self.routes.len());
        }
        self.routes.push(Route {
            pattern,
            segments,
            handler: Arc::new(handler),
        });
        Ok(self)
    }

    /// Finds the handler for a session's environment.
    ///
    /// # Errors
    /// [`NoRoute`] when no pattern matches `agi_network_script`.
    pub fn resolve(&self, env: AgiEnv, peer: SocketAddr) -> Result<Resolved, NoRoute> {
        let script = env.network_script().unwrap_or_default();
        let script = match std::str::from_utf8(script) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(script),
        };
        let (path_part, query_part) = script.split_once('?').unwrap_or((&script, ""));
        let path = path_part.trim_matches('/');
        let found = match self.by_literal.get(path) {
            Some(&i) => self.routes.get(i).map(|r| (r, Vec::new())),
            None => self
                .routes
                .iter()
                .find_map(|r| match_segments(&r.segments, path).map(|p| (r, p))),
        };
        let path = path.to_string();
        match found {
            Some((route, params)) => {
                let query = parse_query(query_part);
                drop(script);
                Ok(Resolved {
                    handler: Arc::clone(&route.handler),
                    request: Request::from_env(env, peer, route.pattern, path, params, query),
                })
            }
            None => {
                drop(script);
                Err(NoRoute { path, env })
            }
        }
    }
}

fn match_segments(segments: &[Segment], path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut parts = path.split('/');
    for segment in segments {
        let part = parts.next()?;
        match segment {
            Segment::Literal(l) if *l == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(_) if part.is_empty() => return None,
            Segment::Param(name) => params.push((*name, percent_decode(part))),
        }
    }
    parts.next().is_none().then_some(params)
}

/// `a=1&b=x%20y&flag` → `[(a, 1), (b, "x y"), (flag, "")]`.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `%XX` and `+` decoding; invalid escapes stay as they are, invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return s.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                // Two hex digits fit a byte.
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agi::env::{EnvLimits, parse_env};

    fn noop<'s>(_: Request, _: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async { Ok(()) })
    }

    fn env(script: &str) -> AgiEnv {
        let text = format!(
            "agi_network_script: {script}\nagi_channel: Local/x;1\nagi_uniqueid: 1.2\nagi_arg_1: a b\nagi_arg_2: \"q\"\n\n"
        );
        parse_env(text.as_bytes(), EnvLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    #[test]
    fn routes_match_literals_parameters_and_query_arguments() {
        let router = Router::new()
            .route("diagnostics", noop)
            .unwrap()
            .route("calls/{id}/hold", noop)
            .unwrap()
            .route("calls/{id}", noop)
            .unwrap();
        let r = router.resolve(env("diagnostics"), peer()).unwrap().request;
        assert_eq!(r.route, "diagnostics");
        assert_eq!(r.uniqueid, "1.2");
        assert_eq!(r.args, vec![AgiText::from("a b"), AgiText::from("\"q\"")]);

        let r = router
            .resolve(env("calls/42%2F7/hold?who=%D0%B4%D0%B0&x=a+b&flag"), peer())
            .unwrap()
            .request;
        assert_eq!(r.route, "calls/{id}/hold");
        assert_eq!(r.param("id"), Some("42/7"));
        assert_eq!(r.query("who"), Some("да"));
        assert_eq!(r.query("x"), Some("a b"));
        assert_eq!(r.query("flag"), Some(""));

        let r = router.resolve(env("/calls/9/"), peer()).unwrap().request;
        assert_eq!(r.route, "calls/{id}");
        assert_eq!(r.param("id"), Some("9"));
    }

    #[test]
    fn unknown_paths_and_missing_scripts_find_no_route() {
        let router = Router::new().route("calls/{id}", noop).unwrap();
        for script in ["", "calls", "calls/1/2", "other", "calls//"] {
            assert!(router.resolve(env(script), peer()).is_err(), "{script:?}");
        }
        let empty = parse_env(b"\n", EnvLimits::default()).unwrap().unwrap().0;
        assert_eq!(router.resolve(empty, peer()).unwrap_err().path, "");
    }

    #[test]
    fn bad_or_duplicate_patterns_are_refused() {
        assert!(matches!(
            Router::new().route("a//b", noop),
            Err(PatternError::EmptySegment(_))
        ));
        assert!(matches!(
            Router::new()
                .route("a/{x}", noop)
                .unwrap()
                .route("a/{y}", noop),
            Err(PatternError::Duplicate(_))
        ));
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
