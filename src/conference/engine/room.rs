//! One call in memory: its record, its legs, and what the engine knows about each leg
//! beyond its record (which halves of the channel were seen and hung up, whether the
//! originate is resolved, whether the API asked for the hangup, whether a hold is in
//! flight). Pure bookkeeping: the decisions that need requests live in the engine.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    Answer, CallPhase, CallRecord, CallResult, EndReason, LegRecord, LegState, OpId,
    RecordingRecord, RecordingState, Refusal, RequestOutcome, Role,
};
use crate::directory::UserId;

/// Where a leg's originate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Originate {
    /// No originate to wait for: an inbound caller, or a restored leg that had answered.
    NotSent,
    /// Sent (answered or not), no OriginateResponse yet; also a restored leg that
    /// never answered: its OriginateResponse may still come.
    Waiting,
    Succeeded,
    Failed,
}

impl Originate {
    /// Nothing more will come from the originate itself.
    pub(super) fn resolved(self) -> bool {
        matches!(
            self,
            Originate::NotSent | Originate::Succeeded | Originate::Failed
        )
    }
}

/// One half of a leg's channel (the leg's uniqueid, or the `;2` half of a Local).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Half {
    pub(super) seen: bool,
    pub(super) hung: bool,
}

/// Who asked for a leg's hangup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ApiHangup {
    Excluded,
    Ended,
    /// A player or stream leg's stop.
    Stopped,
    /// A player leg replaced by the next play.
    Replaced,
}

#[derive(Debug, Clone)]
pub(super) struct Leg {
    pub(super) rec: LegRecord,
    /// The record as last emitted (`None`: never emitted).
    pub(super) recorded: Option<LegRecord>,
    pub(super) originate: Originate,
    pub(super) main: Half,
    pub(super) other: Half,
    pub(super) api: Option<ApiHangup>,
    /// A hold was asked in this process (and not refused) and no ConfbridgeJoin came
    /// since: a ConfbridgeLeave now is the pause, not the leg leaving. (A `paused` leg
    /// is read the same way whatever this says.)
    pub(super) pausing: bool,
    /// In the conference: ConfbridgeJoin seen and no ConfbridgeLeave since.
    pub(super) in_bridge: bool,
    /// On music: MusicOnHoldStart seen (or the leg found in `MusicOnHold`, or restored
    /// paused) and no ConfbridgeJoin since. Until then the hold's Redirect is still under
    /// way and a second Redirect is refused ("channel not up").
    pub(super) on_hold: bool,
    /// When this process last sent the leg's hold Redirect.
    pub(super) hold_sent_at: Option<DateTime<Utc>>,
    /// An unpause waiting for the leg to reach the hold: its operation (already counted
    /// as waiting for one request) and when its hold was sent.
    pub(super) rejoin_after_hold: Option<(super::OpId, DateTime<Utc>)>,
    /// The API's hangup found no channel yet: send it again when the channel appears.
    pub(super) rehangup: bool,
    /// Hangups re-sent at once after a refusal (bounded, so a channel whose Hangup
    /// event is in flight cannot make a loop).
    pub(super) retries: u8,
    /// A leg that ended `refused` whose channel showed up anyway (an `Unreachable`
    /// originate the PBX did act on) was hung up once.
    pub(super) ghost_hung: bool,
    /// When every seen half was hung up, and the last Hangup's cause.
    pub(super) gone_at: Option<DateTime<Utc>>,
    pub(super) gone_cause: Option<u32>,
}

impl Leg {
    pub(super) fn new(rec: LegRecord, originate: Originate) -> Leg {
        Leg {
            rec,
            recorded: None,
            originate,
            main: Half::default(),
            other: Half::default(),
            api: None,
            pausing: false,
            in_bridge: false,
            on_hold: false,
            hold_sent_at: None,
            rejoin_after_hold: None,
            rehangup: false,
            retries: 0,
            ghost_hung: false,
            gone_at: None,
            gone_cause: None,
        }
    }

