//! Player, stream listener and recording rules (seed 002, part 2).

use super::*;

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn player_dial() -> Endpoint {
    "Local/s@medcall-play/n".parse().unwrap()
}
fn stream_dial(uuid: &str) -> Endpoint {
    format!("AudioSocket/127.0.0.1:9092/{uuid}/c(slin16)")
        .parse()
        .unwrap()
}

impl Rig {
    fn play(&mut self, media: &str, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::Play {
                thread: thread(),
                dial: player_dial(),
                media: media.into(),
            },
            now,
        )
    }
    fn stream(&mut self, uuid: &str, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::StartStream {
                thread: thread(),
                dial: stream_dial(uuid),
                media: uuid.into(),
            },
            now,
        )
    }
    fn record(&mut self, token: &str, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(
            Command::StartRecording {
                thread: thread(),
                token: token.into(),
            },
            now,
        )
    }
    /// A started call with user 9 joined as leg 1 (a conference exists to record).
    fn someone_in() -> Rig {
        let mut rig = Rig::started();
        rig.invite_accepted(vec![local(9)], at(0));
        rig.answers_and_joins(1, at(0));
        rig
    }
    fn stop_recording(&mut self, now: DateTime<Utc>) -> (OpId, Vec<Effect>) {
        self.cmd(Command::StopRecording { thread: thread() }, now)
    }
    fn recordings(&self) -> Vec<RecordingRecord> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Effect::Record(Change::Recording(r)) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }
}

fn one<T: std::fmt::Debug>(v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "exactly one expected: {v:#?}");
    v.into_iter().next().unwrap()
}

fn reply_to(effects: &[Effect], op: OpId) -> Option<Answer> {
    replies(effects)
        .into_iter()
        .find(|(o, _)| *o == op)
        .map(|(_, a)| a)
}

#[test]
fn play_originates_a_player_leg_carrying_the_file_and_answers_once_it_joined() {
    let mut rig = Rig::started();
    let (op, effects) = rig.play(SHA, at(1));
    let Request::Originate { leg, .. } = one(requests(&effects)) else {
        panic!("an originate expected: {effects:#?}");
    };
    assert_eq!(leg.role, Role::Player);
    assert_eq!(leg.user, None);
    assert_eq!(leg.media.as_deref(), Some(SHA));
    assert_eq!(leg.dial, "Local/s@medcall-play/n");
    assert_eq!(leg.other_uniqueid, Some(format!("{}-2", leg.uniqueid)));
    assert_eq!(
        leg_records(&effects),
        vec![(*leg).clone()],
        "stored before it is sent"
    );
    let accepted = rig.accept_all(&effects, at(1));
    assert_eq!(
        reply_to(&accepted, op),
        None,
        "not yet: the player has not joined"
    );
    rig.newchannel(leg.number, at(1));
    let joined = rig.join(leg.number, at(2));
    assert_eq!(
        reply_to(&joined, op),
        Some(Answer::Playing { number: leg.number })
    );
    assert_eq!(rig.leg(leg.number).state, LegState::Joined);
}

#[test]
fn helper_legs_count_neither_for_the_dialog_nor_for_the_result() {
    let mut rig = Rig::started();
    rig.invite_accepted(vec![local(1)], at(0));
    rig.answers_and_joins(1, at(1));
    let (_, effects) = rig.play(SHA, at(1));
    rig.accept_all(&effects, at(1));
    rig.answers_and_joins(2, at(1));
    let (_, effects) = rig.stream("u-1", at(1));
    rig.accept_all(&effects, at(1));
    rig.answers_and_joins(3, at(2));
    assert_eq!(rig.recorded_call().dialog_since, None, "one human only");
    let (op, effects) = rig.end(at(10));
    rig.accept_all(&effects, at(10));
    for n in 1..=3 {
        rig.hangup(n, 16, at(10));
    }
    let Some(Answer::Ended {
        dialog_duration_s,
        result,
        ..
    }) = reply_to(&rig.log, op)
    else {
        panic!("end answered: {:#?}", rig.log);
    };
    assert_eq!(dialog_duration_s, 0);
    assert_eq!(result, CallResult::Answered);
    // A call where only the player joined was never answered.
    let mut rig = Rig::started();
    let (_, effects) = rig.play(SHA, at(1));
    rig.accept_all(&effects, at(1));
    rig.answers_and_joins(1, at(1));
    let (_, effects) = rig.end(at(5));
    rig.accept_all(&effects, at(5));
    let out = rig.hangup(1, 16, at(5));
    assert_eq!(answers(&out), vec![ended(5, 0, CallResult::Cancelled)]);
}

