//! The engine's rules as sentences: commands, observations and answers go in at fixed
//! clock values, so every state, count and duration asserted is exact.

use chrono::TimeZone;

use super::*;

fn thread() -> ThreadId {
    "aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap()
}
fn other_thread() -> ThreadId {
    "cccccccccccccccccccccccc".parse().unwrap()
}
fn team() -> TeamId {
    "bbbbbbbbbbbbbbbbbbbbbbbb".parse().unwrap()
}
fn user(n: u32) -> UserId {
    format!("{n:024x}").parse().unwrap()
}
/// `s` seconds after a fixed origin.
fn at(s: i64) -> DateTime<Utc> {
    at_ms(s * 1000)
}
fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
}
/// User `n` reached through a Local channel (two halves).
fn local(n: u32) -> Invitee {
    Invitee {
        user: user(n),
        endpoint: format!("Local/{}@dial-user/n", user(n)).parse().unwrap(),
    }
}
/// User `n` reached through a plain SIP channel (one half).
fn sip(n: u32) -> Invitee {
    Invitee {
        user: user(n),
        endpoint: format!("PJSIP/10{n}").parse().unwrap(),
    }
}

fn sends(effects: &[Effect]) -> Vec<(RequestId, Request)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { id, request } => Some((*id, request.clone())),
            _ => None,
        })
        .collect()
}
fn requests(effects: &[Effect]) -> Vec<Request> {
    sends(effects).into_iter().map(|(_, r)| r).collect()
}
fn replies(effects: &[Effect]) -> Vec<(OpId, Answer)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { op, answer } => Some((*op, answer.clone())),
            _ => None,
        })
        .collect()
}
fn answers(effects: &[Effect]) -> Vec<Answer> {
    replies(effects).into_iter().map(|(_, a)| a).collect()
}
fn leg_records(effects: &[Effect]) -> Vec<LegRecord> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(Change::Leg(l)) => Some(l.clone()),
            _ => None,
        })
        .collect()
}
fn call_records(effects: &[Effect]) -> Vec<CallRecord> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(Change::Call(c)) => Some(c.clone()),
            _ => None,
        })
        .collect()
}
fn hangups(effects: &[Effect]) -> Vec<String> {
    requests(effects)
        .into_iter()
        .filter_map(|r| match r {
            Request::Hangup { uniqueid } => Some(uniqueid),
            _ => None,
        })
        .collect()
}

/// Effects of a step come as records, then sends, then replies.
fn assert_ordered(effects: &[Effect]) {
    let rank = |e: &Effect| match e {
        Effect::Record(Change::Call(_)) => 0,
        Effect::Record(Change::Leg(_) | Change::Recording(_)) => 1,
        Effect::Send { .. } => 2,
        Effect::Reply { .. } => 3,
    };
    let ranks: Vec<i32> = effects.iter().map(rank).collect();
    let mut sorted = ranks.clone();
    sorted.sort();
    assert_eq!(ranks, sorted, "effects out of order: {effects:#?}");
}

fn ended(call: i64, dialog: i64, result: CallResult) -> Answer {
    Answer::Ended {
        direction: Direction::Outbound,
        call_duration_s: call,
        dialog_duration_s: dialog,
        result,
    }
}

/// An engine, a thread, and the bookkeeping of a test.
struct Rig {
    engine: Engine,
    next_op: u64,
    /// Every effect so far, in order.
    log: Vec<Effect>,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            engine: Engine::new(Settings::default()),
            next_op: 0,
            log: Vec::new(),
        }
    }

    /// A rig whose thread has an outbound call started at `at(0)`.
    fn started() -> Rig {
        let mut rig = Rig::new();
        rig.start(at(0));
        rig
    }

    fn keep(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        assert_ordered(&effects);
        self.log.extend(effects.iter().cloned());
        effects
    }

    fn cmd(&mut self, command: Command, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.next_op += 1;
        let op = OpId(self.next_op);
        let effects = self.engine.command(op, command, now);
        (op, self.keep(effects))
    }
    fn obs(&mut self, observation: Observation, now: DateTime<Utc>) -> Vec<Effect> {
        let effects = self.engine.observe(observation, now);
        self.keep(effects)
    }
    fn answer(
        &mut self,
        id: RequestId,
        outcome: RequestOutcome,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let effects = self.engine.answered(id, outcome, now);
        self.keep(effects)
    }
    fn tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        let effects = self.engine.tick(now);
        self.keep(effects)
    }
    /// Answers every request of `effects` with `Accepted`; returns what that produced.
    fn accept_all(&mut self, effects: &[Effect], now: DateTime<Utc>) -> Vec<Effect> {
        let mut out = Vec::new();
        for (id, _) in sends(effects) {
            out.extend(self.answer(id, RequestOutcome::Accepted, now));
        }
        out
    }

    fn start(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        self.cmd(
            Command::Start {
                thread: thread(),
                team: team(),
                direction: Direction::Outbound,
            },
            now,
        )
        .1
    }
    fn invite(&mut self, invitees: Vec<Invitee>, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::Invite {
                thread: thread(),
                invitees,
            },
            now,
        )
    }
    /// Invites and accepts every originate: returns the invite's answer.
    fn invite_accepted(&mut self, invitees: Vec<Invitee>, now: DateTime<Utc>) -> Vec<Answer> {
        let (_, effects) = self.invite(invitees, now);
        let out = self.accept_all(&effects, now);
        answers(&out)
    }
    fn exclude(&mut self, users: Vec<UserId>, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::Exclude {
                thread: thread(),
                users,
            },
            now,
        )
    }
    fn pause(&mut self, users: Vec<UserId>, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::Pause {
                thread: thread(),
                users,
            },
            now,
        )
    }
    fn unpause(&mut self, users: Vec<UserId>, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::Unpause {
                thread: thread(),
                users,
            },
            now,
        )
    }
    fn end(&mut self, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(Command::End { thread: thread() }, now)
    }

    fn key(&self) -> CallKey {
        self.engine.active_call(&thread()).unwrap().key.clone()
    }
    fn uid(&self, n: u32) -> String {
        format!("{}-{n}", self.key())
    }
    fn leg(&self, n: u32) -> LegRecord {
        self.engine
            .call_legs(&thread())
            .into_iter()
            .find(|l| l.number == n)
            .cloned()
            .unwrap_or_else(|| panic!("no leg {n}"))
    }
    /// The latest record of leg `n` written so far (also after the call closed).
    fn recorded_leg(&self, n: u32) -> LegRecord {
        leg_records(&self.log)
            .into_iter()
            .rev()
            .find(|l| l.number == n)
            .unwrap()
    }
    fn recorded_call(&self) -> CallRecord {
        call_records(&self.log).into_iter().last().unwrap()
    }

    fn newchannel(&mut self, n: u32, now: DateTime<Utc>) -> Vec<Effect> {
        let uniqueid = self.uid(n);
        self.obs(
            Observation::Newchannel {
                channel: format!("Local/{n}@dial-user-0000;1"),
                uniqueid,
            },
            now,
        )
    }
    fn newstate(&mut self, n: u32, state: ChannelState, now: DateTime<Utc>) -> Vec<Effect> {
        let uniqueid = self.uid(n);
        self.obs(Observation::Newstate { uniqueid, state }, now)
    }
    fn response(&mut self, n: u32, success: bool, reason: u32, now: DateTime<Utc>) -> Vec<Effect> {
        let uniqueid = self.uid(n);
        self.obs(
            Observation::OriginateResponse {
                uniqueid,
                success,
                reason,
                channel: success.then(|| format!("Local/{n}@dial-user-0000;1")),
            },
            now,
        )
    }
    fn join(&mut self, n: u32, now: DateTime<Utc>) -> Vec<Effect> {
        let uniqueid = self.uid(n);
        self.obs(
            Observation::ConfbridgeJoin {
                conference: thread().to_string(),
                uniqueid,
                channel: format!("Local/{n}@dial-user-0000;1"),
            },
            now,
        )
    }
    fn leave(&mut self, n: u32, now: DateTime<Utc>) -> Vec<Effect> {
        let uniqueid = self.uid(n);
        self.obs(
            Observation::ConfbridgeLeave {
                conference: thread().to_string(),
                uniqueid,
            },
            now,
        )
    }
    /// The leg's channel answers and joins: Newchannel, OriginateResponse success, join.
    fn answers_and_joins(&mut self, n: u32, now: DateTime<Utc>) {
        self.newchannel(n, now);
        self.response(n, true, 4, now);
        self.join(n, now);
    }
    /// Both halves of leg `n` (a Local) hang up with `cause`.
    fn hangup(&mut self, n: u32, cause: u32, now: DateTime<Utc>) -> Vec<Effect> {
        let uniqueid = self.uid(n);
        let mut out = self.obs(
            Observation::Hangup {
                uniqueid: format!("{uniqueid}-2"),
                cause,
            },
            now,
        );
        out.extend(self.obs(Observation::Hangup { uniqueid, cause }, now));
        out
    }
}

