//! The AMI client: one task owns the socket to one PBX; a cloneable [`AmiClient`]
//! handle sends actions to it, subscribes to its events and reads its live status.
//!
//! Owns the session's life: connect, banner, plain or MD5 login with the `Events:` mask,
//! the PBX version, `ActionID` correlation, list collection, `Ping` keepalive, reconnect
//! forever with backoff and jitter, `Logoff` on shutdown. It never re-sends an action:
//! one not yet written when the connection drops fails as [`AmiError::NotSent`], one
//! written but unanswered as [`AmiError::OutcomeUnknown`]. It knows nothing of SQL, HTTP,
//! the clinic or the daemon's configuration: it takes plain [`ClientSettings`], and
//! consumers translate events into their own terms.
//!
//! One job per file: this one is the handle API and what the handle and the task share;
//! [`settings`] what a client is told, [`status`] what it reports, [`list`] list answers
//! and their quirks, [`login`] the start of a session, [`session`] one logged-in
//! session, [`task`] the reconnect loop around them.

mod list;
mod login;
mod session;
pub mod settings;
pub mod status;
mod task;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::action::{Action, ActionError};
use super::capture::Capture;
use super::events::{AmiEvent, EventStream, FanOut};
use super::message::Message;
pub use list::ListReply;
pub use settings::{ClientLimits, ClientSettings, LoginMethod, Timing};
use status::StatusCell;
pub use status::{ClientState, ClientStatus, EventCounters};

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

/// An action on its way from a handle to the task.
#[derive(Debug)]
struct Request {
    action: Action,
    kind: ReplyKind,
    reply: oneshot::Sender<Result<Reply, AmiError>>,
}

/// What the handles and the task share.
struct Shared {
    name: String,
    status: StatusCell,
    fan_out: FanOut,
    next_id: AtomicU64,
    /// Random per client: events such as `OriginateResponse` go to every AMI session of
    /// the PBX, so ActionIDs must not repeat across clients (or daemons) on one PBX.
    id_prefix: String,
    /// Raw byte capture, when on.
    capture: Option<Capture>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("name", &self.name).finish()
    }
}

/// Starts the capture writer when asked for; a failure is logged and the connection
/// runs without capture.
fn start_capture(settings: &ClientSettings) -> Option<Capture> {
    let capture = settings.capture.clone()?;
    let dir = capture.dir.clone();
    match Capture::start(capture, &settings.name) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(pbx = %settings.name, dir = %dir.display(), error = %e, "cannot start AMI capture");
            None
        }
    }
}

impl Shared {
    fn new(settings: &ClientSettings) -> Arc<Shared> {
        Arc::new(Shared {
            name: settings.name.clone(),
            status: StatusCell::new(),
            fan_out: FanOut::new(settings.limits.event_queue_capacity),
            next_id: AtomicU64::new(1),
            id_prefix: format!("mc-{:08x}", rand::random::<u32>()),
            capture: start_capture(settings),
        })
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
            self.status.counters().dropped(dropped);
        }
        if matches!(event, AmiEvent::Message(_)) {
            self.status.counters().received();
        }
    }

    fn skipped(&self, reason: &super::codec::Skipped) {
        tracing::error!(pbx = %self.name, reason = %reason.reason, bytes = reason.bytes, "AMI message skipped");
        self.status.update(|s| s.messages_skipped += 1);
    }
}

/// The connection task's state: see [`task`] (the reconnect loop) and [`session`].
struct Task {
    shared: Arc<Shared>,
    settings: ClientSettings,
    rx: mpsc::Receiver<Request>,
    rx_open: bool,
    shutdown: CancellationToken,
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
    pub fn spawn(
        settings: ClientSettings,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> AmiClient {
        let shared = Shared::new(&settings);
        AmiClient::start(settings, tracker, shutdown, shared)
    }

    /// As [`AmiClient::spawn`], with a consumer subscribed before the task starts, so it
    /// sees the very first `Connected`.
    pub fn spawn_with_events(
        settings: ClientSettings,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> (AmiClient, EventStream) {
        let shared = Shared::new(&settings);
        let events = shared.fan_out.subscribe();
        let client = AmiClient::start(settings, tracker, shutdown, shared);
        (client, events)
    }

    fn start(
        settings: ClientSettings,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        shared: Arc<Shared>,
    ) -> AmiClient {
        let (tx, rx) = mpsc::channel(settings.limits.action_queue_capacity.max(1));
        let action_timeout = settings.timing.action_timeout;
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
    /// instead of the settings' `action_timeout` (e.g. a long synchronous Originate).
    pub fn with_timeout(&self, timeout: Duration) -> AmiClient {
        AmiClient {
            action_timeout: timeout,
            ..self.clone()
        }
    }

    /// The PBX's name, as given in the settings.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A new consumer of this connection's lifecycle and events, from now on.
    pub fn subscribe(&self) -> EventStream {
        self.shared.fan_out.subscribe()
    }

    /// The connection's current status, its event figures read live.
    pub fn status(&self) -> ClientStatus {
        self.shared.status.snapshot()
    }

    /// The live per-event figures (events received and dropped, last event time).
    pub fn event_counters(&self) -> Arc<EventCounters> {
        Arc::clone(self.shared.status.counters())
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
        let reply = self.request(action, ReplyKind::List).await?;
        list::list_answer(&name, reply)
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

/// `Response: Error` as [`AmiError::Failed`] with its `Message:` and `Output:` lines;
/// any other answer as it is.
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