    /// A leg read back from the store: it is already durable.
    pub(super) fn restored(rec: LegRecord, ending: bool) -> Leg {
        let live = rec.state.is_live();
        let answered = rec.answered_at.is_some() || rec.joined_at.is_some();
        let originate = if !live || answered || rec.role == Role::Caller {
            Originate::NotSent
        } else {
            Originate::Waiting
        };
        // A live leg's channel is assumed to exist (the reconciliation corrects it); an
        // ended leg's is assumed gone.
        let main = Half {
            seen: true,
            hung: !live,
        };
        let other = Half {
            seen: rec.other_uniqueid.is_some(),
            hung: !live,
        };
        let mut leg = Leg::new(rec.clone(), originate);
        leg.recorded = Some(rec);
        leg.main = main;
        leg.other = other;
        leg.api = ending.then_some(ApiHangup::Ended);
        leg.in_bridge = leg.rec.state == LegState::Joined;
        // A paused leg stored is long past its hold's Redirect.
        leg.on_hold = leg.rec.state == LegState::Paused;
        leg
    }

    pub(super) fn half_mut(&mut self, main: bool) -> &mut Half {
        if main {
            &mut self.main
        } else {
            &mut self.other
        }
    }

    pub(super) fn is_live(&self) -> bool {
        self.rec.state.is_live()
    }

    pub(super) fn answered(&self) -> bool {
        self.rec.answered_at.is_some() || self.rec.joined_at.is_some()
    }

    fn seen_halves(&self) -> impl Iterator<Item = Half> {
        [self.main, self.other].into_iter().filter(|h| h.seen)
    }

    /// At least one half was seen and every seen half is hung up: the channel is gone.
    pub(super) fn halves_gone(&self) -> bool {
        self.seen_halves().next().is_some() && self.seen_halves().all(|h| h.hung)
    }

    /// Nothing left of the leg on the PBX: its state is final and no seen half is up.
    pub(super) fn is_gone(&self) -> bool {
        !self.is_live() && self.seen_halves().all(|h| h.hung)
    }

    /// Marks every half hung up (the leg is known gone).
    pub(super) fn forget_channel(&mut self) {
        self.main.hung = true;
        self.other.hung = true;
    }

    /// How a leg the API hung up, or that hung up, ends: `answered` legs end `excluded` /
    /// `ended` / `hangup`; unanswered ones the API hung up are `cancelled`.
    pub(super) fn end_reason(&self, answered: bool) -> EndReason {
        match (self.api, answered) {
            (None, _) => EndReason::Hangup,
            (Some(_), false) => EndReason::Cancelled,
            (Some(ApiHangup::Excluded), true) => EndReason::Excluded,
            (Some(ApiHangup::Ended), true) => EndReason::Ended,
            (Some(ApiHangup::Stopped), true) => EndReason::Stopped,
            (Some(ApiHangup::Replaced), true) => EndReason::Replaced,
        }
    }

    pub(super) fn end(&mut self, state: LegState, reason: EndReason, at: DateTime<Utc>) {
        self.rec.state = state;
        self.rec.end_reason = Some(reason);
        if self.rec.ended_at.is_none() {
            self.rec.ended_at = Some(at);
        }
    }

    /// After any change: a live leg that answered and whose channel is gone ends. An
    /// unanswered one waits for its OriginateResponse to classify it (or for the
    /// fallback, [`Leg::classify_by_cause`]).
    pub(super) fn settle(&mut self, now: DateTime<Utc>) {
        if !self.is_live() || !self.halves_gone() {
            return;
        }
        let at = self.gone_at.unwrap_or(now);
        if !self.answered() {
            return;
        }
        let reason = self.end_reason(true);
        self.end(LegState::Left, reason, at);
        if self.rec.hangup_cause.is_none() {
            self.rec.hangup_cause = self.gone_cause;
        }
    }

    /// An unanswered leg whose channel is gone and whose OriginateResponse never came:
    /// cancelled if the API hung it up, else the Hangup cause decides (17 busy, 18 and
    /// 19 no answer, 34 congestion, anything else failed).
    pub(super) fn classify_by_cause(&mut self, at: DateTime<Utc>) {
        self.originate = Originate::Failed;
        if self.api.is_some() {
            self.end(LegState::Left, EndReason::Cancelled, at);
        } else {
            let state = match self.gone_cause {
                Some(17) => LegState::Busy,
                Some(18 | 19) => LegState::NoAnswer,
                Some(34) => LegState::Congestion,
                _ => LegState::Failed,
            };
            self.end(state, EndReason::Hangup, at);
        }
        if self.rec.hangup_cause.is_none() {
            self.rec.hangup_cause = self.gone_cause;
        }
    }
}