#[test]
fn start_creates_an_active_call_recorded_before_its_answer() {
    let mut rig = Rig::new();
    let effects = rig.start(at_ms(1234));
    let call = rig.engine.active_call(&thread()).unwrap().clone();
    assert_eq!(call.phase, CallPhase::Active);
    assert_eq!(call.key.started_ms, at_ms(1234).timestamp_millis());
    assert_eq!(call.next_leg, 1);
    assert_eq!(call.started_at, at_ms(1234));
    assert_eq!(
        effects,
        vec![
            Effect::Record(Change::Call(call)),
            Effect::Reply {
                op: OpId(1),
                answer: Answer::Started {
                    direction: Direction::Outbound
                }
            }
        ]
    );
}

#[test]
fn start_is_refused_while_the_thread_has_an_active_or_ending_call() {
    let mut rig = Rig::started();
    assert_eq!(
        answers(&rig.start(at(1))),
        vec![Answer::Refused(Refusal::AlreadyActive)]
    );
    let _ = rig.invite_accepted(vec![local(1)], at(1));
    rig.end(at(2));
    assert_eq!(
        answers(&rig.start(at(3))),
        vec![Answer::Refused(Refusal::AlreadyActive)]
    );
}

#[test]
fn commands_without_an_active_call_are_refused_no_active_call() {
    let mut rig = Rig::new();
    let commands = [
        Command::Invite {
            thread: thread(),
            invitees: vec![local(1)],
        },
        Command::Exclude {
            thread: thread(),
            users: vec![user(1)],
        },
        Command::Pause {
            thread: thread(),
            users: vec![user(1)],
        },
        Command::Unpause {
            thread: thread(),
            users: vec![user(1)],
        },
        Command::End { thread: thread() },
    ];
    for command in commands {
        let (_, effects) = rig.cmd(command.clone(), at(0));
        assert_eq!(
            effects,
            vec![Effect::Reply {
                op: OpId(rig.next_op),
                answer: Answer::Refused(Refusal::NoActiveCall)
            }],
            "{command:?}"
        );
    }
}

#[test]
fn invite_originates_one_numbered_leg_per_distinct_user_recorded_before_the_originate() {
    let mut rig = Rig::started();
    let (_, effects) = rig.invite(vec![local(1), sip(2), local(1)], at(1));
    let key = rig.key().to_string();
    let legs = leg_records(&effects);
    assert_eq!(legs.len(), 2, "the duplicate counts once");
    let first = legs.first().unwrap();
    assert_eq!(first.number, 1);
    assert_eq!(first.uniqueid, format!("{key}-1"));
    assert_eq!(first.other_uniqueid, Some(format!("{key}-1-2")));
    assert_eq!(first.dial, format!("Local/{}@dial-user/n", user(1)));
    assert_eq!(first.role, Role::Participant);
    assert_eq!(first.user, Some(user(1)));
    assert_eq!(first.state, LegState::Dialing);
    assert_eq!(first.created_at, at(1));
    let second = legs.get(1).unwrap();
    assert_eq!(second.uniqueid, format!("{key}-2"));
    assert_eq!(second.other_uniqueid, None, "a SIP channel has one half");
    assert_eq!(
        requests(&effects),
        vec![
            Request::Originate {
                leg: Box::new(first.clone()),
                timeout: Duration::from_secs(30)
            },
            Request::Originate {
                leg: Box::new(second.clone()),
                timeout: Duration::from_secs(30)
            }
        ]
    );
    assert_eq!(call_records(&effects).last().unwrap().next_leg, 3);
    assert!(answers(&effects).is_empty(), "the answer waits for the PBX");
}

#[test]
fn invite_counts_only_the_originates_the_pbx_accepted() {
    let mut rig = Rig::started();
    let (op, effects) = rig.invite(vec![local(1), local(2), local(3)], at(1));
    let ids: Vec<RequestId> = sends(&effects).into_iter().map(|(id, _)| id).collect();
    let [a, b, c] = ids.as_slice() else { panic!() };
    assert!(rig.answer(*a, RequestOutcome::Accepted, at(1)).is_empty());
    let refused = rig.answer(
        *b,
        RequestOutcome::Refused("Extension does not exist.".into()),
        at(2),
    );
    assert_eq!(
        leg_records(&refused).len(),
        1,
        "the refused leg is recorded failed"
    );
    assert!(answers(&refused).is_empty());
    let last = rig.answer(*c, RequestOutcome::Unreachable, at(2));
    assert_eq!(replies(&last), vec![(op, Answer::Invited { count: 1 })]);
    for n in [2, 3] {
        let leg = rig.leg(n);
        assert_eq!(leg.state, LegState::Failed);
        assert_eq!(leg.end_reason, Some(EndReason::Refused));
        assert_eq!(leg.ended_at, Some(at(2)));
    }
    assert_eq!(rig.leg(1).state, LegState::Dialing);
}

#[test]
fn invite_with_every_originate_unreachable_is_refused_and_leaves_nothing_dialing() {
    let mut rig = Rig::started();
    let (_, effects) = rig.invite(vec![local(1), local(2)], at(1));
    let mut out = Vec::new();
    for (id, _) in sends(&effects) {
        out.extend(rig.answer(id, RequestOutcome::Unreachable, at(2)));
    }
    assert_eq!(
        answers(&out),
        vec![Answer::Refused(Refusal::PbxUnreachable)]
    );
    for n in [1, 2] {
        assert_eq!(rig.recorded_leg(n).state, LegState::Failed);
        assert_eq!(rig.recorded_leg(n).end_reason, Some(EndReason::Refused));
    }
}

#[test]
fn a_user_already_ringing_is_not_dialled_again_and_the_invite_answers_at_once() {
    let mut rig = Rig::started();
    assert_eq!(
        rig.invite_accepted(vec![local(1)], at(1)),
        vec![Answer::Invited { count: 1 }]
    );
    rig.newstate(1, ChannelState::Ringing, at(2));
    assert_eq!(rig.leg(1).state, LegState::Ringing);
    let (_, effects) = rig.invite(vec![local(1)], at(3));
    assert!(requests(&effects).is_empty());
    assert_eq!(answers(&effects), vec![Answer::Invited { count: 0 }]);
}

#[test]
fn a_user_whose_attempt_failed_can_be_invited_again() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(1));
    rig.response(1, false, 5, at(2));
    assert_eq!(
        rig.invite_accepted(vec![local(1)], at(3)),
        vec![Answer::Invited { count: 1 }]
    );
    assert_eq!(rig.leg(2).user, Some(user(1)));
}

