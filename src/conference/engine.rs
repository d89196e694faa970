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
//!
//! # Steps
//!
//! Every call of [`Engine::command`], [`Engine::observe`], [`Engine::answered`] and
//! [`Engine::tick`] is one step. Its effects are the changed records (calls first, then
//! legs; each changed record once, whole and latest), then the requests, then the
//! answers. A command's answer waits for every request it sent; when every request
//! of an invite, exclude, pause or unpause came back `Unreachable` the answer is
//! `Refused(PbxUnreachable)`, else the count (the engine never answers `PbxRefused`:
//! a refused originate is a `failed`/`refused` leg, and the invite counts the others).
//!
//! # Rules the spec left open (decided here)
//!
//! - **When a leg is gone.** A leg's channel has one or two halves; it is gone when
//!   every half an event showed is hung up. A live leg whose channel is gone ends:
//!   `left` if it answered (Newstate Up, OriginateResponse success or a join), with end
//!   reason `excluded` / `ended` when the API asked, else `hangup`. An unanswered one
//!   waits for its OriginateResponse (which classifies it); if none came
//!   [`Settings::end_deadline`] after the channel went, the Hangup cause does: 17 busy,
//!   18/19 no answer, 34 congestion, else failed (`cancelled` when the API hung it up).
//!   A leg that left the conference is `left` at once but `call/end` still waits for
//!   its channel's Hangup, so "ended" means no channel of the call is left.
//! - **Hangups that found no channel.** A hangup refused for a leg whose channel no
//!   event has shown yet (an originate still on its way) is sent again when the channel
//!   appears (Newchannel, Newstate, OriginateResponse success, ConfbridgeJoin); such a
//!   user counts as excluded. If the channel was seen and is still up, the hangup is
//!   retried at once, at most twice. After `Unreachable`, it is re-sent when the
//!   channel next shows up. A leg that joins while its call ends (or after its exclude)
//!   is hung up at once.
//! - **An `Unreachable` originate the PBX did act on**: the leg is already `failed` /
//!   `refused`; if its channel shows up anyway it is hung up once. If events of the leg
//!   came before the answer, the originate counts as accepted.
//! - **Pause.** A hold marks the leg as pausing at once; a ConfbridgeLeave or a
//!   MusicOnHoldStart then makes it `paused`. A refused (or unreachable) hold puts the
//!   leg back to `joined` unless it already left the conference. A paused leg stays
//!   paused until its ConfbridgeJoin after unpause. An unpause within two seconds of
//!   the hold, before the leg's MusicOnHoldStart, waits for it (or for those two
//!   seconds) before it redirects: Asterisk refuses a Redirect of a channel whose hold
//!   Redirect is still under way ("channel not up"), and under load that took up to
//!   350 ms. The answer waits too; a leg that goes meanwhile is not counted.
//! - **End.** Exclude, pause, unpause, invite and admit on an ending call are refused
//!   `Ending`; a second `call/end` waits with the first. `KickAll` and `SweepAccount`
//!   are always sent, and their outcome decides nothing. With the PBX unreachable the
//!   call still closes at the deadline, answered `Ended`, its remaining legs
//!   `left`/`vanished` (medcall cannot tell more, and the sweep after the next
//!   reconnect has nothing to protect).
//! - **Reconciliation.** A live leg found in the snapshot takes its state from it
//!   (`ConfBridge` → joined unless pausing or paused, `MusicOnHold` → paused, up →
//!   answered); one not found ended while medcall was away, at the reconciliation's
//!   time: `left` if it had answered, else `failed`, end reason `vanished`. Dialog time
//!   while medcall was away counts up to the reconciliation (a restored `dialog_since`
//!   keeps counting if the legs are still joined). An ending call's legs still found
//!   are hung up again (the end's hangups may have been lost). After a PBX restart
//!   every live leg ends `pbx-restart` (`left` or `failed` as above) and every call
//!   closes `failed`, answering a waiting `call/end`.
//! - **Restore.** A restored ending call has no operation to answer; its deadline runs
//!   from the first tick after the restore. A restored leg's pending exclude is
//!   forgotten; a restored ending call's legs are all "ended by the API".
//! - **Admit.** A caller's uniqueid already known is admitted again without a second
//!   leg. A caller's leg is answered at admission; it counts for the result only once
//!   it joined.

mod room;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::directory::{Endpoint, TeamId, ThreadId, UserId};
use room::{ApiHangup, Leg, Originate, Room, state_from_reason};

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
    /// A player or stream leg ended by `call.audio/stop` or `call.stream/stop`.
    Stopped,
    /// A player leg replaced by the next `call.audio/play`.
    Replaced,
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
            EndReason::Stopped => "stopped",
            EndReason::Replaced => "replaced",
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
            "stopped" => EndReason::Stopped,
            "replaced" => EndReason::Replaced,
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
    /// What a helper leg carries: a player's file (the content's sha256), a stream
    /// listener's AudioSocket uuid; `None` for people.
    pub media: Option<String>,
}

/// Where a conference recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingState {
    /// `ConfbridgeStartRecord` sent, no answer yet.
    Starting,
    Recording,
    /// Stopped (by the API, or by the call's end): Asterisk closes the file; the
    /// recordings finaliser describes it once it is final.
    Stopped,
    /// Asterisk refused to start it (or never answered).
    Failed,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Starting => "starting",
            RecordingState::Recording => "recording",
            RecordingState::Stopped => "stopped",
            RecordingState::Failed => "failed",
        }
    }
    /// Asterisk may be writing the file.
    pub fn is_live(self) -> bool {
        matches!(self, RecordingState::Starting | RecordingState::Recording)
    }
}

/// A recording of the conference mix as the engine keeps it (the file's facts, once it
/// is final, are the finaliser's and are stored beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRecord {
    pub call: CallKey,
    /// Recordings are numbered from 1 within a call.
    pub number: u32,
    /// The unguessable token of its `fileUrl`, chosen by the route.
    pub token: String,
    pub state: RecordingState,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Why it failed (Asterisk's message).
    pub error: Option<String>,
}

