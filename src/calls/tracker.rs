//! The call tracker: a sans-I/O state machine that turns AMI events into call, leg,
//! conference and timeline records (SPEC §9).
//!
//! It owns the in-memory view of what is live on one PBX and answers every event with
//! the record changes to persist ([`CallChange`]); it never touches a socket or the
//! database. Reconciliation after a (re)connect compares that view with what the PBX
//! reports and closes or adopts legs, recording the gap.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::model::{
    CallChange, CallRecord, CdrRecord, ConferenceRecord, EventRecord, GapRecord, LegRecord,
    LegSnapshot,
};

/// Read access to an AMI event's fields; implemented by the AMI message type.
pub trait EventFields {
    /// The first value of `key` (case-insensitive), as text.
    fn field(&self, key: &str) -> Option<String>;
    /// Every value of `key`, in order (e.g. `ChanVariable`).
    fn fields(&self, key: &str) -> Vec<String>;
}

/// Why a leg ended.
pub const END_HANGUP: &str = "hangup";
/// The leg vanished while the daemon was not connected (reconciliation).
pub const END_PBX_GAP: &str = "pbx-gap";

/// Channels that are Asterisk's helpers rather than call participants.
fn is_helper_channel(channel: &str) -> bool {
    channel.starts_with("CBAnn/") || channel.starts_with("CBRec/")
}

#[derive(Debug)]
struct LiveCall {
    record: CallRecord,
    live_legs: HashSet<String>,
}

/// The live state of one PBX.
#[derive(Debug)]
pub struct CallTracker {
    pbx: String,
    calls: HashMap<String, LiveCall>,
    legs: HashMap<String, LegRecord>,
    conferences: HashMap<String, ConferenceRecord>,
}