#[test]
fn an_invite_while_the_call_ends_is_refused_ending() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(1));
    rig.end(at(2));
    for command in [
        Command::Invite {
            thread: thread(),
            invitees: vec![local(2)],
        },
        Command::Pause {
            thread: thread(),
            users: vec![user(1)],
        },
        Command::AdmitCaller {
            thread: thread(),
            team: team(),
            uniqueid: "pbx-1".into(),
            channel: "PJSIP/trunk-1".into(),
        },
    ] {
        let (_, effects) = rig.cmd(command, at(3));
        assert_eq!(answers(&effects), vec![Answer::Refused(Refusal::Ending)]);
    }
}

/// The leg after `events` (names of the steps, applied in order to leg 1).
fn leg_after(events: &[&str]) -> LegRecord {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(1));
    for (i, event) in events.iter().enumerate() {
        let now = at(2 + i64::try_from(i).unwrap());
        match *event {
            "newchannel" => drop(rig.newchannel(1, now)),
            "response" => drop(rig.response(1, true, 4, now)),
            "join" => drop(rig.join(1, now)),
            "up" => drop(rig.newstate(1, ChannelState::Up, now)),
            other => panic!("{other}"),
        }
    }
    rig.leg(1)
}

#[test]
fn originate_response_before_or_after_the_channel_events_gives_the_same_leg() {
    let after = leg_after(&["newchannel", "join", "response"]);
    let before = leg_after(&["response", "newchannel", "join"]);
    assert_eq!(after.state, LegState::Joined);
    assert_eq!(after.joined_at, Some(at(3)));
    assert_eq!(after.answered_at, Some(at(3)), "the join shows it answered");
    assert_eq!(before.state, LegState::Joined);
    assert_eq!(before.answered_at, Some(at(2)));
    assert_eq!(before.channel, after.channel);
    assert!(after.channel.is_some());
    let up_first = leg_after(&["newchannel", "up", "response", "join"]);
    assert_eq!(
        up_first.answered_at,
        Some(at(3)),
        "Newstate Up is the answer"
    );
    assert_eq!(up_first.joined_at, Some(at(5)));
}

#[test]
fn an_originate_response_before_the_originate_is_accepted_still_counts_it() {
    let mut rig = Rig::started();
    let (op, effects) = rig.invite(vec![local(1)], at(1));
    rig.response(1, true, 4, at(2));
    let (id, _) = sends(&effects).into_iter().next().unwrap();
    let out = rig.answer(id, RequestOutcome::Accepted, at(2));
    assert_eq!(replies(&out), vec![(op, Answer::Invited { count: 1 })]);
    assert_eq!(rig.leg(1).answered_at, Some(at(2)));
}

#[test]
fn failure_reasons_give_the_leg_state_and_the_calls_result() {
    let table = [
        (5, LegState::Busy, CallResult::Busy),
        (3, LegState::NoAnswer, CallResult::NoAnswer),
        (8, LegState::Congestion, CallResult::Failed),
        (0, LegState::Failed, CallResult::Failed),
        (1, LegState::Failed, CallResult::Failed),
    ];
    for (reason, state, result) in table {
        let mut rig = Rig::started();
        let _ = rig.invite_accepted(vec![local(1)], at(1));
        rig.newchannel(1, at(1));
        rig.response(1, false, reason, at(4));
        let leg = rig.leg(1);
        assert_eq!(leg.state, state, "reason {reason}");
        assert_eq!(leg.hangup_cause, Some(reason));
        assert_eq!(leg.end_reason, Some(EndReason::Hangup));
        assert_eq!(leg.ended_at, Some(at(4)));
        rig.hangup(1, 17, at(5));
        assert_eq!(rig.leg(1).hangup_cause, Some(reason), "the reason stays");
        let (_, effects) = rig.end(at(6));
        assert_eq!(
            answers(&effects),
            vec![ended(6, 0, result)],
            "reason {reason}"
        );
    }
}

#[test]
fn the_result_weighs_every_attempt() {
    // (reasons of two attempts, result)
    let table = [
        ([5, 5], CallResult::Busy),
        ([5, 3], CallResult::NoAnswer),
        ([3, 3], CallResult::NoAnswer),
        ([5, 0], CallResult::Failed),
        ([3, 8], CallResult::Failed),
    ];
    for (reasons, result) in table {
        let mut rig = Rig::started();
        let _ = rig.invite_accepted(vec![local(1), local(2)], at(1));
        for (n, reason) in (1..).zip(reasons) {
            rig.response(n, false, reason, at(2));
        }
        let (_, effects) = rig.end(at(3));
        assert_eq!(answers(&effects), vec![ended(3, 0, result)], "{reasons:?}");
    }
}

#[test]
fn a_call_without_attempts_ends_cancelled_and_one_where_someone_joined_answered() {
    let mut rig = Rig::started();
    let (_, effects) = rig.end(at(4));
    assert_eq!(answers(&effects), vec![ended(4, 0, CallResult::Cancelled)]);
    assert!(rig.engine.active_call(&thread()).is_none());
    assert_eq!(rig.recorded_call().phase, CallPhase::Ended);
    assert_eq!(rig.recorded_call().result, Some(CallResult::Cancelled));
    assert_eq!(
        requests(&effects),
        vec![
            Request::KickAll { thread: thread() },
            Request::SweepAccount { thread: thread() }
        ],
        "helpers are hung up even without legs"
    );

    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(1));
    rig.response(2, false, 5, at(2));
    rig.hangup(1, 16, at(3));
    let (_, effects) = rig.end(at(4));
    assert_eq!(answers(&effects), vec![ended(4, 0, CallResult::Answered)]);
}

#[test]
fn newstate_ringing_moves_a_dialing_leg_to_ringing_only() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(1));
    let effects = rig.newstate(1, ChannelState::Ringing, at(2));
    assert_eq!(leg_records(&effects).len(), 1);
    assert_eq!(rig.leg(1).state, LegState::Ringing);
    rig.newstate(1, ChannelState::Up, at(3));
    assert_eq!(rig.leg(1).answered_at, Some(at(3)));
    rig.join(1, at(4));
    rig.newstate(1, ChannelState::Ringing, at(5));
    assert_eq!(rig.leg(1).state, LegState::Joined);
    let quiet = rig.newstate(1, ChannelState::Other, at(6));
    assert!(quiet.is_empty(), "nothing changed, nothing recorded");
}

#[test]
fn end_waits_for_every_leg_then_answers_with_exact_durations() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(1));
    rig.answers_and_joins(2, at(11));
    let dialog = rig.recorded_call().dialog_since;
    assert_eq!(dialog, Some(at(11)), "two humans joined");
    rig.leave(1, at(18));
    assert_eq!(rig.recorded_call().dialog_ms, 7000);
    assert_eq!(rig.recorded_call().dialog_since, None);
    rig.hangup(1, 16, at(18));
    let (op, effects) = rig.end(at(20));
    assert_eq!(rig.recorded_call().phase, CallPhase::Ending);
    assert_eq!(
        requests(&effects),
        vec![
            Request::Hangup {
                uniqueid: rig.uid(2)
            },
            Request::KickAll { thread: thread() },
            Request::SweepAccount { thread: thread() },
        ]
    );
    assert!(answers(&effects).is_empty());
    assert!(answers(&rig.accept_all(&effects, at(20))).is_empty());
    assert!(
        answers(&rig.leave(2, at(20))).is_empty(),
        "its channel is still up"
    );
    let uid = rig.uid(2);
    assert!(
        answers(&rig.obs(
            Observation::Hangup {
                uniqueid: format!("{uid}-2"),
                cause: 16
            },
            at_ms(20_400)
        ))
        .is_empty()
    );
    let last = rig.obs(
        Observation::Hangup {
            uniqueid: uid,
            cause: 16,
        },
        at_ms(20_600),
    );
    assert_eq!(
        replies(&last),
        vec![(op, ended(21, 7, CallResult::Answered))]
    );
    let call = rig.recorded_call();
    assert_eq!(call.phase, CallPhase::Ended);
    assert_eq!(call.ended_at, Some(at_ms(20_600)));
    assert_eq!(call.result, Some(CallResult::Answered));
    let first = rig.recorded_leg(1);
    assert_eq!(
        (first.state, first.end_reason, first.ended_at),
        (LegState::Left, Some(EndReason::Hangup), Some(at(18)))
    );
    let second = rig.recorded_leg(2);
    assert_eq!(
        (second.state, second.end_reason, second.hangup_cause),
        (LegState::Left, Some(EndReason::Ended), Some(16))
    );
    assert!(rig.engine.active_call(&thread()).is_none());
    assert!(rig.engine.call_legs(&thread()).is_empty());
}

