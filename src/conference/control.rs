//! The conference control task: one per PBX that holds conversation calls. It owns the
//! [`Engine`], feeds it commands (through a cloneable [`ConferenceHandle`]), AMI
//! observations, the answers to its requests and the clock, and applies its effects.
//!
//! Order of one step's effects, the invariant this task keeps: the records are
//! committed (one transaction, to disk), then the requests are sent, then the answers
//! are given. So an answer acknowledges a durable change, and a leg is stored before
//! Asterisk hears of it (a daemon restarted at any point can re-adopt it).
//!
//! It never decides what a call does (that is the engine) and never writes SQL (the
//! store) or HTTP (the routes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::engine::{
    Answer, CallPhase, Change, Command, Effect, Engine, Observation, OpId, Refusal, Request,
    RequestId, RequestOutcome, Settings,
};
use super::observe::{self, Dialplan};
use crate::ami::{Action, AmiClient, AmiError, AmiEvent, EventStream};
use crate::directory::{Endpoint, ThreadId, UserId};
use crate::store::{Store, StoreError};

/// The control task's knobs (mapped from `[calls]` by the daemon).
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// The PBX's name as stored with its calls.
    pub pbx: String,
    pub engine: Settings,
    pub dialplan: Dialplan,
    /// `Local/{userId}@dial-user/n`: how a user without an endpoint is dialled.
    pub dial_template: String,
    /// The player leg's dial string (`Local/s@medcall-play/n`).
    pub player_dial: Endpoint,
    /// `host:port` of medcall's AudioSocket server as Asterisk reaches it; `None`: no
    /// live streams.
    pub audiosocket: Option<String>,
    /// The PBX's media directory as medcall sees it (`play/`, `recordings/`).
    pub media_dir: PathBuf,
}

/// Why a command got no answer from the engine.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the conference control task has stopped")]
    Stopped,
    #[error("the change could not be stored: {0}")]
    Store(String),
    /// No answer within [`ANSWER_LIMIT`]: the command may or may not have taken effect.
    #[error("no answer from the conference control in time: the outcome is unknown")]
    Timeout,
}

/// The longest a command waits for its answer. The engine answers every command
/// (the slowest, `call/end`, by its end deadline); this bounds a request even so.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(60);

enum Message {
    Command {
        command: Command,
        reply: oneshot::Sender<Result<Answer, ControlError>>,
    },
}

/// A handle on one PBX's conference control. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConferenceHandle {
    tx: mpsc::Sender<Message>,
    store: Store,
    dial_template: String,
    user_profile: String,
    player_dial: Endpoint,
    audiosocket: Option<String>,
    media_dir: PathBuf,
    /// Notified when a step stored a stopped recording (the finaliser's wake-up).
    recording_stopped: Arc<Notify>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Command { command, .. } => f.debug_tuple("Command").field(command).finish(),
        }
    }
}

impl ConferenceHandle {
    /// Carries out `command` and returns the engine's answer, given once the change it
    /// acknowledges is stored and the PBX confirmed what it had to.
    ///
    /// # Errors
    /// [`ControlError::Stopped`] when the task is gone; [`ControlError::Store`] when the
    /// step's records could not be committed (its requests were then not sent).
    ///
    /// Cancel-safety: dropping the future after the command was queued does not stop
    /// it; the engine stays in step with the PBX, only the answer is lost.
    pub async fn execute(&self, command: Command) -> Result<Answer, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Command { command, reply })
            .await
            .map_err(|_| ControlError::Stopped)?;
        match tokio::time::timeout(ANSWER_LIMIT, rx).await {
            Ok(answer) => answer.map_err(|_| ControlError::Stopped)?,
            Err(_) => Err(ControlError::Timeout),
        }
    }

    /// How `user` is dialled: the directory's endpoint, or the dial template.
    ///
    /// # Errors
    /// The filled-in template is not a dial string (the config check makes that
    /// impossible for a valid user id).
    pub fn endpoint_for(
        &self,
        user: &UserId,
        directory_endpoint: Option<Endpoint>,
    ) -> Result<Endpoint, crate::directory::EndpointError> {
        match directory_endpoint {
            Some(e) => Ok(e),
            None => self
                .dial_template
                .replace("{userId}", user.as_str())
                .parse(),
        }
    }

    /// The ConfBridge user profile of human participants.
    pub fn user_profile(&self) -> &str {
        &self.user_profile
    }

    /// The store the handle's calls are kept in (for reads).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The player leg's dial string.
    pub fn player_dial(&self) -> &Endpoint {
        &self.player_dial
    }

    /// The dial string of a stream listener leg carrying `uuid` (an AudioSocket channel
    /// to medcall, 16 kHz signed linear); `None` without an AudioSocket server.
    pub fn stream_dial(&self, uuid: &str) -> Option<Endpoint> {
        let at = self.audiosocket.as_ref()?;
        format!("AudioSocket/{at}/{uuid}/c(slin16)").parse().ok()
    }

    /// The PBX's media directory as medcall sees it.
    pub fn media_dir(&self) -> &Path {
        &self.media_dir
    }

    /// Notified whenever a recording was stored stopped.
    pub fn recording_stopped(&self) -> &Arc<Notify> {
        &self.recording_stopped
    }
}

