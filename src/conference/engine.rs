//! The conference engine: a thread's live call as a state machine, sans-I/O.
//!
//! A thread has at most one active call, a ConfBridge named after the thread. The
//! engine takes [`Command`]s (from the HTTP routes and the `inbound` FastAGI route),
//! [`Observation`]s (built from AMI events by `conference::control`), the answers to
//! the requests it asked to be sent, and the clock as a value (`now`); it returns
//! [`Effect`]s: requests to send to the PBX, records to store, answers to give.
//!
//! It never does I/O: no tokio, no `ami::`, no SQL, no axum. The control task applies
//! the effects of one step in this order: records are committed first, then requests
//! are sent, then answers are given; so an answer is always about a durable change, and
//! a leg is on disk before Asterisk has heard of it (a restart can re-adopt it).
//!
//! # Legs
//!
//! Every leg is originated with a uniqueid the engine chose ([`LegRecord::uniqueid`],
//! and [`LegRecord::other_uniqueid`] for the `;2` half of a Local channel), the thread
//! as `Account`, and channel variables naming thread, user and role; so every AMI event
//! of the leg is recognised by its uniqueid. Channels the engine did not originate and
//! was not told about (`CBAnn/`, `CBRec/`, other helpers) are never participants: their
//! events are ignored, except that `call/end` hangs them up too (`Request::KickAll`,
//! `Request::SweepAccount`).
//!
//! States: `dialing` (originate sent) → `ringing` (Newstate Ringing) → `joined`
//! (ConfbridgeJoin) ⇄ `paused` (on hold, out of the mix both ways) → `left`; or one of
//! the failures `busy` / `no-answer` / `congestion` / `failed` from the
//! OriginateResponse reason (5 / 3 / 8 / anything else). A leg hung up by the API
//! before it answered is `left` with end reason `cancelled`. OriginateResponse may come
//! before or after the leg's own channel events; the engine accepts either order.
//!
//! # Durations and result (all from observations, never from a request)
//!
//! - `callDuration`: from the call's start (the `Start` command, or the inbound caller's
//!   admission) to its end (the moment its last leg was gone after `End`).
//! - `dialogDuration`: the time during which at least two human legs (roles
//!   `participant` and `caller`) were joined; a paused leg is not joined.
//! - `result`: `answered` if any human leg ever joined; else `busy` if every attempt
//!   ended busy; else `no-answer` if every attempt ended busy or no-answer (at least one
//!   no-answer); else `cancelled` if there was no attempt or the API hung up the
//!   attempts before any answered; else `failed`. A call closed because its PBX
//!   restarted is `failed` whatever happened before.
//!
//! Durations are whole seconds, rounded to the nearest, from millisecond times.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::directory::{Endpoint, TeamId, ThreadId, UserId};

/// Which way a call was set up (seed 002's `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
    pub fn parse(word: &str) -> Option<Direction> {
        match word {
            "outbound" => Some(Direction::Outbound),
            "inbound" => Some(Direction::Inbound),
            _ => None,
        }
    }
}

/// What a leg is in the call. Only `Participant` and `Caller` are human: only they
/// count for `dialogDuration`, for the user counts and for the result. `Player` and
/// `Stream` are medcall's own helper legs (the media issue originates them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A directory user invited with `call.user/invite`.
    Participant,
    /// The outside caller of an inbound call, admitted by the `inbound` FastAGI route.
    Caller,
    Player,
    Stream,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Caller => "caller",
            Role::Player => "player",
            Role::Stream => "stream",
        }
    }
    pub fn parse(word: &str) -> Option<Role> {
        match word {
            "participant" => Some(Role::Participant),
            "caller" => Some(Role::Caller),
            "player" => Some(Role::Player),
            "stream" => Some(Role::Stream),
            _ => None,
        }
    }
    pub fn is_human(self) -> bool {
        matches!(self, Role::Participant | Role::Caller)
    }
}

/// Where a leg is. The last four are how an attempt failed, from the OriginateResponse
/// reason: 5 busy, 3 no answer (the ring timeout), 8 congestion, anything else failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegState {
    Dialing,
    Ringing,
    Joined,
    Paused,
    Left,
    Busy,
    NoAnswer,
    Congestion,
    Failed,
}