impl RecordingRecord {
    /// The file's name without directory or extension: `<call key>-rec<number>`. Unique
    /// per recording, so with the bridge profile's `record_file_timestamp = no` and
    /// `record_file_append = no` the name medcall chose is the name on disk.
    pub fn file_stem(&self) -> String {
        format!("{}-rec{}", self.call, self.number)
    }
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
    /// `call.audio/play`: a player leg (`dial`, carrying `media`, the converted file's
    /// content hash) joins the conference; a player still playing is hung up first
    /// (replaced). Answered `Playing` once the new player joined.
    Play {
        thread: ThreadId,
        dial: Endpoint,
        media: String,
    },
    /// `call.audio/stop`: hangs up the live player legs; `Stopped { count }`.
    StopPlay { thread: ThreadId },
    /// `call.stream/start`: a muted listener leg (`dial`, an AudioSocket channel to
    /// medcall carrying the stream's uuid `media`) joins; answered `Streaming` once it
    /// joined. With a stream already live, answered with that one (no second leg).
    StartStream {
        thread: ThreadId,
        dial: Endpoint,
        media: String,
    },
    /// `call.stream/stop`: hangs up the live stream legs; `Stopped { count }`.
    StopStream { thread: ThreadId },
    /// `call.recording/start`: `ConfbridgeStartRecord` to a file medcall names; refused
    /// `AlreadyRecording` while one is live. `token` is the recording's `fileUrl` token.
    StartRecording { thread: ThreadId, token: String },
    /// `call.recording/stop`: `ConfbridgeStopRecord`; `RecordingStopped` with the
    /// recording (its file is final soon after: the finaliser waits for it).
    StopRecording { thread: ThreadId },
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
            | Command::AdmitCaller { thread, .. }
            | Command::Play { thread, .. }
            | Command::StopPlay { thread }
            | Command::StartStream { thread, .. }
            | Command::StopStream { thread }
            | Command::StartRecording { thread, .. }
            | Command::StopRecording { thread } => thread,
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
    Originate {
        leg: Box<LegRecord>,
        timeout: Duration,
    },
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
    /// `ConfbridgeStartRecord` of the thread's conference into the file named
    /// `file_stem` (the control task knows the directory and the extension).
    StartRecord { thread: ThreadId, file_stem: String },
    /// `ConfbridgeStopRecord` of the thread's conference.
    StopRecord { thread: ThreadId },
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
    /// `call.recording/start` while a recording is live (409).
    AlreadyRecording,
    /// `call.recording/stop` with no live recording (409).
    NotRecording,
    /// A player or stream leg did not join (502): why.
    LegFailed(String),
    /// `call.recording/start` while nobody is in the conference: Asterisk has no
    /// conference to record until a first leg joins (409).
    NothingToRecord,
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
        /// The call the caller joined: the dialplan tags the caller's channel with it.
        key: CallKey,
    },
    /// The player leg `number` joined: everyone hears the file.
    Playing {
        number: u32,
    },
    /// Player or stream legs hung up by a stop.
    Stopped {
        count: u32,
    },
    /// The stream leg joined (or was live already); `media` is its uuid.
    Streaming {
        media: String,
    },
    RecordingStarted(RecordingRecord),
    RecordingStopped(RecordingRecord),
    Refused(Refusal),
}

/// What to store: whole records in their latest state (the store upserts them).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Call(CallRecord),
    Leg(LegRecord),
    Recording(RecordingRecord),
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
    /// The thread's call while it is active or ending; removed once it closed.
    rooms: HashMap<ThreadId, Room>,
    /// Every uniqueid of a leg in `rooms`: its thread and leg number.
    uids: HashMap<String, (ThreadId, u32)>,
    pending: Pending,
}

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqKind {
    Originate,
    Hangup,
    Hold,
    Rejoin,
    /// `KickAll` and `SweepAccount`: their outcome decides nothing.
    Room,
    /// `StartRecord` / `StopRecord` of the recording numbered `ReqCtx::leg`: answered
    /// directly, not through an [`Op`].
    StartRecord,
    StopRecord,
}

/// A request in flight: which operation waits for it, and which leg it is about.
#[derive(Debug, Clone)]
struct ReqCtx {
    op: Option<OpId>,
    thread: ThreadId,
    call_ms: i64,
    leg: u32,
    user: Option<UserId>,
    kind: ReqKind,
}

impl ReqCtx {
    /// A request about one leg of the call `call`.
    fn for_leg(op: Option<OpId>, call: &CallKey, leg: &Leg, kind: ReqKind) -> ReqCtx {
        ReqCtx {
            op,
            thread: call.thread.clone(),
            call_ms: call.started_ms,
            leg: leg.rec.number,
            user: leg.rec.user.clone(),
            kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Invite,
    Exclude,
    Pause,
    Unpause,
    /// `call.audio/stop` and `call.stream/stop`: counts legs, not users.
    StopMedia,
}

/// A command waiting for its requests' answers.
#[derive(Debug)]
struct Op {
    kind: OpKind,
    waiting: usize,
    sent: usize,
    unreachable: usize,
    /// The users the operation affected (the answer's count).
    users: HashSet<UserId>,
    /// The legs it affected (the count of a stop).
    legs: u32,
}

impl Op {
    fn answer(&self) -> Answer {
        if self.sent > 0 && self.unreachable == self.sent {
            return Answer::Refused(Refusal::PbxUnreachable);
        }
        let count = u32::try_from(self.users.len()).unwrap_or(u32::MAX);
        match self.kind {
            OpKind::Invite => Answer::Invited { count },
            OpKind::Exclude => Answer::Excluded { count },
            OpKind::Pause => Answer::Paused { count },
            OpKind::Unpause => Answer::Unpaused { count },
            OpKind::StopMedia => Answer::Stopped { count: self.legs },
        }
    }
}

/// Requests in flight and the operations waiting for them.
#[derive(Debug, Default)]
struct Pending {
    next: u64,
    requests: HashMap<RequestId, ReqCtx>,
    ops: HashMap<OpId, Op>,
}

impl Pending {
    fn open(&mut self, op: OpId, kind: OpKind) {
        self.ops.insert(
            op,
            Op {
                kind,
                waiting: 0,
                sent: 0,
                unreachable: 0,
                users: HashSet::new(),
                legs: 0,
            },
        );
    }

    fn send(&mut self, step: &mut Step, ctx: ReqCtx, request: Request) {
        self.next = self.next.wrapping_add(1);
        let id = RequestId(self.next);
        if let Some(op) = ctx.op.and_then(|op| self.ops.get_mut(&op)) {
            op.waiting = op.waiting.saturating_add(1);
            op.sent = op.sent.saturating_add(1);
        }
        self.requests.insert(id, ctx);
        step.sends.push((id, request));
    }

    /// Counts a request of `op` that will be sent later ([`Pending::send_reserved`]) or
    /// never ([`Pending::release`]): the answer waits for it.
    fn reserve(&mut self, op: OpId) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.waiting = o.waiting.saturating_add(1);
            o.sent = o.sent.saturating_add(1);
        }
    }