/// The receiving end of a [`ConferenceHandle`], until its task is started.
#[derive(Debug)]
pub struct ControlInbox {
    rx: mpsc::Receiver<Message>,
    settings: ControlSettings,
    store: Store,
    recording_stopped: Arc<Notify>,
}

/// A handle and its inbox: the handle can be given out (to the HTTP and FastAGI routes)
/// before the PBX's AMI client exists; commands wait in the inbox until [`spawn`].
pub fn channel(settings: ControlSettings, store: Store) -> (ConferenceHandle, ControlInbox) {
    let (tx, rx) = mpsc::channel(1024);
    let handle = ConferenceHandle {
        tx,
        store: store.clone(),
        dial_template: settings.dial_template.clone(),
        user_profile: settings.dialplan.user_profile.clone(),
        player_dial: settings.player_dial.clone(),
        audiosocket: settings.audiosocket.clone(),
        media_dir: settings.media_dir.clone(),
        recording_stopped: Arc::new(Notify::new()),
    };
    let recording_stopped = Arc::clone(&handle.recording_stopped);
    (
        handle,
        ControlInbox {
            rx,
            settings,
            store,
            recording_stopped,
        },
    )
}

impl ControlInbox {
    /// The PBX whose client the task must be started with.
    pub fn pbx(&self) -> &str {
        &self.settings.pbx
    }
}

/// Starts the control task of `client`'s PBX on `tracker`. It takes back the PBX's open
/// calls from the store, then serves the inbox until `shutdown`.
pub fn spawn(
    inbox: ControlInbox,
    client: AmiClient,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let ControlInbox {
        rx,
        settings,
        store,
        recording_stopped,
    } = inbox;
    let events = client.subscribe();
    let task = Control {
        engine: Engine::new(settings.engine.clone()),
        settings,
        client,
        store,
        tracker: tracker.clone(),
        shutdown,
        pending: HashMap::new(),
        next_op: 0,
        open_calls: HashMap::new(),
        recording_stopped,
    };
    tracker.spawn(task.run(rx, events));
}

struct Control {
    engine: Engine,
    settings: ControlSettings,
    client: AmiClient,
    store: Store,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    pending: HashMap<OpId, oneshot::Sender<Result<Answer, ControlError>>>,
    next_op: u64,
    /// Start times of the calls not ended: a PBX that started after the oldest of them
    /// restarted under it.
    open_calls: HashMap<String, DateTime<Utc>>,
    recording_stopped: Arc<Notify>,
}

/// Something that happened, in the order the task saw it.
enum Input {
    Message(Message),
    Event(AmiEvent),
    Answered(RequestId, RequestOutcome),
    Reconciled(Observation),
    Tick,
}

/// How many inputs one step takes at most before it commits.
const BATCH: usize = 256;

fn now() -> DateTime<Utc> {
    crate::store::StoredTime::now().time()
}