impl LegState {
    pub fn as_str(self) -> &'static str {
        match self {
            LegState::Dialing => "dialing",
            LegState::Ringing => "ringing",
            LegState::Joined => "joined",
            LegState::Paused => "paused",
            LegState::Left => "left",
            LegState::Busy => "busy",
            LegState::NoAnswer => "no-answer",
            LegState::Congestion => "congestion",
            LegState::Failed => "failed",
        }
    }
    pub fn parse(word: &str) -> Option<LegState> {
        Some(match word {
            "dialing" => LegState::Dialing,
            "ringing" => LegState::Ringing,
            "joined" => LegState::Joined,
            "paused" => LegState::Paused,
            "left" => LegState::Left,
            "busy" => LegState::Busy,
            "no-answer" => LegState::NoAnswer,
            "congestion" => LegState::Congestion,
            "failed" => LegState::Failed,
            _ => return None,
        })
    }
    /// Still a channel (or about to be one) on the PBX.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            LegState::Dialing | LegState::Ringing | LegState::Joined | LegState::Paused
        )
    }
}

/// Why a leg ended, beyond its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The far end hung up (or the attempt failed on its own).
    Hangup,
    /// `call.user/exclude`.
    Excluded,
    /// `call/end`.
    Ended,
    /// Hung up by the API before it answered (exclude or end while dialing/ringing).
    Cancelled,
    /// Asterisk refused the originate (`Response: Error`) or never heard of it.
    Refused,
    /// Gone while medcall was not watching (found missing by a reconciliation).
    Vanished,
    /// The PBX restarted under the call.
    PbxRestart,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Excluded => "excluded",
            EndReason::Ended => "ended",
            EndReason::Cancelled => "cancelled",
            EndReason::Refused => "refused",
            EndReason::Vanished => "vanished",
            EndReason::PbxRestart => "pbx-restart",
        }
    }
    pub fn parse(word: &str) -> Option<EndReason> {
        Some(match word {
            "hangup" => EndReason::Hangup,
            "excluded" => EndReason::Excluded,
            "ended" => EndReason::Ended,
            "cancelled" => EndReason::Cancelled,
            "refused" => EndReason::Refused,
            "vanished" => EndReason::Vanished,
            "pbx-restart" => EndReason::PbxRestart,
            _ => return None,
        })
    }
}

/// `call/end`'s `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallResult {
    Answered,
    Busy,
    NoAnswer,
    Cancelled,
    Failed,
}

impl CallResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Busy => "busy",
            CallResult::NoAnswer => "no-answer",
            CallResult::Cancelled => "cancelled",
            CallResult::Failed => "failed",
        }
    }
    pub fn parse(word: &str) -> Option<CallResult> {
        Some(match word {
            "answered" => CallResult::Answered,
            "busy" => CallResult::Busy,
            "no-answer" => CallResult::NoAnswer,
            "cancelled" => CallResult::Cancelled,
            "failed" => CallResult::Failed,
            _ => return None,
        })
    }
}

/// A call's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallPhase {
    Active,
    /// `call/end` accepted: every leg is being hung up; no new leg may start.
    Ending,
    Ended,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Active => "active",
            CallPhase::Ending => "ending",
            CallPhase::Ended => "ended",
        }
    }
    pub fn parse(word: &str) -> Option<CallPhase> {
        Some(match word {
            "active" => CallPhase::Active,
            "ending" => CallPhase::Ending,
            "ended" => CallPhase::Ended,
            _ => return None,
        })
    }
}

/// One call of a thread: the thread and the millisecond it started. Its text form
/// (`<thread>-<start ms in base 36>`) starts every uniqueid medcall gives its legs, so
/// uniqueids never repeat across a thread's calls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub thread: ThreadId,
    pub started_ms: i64,
}

impl fmt::Display for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.thread, base36(self.started_ms))
    }
}

fn base36(mut n: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n <= 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        let d = usize::try_from(n % 36).unwrap_or(0);
        out.push(DIGITS.get(d).copied().unwrap_or(b'0'));
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The call as stored: always written whole, in its latest state.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub key: CallKey,
    pub team: TeamId,
    pub direction: Direction,
    pub phase: CallPhase,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub result: Option<CallResult>,
    /// Dialog time accumulated so far (closed intervals), in milliseconds.
    pub dialog_ms: i64,
    /// Since when at least two human legs are joined, if they are now.
    pub dialog_since: Option<DateTime<Utc>>,
    /// The number the next leg gets (legs are numbered from 1 within a call).
    pub next_leg: u32,
}