    /// Sends a request [`Pending::reserve`] counted.
    fn send_reserved(&mut self, step: &mut Step, ctx: ReqCtx, request: Request) {
        self.next = self.next.wrapping_add(1);
        let id = RequestId(self.next);
        self.requests.insert(id, ctx);
        step.sends.push((id, request));
    }

    /// A reserved request that will not be sent (its leg went, or its call ends): the
    /// operation no longer waits for it, and it counts for no user.
    fn release(&mut self, op: OpId, step: &mut Step) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.waiting = o.waiting.saturating_sub(1);
            o.sent = o.sent.saturating_sub(1);
        }
        self.finish(op, step);
    }

    /// Answers `op` if none of its requests is still in flight.
    fn finish(&mut self, op: OpId, step: &mut Step) {
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            if let Some(done) = self.ops.remove(&op) {
                step.replies.push((op, done.answer()));
            }
        }
    }

    fn hang_up(&mut self, step: &mut Step, call: &CallKey, leg: &Leg, op: Option<OpId>) {
        let ctx = ReqCtx::for_leg(op, call, leg, ReqKind::Hangup);
        let request = Request::Hangup {
            uniqueid: leg.rec.uniqueid.clone(),
        };
        self.send(step, ctx, request);
    }

    /// The channel of a leg the API wants gone showed up: hang it up (again).
    fn appeared(&mut self, step: &mut Step, call: &CallKey, leg: &mut Leg) {
        if leg.is_live() {
            if leg.rehangup {
                leg.rehangup = false;
                self.hang_up(step, call, leg, None);
            }
        } else if leg.rec.end_reason == Some(EndReason::Refused) && !leg.ghost_hung {
            leg.ghost_hung = true;
            self.hang_up(step, call, leg, None);
        }
    }
}

/// What one step produced so far; [`Engine::flush`] turns it into effects.
#[derive(Debug, Default)]
struct Step {
    touched: Vec<ThreadId>,
    sends: Vec<(RequestId, Request)>,
    replies: Vec<(OpId, Answer)>,
}

impl Step {
    fn touch(&mut self, thread: &ThreadId) {
        if !self.touched.contains(thread) {
            self.touched.push(thread.clone());
        }
    }
    fn reply(&mut self, op: OpId, answer: Answer) {
        self.replies.push((op, answer));
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn index(uids: &mut HashMap<String, (ThreadId, u32)>, rec: &LegRecord) {
    let at = (rec.call.thread.clone(), rec.number);
    uids.insert(rec.uniqueid.clone(), at.clone());
    if let Some(other) = &rec.other_uniqueid {
        uids.insert(other.clone(), at);
    }
}

fn open_room<'a>(
    rooms: &'a mut HashMap<ThreadId, Room>,
    step: &mut Step,
    thread: &ThreadId,
    team: TeamId,
    direction: Direction,
    now: DateTime<Utc>,
) -> &'a mut Room {
    step.touch(thread);
    rooms.entry(thread.clone()).or_insert_with(|| {
        Room::new(CallRecord {
            key: CallKey {
                thread: thread.clone(),
                started_ms: now.timestamp_millis(),
            },
            team,
            direction,
            phase: CallPhase::Active,
            started_at: now,
            ended_at: None,
            result: None,
            dialog_ms: 0,
            dialog_since: None,
            next_leg: 1,
        })
    })
}

/// The thread's call if it may take a new operation; else the refusal is replied.
fn active_room<'a>(
    rooms: &'a mut HashMap<ThreadId, Room>,
    step: &mut Step,
    thread: &ThreadId,
    op: OpId,
) -> Option<&'a mut Room> {
    match rooms.get_mut(thread) {
        None => {
            step.reply(op, Answer::Refused(Refusal::NoActiveCall));
            None
        }
        Some(room) if room.call.phase != CallPhase::Active => {
            step.reply(op, Answer::Refused(Refusal::Ending));
            None
        }
        Some(room) => {
            step.touch(thread);
            Some(room)
        }
    }
}

impl Engine {
    pub fn new(settings: Settings) -> Engine {
        Engine {
            settings,
            ..Engine::default()
        }
    }

    /// Takes back the calls the store holds as active or ending (after a restart),
    /// with their legs. A reconciliation (`Observation::Reconciled`) should follow once
    /// the PBX answers.
    pub fn restore(&mut self, calls: Vec<(CallRecord, Vec<LegRecord>)>) {
        for (call, legs) in calls {
            if call.phase == CallPhase::Ended {
                continue;
            }
            let thread = call.key.thread.clone();
            self.remove_room(&thread);
            let ending = call.phase == CallPhase::Ending;
            let mut room = Room::new(call.clone());
            room.recorded = Some(call);
            for rec in legs {
                if rec.call != room.call.key {
                    continue;
                }
                index(&mut self.uids, &rec);
                room.legs.insert(rec.number, Leg::restored(rec, ending));
            }
            self.rooms.insert(thread, room);
        }
    }

    /// Takes back the recordings of the restored calls (after [`Engine::restore`]);
    /// those of calls not restored are ignored.
    pub fn restore_recordings(&mut self, recordings: Vec<RecordingRecord>) {
        for rec in recordings {
            if let Some(room) = self
                .rooms
                .get_mut(&rec.call.thread)
                .filter(|r| r.call.key == rec.call)
            {
                let recording = room::Recording {
                    rec: rec.clone(),
                    recorded: Some(rec),
                };
                room.recordings.insert(recording.rec.number, recording);
            }
        }
    }