impl CallTracker {
    /// A tracker that starts from what the store says is live (after a daemon restart).
    pub fn new(
        pbx: &str,
        live_calls: Vec<CallRecord>,
        live_legs: Vec<LegRecord>,
        live_confs: Vec<ConferenceRecord>,
    ) -> Self {
        let mut calls: HashMap<String, LiveCall> = live_calls
            .into_iter()
            .map(|c| {
                (
                    c.linkedid.clone(),
                    LiveCall {
                        record: c,
                        live_legs: HashSet::new(),
                    },
                )
            })
            .collect();
        let mut legs = HashMap::new();
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
        }
    }

    pub fn live_leg_count(&self) -> usize {
        self.legs.len()
    }

    pub fn live_call_count(&self) -> usize {
        self.calls.len()
    }

    /// Applies one event received at `at`; returns what to persist.
    pub fn apply(&mut self, ev: &impl EventFields, at: DateTime<Utc>) -> Vec<CallChange> {
        let Some(name) = ev.field("Event") else {
            return Vec::new();
        };
        let at = event_time(ev).unwrap_or(at);
        let mut out = Vec::new();
        match name.as_str() {
            "Newchannel" => self.on_newchannel(ev, at, &mut out),
            "Newstate" | "NewCallerid" | "NewConnectedLine" | "NewAccountCode" => {
                self.on_update(ev, &name, at, &mut out)
            }
            "Hangup" => self.on_hangup(ev, at, &mut out),
            "DialBegin" | "DialEnd" => self.on_dial(ev, &name, at, &mut out),
            "BridgeEnter" | "BridgeLeave" => self.on_bridge_member(ev, &name, at, &mut out),
            "BridgeCreate" | "BridgeDestroy" => {}
            "ConfbridgeStart"
            | "ConfbridgeEnd"
            | "ConfbridgeJoin"
            | "ConfbridgeLeave"
            | "ConfbridgeMute"
            | "ConfbridgeUnmute"
            | "ConfbridgeRecord"
            | "ConfbridgeStopRecord"
            | "ConfbridgeTalking" => self.on_confbridge(ev, &name, at, &mut out),
            "OriginateResponse" => self.on_originate_response(ev, at, &mut out),
            "MixMonitorStart" | "MixMonitorStop" | "MusicOnHoldStart" | "MusicOnHoldStop" => {
                self.timeline_for_channel(ev, &name, at, Map::new(), &mut out)
            }
            "Cdr" => self.on_cdr(ev, at, &mut out),
            _ => {}
        }
        if let Some(uid) = ev.field("Uniqueid") {
            self.absorb_variables(ev, &uid, &mut out);
        }
        out
    }

    fn on_newchannel(
        &mut self,
        ev: &impl EventFields,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
        let (Some(uniqueid), Some(channel)) = (ev.field("Uniqueid"), ev.field("Channel")) else {
            return;
        };
        let linkedid = ev.field("Linkedid").unwrap_or_else(|| uniqueid.clone());
        self.open_call(&linkedid, at, out);
        let mut leg = LegRecord {
            pbx: self.pbx.clone(),
            uniqueid: uniqueid.clone(),
            linkedid: linkedid.clone(),
            channel,
            ..LegRecord::default()
        };
        leg.created_at = Some(at);
        fill_leg(&mut leg, ev);
        if leg.state.as_deref() == Some("Up") {
            leg.answered_at = Some(at);
        }
        if let Some(call) = self.calls.get_mut(&linkedid) {
            call.live_legs.insert(uniqueid.clone());
        }
        out.push(CallChange::Leg(Box::new(leg.clone())));
        out.push(self.event(
            &linkedid,
            Some(&uniqueid),
            at,
            "Newchannel",
            detail(
                ev,
                &[
                    "Channel",
                    "ChannelStateDesc",
                    "CallerIDNum",
                    "Exten",
                    "Context",
                ],
            ),
        ));
        self.legs.insert(uniqueid, leg);
    }

    fn open_call(&mut self, linkedid: &str, at: DateTime<Utc>, out: &mut Vec<CallChange>) {
        if self.calls.contains_key(linkedid) {
            return;
        }
        let record = CallRecord {
            pbx: self.pbx.clone(),
            linkedid: linkedid.to_string(),
            started_at: at,
            ended_at: None,
        };
        out.push(CallChange::Call(record.clone()));
        self.calls.insert(
            linkedid.to_string(),
            LiveCall {
                record,
                live_legs: HashSet::new(),
            },
        );
    }

    fn on_update(
        &mut self,
        ev: &impl EventFields,
        name: &str,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
        let Some(uniqueid) = ev.field("Uniqueid") else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&uniqueid) else {
            return;
        };
        let was_up = leg.answered_at.is_some();
        fill_leg(leg, ev);
        if !was_up && leg.state.as_deref() == Some("Up") {
            leg.answered_at = Some(at);
        }
        let leg = leg.clone();
        out.push(CallChange::Leg(Box::new(leg.clone())));
        if name == "Newstate" {
            out.push(self.event(
                &leg.linkedid,
                Some(&uniqueid),
                at,
                name,
                detail(ev, &["ChannelStateDesc"]),
            ));
        }
    }

    fn on_hangup(&mut self, ev: &impl EventFields, at: DateTime<Utc>, out: &mut Vec<CallChange>) {
        let Some(uniqueid) = ev.field("Uniqueid") else {
            return;
        };
        let Some(mut leg) = self.legs.remove(&uniqueid) else {
            return;
        };
        fill_leg(&mut leg, ev);
        leg.ended_at = Some(at);
        leg.hangup_cause = ev.field("Cause").and_then(|c| c.parse().ok());
        leg.hangup_cause_text = ev.field("Cause-txt");
        leg.end_reason = Some(END_HANGUP.into());
        let linkedid = leg.linkedid.clone();
        out.push(CallChange::Leg(Box::new(leg)));
        out.push(self.event(
            &linkedid,
            Some(&uniqueid),
            at,
            "Hangup",
            detail(ev, &["Channel", "Cause", "Cause-txt"]),
        ));
        self.leg_gone(&linkedid, &uniqueid, at, out);
    }

    /// Closes the call when its last live leg is gone.
    fn leg_gone(
        &mut self,
        linkedid: &str,
        uniqueid: &str,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
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
                out.push(CallChange::Call(call.record));
            }
        }
    }

    fn on_dial(
        &mut self,
        ev: &impl EventFields,
        name: &str,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
        let uid = ev.field("DestUniqueid").or_else(|| ev.field("Uniqueid"));
        let Some(uid) = uid else { return };
        let Some(linkedid) = self.legs.get(&uid).map(|l| l.linkedid.clone()) else {
            return;
        };
        out.push(self.event(
            &linkedid,
            Some(&uid),
            at,
            name,
            detail(ev, &["DestChannel", "DialString", "DialStatus"]),
        ));
    }

    fn on_bridge_member(
        &mut self,
        ev: &impl EventFields,
        name: &str,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
        let Some(uid) = ev.field("Uniqueid") else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&uid) else {
            return;
        };
        leg.bridge_id = if name == "BridgeEnter" {
            ev.field("BridgeUniqueid")
        } else {
            None
        };
        let leg = leg.clone();
        out.push(CallChange::Leg(Box::new(leg.clone())));
        out.push(self.event(
            &leg.linkedid,
            Some(&uid),
            at,
            name,
            detail(ev, &["BridgeUniqueid", "BridgeType", "BridgeTechnology"]),
        ));
    }

    fn on_confbridge(
        &mut self,
        ev: &impl EventFields,
        name: &str,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
        let Some(conf) = ev.field("Conference") else {
            return;
        };
        match name {
            "ConfbridgeStart" => {
                let record = ConferenceRecord {
                    pbx: self.pbx.clone(),
                    name: conf.clone(),
                    started_at: at,
                    ended_at: None,
                    end_reason: None,
                };
                out.push(CallChange::Conference(record.clone()));
                self.conferences.insert(conf, record);
                return;
            }
            "ConfbridgeEnd" => {
                if let Some(mut record) = self.conferences.remove(&conf) {
                    record.ended_at = Some(at);
                    record.end_reason = Some("ended".into());
                    out.push(CallChange::Conference(record));
                }
                return;
            }
            _ => {}
        }
        if name == "ConfbridgeJoin" || name == "ConfbridgeLeave" {
            if let Some(uid) = ev.field("Uniqueid") {
                if let Some(leg) = self.legs.get_mut(&uid) {
                    leg.conference = if name == "ConfbridgeJoin" {
                        Some(conf.clone())
                    } else {
                        None
                    };
                    let leg = leg.clone();
                    out.push(CallChange::Leg(Box::new(leg)));
                }
            }
        }
        let mut extra = Map::new();
        extra.insert("conference".into(), Value::String(conf));
        if let Some(ch) = ev.field("Channel") {
            if is_helper_channel(&ch) {
                extra.insert("helper".into(), Value::Bool(true));
            }
        }
        self.timeline_for_channel(ev, name, at, extra, out);
    }

    fn on_originate_response(
        &mut self,
        ev: &impl EventFields,
        at: DateTime<Utc>,
        out: &mut Vec<CallChange>,
    ) {
        let reason = ev.field("Reason").and_then(|r| r.parse::<i64>().ok());
        let uid = ev
            .field("Uniqueid")
            .filter(|u| !u.is_empty() && u != "<null>");
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
                let leg = leg.clone();
                let linkedid = leg.linkedid.clone();
                out.push(CallChange::Leg(Box::new(leg)));
                out.push(self.event(&linkedid, Some(uid), at, "OriginateResponse", d));
                return;
            }
            out.push(CallChange::OriginateReason {
                pbx: self.pbx.clone(),
                uniqueid: uid.clone(),
                reason,
            });
        }
        out.push(CallChange::Event(EventRecord {
            pbx: self.pbx.clone(),
            linkedid: None,
            uniqueid: uid,
            at,
            kind: "OriginateResponse".into(),
            detail: d,
        }));
    }

    fn on_cdr(&mut self, ev: &impl EventFields, at: DateTime<Utc>, out: &mut Vec<CallChange>) {
        let uniqueid = ev.field("UniqueID").unwrap_or_default();
        let linkedid = self
            .legs
            .get(&uniqueid)
            .map(|l| l.linkedid.clone())
            .or_else(|| ev.field("LinkedID"));
        let mut raw = Map::new();
        for key in [
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
        ] {
            if let Some(v) = ev.field(key) {
                raw.insert(key.to_string(), Value::String(v));
            }
        }
        out.push(CallChange::Cdr(CdrRecord {
            pbx: self.pbx.clone(),
            uniqueid,
            linkedid,
            received_at: at,
            source: ev.field("Source").unwrap_or_default(),
            destination: ev.field("Destination").unwrap_or_default(),
            disposition: ev.field("Disposition").unwrap_or_default(),
            duration: ev
                .field("Duration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            billable_seconds: ev
                .field("BillableSeconds")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            raw: Value::Object(raw),
        }));
    }

    fn timeline_for_channel(
        &mut self,
        ev: &impl EventFields,
        name: &str,
        at: DateTime<Utc>,
        mut extra: Map<String, Value>,
        out: &mut Vec<CallChange>,
    ) {
        let uid = ev.field("Uniqueid");
        let linkedid = uid
            .as_ref()
            .and_then(|u| self.legs.get(u))
            .map(|l| l.linkedid.clone())
            .or_else(|| ev.field("Linkedid"));
        if let Some(ch) = ev.field("Channel") {
            extra.insert("Channel".into(), Value::String(ch));
        }
        out.push(CallChange::Event(EventRecord {
            pbx: self.pbx.clone(),
            linkedid,
            uniqueid: uid,
            at,
            kind: name.to_string(),
            detail: Value::Object(extra),
        }));
    }

    /// `ChanVariable: NAME=value` headers update the leg's variables.
    fn absorb_variables(
        &mut self,
        ev: &impl EventFields,
        uniqueid: &str,
        out: &mut Vec<CallChange>,
    ) {
        let vars = ev.fields("ChanVariable");
        if vars.is_empty() {
            return;
        }
        let Some(leg) = self.legs.get_mut(uniqueid) else {
            return;
        };
        let mut changed = false;
        for v in vars {
            let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
            if k.is_empty() {
                continue;
            }
            if leg.variables.get(k).map(String::as_str) != Some(val) {
                leg.variables.insert(k.to_string(), val.to_string());
                changed = true;
            }
        }
        if changed {
            out.push(CallChange::Leg(Box::new(leg.clone())));
        }
    }

    fn event(
        &self,
        linkedid: &str,
        uniqueid: Option<&str>,
        at: DateTime<Utc>,
        kind: &str,
        detail: Value,
    ) -> CallChange {
        CallChange::Event(EventRecord {
            pbx: self.pbx.clone(),
            linkedid: Some(linkedid.to_string()),
            uniqueid: uniqueid.map(str::to_string),
            at,
            kind: kind.to_string(),
            detail,
        })
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
        let mut out = Vec::new();
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
                out.push(CallChange::Leg(Box::new(leg)));
                out.push(self.event(
                    &linkedid,
                    Some(uid),
                    at,
                    "LegLostInGap",
                    Value::Object(Map::new()),
                ));
                self.leg_gone(&linkedid, uid, at, &mut out);
            }
        }
        let mut adopted = 0usize;
        for snap in channels {
            if self.legs.contains_key(&snap.uniqueid) {
                continue;
            }
            adopted += 1;
            let linkedid = if snap.linkedid.is_empty() {
                snap.uniqueid.clone()
            } else {
                snap.linkedid.clone()
            };
            let started = snap.started_at.unwrap_or(at);
            if !self.calls.contains_key(&linkedid) {
                self.open_call(&linkedid, started, &mut out);
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
            out.push(CallChange::Leg(Box::new(leg.clone())));
            out.push(self.event(
                &linkedid,
                Some(&leg.uniqueid),
                at,
                "LegAdoptedAfterGap",
                Value::Object(Map::new()),
            ));
            self.legs.insert(leg.uniqueid.clone(), leg);
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
                out.push(CallChange::Conference(c));
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
                out.push(CallChange::Conference(c.clone()));
                self.conferences.insert(room.to_string(), c);
            }
        }
        out.push(CallChange::Gap(GapRecord {
            pbx: self.pbx.clone(),
            disconnected_at: gap_started,
            reconnected_at: at,
            legs_closed: vanished.len() as i64,
            legs_adopted: adopted as i64,
        }));
        out
    }
}