#[test]
fn an_open_dialog_interval_closes_at_the_end() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(2));
    rig.answers_and_joins(2, at(3));
    let (op, effects) = rig.end(at(10));
    rig.accept_all(&effects, at(10));
    rig.hangup(1, 16, at(11));
    let last = rig.hangup(2, 16, at(12));
    // The dialog ran from 3 s until the first leg's channel was gone at 11 s.
    assert_eq!(
        replies(&last),
        vec![(op, ended(12, 8, CallResult::Answered))]
    );
}

#[test]
fn an_end_while_the_call_ends_gets_the_same_answer() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(1));
    let (first, _) = rig.end(at(2));
    let (second, effects) = rig.end(at(3));
    assert!(requests(&effects).is_empty(), "nothing sent twice");
    let last = rig.hangup(1, 16, at(4));
    assert_eq!(
        replies(&last),
        vec![
            (first, ended(4, 0, CallResult::Answered)),
            (second, ended(4, 0, CallResult::Answered))
        ]
    );
}

#[test]
fn the_end_deadline_closes_legs_still_unaccounted_for_as_vanished() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(1));
    let (op, effects) = rig.end(at(5));
    for (id, _) in sends(&effects) {
        rig.answer(id, RequestOutcome::Unreachable, at(5));
    }
    assert!(rig.tick(at_ms(14_999)).is_empty());
    let closed = rig.tick(at(15));
    assert_eq!(
        replies(&closed),
        vec![(op, ended(15, 0, CallResult::Answered))]
    );
    let leg = rig.recorded_leg(1);
    assert_eq!(
        (leg.state, leg.end_reason, leg.ended_at),
        (LegState::Left, Some(EndReason::Vanished), Some(at(15)))
    );
    assert!(rig.engine.active_call(&thread()).is_none());
    assert!(rig.tick(at(16)).is_empty());
}

#[test]
fn exclude_of_a_ringing_leg_cancels_it_and_counts_the_user() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.newchannel(1, at(1));
    rig.newstate(1, ChannelState::Ringing, at(1));
    let (op, effects) = rig.exclude(vec![user(1), user(1), user(9)], at(2));
    assert_eq!(hangups(&effects), vec![rig.uid(1)]);
    let out = rig.accept_all(&effects, at(2));
    assert_eq!(replies(&out), vec![(op, Answer::Excluded { count: 1 })]);
    rig.hangup(1, 16, at(3));
    assert_eq!(
        rig.leg(1).state,
        LegState::Ringing,
        "waits for the response"
    );
    rig.response(1, false, 0, at(3));
    let leg = rig.leg(1);
    assert_eq!(
        (leg.state, leg.end_reason, leg.ended_at),
        (LegState::Left, Some(EndReason::Cancelled), Some(at(3)))
    );
    assert_eq!(rig.leg(2).state, LegState::Dialing, "others are untouched");
}

#[test]
fn exclude_of_a_joined_leg_ends_it_excluded() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(1));
    let (_, effects) = rig.exclude(vec![user(1)], at(2));
    rig.accept_all(&effects, at(2));
    rig.leave(1, at(3));
    let leg = rig.leg(1);
    assert_eq!(
        (leg.state, leg.end_reason),
        (LegState::Left, Some(EndReason::Excluded))
    );
    rig.hangup(1, 16, at(3));
    assert_eq!(rig.leg(1).hangup_cause, Some(16));
    let (_, nobody) = rig.exclude(vec![user(1)], at(4));
    assert_eq!(answers(&nobody), vec![Answer::Excluded { count: 0 }]);
}

#[test]
fn an_exclude_refused_before_the_channel_exists_is_sent_again_when_it_appears() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    let (op, effects) = rig.exclude(vec![user(1)], at(1));
    let (id, _) = sends(&effects).into_iter().next().unwrap();
    let out = rig.answer(id, RequestOutcome::Refused("No such channel".into()), at(1));
    assert_eq!(replies(&out), vec![(op, Answer::Excluded { count: 1 })]);
    let appeared = rig.newchannel(1, at(2));
    assert_eq!(hangups(&appeared), vec![rig.uid(1)]);
    assert!(hangups(&rig.newchannel(1, at(2))).is_empty(), "once");
    rig.accept_all(&appeared, at(2));
    rig.hangup(1, 16, at(3));
    rig.response(1, false, 0, at(3));
    assert_eq!(rig.leg(1).end_reason, Some(EndReason::Cancelled));
}

#[test]
fn a_refused_hangup_of_a_channel_still_up_is_retried_a_bounded_number_of_times() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(1));
    let (_, mut effects) = rig.exclude(vec![user(1)], at(2));
    let mut sent = 0;
    while let Some((id, _)) = sends(&effects).into_iter().next() {
        sent += 1;
        assert!(sent < 10);
        effects = rig.answer(id, RequestOutcome::Refused("No such channel".into()), at(2));
    }
    assert_eq!(sent, 3, "the hangup and two retries");
}

#[test]
fn pause_holds_joined_users_and_a_leave_before_the_answer_is_the_pause() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2), local(3)], at(0));
    rig.answers_and_joins(1, at(1));
    rig.answers_and_joins(2, at(1));
    let (op, effects) = rig.pause(vec![user(1), user(3)], at(2));
    assert_eq!(
        requests(&effects),
        vec![Request::Hold {
            uniqueid: rig.uid(1)
        }],
        "user 3 is not joined"
    );
    let left = rig.leave(1, at(3));
    assert_eq!(rig.leg(1).state, LegState::Paused);
    assert_eq!(call_records(&left).last().unwrap().dialog_ms, 2000);
    rig.obs(
        Observation::MusicOnHoldStart {
            uniqueid: rig.uid(1),
        },
        at(3),
    );
    let out = rig.accept_all(&effects, at(3));
    assert_eq!(replies(&out), vec![(op, Answer::Paused { count: 1 })]);
    assert_eq!(rig.leg(1).state, LegState::Paused);
    assert_eq!(rig.leg(1).end_reason, None);
}

#[test]
fn a_hold_answered_before_the_leave_pauses_and_the_later_leave_keeps_it_paused() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(1));
    let (_, effects) = rig.pause(vec![user(1)], at(2));
    rig.accept_all(&effects, at(2));
    assert_eq!(rig.leg(1).state, LegState::Paused);
    rig.leave(1, at(2));
    assert_eq!(rig.leg(1).state, LegState::Paused);
}

#[test]
fn a_refused_hold_leaves_the_user_joined() {
    for outcome in [
        RequestOutcome::Refused("No such channel".into()),
        RequestOutcome::Unreachable,
    ] {
        let mut rig = Rig::started();
        let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
        rig.answers_and_joins(1, at(1));
        rig.answers_and_joins(2, at(1));
        let (op, effects) = rig.pause(vec![user(1)], at(2));
        let (id, _) = sends(&effects).into_iter().next().unwrap();
        let out = rig.answer(id, outcome.clone(), at(2));
        let expected = if outcome == RequestOutcome::Unreachable {
            Answer::Refused(Refusal::PbxUnreachable)
        } else {
            Answer::Paused { count: 0 }
        };
        assert_eq!(replies(&out), vec![(op, expected)]);
        assert_eq!(rig.leg(1).state, LegState::Joined);
        rig.leave(1, at(3));
        assert_eq!(
            rig.leg(1).state,
            LegState::Left,
            "no pause pending: a real leave"
        );
    }
}