    /// A command from the API. Its answer comes in this step's effects or a later one.
    pub fn command(&mut self, op: OpId, command: Command, now: DateTime<Utc>) -> Vec<Effect> {
        let mut step = Step::default();
        match command {
            Command::Start {
                thread,
                team,
                direction,
            } => {
                if self.rooms.contains_key(&thread) {
                    step.reply(op, Answer::Refused(Refusal::AlreadyActive));
                } else {
                    open_room(&mut self.rooms, &mut step, &thread, team, direction, now);
                    step.reply(op, Answer::Started { direction });
                }
            }
            Command::Invite { thread, invitees } => {
                self.invite(&mut step, op, &thread, invitees, now);
            }
            Command::Exclude { thread, users } => {
                self.exclude(&mut step, op, &thread, &users);
            }
            Command::Pause { thread, users } => {
                self.pause(&mut step, op, &thread, &users, now);
            }
            Command::Unpause { thread, users } => {
                self.unpause(&mut step, op, &thread, &users, now);
            }
            Command::End { thread } => self.end(&mut step, op, &thread, now),
            Command::AdmitCaller {
                thread,
                team,
                uniqueid,
                channel,
            } => self.admit(&mut step, op, &thread, team, uniqueid, channel, now),
            Command::Play {
                thread,
                dial,
                media,
            } => self.start_helper(&mut step, op, &thread, Role::Player, dial, media, now),
            Command::StartStream {
                thread,
                dial,
                media,
            } => self.start_helper(&mut step, op, &thread, Role::Stream, dial, media, now),
            Command::StopPlay { thread } => self.stop_helpers(&mut step, op, &thread, Role::Player),
            Command::StopStream { thread } => {
                self.stop_helpers(&mut step, op, &thread, Role::Stream);
            }
            Command::StartRecording { thread, token } => {
                self.start_recording(&mut step, op, &thread, token, now);
            }
            Command::StopRecording { thread } => self.stop_recording(&mut step, op, &thread),
        }
        self.flush(step, now)
    }

    fn invite(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        invitees: Vec<Invitee>,
        now: DateTime<Utc>,
    ) {
        let Engine {
            rooms,
            uids,
            pending,
            settings,
        } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        pending.open(op, OpKind::Invite);
        let mut seen = HashSet::new();
        for Invitee { user, endpoint } in invitees {
            if !seen.insert(user.clone()) || room.user_has_live_leg(&user) {
                continue;
            }
            let number = room.take_number();
            let uniqueid = format!("{}-{number}", room.call.key);
            let other_uniqueid = endpoint.is_local().then(|| format!("{uniqueid}-2"));
            let rec = LegRecord {
                call: room.call.key.clone(),
                number,
                role: Role::Participant,
                user: Some(user.clone()),
                uniqueid,
                other_uniqueid,
                channel: None,
                dial: endpoint.to_string(),
                state: LegState::Dialing,
                created_at: now,
                answered_at: None,
                joined_at: None,
                ended_at: None,
                end_reason: None,
                hangup_cause: None,
                media: None,
            };
            index(uids, &rec);
            let ctx = ReqCtx {
                op: Some(op),
                thread: thread.clone(),
                call_ms: room.call.key.started_ms,
                leg: number,
                user: Some(user),
                kind: ReqKind::Originate,
            };
            let request = Request::Originate {
                leg: Box::new(rec.clone()),
                timeout: settings.ring_timeout,
            };
            pending.send(step, ctx, request);
            room.legs.insert(number, Leg::new(rec, Originate::Waiting));
        }
        pending.finish(op, step);
    }

    /// A player (`Play`) or stream listener (`StartStream`) leg. A live stream answers
    /// the start itself (no second leg); a live player is replaced.
    #[allow(clippy::too_many_arguments)]
    fn start_helper(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        role: Role,
        dial: Endpoint,
        media: String,
        now: DateTime<Utc>,
    ) {
        let Engine {
            rooms,
            uids,
            pending,
            settings,
        } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        let live = |l: &&mut Leg| l.rec.role == role && l.is_live();
        if role == Role::Stream {
            if let Some(leg) = room.legs.values_mut().filter(live).last() {
                room.waiters.push(room::Waiter {
                    op,
                    leg: leg.rec.number,
                });
                return;
            }
        }
        for leg in room.legs.values_mut().filter(live) {
            leg.api.get_or_insert(ApiHangup::Replaced);
            pending.hang_up(step, &room.call.key, leg, None);
        }
        let number = room.take_number();
        let uniqueid = format!("{}-{number}", room.call.key);
        let other_uniqueid = dial.is_local().then(|| format!("{uniqueid}-2"));
        let rec = LegRecord {
            call: room.call.key.clone(),
            number,
            role,
            user: None,
            uniqueid,
            other_uniqueid,
            channel: None,
            dial: dial.to_string(),
            state: LegState::Dialing,
            created_at: now,
            answered_at: None,
            joined_at: None,
            ended_at: None,
            end_reason: None,
            hangup_cause: None,
            media: Some(media),
        };
        index(uids, &rec);
        let leg = Leg::new(rec.clone(), Originate::Waiting);
        let ctx = ReqCtx::for_leg(None, &room.call.key, &leg, ReqKind::Originate);
        let request = Request::Originate {
            leg: Box::new(rec),
            timeout: settings.ring_timeout,
        };
        pending.send(step, ctx, request);
        room.legs.insert(number, leg);
        room.waiters.push(room::Waiter { op, leg: number });
    }

    /// `call.audio/stop` / `call.stream/stop`: every live leg of `role` is hung up.
    fn stop_helpers(&mut self, step: &mut Step, op: OpId, thread: &ThreadId, role: Role) {
        let stopped = ApiHangup::Stopped;
        self.hang_up_where(step, op, thread, OpKind::StopMedia, stopped, |l| {
            l.role == role
        });
    }

    /// Opens `op` and hangs up every live leg `pick` chooses, marked as hung up by the
    /// API for `why`; answered once every hangup was answered.
    fn hang_up_where(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        kind: OpKind,
        why: ApiHangup,
        pick: impl Fn(&LegRecord) -> bool,
    ) {
        let Engine { rooms, pending, .. } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        pending.open(op, kind);
        for leg in room.legs.values_mut() {
            if leg.is_live() && pick(&leg.rec) {
                leg.api.get_or_insert(why);
                pending.hang_up(step, &room.call.key, leg, Some(op));
            }
        }
        pending.finish(op, step);
    }

