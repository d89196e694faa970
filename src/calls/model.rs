//! Records the call tracker produces and the store persists: calls, legs, conferences,
//! timeline events, CDRs and reconnection gaps.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A call: every leg sharing one `Linkedid` on one PBX, or, for a conversation call,
/// every leg carrying one `MEDCALL_CALL_KEY`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub pbx: String,
    /// The grouping key: the legs' `Linkedid`, or their call key.
    pub linkedid: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A leg: one Asterisk channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LegRecord {
    pub pbx: String,
    pub uniqueid: String,
    /// Its call's grouping key (not always the channel's own `Linkedid`).
    pub linkedid: String,
    pub channel: String,
    pub caller_num: Option<String>,
    pub caller_name: Option<String>,
    pub connected_num: Option<String>,
    pub connected_name: Option<String>,
    /// `ChannelStateDesc`: Down, Ring, Ringing, Up, Busy, …
    pub state: Option<String>,
    pub account_code: Option<String>,
    pub context: Option<String>,
    pub exten: Option<String>,
    pub bridge_id: Option<String>,
    pub conference: Option<String>,
    /// Channel variables reported through `ChanVariable` headers.
    pub variables: BTreeMap<String, String>,
    pub created_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub hangup_cause: Option<i64>,
    pub hangup_cause_text: Option<String>,
    /// `hangup`, or `pbx-gap` when the leg vanished while the daemon was away.
    pub end_reason: Option<String>,
    /// OriginateResponse `Reason` (4 answered, 5 busy, 3 no answer, 8 congestion, 0 failed).
    pub originate_reason: Option<i64>,
    /// Found live at reconciliation rather than seen being created.
    pub adopted: bool,
}

/// A ConfBridge conference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConferenceRecord {
    pub pbx: String,
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
}

/// One timeline entry not tied to a call by the tracker (its call is found through the
/// leg when read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub pbx: String,
    pub linkedid: Option<String>,
    pub uniqueid: Option<String>,
    pub at: DateTime<Utc>,
    pub kind: String,
    /// A JSON object, as text.
    pub detail: String,
}

/// The timeline entries one batch adds to one call: a JSON array's text, each entry
/// `{"at", "uniqueid", "kind", "detail"}`, in the order the events came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineChunk {
    pub pbx: String,
    pub linkedid: String,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub entries: String,
}

/// A CDR from AMI `Event: Cdr`, kept for audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CdrRecord {
    pub pbx: String,
    pub uniqueid: String,
    pub linkedid: Option<String>,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub destination: String,
    pub disposition: String,
    pub duration: i64,
    pub billable_seconds: i64,
    /// `StartTime` as Asterisk wrote it (`2026-11-22 09:00:00`).
    pub start_time: Option<String>,
    /// The CDR's fields as a JSON object, as text.
    pub raw: String,
}

/// A time the daemon was not connected to a PBX, and what reconciliation found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapRecord {
    pub pbx: String,
    /// When the connection was lost (`None`: the daemon itself was not running).
    pub disconnected_at: Option<DateTime<Utc>>,
    pub reconnected_at: DateTime<Utc>,
    pub legs_closed: i64,
    pub legs_adopted: i64,
}

/// A live channel as `CoreShowChannels` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LegSnapshot {
    pub uniqueid: String,
    pub linkedid: String,
    pub channel: String,
    pub caller_num: Option<String>,
    pub caller_name: Option<String>,
    pub state: Option<String>,
    pub account_code: Option<String>,
    pub context: Option<String>,
    pub exten: Option<String>,
    pub bridge_id: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// One thing to persist. Records are upserts keyed by (pbx, natural id), so a batch may
/// carry several versions of the same leg: the last wins.
#[derive(Debug, Clone, PartialEq)]
pub enum CallChange {
    Call(CallRecord),
    Leg(Box<LegRecord>),
    Conference(ConferenceRecord),
    /// Timeline entries of a known call.
    Timeline(TimelineChunk),
    /// A timeline entry not (yet) tied to a call.
    Event(EventRecord),
    Cdr(CdrRecord),
    Gap(GapRecord),
    /// An OriginateResponse for a leg already closed and forgotten.
    OriginateReason {
        pbx: String,
        uniqueid: String,
        reason: Option<i64>,
    },
}