/// The event's own `Timestamp:` (manager.conf `timestampevents = yes`), if present.
fn event_time(ev: &impl EventFields) -> Option<DateTime<Utc>> {
    let ts = ev.field("Timestamp")?;
    let (secs, frac) = ts.split_once('.').unwrap_or((ts.as_str(), "0"));
    let secs: i64 = secs.parse().ok()?;
    let micros: u32 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    DateTime::from_timestamp(secs, micros * 1000)
}

fn fill_leg(leg: &mut LegRecord, ev: &impl EventFields) {
    let set = |slot: &mut Option<String>, key: &str| {
        if let Some(v) = ev.field(key) {
            *slot = if v.is_empty() || v == "<unknown>" {
                None
            } else {
                Some(v)
            };
        }
    };
    if let Some(ch) = ev.field("Channel") {
        leg.channel = ch;
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

fn detail(ev: &impl EventFields, keys: &[&str]) -> Value {
    let mut m = BTreeMap::new();
    for k in keys {
        if let Some(v) = ev.field(k) {
            m.insert((*k).to_string(), Value::String(v));
        }
    }
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event written as AMI text, for tests.
    struct Ev(Vec<(String, String)>);

    impl Ev {
        fn parse(text: &str) -> Ev {
            Ev(text
                .lines()
                .filter_map(|l| {
                    l.split_once(": ")
                        .or_else(|| l.strip_suffix(':').map(|k| (k, "")))
                })
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect())
        }
    }

    impl EventFields for Ev {
        fn field(&self, key: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        }
        fn fields(&self, key: &str) -> Vec<String> {
            self.0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

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
}