#[test]
fn unpause_rejoins_paused_users_who_count_as_joined_once_back_in_the_conference() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(0));
    rig.answers_and_joins(2, at(0));
    let (_, effects) = rig.pause(vec![user(1)], at(2));
    rig.accept_all(&effects, at(2));
    rig.leave(1, at(2));
    let (op, effects) = rig.unpause(vec![user(1), user(2)], at(6));
    assert_eq!(
        requests(&effects),
        vec![Request::Rejoin {
            uniqueid: rig.uid(1),
            thread: thread(),
            role: Role::Participant
        }]
    );
    let out = rig.accept_all(&effects, at(6));
    assert_eq!(replies(&out), vec![(op, Answer::Unpaused { count: 1 })]);
    assert_eq!(rig.leg(1).state, LegState::Paused, "until it joins");
    rig.obs(
        Observation::MusicOnHoldStop {
            uniqueid: rig.uid(1),
        },
        at(6),
    );
    rig.join(1, at(7));
    assert_eq!(rig.leg(1).state, LegState::Joined);
    assert_eq!(rig.leg(1).joined_at, Some(at(0)), "the first join stays");
    rig.leave(1, at(9));
    assert_eq!(rig.leg(1).state, LegState::Left);
    // Dialog: 0–2 s and 7–9 s; the paused time does not count.
    assert_eq!(rig.recorded_call().dialog_ms, 4000);
}

#[test]
fn end_racing_an_invite_hangs_up_the_leg_when_its_channel_appears() {
    let mut rig = Rig::started();
    let (invite, originates) = rig.invite(vec![local(1)], at(0));
    let (end, effects) = rig.end(at(1));
    let hangup = sends(&effects)
        .into_iter()
        .find(|(_, r)| matches!(r, Request::Hangup { .. }))
        .unwrap();
    // The originate is accepted after the end began; the hangup found no channel yet.
    let out = rig.accept_all(&originates, at(1));
    assert_eq!(replies(&out), vec![(invite, Answer::Invited { count: 1 })]);
    rig.answer(
        hangup.0,
        RequestOutcome::Refused("No such channel".into()),
        at(1),
    );
    let appeared = rig.newchannel(1, at(2));
    assert_eq!(hangups(&appeared), vec![rig.uid(1)]);
    rig.accept_all(&appeared, at(2));
    assert!(
        answers(&rig.hangup(1, 16, at(3))).is_empty(),
        "waits for the response"
    );
    let last = rig.response(1, false, 0, at(3));
    assert_eq!(
        replies(&last),
        vec![(end, ended(3, 0, CallResult::Cancelled))]
    );
    let leg = rig.recorded_leg(1);
    assert_eq!(
        (leg.state, leg.end_reason),
        (LegState::Left, Some(EndReason::Cancelled))
    );
}

#[test]
fn a_leg_that_joins_after_the_end_began_is_hung_up_at_once() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.newchannel(1, at(0));
    let (end, effects) = rig.end(at(1));
    rig.accept_all(&effects, at(1));
    rig.response(1, true, 4, at(1));
    let joined = rig.join(1, at(1));
    assert_eq!(hangups(&joined), vec![rig.uid(1)]);
    let last = rig.hangup(1, 16, at(2));
    assert_eq!(
        replies(&last),
        vec![(end, ended(2, 0, CallResult::Answered))]
    );
    assert_eq!(rig.recorded_leg(1).end_reason, Some(EndReason::Ended));
}

#[test]
fn a_local_leg_is_gone_only_when_both_halves_hung_up() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(0));
    let uid = rig.uid(1);
    rig.obs(
        Observation::Newchannel {
            uniqueid: format!("{uid}-2"),
            channel: "Local/x@dial-user-0000;2".into(),
        },
        at(0),
    );
    rig.obs(
        Observation::Hangup {
            uniqueid: format!("{uid}-2"),
            cause: 16,
        },
        at(4),
    );
    assert_eq!(rig.leg(1).state, LegState::Joined);
    rig.obs(
        Observation::Hangup {
            uniqueid: uid,
            cause: 16,
        },
        at(5),
    );
    let leg = rig.leg(1);
    assert_eq!(
        (leg.state, leg.end_reason, leg.ended_at, leg.hangup_cause),
        (
            LegState::Left,
            Some(EndReason::Hangup),
            Some(at(5)),
            Some(16)
        )
    );
}

#[test]
fn a_failure_response_for_a_leg_that_joined_does_not_undo_the_join() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.newchannel(1, at(0));
    rig.join(1, at(1));
    rig.response(1, false, 0, at(2));
    assert_eq!(rig.leg(1).state, LegState::Joined);
    rig.leave(1, at(3));
    rig.response(1, false, 0, at(4));
    assert_eq!(rig.leg(1).state, LegState::Left);
}

#[test]
fn without_an_originate_response_the_hangup_cause_classifies_the_attempt_after_the_deadline() {
    let table = [
        (17, LegState::Busy),
        (19, LegState::NoAnswer),
        (34, LegState::Congestion),
        (21, LegState::Failed),
    ];
    for (cause, state) in table {
        let mut rig = Rig::started();
        let _ = rig.invite_accepted(vec![local(1)], at(0));
        rig.newchannel(1, at(0));
        rig.hangup(1, cause, at(2));
        assert_eq!(
            rig.leg(1).state,
            LegState::Dialing,
            "waits for the response"
        );
        assert!(rig.tick(at(11)).is_empty());
        rig.tick(at(12));
        let leg = rig.leg(1);
        assert_eq!(leg.state, state, "cause {cause}");
        assert_eq!(leg.hangup_cause, Some(cause));
        assert_eq!(leg.ended_at, Some(at(2)));
        // A late response changes nothing.
        assert!(rig.response(1, false, 0, at(13)).is_empty());
    }
}

#[test]
fn events_of_unknown_channels_and_other_conferences_are_ignored() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    let noise = [
        Observation::Newchannel {
            uniqueid: "1700000000.12".into(),
            channel: "CBAnn/aaaa-00000001;1".into(),
        },
        Observation::ConfbridgeJoin {
            conference: thread().to_string(),
            uniqueid: "1700000000.12".into(),
            channel: "CBAnn/aaaa-00000001;1".into(),
        },
        Observation::ConfbridgeJoin {
            conference: other_thread().to_string(),
            uniqueid: rig.uid(1),
            channel: "Local/1;1".into(),
        },
        Observation::ConfbridgeLeave {
            conference: other_thread().to_string(),
            uniqueid: rig.uid(1),
        },
        Observation::Hangup {
            uniqueid: "nobody".into(),
            cause: 16,
        },
        Observation::OriginateResponse {
            uniqueid: "nobody".into(),
            success: true,
            reason: 4,
            channel: None,
        },
    ];
    for observation in noise {
        assert!(
            rig.obs(observation.clone(), at(1)).is_empty(),
            "{observation:?}"
        );
    }
    assert!(
        rig.answer(RequestId(999), RequestOutcome::Accepted, at(1))
            .is_empty()
    );
    assert_eq!(rig.leg(1).state, LegState::Dialing);
}