#[test]
fn a_second_play_replaces_the_first_whose_start_is_answered_as_overtaken() {
    let mut rig = Rig::started();
    let (first, effects) = rig.play(SHA, at(1));
    rig.accept_all(&effects, at(1));
    rig.newchannel(1, at(1));
    let (second, effects) = rig.play("ff", at(2));
    let reqs = requests(&effects);
    assert_eq!(
        reqs.first(),
        Some(&Request::Hangup {
            uniqueid: rig.uid(1)
        }),
        "the first player goes: {reqs:#?}"
    );
    assert!(
        matches!(reqs.get(1), Some(Request::Originate { leg, .. }) if leg.number == 2 && leg.media.as_deref() == Some("ff"))
    );
    rig.accept_all(&effects, at(2));
    rig.hangup(1, 16, at(2));
    // Unanswered: its OriginateResponse classifies it.
    let out = rig.response(1, false, 0, at(2));
    assert_eq!(reply_to(&out, first), Some(Answer::Playing { number: 1 }));
    assert_eq!(rig.recorded_leg(1).end_reason, Some(EndReason::Cancelled));
    rig.answers_and_joins(2, at(3));
    assert_eq!(
        reply_to(&rig.log, second),
        Some(Answer::Playing { number: 2 })
    );
    // A joined player replaced ends `replaced`.
    let (_, effects) = rig.play(SHA, at(4));
    rig.accept_all(&effects, at(4));
    rig.hangup(2, 16, at(5));
    let two = rig.recorded_leg(2);
    assert_eq!(
        (two.state, two.end_reason),
        (LegState::Left, Some(EndReason::Replaced))
    );
    assert_eq!(two.ended_at, Some(at(5)));
}

#[test]
fn stop_hangs_up_the_live_players_and_counts_them() {
    let mut rig = Rig::started();
    let (op, effects) = rig.cmd(Command::StopPlay { thread: thread() }, at(1));
    assert_eq!(reply_to(&effects, op), Some(Answer::Stopped { count: 0 }));
    assert!(requests(&effects).is_empty());
    let (_, effects) = rig.play(SHA, at(1));
    rig.accept_all(&effects, at(1));
    rig.answers_and_joins(1, at(1));
    let (op, effects) = rig.cmd(Command::StopPlay { thread: thread() }, at(3));
    assert_eq!(
        requests(&effects),
        vec![Request::Hangup {
            uniqueid: rig.uid(1)
        }]
    );
    assert_eq!(
        reply_to(&effects, op),
        None,
        "waits for the hangup's answer"
    );
    let out = rig.accept_all(&effects, at(3));
    assert_eq!(reply_to(&out, op), Some(Answer::Stopped { count: 1 }));
    rig.hangup(1, 16, at(3));
    let leg = rig.recorded_leg(1);
    assert_eq!(
        (leg.state, leg.end_reason),
        (LegState::Left, Some(EndReason::Stopped))
    );
    // Streams are stopped by their own stop only.
    let (_, effects) = rig.stream("u-9", at(4));
    rig.accept_all(&effects, at(4));
    let (op, effects) = rig.cmd(Command::StopPlay { thread: thread() }, at(4));
    assert_eq!(reply_to(&effects, op), Some(Answer::Stopped { count: 0 }));
    let (op, effects) = rig.cmd(Command::StopStream { thread: thread() }, at(4));
    let out = rig.accept_all(&effects, at(4));
    assert_eq!(reply_to(&out, op), Some(Answer::Stopped { count: 1 }));
}