    fn start_recording(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        token: String,
        now: DateTime<Utc>,
    ) {
        let Engine { rooms, pending, .. } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        if room.live_recording().is_some() {
            step.reply(op, Answer::Refused(Refusal::AlreadyRecording));
            return;
        }
        if !room.legs.values().any(|l| l.in_bridge) {
            step.reply(op, Answer::Refused(Refusal::NothingToRecord));
            return;
        }
        let number = room
            .recordings
            .keys()
            .next_back()
            .map_or(1, |n| n.saturating_add(1));
        let rec = RecordingRecord {
            call: room.call.key.clone(),
            number,
            token,
            state: RecordingState::Starting,
            started_at: now,
            stopped_at: None,
            error: None,
        };
        let ctx = ReqCtx {
            op: Some(op),
            thread: thread.clone(),
            call_ms: room.call.key.started_ms,
            leg: number,
            user: None,
            kind: ReqKind::StartRecord,
        };
        let request = Request::StartRecord {
            thread: thread.clone(),
            file_stem: rec.file_stem(),
        };
        pending.send(step, ctx, request);
        room.recordings.insert(
            number,
            room::Recording {
                rec,
                recorded: None,
            },
        );
    }

    fn stop_recording(&mut self, step: &mut Step, op: OpId, thread: &ThreadId) {
        let Engine { rooms, pending, .. } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        let call_ms = room.call.key.started_ms;
        let Some(recording) = room.live_recording() else {
            step.reply(op, Answer::Refused(Refusal::NotRecording));
            return;
        };
        let ctx = ReqCtx {
            op: Some(op),
            thread: thread.clone(),
            call_ms,
            leg: recording.rec.number,
            user: None,
            kind: ReqKind::StopRecord,
        };
        let request = Request::StopRecord {
            thread: thread.clone(),
        };
        pending.send(step, ctx, request);
    }

    fn exclude(&mut self, step: &mut Step, op: OpId, thread: &ThreadId, users: &[UserId]) {
        let users: HashSet<&UserId> = users.iter().collect();
        let excluded = ApiHangup::Excluded;
        self.hang_up_where(step, op, thread, OpKind::Exclude, excluded, |l| {
            l.user.as_ref().is_some_and(|u| users.contains(u))
        });
    }

    fn pause(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        users: &[UserId],
        now: DateTime<Utc>,
    ) {
        let Engine { rooms, pending, .. } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        pending.open(op, OpKind::Pause);
        let users: HashSet<&UserId> = users.iter().collect();
        for leg in room.legs.values_mut() {
            let theirs = leg.rec.user.as_ref().is_some_and(|u| users.contains(u));
            if theirs && leg.rec.state == LegState::Joined && !leg.pausing {
                leg.pausing = true;
                leg.hold_sent_at = Some(now);
                let ctx = ReqCtx::for_leg(Some(op), &room.call.key, leg, ReqKind::Hold);
                let request = Request::Hold {
                    uniqueid: leg.rec.uniqueid.clone(),
                };
                pending.send(step, ctx, request);
            }
        }
        pending.finish(op, step);
    }

    fn unpause(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        users: &[UserId],
        now: DateTime<Utc>,
    ) {
        let Engine { rooms, pending, .. } = self;
        let Some(room) = active_room(rooms, step, thread, op) else {
            return;
        };
        pending.open(op, OpKind::Unpause);
        let users: HashSet<&UserId> = users.iter().collect();
        for leg in room.legs.values_mut() {
            let theirs = leg.rec.user.as_ref().is_some_and(|u| users.contains(u));
            if theirs && leg.rec.state == LegState::Paused && leg.rejoin_after_hold.is_none() {
                pending.reserve(op);
                match leg.hold_sent_at {
                    Some(sent) if !leg.on_hold && now - sent < REJOIN_WAIT => {
                        // The hold's Redirect may still be under way: a second Redirect
                        // now would be refused. It goes once the leg is on music.
                        leg.rejoin_after_hold = Some((op, sent));
                        step.touch(thread);
                    }
                    _ => send_rejoin(pending, step, &room.call.key, leg, op),
                }
            }
        }
        pending.finish(op, step);
    }

    /// Unpauses waiting for their leg to reach the hold: sent once it is on music (or
    /// [`REJOIN_WAIT`] after its hold was sent, whatever the events said); dropped,
    /// uncounted, when the leg went or its call ends.
    fn settle_rejoins(&mut self, step: &mut Step, now: DateTime<Utc>) {
        let Engine { rooms, pending, .. } = self;
        let touched: Vec<ThreadId> = step.touched.to_vec();
        for thread in touched {
            let Some(room) = rooms.get_mut(&thread) else {
                continue;
            };
            let active = room.call.phase == CallPhase::Active;
            for leg in room.legs.values_mut() {
                let Some((op, since)) = leg.rejoin_after_hold else {
                    continue;
                };
                // A leg whose channel is gone ends here, as `flush` would end it next.
                leg.settle(now);
                if !active || !leg.is_live() || leg.rec.state != LegState::Paused {
                    leg.rejoin_after_hold = None;
                    pending.release(op, step);
                } else if leg.on_hold || now - since >= REJOIN_WAIT {
                    leg.rejoin_after_hold = None;
                    send_rejoin(pending, step, &room.call.key, leg, op);
                }
            }
        }
    }