#[test]
fn admit_caller_creates_an_inbound_call_whose_caller_joins() {
    let mut rig = Rig::new();
    let (op, effects) = rig.cmd(
        Command::AdmitCaller {
            thread: thread(),
            team: team(),
            uniqueid: "1700000000.7".into(),
            channel: "PJSIP/trunk-00000007".into(),
        },
        at(0),
    );
    let call = call_records(&effects).pop().unwrap();
    assert_eq!(
        (call.direction, call.phase),
        (Direction::Inbound, CallPhase::Active)
    );
    let leg = leg_records(&effects).pop().unwrap();
    assert_eq!(leg.role, Role::Caller);
    assert_eq!(leg.uniqueid, "1700000000.7");
    assert_eq!(leg.other_uniqueid, None);
    assert_eq!(leg.answered_at, Some(at(0)));
    assert_eq!(leg.state, LegState::Dialing);
    assert_eq!(
        replies(&effects),
        vec![(
            op,
            Answer::Admitted {
                direction: Direction::Inbound,
                key: call.key.clone(),
            }
        )]
    );
    rig.obs(
        Observation::ConfbridgeJoin {
            conference: thread().to_string(),
            uniqueid: "1700000000.7".into(),
            channel: "PJSIP/trunk-00000007".into(),
        },
        at(1),
    );
    assert_eq!(rig.leg(1).state, LegState::Joined);
    let _ = rig.invite_accepted(vec![local(2)], at(1));
    rig.answers_and_joins(2, at(3));
    assert_eq!(
        rig.recorded_call().dialog_since,
        Some(at(3)),
        "a caller is human"
    );
    // The same caller admitted again is one leg.
    let (_, again) = rig.cmd(
        Command::AdmitCaller {
            thread: thread(),
            team: team(),
            uniqueid: "1700000000.7".into(),
            channel: "PJSIP/trunk-00000007".into(),
        },
        at(4),
    );
    assert_eq!(
        answers(&again),
        vec![Answer::Admitted {
            direction: Direction::Inbound,
            key: rig.recorded_call().key,
        }]
    );
    assert_eq!(rig.engine.call_legs(&thread()).len(), 2);
}

#[test]
fn admit_caller_into_an_active_outbound_call_adds_the_caller() {
    let mut rig = Rig::started();
    let (_, effects) = rig.cmd(
        Command::AdmitCaller {
            thread: thread(),
            team: team(),
            uniqueid: "1700000000.9".into(),
            channel: "PJSIP/trunk-00000009".into(),
        },
        at(2),
    );
    assert_eq!(
        answers(&effects),
        vec![Answer::Admitted {
            direction: Direction::Outbound,
            key: rig.recorded_call().key,
        }]
    );
    assert_eq!(rig.leg(1).role, Role::Caller);
    // A caller who hangs up before joining ends; with no join the call is not answered.
    rig.obs(
        Observation::Hangup {
            uniqueid: "1700000000.9".into(),
            cause: 16,
        },
        at(3),
    );
    assert_eq!(rig.leg(1).state, LegState::Left);
    let (_, effects) = rig.end(at(4));
    assert_eq!(answers(&effects), vec![ended(4, 0, CallResult::Failed)]);
}

/// A call stopped mid-dialog: two legs joined at 1 s and 2 s, records as stored.
fn stored_mid_dialog() -> (CallRecord, Vec<LegRecord>) {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(1));
    rig.answers_and_joins(2, at(2));
    let call = rig.recorded_call();
    assert_eq!(call.dialog_since, Some(at(2)));
    (call, vec![rig.recorded_leg(1), rig.recorded_leg(2)])
}

fn conference_channel(uniqueid: String) -> LiveChannel {
    LiveChannel {
        uniqueid,
        channel: "Local/x;1".into(),
        up: true,
        application: "ConfBridge".into(),
    }
}

#[test]
fn a_restored_call_keeps_its_dialog_time_across_a_daemon_restart() {
    let (call, legs) = stored_mid_dialog();
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call.clone(), legs)]);
    assert_eq!(rig.engine.active_call(&thread()), Some(&call));
    let channels = vec![
        conference_channel(rig.uid(1)),
        conference_channel(rig.uid(2)),
    ];
    let effects = rig.obs(
        Observation::Reconciled {
            channels,
            pbx_restarted: false,
        },
        at(30),
    );
    assert!(effects.is_empty(), "nothing changed: {effects:#?}");
    rig.hangup(1, 16, at(40));
    let (op, effects) = rig.end(at(41));
    rig.accept_all(&effects, at(41));
    let last = rig.hangup(2, 16, at(42));
    // Dialog from 2 s to 40 s, across the restart.
    assert_eq!(
        replies(&last),
        vec![(op, ended(42, 38, CallResult::Answered))]
    );
}

#[test]
fn a_reconciliation_closes_legs_gone_while_medcall_was_away() {
    let (call, legs) = stored_mid_dialog();
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    let effects = rig.obs(
        Observation::Reconciled {
            channels: vec![conference_channel(rig.uid(2))],
            pbx_restarted: false,
        },
        at(30),
    );
    let leg = rig.leg(1);
    assert_eq!(
        (leg.state, leg.end_reason, leg.ended_at),
        (LegState::Left, Some(EndReason::Vanished), Some(at(30)))
    );
    assert_eq!(rig.leg(2).state, LegState::Joined);
    let call = call_records(&effects).pop().unwrap();
    assert_eq!((call.dialog_ms, call.dialog_since), (28_000, None));
    assert_eq!(call.phase, CallPhase::Active, "the call goes on");
}

#[test]
fn a_reconciliation_reads_the_snapshot_into_the_legs() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2), local(3)], at(0));
    rig.answers_and_joins(2, at(1));
    let channels = vec![
        conference_channel(rig.uid(1)),
        LiveChannel {
            uniqueid: rig.uid(2),
            channel: "Local/2;1".into(),
            up: true,
            application: "MusicOnHold".into(),
        },
    ];
    rig.obs(
        Observation::Reconciled {
            channels,
            pbx_restarted: false,
        },
        at(5),
    );
    let first = rig.leg(1);
    assert_eq!(
        (first.state, first.joined_at, first.answered_at),
        (LegState::Joined, Some(at(5)), Some(at(5)))
    );
    assert_eq!(rig.leg(2).state, LegState::Paused);
    let third = rig.leg(3);
    assert_eq!(
        (third.state, third.end_reason),
        (LegState::Failed, Some(EndReason::Vanished)),
        "never answered"
    );
}

#[test]
fn a_pbx_restart_ends_every_call_failed_and_answers_a_pending_end() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(1));
    rig.answers_and_joins(2, at(2));
    let (op, _) = rig.end(at(3));
    let effects = rig.obs(
        Observation::Reconciled {
            channels: Vec::new(),
            pbx_restarted: true,
        },
        at(4),
    );
    assert_eq!(
        replies(&effects),
        vec![(op, ended(4, 2, CallResult::Failed))]
    );
    for n in [1, 2] {
        let leg = rig.recorded_leg(n);
        assert_eq!(
            (leg.state, leg.end_reason),
            (LegState::Left, Some(EndReason::PbxRestart))
        );
    }
    let call = rig.recorded_call();
    assert_eq!(
        (call.phase, call.result),
        (CallPhase::Ended, Some(CallResult::Failed))
    );
    assert!(rig.engine.active_call(&thread()).is_none());
}

#[test]
fn a_restored_ending_call_closes_when_its_last_leg_is_gone() {
    let (mut call, legs) = stored_mid_dialog();
    call.phase = CallPhase::Ending;
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    let reconciled = rig.obs(
        Observation::Reconciled {
            channels: vec![conference_channel(rig.uid(2))],
            pbx_restarted: false,
        },
        at(10),
    );
    assert_eq!(
        hangups(&reconciled),
        vec![rig.uid(2)],
        "the end's hangup again"
    );
    let last = rig.hangup(2, 16, at(11));
    assert!(
        replies(&last).is_empty(),
        "no operation waits after a restart"
    );
    let call = rig.recorded_call();
    assert_eq!(call.phase, CallPhase::Ended);
    assert_eq!(call.dialog_ms, 8000, "2 s to the reconciliation at 10 s");
    assert_eq!(rig.recorded_leg(2).end_reason, Some(EndReason::Ended));
}