#[test]
fn a_player_that_finished_by_itself_ends_hangup_with_how_long_it_played() {
    let mut rig = Rig::started();
    let (_, effects) = rig.play(SHA, at(1));
    rig.accept_all(&effects, at(1));
    rig.answers_and_joins(1, at(2));
    rig.hangup(1, 16, at(6));
    let leg = rig.recorded_leg(1);
    assert_eq!(
        (leg.state, leg.end_reason),
        (LegState::Left, Some(EndReason::Hangup))
    );
    assert_eq!((leg.joined_at, leg.ended_at), (Some(at(2)), Some(at(6))));
}

#[test]
fn a_stream_start_answers_once_the_listener_joined_and_a_second_start_gets_the_same_stream() {
    let mut rig = Rig::started();
    let (first, effects) = rig.stream("uuid-1", at(1));
    let Request::Originate { leg, .. } = one(requests(&effects)) else {
        panic!("an originate: {effects:#?}");
    };
    assert_eq!(
        (leg.role, leg.other_uniqueid.clone(), leg.media.as_deref()),
        (Role::Stream, None, Some("uuid-1"))
    );
    assert_eq!(leg.dial, "AudioSocket/127.0.0.1:9092/uuid-1/c(slin16)");
    rig.accept_all(&effects, at(1));
    // A second start while the first is still on its way waits with it.
    let (second, effects) = rig.stream("uuid-2", at(1));
    assert!(requests(&effects).is_empty(), "no second leg: {effects:#?}");
    assert!(answers(&effects).is_empty());
    let out = rig.join(1, at(2));
    let want = Answer::Streaming {
        media: "uuid-1".into(),
    };
    assert_eq!(reply_to(&out, first), Some(want.clone()));
    assert_eq!(reply_to(&out, second), Some(want.clone()));
    let (third, effects) = rig.stream("uuid-3", at(3));
    assert!(requests(&effects).is_empty());
    assert_eq!(reply_to(&effects, third), Some(want));
}

#[test]
fn a_helper_leg_that_ends_before_it_joined_fails_its_start() {
    let mut rig = Rig::started();
    let (op, effects) = rig.stream("uuid-1", at(1));
    rig.accept_all(&effects, at(1));
    let out = rig.response(1, false, 0, at(2));
    let Some(Answer::Refused(Refusal::LegFailed(why))) = reply_to(&out, op) else {
        panic!("a failure expected: {out:#?}");
    };
    assert!(why.contains("stream leg ended failed"), "{why}");
    // The PBX refusing the originate outright fails it too.
    let (op, effects) = rig.play(SHA, at(3));
    let (id, _) = one(sends(&effects));
    let out = rig.answer(id, RequestOutcome::Refused("no".into()), at(3));
    assert!(matches!(
        reply_to(&out, op),
        Some(Answer::Refused(Refusal::LegFailed(_)))
    ));
}

