//! The AMI client: one task owns the socket to one PBX; a cloneable [`AmiClient`]
//! handle sends actions to it and subscribes to its events.
//!
//! Owns the session's life: connect, banner, plain or MD5 login with the `Events:` mask,
//! the PBX version, `ActionID` correlation, list collection, `Ping` keepalive, reconnect
//! forever with backoff and jitter, `Logoff` on shutdown. It never re-sends an action:
//! one not yet written when the connection drops fails as [`AmiError::NotSent`], one
//! written but unanswered as [`AmiError::OutcomeUnknown`]. It knows nothing of SQL, HTTP
//! or the clinic: consumers translate events into their own terms.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::action::{Action, ActionError};
use super::capture::{Capture, CaptureSettings, CaptureStream};
use super::codec::{AmiCodec, Frame, Limits};
use super::events::{AmiEvent, EventStream, FanOut};
use super::message::{Message, MessageKind};
use crate::config::{AmiAuth, AmiConfig, PbxConfig, Secret};

/// Everything one client needs: where the PBX is, how to log in, how to behave.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The PBX's name, for logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    pub auth: AmiAuth,
    pub ami: AmiConfig,
}

impl ClientSettings {
    pub fn from_config(pbx: &PbxConfig, ami: &AmiConfig) -> ClientSettings {
        ClientSettings {
            name: pbx.name.clone(),
            host: pbx.host.clone(),
            port: pbx.port,
            username: pbx.username.clone(),
            secret: pbx.secret.clone(),
            auth: pbx.auth,
            ami: ami.clone(),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.ami.max_message_bytes,
            max_headers: self.ami.max_headers,
        }
    }
}

/// Why an action got no (usable) answer.
#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("not connected to the PBX: the action was not sent")]
    NotSent,
    #[error("the connection was lost after the action was sent: its outcome is unknown")]
    OutcomeUnknown,
    #[error("no reply within {0:?}: the outcome is unknown")]
    Timeout(Duration),
    #[error("the PBX refused {action}: {message}")]
    Failed {
        action: String,
        message: String,
        response: Box<Message>,
    },
    #[error("the list answer had more than {0} items")]
    ListTooLong(usize),
    #[error("the AMI client has stopped")]
    Stopped,
    #[error(transparent)]
    Action(#[from] ActionError),
}

/// Why a session could not start or ended. Cloneable: it is also reported in status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("login rejected: {0}")]
    LoginRejected(String),
    #[error("not an AMI server (first line {0:?})")]
    Banner(String),
    #[error("AMI socket: {0}")]
    Io(String),
    #[error("the PBX closed the connection")]
    Closed,
    #[error("no reply to Ping within {0:?}")]
    PingDeadline(Duration),
    #[error("shutting down")]
    Shutdown,
}

/// Connection state as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Disconnected,
    Connecting,
    Connected,
}

/// A snapshot of one client's connection and counters.
#[derive(Debug, Clone)]
pub struct ClientStatus {
    pub state: ClientState,
    pub version: Option<String>,
    pub connected_since: Option<DateTime<Utc>>,
    /// Connection attempts, successful or not, since start.
    pub connect_attempts: u64,
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_received: u64,
    /// Event deliveries lost because a consumer's queue was full.
    pub events_dropped: u64,
    /// Incoming messages skipped: over a size limit or malformed.
    pub messages_skipped: u64,
    pub last_error: Option<String>,
}

/// Called with the status after every change (connection state, each event). It runs
/// on the connection task with the status locked: it must be quick and never block.
pub type StatusHook = Arc<dyn Fn(&ClientStatus) + Send + Sync>;

/// A list action's answer: the response, the items, and the closing `…Complete` event.
#[derive(Debug, Clone, Default)]
pub struct ListReply {
    /// `None` for an empty `ConfbridgeList`/`ConfbridgeListRooms` (answered with an error).
    pub response: Option<Message>,
    pub items: Vec<Message>,
    pub complete: Option<Message>,
}

#[derive(Debug)]
enum ReplyKind {
    Single,
    List,
}

#[derive(Debug)]
enum Reply {
    Single(Message),
    List(ListReply),
}

#[derive(Debug)]
struct Request {
    action: Action,
    kind: ReplyKind,
    reply: oneshot::Sender<Result<Reply, AmiError>>,
}

