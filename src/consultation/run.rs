//! The consultation runner: one task that applies `lifecycle` on the PBX.
//!
//! Its inputs, in the order it sees them: the API's commands (create, terminate), the
//! FastAGI join checks, the scheduler's due jobs, the PBX's events and the outcomes of
//! the requests it sent. For each it loads the consultation (the running ones are kept
//! in memory, the rest read from the store), steps it, stores the step (one
//! transaction: the record, its history and notification, its jobs, the fired job
//! deleted), and only then sends the step's requests and answers. A step that could not
//! be stored sends nothing.
//!
//! After every (re)connect the running consultations are compared with the PBX's
//! channels: a leg that went away while medcall was not looking left (or was not
//! answered), a PBX that restarted lost them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lifecycle::{
    self, Dialled, Event, JobKind, NoAnswer, Party, Request, Rules, Step, TerminateAnswer,
};
use super::model::{Attachment, Consultation, Kind, NewConsultation, Status, conference_id};
use crate::ami::action::{Action, Originate, OriginateTarget};
use crate::ami::{AmiClient, AmiError, AmiEvent, EventStream};
use crate::conference::engine::Observation;
use crate::conference::observe;
use crate::directory::{DirectoryDoctor, DoctorId};
use crate::scheduler::Fired;
use crate::store::consultation::{CreateError, StepWrite};
use crate::store::{Store, StoreError, StoredTime};

/// The directory entries of the doctors a commit calls (or why they could not be read).
type Doctors = Result<HashMap<DoctorId, DirectoryDoctor>, String>;

/// Channel variables of a consultation's legs (`manager.conf` `channelvars` lists them).
pub const VAR_CONSULTATION: &str = "MEDCALL_CONSULTATION_ID";

/// Where and how the runner reaches the PBX (mapped from `[consultations]` and
/// `[calls]` by the daemon).
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub rules: Rules,
    pub pbx: String,
    /// Extension `<conference>` of this context joins the conference.
    pub conference_context: String,
    pub user_profile: String,
    pub player_profile: String,
    /// The player leg's dial string (`Local/s@medcall-play/n`).
    pub player_dial: String,
    /// The warning prompt as Asterisk names a sound; `None`: no warning.
    pub warning_sound: Option<String>,
    /// How the callback patient is dialled: `{code}`, `{number}` and `{phone}` (code
    /// then number) are replaced.
    pub patient_dial_template: String,
    pub caller_id: Option<String>,
}

/// Why the runner did not answer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Create(#[from] CreateError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the consultation runner has stopped")]
    Stopped,
}

/// What the dialplan is told about a join code (FastAGI `consultation-join`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinVerdict {
    /// Join conference `conference`.
    Join { conference: String, id: i64 },
    /// No open consultation has this code.
    Invalid,
    /// The consultation has not started yet.
    TooEarly,
    /// The patient is in already.
    InUse,
    /// It has ended.
    Ended,
}

impl JoinVerdict {
    /// `MEDCALL_STATUS` for the dialplan.
    pub fn status(&self) -> &'static str {
        match self {
            JoinVerdict::Join { .. } => "OK",
            JoinVerdict::Invalid => "INVALID",
            JoinVerdict::TooEarly => "EARLY",
            JoinVerdict::InUse => "INUSE",
            JoinVerdict::Ended => "ENDED",
        }
    }
}

enum Command {
    Create {
        new: NewConsultation,
        attachment: Option<Attachment>,
        reply: oneshot::Sender<Result<Consultation, RunError>>,
    },
    Terminate {
        kind: Kind,
        id: i64,
        reason: Option<String>,
        reply: oneshot::Sender<Result<Option<TerminateAnswer>, RunError>>,
    },
    Join {
        code: String,
        uniqueid: String,
        reply: oneshot::Sender<Result<JoinVerdict, RunError>>,
    },
}

/// The API's and the dialplan's way to the runner. Cloneable.
#[derive(Debug, Clone)]
pub struct ConsultationHandle {
    tx: mpsc::Sender<Command>,
    store: Store,
    rules: Arc<Rules>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Create { .. } => "Create",
            Command::Terminate { .. } => "Terminate",
            Command::Join { .. } => "Join",
        })
    }
}

