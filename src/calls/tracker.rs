//! The call tracker: a sans-I/O state machine that turns AMI events into call, leg,
//! conference and timeline records (SPEC §9).
//!
//! It owns the in-memory view of what is live on one PBX and answers every event with
//! the record changes to persist ([`CallChange`]); it never touches a socket or the
//! database. Reconciliation after a (re)connect compares that view with what the PBX
//! reports and closes or adopts legs, recording the gap.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::model::{
    CallChange, CallRecord, CdrRecord, ConferenceRecord, EventRecord, GapRecord, LegRecord,
    LegSnapshot, TimelineChunk,
};
use crate::json::push_string as json_string;
use crate::timefmt::push_rfc3339_micros;

/// Read access to an AMI event's fields; implemented by the AMI message type. Values are
/// borrowed: the tracker copies only what it keeps.
pub trait EventFields {
    /// The first value of `key` (case-insensitive), as text.
    fn field(&self, key: &str) -> Option<Cow<'_, str>>;
    /// Every value of `key`, in order (e.g. `ChanVariable`).
    fn fields(&self, key: &str) -> Vec<Cow<'_, str>>;
}

/// The tracker's maps, keyed by Asterisk's channel and call ids, are read several times
/// per event: foldhash (seeded per process) instead of SipHash, whose cost showed in the
/// ingest profile. The keys come from the authenticated PBX, not the open network.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// Why a leg ended.
pub const END_HANGUP: &str = "hangup";
/// The leg vanished while the daemon was not connected (reconciliation).
pub const END_PBX_GAP: &str = "pbx-gap";

/// The channel variable naming the conversation call a channel belongs to: every
/// channel carrying it (non-empty) is a leg of the call grouped by its value, whatever
/// its `Linkedid` (each originated leg of a conference has its own).
pub const CALL_KEY_VARIABLE: &str = "MEDCALL_CALL_KEY";