    fn end(&mut self, step: &mut Step, op: OpId, thread: &ThreadId, now: DateTime<Utc>) {
        let Engine { rooms, pending, .. } = self;
        let Some(room) = rooms.get_mut(thread) else {
            step.reply(op, Answer::Refused(Refusal::NoActiveCall));
            return;
        };
        step.touch(thread);
        room.end_ops.push(op);
        if room.call.phase != CallPhase::Active {
            return;
        }
        room.call.phase = CallPhase::Ending;
        room.end_started = Some(now);
        for leg in room.legs.values_mut() {
            if leg.is_live() {
                leg.api.get_or_insert(ApiHangup::Ended);
                pending.hang_up(step, &room.call.key, leg, None);
            }
        }
        for request in [
            Request::KickAll {
                thread: thread.clone(),
            },
            Request::SweepAccount {
                thread: thread.clone(),
            },
        ] {
            let ctx = ReqCtx {
                op: None,
                thread: thread.clone(),
                call_ms: room.call.key.started_ms,
                leg: 0,
                user: None,
                kind: ReqKind::Room,
            };
            pending.send(step, ctx, request);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        step: &mut Step,
        op: OpId,
        thread: &ThreadId,
        team: TeamId,
        uniqueid: String,
        channel: String,
        now: DateTime<Utc>,
    ) {
        if let Some((known, _)) = self.uids.get(&uniqueid) {
            // The same caller admitted twice (a repeated AGI request): one leg.
            if let Some(room) = self.rooms.get(known) {
                let (direction, key) = (room.call.direction, room.call.key.clone());
                step.reply(op, Answer::Admitted { direction, key });
            } else {
                step.reply(op, Answer::Refused(Refusal::NoActiveCall));
            }
            return;
        }
        if self
            .rooms
            .get(thread)
            .is_some_and(|r| r.call.phase != CallPhase::Active)
        {
            step.reply(op, Answer::Refused(Refusal::Ending));
            return;
        }
        let room = open_room(&mut self.rooms, step, thread, team, Direction::Inbound, now);
        let number = room.take_number();
        let rec = LegRecord {
            call: room.call.key.clone(),
            number,
            role: Role::Caller,
            user: None,
            uniqueid,
            other_uniqueid: None,
            channel: Some(channel),
            dial: String::new(),
            state: LegState::Dialing,
            created_at: now,
            answered_at: Some(now),
            joined_at: None,
            ended_at: None,
            end_reason: None,
            hangup_cause: None,
            media: None,
        };
        index(&mut self.uids, &rec);
        let mut leg = Leg::new(rec, Originate::NotSent);
        leg.main.seen = true;
        room.legs.insert(number, leg);
        let (direction, key) = (room.call.direction, room.call.key.clone());
        step.reply(op, Answer::Admitted { direction, key });
    }

    /// An AMI observation.
    pub fn observe(&mut self, observation: Observation, now: DateTime<Utc>) -> Vec<Effect> {
        let mut step = Step::default();
        match observation {
            Observation::Reconciled {
                channels,
                pbx_restarted,
            } => self.reconcile(&mut step, &channels, pbx_restarted, now),
            other => self.observe_leg(&mut step, other, now),
        }
        self.flush(step, now)
    }

    fn observe_leg(&mut self, step: &mut Step, observation: Observation, now: DateTime<Utc>) {
        let uid = match &observation {
            Observation::OriginateResponse { uniqueid, .. }
            | Observation::Newchannel { uniqueid, .. }
            | Observation::Newstate { uniqueid, .. }
            | Observation::ConfbridgeJoin { uniqueid, .. }
            | Observation::ConfbridgeLeave { uniqueid, .. }
            | Observation::MusicOnHoldStart { uniqueid }
            | Observation::MusicOnHoldStop { uniqueid }
            | Observation::Hangup { uniqueid, .. } => uniqueid.clone(),
            Observation::Reconciled { .. } => return,
        };
        let Some((thread, number)) = self.uids.get(&uid).cloned() else {
            return;
        };
        let Engine { rooms, pending, .. } = self;
        let Some(room) = rooms.get_mut(&thread) else {
            return;
        };
        let key = &room.call.key;
        let Some(leg) = room.legs.get_mut(&number) else {
            return;
        };
        let main = leg.rec.uniqueid == uid;
        step.touch(&thread);
        let in_conference = |conference: &str| conference == thread.as_str();
        match observation {
            Observation::OriginateResponse {
                success,
                reason,
                channel,
                ..
            } => {
                if leg.rec.channel.is_none() {
                    leg.rec.channel = channel.filter(|c| !c.is_empty());
                }
                if success {
                    leg.originate = Originate::Succeeded;
                    if leg.is_live() && leg.rec.answered_at.is_none() {
                        leg.rec.answered_at = Some(now);
                    }
                    pending.appeared(step, key, leg);
                } else {
                    leg.originate = Originate::Failed;
                    // A failure for a leg that joined cannot undo the join.
                    if leg.is_live() && leg.rec.joined_at.is_none() {
                        let at = leg.gone_at.unwrap_or(now);
                        if leg.api.is_some() {
                            leg.end(LegState::Left, EndReason::Cancelled, at);
                        } else {
                            leg.end(state_from_reason(reason), EndReason::Hangup, at);
                        }
                        leg.rec.hangup_cause = Some(reason);
                    }
                }
            }
            Observation::Newchannel { channel, .. } => {
                leg.half_mut(main).seen = true;
                if main && leg.rec.channel.is_none() {
                    leg.rec.channel = Some(channel);
                }
                pending.appeared(step, key, leg);
            }
            Observation::Newstate { state, .. } => {
                leg.half_mut(main).seen = true;
                if main && leg.is_live() {
                    match state {
                        ChannelState::Ringing if leg.rec.state == LegState::Dialing => {
                            leg.rec.state = LegState::Ringing;
                        }
                        ChannelState::Up if leg.rec.answered_at.is_none() => {
                            leg.rec.answered_at = Some(now);
                        }
                        _ => {}
                    }
                }
                pending.appeared(step, key, leg);
            }
            Observation::ConfbridgeJoin {
                conference,
                channel,
                ..
            } => {
                if !in_conference(&conference) {
                    return;
                }
                leg.half_mut(main).seen = true;
                if main && leg.rec.channel.is_none() {
                    leg.rec.channel = Some(channel);
                }
                if !leg.is_live() {
                    pending.appeared(step, key, leg);
                    return;
                }
                leg.rec.state = LegState::Joined;
                leg.rec.joined_at.get_or_insert(now);
                leg.rec.answered_at.get_or_insert(now);
                leg.pausing = false;
                leg.in_bridge = true;
                leg.on_hold = false;
                if leg.api.is_some() {
                    // It raced the end or its exclude (`call/end` marks every live
                    // leg, and no leg starts while a call ends): out it goes.
                    leg.rehangup = false;
                    pending.hang_up(step, key, leg, None);
                }
            }
            Observation::ConfbridgeLeave { conference, .. } => {
                if !in_conference(&conference) {
                    return;
                }
                leg.half_mut(main).seen = true;
                leg.in_bridge = false;
                if leg.is_live() {
                    if leg.pausing || leg.rec.state == LegState::Paused {
                        leg.rec.state = LegState::Paused;
                    } else if leg.rec.state == LegState::Joined {
                        let reason = leg.end_reason(true);
                        leg.end(LegState::Left, reason, now);
                    }
                }
            }
            Observation::MusicOnHoldStart { .. } => {
                if leg.is_live() && (leg.pausing || leg.rec.state == LegState::Paused) {
                    leg.rec.state = LegState::Paused;
                    leg.in_bridge = false;
                    leg.on_hold = true;
                }
            }
            Observation::MusicOnHoldStop { .. } => leg.on_hold = false,
            Observation::Reconciled { .. } => {}
            Observation::Hangup { cause, .. } => {
                let half = leg.half_mut(main);
                half.seen = true;
                half.hung = true;
                if leg.is_live() {
                    if leg.halves_gone() && leg.gone_at.is_none() {
                        leg.gone_at = Some(now);
                        leg.gone_cause = Some(cause);
                    }
                } else if leg.rec.hangup_cause.is_none() {
                    leg.rec.hangup_cause = Some(cause);
                }
            }
        }
    }

    fn reconcile(
        &mut self,
        step: &mut Step,
        channels: &[LiveChannel],
        restarted: bool,
        now: DateTime<Utc>,
    ) {
        let by_uid: HashMap<&str, &LiveChannel> =
            channels.iter().map(|c| (c.uniqueid.as_str(), c)).collect();
        let Engine { rooms, pending, .. } = self;
        for (thread, room) in rooms.iter_mut() {
            step.touch(thread);
            let ending = room.call.phase != CallPhase::Active;
            for leg in room.legs.values_mut() {
                let on_main = by_uid.get(leg.rec.uniqueid.as_str()).copied();
                let on_other = leg
                    .rec
                    .other_uniqueid
                    .as_deref()
                    .and_then(|u| by_uid.get(u))
                    .copied();
                let present = on_main.is_some() || on_other.is_some();
                if restarted || !present {
                    if leg.is_live() {
                        let state = if leg.answered() {
                            LegState::Left
                        } else {
                            LegState::Failed
                        };
                        let reason = if restarted {
                            EndReason::PbxRestart
                        } else {
                            EndReason::Vanished
                        };
                        leg.end(state, reason, now);
                        if present {
                            pending.hang_up(step, &room.call.key, leg, None);
                        }
                    }
                    leg.forget_channel();
                    continue;
                }
                for (is_main, found) in [(true, on_main), (false, on_other)] {
                    let half = leg.half_mut(is_main);
                    if found.is_some() {
                        half.seen = true;
                    } else if half.seen {
                        half.hung = true;
                    }
                }
                if !leg.is_live() {
                    continue;
                }
                let found: Vec<&LiveChannel> = [on_main, on_other].into_iter().flatten().collect();
                let runs = |app: &str| {
                    found
                        .iter()
                        .any(|c| c.application.eq_ignore_ascii_case(app))
                };
                if found.iter().any(|c| c.up) {
                    // Answered: its originate can only have succeeded.
                    leg.rec.answered_at.get_or_insert(now);
                }
                if runs("ConfBridge") {
                    if !leg.pausing && leg.rec.state != LegState::Paused {
                        leg.rec.state = LegState::Joined;
                        leg.rec.joined_at.get_or_insert(now);
                        leg.rec.answered_at.get_or_insert(now);
                        leg.in_bridge = true;
                    }
                } else if runs("MusicOnHold") {
                    leg.rec.state = LegState::Paused;
                    leg.rec.answered_at.get_or_insert(now);
                    leg.pausing = true;
                    leg.in_bridge = false;
                    leg.on_hold = true;
                }
                if ending {
                    // The end's hangups may have been lost with the old connection.
                    pending.hang_up(step, &room.call.key, leg, None);
                }
            }
            if restarted {
                step.replies
                    .extend(room.close(now, Some(CallResult::Failed)));
            }
        }
    }

    /// The PBX's answer to request `id`.
    pub fn answered(
        &mut self,
        id: RequestId,
        outcome: RequestOutcome,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut step = Step::default();
        let Engine { rooms, pending, .. } = self;
        if let Some(ctx) = pending.requests.remove(&id) {
            if matches!(ctx.kind, ReqKind::StartRecord | ReqKind::StopRecord) {
                let room = rooms
                    .get_mut(&ctx.thread)
                    .filter(|r| r.call.key.started_ms == ctx.call_ms);
                if let Some(room) = room {
                    step.touch(&ctx.thread);
                    let stop = ctx.kind == ReqKind::StopRecord;
                    let answer = room.recording_answered(stop, ctx.leg, outcome, now);
                    if let Some(op) = ctx.op {
                        step.reply(op, answer);
                    }
                }
                return self.flush(step, now);
            }
            let room = rooms
                .get_mut(&ctx.thread)
                .filter(|r| r.call.key.started_ms == ctx.call_ms);
            if room.is_some() {
                step.touch(&ctx.thread);
            }
            let (key, leg) = match room {
                Some(room) => (Some(&room.call.key), room.legs.get_mut(&ctx.leg)),
                None => (None, None),
            };
            let accepted = outcome == RequestOutcome::Accepted;
            let counts = match (ctx.kind, key, leg) {
                (ReqKind::Originate, _, Some(leg)) => originate_answered(leg, &outcome, now),
                (ReqKind::Hangup, Some(key), Some(leg)) => {
                    hangup_answered(pending, &mut step, key, leg, &outcome)
                }
                (ReqKind::Hold, _, Some(leg)) => hold_answered(leg, accepted),
                _ => accepted,
            };
            if let Some(op) = ctx.op {
                if let Some(waiting) = pending.ops.get_mut(&op) {
                    waiting.waiting = waiting.waiting.saturating_sub(1);
                    if counts {
                        waiting.legs = waiting.legs.saturating_add(1);
                    }
                    match (&ctx.user, counts) {
                        (Some(user), true) => {
                            waiting.users.insert(user.clone());
                        }
                        (_, false) if outcome == RequestOutcome::Unreachable => {
                            waiting.unreachable = waiting.unreachable.saturating_add(1);
                        }
                        _ => {}
                    }
                }
                pending.finish(op, &mut step);
            }
        }
        self.flush(step, now)
    }

    /// The clock moved: ends calls whose end deadline passed. The control task calls it
    /// about once a second.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        let mut step = Step::default();
        let deadline = millis(self.settings.end_deadline);
        let overdue = |since: DateTime<Utc>| (now - since).num_milliseconds() >= deadline;
        for (thread, room) in &mut self.rooms {
            let mut touched = room.legs.values().any(|l| l.rejoin_after_hold.is_some());
            for leg in room.legs.values_mut() {
                if let Some(gone_at) = leg.gone_at {
                    if leg.is_live() && !leg.originate.resolved() && overdue(gone_at) {
                        leg.classify_by_cause(gone_at);
                        touched = true;
                    }
                }
            }
            if room.call.phase == CallPhase::Ending {
                let started = *room.end_started.get_or_insert(now);
                if overdue(started) {
                    step.replies.extend(room.close(now, None));
                    touched = true;
                }
            }
            if touched {
                step.touch(thread);
            }
        }
        self.flush(step, now)
    }