/// The per-event figures of a connection, kept apart from [`ClientStatus`] as atomics:
/// they change with every event, and a lock (plus a status hook) per event cost more
/// than parsing it.
#[derive(Debug, Default)]
pub struct EventCounters {
    received: AtomicU64,
    dropped: AtomicU64,
    /// Microseconds since the epoch; 0 for "none yet".
    last_event_micros: AtomicI64,
}

impl EventCounters {
    /// Events received, deliveries dropped, and when the last event arrived.
    pub fn read(&self) -> (u64, u64, Option<DateTime<Utc>>) {
        let micros = self.last_event_micros.load(Ordering::Relaxed);
        let last = (micros != 0)
            .then(|| DateTime::from_timestamp_micros(micros))
            .flatten();
        (
            self.received.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            last,
        )
    }

    /// Copies the figures into `status`.
    pub fn fill(&self, status: &mut ClientStatus) {
        (
            status.events_received,
            status.events_dropped,
            status.last_event_at,
        ) = self.read();
    }
}

struct Shared {
    name: String,
    status: Mutex<ClientStatus>,
    counters: Arc<EventCounters>,
    hook: Option<StatusHook>,
    fan_out: FanOut,
    next_id: AtomicU64,
    /// Random per client: events such as `OriginateResponse` go to every AMI session of
    /// the PBX, so ActionIDs must not repeat across clients (or daemons) on one PBX.
    id_prefix: String,
    /// Raw byte capture (`[ami] capture_dir`), when on.
    capture: Option<Capture>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("name", &self.name).finish()
    }
}

/// Starts the capture writer when `[ami] capture_dir` is set; a failure is logged and
/// the connection runs without capture.
fn start_capture(settings: &ClientSettings) -> Option<Capture> {
    let dir = settings
        .ami
        .capture_dir
        .as_ref()
        .filter(|d| !d.as_os_str().is_empty())?;
    let capture = CaptureSettings {
        dir: dir.clone(),
        rotate_bytes: settings.ami.capture_rotate_bytes,
        keep_files: settings.ami.capture_keep_files,
    };
    match Capture::start(capture, &settings.name) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(pbx = %settings.name, dir = %dir.display(), error = %e, "cannot start AMI capture");
            None
        }
    }
}

impl Shared {
    fn new(settings: &ClientSettings, hook: Option<StatusHook>) -> Arc<Shared> {
        Arc::new(Shared {
            name: settings.name.clone(),
            status: Mutex::new(ClientStatus {
                state: ClientState::Disconnected,
                version: None,
                connected_since: None,
                connect_attempts: 0,
                last_event_at: None,
                events_received: 0,
                events_dropped: 0,
                messages_skipped: 0,
                last_error: None,
            }),
            counters: Arc::new(EventCounters::default()),
            hook,
            fan_out: FanOut::new(settings.ami.event_queue_capacity),
            next_id: AtomicU64::new(1),
            id_prefix: format!("mc-{:08x}", rand::random::<u32>()),
            capture: start_capture(settings),
        })
    }

