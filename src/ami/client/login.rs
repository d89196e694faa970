//! The start of a session: TCP connect, the banner, plain or MD5 login with the
//! `Events:` mask, and the PBX's version — each within `connect_timeout`.
//!
//! Owns the exchanges before `Connected`: events that arrive meanwhile are kept (up to
//! the event queue capacity, the rest counted as dropped) for after it. Never retries:
//! a failure is returned, and the connection task decides when to try again.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::settings::{ClientSettings, LoginMethod};
use super::{ConnectionError, Shared};
use crate::ami::action::{Action, ActionError};
use crate::ami::capture::CaptureStream;
use crate::ami::codec::{AmiCodec, Frame};
use crate::ami::message::{Message, MessageKind};

/// The framed socket of one session.
pub(super) type Conn = Framed<CaptureStream<TcpStream>, AmiCodec>;

/// Bytes read from the AMI socket at a time.
const READ_BUFFER: usize = 64 * 1024;

/// A session that has logged in.
pub(super) struct Login {
    pub(super) conn: Conn,
    pub(super) banner: String,
    pub(super) version: Option<String>,
    /// Events that arrived during login, in order.
    pub(super) early: Vec<Message>,
}

/// Connects to the PBX and logs in.
///
/// # Errors
/// Why no session could start: connect, banner, login or a timeout.
pub(super) async fn connect_and_login(
    s: &ClientSettings,
    shared: &Shared,
) -> Result<Login, ConnectionError> {
    let limit = s.timing.connect_timeout;
    let addr = format!("{}:{}", s.host, s.port);
    let stream = tokio::time::timeout(limit, TcpStream::connect((s.host.as_str(), s.port)))
        .await
        .map_err(|_| ConnectionError::Timeout("connecting"))?
        .map_err(|e| ConnectionError::Connect {
            addr,
            message: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    let stream = CaptureStream::new(stream, shared.capture.clone());
    // A busy PBX sends hundreds of kilobytes a second: 64 KiB reads take ~150 events
    // per syscall (the default 8 KiB, ~20), and each new read region is allocated
    // once per 64 KiB rather than per 8 KiB while earlier messages still hold theirs.
    let mut conn = Framed::with_capacity(stream, AmiCodec::new(s.limits.frame), READ_BUFFER);
    let banner = match tokio::time::timeout(limit, conn.next()).await {
        Err(_) => return Err(ConnectionError::Timeout("waiting for the banner")),
        Ok(None) => return Err(ConnectionError::Closed),
        Ok(Some(Err(e))) => return Err(ConnectionError::Io(e.to_string())),
        Ok(Some(Ok(Frame::Banner(b)))) => b.text().into_owned(),
        Ok(Some(Ok(other))) => return Err(ConnectionError::Banner(format!("{other:?}"))),
    };
    if !banner.starts_with("Asterisk Call Manager") {
        return Err(ConnectionError::Banner(banner));
    }
    let mut early = Early {
        messages: Vec::new(),
        capacity: s.limits.event_queue_capacity,
    };
    let login = async {
        let secret = s.secret.expose();
        let events = s.event_mask.as_str();
        let bad = |e: ActionError| ConnectionError::LoginRejected(e.to_string());
        let login = match s.auth {
            LoginMethod::Plain => Action::login_plain(&s.username, secret, events).map_err(bad)?,
            LoginMethod::Md5 => {
                let challenge = Action::challenge_md5().map_err(bad)?;
                let reply = roundtrip(shared, &mut conn, &challenge, &mut early).await?;
                let nonce = reply
                    .text("Challenge")
                    .filter(|_| reply.is("Response", "Success"))
                    .ok_or_else(|| ConnectionError::LoginRejected(describe(&reply)))?
                    .into_owned();
                Action::login_md5(&s.username, &nonce, secret, events).map_err(bad)?
            }
        };
        let reply = roundtrip(shared, &mut conn, &login, &mut early).await?;
        if !reply.is("Response", "Success") {
            return Err(ConnectionError::LoginRejected(describe(&reply)));
        }
        version(shared, &mut conn, &mut early).await
    };
    let version = tokio::time::timeout(limit, login)
        .await
        .map_err(|_| ConnectionError::Timeout("logging in"))??;
    Ok(Login {
        conn,
        banner,
        version,
        early: early.messages,
    })
}

/// Events read while waiting for a login reply.
struct Early {
    messages: Vec<Message>,
    capacity: usize,
}

/// `Asterisk 22.10.1`: from `CoreSettings`, else from `core show version`.
async fn version(
    shared: &Shared,
    conn: &mut Conn,
    early: &mut Early,
) -> Result<Option<String>, ConnectionError> {
    if let Ok(action) = Action::core_settings() {
        let reply = roundtrip(shared, conn, &action, early).await?;
        if let Some(v) = reply.text("AsteriskVersion").filter(|v| !v.is_empty()) {
            return Ok(Some(format!("Asterisk {v}")));
        }
    }
    if let Ok(action) = Action::command("core show version") {
        let reply = roundtrip(shared, conn, &action, early).await?;
        let first = reply.output_lines().into_iter().next();
        return Ok(first.map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")));
    }
    Ok(None)
}

/// Writes `action` and reads until its response; events that arrive meanwhile are kept
/// (up to the event queue capacity, the rest counted as dropped) for after `Connected`.
async fn roundtrip(
    shared: &Shared,
    conn: &mut Conn,
    action: &Action,
    early: &mut Early,
) -> Result<Message, ConnectionError> {
    let id = shared.action_id();
    conn.send((id.as_str(), action))
        .await
        .map_err(|e| ConnectionError::Io(e.to_string()))?;
    loop {
        match conn.next().await {
            None => return Err(ConnectionError::Closed),
            Some(Err(e)) => return Err(ConnectionError::Io(e.to_string())),
            Some(Ok(Frame::Message(m))) => {
                if m.kind() == MessageKind::Response
                    && m.action_id().is_some_and(|a| a.as_bytes() == id.as_bytes())
                {
                    return Ok(m);
                }
                if m.kind() != MessageKind::Response {
                    if early.messages.len() < early.capacity {
                        early.messages.push(m);
                    } else {
                        shared.status.counters().dropped(1);
                    }
                }
            }
            Some(Ok(Frame::Skipped(s))) => shared.skipped(&s),
            Some(Ok(Frame::Banner(_))) => {}
        }
    }
}

/// A refusal's `Message:`, else its `Response:`.
fn describe(m: &Message) -> String {
    m.text("Message")
        .map(|t| t.into_owned())
        .unwrap_or_else(|| format!("{:?}", m.response()))
}