/// A failed OriginateResponse's reason as the leg's state.
pub(super) fn state_from_reason(reason: u32) -> LegState {
    match reason {
        5 => LegState::Busy,
        3 => LegState::NoAnswer,
        8 => LegState::Congestion,
        _ => LegState::Failed,
    }
}

/// A recording with the record as last emitted.
#[derive(Debug, Clone)]
pub(super) struct Recording {
    pub(super) rec: RecordingRecord,
    pub(super) recorded: Option<RecordingRecord>,
}

/// A play or stream start waiting for its leg to join.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiter {
    pub(super) op: OpId,
    pub(super) leg: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Room {
    pub(super) call: CallRecord,
    /// The call record as last emitted (`None`: never emitted).
    pub(super) recorded: Option<CallRecord>,
    pub(super) legs: BTreeMap<u32, Leg>,
    /// The `call/end` operations waiting for the call to close.
    pub(super) end_ops: Vec<OpId>,
    /// When `call/end` began (for a call restored as ending: the first tick after).
    pub(super) end_started: Option<DateTime<Utc>>,
    /// The call's recordings, by number.
    pub(super) recordings: BTreeMap<u32, Recording>,
    pub(super) waiters: Vec<Waiter>,
}

impl Room {
    pub(super) fn new(call: CallRecord) -> Room {
        Room {
            call,
            recorded: None,
            legs: BTreeMap::new(),
            end_ops: Vec::new(),
            end_started: None,
            recordings: BTreeMap::new(),
            waiters: Vec::new(),
        }
    }

    /// The answers of the play and stream starts whose leg joined, or ended without
    /// joining (a leg the API hung up first, by a stop or the next play, was overtaken:
    /// its start is answered as carried out).
    pub(super) fn settle_waiters(&mut self) -> Vec<(OpId, Answer)> {
        let mut out = Vec::new();
        let legs = &self.legs;
        self.waiters.retain(|w| {
            let Some(leg) = legs.get(&w.leg) else {
                return false;
            };
            let done = leg.rec.joined_at.is_some() || !leg.is_live();
            if !done {
                return true;
            }
            let answer = if leg.rec.joined_at.is_some() || leg.api.is_some() {
                match leg.rec.role {
                    Role::Stream => Answer::Streaming {
                        media: leg.rec.media.clone().unwrap_or_default(),
                    },
                    _ => Answer::Playing { number: w.leg },
                }
            } else {
                let cause = leg
                    .rec
                    .hangup_cause
                    .map(|c| format!(", cause {c}"))
                    .unwrap_or_default();
                Answer::Refused(Refusal::LegFailed(format!(
                    "the {} leg ended {} before it joined the conference{cause}",
                    leg.rec.role.as_str(),
                    leg.rec.state.as_str()
                )))
            };
            out.push((w.op, answer));
            false
        });
        out
    }

    /// The recording Asterisk may be writing now.
    pub(super) fn live_recording(&mut self) -> Option<&mut Recording> {
        self.recordings
            .values_mut()
            .rev()
            .find(|r| r.rec.state.is_live())
    }

    /// The answer to a recording's `StartRecord` (`stop` false) or `StopRecord`.
    pub(super) fn recording_answered(
        &mut self,
        stop: bool,
        number: u32,
        outcome: RequestOutcome,
        now: DateTime<Utc>,
    ) -> Answer {
        let Some(r) = self.recordings.get_mut(&number) else {
            return Answer::Refused(Refusal::NotRecording);
        };
        let rec = &mut r.rec;
        match (stop, outcome) {
            (false, RequestOutcome::Accepted) => {
                if rec.state == RecordingState::Starting {
                    rec.state = RecordingState::Recording;
                }
                Answer::RecordingStarted(rec.clone())
            }
            (false, refused) => {
                let (message, refusal) = match refused {
                    RequestOutcome::Refused(m) => (m.clone(), Refusal::PbxRefused(m)),
                    _ => (
                        "no answer from the PBX".to_string(),
                        Refusal::PbxUnreachable,
                    ),
                };
                if rec.state == RecordingState::Starting {
                    rec.state = RecordingState::Failed;
                    rec.error = Some(message);
                }
                Answer::Refused(refusal)
            }
            // Unanswered: as far as medcall knows Asterisk still records.
            (true, RequestOutcome::Unreachable) => Answer::Refused(Refusal::PbxUnreachable),
            // Refused means there is nothing being recorded any more: stopped all the same.
            (true, _) => {
                stop_recording(rec, now);
                Answer::RecordingStopped(rec.clone())
            }
        }
    }