    fn update(&self, f: impl FnOnce(&mut ClientStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
        self.counters.fill(&mut status);
        if let Some(hook) = &self.hook {
            hook(&status);
        }
    }

    fn action_id(&self) -> String {
        format!(
            "{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn publish(&self, event: &AmiEvent) {
        let dropped = self.fan_out.publish(event);
        if dropped > 0 {
            self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if matches!(event, AmiEvent::Message(_)) {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            self.counters
                .last_event_micros
                .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
        }
    }

    fn skipped(&self, reason: &super::codec::Skipped) {
        tracing::error!(pbx = %self.name, reason = %reason.reason, bytes = reason.bytes, "AMI message skipped");
        self.update(|s| s.messages_skipped += 1);
    }
}

/// A handle on one PBX's AMI connection. Cheap to clone; every clone talks to the same
/// connection task.
#[derive(Debug, Clone)]
pub struct AmiClient {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    action_timeout: Duration,
}

impl AmiClient {
    /// Starts the connection task on `tracker`. It connects, and reconnects forever,
    /// until `shutdown` is cancelled; then it sends `Logoff` and closes the socket.
    /// `hook` sees every status change (the daemon mirrors it into its PBX registry).
    pub fn spawn(
        settings: ClientSettings,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        hook: Option<StatusHook>,
    ) -> AmiClient {
        let (tx, rx) = mpsc::channel(settings.ami.action_queue_capacity.max(1));
        let shared = Shared::new(&settings, hook);
        AmiClient::start(settings, tracker, shutdown, shared, tx, rx)
    }

    /// As [`AmiClient::spawn`], with a consumer subscribed before the task starts, so it
    /// sees the very first `Connected`.
    pub fn spawn_with_events(
        settings: ClientSettings,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        hook: Option<StatusHook>,
    ) -> (AmiClient, EventStream) {
        let (tx, rx) = mpsc::channel(settings.ami.action_queue_capacity.max(1));
        let shared = Shared::new(&settings, hook);
        let events = shared.fan_out.subscribe();
        let client = AmiClient::start(settings, tracker, shutdown, shared, tx, rx);
        (client, events)
    }

    fn start(
        settings: ClientSettings,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Request>,
        rx: mpsc::Receiver<Request>,
    ) -> AmiClient {
        let action_timeout = Duration::from_millis(settings.ami.action_timeout_ms);
        let task = Task {
            shared: shared.clone(),
            settings,
            rx,
            rx_open: true,
            shutdown,
        };
        tracker.spawn(task.run());
        AmiClient {
            tx,
            shared,
            action_timeout,
        }
    }

    /// A handle on the same connection whose actions wait `timeout` for their reply
    /// instead of `action_timeout_ms` (e.g. a long synchronous Originate).
    pub fn with_timeout(&self, timeout: Duration) -> AmiClient {
        AmiClient {
            action_timeout: timeout,
            ..self.clone()
        }
    }

    /// The PBX's configured name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A new consumer of this connection's lifecycle and events, from now on.
    pub fn subscribe(&self) -> EventStream {
        self.shared.fan_out.subscribe()
    }

    /// The connection's current status.
    pub fn status(&self) -> ClientStatus {
        let mut status = self
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.shared.counters.fill(&mut status);
        status
    }

    /// The live per-event figures (events received and dropped, last event time).
    pub fn event_counters(&self) -> Arc<EventCounters> {
        Arc::clone(&self.shared.counters)
    }

    async fn request(&self, action: Action, kind: ReplyKind) -> Result<Reply, AmiError> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            action,
            kind,
            reply,
        };
        let exchange = async {
            self.tx.send(request).await.map_err(|_| AmiError::Stopped)?;
            rx.await.map_err(|_| AmiError::Stopped)?
        };
        tokio::time::timeout(self.action_timeout, exchange)
            .await
            .map_err(|_| AmiError::Timeout(self.action_timeout))?
    }

    /// Sends an action and returns its response (`Response: Success`, or any answer that
    /// is not `Error`). The `ActionID` is in the response, e.g. to match an async
    /// Originate's later `OriginateResponse` event.
    ///
    /// # Errors
    /// [`AmiError::NotSent`] while disconnected; [`AmiError::OutcomeUnknown`] when the
    /// connection dropped after writing; [`AmiError::Timeout`]; [`AmiError::Failed`] for
    /// `Response: Error`.
    ///
    /// Cancel-safety: dropping the future after the action reached the connection task
    /// does not stop it from being sent; only the answer is lost.
    pub async fn send(&self, action: Action) -> Result<Message, AmiError> {
        let name = action.name().to_string();
        match self.request(action, ReplyKind::Single).await? {
            Reply::Single(m)
            | Reply::List(ListReply {
                response: Some(m), ..
            }) => refuse_error(&name, m),
            Reply::List(_) => Err(AmiError::OutcomeUnknown),
        }
    }

    /// Sends a list action (CoreShowChannels, Status, ConfbridgeList, ConfbridgeListRooms,
    /// Hangup of a `/regex/`) and collects its items up to the `…Complete` event. An
    /// empty ConfbridgeList/ListRooms (`No active conferences.`) is an empty list.
    ///
    /// # Errors
    /// As [`AmiClient::send`]; [`AmiError::ListTooLong`] past `max_list_items`.
    ///
    /// Cancel-safety: as [`AmiClient::send`].
    pub async fn list(&self, action: Action) -> Result<ListReply, AmiError> {
        let name = action.name().to_string();
        match self.request(action, ReplyKind::List).await? {
            Reply::List(list) => match list.response {
                Some(m) if m.is("Response", "Error") => {
                    if is_empty_list_error(&m) {
                        Ok(ListReply::default())
                    } else {
                        refuse_error(&name, m).map(|_| ListReply::default())
                    }
                }
                _ => Ok(list),
            },
            Reply::Single(m) => refuse_error(&name, m).map(|m| ListReply {
                response: Some(m),
                items: Vec::new(),
                complete: None,
            }),
        }
    }

    /// Runs a CLI command and returns its output lines (modern `Output:` headers or the
    /// legacy `Response: Follows` body).
    ///
    /// # Errors
    /// As [`AmiClient::send`]; an invalid command is [`AmiError::Action`].
    ///
    /// Cancel-safety: as [`AmiClient::send`].
    pub async fn command(&self, command: &str) -> Result<Vec<String>, AmiError> {
        let reply = self.send(Action::command(command)?).await?;
        Ok(reply
            .output_lines()
            .into_iter()
            .map(|l| l.into_owned())
            .collect())
    }
}

fn is_empty_list_error(m: &Message) -> bool {
    m.get("Message").is_some_and(|v| {
        v.eq_ignore_case("No active conferences.")
            || v.eq_ignore_case("No Conference by that name found.")
    })
}

fn refuse_error(action: &str, m: Message) -> Result<Message, AmiError> {
    if m.is("Response", "Error") {
        let mut message = m
            .text("Message")
            .map(|t| t.into_owned())
            .unwrap_or_default();
        for line in m.all("Output") {
            message.push_str(" / ");
            message.push_str(&line.text());
        }
        return Err(AmiError::Failed {
            action: action.to_string(),
            message,
            response: Box::new(m),
        });
    }
    Ok(m)
}

/// Reconnect delays: exponential from `min` to `max`, each with 50–100 % jitter so many
/// daemons do not hammer a restarted PBX in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next attempt; grows the one after.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(rng.random_range(0.5..=1.0))
    }

    /// After a successful login: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