impl Control {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>, mut events: EventStream) {
        self.restore().await;
        let (answers_tx, mut answers_rx) = mpsc::unbounded_channel();
        let (reconciled_tx, mut reconciled_rx) = mpsc::unbounded_channel();
        if self.client.status().is_connected() {
            self.reconcile(&reconciled_tx);
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some((id, outcome)) = answers_rx.recv() => Input::Answered(id, outcome),
                Some(obs) = reconciled_rx.recv() => Input::Reconciled(obs),
                Some(ev) = events.recv() => Input::Event(ev),
                Some(m) = rx.recv() => Input::Message(m),
                _ = ticker.tick() => Input::Tick,
                else => break,
            };
            let mut inputs = vec![first];
            while inputs.len() < BATCH {
                if let Ok((id, outcome)) = answers_rx.try_recv() {
                    inputs.push(Input::Answered(id, outcome));
                } else if let Some(ev) = events.try_recv() {
                    inputs.push(Input::Event(ev));
                } else if let Ok(m) = rx.try_recv() {
                    inputs.push(Input::Message(m));
                } else {
                    break;
                }
            }
            let mut effects = Vec::new();
            for input in inputs {
                effects.extend(self.step(input, &reconciled_tx));
            }
            self.apply(effects, &answers_tx).await;
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(ControlError::Stopped));
        }
    }

    async fn restore(&mut self) {
        loop {
            match self.store.open_conferences(&self.settings.pbx).await {
                Ok(calls) => {
                    for (call, _) in &calls {
                        self.open_calls
                            .insert(call.key.to_string(), call.started_at);
                    }
                    if !calls.is_empty() {
                        tracing::info!(
                            pbx = %self.settings.pbx,
                            calls = calls.len(),
                            "conference calls taken back from the store"
                        );
                    }
                    self.engine.restore(calls);
                    match self.store.open_recordings(&self.settings.pbx).await {
                        Ok(recordings) => self.engine.restore_recordings(recordings),
                        Err(e) => {
                            // The calls are back; their recordings are still on disk and
                            // in the store, only `stop` cannot reach them in this run.
                            tracing::error!(error = %e, "cannot load the open calls' recordings");
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load open conference calls; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    fn step(
        &mut self,
        input: Input,
        reconciled: &mpsc::UnboundedSender<Observation>,
    ) -> Vec<Effect> {
        match input {
            Input::Message(Message::Command { command, reply }) => {
                if !self.client.status().is_connected() {
                    let _ = reply.send(Ok(Answer::Refused(Refusal::PbxUnreachable)));
                    return Vec::new();
                }
                self.next_op += 1;
                let op = OpId(self.next_op);
                self.pending.insert(op, reply);
                self.engine.command(op, command, now())
            }
            Input::Event(AmiEvent::Message(m)) => match observe::observation(&m) {
                Some(obs) => self.engine.observe(obs, now()),
                None => Vec::new(),
            },
            Input::Event(AmiEvent::Connected { .. } | AmiEvent::Lagged { .. }) => {
                self.reconcile(reconciled);
                Vec::new()
            }
            Input::Event(AmiEvent::Disconnected { .. }) => Vec::new(),
            Input::Answered(id, outcome) => self.engine.answered(id, outcome, now()),
            Input::Reconciled(obs) => self.engine.observe(obs, now()),
            Input::Tick => self.engine.tick(now()),
        }
    }

    /// Applies one step's effects: records, then requests, then answers.
    async fn apply(
        &mut self,
        effects: Vec<Effect>,
        answers: &mpsc::UnboundedSender<(RequestId, RequestOutcome)>,
    ) {
        if effects.is_empty() {
            return;
        }
        let mut records = Vec::new();
        let mut sends = Vec::new();
        let mut replies = Vec::new();
        for effect in effects {
            match effect {
                Effect::Record(change) => records.push(change),
                Effect::Send { id, request } => sends.push((id, request)),
                Effect::Reply { op, answer } => replies.push((op, answer)),
            }
        }
        let stopped_recording = records.iter().any(|c| {
            matches!(c, Change::Recording(r) if r.state == super::engine::RecordingState::Stopped)
        });
        for change in &records {
            if let Change::Call(call) = change {
                if call.phase == CallPhase::Ended {
                    self.open_calls.remove(&call.key.to_string());
                } else {
                    self.open_calls
                        .insert(call.key.to_string(), call.started_at);
                }
            }
        }
        let stored = self
            .store
            .write_conference(&self.settings.pbx, records)
            .await;
        if let Err(e) = &stored {
            tracing::error!(error = %e, "conference records not stored; their requests are not sent");
        }
        if stored.is_ok() && stopped_recording {
            self.recording_stopped.notify_one();
        }
        for (id, request) in sends {
            if stored.is_err() {
                let _ = answers.send((id, RequestOutcome::Unreachable));
                continue;
            }
            self.send(id, request, answers.clone());
        }
        for (op, answer) in replies {
            if let Some(reply) = self.pending.remove(&op) {
                let answer = match &stored {
                    Ok(()) => Ok(answer),
                    Err(e) => Err(store_failed(e)),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Sends one request on its own task; its outcome comes back as an input.
    fn send(
        &self,
        id: RequestId,
        request: Request,
        answers: mpsc::UnboundedSender<(RequestId, RequestOutcome)>,
    ) {
        let client = self.client.clone();
        let action = match observe::action(&request, &self.settings.dialplan) {
            Ok(action) => action,
            Err(e) => {
                tracing::error!(error = %e, ?request, "conference request not writable to AMI");
                let _ = answers.send((id, RequestOutcome::Refused(e.to_string())));
                return;
            }
        };
        self.tracker.spawn(async move {
            let outcome = match (action, &request) {
                (Some(action), _) => outcome(client.send(action).await),
                (None, Request::SweepAccount { thread }) => sweep(&client, thread).await,
                (None, _) => RequestOutcome::Accepted,
            };
            if let RequestOutcome::Refused(message) = &outcome {
                tracing::debug!(?request, %message, "the PBX refused a conference request");
            }
            let _ = answers.send((id, outcome));
        });
    }

    /// Asks the PBX for its channels and how long it has been up, off the loop; the
    /// result comes back as an `Observation::Reconciled`, retried every second until the
    /// PBX answers (a PBX just started may not yet).
    fn reconcile(&self, reconciled: &mpsc::UnboundedSender<Observation>) {
        // With no open call there is nothing to compare the PBX with.
        let Some(oldest_open) = self.open_calls.values().min().copied() else {
            return;
        };
        let client = self.client.clone();
        let reconciled = reconciled.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            for _ in 0..30 {
                match snapshot(&client, Some(oldest_open)).await {
                    Ok(obs) => {
                        let _ = reconciled.send(obs);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "conference reconciliation failed; retrying")
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

fn store_failed(e: &StoreError) -> ControlError {
    ControlError::Store(e.to_string())
}

fn outcome(result: Result<crate::ami::Message, AmiError>) -> RequestOutcome {
    match result {
        Ok(_) => RequestOutcome::Accepted,
        Err(AmiError::Failed { message, .. }) => RequestOutcome::Refused(message),
        Err(_) => RequestOutcome::Unreachable,
    }
}

/// Hangs up every channel whose AccountCode is the thread: the safety net of `end`.
async fn sweep(client: &AmiClient, thread: &ThreadId) -> RequestOutcome {
    let list = match Action::core_show_channels() {
        Ok(action) => client.list(action).await,
        Err(e) => return RequestOutcome::Refused(e.to_string()),
    };
    let list = match list {
        Ok(list) => list,
        Err(e) => return outcome(Err(e)),
    };
    for item in &list.items {
        let ours = item
            .get("AccountCode")
            .is_some_and(|a| a.eq_ignore_case(thread.as_str()));
        let Some(uniqueid) = item.get("Uniqueid").and_then(|u| u.as_str()) else {
            continue;
        };
        if ours {
            if let Ok(action) = Action::hangup(uniqueid, Some(16)) {
                // A channel already gone answers an error: nothing left to do for it.
                let _ = client.send(action).await;
            }
        }
    }
    RequestOutcome::Accepted
}

/// The PBX's channels now, and whether it started after the oldest open call did.
async fn snapshot(
    client: &AmiClient,
    oldest_open: Option<DateTime<Utc>>,
) -> Result<Observation, AmiError> {
    let uptime = client.command("core show uptime seconds").await?;
    let list = client.list(Action::core_show_channels()?).await?;
    let channels = list
        .items
        .iter()
        .filter_map(observe::live_channel)
        .collect();
    let pbx_started = uptime_seconds(&uptime).map(|s| now() - chrono::Duration::seconds(s));
    // The uptime is whole seconds, cut down: `pbx_started` is at or up to a second after
    // the real start, so a PBX that (re)started after the oldest open call began is
    // always seen as restarted. The one false reading: a call begun within the PBX's
    // first second of uptime.
    let pbx_restarted = match (pbx_started, oldest_open) {
        (Some(started), Some(oldest)) => started > oldest,
        _ => false,
    };
    Ok(Observation::Reconciled {
        channels,
        pbx_restarted,
    })
}

/// `System uptime: 1234` (the CLI's `core show uptime seconds`).
fn uptime_seconds(lines: &[String]) -> Option<i64> {
    lines.iter().find_map(|l| {
        l.trim()
            .strip_prefix("System uptime:")
            .and_then(|n| n.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uptime_is_read_from_the_cli_output() {
        assert_eq!(
            uptime_seconds(&["System uptime: 1234".to_string()]),
            Some(1234)
        );
        assert_eq!(
            uptime_seconds(&["Last reload: 12".into(), " System uptime: 7 ".into()]),
            Some(7)
        );
        assert_eq!(uptime_seconds(&["nothing".to_string()]), None);
    }

    #[test]
    fn ami_answers_become_request_outcomes() {
        assert_eq!(outcome(Err(AmiError::NotSent)), RequestOutcome::Unreachable);
        assert_eq!(
            outcome(Err(AmiError::OutcomeUnknown)),
            RequestOutcome::Unreachable
        );
        assert_eq!(
            outcome(Ok(crate::ami::Message::from_pairs(&[(
                "Response", "Success"
            )]))),
            RequestOutcome::Accepted
        );
        let refused = outcome(Err(AmiError::Failed {
            action: "Hangup".into(),
            message: "No such channel".into(),
            response: Box::new(crate::ami::Message::from_pairs(&[("Response", "Error")])),
        }));
        assert_eq!(refused, RequestOutcome::Refused("No such channel".into()));
    }
}