#[test]
fn recording_starts_once_stops_with_its_times_and_is_refused_twice() {
    let mut rig = Rig::someone_in();
    let (op, effects) = rig.record("tok-1", at(1));
    let key = rig.key();
    assert_eq!(
        requests(&effects),
        vec![Request::StartRecord {
            thread: thread(),
            file_stem: format!("{key}-rec1")
        }]
    );
    let starting = rig.recordings();
    assert_eq!(starting.len(), 1, "stored before it is sent");
    assert_eq!(starting[0].state, RecordingState::Starting);
    assert_eq!(starting[0].token, "tok-1");
    let (again, effects) = rig.record("tok-2", at(1));
    assert_eq!(
        reply_to(&effects, again),
        Some(Answer::Refused(Refusal::AlreadyRecording)),
        "refused while starting too"
    );
    let (id, _) = one(sends(&rig.log)
        .into_iter()
        .filter(|(_, r)| matches!(r, Request::StartRecord { .. }))
        .collect());
    let out = rig.answer(id, RequestOutcome::Accepted, at(2));
    let Some(Answer::RecordingStarted(rec)) = reply_to(&out, op) else {
        panic!("{out:#?}");
    };
    assert_eq!(
        (rec.state, rec.number, rec.started_at),
        (RecordingState::Recording, 1, at(1))
    );
    let (again, effects) = rig.record("tok-2", at(3));
    assert_eq!(
        reply_to(&effects, again),
        Some(Answer::Refused(Refusal::AlreadyRecording))
    );
    let (stop, effects) = rig.stop_recording(at(5));
    assert_eq!(
        requests(&effects),
        vec![Request::StopRecord { thread: thread() }]
    );
    let out = rig.accept_all(&effects, at(6));
    let Some(Answer::RecordingStopped(rec)) = reply_to(&out, stop) else {
        panic!("{out:#?}");
    };
    assert_eq!(
        (rec.state, rec.stopped_at),
        (RecordingState::Stopped, Some(at(6)))
    );
    assert_eq!(rig.recordings().last(), Some(&rec));
    let (none, effects) = rig.stop_recording(at(7));
    assert_eq!(
        reply_to(&effects, none),
        Some(Answer::Refused(Refusal::NotRecording))
    );
    // The next one is number 2, to its own file.
    let (_, effects) = rig.record("tok-3", at(8));
    assert_eq!(
        requests(&effects),
        vec![Request::StartRecord {
            thread: thread(),
            file_stem: format!("{key}-rec2")
        }]
    );
}

#[test]
fn a_recording_needs_someone_in_the_conference() {
    let mut rig = Rig::started();
    let (op, effects) = rig.record("tok-1", at(1));
    assert_eq!(
        reply_to(&effects, op),
        Some(Answer::Refused(Refusal::NothingToRecord))
    );
    assert!(requests(&effects).is_empty() && rig.recordings().is_empty());
    // Ringing is not in: only a joined leg makes the conference.
    rig.invite_accepted(vec![local(1)], at(1));
    let (op, effects) = rig.record("tok-1", at(2));
    assert_eq!(
        reply_to(&effects, op),
        Some(Answer::Refused(Refusal::NothingToRecord))
    );
    rig.answers_and_joins(1, at(3));
    let (_, effects) = rig.record("tok-1", at(4));
    assert!(matches!(
        requests(&effects).as_slice(),
        [Request::StartRecord { .. }]
    ));
}

#[test]
fn a_refused_or_unanswered_start_fails_the_recording_and_another_may_start() {
    let mut rig = Rig::someone_in();
    let (op, effects) = rig.record("tok-1", at(1));
    let (id, _) = one(sends(&effects));
    let out = rig.answer(
        id,
        RequestOutcome::Refused("Conference not found.".into()),
        at(1),
    );
    assert_eq!(
        reply_to(&out, op),
        Some(Answer::Refused(Refusal::PbxRefused(
            "Conference not found.".into()
        )))
    );
    let failed = rig.recordings().pop().unwrap();
    assert_eq!(failed.state, RecordingState::Failed);
    assert_eq!(failed.error.as_deref(), Some("Conference not found."));
    let (op, effects) = rig.record("tok-2", at(2));
    let (id, _) = one(sends(&effects));
    let out = rig.answer(id, RequestOutcome::Unreachable, at(2));
    assert_eq!(
        reply_to(&out, op),
        Some(Answer::Refused(Refusal::PbxUnreachable))
    );
    assert_eq!(
        rig.recordings().pop().unwrap().state,
        RecordingState::Failed
    );
    // An unanswered stop leaves the recording live (Asterisk may still record).
    let (_, effects) = rig.record("tok-3", at(3));
    rig.accept_all(&effects, at(3));
    let (op, effects) = rig.stop_recording(at(4));
    let (id, _) = one(sends(&effects));
    let out = rig.answer(id, RequestOutcome::Unreachable, at(4));
    assert_eq!(
        reply_to(&out, op),
        Some(Answer::Refused(Refusal::PbxUnreachable))
    );
    assert_eq!(
        rig.recordings().pop().unwrap().state,
        RecordingState::Recording
    );
    // A refused stop means nothing is recorded any more.
    let (op, effects) = rig.stop_recording(at(5));
    let (id, _) = one(sends(&effects));
    let out = rig.answer(id, RequestOutcome::Refused("not recording".into()), at(5));
    assert!(
        matches!(reply_to(&out, op), Some(Answer::RecordingStopped(r)) if r.state == RecordingState::Stopped)
    );
}