impl ConsultationHandle {
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, RunError>>) -> Command,
    ) -> Result<T, RunError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| RunError::Stopped)?;
        answer.await.map_err(|_| RunError::Stopped)?
    }

    /// Stores a new consultation; one that starts now is already calling the doctor.
    ///
    /// # Errors
    /// An unknown doctor, a store failure, or the runner stopped.
    pub async fn create(
        &self,
        new: NewConsultation,
        attachment: Option<Attachment>,
    ) -> Result<Consultation, RunError> {
        self.ask(|reply| Command::Create {
            new,
            attachment,
            reply,
        })
        .await
    }

    /// Terminates consultation `id` of `kind`; `None`: there is none.
    ///
    /// # Errors
    /// A store failure, or the runner stopped.
    pub async fn terminate(
        &self,
        kind: Kind,
        id: i64,
        reason: Option<String>,
    ) -> Result<Option<TerminateAnswer>, RunError> {
        self.ask(|reply| Command::Terminate {
            kind,
            id,
            reason,
            reply,
        })
        .await
    }

    /// Checks a dialled join code for channel `uniqueid`.
    ///
    /// # Errors
    /// A store failure, or the runner stopped.
    pub async fn join(&self, code: String, uniqueid: String) -> Result<JoinVerdict, RunError> {
        self.ask(|reply| Command::Join {
            code,
            uniqueid,
            reply,
        })
        .await
    }
}

/// The runner's end of the channels, made before the AMI client exists.
#[derive(Debug)]
pub struct RunInbox {
    rx: mpsc::Receiver<Command>,
    settings: RunSettings,
    store: Store,
}

impl RunInbox {
    /// The PBX whose client the task must be started with.
    pub fn pbx(&self) -> &str {
        &self.settings.pbx
    }
}

/// Makes the handle and the inbox the task will serve.
pub fn channel(settings: RunSettings, store: Store) -> (ConsultationHandle, RunInbox) {
    let (tx, rx) = mpsc::channel(1024);
    let handle = ConsultationHandle {
        tx,
        store: store.clone(),
        rules: Arc::new(settings.rules.clone()),
    };
    (
        handle,
        RunInbox {
            rx,
            settings,
            store,
        },
    )
}

/// Starts the runner on `tracker`, serving until `shutdown`.
pub fn spawn(
    inbox: RunInbox,
    client: AmiClient,
    fired: mpsc::Receiver<Fired>,
    scheduler_wake: Arc<Notify>,
    outbox_wake: Arc<Notify>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let RunInbox {
        rx,
        settings,
        store,
    } = inbox;
    let events = client.subscribe();
    let runner = Runner {
        settings,
        store,
        client,
        tracker: tracker.clone(),
        shutdown,
        scheduler_wake,
        outbox_wake,
        running: HashMap::new(),
        legs: HashMap::new(),
    };
    tracker.spawn(runner.run(rx, fired, events));
}

/// The outcome of a request that calls a party.
struct DialOutcome {
    id: i64,
    party: Party,
    why: Dialled,
}

/// What the PBX had when medcall looked after a (re)connect.
struct Snapshot {
    /// uniqueid → up and in a conference.
    channels: HashMap<String, bool>,
    pbx_started: Option<DateTime<Utc>>,
}

struct Runner {
    settings: RunSettings,
    store: Store,
    client: AmiClient,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    scheduler_wake: Arc<Notify>,
    outbox_wake: Arc<Notify>,
    /// The consultations started and not ended, as stored.
    running: HashMap<i64, Consultation>,
    /// Every leg of a running consultation by uniqueid.
    legs: HashMap<String, (i64, Party)>,
}

fn now() -> DateTime<Utc> {
    StoredTime::now().time()
}