type Conn = Framed<CaptureStream<TcpStream>, AmiCodec>;

/// Bytes read from the AMI socket at a time.
const READ_BUFFER: usize = 64 * 1024;

struct Pending {
    kind: ReplyKind,
    reply: oneshot::Sender<Result<Reply, AmiError>>,
    response: Option<Message>,
    items: Vec<Message>,
}

struct Task {
    shared: Arc<Shared>,
    settings: ClientSettings,
    rx: mpsc::Receiver<Request>,
    rx_open: bool,
    shutdown: CancellationToken,
}

struct Login {
    conn: Conn,
    banner: String,
    version: Option<String>,
    early: Vec<Message>,
}

impl Task {
    async fn run(mut self) {
        let ami = &self.settings.ami;
        let mut backoff = Backoff::new(
            Duration::from_millis(ami.backoff_min_ms),
            Duration::from_millis(ami.backoff_max_ms),
        );
        let name = self.shared.name.clone();
        loop {
            self.shared.update(|s| {
                s.state = ClientState::Connecting;
                s.connect_attempts += 1;
            });
            let shutdown = self.shutdown.clone();
            let attempt = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.connect_and_login() => r,
            };
            match attempt {
                Ok(login) => {
                    backoff.reset();
                    tracing::info!(pbx = %name, version = ?login.version, "AMI connected");
                    self.shared.update(|s| {
                        s.state = ClientState::Connected;
                        s.version.clone_from(&login.version);
                        s.connected_since = Some(Utc::now());
                        s.last_error = None;
                    });
                    self.shared.publish(&AmiEvent::Connected {
                        version: login.version,
                        banner: login.banner,
                    });
                    for m in login.early {
                        self.shared.publish(&AmiEvent::Message(Arc::new(m)));
                    }
                    let error = self.session(login.conn).await;
                    let shutting_down = error == ConnectionError::Shutdown;
                    if shutting_down {
                        tracing::info!(pbx = %name, "AMI logged off");
                    } else {
                        tracing::warn!(pbx = %name, %error, "AMI connection lost");
                    }
                    self.shared.update(|s| {
                        s.state = ClientState::Disconnected;
                        s.connected_since = None;
                        s.last_error = Some(error.to_string());
                    });
                    self.shared.publish(&AmiEvent::Disconnected {
                        error: error.to_string(),
                    });
                    if shutting_down {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(pbx = %name, %error, "AMI connection attempt failed");
                    self.shared.update(|s| {
                        s.state = ClientState::Disconnected;
                        s.last_error = Some(error.to_string());
                    });
                }
            }
            let delay = backoff.next_delay(&mut rand::rng());
            tracing::debug!(pbx = %name, ?delay, "AMI reconnecting after a delay");
            if !self.wait_refusing(delay).await {
                break;
            }
        }
        self.shared.update(|s| s.state = ClientState::Disconnected);
        self.rx.close();
        while let Ok(r) = self.rx.try_recv() {
            let _ = r.reply.send(Err(AmiError::NotSent));
        }
    }