#[test]
fn a_restored_ending_call_closes_at_the_deadline_counted_from_the_first_tick() {
    let (mut call, legs) = stored_mid_dialog();
    call.phase = CallPhase::Ending;
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    assert!(rig.tick(at(100)).is_empty());
    rig.tick(at(110));
    assert_eq!(rig.recorded_call().phase, CallPhase::Ended);
}

#[test]
fn restore_skips_ended_calls_and_foreign_legs() {
    let (mut call, mut legs) = stored_mid_dialog();
    let mut rig = Rig::new();
    let mut closed = call.clone();
    closed.phase = CallPhase::Ended;
    closed.key.thread = other_thread();
    legs.first_mut().unwrap().call.started_ms += 1;
    call.next_leg = 3;
    rig.engine.restore(vec![(call, legs), (closed, Vec::new())]);
    assert_eq!(rig.engine.calls().count(), 1);
    assert_eq!(rig.engine.call_legs(&thread()).len(), 1);
    let _ = rig.invite_accepted(vec![local(5)], at(50));
    assert_eq!(rig.leg(3).user, Some(user(5)), "numbering goes on");
}

#[test]
fn an_unreachable_originate_the_pbx_did_act_on_is_hung_up() {
    let mut rig = Rig::started();
    let (op, effects) = rig.invite(vec![local(1)], at(0));
    let (id, _) = sends(&effects).into_iter().next().unwrap();
    let out = rig.answer(id, RequestOutcome::Unreachable, at(1));
    assert_eq!(
        replies(&out),
        vec![(op, Answer::Refused(Refusal::PbxUnreachable))]
    );
    let ghost = rig.newchannel(1, at(2));
    assert_eq!(hangups(&ghost), vec![rig.uid(1)]);
    assert!(hangups(&rig.join(1, at(2))).is_empty(), "once");
}

#[test]
fn seconds_round_to_the_nearest() {
    use super::room::round_seconds;
    assert_eq!(
        [0, 499, 500, 1499, 1500, -3].map(round_seconds),
        [0, 0, 1, 1, 2, 0]
    );
}

#[test]
fn call_keys_name_the_thread_and_the_start_in_base_36() {
    let key = CallKey {
        thread: thread(),
        started_ms: 36 * 36 + 35,
    };
    assert_eq!(key.to_string(), format!("{}-10z", thread()));
    let zero = CallKey {
        thread: thread(),
        started_ms: 0,
    };
    assert_eq!(zero.to_string(), format!("{}-0", thread()));
}

#[test]
fn the_channel_name_is_the_first_one_an_event_gave_for_the_legs_own_uniqueid() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    let uid = rig.uid(1);
    rig.obs(
        Observation::Newchannel {
            uniqueid: format!("{uid}-2"),
            channel: "Local/x@dial-user-0000;2".into(),
        },
        at(1),
    );
    rig.obs(
        Observation::OriginateResponse {
            uniqueid: uid.clone(),
            success: false,
            reason: 0,
            channel: Some(String::new()),
        },
        at(1),
    );
    assert_eq!(
        rig.leg(1).channel,
        None,
        "neither the ;2 half nor an empty name"
    );

    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.newchannel(1, at(1));
    rig.obs(
        Observation::ConfbridgeJoin {
            conference: thread().to_string(),
            uniqueid: rig.uid(1),
            channel: "Local/renamed;1".into(),
        },
        at(2),
    );
    assert_eq!(
        rig.leg(1).channel.as_deref(),
        Some("Local/1@dial-user-0000;1")
    );
}

#[test]
fn only_the_legs_own_half_moves_it_to_ringing_and_the_first_up_is_the_answer() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    let other = format!("{}-2", rig.uid(1));
    for state in [ChannelState::Ringing, ChannelState::Up] {
        rig.obs(
            Observation::Newstate {
                uniqueid: other.clone(),
                state,
            },
            at(1),
        );
    }
    assert_eq!(rig.leg(1).state, LegState::Dialing);
    assert_eq!(rig.leg(1).answered_at, None);
    rig.newstate(1, ChannelState::Up, at(2));
    rig.newstate(1, ChannelState::Up, at(3));
    assert_eq!(rig.leg(1).answered_at, Some(at(2)));
}

#[test]
fn music_on_hold_pauses_only_a_leg_being_paused() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(0));
    rig.obs(
        Observation::MusicOnHoldStart {
            uniqueid: rig.uid(1),
        },
        at(1),
    );
    assert_eq!(rig.leg(1).state, LegState::Joined);
    rig.pause(vec![user(1)], at(2));
    rig.obs(
        Observation::MusicOnHoldStart {
            uniqueid: rig.uid(1),
        },
        at(2),
    );
    assert_eq!(rig.leg(1).state, LegState::Paused);
}

#[test]
fn the_hangup_cause_fallback_waits_until_every_half_is_gone() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.newchannel(1, at(0));
    let uid = rig.uid(1);
    rig.obs(
        Observation::Newchannel {
            uniqueid: format!("{uid}-2"),
            channel: "Local/x;2".into(),
        },
        at(0),
    );
    rig.obs(
        Observation::Hangup {
            uniqueid: format!("{uid}-2"),
            cause: 17,
        },
        at(1),
    );
    rig.tick(at(30));
    assert_eq!(
        rig.leg(1).state,
        LegState::Dialing,
        "its ;1 half is still up"
    );
}

#[test]
fn a_restored_paused_leg_found_in_the_conference_stays_paused() {
    let (call, mut legs) = stored_mid_dialog();
    legs.first_mut().unwrap().state = LegState::Paused;
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    let channels = vec![
        conference_channel(rig.uid(1)),
        conference_channel(rig.uid(2)),
    ];
    rig.obs(
        Observation::Reconciled {
            channels,
            pbx_restarted: false,
        },
        at(30),
    );
    assert_eq!(rig.leg(1).state, LegState::Paused);
}

#[test]
fn an_unreachable_originate_whose_leg_already_showed_up_counts_as_invited() {
    for early in ["newchannel", "response"] {
        let mut rig = Rig::started();
        let (op, effects) = rig.invite(vec![local(1)], at(0));
        match early {
            "newchannel" => drop(rig.newchannel(1, at(1))),
            _ => drop(rig.response(1, true, 4, at(1))),
        }
        let (id, _) = sends(&effects).into_iter().next().unwrap();
        let out = rig.answer(id, RequestOutcome::Unreachable, at(1));
        assert_eq!(
            replies(&out),
            vec![(op, Answer::Invited { count: 1 })],
            "{early}"
        );
        assert!(rig.leg(1).state.is_live(), "{early}");
    }
}

#[test]
fn a_refused_hangup_of_a_channel_already_gone_is_not_retried() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    rig.newchannel(1, at(0));
    let (op, effects) = rig.exclude(vec![user(1)], at(1));
    rig.hangup(1, 16, at(1));
    let (id, _) = sends(&effects).into_iter().next().unwrap();
    let out = rig.answer(id, RequestOutcome::Refused("No such channel".into()), at(1));
    assert!(hangups(&out).is_empty());
    assert_eq!(replies(&out), vec![(op, Answer::Excluded { count: 0 })]);
}

#[test]
fn a_hold_answered_after_the_leg_hung_up_leaves_it_left() {
    for outcome in [
        RequestOutcome::Accepted,
        RequestOutcome::Refused("x".into()),
    ] {
        let mut rig = Rig::started();
        let _ = rig.invite_accepted(vec![local(1)], at(0));
        rig.answers_and_joins(1, at(0));
        let (_, effects) = rig.pause(vec![user(1)], at(1));
        rig.hangup(1, 16, at(1));
        assert_eq!(rig.leg(1).state, LegState::Left);
        let (id, _) = sends(&effects).into_iter().next().unwrap();
        rig.answer(id, outcome, at(2));
        assert_eq!(rig.leg(1).state, LegState::Left);
    }
}