    /// Settles the touched calls (legs whose channel is gone end, the dialog interval
    /// opens or closes, an ending call whose legs are all gone closes) and returns the
    /// step's effects: records (calls, then legs; each changed record once, whole), then
    /// requests, then answers. Closed calls leave memory.
    fn flush(&mut self, mut step: Step, now: DateTime<Utc>) -> Vec<Effect> {
        self.settle_rejoins(&mut step, now);
        let Step {
            touched,
            sends,
            mut replies,
        } = step;
        let mut calls = Vec::new();
        let mut legs = Vec::new();
        for thread in &touched {
            let Some(room) = self.rooms.get_mut(thread) else {
                continue;
            };
            for leg in room.legs.values_mut() {
                leg.settle(now);
            }
            room.update_dialog(now);
            replies.extend(room.settle_waiters());
            if room.call.phase == CallPhase::Ending && room.all_gone() {
                replies.extend(room.close(now, None));
            }
            if room.recorded.as_ref() != Some(&room.call) {
                room.recorded = Some(room.call.clone());
                calls.push(Effect::Record(Change::Call(room.call.clone())));
            }
            for leg in room.legs.values_mut() {
                if leg.recorded.as_ref() != Some(&leg.rec) {
                    leg.recorded = Some(leg.rec.clone());
                    legs.push(Effect::Record(Change::Leg(leg.rec.clone())));
                }
            }
            for r in room.recordings.values_mut() {
                if r.recorded.as_ref() != Some(&r.rec) {
                    r.recorded = Some(r.rec.clone());
                    legs.push(Effect::Record(Change::Recording(r.rec.clone())));
                }
            }
            if room.call.phase == CallPhase::Ended {
                self.remove_room(thread);
            }
        }
        calls.extend(legs);
        calls.extend(
            sends
                .into_iter()
                .map(|(id, request)| Effect::Send { id, request }),
        );
        calls.extend(
            replies
                .into_iter()
                .map(|(op, answer)| Effect::Reply { op, answer }),
        );
        calls
    }