impl Runner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut fired: mpsc::Receiver<Fired>,
        mut events: EventStream,
    ) {
        self.restore().await;
        let (dialled_tx, mut dialled_rx) = mpsc::unbounded_channel();
        let (snap_tx, mut snap_rx) = mpsc::unbounded_channel();
        if self.client.status().is_connected() {
            self.look(&snap_tx);
        }
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(outcome) = dialled_rx.recv() => {
                    let DialOutcome { id, party, why } = outcome;
                    self.event(id, Event::DialFailed { party, why }, &dialled_tx).await;
                }
                Some(snapshot) = snap_rx.recv() => self.reconcile(snapshot, &dialled_tx).await,
                Some(ev) = events.recv() => match ev {
                    AmiEvent::Message(m) => {
                        if let Some(obs) = observe::observation(&m) {
                            self.observe(obs, &dialled_tx).await;
                        }
                    }
                    AmiEvent::Connected { .. } | AmiEvent::Lagged { .. } => self.look(&snap_tx),
                    AmiEvent::Disconnected { .. } => {}
                },
                Some(batch) = fired.recv() => self.fire(batch, &dialled_tx).await,
                Some(command) = rx.recv() => self.command(command, &dialled_tx).await,
                else => break,
            }
        }
    }

    async fn restore(&mut self) {
        loop {
            match self.store.running_consultations().await {
                Ok(list) => {
                    if !list.is_empty() {
                        tracing::info!(count = list.len(), "running consultations taken back");
                    }
                    for c in list {
                        self.track(c);
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load running consultations; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Keeps `c` in memory while it runs (and its legs' uniqueids), forgets it after.
    fn track(&mut self, c: Consultation) {
        if c.status.is_running() {
            for (leg, party) in [
                (&c.doctor_leg, Party::Doctor),
                (&c.patient_leg, Party::Patient),
            ] {
                if let Some(uniqueid) = leg {
                    self.legs.insert(uniqueid.clone(), (c.id, party));
                }
            }
            self.running.insert(c.id, c);
        } else {
            self.running.remove(&c.id);
            self.legs.retain(|_, (id, _)| *id != c.id);
        }
    }

    async fn load(&self, id: i64) -> Result<Option<Consultation>, StoreError> {
        match self.running.get(&id) {
            Some(c) => Ok(Some(c.clone())),
            None => self.store.consultation_any(id).await,
        }
    }

    /// Stores steps, then sends their requests; answers whether they were stored.
    async fn commit(
        &mut self,
        steps: Vec<(Step, Option<i64>)>,
        dialled: &mpsc::UnboundedSender<DialOutcome>,
    ) -> Result<(), StoreError> {
        let writes: Vec<StepWrite> = steps
            .iter()
            .map(|(s, fired)| StepWrite {
                next: s.next.clone(),
                changed: s.changed,
                schedule: s.schedule.clone(),
                unschedule: s.unschedule.clone(),
                fired: *fired,
            })
            .collect();
        let scheduled = writes.iter().any(|w| !w.schedule.is_empty());
        let notified = writes
            .iter()
            .any(|w| w.changed && w.next.notify_url.is_some());
        if let Err(e) = self.store.write_consultation_steps(writes).await {
            tracing::error!(error = %e, "consultation steps not stored; nothing sent");
            return Err(e);
        }
        if scheduled {
            self.scheduler_wake.notify_one();
        }
        if notified {
            self.outbox_wake.notify_one();
        }
        let doctors = self.doctors_called(&steps).await;
        for (step, _) in steps {
            if step.changed {
                tracing::info!(
                    consultation = step.next.id,
                    status = step.next.status.as_str(),
                    reason = step.next.end_reason.as_deref().unwrap_or(""),
                    "consultation status"
                );
            }
            let c = step.next;
            for request in step.requests {
                self.send(&c, request, &doctors, dialled);
            }
            self.track(c);
        }
        Ok(())
    }

    async fn event(&mut self, id: i64, event: Event, dialled: &mpsc::UnboundedSender<DialOutcome>) {
        let c = match self.load(id).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, consultation = id, "cannot load a consultation");
                return;
            }
        };
        let step = lifecycle::step(&c, &event, now(), &self.settings.rules);
        if step.next == c && step.requests.is_empty() && step.schedule.is_empty() {
            return;
        }
        let _ = self.commit(vec![(step, None)], dialled).await;
    }

    async fn fire(&mut self, batch: Fired, dialled: &mpsc::UnboundedSender<DialOutcome>) {
        let now = now();
        // One store call for the batch's consultations that are not in memory.
        let wanted = batch
            .jobs
            .iter()
            .map(|j| j.consultation)
            .filter(|id| !self.running.contains_key(id))
            .collect();
        let mut stored = match self.store.consultations_by_id(wanted).await {
            Ok(found) => found,
            Err(e) => {
                // The jobs stay in the table: the scheduler hands them over again.
                tracing::error!(error = %e, "cannot load the due consultations");
                let _ = batch.done.send(());
                return;
            }
        };
        // A consultation's record as this batch left it: a later job of the same
        // consultation in the batch steps from there, not from the store.
        let mut stepped: HashMap<i64, Consultation> = HashMap::new();
        let mut steps = Vec::with_capacity(batch.jobs.len());
        for job in &batch.jobs {
            let id = job.consultation;
            let c = match stepped.get(&id) {
                Some(c) => c.clone(),
                None => match self
                    .running
                    .get(&id)
                    .cloned()
                    .or_else(|| stored.remove(&id))
                {
                    Some(c) => c,
                    None => {
                        let _ = self.store.drop_job(job.id).await;
                        continue;
                    }
                },
            };
            let step = lifecycle::step(&c, &Event::Due(job.kind), now, &self.settings.rules);
            stepped.insert(id, step.next.clone());
            steps.push((step, Some(job.id)));
        }
        let late_ms = batch
            .jobs
            .iter()
            .map(|j| (now - j.due).num_milliseconds())
            .max()
            .unwrap_or(0);
        tracing::debug!(jobs = batch.jobs.len(), late_ms, "jobs fired");
        if self.commit(steps, dialled).await.is_err() {
            // Not stored: the in-memory records may be ahead of the store; read again.
            self.running.clear();
            self.legs.clear();
            self.restore().await;
        }
        let _ = batch.done.send(());
    }

    async fn command(&mut self, command: Command, dialled: &mpsc::UnboundedSender<DialOutcome>) {
        match command {
            Command::Create {
                new,
                attachment,
                reply,
            } => {
                let created = self
                    .store
                    .create_consultation(new, attachment, self.settings.pbx.clone())
                    .await;
                let c = match created {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                if c.begin_at > now() {
                    self.scheduler_wake.notify_one();
                    let _ = reply.send(Ok(c));
                    return;
                }
                // Starts now: the answer already shows the doctor being called.
                let mut step =
                    lifecycle::step(&c, &Event::Due(JobKind::Start), now(), &self.settings.rules);
                step.unschedule.push(JobKind::Start);
                let next = step.next.clone();
                let answer = match self.commit(vec![(step, None)], dialled).await {
                    Ok(()) => Ok(next),
                    // Stored as scheduled: its start job fires it.
                    Err(_) => Ok(c),
                };
                let _ = reply.send(answer);
            }
            Command::Terminate {
                kind,
                id,
                reason,
                reply,
            } => {
                let c = match self.load(id).await {
                    Ok(Some(c)) if c.kind == kind => c,
                    Ok(_) => {
                        let _ = reply.send(Ok(None));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                let step = lifecycle::step(
                    &c,
                    &Event::Terminate { reason },
                    now(),
                    &self.settings.rules,
                );
                let answer = Some(
                    step.answer
                        .clone()
                        .unwrap_or(TerminateAnswer::Refused(lifecycle::ALREADY_ENDED)),
                );
                let result = if step.changed {
                    self.commit(vec![(step, None)], dialled)
                        .await
                        .map(|()| answer)
                } else {
                    Ok(answer)
                };
                let _ = reply.send(result.map_err(RunError::from));
            }
            Command::Join {
                code,
                uniqueid,
                reply,
            } => {
                let verdict = self.verdict(code).await.inspect(|v| {
                    if let JoinVerdict::Join { id, .. } = v {
                        self.legs.insert(uniqueid, (*id, Party::Patient));
                    }
                });
                let _ = reply.send(verdict.map_err(RunError::from));
            }
        }
    }

    async fn verdict(&self, code: String) -> Result<JoinVerdict, StoreError> {
        let Some(found) = self.store.consultation_by_join_code(code).await? else {
            return Ok(JoinVerdict::Invalid);
        };
        let c = self.running.get(&found.id).cloned().unwrap_or(found);
        Ok(match c.status {
            Status::Scheduled => JoinVerdict::TooEarly,
            Status::CallingDoctor if c.patient_leg.is_some() => JoinVerdict::InUse,
            Status::CallingDoctor | Status::WaitingForPatient => JoinVerdict::Join {
                conference: self.settings.rules.conference(c.id),
                id: c.id,
            },
            Status::InProgress | Status::CallingPatient => JoinVerdict::InUse,
            _ => JoinVerdict::Ended,
        })
    }

    async fn observe(&mut self, obs: Observation, dialled: &mpsc::UnboundedSender<DialOutcome>) {
        let (id, event) = match obs {
            Observation::OriginateResponse {
                uniqueid,
                success: false,
                reason,
                ..
            } => match self.legs.get(&uniqueid) {
                Some(&(id, party)) => (
                    id,
                    Event::NotAnswered {
                        party,
                        why: NoAnswer::from_reason(reason),
                    },
                ),
                None => return,
            },
            Observation::ConfbridgeJoin {
                conference,
                uniqueid,
                ..
            } => {
                let Some(id) = conference_id(&self.settings.rules.conference_prefix, &conference)
                else {
                    return;
                };
                let party = match self.legs.get(&uniqueid) {
                    Some(&(leg_id, party)) if leg_id == id => party,
                    Some(_) => return,
                    None if uniqueid == self.settings.rules.warning_leg(id) => return,
                    // A voip patient who dialled the join code.
                    None if self.running.get(&id).is_some_and(|c| c.kind == Kind::Voip) => {
                        Party::Patient
                    }
                    None => return,
                };
                (id, Event::Joined { party, uniqueid })
            }
            Observation::ConfbridgeLeave { uniqueid, .. }
            | Observation::Hangup { uniqueid, .. } => match self.legs.get(&uniqueid) {
                Some(&(id, party)) if self.joined(id, party, &uniqueid) => {
                    (id, Event::Left { party })
                }
                _ => return,
            },
            _ => return,
        };
        self.event(id, event, dialled).await;
    }

    /// Whether `party`'s leg `uniqueid` is in consultation `id`'s conference (a ringing
    /// leg's hangup is its OriginateResponse's business).
    fn joined(&self, id: i64, party: Party, uniqueid: &str) -> bool {
        let Some(c) = self.running.get(&id) else {
            return false;
        };
        let leg = match party {
            Party::Doctor => &c.doctor_leg,
            Party::Patient => &c.patient_leg,
        };
        if leg.as_deref() != Some(uniqueid) {
            return false;
        }
        match (party, c.status) {
            (Party::Doctor, s) => s != Status::CallingDoctor,
            (Party::Patient, Status::CallingPatient) => false,
            (Party::Patient, _) => true,
        }
    }

    /// Asks the PBX for its channels off the loop (retried until it answers).
    fn look(&self, snapshots: &mpsc::UnboundedSender<Snapshot>) {
        if self.running.is_empty() {
            return;
        }
        let client = self.client.clone();
        let snapshots = snapshots.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            for _ in 0..30 {
                match snapshot(&client).await {
                    Ok(s) => {
                        let _ = snapshots.send(s);
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "consultation reconciliation failed"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    async fn reconcile(&mut self, snap: Snapshot, dialled: &mpsc::UnboundedSender<DialOutcome>) {
        let running: Vec<Consultation> = self.running.values().cloned().collect();
        for c in running {
            let restarted = match (snap.pbx_started, c.history.last()) {
                (Some(started), Some((_, at))) => started > *at,
                _ => false,
            };
            if restarted {
                self.event(c.id, Event::PbxLost, dialled).await;
                continue;
            }
            let mut events = Vec::new();
            if let Some(leg) = &c.doctor_leg {
                match (snap.channels.get(leg), c.status) {
                    (None, Status::CallingDoctor) => events.push(Event::NotAnswered {
                        party: Party::Doctor,
                        why: NoAnswer::NoAnswer,
                    }),
                    (None, _) => events.push(Event::Left {
                        party: Party::Doctor,
                    }),
                    (Some(true), Status::CallingDoctor) => events.push(Event::Joined {
                        party: Party::Doctor,
                        uniqueid: leg.clone(),
                    }),
                    _ => {}
                }
            }
            if let Some(leg) = &c.patient_leg {
                match (snap.channels.get(leg), c.status) {
                    (None, Status::CallingPatient) => events.push(Event::NotAnswered {
                        party: Party::Patient,
                        why: NoAnswer::NoAnswer,
                    }),
                    (None, _) => events.push(Event::Left {
                        party: Party::Patient,
                    }),
                    (Some(true), Status::CallingPatient) => events.push(Event::Joined {
                        party: Party::Patient,
                        uniqueid: leg.clone(),
                    }),
                    _ => {}
                }
            }
            for e in events {
                self.event(c.id, e, dialled).await;
            }
        }
    }

    /// The directory entries of the doctors `steps` call, in one store call.
    async fn doctors_called(&self, steps: &[(Step, Option<i64>)]) -> Doctors {
        let ids: Vec<DoctorId> = steps
            .iter()
            .filter(|(s, _)| {
                s.requests.iter().any(|r| {
                    matches!(
                        r,
                        Request::Call {
                            party: Party::Doctor,
                            ..
                        }
                    )
                })
            })
            .map(|(s, _)| s.next.doctor)
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.store
            .directory_doctors(ids)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends one request on its own task; a failed call comes back as an input.
    fn send(
        &self,
        c: &Consultation,
        request: Request,
        doctors: &Doctors,
        dialled: &mpsc::UnboundedSender<DialOutcome>,
    ) {
        let id = c.id;
        let (action, party) = match &request {
            Request::Call {
                party,
                uniqueid,
                timeout,
            } => (
                self.call(c, *party, uniqueid, *timeout, doctors),
                Some(*party),
            ),
            Request::Hangup { uniqueid } => (
                Action::hangup(uniqueid, Some(16)).map_err(|e| e.to_string()),
                None,
            ),
            Request::Warn { uniqueid } => (self.warning(c, uniqueid), None),
        };
        let action = match action {
            Ok(a) => a,
            Err(message) => {
                tracing::warn!(consultation = id, %message, "consultation request not sent");
                if let Some(party) = party {
                    let _ = dialled.send(DialOutcome {
                        id,
                        party,
                        why: Dialled::Refused(message),
                    });
                }
                return;
            }
        };
        let client = self.client.clone();
        let dialled = dialled.clone();
        self.tracker.spawn(async move {
            let result = client.send(action).await;
            let Some(party) = party else { return };
            let why = match result {
                Ok(_) => return,
                Err(AmiError::Failed { message, .. }) => Dialled::Refused(message),
                Err(_) => Dialled::Unreachable,
            };
            let _ = dialled.send(DialOutcome { id, party, why });
        });
    }

    fn call(
        &self,
        c: &Consultation,
        party: Party,
        uniqueid: &str,
        timeout: Duration,
        doctors: &Doctors,
    ) -> Result<Action, String> {
        let dial = match party {
            Party::Doctor => match doctors.as_ref().map(|d| d.get(&c.doctor)) {
                Ok(Some(d)) => match &d.endpoint {
                    Some(e) => e.as_str().to_owned(),
                    None => return Err(format!("doctor {} has no endpoint", c.doctor)),
                },
                Ok(None) => return Err(format!("doctor {} is not in the directory", c.doctor)),
                Err(e) => return Err(e.clone()),
            },
            Party::Patient => match &c.patient_phone {
                Some(phone) => patient_dial(&self.settings.patient_dial_template, phone),
                None => return Err("no patient phone".into()),
            },
        };
        let target = OriginateTarget::Extension {
            context: self.settings.conference_context.clone(),
            exten: self.settings.rules.conference(c.id),
            priority: 1,
        };
        let build = || {
            let mut o = Originate::new(&dial, &target)?
                .timeout(timeout)?
                .asynchronous()?
                .account(&self.settings.rules.conference(c.id))?
                .channel_id(uniqueid)?
                .variable(VAR_CONSULTATION, &c.id.to_string())?
                .variable(observe::VAR_ROLE, party.as_str())?
                .variable(observe::VAR_PROFILE, &self.settings.user_profile)?;
            if dial
                .get(..6)
                .is_some_and(|t| t.eq_ignore_ascii_case("Local/"))
            {
                o = o.other_channel_id(&format!("{uniqueid}-2"))?;
            }
            if let Some(caller_id) = &self.settings.caller_id {
                o = o.caller_id(caller_id)?;
            }
            Ok::<_, crate::ami::action::ActionError>(o.build())
        };
        build().map_err(|e| e.to_string())
    }

    fn warning(&self, c: &Consultation, uniqueid: &str) -> Result<Action, String> {
        let Some(sound) = &self.settings.warning_sound else {
            return Err("no warning sound configured".into());
        };
        let target = OriginateTarget::Extension {
            context: self.settings.conference_context.clone(),
            exten: self.settings.rules.conference(c.id),
            priority: 1,
        };
        let build = || {
            Ok::<_, crate::ami::action::ActionError>(
                Originate::new(&self.settings.player_dial, &target)?
                    .asynchronous()?
                    .account(&self.settings.rules.conference(c.id))?
                    .channel_id(uniqueid)?
                    .other_channel_id(&format!("{uniqueid}-2"))?
                    .variable(VAR_CONSULTATION, &c.id.to_string())?
                    .variable(observe::VAR_PROFILE, &self.settings.player_profile)?
                    .variable(observe::VAR_PLAY_FILE, sound)?
                    .build(),
            )
        };
        build().map_err(|e| e.to_string())
    }
}

/// The patient's dial string: the template with the phone filled in (digits only, so
/// it cannot inject anything).
pub fn patient_dial(template: &str, phone: &super::model::Phone) -> String {
    template
        .replace("{phone}", &format!("{}{}", phone.code(), phone.number()))
        .replace("{code}", phone.code())
        .replace("{number}", phone.number())
}

async fn snapshot(client: &AmiClient) -> Result<Snapshot, AmiError> {
    let uptime = client.command("core show uptime seconds").await?;
    let list = client.list(Action::core_show_channels()?).await?;
    let channels = list
        .items
        .iter()
        .filter_map(observe::live_channel)
        .map(|ch| (ch.uniqueid, ch.up && ch.application == "ConfBridge"))
        .collect();
    let pbx_started = uptime.iter().find_map(|l| {
        l.trim()
            .strip_prefix("System uptime:")
            .and_then(|n| n.trim().parse::<i64>().ok())
            .map(|s| now() - chrono::Duration::seconds(s))
    });
    Ok(Snapshot {
        channels,
        pbx_started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consultation::model::Phone;

    #[test]
    fn the_patient_dial_fills_every_placeholder() {
        let phone = Phone::new("7", "9001234567").unwrap();
        assert_eq!(
            patient_dial("PJSIP/{phone}@trunk", &phone),
            "PJSIP/79001234567@trunk"
        );
        assert_eq!(
            patient_dial("Local/{number}@c{code}/n", &phone),
            "Local/9001234567@c7/n"
        );
    }

    #[test]
    fn join_verdicts_tell_the_dialplan_why() {
        let statuses: Vec<_> = [
            JoinVerdict::Join {
                conference: "consult-1".into(),
                id: 1,
            },
            JoinVerdict::Invalid,
            JoinVerdict::TooEarly,
            JoinVerdict::InUse,
            JoinVerdict::Ended,
        ]
        .iter()
        .map(JoinVerdict::status)
        .collect();
        assert_eq!(statuses, ["OK", "INVALID", "EARLY", "INUSE", "ENDED"]);
    }
}