    pub(super) fn user_has_live_leg(&self, user: &UserId) -> bool {
        self.legs
            .values()
            .any(|l| l.is_live() && l.rec.user.as_ref() == Some(user))
    }

    /// The next leg's number, taken.
    pub(super) fn take_number(&mut self) -> u32 {
        let n = self.call.next_leg.max(1);
        self.call.next_leg = n.saturating_add(1);
        n
    }

    /// Opens or closes the dialog interval from the joined human legs now.
    pub(super) fn update_dialog(&mut self, now: DateTime<Utc>) {
        let joined = self
            .legs
            .values()
            .filter(|l| l.rec.role.is_human() && l.rec.state == LegState::Joined)
            .count();
        match (joined >= 2, self.call.dialog_since) {
            (true, None) => self.call.dialog_since = Some(now),
            (false, Some(since)) => {
                let ms = (now - since).num_milliseconds().max(0);
                self.call.dialog_ms = self.call.dialog_ms.saturating_add(ms);
                self.call.dialog_since = None;
            }
            _ => {}
        }
    }

    pub(super) fn all_gone(&self) -> bool {
        self.legs.values().all(Leg::is_gone)
    }

    /// The module doc's result rules, from the legs as they are.
    pub(super) fn result(&self) -> CallResult {
        let attempts: Vec<&LegRecord> = self
            .legs
            .values()
            .map(|l| &l.rec)
            .filter(|r| r.role.is_human())
            .collect();
        if attempts.iter().any(|r| r.joined_at.is_some()) {
            CallResult::Answered
        } else if attempts.is_empty() {
            CallResult::Cancelled
        } else if attempts.iter().all(|r| r.state == LegState::Busy) {
            CallResult::Busy
        } else if attempts
            .iter()
            .all(|r| matches!(r.state, LegState::Busy | LegState::NoAnswer))
        {
            CallResult::NoAnswer
        } else if attempts
            .iter()
            .all(|r| r.end_reason == Some(EndReason::Cancelled))
        {
            CallResult::Cancelled
        } else {
            CallResult::Failed
        }
    }

    /// Closes the call now: legs still live end (classified by their Hangup cause when
    /// their channel is gone, else `left`/`vanished`), the dialog interval closes, and
    /// every waiting `call/end` gets its answer (returned).
    pub(super) fn close(
        &mut self,
        now: DateTime<Utc>,
        forced: Option<CallResult>,
    ) -> Vec<(OpId, Answer)> {
        for r in self.recordings.values_mut() {
            // The conference is gone, and its recording with it: Asterisk closes the file.
            stop_recording(&mut r.rec, now);
        }
        for leg in self.legs.values_mut() {
            if leg.is_live() {
                if leg.halves_gone() && !leg.answered() {
                    let at = leg.gone_at.unwrap_or(now);
                    leg.classify_by_cause(at);
                } else {
                    leg.end(LegState::Left, EndReason::Vanished, now);
                }
            }
            leg.forget_channel();
        }
        self.update_dialog(now);
        let result = forced.unwrap_or_else(|| self.result());
        self.call.phase = CallPhase::Ended;
        self.call.ended_at = Some(now);
        self.call.result = Some(result);
        let answer = Answer::Ended {
            direction: self.call.direction,
            call_duration_s: round_seconds((now - self.call.started_at).num_milliseconds()),
            dialog_duration_s: round_seconds(self.call.dialog_ms),
            result,
        };
        self.end_ops
            .drain(..)
            .map(|op| (op, answer.clone()))
            .collect()
    }
}

/// A live recording becomes `stopped` at `now`; any other stays as it is.
fn stop_recording(rec: &mut RecordingRecord, now: DateTime<Utc>) {
    if rec.state.is_live() {
        rec.state = RecordingState::Stopped;
        rec.stopped_at = Some(now);
    }
}

/// Milliseconds as whole seconds, rounded to the nearest (half up); never negative.
pub(super) fn round_seconds(ms: i64) -> i64 {
    if ms <= 0 {
        0
    } else {
        ms.saturating_add(500) / 1000
    }
}