    fn remove_room(&mut self, thread: &ThreadId) {
        if let Some(room) = self.rooms.remove(thread) {
            for leg in room.legs.values() {
                for uid in std::iter::once(&leg.rec.uniqueid).chain(&leg.rec.other_uniqueid) {
                    self.uids.remove(uid);
                }
            }
        }
    }

    /// The call a thread has now (active or ending), for reads and for the routes'
    /// checks.
    pub fn active_call(&self, thread: &ThreadId) -> Option<&CallRecord> {
        self.rooms.get(thread).map(|r| &r.call)
    }

    /// The legs of the thread's active (or ending) call, by number; empty without one.
    pub fn call_legs(&self, thread: &ThreadId) -> Vec<&LegRecord> {
        self.rooms
            .get(thread)
            .map(|r| r.legs.values().map(|l| &l.rec).collect())
            .unwrap_or_default()
    }

    /// Every active or ending call of this PBX.
    pub fn calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.rooms.values().map(|r| &r.call)
    }
}

/// How long after a hold an unpause waits for the leg to reach the music before it
/// redirects anyway (Asterisk refuses a Redirect of a channel still being redirected:
/// "channel not up"; under load the hold took up to 350 ms).
const REJOIN_WAIT: chrono::Duration = chrono::Duration::seconds(2);

/// The Redirect back into the conference, for a request `op` reserved.
fn send_rejoin(pending: &mut Pending, step: &mut Step, key: &CallKey, leg: &Leg, op: OpId) {
    let ctx = ReqCtx::for_leg(Some(op), key, leg, ReqKind::Rejoin);
    let request = Request::Rejoin {
        uniqueid: leg.rec.uniqueid.clone(),
        thread: key.thread.clone(),
        role: leg.rec.role,
    };
    pending.send_reserved(step, ctx, request);
}

/// The originate's answer; whether it counts as the user invited.
fn originate_answered(leg: &mut Leg, outcome: &RequestOutcome, now: DateTime<Utc>) -> bool {
    // An OriginateResponse or a channel event already came: the PBX did act, whatever
    // the answer says.
    let acted = leg.originate.resolved() || leg.main.seen || leg.other.seen;
    if *outcome == RequestOutcome::Accepted || acted {
        return true;
    }
    leg.originate = Originate::Failed;
    if leg.is_live() {
        leg.end(LegState::Failed, EndReason::Refused, now);
    }
    false
}

/// A hangup's answer; whether it counts as the user affected. A refusal for a leg
/// whose channel does not exist yet is remembered: the hangup is sent again when the
/// channel appears, so the leg is affected all the same.
fn hangup_answered(
    pending: &mut Pending,
    step: &mut Step,
    key: &CallKey,
    leg: &mut Leg,
    outcome: &RequestOutcome,
) -> bool {
    match outcome {
        RequestOutcome::Accepted => true,
        _ if !leg.is_live() => false,
        RequestOutcome::Unreachable => {
            leg.rehangup = true;
            false
        }
        RequestOutcome::Refused(_) => {
            if !leg.main.seen && !leg.other.seen {
                leg.rehangup = true;
                return true;
            }
            let up = [leg.main, leg.other].iter().any(|h| h.seen && !h.hung);
            if up && leg.retries < 2 {
                leg.retries = leg.retries.saturating_add(1);
                pending.hang_up(step, key, leg, None);
            }
            false
        }
    }
}

/// A hold's answer; whether it counts as the user paused.
fn hold_answered(leg: &mut Leg, accepted: bool) -> bool {
    if leg.is_live() && leg.pausing {
        if accepted {
            leg.rec.state = LegState::Paused;
        } else if leg.in_bridge {
            leg.pausing = false;
            leg.rec.state = LegState::Joined;
        }
    }
    accepted
}