/// A leg as stored: always written whole, in its latest state.
#[derive(Debug, Clone, PartialEq)]
pub struct LegRecord {
    pub call: CallKey,
    pub number: u32,
    pub role: Role,
    /// The directory user, for `participant` legs.
    pub user: Option<UserId>,
    /// The channel's uniqueid, chosen by medcall (`<call key>-<number>`); for an
    /// inbound caller, the uniqueid Asterisk gave it.
    pub uniqueid: String,
    /// The `;2` half of a Local channel (`<uniqueid>-2`).
    pub other_uniqueid: Option<String>,
    /// The channel name, once an event told it.
    pub channel: Option<String>,
    /// What was dialled (empty for an inbound caller).
    pub dial: String,
    pub state: LegState,
    pub created_at: DateTime<Utc>,
    /// Newstate Up or OriginateResponse success.
    pub answered_at: Option<DateTime<Utc>>,
    /// The first ConfbridgeJoin.
    pub joined_at: Option<DateTime<Utc>>,
    /// When the leg's channel was gone (or the attempt failed).
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<EndReason>,
    /// The Hangup's `Cause`, or the OriginateResponse `Reason` of a failed attempt.
    pub hangup_cause: Option<u32>,
}

/// A request's id, chosen by the control task; answers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub u64);

/// A PBX request's id, chosen by the engine; its answer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// A user to invite and how to dial them (the directory's endpoint, or the dial
/// template filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct Invitee {
    pub user: UserId,
    pub endpoint: Endpoint,
}

/// What the API (or the dialplan) asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `call/start`: refused with [`Refusal::AlreadyActive`] when the thread has an
    /// active (or ending) call.
    Start {
        thread: ThreadId,
        team: TeamId,
        direction: Direction,
    },
    /// `call.user/invite`: one originate per invitee without a live leg in the call
    /// (duplicates in the list count once). Answered when every originate was answered:
    /// `Invited { count }` counts the accepted ones.
    Invite {
        thread: ThreadId,
        invitees: Vec<Invitee>,
    },
    /// `call.user/exclude`: hangs up each user's live legs (dialing, ringing, joined,
    /// paused). `Excluded { count }` counts users with at least one hangup accepted.
    Exclude {
        thread: ThreadId,
        users: Vec<UserId>,
    },
    /// `call/pause`: joined users go on hold (out of the mix both ways, music).
    /// `Paused { count }` counts users whose hold request was accepted.
    Pause {
        thread: ThreadId,
        users: Vec<UserId>,
    },
    /// `call/unpause`: paused users rejoin the mix.
    Unpause {
        thread: ThreadId,
        users: Vec<UserId>,
    },
    /// `call/end`: hangs up every leg and helper; answered `Ended` once every leg the
    /// engine knows is gone (or at the end deadline, [`Settings::end_deadline`]).
    End { thread: ThreadId },
    /// The `inbound` FastAGI route: the caller's channel (already on the PBX, about to
    /// run ConfBridge) joins the thread's call, created with direction `inbound` when
    /// none is active. Answered `Admitted` at once (its record is durable first).
    AdmitCaller {
        thread: ThreadId,
        team: TeamId,
        uniqueid: String,
        channel: String,
    },
}

impl Command {
    pub fn thread(&self) -> &ThreadId {
        match self {
            Command::Start { thread, .. }
            | Command::Invite { thread, .. }
            | Command::Exclude { thread, .. }
            | Command::Pause { thread, .. }
            | Command::Unpause { thread, .. }
            | Command::End { thread }
            | Command::AdmitCaller { thread, .. } => thread,
        }
    }
}

/// A channel's state as Newstate tells it; only these two matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Ringing,
    Up,
    Other,
}

/// What AMI said, already reduced to what the engine needs (control builds these).
/// Events of uniqueids the engine does not know are ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// `OriginateResponse`; `uniqueid` is the ChannelId medcall chose (Asterisk echoes
    /// it even when no channel was made).
    OriginateResponse {
        uniqueid: String,
        success: bool,
        reason: u32,
        channel: Option<String>,
    },
    Newchannel {
        uniqueid: String,
        channel: String,
    },
    Newstate {
        uniqueid: String,
        state: ChannelState,
    },
    ConfbridgeJoin {
        conference: String,
        uniqueid: String,
        channel: String,
    },
    ConfbridgeLeave {
        conference: String,
        uniqueid: String,
    },
    MusicOnHoldStart {
        uniqueid: String,
    },
    MusicOnHoldStop {
        uniqueid: String,
    },
    Hangup {
        uniqueid: String,
        cause: u32,
    },
    /// After every (re)connect: the PBX's channels now. Legs the engine holds live that
    /// are not among them ended while medcall was away (`Vanished`, or `PbxRestart` when
    /// `pbx_restarted`: then every active call of the PBX ends `failed`). Legs that are
    /// among them take the state the snapshot shows.
    Reconciled {
        channels: Vec<LiveChannel>,
        pbx_restarted: bool,
    },
}