#[test]
fn the_calls_end_stops_its_recording_and_hangs_up_its_helper_legs() {
    let mut rig = Rig::someone_in();
    let (_, effects) = rig.record("tok-1", at(1));
    rig.accept_all(&effects, at(1));
    let (_, effects) = rig.play(SHA, at(1));
    rig.accept_all(&effects, at(1));
    rig.answers_and_joins(2, at(1));
    let (_, effects) = rig.stream("uuid-1", at(1));
    rig.accept_all(&effects, at(1));
    rig.join(3, at(1));
    let (_, effects) = rig.end(at(9));
    let hung = hangups(&effects);
    assert!(
        hung.contains(&rig.uid(1)) && hung.contains(&rig.uid(2)),
        "{hung:?}"
    );
    rig.accept_all(&effects, at(9));
    rig.hangup(1, 16, at(9));
    rig.hangup(2, 16, at(9));
    rig.obs(
        Observation::Hangup {
            uniqueid: rig.uid(3),
            cause: 16,
        },
        at(10),
    );
    assert!(rig.engine.active_call(&thread()).is_none(), "closed");
    let rec = rig.recordings().pop().unwrap();
    assert_eq!(
        (rec.state, rec.stopped_at),
        (RecordingState::Stopped, Some(at(10)))
    );
    assert_eq!(rig.recorded_leg(3).end_reason, Some(EndReason::Ended));
}

#[test]
fn a_restored_recording_can_be_stopped_after_a_restart() {
    let mut rig = Rig::someone_in();
    let (_, effects) = rig.record("tok-1", at(1));
    rig.accept_all(&effects, at(1));
    let call = rig.recorded_call();
    let recording = rig.recordings().pop().unwrap();
    let mut engine = Engine::new(Settings::default());
    engine.restore(vec![(call.clone(), vec![])]);
    // A recording of another call (an older one of the thread) is not taken.
    let mut stale = recording.clone();
    stale.call.started_ms -= 1;
    stale.number = 7;
    engine.restore_recordings(vec![recording.clone(), stale]);
    let effects = engine.command(OpId(1), Command::StopRecording { thread: thread() }, at(20));
    let (id, Request::StopRecord { .. }) = one(sends(&effects)) else {
        panic!("{effects:#?}");
    };
    assert!(leg_records(&effects).is_empty());
    let effects = engine.answered(id, RequestOutcome::Accepted, at(21));
    let Some(Answer::RecordingStopped(rec)) = reply_to(&effects, OpId(1)) else {
        panic!("{effects:#?}");
    };
    assert_eq!((rec.number, rec.token.as_str()), (1, "tok-1"));
    let effects = engine.command(OpId(2), Command::StopRecording { thread: thread() }, at(22));
    assert_eq!(
        reply_to(&effects, OpId(2)),
        Some(Answer::Refused(Refusal::NotRecording)),
        "the stale one was not restored"
    );
}

#[test]
fn media_commands_need_an_active_call() {
    let mut rig = Rig::new();
    for command in [
        Command::Play {
            thread: thread(),
            dial: player_dial(),
            media: SHA.into(),
        },
        Command::StopPlay { thread: thread() },
        Command::StartStream {
            thread: thread(),
            dial: stream_dial("u"),
            media: "u".into(),
        },
        Command::StopStream { thread: thread() },
        Command::StartRecording {
            thread: thread(),
            token: "t".into(),
        },
        Command::StopRecording { thread: thread() },
    ] {
        assert_eq!(command.thread(), &thread());
        let (op, effects) = rig.cmd(command, at(0));
        assert_eq!(
            reply_to(&effects, op),
            Some(Answer::Refused(Refusal::NoActiveCall))
        );
        assert!(requests(&effects).is_empty());
    }
}