    /// Waits `delay`, failing every action that arrives meanwhile as not sent. Returns
    /// `false` when shutdown was requested.
    async fn wait_refusing(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = &mut sleep => return true,
                r = self.rx.recv(), if self.rx_open => match r {
                    Some(r) => { let _ = r.reply.send(Err(AmiError::NotSent)); }
                    None => self.rx_open = false,
                },
            }
        }
    }

    async fn connect_and_login(&self) -> Result<Login, ConnectionError> {
        let s = &self.settings;
        let limit = Duration::from_millis(s.ami.connect_timeout_ms);
        let addr = format!("{}:{}", s.host, s.port);
        let stream = tokio::time::timeout(limit, TcpStream::connect((s.host.as_str(), s.port)))
            .await
            .map_err(|_| ConnectionError::Timeout("connecting"))?
            .map_err(|e| ConnectionError::Connect {
                addr,
                message: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let stream = CaptureStream::new(stream, self.shared.capture.clone());
        // A busy PBX sends hundreds of kilobytes a second: 64 KiB reads take ~150 events
        // per syscall (the default 8 KiB, ~20), and each new read region is allocated
        // once per 64 KiB rather than per 8 KiB while earlier messages still hold theirs.
        let mut conn = Framed::with_capacity(stream, AmiCodec::new(s.limits()), READ_BUFFER);
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
        let mut early = Vec::new();
        let login = async {
            let secret = s.secret.expose();
            let events = s.ami.event_mask.as_str();
            let bad = |e: ActionError| ConnectionError::LoginRejected(e.to_string());
            let login = match s.auth {
                AmiAuth::Plain => Action::login_plain(&s.username, secret, events).map_err(bad)?,
                AmiAuth::Md5 => {
                    let challenge = Action::challenge_md5().map_err(bad)?;
                    let reply = self.roundtrip(&mut conn, &challenge, &mut early).await?;
                    let nonce = reply
                        .text("Challenge")
                        .filter(|_| reply.is("Response", "Success"))
                        .ok_or_else(|| ConnectionError::LoginRejected(describe(&reply)))?
                        .into_owned();
                    Action::login_md5(&s.username, &nonce, secret, events).map_err(bad)?
                }
            };
            let reply = self.roundtrip(&mut conn, &login, &mut early).await?;
            if !reply.is("Response", "Success") {
                return Err(ConnectionError::LoginRejected(describe(&reply)));
            }
            let version = self.version(&mut conn, &mut early).await?;
            Ok(version)
        };
        let version = tokio::time::timeout(limit, login)
            .await
            .map_err(|_| ConnectionError::Timeout("logging in"))??;
        Ok(Login {
            conn,
            banner,
            version,
            early,
        })
    }

    /// `Asterisk 22.10.1`: from `CoreSettings`, else from `core show version`.
    async fn version(
        &self,
        conn: &mut Conn,
        early: &mut Vec<Message>,
    ) -> Result<Option<String>, ConnectionError> {
        if let Ok(action) = Action::core_settings() {
            let reply = self.roundtrip(conn, &action, early).await?;
            if let Some(v) = reply.text("AsteriskVersion").filter(|v| !v.is_empty()) {
                return Ok(Some(format!("Asterisk {v}")));
            }
        }
        if let Ok(action) = Action::command("core show version") {
            let reply = self.roundtrip(conn, &action, early).await?;
            let first = reply.output_lines().into_iter().next();
            return Ok(first.map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")));
        }
        Ok(None)
    }

    /// During login only: writes `action` and reads until its response; events that
    /// arrive meanwhile are kept (up to the event queue capacity) for after `Connected`.
    async fn roundtrip(
        &self,
        conn: &mut Conn,
        action: &Action,
        early: &mut Vec<Message>,
    ) -> Result<Message, ConnectionError> {
        let id = self.shared.action_id();
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
                        if early.len() < self.settings.ami.event_queue_capacity {
                            early.push(m);
                        } else {
                            self.shared.update(|s| s.events_dropped += 1);
                        }
                    }
                }
                Some(Ok(Frame::Skipped(s))) => self.shared.skipped(&s),
                Some(Ok(Frame::Banner(_))) => {}
            }
        }
    }

    /// Runs a logged-in session until it ends; returns why.
    async fn session(&mut self, mut conn: Conn) -> ConnectionError {
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let error = self.session_loop(&mut conn, &mut pending).await;
        if error == ConnectionError::Shutdown {
            self.logoff(&mut conn).await;
        }
        for (_, p) in pending.drain() {
            let _ = p.reply.send(Err(AmiError::OutcomeUnknown));
        }
        error
    }

    async fn session_loop(
        &mut self,
        conn: &mut Conn,
        pending: &mut HashMap<String, Pending>,
    ) -> ConnectionError {
        let ami = &self.settings.ami;
        let write_limit = Duration::from_millis(ami.connect_timeout_ms);
        let ping_interval = Duration::from_millis(ami.ping_interval_ms);
        let ping_deadline = Duration::from_millis(ami.ping_deadline_ms);
        let max_items = ami.max_list_items;
        let mut ticker = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The Ping in flight: its ActionID and when its answer is due.
        let mut ping: Option<(String, Instant)> = None;
        loop {
            let due = ping.as_ref().map(|(_, due)| *due);
            tokio::select! {
                () = self.shutdown.cancelled() => return ConnectionError::Shutdown,
                frame = conn.next() => match frame {
                    None => return ConnectionError::Closed,
                    Some(Err(e)) => return ConnectionError::Io(e.to_string()),
                    Some(Ok(frame)) if ping.is_some() && !matches!(frame, Frame::Banner(_)) => {
                        // The peer is talking: its Pong may be queued behind a burst of
                        // events we have not read yet. Only silence means it is dead.
                        if let Some((_, due)) = ping.as_mut() {
                            *due = Instant::now() + ping_deadline;
                        }
                        self.on_frame(frame, &mut ping, pending, max_items);
                    }
                    Some(Ok(frame)) => self.on_frame(frame, &mut ping, pending, max_items),
                },
                r = self.rx.recv(), if self.rx_open => match r {
                    None => self.rx_open = false,
                    Some(r) => {
                        if r.reply.is_closed() {
                            continue;
                        }
                        let id = self.shared.action_id();
                        match tokio::time::timeout(write_limit, conn.send((id.as_str(), &r.action))).await {
                            Ok(Ok(())) => {
                                pending.insert(id, Pending { kind: r.kind, reply: r.reply, response: None, items: Vec::new() });
                            }
                            Ok(Err(e)) => {
                                let _ = r.reply.send(Err(AmiError::OutcomeUnknown));
                                return ConnectionError::Io(e.to_string());
                            }
                            Err(_) => {
                                let _ = r.reply.send(Err(AmiError::OutcomeUnknown));
                                return ConnectionError::Timeout("writing an action");
                            }
                        }
                    }
                },
                _ = ticker.tick() => {
                    // Callers that gave up (timed out) no longer need their entry.
                    pending.retain(|_, p| !p.reply.is_closed());
                    if ping.is_none() {
                        let id = self.shared.action_id();
                        let Ok(action) = Action::ping() else { continue };
                        match tokio::time::timeout(write_limit, conn.send((id.as_str(), &action))).await {
                            Ok(Ok(())) => ping = Some((id, Instant::now() + ping_deadline)),
                            Ok(Err(e)) => return ConnectionError::Io(e.to_string()),
                            Err(_) => return ConnectionError::PingDeadline(ping_deadline),
                        }
                    }
                },
                () = sleep_until_opt(due) => return ConnectionError::PingDeadline(ping_deadline),
            }
        }
    }

    fn on_frame(
        &self,
        frame: Frame,
        ping: &mut Option<(String, Instant)>,
        pending: &mut HashMap<String, Pending>,
        max_items: usize,
    ) {
        match frame {
            Frame::Message(m) => {
                let is_pong = m.kind() == MessageKind::Response
                    && ping.as_ref().is_some_and(|(id, _)| {
                        m.action_id().is_some_and(|a| a.as_bytes() == id.as_bytes())
                    });
                if is_pong {
                    *ping = None;
                } else {
                    self.dispatch(m, pending, max_items);
                }
            }
            Frame::Skipped(s) => self.shared.skipped(&s),
            Frame::Banner(_) => {}
        }
    }

    fn dispatch(&self, m: Message, pending: &mut HashMap<String, Pending>, max_items: usize) {
        // With no action waiting (a busy PBX's usual state), an event is published
        // without looking for its `ActionID` (a scan of all its headers).
        if pending.is_empty() && m.kind() == MessageKind::Event {
            self.shared.publish(&AmiEvent::Message(Arc::new(m)));
            return;
        }
        let key = m.action_id().and_then(|a| a.as_str()).map(str::to_string);
        let entry = key
            .as_ref()
            .and_then(|k| pending.get_mut(k).map(|p| (k, p)));
        let Some((key, p)) = entry else {
            if m.kind() != MessageKind::Response {
                self.shared.publish(&AmiEvent::Message(Arc::new(m)));
            } else {
                tracing::debug!(pbx = %self.shared.name, action_id = ?m.action_id(), "AMI response nobody waits for");
            }
            return;
        };
        let key = key.clone();
        match (&p.kind, m.kind()) {
            (ReplyKind::Single, MessageKind::Response) => {
                if let Some(p) = pending.remove(&key) {
                    let _ = p.reply.send(Ok(Reply::Single(m)));
                }
            }
            (ReplyKind::Single, _) => self.shared.publish(&AmiEvent::Message(Arc::new(m))),
            (ReplyKind::List, MessageKind::Response) => {
                let done = !m.is("Response", "Success") || !m.is("EventList", "start");
                p.response = Some(m);
                if done {
                    finish_list(pending, &key);
                }
            }
            (ReplyKind::List, _) => {
                let complete = m.is("EventList", "Complete")
                    || m.event()
                        .is_some_and(|e| e.as_bytes().ends_with(b"Complete"));
                if complete {
                    if let Some(p) = pending.remove(&key) {
                        let _ = p.reply.send(Ok(Reply::List(ListReply {
                            response: p.response,
                            items: p.items,
                            complete: Some(m),
                        })));
                    }
                } else if p.items.len() >= max_items {
                    if let Some(p) = pending.remove(&key) {
                        let _ = p.reply.send(Err(AmiError::ListTooLong(max_items)));
                    }
                } else {
                    p.items.push(m);
                }
            }
        }
    }

    async fn logoff(&self, conn: &mut Conn) {
        let limit = Duration::from_millis(self.settings.ami.connect_timeout_ms.min(1000));
        let Ok(action) = Action::logoff() else { return };
        let id = self.shared.action_id();
        let goodbye = async {
            conn.send((id.as_str(), &action)).await.ok()?;
            while let Some(Ok(frame)) = conn.next().await {
                if let Frame::Message(m) = frame {
                    if m.kind() == MessageKind::Response
                        && m.action_id().is_some_and(|a| a.as_bytes() == id.as_bytes())
                    {
                        return Some(());
                    }
                }
            }
            None
        };
        let _ = tokio::time::timeout(limit, goodbye).await;
        let _ = conn.close().await;
    }
}

fn finish_list(pending: &mut HashMap<String, Pending>, key: &str) {
    if let Some(p) = pending.remove(key) {
        let _ = p.reply.send(Ok(Reply::List(ListReply {
            response: p.response,
            items: p.items,
            complete: None,
        })));
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn describe(m: &Message) -> String {
    m.text("Message")
        .map(|t| t.into_owned())
        .unwrap_or_else(|| format!("{:?}", m.response()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_and_resets_after_success() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.next_delay(&mut rng);
            assert!(
                d >= Duration::from_millis(base / 2),
                "{d:?} < half of {base}"
            );
            assert!(d <= Duration::from_millis(base), "{d:?} > {base}");
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn empty_confbridge_answers_are_recognised() {
        let m = crate::ami::parser::parse_frame(&bytes::Bytes::from_static(
            b"Response: Error\r\nActionID: 1\r\nMessage: No active conferences.\r\n",
        ))
        .unwrap();
        assert!(is_empty_list_error(&m));
    }
}