/// One channel of a `CoreShowChannels` snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveChannel {
    pub uniqueid: String,
    pub channel: String,
    /// `ChannelStateDesc` was `Up`.
    pub up: bool,
    /// The application it runs (`ConfBridge`, `MusicOnHold`, `Dial`, …).
    pub application: String,
}

/// What the engine asks the PBX to do. Dialplan names (contexts, profiles) are the
/// control task's business: the engine says what, not where.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Originate the leg into the thread's conference (async, ring timeout
    /// [`Settings::ring_timeout`]), with its uniqueid(s), `Account` = thread, and the
    /// channel variables for thread, user and role.
    Originate { leg: LegRecord, timeout: Duration },
    /// Hang up a channel by uniqueid, cause 16.
    Hangup { uniqueid: String },
    /// Redirect a joined leg to the hold context (music on hold).
    Hold { uniqueid: String },
    /// Redirect a held leg back into the thread's conference.
    Rejoin {
        uniqueid: String,
        thread: ThreadId,
        role: Role,
    },
    /// `ConfbridgeKick Channel: all` on the thread's conference.
    KickAll { thread: ThreadId },
    /// Hang up every channel whose AccountCode is the thread (the safety net of end).
    SweepAccount { thread: ThreadId },
}

/// How the PBX answered a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutcome {
    /// `Response: Success`.
    Accepted,
    /// `Response: Error`, with its message.
    Refused(String),
    /// Never written (no connection), or written and never answered: the PBX may or may
    /// not have acted.
    Unreachable,
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// `call/start` on a thread with a call (409).
    AlreadyActive,
    /// A command other than start on a thread without an active call (404).
    NoActiveCall,
    /// The call is being ended; no new legs (409).
    Ending,
    /// Every request of the command failed as `Unreachable` (502).
    PbxUnreachable,
    /// The PBX refused (502), with its message.
    PbxRefused(String),
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Started {
        direction: Direction,
    },
    Invited {
        count: u32,
    },
    Excluded {
        count: u32,
    },
    Paused {
        count: u32,
    },
    Unpaused {
        count: u32,
    },
    Ended {
        direction: Direction,
        call_duration_s: i64,
        dialog_duration_s: i64,
        result: CallResult,
    },
    Admitted {
        direction: Direction,
    },
    Refused(Refusal),
}

/// What to store: whole records in their latest state (the store upserts them).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Call(CallRecord),
    Leg(LegRecord),
}

/// One output of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Record(Change),
    Send { id: RequestId, request: Request },
    Reply { op: OpId, answer: Answer },
}

/// The engine's knobs (mapped from `config` by the daemon).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The Originate `Timeout`: how long a user's phone rings.
    pub ring_timeout: Duration,
    /// How long `call/end` waits for the legs' Hangup events before it closes the call
    /// anyway (legs still unaccounted for are closed `Vanished`).
    pub end_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ring_timeout: Duration::from_secs(30),
            end_deadline: Duration::from_secs(10),
        }
    }
}

/// Every active call of one PBX.
#[derive(Debug, Default)]
pub struct Engine {
    settings: Settings,
    // The implementation's state: rooms by thread, legs by uniqueid, pending
    // operations by `OpId` and their requests by `RequestId`.
    _rooms: HashMap<ThreadId, ()>,
}

impl Engine {
    pub fn new(settings: Settings) -> Engine {
        Engine {
            settings,
            _rooms: HashMap::new(),
        }
    }

    /// Takes back the calls the store holds as active or ending (after a restart),
    /// with their legs. A reconciliation (`Observation::Reconciled`) should follow once
    /// the PBX answers.
    pub fn restore(&mut self, calls: Vec<(CallRecord, Vec<LegRecord>)>) {
        let _ = calls;
    }

    /// A command from the API. Its answer comes in this step's effects or a later one.
    pub fn command(&mut self, op: OpId, command: Command, now: DateTime<Utc>) -> Vec<Effect> {
        let _ = (op, command, now, &self.settings);
        Vec::new()
    }

    /// An AMI observation.
    pub fn observe(&mut self, observation: Observation, now: DateTime<Utc>) -> Vec<Effect> {
        let _ = (observation, now);
        Vec::new()
    }

    /// The PBX's answer to request `id`.
    pub fn answered(
        &mut self,
        id: RequestId,
        outcome: RequestOutcome,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let _ = (id, outcome, now);
        Vec::new()
    }

    /// The clock moved: ends calls whose end deadline passed. The control task calls it
    /// about once a second.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        let _ = now;
        Vec::new()
    }

    /// The call a thread has now (active or ending), for reads and for the routes'
    /// checks.
    pub fn active_call(&self, thread: &ThreadId) -> Option<&CallRecord> {
        let _ = thread;
        None
    }
}