/// The call key among an event's `ChanVariable` values (`NAME=value`), if set and not
/// empty. A scan of the few values already read, so an event without it costs nothing
/// more.
fn call_key<'v>(vars: &'v [Cow<'_, str>]) -> Option<&'v str> {
    vars.iter()
        .find_map(|v| v.strip_prefix(CALL_KEY_VARIABLE)?.strip_prefix('='))
        .filter(|k| !k.is_empty())
}

/// Channels that are Asterisk's helpers rather than call participants.
fn is_helper_channel(channel: &str) -> bool {
    channel.starts_with("CBAnn/") || channel.starts_with("CBRec/")
}

#[derive(Debug)]
struct LiveCall {
    record: CallRecord,
    live_legs: Set<String>,
}

/// Changes waiting for [`CallTracker::take_changes`]. Legs are kept as "which ones
/// changed" rather than as copies: a leg touched by ten events in a batch is copied
/// out once, in its final state.
#[derive(Debug, Default)]
struct Pending {
    /// Calls, conferences and gaps, in order: what legs and timeline rows refer to.
    head: Vec<CallChange>,
    /// Live legs changed since the last take.
    dirty_legs: Set<String>,
    /// Legs that ended since the last take (moved out of the live view).
    ended_legs: Vec<LegRecord>,
    /// Timeline entries per call, and where each call's chunk is.
    timeline: Vec<TimelineChunk>,
    chunk_of: Map<String, usize>,
    /// Unlinked timeline rows, CDRs and late originate reasons, in order.
    tail: Vec<CallChange>,
}

/// The live state of one PBX.
#[derive(Debug)]
pub struct CallTracker {
    pbx: String,
    calls: Map<String, LiveCall>,
    legs: Map<String, LegRecord>,
    conferences: Map<String, ConferenceRecord>,
    /// `OriginateResponse` reasons that arrived before their channel's `Newchannel`.
    /// Asterisk sends `OriginateResponse` outside the stasis message bus, so it can
    /// overtake the events of the channel it names.
    early_reasons: Map<String, (Option<i64>, DateTime<Utc>)>,
    /// Conferences joined by channels whose `Newchannel` has not come yet (under load
    /// Asterisk can report the join first): applied to the leg when it appears.
    early_conferences: Map<String, String>,
    /// Legs moved to a call key's call (uniqueid → key, and when moved or ended): their
    /// CDR names the channel's own `Linkedid` and comes after the `Hangup`, when the leg
    /// is forgotten, so it is filed by this instead. Empty unless legs moved.
    moved: Map<String, (String, DateTime<Utc>)>,
    pending: Pending,
}

/// Most early originate reasons kept; past it, those older than a minute are forgotten.
const MAX_EARLY_REASONS: usize = 1024;

/// Most moved legs remembered for their CDR; past it, those ended over a minute ago are
/// forgotten (a CDR follows its channel's hangup within moments).
const MAX_MOVED: usize = 1024;

impl CallTracker {
    /// A tracker that starts from what the store says is live (after a daemon restart).
    pub fn new(
        pbx: &str,
        live_calls: Vec<CallRecord>,
        live_legs: Vec<LegRecord>,
        live_confs: Vec<ConferenceRecord>,
    ) -> Self {
        let mut calls: Map<String, LiveCall> = live_calls
            .into_iter()
            .map(|c| {
                (
                    c.linkedid.clone(),
                    LiveCall {
                        record: c,
                        live_legs: Set::default(),
                    },
                )
            })
            .collect();
        let mut legs = Map::default();
        for leg in live_legs {
            if let Some(call) = calls.get_mut(&leg.linkedid) {
                call.live_legs.insert(leg.uniqueid.clone());
            }
            legs.insert(leg.uniqueid.clone(), leg);
        }
        CallTracker {
            pbx: pbx.to_string(),
            calls,
            legs,
            conferences: live_confs
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            early_reasons: Map::default(),
            early_conferences: Map::default(),
            moved: Map::default(),
            pending: Pending::default(),
        }
    }

    pub fn live_leg_count(&self) -> usize {
        self.legs.len()
    }

    pub fn live_call_count(&self) -> usize {
        self.calls.len()
    }

    /// Applies one event received at `at` and returns what to persist: [`Self::track`]
    /// then [`Self::take_changes`].
    pub fn apply(&mut self, ev: &impl EventFields, at: DateTime<Utc>) -> Vec<CallChange> {
        self.track(ev, at);
        self.take_changes()
    }

    /// Whether changes are waiting for [`Self::take_changes`].
    pub fn has_changes(&self) -> bool {
        let p = &self.pending;
        !(p.head.is_empty()
            && p.dirty_legs.is_empty()
            && p.ended_legs.is_empty()
            && p.timeline.is_empty()
            && p.tail.is_empty())
    }

    /// Everything changed since the last take, ready to write in this order: calls
    /// (each once, in its latest state), conferences and gaps; then legs (each once, in
    /// its latest state); then one timeline chunk per call; then unlinked timeline rows,
    /// CDRs and late originate reasons.
    pub fn take_changes(&mut self) -> Vec<CallChange> {
        let p = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(
            p.head.len()
                + p.dirty_legs.len()
                + p.ended_legs.len()
                + p.timeline.len()
                + p.tail.len(),
        );
        // A call opened and closed within one batch is written once, closed.
        let mut seen_calls = Set::default();
        let mut head: Vec<CallChange> = p
            .head
            .into_iter()
            .rev()
            .filter(|c| match c {
                CallChange::Call(r) => seen_calls.insert(r.linkedid.clone()),
                _ => true,
            })
            .collect();
        head.reverse();
        out.extend(head);
        for uid in &p.dirty_legs {
            if let Some(leg) = self.legs.get(uid) {
                out.push(CallChange::Leg(Box::new(leg.clone())));
            }
        }
        out.extend(
            p.ended_legs
                .into_iter()
                .map(|leg| CallChange::Leg(Box::new(leg))),
        );
        out.extend(p.timeline.into_iter().map(|mut chunk| {
            chunk.entries.push(']');
            CallChange::Timeline(chunk)
        }));
        out.extend(p.tail);
        out
    }

    /// Applies one event received at `at`, keeping what to persist for the next
    /// [`Self::take_changes`].
    pub fn track(&mut self, ev: &impl EventFields, at: DateTime<Utc>) {
        let Some(name) = ev.field("Event") else {
            return;
        };
        let at = event_time(ev).unwrap_or(at);
        // Read once for the call key and for the leg's variables below. A channel tagged
        // after it was placed (the inbound caller, by the FastAGI route) moves before its
        // event is handled, so the event that shows the key is the first in its new call.
        let vars = ev.fields("ChanVariable");
        let key = call_key(&vars);
        if let Some(key) = key {
            if name != "Newchannel" {
                if let Some(uid) = ev.field("Uniqueid") {
                    self.move_leg(&uid, key, at);
                }
            }
        }
        match name.as_ref() {
            "Newchannel" => self.on_newchannel(ev, key, at),
            "Newstate" => self.on_update(ev, Some("Newstate"), at),
            "NewCallerid" | "NewConnectedLine" | "NewAccountCode" => self.on_update(ev, None, at),
            "Hangup" => self.on_hangup(ev, at),
            "DialBegin" => self.on_dial(ev, "DialBegin", at),
            "DialEnd" => self.on_dial(ev, "DialEnd", at),
            "BridgeEnter" => self.on_bridge_member(ev, true, at),
            "BridgeLeave" => self.on_bridge_member(ev, false, at),
            "BridgeCreate" | "BridgeDestroy" => {}
            "ConfbridgeStart"
            | "ConfbridgeEnd"
            | "ConfbridgeJoin"
            | "ConfbridgeLeave"
            | "ConfbridgeMute"
            | "ConfbridgeUnmute"
            | "ConfbridgeRecord"
            | "ConfbridgeStopRecord"
            | "ConfbridgeTalking" => self.on_confbridge(ev, &name, at),
            "OriginateResponse" => self.on_originate_response(ev, at),
            "MixMonitorStart" | "MixMonitorStop" | "MusicOnHoldStart" | "MusicOnHoldStop" => {
                self.timeline_for_channel(ev, &name, at, JsonObject::new())
            }
            "Cdr" => self.on_cdr(ev, at),
            _ => {}
        }
        self.absorb_variables(ev, &vars);
    }

    /// Notes that the live leg `uniqueid` changed.
    fn touch(&mut self, uniqueid: &str) {
        if !self.pending.dirty_legs.contains(uniqueid) {
            self.pending.dirty_legs.insert(uniqueid.to_string());
        }
    }

    /// Moves a leg that ended out of the live view into the pending changes.
    fn ended(&mut self, leg: LegRecord) {
        self.pending.dirty_legs.remove(&leg.uniqueid);
        self.pending.ended_legs.push(leg);
    }

    /// A new leg, in the call of its call `key` if it carries one, else of its `Linkedid`.
    fn on_newchannel(&mut self, ev: &impl EventFields, key: Option<&str>, at: DateTime<Utc>) {
        let (Some(uniqueid), Some(channel)) = (ev.field("Uniqueid"), ev.field("Channel")) else {
            return;
        };
        let uniqueid = uniqueid.into_owned();
        // The call's grouping key, kept in the record's `linkedid` (see ARCHITECTURE.md).
        let linkedid = match (key, ev.field("Linkedid")) {
            (Some(k), _) => k.to_string(),
            (None, Some(l)) => l.into_owned(),
            (None, None) => uniqueid.clone(),
        };
        self.open_call(&linkedid, at);
        let mut leg = LegRecord {
            pbx: self.pbx.clone(),
            uniqueid: uniqueid.clone(),
            linkedid: linkedid.clone(),
            channel: channel.into_owned(),
            ..LegRecord::default()
        };
        leg.created_at = Some(at);
        if let Some((reason, _)) = self.early_reasons.remove(&uniqueid) {
            leg.originate_reason = reason;
        }
        leg.conference = self.early_conferences.remove(&uniqueid);
        fill_leg(&mut leg, ev);
        if leg.state.as_deref() == Some("Up") {
            leg.answered_at = Some(at);
        }
        if let Some(call) = self.calls.get_mut(&linkedid) {
            call.live_legs.insert(uniqueid.clone());
        }
        let detail = detail(
            ev,
            &[
                "Channel",
                "ChannelStateDesc",
                "CallerIDNum",
                "Exten",
                "Context",
            ],
        );
        self.event(&linkedid, Some(&uniqueid), at, "Newchannel", detail);
        self.touch(&uniqueid);
        self.legs.insert(uniqueid, leg);
    }

    fn open_call(&mut self, linkedid: &str, at: DateTime<Utc>) {
        if self.calls.contains_key(linkedid) {
            return;
        }
        let record = CallRecord {
            pbx: self.pbx.clone(),
            linkedid: linkedid.to_string(),
            started_at: at,
            ended_at: None,
        };
        self.pending.head.push(CallChange::Call(record.clone()));
        self.calls.insert(
            linkedid.to_string(),
            LiveCall {
                record,
                live_legs: Set::default(),
            },
        );
    }

    /// Moves the live leg `uniqueid` into the call grouped by `key`, if it is not there
    /// yet: the inbound caller, placed in its `Linkedid` call at its `Newchannel`, is
    /// tagged with the conversation's key later. The call it leaves is closed when it has
    /// no other live leg (never removed: the timeline entries written to it stay there,
    /// and it ends with a `LegMovedOut` entry naming the key); the call it joins starts
    /// no later than the leg did.
    fn move_leg(&mut self, uniqueid: &str, key: &str, at: DateTime<Utc>) {
        let Some(leg) = self.legs.get_mut(uniqueid) else {
            return;
        };
        if leg.linkedid == key {
            return;
        }
        let from = std::mem::replace(&mut leg.linkedid, key.to_string());
        let began = leg.created_at.unwrap_or(at).min(at);
        self.touch(uniqueid);
        match self.calls.get_mut(key) {
            Some(call) => {
                if began < call.record.started_at {
                    call.record.started_at = began;
                    self.pending
                        .head
                        .push(CallChange::Call(call.record.clone()));
                }
            }
            None => self.open_call(key, began),
        }
        if let Some(call) = self.calls.get_mut(key) {
            call.live_legs.insert(uniqueid.to_string());
        }
        let mut out = JsonObject::new();
        out.string("to", key);
        self.event(&from, Some(uniqueid), at, "LegMovedOut", out.finish());
        let mut into = JsonObject::new();
        into.string("from", &from);
        self.event(key, Some(uniqueid), at, "LegMovedIn", into.finish());
        self.leg_gone(&from, uniqueid, at);
        self.remember_moved(uniqueid, key, at);
    }

    /// Notes that `uniqueid` now belongs to the call `key`, for its CDR; when the table
    /// is full, legs ended over a minute before `at` make room.
    fn remember_moved(&mut self, uniqueid: &str, key: &str, at: DateTime<Utc>) {
        if self.moved.len() >= MAX_MOVED {
            let horizon = at
                .checked_sub_signed(chrono::TimeDelta::seconds(60))
                .unwrap_or(at);
            let legs = &self.legs;
            self.moved
                .retain(|uid, (_, seen)| legs.contains_key(uid) || *seen > horizon);
        }
        if self.moved.len() < MAX_MOVED {
            self.moved
                .insert(uniqueid.to_string(), (key.to_string(), at));
        }
    }

    /// Marks a moved leg's end, from which its CDR has a minute to come.
    fn moved_leg_ended(&mut self, uniqueid: &str, at: DateTime<Utc>) {
        if let Some((_, seen)) = self.moved.get_mut(uniqueid) {
            *seen = at;
        }
    }

    /// `Newstate` and the other updates of a live leg; `timeline` names the timeline
    /// entry to write, if any.
    fn on_update(&mut self, ev: &impl EventFields, timeline: Option<&str>, at: DateTime<Utc>) {
        let Some(uniqueid) = ev.field("Uniqueid") else {
            return;
        };
        let Some(leg) = self.legs.get_mut(uniqueid.as_ref()) else {
            return;
        };
        let was_up = leg.answered_at.is_some();
        fill_leg(leg, ev);
        if !was_up && leg.state.as_deref() == Some("Up") {
            leg.answered_at = Some(at);
        }
        let linkedid = leg.linkedid.clone();
        self.touch(&uniqueid);
        if let Some(kind) = timeline {
            let detail = detail(ev, &["ChannelStateDesc"]);
            self.event(&linkedid, Some(&uniqueid), at, kind, detail);
        }
    }

    fn on_hangup(&mut self, ev: &impl EventFields, at: DateTime<Utc>) {
        let Some(uniqueid) = ev.field("Uniqueid") else {
            return;
        };
        let Some(mut leg) = self.legs.remove(uniqueid.as_ref()) else {
            return;
        };
        fill_leg(&mut leg, ev);
        leg.ended_at = Some(at);
        leg.hangup_cause = ev.field("Cause").and_then(|c| c.parse().ok());
        leg.hangup_cause_text = ev.field("Cause-txt").map(Cow::into_owned);
        leg.end_reason = Some(END_HANGUP.into());
        let linkedid = leg.linkedid.clone();
        self.ended(leg);
        let detail = detail(ev, &["Channel", "Cause", "Cause-txt"]);
        self.event(&linkedid, Some(&uniqueid), at, "Hangup", detail);
        self.leg_gone(&linkedid, &uniqueid, at);
        if !self.moved.is_empty() {
            self.moved_leg_ended(&uniqueid, at);
        }
    }

    /// Closes the call when its last live leg is gone.
    fn leg_gone(&mut self, linkedid: &str, uniqueid: &str, at: DateTime<Utc>) {
        let finished = match self.calls.get_mut(linkedid) {
            Some(call) => {
                call.live_legs.remove(uniqueid);
                call.live_legs.is_empty()
            }
            None => false,
        };
        if finished {
            if let Some(mut call) = self.calls.remove(linkedid) {
                call.record.ended_at = Some(at);
                self.pending.head.push(CallChange::Call(call.record));
            }
        }
    }

    fn on_dial(&mut self, ev: &impl EventFields, name: &str, at: DateTime<Utc>) {
        let uid = ev.field("DestUniqueid").or_else(|| ev.field("Uniqueid"));
        let Some(uid) = uid else { return };
        let Some(linkedid) = self.legs.get(uid.as_ref()).map(|l| l.linkedid.clone()) else {
            return;
        };
        let detail = detail(ev, &["DestChannel", "DialString", "DialStatus"]);
        self.event(&linkedid, Some(&uid), at, name, detail);
    }

    fn on_bridge_member(&mut self, ev: &impl EventFields, enter: bool, at: DateTime<Utc>) {
        let Some(uid) = ev.field("Uniqueid") else {
            return;
        };
        let Some(leg) = self.legs.get_mut(uid.as_ref()) else {
            return;
        };
        let bridge = if enter {
            ev.field("BridgeUniqueid")
        } else {
            None
        };
        if leg.bridge_id.as_deref() != bridge.as_deref() {
            leg.bridge_id = bridge.map(Cow::into_owned);
        }
        let linkedid = leg.linkedid.clone();
        self.touch(&uid);
        let kind = if enter { "BridgeEnter" } else { "BridgeLeave" };
        let detail = detail(ev, &["BridgeUniqueid", "BridgeType", "BridgeTechnology"]);
        self.event(&linkedid, Some(&uid), at, kind, detail);
    }

    fn on_confbridge(&mut self, ev: &impl EventFields, name: &str, at: DateTime<Utc>) {
        let Some(conf) = ev.field("Conference") else {
            return;
        };
        let conf = conf.into_owned();
        match name {
            "ConfbridgeStart" => {
                let record = ConferenceRecord {
                    pbx: self.pbx.clone(),
                    name: conf.clone(),
                    started_at: at,
                    ended_at: None,
                    end_reason: None,
                };
                self.pending
                    .head
                    .push(CallChange::Conference(record.clone()));
                self.conferences.insert(conf, record);
                return;
            }
            "ConfbridgeEnd" => {
                if let Some(mut record) = self.conferences.remove(&conf) {
                    record.ended_at = Some(at);
                    record.end_reason = Some("ended".into());
                    self.pending.head.push(CallChange::Conference(record));
                }
                return;
            }
            _ => {}
        }
        if name == "ConfbridgeJoin" || name == "ConfbridgeLeave" {
            if let Some(uid) = ev.field("Uniqueid") {
                if let Some(leg) = self.legs.get_mut(uid.as_ref()) {
                    leg.conference = if name == "ConfbridgeJoin" {
                        Some(conf.clone())
                    } else {
                        None
                    };
                    self.touch(&uid);
                } else if name == "ConfbridgeJoin" {
                    // Bounded: past the cap the oldest guesses go (a lost membership is
                    // a conference name missing on a leg, never a wrong one).
                    if self.early_conferences.len() >= MAX_EARLY_REASONS {
                        self.early_conferences.clear();
                    }
                    self.early_conferences
                        .insert(uid.into_owned(), conf.clone());
                } else {
                    self.early_conferences.remove(uid.as_ref());
                }
            }
        }
        let mut extra = JsonObject::new();
        extra.string("conference", &conf);
        if ev.field("Channel").is_some_and(|ch| is_helper_channel(&ch)) {
            extra.raw("helper", "true");
        }
        self.timeline_for_channel(ev, name, at, extra);
    }

    fn on_originate_response(&mut self, ev: &impl EventFields, at: DateTime<Utc>) {
        let reason = ev.field("Reason").and_then(|r| r.parse::<i64>().ok());
        let uid = ev
            .field("Uniqueid")
            .filter(|u| !u.is_empty() && u != "<null>")
            .map(Cow::into_owned);
        let d = detail(
            ev,
            &[
                "Response",
                "Reason",
                "Channel",
                "ActionID",
                "Context",
                "Exten",
                "Application",
            ],
        );
        // A leg the daemon still tracks (or has just closed) gets the reason on its record.
        if let Some(uid) = &uid {
            if let Some(leg) = self.legs.get_mut(uid) {
                leg.originate_reason = reason;
                let linkedid = leg.linkedid.clone();
                self.touch(uid);
                self.event(&linkedid, Some(uid), at, "OriginateResponse", d);
                return;
            }
            // Either the leg has ended (the store has it) or it has not begun yet.
            self.pending.tail.push(CallChange::OriginateReason {
                pbx: self.pbx.clone(),
                uniqueid: uid.clone(),
                reason,
            });
            if self.early_reasons.len() >= MAX_EARLY_REASONS {
                // `at` comes from the event: even at the edge of time, never panic.
                let horizon = at
                    .checked_sub_signed(chrono::TimeDelta::seconds(60))
                    .unwrap_or(at);
                self.early_reasons.retain(|_, (_, seen)| *seen > horizon);
            }
            if self.early_reasons.len() < MAX_EARLY_REASONS {
                self.early_reasons.insert(uid.clone(), (reason, at));
            }
        }
        self.pending.tail.push(CallChange::Event(EventRecord {
            pbx: self.pbx.clone(),
            linkedid: None,
            uniqueid: uid,
            at,
            kind: "OriginateResponse".into(),
            detail: d,
        }));
    }

    fn on_cdr(&mut self, ev: &impl EventFields, at: DateTime<Utc>) {
        let uniqueid = ev
            .field("UniqueID")
            .map(Cow::into_owned)
            .unwrap_or_default();
        // Asked only when legs moved: an empty table is not even hashed into.
        let moved = || {
            if self.moved.is_empty() {
                return None;
            }
            self.moved.get(&uniqueid).map(|(key, _)| key.clone())
        };
        let linkedid = self
            .legs
            .get(&uniqueid)
            .map(|l| l.linkedid.clone())
            .or_else(moved)
            .or_else(|| ev.field("LinkedID").map(Cow::into_owned));
        let raw = detail(
            ev,
            &[
                "AccountCode",
                "Source",
                "Destination",
                "DestinationContext",
                "CallerID",
                "Channel",
                "DestinationChannel",
                "LastApplication",
                "LastData",
                "StartTime",
                "AnswerTime",
                "EndTime",
                "Duration",
                "BillableSeconds",
                "Disposition",
                "AMAFlags",
                "UniqueID",
                "UserField",
            ],
        );
        let text = |k: &str| ev.field(k).map(Cow::into_owned).unwrap_or_default();
        let number = |k: &str| ev.field(k).and_then(|d| d.parse().ok()).unwrap_or(0);
        self.pending.tail.push(CallChange::Cdr(CdrRecord {
            pbx: self.pbx.clone(),
            uniqueid,
            linkedid,
            received_at: at,
            source: text("Source"),
            destination: text("Destination"),
            disposition: text("Disposition"),
            duration: number("Duration"),
            billable_seconds: number("BillableSeconds"),
            start_time: ev.field("StartTime").map(Cow::into_owned),
            raw,
        }));
    }

    fn timeline_for_channel(
        &mut self,
        ev: &impl EventFields,
        name: &str,
        at: DateTime<Utc>,
        mut extra: JsonObject,
    ) {
        let uid = ev.field("Uniqueid").map(Cow::into_owned);
        // A channel not seen yet falls back to its `Linkedid` only when that names a call
        // the tracker holds. Under load Asterisk can report a leg's ConfbridgeJoin (or
        // MusicOnHoldStart) before its Newchannel, with a Linkedid that is no call yet: a
        // timeline row there would have no call row, and failing it would lose the whole
        // batch. Such an entry is kept unlinked by uniqueid, like an early
        // OriginateResponse, and is read with the leg's call once the leg is known.
        let linkedid = uid
            .as_ref()
            .and_then(|u| self.legs.get(u))
            .map(|l| l.linkedid.clone())
            .or_else(|| {
                ev.field("Linkedid")
                    .filter(|l| self.calls.contains_key(l.as_ref()))
                    .map(Cow::into_owned)
            });
        if let Some(ch) = ev.field("Channel") {
            extra.string("Channel", &ch);
        }
        match linkedid {
            Some(linkedid) => self.event(&linkedid, uid.as_deref(), at, name, extra.finish()),
            None => self.pending.tail.push(CallChange::Event(EventRecord {
                pbx: self.pbx.clone(),
                linkedid: None,
                uniqueid: uid,
                at,
                kind: name.to_string(),
                detail: extra.finish(),
            })),
        }
    }

    /// `ChanVariable: NAME=value` headers (`vars`, read once per event) update the
    /// leg's variables.
    fn absorb_variables(&mut self, ev: &impl EventFields, vars: &[Cow<'_, str>]) {
        // Most events carry none: so the leg is looked up only when needed.
        if vars.is_empty() {
            return;
        }
        let Some(uid) = ev.field("Uniqueid") else {
            return;
        };
        let uniqueid: &str = &uid;
        let Some(leg) = self.legs.get_mut(uniqueid) else {
            return;
        };
        let mut changed = false;
        for v in vars {
            let (k, val) = v.split_once('=').unwrap_or((v.as_ref(), ""));
            if k.is_empty() {
                continue;
            }
            if leg.variables.get(k).map(String::as_str) != Some(val) {
                leg.variables.insert(k.to_string(), val.to_string());
                changed = true;
            }
        }
        if changed {
            self.touch(uniqueid);
        }
    }

    /// Adds an entry to the timeline of a known call.
    fn event(
        &mut self,
        linkedid: &str,
        uniqueid: Option<&str>,
        at: DateTime<Utc>,
        kind: &str,
        detail: String,
    ) {
        let p = &mut self.pending;
        let chunk = match p
            .chunk_of
            .get(linkedid)
            .and_then(|&i| p.timeline.get_mut(i))
        {
            Some(chunk) => {
                chunk.entries.push(',');
                chunk.last_at = chunk.last_at.max(at);
                chunk
            }
            None => {
                p.chunk_of.insert(linkedid.to_string(), p.timeline.len());
                p.timeline.push(TimelineChunk {
                    pbx: self.pbx.clone(),
                    linkedid: linkedid.to_string(),
                    first_at: at,
                    last_at: at,
                    entries: String::with_capacity(4096),
                });
                let Some(chunk) = p.timeline.last_mut() else {
                    return;
                };
                chunk.entries.push('[');
                chunk
            }
        };
        chunk.first_at = chunk.first_at.min(at);
        let e = &mut chunk.entries;
        e.push_str("{\"at\":\"");
        push_rfc3339_micros(e, &at);
        e.push_str("\",\"uniqueid\":");
        match uniqueid {
            Some(u) => json_string(e, u),
            None => e.push_str("null"),
        }
        e.push_str(",\"kind\":");
        json_string(e, kind);
        e.push_str(",\"detail\":");
        e.push_str(&detail);
        e.push('}');
    }

    /// Compares the live view with what the PBX reports after a (re)connect: legs that
    /// vanished while away are closed with reason `pbx-gap`, legs that appeared are
    /// adopted, conferences that ended are closed, and the gap itself is recorded.
    pub fn reconcile(
        &mut self,
        channels: &[LegSnapshot],
        rooms: &[String],
        gap_started: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Vec<CallChange> {
        let present: HashSet<&str> = channels.iter().map(|c| c.uniqueid.as_str()).collect();
        let vanished: Vec<String> = self
            .legs
            .keys()
            .filter(|u| !present.contains(u.as_str()))
            .cloned()
            .collect();
        for uid in &vanished {
            if let Some(mut leg) = self.legs.remove(uid) {
                leg.ended_at = Some(at);
                leg.end_reason = Some(END_PBX_GAP.into());
                let linkedid = leg.linkedid.clone();
                self.ended(leg);
                self.event(&linkedid, Some(uid), at, "LegLostInGap", "{}".into());
                self.leg_gone(&linkedid, uid, at);
                self.moved_leg_ended(uid, at);
            }
        }
        let mut adopted = 0usize;
        for snap in channels {
            let key = snap
                .variables
                .get(CALL_KEY_VARIABLE)
                .map(String::as_str)
                .filter(|k| !k.is_empty());
            if self.legs.contains_key(&snap.uniqueid) {
                // Tagged while the daemon was away: it moves as it would have live.
                if let Some(key) = key {
                    self.move_leg(&snap.uniqueid, key, at);
                }
                continue;
            }
            adopted += 1;
            let linkedid = match key {
                Some(k) => k.to_string(),
                None if snap.linkedid.is_empty() => snap.uniqueid.clone(),
                None => snap.linkedid.clone(),
            };
            let started = snap.started_at.unwrap_or(at);
            if !self.calls.contains_key(&linkedid) {
                self.open_call(&linkedid, started);
            }
            let leg = LegRecord {
                pbx: self.pbx.clone(),
                uniqueid: snap.uniqueid.clone(),
                linkedid: linkedid.clone(),
                channel: snap.channel.clone(),
                caller_num: snap.caller_num.clone(),
                caller_name: snap.caller_name.clone(),
                state: snap.state.clone(),
                account_code: snap.account_code.clone(),
                context: snap.context.clone(),
                exten: snap.exten.clone(),
                bridge_id: snap.bridge_id.clone(),
                variables: snap.variables.clone(),
                created_at: Some(started),
                answered_at: if snap.state.as_deref() == Some("Up") {
                    Some(started)
                } else {
                    None
                },
                adopted: true,
                ..LegRecord::default()
            };
            if let Some(call) = self.calls.get_mut(&linkedid) {
                call.live_legs.insert(leg.uniqueid.clone());
            }
            let uniqueid = leg.uniqueid.clone();
            self.event(
                &linkedid,
                Some(&uniqueid),
                at,
                "LegAdoptedAfterGap",
                "{}".into(),
            );
            self.touch(&uniqueid);
            self.legs.insert(uniqueid, leg);
        }
        let rooms: HashSet<&str> = rooms.iter().map(String::as_str).collect();
        let ended: Vec<String> = self
            .conferences
            .keys()
            .filter(|n| !rooms.contains(n.as_str()))
            .cloned()
            .collect();
        for name in ended {
            if let Some(mut c) = self.conferences.remove(&name) {
                c.ended_at = Some(at);
                c.end_reason = Some(END_PBX_GAP.into());
                self.pending.head.push(CallChange::Conference(c));
            }
        }
        for room in rooms {
            if !self.conferences.contains_key(room) {
                let c = ConferenceRecord {
                    pbx: self.pbx.clone(),
                    name: room.to_string(),
                    started_at: at,
                    ended_at: None,
                    end_reason: None,
                };
                self.pending.head.push(CallChange::Conference(c.clone()));
                self.conferences.insert(room.to_string(), c);
            }
        }
        self.pending.head.push(CallChange::Gap(GapRecord {
            pbx: self.pbx.clone(),
            disconnected_at: gap_started,
            reconnected_at: at,
            legs_closed: vanished.len() as i64,
            legs_adopted: adopted as i64,
        }));
        self.take_changes()
    }
}

/// The event's own `Timestamp:` (manager.conf `timestampevents = yes`), if present.
fn event_time(ev: &impl EventFields) -> Option<DateTime<Utc>> {
    let ts = ev.field("Timestamp")?;
    let (secs, frac) = ts.split_once('.').unwrap_or((ts.as_ref(), ""));
    let secs: i64 = secs.parse().ok()?;
    // Up to six digits of fraction, read as microseconds ("25" is 250 000 µs).
    let digits = frac.get(..frac.len().min(6))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros: u32 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..6 {
        micros *= 10;
    }
    DateTime::from_timestamp(secs, micros * 1000)
}

fn fill_leg(leg: &mut LegRecord, ev: &impl EventFields) {
    // Most events repeat what the leg already holds: compare before copying.
    let set = |slot: &mut Option<String>, key: &str| {
        if let Some(v) = ev.field(key) {
            let v = Some(v).filter(|v| !v.is_empty() && v != "<unknown>");
            if slot.as_deref() != v.as_deref() {
                *slot = v.map(Cow::into_owned);
            }
        }
    };
    if let Some(ch) = ev.field("Channel") {
        if leg.channel != ch {
            leg.channel = ch.into_owned();
        }
    }
    set(&mut leg.caller_num, "CallerIDNum");
    set(&mut leg.caller_name, "CallerIDName");
    set(&mut leg.connected_num, "ConnectedLineNum");
    set(&mut leg.connected_name, "ConnectedLineName");
    set(&mut leg.state, "ChannelStateDesc");
    set(&mut leg.account_code, "AccountCode");
    set(&mut leg.context, "Context");
    set(&mut leg.exten, "Exten");
}

/// The event's `keys` that are present, as a JSON object's text.
fn detail(ev: &impl EventFields, keys: &[&'static str]) -> String {
    let mut o = JsonObject::new();
    for k in keys {
        if let Some(v) = ev.field(k) {
            o.string(k, &v);
        }
    }
    o.finish()
}

/// A flat JSON object written straight to text: timeline details are built per event,
/// and a `serde_json::Map` would cost an allocation per key and value.
#[derive(Debug)]
struct JsonObject(String);

impl JsonObject {
    fn new() -> JsonObject {
        // Room for a typical detail, so the writes below do not regrow it.
        let mut text = String::with_capacity(256);
        text.push('{');
        JsonObject(text)
    }

    /// `key` is one of the tracker's own names (AMI header names): plain ASCII that
    /// JSON never escapes, so it is copied without the escape scan.
    fn key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn string(&mut self, key: &'static str, value: &str) {
        self.key(key);
        json_string(&mut self.0, value);
    }

    /// `value` must already be JSON (`true`, a number).
    fn raw(&mut self, key: &'static str, value: &str) {
        self.key(key);
        self.0.push_str(value);
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::test_event::Ev;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn newchannel(uid: &str, linked: &str, channel: &str, state: &str) -> Ev {
        Ev::parse(&format!(
            "Event: Newchannel\nChannel: {channel}\nChannelStateDesc: {state}\nCallerIDNum: 79001234567\nCallerIDName: <unknown>\nAccountCode: acc-1\nContext: fake-phones\nExten: answer\nUniqueid: {uid}\nLinkedid: {linked}"
        ))
    }

    fn legs(changes: &[CallChange]) -> Vec<&LegRecord> {
        changes
            .iter()
            .filter_map(|c| {
                if let CallChange::Leg(l) = c {
                    Some(l.as_ref())
                } else {
                    None
                }
            })
            .collect()
    }

    fn calls(changes: &[CallChange]) -> Vec<&CallRecord> {
        changes
            .iter()
            .filter_map(|c| {
                if let CallChange::Call(r) = c {
                    Some(r)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn a_call_opens_with_its_first_leg_and_closes_with_its_last() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let out = tr.apply(
            &newchannel("1.0", "1.0", "Local/answer@fake-phones-1;1", "Down"),
            t(0),
        );
        assert_eq!(calls(&out).len(), 1);
        assert_eq!(calls(&out)[0].started_at, t(0));
        let leg = legs(&out)[0];
        assert_eq!(leg.caller_num.as_deref(), Some("79001234567"));
        assert_eq!(leg.caller_name, None, "<unknown> is no name");
        assert_eq!(leg.account_code.as_deref(), Some("acc-1"));

        tr.apply(
            &newchannel("1.1", "1.0", "Local/answer@fake-phones-1;2", "Ring"),
            t(0),
        );
        let out = tr.apply(
            &Ev::parse("Event: Newstate\nChannelStateDesc: Up\nUniqueid: 1.1\nLinkedid: 1.0"),
            t(2),
        );
        assert_eq!(legs(&out)[0].answered_at, Some(t(2)));

        let out = tr.apply(
            &Ev::parse("Event: Hangup\nUniqueid: 1.1\nCause: 16\nCause-txt: Normal Clearing"),
            t(5),
        );
        let leg = legs(&out)[0];
        assert_eq!(
            (leg.ended_at, leg.hangup_cause, leg.end_reason.as_deref()),
            (Some(t(5)), Some(16), Some("hangup"))
        );
        assert!(calls(&out).is_empty(), "one leg is still up");
        assert_eq!(tr.live_call_count(), 1);

        let out = tr.apply(
            &Ev::parse("Event: Hangup\nUniqueid: 1.0\nCause: 16\nCause-txt: Normal Clearing"),
            t(6),
        );
        assert_eq!(calls(&out)[0].ended_at, Some(t(6)));
        assert_eq!((tr.live_call_count(), tr.live_leg_count()), (0, 0));
    }

    #[test]
    fn an_originate_response_after_the_hangup_still_reaches_the_leg() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(
            &newchannel("2.0", "2.0", "Local/busy@fake-phones-2;1", "Down"),
            t(0),
        );
        tr.apply(
            &Ev::parse("Event: Hangup\nUniqueid: 2.0\nCause: 17\nCause-txt: User busy"),
            t(1),
        );
        let out = tr.apply(&Ev::parse("Event: OriginateResponse\nResponse: Failure\nReason: 5\nUniqueid: 2.0\nActionID: a1"), t(1));
        assert!(out.contains(&CallChange::OriginateReason {
            pbx: "rig".into(),
            uniqueid: "2.0".into(),
            reason: Some(5)
        }));
    }

    #[test]
    fn an_originate_response_for_a_live_leg_is_kept_on_the_leg() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(
            &newchannel("3.0", "3.0", "Local/answer@fake-phones-3;1", "Up"),
            t(0),
        );
        let out = tr.apply(
            &Ev::parse("Event: OriginateResponse\nResponse: Success\nReason: 4\nUniqueid: 3.0"),
            t(1),
        );
        assert_eq!(legs(&out)[0].originate_reason, Some(4));
    }

    #[test]
    fn channel_variables_are_kept_per_leg() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(&newchannel("4.0", "4.0", "Local/x@y-1;1", "Down"), t(0));
        let out = tr.apply(
            &Ev::parse("Event: Newstate\nChannelStateDesc: Ring\nUniqueid: 4.0\nChanVariable: MEDCALL_CALL_ID=17\nChanVariable: EMPTY="),
            t(1),
        );
        let leg = legs(&out).pop().unwrap();
        assert_eq!(
            leg.variables.get("MEDCALL_CALL_ID").map(String::as_str),
            Some("17")
        );
        assert_eq!(leg.variables.get("EMPTY").map(String::as_str), Some(""));
    }

    #[test]
    fn the_event_timestamp_wins_over_the_receive_time() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let ev = Ev::parse(
            "Event: Newchannel\nTimestamp: 1800000123.250000\nChannel: X/1\nUniqueid: 5.0\nLinkedid: 5.0",
        );
        let out = tr.apply(&ev, t(999));
        assert_eq!(
            calls(&out)[0].started_at,
            DateTime::from_timestamp(1_800_000_123, 250_000_000).unwrap()
        );
    }

    #[test]
    fn an_adopted_leg_carries_its_snapshot_and_joins_the_call_it_belongs_to() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(&newchannel("40.0", "40.0", "Local/a@b-1;1", "Up"), t(0));
        let full = LegSnapshot {
            uniqueid: "40.1".into(),
            linkedid: "40.0".into(),
            channel: "Local/a@b-1;2".into(),
            caller_num: Some("79005556677".into()),
            caller_name: Some("Пациент".into()),
            state: Some("Up".into()),
            account_code: Some("thread-9".into()),
            context: Some("medcall-conf".into()),
            exten: Some("s".into()),
            bridge_id: Some("br-9".into()),
            variables: [("MEDCALL_ROLE".to_string(), "doctor".to_string())].into(),
            started_at: Some(t(5)),
        };
        let ringing = LegSnapshot {
            uniqueid: "41.0".into(),
            channel: "Local/r@b-1;1".into(),
            state: Some("Ringing".into()),
            ..Default::default()
        };
        let still_live = LegSnapshot {
            uniqueid: "40.0".into(),
            linkedid: "40.0".into(),
            channel: "Local/a@b-1;1".into(),
            ..Default::default()
        };
        let out = tr.reconcile(&[still_live, full.clone(), ringing], &[], None, t(20));
        let leg = legs_of(&out, "40.1")[0];
        let seen = LegSnapshot {
            uniqueid: leg.uniqueid.clone(),
            linkedid: leg.linkedid.clone(),
            channel: leg.channel.clone(),
            caller_num: leg.caller_num.clone(),
            caller_name: leg.caller_name.clone(),
            state: leg.state.clone(),
            account_code: leg.account_code.clone(),
            context: leg.context.clone(),
            exten: leg.exten.clone(),
            bridge_id: leg.bridge_id.clone(),
            variables: leg.variables.clone(),
            started_at: leg.created_at,
        };
        assert_eq!(seen, full);
        assert_eq!((leg.pbx.as_str(), leg.answered_at), ("rig", Some(t(5))));
        // Its call was live already: no second call is opened for it.
        assert!(!calls(&out).iter().any(|c| c.linkedid == "40.0"), "{out:?}");
        // A snapshot without a linkedid is a call of its own, opened now, not answered.
        let lone = legs_of(&out, "41.0")[0];
        assert_eq!(
            (lone.linkedid.as_str(), lone.created_at, lone.answered_at),
            ("41.0", Some(t(20)), None)
        );
        assert!(calls(&out).iter().any(|c| c.linkedid == "41.0"));
    }

    #[test]
    fn reconciliation_closes_vanished_legs_adopts_new_ones_and_records_the_gap() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(&newchannel("6.0", "6.0", "Local/a@b-1;1", "Up"), t(0));
        tr.apply(&newchannel("7.0", "7.0", "Local/c@d-1;1", "Up"), t(0));
        tr.apply(
            &Ev::parse("Event: ConfbridgeStart\nConference: gone-room"),
            t(0),
        );
        let snapshot = vec![
            LegSnapshot {
                uniqueid: "7.0".into(),
                linkedid: "7.0".into(),
                channel: "Local/c@d-1;1".into(),
                ..Default::default()
            },
            LegSnapshot {
                uniqueid: "8.0".into(),
                linkedid: "8.0".into(),
                channel: "Local/e@f-1;1".into(),
                state: Some("Up".into()),
                ..Default::default()
            },
        ];
        let out = tr.reconcile(&snapshot, &["live-room".to_string()], Some(t(10)), t(20));
        let closed: Vec<_> = legs(&out)
            .into_iter()
            .filter(|l| l.end_reason.as_deref() == Some("pbx-gap"))
            .collect();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].uniqueid, "6.0");
        assert_eq!(closed[0].ended_at, Some(t(20)));
        let adopted: Vec<_> = legs(&out).into_iter().filter(|l| l.adopted).collect();
        assert_eq!(adopted.len(), 1);
        assert_eq!(adopted[0].uniqueid, "8.0");
        assert!(out.iter().any(|c| matches!(c, CallChange::Gap(g) if g.legs_closed == 1 && g.legs_adopted == 1 && g.disconnected_at == Some(t(10)))));
        assert!(out.iter().any(|c| matches!(c, CallChange::Conference(r) if r.name == "gone-room" && r.end_reason.as_deref() == Some("pbx-gap"))));
        assert!(out.iter().any(|c| matches!(c, CallChange::Conference(r) if r.name == "live-room" && r.ended_at.is_none())));
        assert_eq!(tr.live_leg_count(), 2);
        // the call of the vanished leg is closed too
        assert!(
            calls(&out)
                .iter()
                .any(|c| c.linkedid == "6.0" && c.ended_at == Some(t(20)))
        );
    }

    #[test]
    fn conference_membership_follows_join_and_leave() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(&newchannel("9.0", "9.0", "Local/a@b-1;2", "Up"), t(0));
        tr.apply(
            &Ev::parse("Event: ConfbridgeStart\nConference: thread-1"),
            t(0),
        );
        let out = tr.apply(&Ev::parse("Event: ConfbridgeJoin\nConference: thread-1\nUniqueid: 9.0\nChannel: Local/a@b-1;2"), t(1));
        assert_eq!(legs(&out)[0].conference.as_deref(), Some("thread-1"));
        let out = tr.apply(
            &Ev::parse("Event: ConfbridgeLeave\nConference: thread-1\nUniqueid: 9.0"),
            t(2),
        );
        assert_eq!(legs(&out)[0].conference, None);
        let out = tr.apply(
            &Ev::parse("Event: ConfbridgeEnd\nConference: thread-1"),
            t(3),
        );
        assert!(
            out.iter()
                .any(|c| matches!(c, CallChange::Conference(r) if r.ended_at == Some(t(3))))
        );
    }

    #[test]
    fn a_join_reported_before_the_legs_newchannel_still_puts_the_leg_in_the_conference() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(&Ev::parse("Event: ConfbridgeJoin\nConference: thread-1\nUniqueid: 9.0\nChannel: Local/a@b-1;2"), t(1));
        tr.apply(&Ev::parse("Event: ConfbridgeJoin\nConference: thread-1\nUniqueid: 8.0\nChannel: Local/c@b-1;2"), t(1));
        tr.apply(
            &Ev::parse("Event: ConfbridgeLeave\nConference: thread-1\nUniqueid: 8.0"),
            t(1),
        );
        let out = tr.apply(&newchannel("9.0", "9.0", "Local/a@b-1;2", "Up"), t(2));
        assert_eq!(legs(&out)[0].conference.as_deref(), Some("thread-1"));
        let out = tr.apply(&newchannel("8.0", "8.0", "Local/c@b-1;2", "Up"), t(2));
        assert_eq!(legs(&out)[0].conference, None, "it left before it appeared");
    }

    fn originate_response(uid: &str, reason: &str) -> Ev {
        Ev::from_pairs(&[
            ("Event", "OriginateResponse"),
            ("Response", "Failure"),
            ("Reason", reason),
            ("Uniqueid", uid),
        ])
    }

    #[test]
    fn held_originate_reasons_past_the_cap_make_room_by_dropping_those_over_a_minute_old() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        for i in 0..MAX_EARLY_REASONS - 2 {
            tr.track(&originate_response(&format!("old.{i}"), "3"), t(0));
        }
        // Exactly a minute old when the next one comes: dropped too.
        tr.track(&originate_response("edge.0", "4"), t(1));
        tr.track(&originate_response("recent.0", "5"), t(30));
        // The cap is reached: the next reason prunes those seen before t(61) - 60 s.
        tr.track(&originate_response("new.0", "8"), t(61));
        tr.take_changes();
        tr.track(
            &newchannel("recent.0", "recent.0", "Local/r@b-1;1", "Down"),
            t(62),
        );
        tr.track(
            &newchannel("new.0", "new.0", "Local/n@b-1;1", "Down"),
            t(62),
        );
        tr.track(
            &newchannel("old.0", "old.0", "Local/o@b-1;1", "Down"),
            t(62),
        );
        tr.track(
            &newchannel("edge.0", "edge.0", "Local/e@b-1;1", "Down"),
            t(62),
        );
        let out = tr.take_changes();
        let reason = |uid: &str| legs_of(&out, uid)[0].originate_reason;
        assert_eq!(
            (
                reason("recent.0"),
                reason("new.0"),
                reason("old.0"),
                reason("edge.0")
            ),
            (Some(5), Some(8), None, None)
        );
    }

    #[test]
    fn past_the_cap_of_recent_held_reasons_a_new_one_is_not_held() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        for i in 0..MAX_EARLY_REASONS {
            tr.track(&originate_response(&format!("held.{i}"), "3"), t(30));
        }
        tr.track(&originate_response("one-too-many", "8"), t(31));
        tr.track(
            &newchannel("held.0", "held.0", "Local/h@b-1;1", "Down"),
            t(32),
        );
        tr.track(
            &newchannel("one-too-many", "one-too-many", "Local/x@b-1;1", "Down"),
            t(32),
        );
        let out = tr.take_changes();
        let reason = |uid: &str| legs_of(&out, uid)[0].originate_reason;
        assert_eq!((reason("held.0"), reason("one-too-many")), (Some(3), None));
    }

    #[test]
    fn an_originate_response_without_a_channel_is_held_for_no_leg() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        for uid in ["<null>", ""] {
            let out = tr.apply(&originate_response(uid, "0"), t(0));
            assert!(
                !out.iter()
                    .any(|c| matches!(c, CallChange::OriginateReason { .. })),
                "{uid:?}: {out:?}"
            );
        }
    }

    #[test]
    fn a_leg_follows_its_channel_name_when_asterisk_renames_it() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(&newchannel("31.0", "31.0", "Local/a@b-1;1", "Down"), t(0));
        tr.track(
            &Ev::parse(
                "Event: Newstate\nUniqueid: 31.0\nChannel: PJSIP/doctor-0001\nChannelStateDesc: Up",
            ),
            t(1),
        );
        let out = tr.take_changes();
        assert_eq!(legs_of(&out, "31.0")[0].channel, "PJSIP/doctor-0001");
    }

    #[test]
    fn a_leg_is_answered_once_when_it_first_goes_up() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(&newchannel("30.0", "30.0", "Local/a@b-1;1", "Down"), t(0));
        let state = |s: &str| {
            Ev::parse(&format!(
                "Event: Newstate\nUniqueid: 30.0\nChannelStateDesc: {s}"
            ))
        };
        tr.track(&state("Ringing"), t(1));
        assert_eq!(legs_of(&tr.take_changes(), "30.0")[0].answered_at, None);
        tr.track(&state("Up"), t(2));
        tr.track(&state("Up"), t(5));
        assert_eq!(
            legs_of(&tr.take_changes(), "30.0")[0].answered_at,
            Some(t(2))
        );
    }

    /// `(kind, uniqueid)` of every timeline entry in `changes`, in order.
    fn timeline_steps(changes: &[CallChange]) -> Vec<(String, String)> {
        changes
            .iter()
            .filter_map(|c| match c {
                CallChange::Timeline(chunk) => Some(chunk),
                _ => None,
            })
            .flat_map(|chunk| {
                let entries: serde_json::Value = serde_json::from_str(&chunk.entries).unwrap();
                entries
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                        (text("kind"), text("uniqueid"))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_dialled_bridged_call_keeps_each_step_and_its_legs_follow_caller_id_and_bridge() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(&newchannel("20.0", "20.0", "Local/a@b-1;1", "Ring"), t(0));
        tr.track(&newchannel("20.1", "20.0", "Local/a@b-1;2", "Ring"), t(0));
        tr.track(
            &Ev::parse("Event: NewCallerid\nUniqueid: 20.0\nCallerIDNum: 89001112233"),
            t(1),
        );
        tr.track(
            &Ev::parse("Event: DialBegin\nUniqueid: 20.0\nDestUniqueid: 20.1\nDialString: a@b"),
            t(1),
        );
        tr.track(
            &Ev::parse("Event: DialEnd\nUniqueid: 20.0\nDestUniqueid: 20.1\nDialStatus: ANSWER"),
            t(2),
        );
        tr.track(
            &Ev::parse("Event: BridgeCreate\nBridgeUniqueid: br-1"),
            t(2),
        );
        tr.track(
            &Ev::parse("Event: BridgeEnter\nUniqueid: 20.1\nBridgeUniqueid: br-1"),
            t(2),
        );
        let first = tr.take_changes();
        assert_eq!(
            legs_of(&first, "20.0")[0].caller_num.as_deref(),
            Some("89001112233")
        );
        assert_eq!(
            legs_of(&first, "20.1")[0].bridge_id.as_deref(),
            Some("br-1")
        );
        tr.track(
            &Ev::parse("Event: MusicOnHoldStart\nUniqueid: 20.1\nChannel: Local/a@b-1;2"),
            t(3),
        );
        tr.track(
            &Ev::parse("Event: MixMonitorStop\nUniqueid: 20.0\nChannel: Local/a@b-1;1"),
            t(3),
        );
        tr.track(
            &Ev::parse("Event: BridgeLeave\nUniqueid: 20.1\nBridgeUniqueid: br-1"),
            t(4),
        );
        let second = tr.take_changes();
        assert_eq!(legs_of(&second, "20.1")[0].bridge_id, None);
        let steps: Vec<(String, String)> = timeline_steps(&first)
            .into_iter()
            .chain(timeline_steps(&second))
            .collect();
        let expected = [
            ("Newchannel", "20.0"),
            ("Newchannel", "20.1"),
            ("DialBegin", "20.1"),
            ("DialEnd", "20.1"),
            ("BridgeEnter", "20.1"),
            ("MusicOnHoldStart", "20.1"),
            ("MixMonitorStop", "20.0"),
            ("BridgeLeave", "20.1"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, u)| (k.to_string(), u.to_string()))
            .collect();
        assert_eq!(steps, expected);
    }

    #[test]
    fn an_entry_for_no_known_call_alone_counts_as_a_waiting_change() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        assert!(!tr.has_changes());
        // Only the unlinked tail is filled: no call, leg, conference or timeline chunk.
        tr.track(
            &Ev::parse("Event: ConfbridgeJoin\nConference: r\nUniqueid: 78.1\nChannel: CBAnn/r-1"),
            t(1),
        );
        assert!(tr.has_changes());
        let out = tr.take_changes();
        assert!(
            out.iter().all(|c| matches!(c, CallChange::Event(_))),
            "{out:?}"
        );
        assert!(!tr.has_changes());
    }

    #[test]
    fn only_announcer_and_recorder_channels_are_marked_as_conference_helpers() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let helper_marks: Vec<bool> = [
            "CBAnn/thread-1-00000001;1",
            "CBRec/thread-1-00000002",
            "Local/a@b-1;2",
            "PJSIP/CBAnn-0001",
        ]
        .iter()
        .map(|channel| {
            let out = tr.apply(
                &Ev::from_pairs(&[
                    ("Event", "ConfbridgeJoin"),
                    ("Conference", "thread-1"),
                    ("Uniqueid", "77.1"),
                    ("Channel", channel),
                ]),
                t(1),
            );
            let details: Vec<&str> = out
                .iter()
                .filter_map(|c| match c {
                    CallChange::Event(e) => Some(e.detail.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(details.len(), 1, "{channel}: {out:?}");
            details[0].contains("\"helper\":true")
        })
        .collect();
        assert_eq!(helper_marks, [true, true, false, false]);
    }

    #[test]
    fn events_for_unknown_channels_and_nameless_messages_change_nothing() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        assert!(
            tr.apply(&Ev::parse("Event: Hangup\nUniqueid: nope"), t(0))
                .is_empty()
        );
        assert!(tr.apply(&Ev::parse("Response: Success"), t(0)).is_empty());
        assert!(
            tr.apply(&Ev::parse("Event: Newchannel\nChannel: X"), t(0))
                .is_empty(),
            "no uniqueid"
        );
    }

    #[test]
    fn a_batch_carries_each_leg_once_in_its_latest_state_after_its_call() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(&newchannel("10.0", "10.0", "Local/a@b-1;1", "Down"), t(0));
        tr.track(
            &Ev::parse("Event: Newstate\nChannelStateDesc: Ringing\nUniqueid: 10.0"),
            t(1),
        );
        tr.track(
            &Ev::parse("Event: Newstate\nChannelStateDesc: Up\nUniqueid: 10.0"),
            t(2),
        );
        assert!(tr.has_changes());
        let out = tr.take_changes();
        let legs = legs(&out);
        assert_eq!(legs.len(), 1, "{out:?}");
        assert_eq!(legs[0].state.as_deref(), Some("Up"));
        assert_eq!(legs[0].answered_at, Some(t(2)));
        let first_leg = out.iter().position(|c| matches!(c, CallChange::Leg(_)));
        let timeline = out
            .iter()
            .position(|c| matches!(c, CallChange::Timeline(_)));
        assert!(matches!(out[0], CallChange::Call(_)));
        assert!(first_leg < timeline, "timeline rows come after the legs");
        let Some(CallChange::Timeline(chunk)) = timeline.map(|i| &out[i]) else {
            panic!("no timeline in {out:?}");
        };
        let entries: serde_json::Value = serde_json::from_str(&chunk.entries).unwrap();
        let kinds: Vec<_> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Newchannel", "Newstate", "Newstate"]);
        assert_eq!(entries[2]["detail"]["ChannelStateDesc"], "Up");
        assert_eq!(entries[2]["uniqueid"], "10.0");
        assert_eq!(entries[2]["at"], "2027-01-15T08:00:02.000000Z");
        assert_eq!((chunk.first_at, chunk.last_at), (t(0), t(2)));
        assert!(!tr.has_changes());
        assert!(tr.take_changes().is_empty());

        // Opened and closed within one batch: the call is written once, closed.
        tr.track(&Ev::parse("Event: Hangup\nUniqueid: 10.0\nCause: 16"), t(3));
        tr.track(&newchannel("11.0", "11.0", "Local/a@b-2;1", "Down"), t(4));
        tr.track(&Ev::parse("Event: Hangup\nUniqueid: 11.0"), t(5));
        let out = tr.take_changes();
        let calls = calls(&out);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.ended_at.is_some()));
        assert_eq!(legs_of(&out, "11.0").len(), 1);
    }

    fn legs_of<'a>(changes: &'a [CallChange], uid: &str) -> Vec<&'a LegRecord> {
        legs(changes)
            .into_iter()
            .filter(|l| l.uniqueid == uid)
            .collect()
    }

    #[test]
    fn timeline_details_are_json_objects_whatever_the_values_hold() {
        let ev = Ev::parse(
            "Event: Hangup\nChannel: SIP/\"quoted\"\\back\u{1}ctl\tand кириллица\nCause: 16",
        );
        let text = detail(&ev, &["Channel", "Cause", "Missing"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Channel": "SIP/\"quoted\"\\back\u{1}ctl\tand кириллица", "Cause": "16"})
        );
        assert_eq!(detail(&ev, &[]), "{}");
    }

    #[test]
    fn event_timestamps_read_any_fraction_length() {
        let at = |ts: &str| event_time(&Ev::parse(&format!("Timestamp: {ts}")));
        let t0 = |micros: u32| DateTime::from_timestamp(1_800_000_123, micros * 1000);
        assert_eq!(at("1800000123.25"), t0(250_000));
        assert_eq!(at("1800000123.123456"), t0(123_456));
        assert_eq!(at("1800000123"), t0(0));
        assert_eq!(at("1800000123.1234567"), t0(123_456));
        assert_eq!(at("1800000123.x"), None);
        assert_eq!(at("soon"), None);
    }

    #[test]
    fn an_originate_response_that_overtakes_its_channel_still_reaches_the_leg() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(
            &Ev::parse("Event: OriginateResponse\nResponse: Failure\nReason: 8\nUniqueid: 12.0"),
            t(0),
        );
        tr.track(
            &newchannel("12.0", "12.0", "Local/congestion@x-1;1", "Down"),
            t(0),
        );
        tr.track(&Ev::parse("Event: Hangup\nUniqueid: 12.0\nCause: 34"), t(1));
        let out = tr.take_changes();
        assert_eq!(
            legs_of(&out, "12.0")[0].originate_reason,
            Some(8),
            "{out:?}"
        );
    }

    /// A `Newchannel` carrying channel variables (`NAME=value`), as `channelvars` makes
    /// Asterisk report them.
    fn newchannel_with(uid: &str, linked: &str, channel: &str, vars: &[&str]) -> Ev {
        let mut text = format!(
            "Event: Newchannel\nChannel: {channel}\nChannelStateDesc: Down\nUniqueid: {uid}\nLinkedid: {linked}"
        );
        for v in vars {
            text.push_str("\nChanVariable: ");
            text.push_str(v);
        }
        Ev::parse(&text)
    }

    /// An event of `uid` named `event` carrying `vars`.
    fn channel_event(event: &str, uid: &str, vars: &[&str]) -> Ev {
        let mut text = format!("Event: {event}\nUniqueid: {uid}\nChannelStateDesc: Up");
        for v in vars {
            text.push_str("\nChanVariable: ");
            text.push_str(v);
        }
        Ev::parse(&text)
    }

    /// `(linkedid, ended)` of every call change, in order.
    fn call_states(changes: &[CallChange]) -> Vec<(String, bool)> {
        calls(changes)
            .into_iter()
            .map(|c| (c.linkedid.clone(), c.ended_at.is_some()))
            .collect()
    }

    /// `(kind, uniqueid)` of the timeline entries written to the call `linkedid`.
    fn timeline_of(changes: &[CallChange], linkedid: &str) -> Vec<(String, String)> {
        let only: Vec<CallChange> = changes
            .iter()
            .filter(|c| matches!(c, CallChange::Timeline(t) if t.linkedid == linkedid))
            .cloned()
            .collect();
        timeline_steps(&only)
    }

    const KEY: &str = "MEDCALL_CALL_KEY=5b0525134c0319001573485e-lq3x9k2a";
    const K: &str = "5b0525134c0319001573485e-lq3x9k2a";

    #[test]
    fn legs_originated_with_the_same_call_key_are_one_call_whatever_their_linkedids() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        // Two originated legs, each a pair of Local halves with its own Linkedid.
        let legs_in = [
            ("50.0", "50.0", "Local/silent@fake-phones-1;1"),
            ("50.1", "50.0", "Local/silent@fake-phones-1;2"),
            ("51.0", "51.0", "Local/silent@fake-phones-2;1"),
            ("51.1", "51.0", "Local/silent@fake-phones-2;2"),
        ];
        for (uid, linked, channel) in legs_in {
            let vars = ["MEDCALL_CALL_ID=", "MEDCALL_ROLE=user", KEY];
            tr.track(&newchannel_with(uid, linked, channel, &vars), t(0));
        }
        let out = tr.take_changes();
        assert_eq!(call_states(&out), [(K.to_string(), false)]);
        assert!(legs(&out).iter().all(|l| l.linkedid == K), "{out:?}");
        assert_eq!(legs(&out).len(), 4);
        assert_eq!((tr.live_call_count(), tr.live_leg_count()), (1, 4));
        // Live while any leg is; ended with the last, whichever Linkedid it had.
        let hangups: [(&str, &[(&str, bool)]); 4] = [
            ("50.1", &[]),
            ("50.0", &[]),
            ("51.0", &[]),
            ("51.1", &[(K, true)]),
        ];
        for (i, (uid, expected)) in hangups.into_iter().enumerate() {
            let hangup = Ev::parse(&format!(
                "Event: Hangup\nUniqueid: {uid}\nChanVariable: {KEY}"
            ));
            let out = tr.apply(&hangup, t(10 + i as i64));
            let expected: Vec<(String, bool)> =
                expected.iter().map(|(l, e)| (l.to_string(), *e)).collect();
            assert_eq!(call_states(&out), expected, "after the hangup of {uid}");
            assert_eq!(legs_of(&out, uid)[0].linkedid, K);
        }
        assert_eq!((tr.live_call_count(), tr.live_leg_count()), (0, 0));
    }

    #[test]
    fn an_empty_or_unrelated_channel_variable_is_no_call_key() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let cases: [(&str, &[&str], &str); 4] = [
            ("60.0", &["MEDCALL_CALL_KEY="], "60.0"),
            (
                "61.0",
                &["MEDCALL_CALL_KEYS=x", "MEDCALL_CALL_ID=7"],
                "61.0",
            ),
            ("62.0", &["MEDCALL_CALL_KEY"], "62.0"),
            (
                "63.0",
                &["MEDCALL_CALL_ID=7", "MEDCALL_CALL_KEY=k-1"],
                "k-1",
            ),
        ];
        for (uid, vars, call) in cases {
            let out = tr.apply(&newchannel_with(uid, uid, "Local/a@b-1;1", vars), t(0));
            assert_eq!(legs_of(&out, uid)[0].linkedid, call, "{vars:?}");
            assert_eq!(call_states(&out), [(call.to_string(), false)], "{vars:?}");
        }
    }

    #[test]
    fn an_inbound_caller_tagged_later_moves_to_the_keyed_call_and_its_own_call_closes() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        // A conference leg of the key is live already.
        tr.track(
            &newchannel_with("70.0", "70.0", "Local/silent@fake-phones-1;1", &[KEY]),
            t(5),
        );
        // The caller arrives from the trunk, untagged: a call of its own Linkedid.
        tr.track(
            &newchannel_with(
                "80.0",
                "80.0",
                "PJSIP/trunk-00000001",
                &["MEDCALL_CALL_KEY="],
            ),
            t(1),
        );
        tr.track(
            &channel_event("Newstate", "80.0", &["MEDCALL_CALL_KEY="]),
            t(6),
        );
        let before = tr.take_changes();
        assert_eq!(
            call_states(&before),
            [(K.to_string(), false), ("80.0".to_string(), false)]
        );
        // The FastAGI route sets the key: the next event of the caller shows it.
        tr.track(&channel_event("Newstate", "80.0", &[KEY]), t(7));
        tr.track(&channel_event("Newstate", "80.0", &[KEY]), t(8));
        let moved = tr.take_changes();
        // Its own call closes (it had no other leg); the keyed call now starts when the
        // caller did.
        let calls_now = calls(&moved);
        assert_eq!(
            calls_now
                .iter()
                .map(|c| (c.linkedid.as_str(), c.started_at, c.ended_at))
                .collect::<Vec<_>>(),
            [(K, t(1), None), ("80.0", t(1), Some(t(7)))]
        );
        assert_eq!(legs_of(&moved, "80.0")[0].linkedid, K);
        // What was written stays in the old call; the move is told in both, and what
        // follows goes to the new one.
        let step = |k: &str, u: &str| (k.to_string(), u.to_string());
        assert_eq!(
            timeline_of(&before, "80.0"),
            [step("Newchannel", "80.0"), step("Newstate", "80.0")]
        );
        assert_eq!(timeline_of(&moved, "80.0"), [step("LegMovedOut", "80.0")]);
        assert_eq!(
            timeline_of(&moved, K),
            [
                step("LegMovedIn", "80.0"),
                step("Newstate", "80.0"),
                step("Newstate", "80.0")
            ]
        );
        assert_eq!((tr.live_call_count(), tr.live_leg_count()), (1, 2));
        // The keyed call ends with its last leg, the moved caller included.
        tr.track(&Ev::parse("Event: Hangup\nUniqueid: 70.0"), t(9));
        assert!(calls(&tr.take_changes()).is_empty());
        let out = tr.apply(&Ev::parse("Event: Hangup\nUniqueid: 80.0"), t(10));
        assert_eq!(call_states(&out), [(K.to_string(), true)]);
    }

    #[test]
    fn a_tagged_caller_leaves_its_linkedid_call_open_while_that_call_has_other_legs() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(&newchannel("90.0", "90.0", "PJSIP/trunk-1", "Ring"), t(0));
        tr.track(&newchannel("90.1", "90.0", "Local/ivr@x-1;1", "Ring"), t(0));
        tr.take_changes();
        // Tagged first on its Hangup: it still ends as a leg of the keyed call.
        let out = tr.apply(
            &Ev::parse(&format!(
                "Event: Hangup\nUniqueid: 90.0\nChanVariable: {KEY}"
            )),
            t(3),
        );
        // The keyed call opened and ended in one batch is written once, ended; the
        // Linkedid call keeps its other leg and is not written at all.
        assert_eq!(call_states(&out), [(K.to_string(), true)]);
        assert_eq!(legs_of(&out, "90.0")[0].linkedid, K);
        assert_eq!(
            legs_of(&out, "90.0")[0].end_reason.as_deref(),
            Some("hangup")
        );
        assert_eq!((tr.live_call_count(), tr.live_leg_count()), (1, 1));
        let out = tr.apply(&Ev::parse("Event: Hangup\nUniqueid: 90.1"), t(4));
        assert_eq!(call_states(&out), [("90.0".to_string(), true)]);
    }

    #[test]
    fn reconciliation_groups_adopted_legs_by_call_key_and_moves_a_leg_tagged_while_away() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.apply(&newchannel("100.0", "100.0", "PJSIP/trunk-1", "Up"), t(0));
        let snap = |uid: &str, linked: &str, key: Option<&str>| LegSnapshot {
            uniqueid: uid.into(),
            linkedid: linked.into(),
            channel: format!("Local/silent@fake-phones-{uid};1"),
            variables: key
                .map(|k| [(CALL_KEY_VARIABLE.to_string(), k.to_string())].into())
                .unwrap_or_default(),
            started_at: Some(t(2)),
            ..Default::default()
        };
        let out = tr.reconcile(
            &[
                snap("100.0", "100.0", Some(K)),
                snap("101.0", "101.0", Some(K)),
                snap("102.0", "102.0", Some(K)),
                snap("103.0", "103.0", Some("")),
            ],
            &[],
            None,
            t(20),
        );
        let grouped: Vec<(&str, &str)> = ["100.0", "101.0", "102.0", "103.0"]
            .iter()
            .map(|u| (*u, legs_of(&out, u)[0].linkedid.as_str()))
            .collect();
        assert_eq!(
            grouped,
            [("100.0", K), ("101.0", K), ("102.0", K), ("103.0", "103.0")]
        );
        let mut states = call_states(&out);
        states.sort();
        assert_eq!(
            states,
            [
                ("100.0".to_string(), true),
                ("103.0".to_string(), false),
                (K.to_string(), false)
            ]
        );
        assert_eq!((tr.live_call_count(), tr.live_leg_count()), (2, 4));
        assert!(
            out.iter().any(
                |c| matches!(c, CallChange::Gap(g) if g.legs_adopted == 3 && g.legs_closed == 0)
            )
        );
    }

    fn cdr(uid: &str, linked: &str) -> Ev {
        Ev::from_pairs(&[
            ("Event", "Cdr"),
            ("UniqueID", uid),
            ("LinkedID", linked),
            ("Disposition", "ANSWERED"),
        ])
    }

    fn cdr_call(changes: &[CallChange]) -> Option<&str> {
        changes.iter().find_map(|c| match c {
            CallChange::Cdr(r) => r.linkedid.as_deref(),
            _ => None,
        })
    }

    #[test]
    fn the_cdr_of_a_moved_leg_after_its_hangup_is_filed_with_the_call_it_moved_to() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        tr.track(&newchannel("110.0", "110.0", "PJSIP/trunk-1", "Up"), t(0));
        tr.track(&newchannel("111.0", "111.0", "PJSIP/trunk-2", "Up"), t(0));
        tr.track(&channel_event("Newstate", "110.0", &[KEY]), t(1));
        for uid in ["110.0", "111.0"] {
            tr.track(&Ev::parse(&format!("Event: Hangup\nUniqueid: {uid}")), t(2));
        }
        tr.take_changes();
        // Each CDR names the channel's own Linkedid.
        let filed: Vec<Option<String>> = ["110.0", "111.0"]
            .iter()
            .map(|u| cdr_call(&tr.apply(&cdr(u, u), t(3))).map(str::to_string))
            .collect();
        assert_eq!(filed, [Some(K.to_string()), Some("111.0".to_string())]);
    }

    #[test]
    fn moved_legs_remembered_for_their_cdr_make_room_by_forgetting_those_ended_a_minute_ago() {
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let tagged = |uid: &str| channel_event("Newstate", uid, &["MEDCALL_CALL_KEY=k"]);
        // A full table: one leg still live, the others ended at t(0) (or, one, at t(1)).
        for i in 0..MAX_MOVED {
            let uid = format!("old.{i}");
            tr.track(&newchannel(&uid, &uid, "PJSIP/trunk-1", "Up"), t(0));
            tr.track(&tagged(&uid), t(0));
            let end = if i == 1 { t(1) } else { t(0) };
            if i > 0 {
                tr.track(&Ev::parse(&format!("Event: Hangup\nUniqueid: {uid}")), end);
            }
        }
        tr.track(&newchannel("new.0", "new.0", "PJSIP/trunk-2", "Up"), t(60));
        tr.track(&tagged("new.0"), t(60));
        tr.track(&Ev::parse("Event: Hangup\nUniqueid: new.0"), t(61));
        tr.track(&Ev::parse("Event: Hangup\nUniqueid: old.0"), t(62));
        tr.take_changes();
        let filed = |uid: &str, tr: &mut CallTracker| {
            cdr_call(&tr.apply(&cdr(uid, uid), t(62))).map(str::to_string)
        };
        // Room was made at t(60): legs ended at t(0) forgotten, the live one and the one
        // ended within the minute kept.
        assert_eq!(
            (
                filed("new.0", &mut tr),
                filed("old.0", &mut tr),
                filed("old.1", &mut tr),
                filed("old.2", &mut tr)
            ),
            (
                Some("k".to_string()),
                Some("k".to_string()),
                Some("k".to_string()),
                Some("old.2".to_string())
            )
        );
    }
}