#[test]
fn a_restored_dialing_leg_hung_up_without_a_response_is_classified_by_its_cause() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    let (call, legs) = (rig.recorded_call(), vec![rig.recorded_leg(1)]);
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    rig.hangup(1, 17, at(5));
    rig.tick(at(15));
    assert_eq!(rig.leg(1).state, LegState::Busy);
}

#[test]
fn a_restored_ending_call_with_an_ended_leg_closes_when_its_live_leg_is_gone() {
    let (mut call, mut legs) = stored_mid_dialog();
    call.phase = CallPhase::Ending;
    let first = legs.first_mut().unwrap();
    first.state = LegState::Left;
    first.end_reason = Some(EndReason::Hangup);
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    rig.hangup(2, 16, at(20));
    assert_eq!(rig.recorded_call().phase, CallPhase::Ended);
}

#[test]
fn a_restored_joined_leg_whose_hold_is_refused_leaves_for_real_afterwards() {
    let (call, legs) = stored_mid_dialog();
    let mut rig = Rig::new();
    rig.engine.restore(vec![(call, legs)]);
    let (_, effects) = rig.pause(vec![user(1)], at(10));
    let (id, _) = sends(&effects).into_iter().next().unwrap();
    rig.answer(id, RequestOutcome::Refused("x".into()), at(10));
    rig.leave(1, at(11));
    assert_eq!(rig.leg(1).state, LegState::Left);
}

/// Two users joined, user 1's hold accepted and its ConfbridgeLeave seen at `at(2)`, no
/// MusicOnHoldStart yet: its Redirect may still be under way.
fn held_but_not_on_music() -> Rig {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.answers_and_joins(1, at(0));
    rig.answers_and_joins(2, at(0));
    let (_, effects) = rig.pause(vec![user(1)], at(2));
    rig.accept_all(&effects, at(2));
    rig.leave(1, at(2));
    rig
}

fn rejoin_of(rig: &Rig, n: u32) -> Request {
    Request::Rejoin {
        uniqueid: rig.uid(n),
        thread: thread(),
        role: Role::Participant,
    }
}

#[test]
fn an_unpause_right_after_a_pause_waits_for_the_music_before_it_redirects() {
    let mut rig = held_but_not_on_music();
    let (op, effects) = rig.unpause(vec![user(1)], at_ms(2_100));
    assert!(
        requests(&effects).is_empty(),
        "a second Redirect now is refused"
    );
    assert!(
        replies(&effects).is_empty(),
        "the answer waits for the rejoin"
    );
    let out = rig.obs(
        Observation::MusicOnHoldStart {
            uniqueid: rig.uid(1),
        },
        at_ms(2_300),
    );
    assert_eq!(requests(&out), vec![rejoin_of(&rig, 1)]);
    let answered = rig.accept_all(&out, at_ms(2_300));
    assert_eq!(
        replies(&answered),
        vec![(op, Answer::Unpaused { count: 1 })]
    );
}

#[test]
fn an_unpause_whose_music_never_shows_redirects_once_the_hold_is_old_enough() {
    let mut rig = held_but_not_on_music();
    let (op, effects) = rig.unpause(vec![user(1)], at_ms(2_100));
    assert!(requests(&effects).is_empty());
    assert!(
        requests(&rig.tick(at_ms(3_900))).is_empty(),
        "not yet: 1.9 s after the hold"
    );
    let out = rig.tick(at(4));
    assert_eq!(requests(&out), vec![rejoin_of(&rig, 1)]);
    let answered = rig.accept_all(&out, at(4));
    assert_eq!(
        replies(&answered),
        vec![(op, Answer::Unpaused { count: 1 })]
    );
    // Long after its hold, a paused leg is redirected at once.
    let (_, effects) = rig.pause(vec![user(2)], at(5));
    rig.accept_all(&effects, at(5));
    rig.leave(2, at(5));
    let (_, effects) = rig.unpause(vec![user(2)], at(8));
    assert_eq!(requests(&effects), vec![rejoin_of(&rig, 2)]);
}

#[test]
fn a_waiting_unpause_whose_leg_hangs_up_or_whose_call_ends_counts_nobody() {
    let mut rig = held_but_not_on_music();
    let (op, _) = rig.unpause(vec![user(1)], at_ms(2_100));
    let out = rig.hangup(1, 16, at_ms(2_200));
    assert!(requests(&out).is_empty(), "{out:?}");
    assert_eq!(replies(&out), vec![(op, Answer::Unpaused { count: 0 })]);

    let mut rig = held_but_not_on_music();
    let (op, _) = rig.unpause(vec![user(1)], at_ms(2_100));
    let (_, out) = rig.end(at_ms(2_200));
    assert!(
        !requests(&out)
            .iter()
            .any(|r| matches!(r, Request::Rejoin { .. })),
        "{out:?}"
    );
    assert!(
        replies(&out).contains(&(op, Answer::Unpaused { count: 0 })),
        "{out:?}"
    );
}

#[test]
fn at_the_end_deadline_a_leg_whose_channel_went_unanswered_is_cancelled_and_one_still_dialing_vanished()
 {
    // The end begins at 1 s. Leg 1's channel goes at 5 s with no OriginateResponse, so at
    // the call's deadline (11 s) it is not yet overdue on its own: the close classifies
    // it by its hangup. Leg 2's channel never went: the close finds it unaccounted for.
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1), local(2)], at(0));
    rig.newchannel(1, at(0));
    rig.newchannel(2, at(0));
    let (op, effects) = rig.end(at(1));
    rig.accept_all(&effects, at(1));
    rig.hangup(1, 16, at(5));
    assert!(replies(&rig.tick(at(10))).is_empty());
    let closed = rig.tick(at(11));
    assert_eq!(
        replies(&closed),
        vec![(op, ended(11, 0, CallResult::Failed))]
    );
    let gone = rig.recorded_leg(1);
    assert_eq!(
        (
            gone.state,
            gone.end_reason,
            gone.ended_at,
            gone.hangup_cause
        ),
        (
            LegState::Left,
            Some(EndReason::Cancelled),
            Some(at(5)),
            Some(16)
        )
    );
    let dialing = rig.recorded_leg(2);
    assert_eq!(
        (dialing.state, dialing.end_reason, dialing.ended_at),
        (LegState::Left, Some(EndReason::Vanished), Some(at(11)))
    );
}

#[test]
fn a_refused_hangup_of_a_leg_that_ended_before_its_channel_showed_does_not_count_the_user() {
    let mut rig = Rig::started();
    let _ = rig.invite_accepted(vec![local(1)], at(0));
    let (op, effects) = rig.exclude(vec![user(1)], at(1));
    rig.response(1, false, 5, at(1));
    assert!(!rig.leg(1).state.is_live());
    let (id, _) = sends(&effects).into_iter().next().unwrap();
    let out = rig.answer(id, RequestOutcome::Refused("No such channel".into()), at(2));
    assert_eq!(replies(&out), vec![(op, Answer::Excluded { count: 0 })]);
    assert!(hangups(&out).is_empty());
}

#[test]
fn a_hold_answered_after_a_reconciliation_found_the_leg_gone_leaves_it_vanished() {
    for outcome in [
        RequestOutcome::Accepted,
        RequestOutcome::Refused("x".into()),
    ] {
        let mut rig = Rig::started();
        let _ = rig.invite_accepted(vec![local(1)], at(0));
        rig.answers_and_joins(1, at(1));
        let (_, effects) = rig.pause(vec![user(1)], at(2));
        rig.obs(
            Observation::Reconciled {
                channels: Vec::new(),
                pbx_restarted: false,
            },
            at(3),
        );
        let (id, _) = sends(&effects).into_iter().next().unwrap();
        rig.answer(id, outcome.clone(), at(4));
        let leg = rig.leg(1);
        assert_eq!(
            (leg.state, leg.end_reason, leg.ended_at),
            (LegState::Left, Some(EndReason::Vanished), Some(at(3))),
            "{outcome:?}"
        );
    }
}

mod media;
