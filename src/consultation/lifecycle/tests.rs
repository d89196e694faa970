use chrono::TimeZone;

use super::*;
use crate::consultation::model::Phone;
use crate::directory::DoctorId;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(n)
}

fn consultation(kind: Kind) -> Consultation {
    Consultation {
        id: 42,
        kind,
        doctor: DoctorId::new(7).unwrap(),
        patient_full_name: "Иванов Иван Иванович".into(),
        video_support: (kind == Kind::Voip).then_some(true),
        patient_phone: (kind == Kind::Callback).then(|| Phone::new("7", "9001234567").unwrap()),
        status: Status::Scheduled,
        created: t0(),
        updated: t0(),
        begin_at: secs(600),
        duration_min: 30,
        doctor_deadline: None,
        started_at: None,
        ended_at: None,
        join_code: (kind == Kind::Voip).then(|| "731904".into()),
        attachment: None,
        notify_url: None,
        end_reason: None,
        terminate_reason: None,
        patient_attempts: 0,
        doctor_leg: None,
        patient_leg: None,
        pbx: "main".into(),
        history: vec![(Status::Scheduled, t0())],
    }
}

fn rules() -> Rules {
    Rules::default()
}

/// Runs `events` (each at its time) from `c` and returns every step.
fn run(c: &Consultation, events: &[(i64, Event)]) -> Vec<Step> {
    let mut cur = c.clone();
    let mut steps = Vec::new();
    for (at, e) in events {
        let s = step(&cur, e, secs(*at), &rules());
        cur = s.next.clone();
        steps.push(s);
    }
    steps
}

fn joined(party: Party, uniqueid: &str) -> Event {
    Event::Joined {
        party,
        uniqueid: uniqueid.into(),
    }
}

fn statuses(c: &Consultation) -> Vec<Status> {
    c.history.iter().map(|(s, _)| *s).collect()
}

#[test]
fn start_calls_the_doctor_with_the_answer_deadline() {
    let s = step(
        &consultation(Kind::Voip),
        &Event::Due(JobKind::Start),
        secs(600),
        &rules(),
    );
    assert!(s.changed);
    assert_eq!(s.next.status, Status::CallingDoctor);
    assert_eq!(s.next.doctor_deadline, Some(secs(660)));
    assert_eq!(
        s.next.doctor_leg.as_deref(),
        Some("medcall-consult-42-doctor")
    );
    assert_eq!(
        s.requests,
        vec![Request::Call {
            party: Party::Doctor,
            uniqueid: "medcall-consult-42-doctor".into(),
            timeout: std::time::Duration::from_secs(60),
        }]
    );
    assert_eq!(
        s.schedule,
        vec![Job {
            kind: JobKind::DoctorDeadline,
            due: secs(662)
        }]
    );
    assert_eq!(
        s.next.history.last(),
        Some(&(Status::CallingDoctor, secs(600)))
    );
    assert_eq!(answer_timeout_ms(&s.next, secs(630)), 30_000);
    assert_eq!(answer_timeout_ms(&s.next, secs(661)), 0);
}

#[test]
fn voip_doctor_then_patient_runs_for_its_duration() {
    let c = consultation(Kind::Voip);
    let steps = run(
        &c,
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "medcall-consult-42-doctor")),
            (700, joined(Party::Patient, "pat-1")),
        ],
    );
    let waiting = &steps[1];
    assert_eq!(waiting.next.status, Status::WaitingForPatient);
    assert_eq!(waiting.unschedule, vec![JobKind::DoctorDeadline]);
    assert_eq!(
        waiting.schedule,
        vec![Job {
            kind: JobKind::PatientWait,
            due: secs(1205)
        }]
    );
    assert_eq!(answer_timeout_ms(&waiting.next, secs(606)), 0);
    let running = &steps[2];
    assert_eq!(running.next.status, Status::InProgress);
    assert_eq!(running.next.started_at, Some(secs(700)));
    assert_eq!(running.next.patient_leg.as_deref(), Some("pat-1"));
    assert_eq!(running.unschedule, vec![JobKind::PatientWait]);
    assert_eq!(
        running.schedule,
        vec![
            Job {
                kind: JobKind::DurationLimit,
                due: secs(700 + 1800)
            },
            Job {
                kind: JobKind::Warning,
                due: secs(700 + 1740)
            },
        ]
    );
    let limit = step(
        &running.next,
        &Event::Due(JobKind::DurationLimit),
        secs(2500),
        &rules(),
    );
    assert_eq!(limit.next.status, Status::Completed);
    assert_eq!(limit.next.end_reason.as_deref(), Some("duration-limit"));
    assert_eq!(limit.next.ended_at, Some(secs(2500)));
    assert_eq!(
        limit.requests,
        vec![
            Request::Hangup {
                uniqueid: "medcall-consult-42-doctor".into()
            },
            Request::Hangup {
                uniqueid: "pat-1".into()
            },
        ]
    );
    assert_eq!(limit.unschedule, JobKind::ALL.to_vec());
    assert_eq!(
        statuses(&limit.next),
        vec![
            Status::Scheduled,
            Status::CallingDoctor,
            Status::WaitingForPatient,
            Status::InProgress,
            Status::Completed
        ]
    );
}

#[test]
fn the_warning_plays_and_changes_nothing() {
    let steps = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (606, joined(Party::Patient, "p")),
            (2346, Event::Due(JobKind::Warning)),
        ],
    );
    let warn = &steps[3];
    assert!(!warn.changed);
    assert_eq!(warn.next.status, Status::InProgress);
    assert_eq!(
        warn.requests,
        vec![Request::Warn {
            uniqueid: "medcall-consult-42-warning".into()
        }]
    );
}

#[test]
fn no_warning_when_it_would_come_before_the_start() {
    let mut c = consultation(Kind::Voip);
    c.duration_min = 1;
    let steps = run(
        &c,
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (606, joined(Party::Patient, "p")),
        ],
    );
    assert_eq!(
        steps[2].schedule,
        vec![Job {
            kind: JobKind::DurationLimit,
            due: secs(666)
        }]
    );
    let mut none = rules();
    none.warning_before = None;
    let s = step(
        &steps[1].next,
        &joined(Party::Patient, "p"),
        secs(606),
        &none,
    );
    assert_eq!(s.schedule.len(), 1);
}

#[test]
fn a_patient_who_dials_in_early_waits_for_the_doctor() {
    let steps = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (601, joined(Party::Patient, "p")),
            (610, joined(Party::Doctor, "d")),
        ],
    );
    assert!(!steps[1].changed);
    assert_eq!(steps[1].next.patient_leg.as_deref(), Some("p"));
    assert_eq!(steps[2].next.status, Status::InProgress);
    assert_eq!(
        statuses(&steps[2].next),
        vec![Status::Scheduled, Status::CallingDoctor, Status::InProgress]
    );
    // An early patient who gives up before the doctor answers is forgotten.
    let left = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (601, joined(Party::Patient, "p")),
            (
                602,
                Event::Left {
                    party: Party::Patient,
                },
            ),
            (610, joined(Party::Doctor, "d")),
        ],
    );
    assert_eq!(left[3].next.status, Status::WaitingForPatient);
}

#[test]
fn the_doctor_not_answering_is_missed() {
    for (why, status, reason) in [
        (NoAnswer::NoAnswer, Status::Missed, "doctor-no-answer"),
        (NoAnswer::Busy, Status::Missed, "doctor-busy"),
        (NoAnswer::Failed, Status::Failed, "doctor-call-failed"),
    ] {
        let steps = run(
            &consultation(Kind::Voip),
            &[
                (600, Event::Due(JobKind::Start)),
                (
                    660,
                    Event::NotAnswered {
                        party: Party::Doctor,
                        why,
                    },
                ),
            ],
        );
        let s = &steps[1];
        assert_eq!(s.next.status, status);
        assert_eq!(s.next.end_reason.as_deref(), Some(reason));
        assert_eq!(s.next.doctor_leg, None);
        assert!(s.requests.is_empty(), "the doctor's leg is gone already");
        assert_eq!(s.unschedule, JobKind::ALL.to_vec());
    }
    let late = run(
        &consultation(Kind::Callback),
        &[
            (600, Event::Due(JobKind::Start)),
            (662, Event::Due(JobKind::DoctorDeadline)),
        ],
    );
    assert_eq!(late[1].next.status, Status::Missed);
    assert_eq!(
        late[1].requests,
        vec![Request::Hangup {
            uniqueid: "medcall-consult-42-doctor".into()
        }]
    );
}

#[test]
fn the_pbx_refusing_the_call_fails_it_with_the_reason() {
    let steps = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (
                600,
                Event::DialFailed {
                    party: Party::Doctor,
                    why: Dialled::Refused("Originate failed".into()),
                },
            ),
        ],
    );
    assert_eq!(steps[1].next.status, Status::Failed);
    assert_eq!(
        steps[1].next.end_reason.as_deref(),
        Some("pbx-refused: Originate failed")
    );
    let unreachable = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (
                600,
                Event::DialFailed {
                    party: Party::Doctor,
                    why: Dialled::Unreachable,
                },
            ),
        ],
    );
    assert_eq!(
        unreachable[1].next.end_reason.as_deref(),
        Some("pbx-unreachable")
    );
}

#[test]
fn a_patient_who_never_joins_is_missed() {
    let steps = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (1205, Event::Due(JobKind::PatientWait)),
        ],
    );
    assert_eq!(steps[2].next.status, Status::Missed);
    assert_eq!(
        steps[2].next.end_reason.as_deref(),
        Some("patient-did-not-join")
    );
    assert_eq!(
        steps[2].requests,
        vec![Request::Hangup {
            uniqueid: "d".into()
        }]
    );
}

#[test]
fn callback_rings_the_patient_once_the_doctor_is_in_and_retries() {
    let c = consultation(Kind::Callback);
    let busy = Event::NotAnswered {
        party: Party::Patient,
        why: NoAnswer::Busy,
    };
    let steps = run(
        &c,
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "medcall-consult-42-doctor")),
            (606, busy.clone()),
            (666, Event::Due(JobKind::PatientRetry)),
            (670, joined(Party::Patient, "medcall-consult-42-patient-2")),
        ],
    );
    let calling = &steps[1];
    assert_eq!(calling.next.status, Status::CallingPatient);
    assert_eq!(
        calling.requests,
        vec![Request::Call {
            party: Party::Patient,
            uniqueid: "medcall-consult-42-patient-1".into(),
            timeout: std::time::Duration::from_secs(30),
        }]
    );
    assert_eq!(steps[2].next.status, Status::CallingPatient);
    assert!(!steps[2].changed);
    assert_eq!(
        steps[2].schedule,
        vec![Job {
            kind: JobKind::PatientRetry,
            due: secs(666)
        }]
    );
    assert_eq!(steps[2].next.patient_leg, None);
    assert_eq!(
        steps[3].requests,
        vec![Request::Call {
            party: Party::Patient,
            uniqueid: "medcall-consult-42-patient-2".into(),
            timeout: std::time::Duration::from_secs(30),
        }]
    );
    assert_eq!(steps[4].next.status, Status::InProgress);
}

#[test]
fn callback_busy_on_every_attempt_is_missed() {
    let busy = Event::NotAnswered {
        party: Party::Patient,
        why: NoAnswer::Busy,
    };
    let steps = run(
        &consultation(Kind::Callback),
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (606, busy.clone()),
            (666, Event::Due(JobKind::PatientRetry)),
            (667, busy.clone()),
            (727, Event::Due(JobKind::PatientRetry)),
            (728, busy.clone()),
        ],
    );
    assert_eq!(steps[4].next.status, Status::CallingPatient);
    let last = steps.last().unwrap();
    assert_eq!(last.next.patient_attempts, 3);
    assert_eq!(last.next.status, Status::Missed);
    assert_eq!(last.next.end_reason.as_deref(), Some("patient-busy"));
    assert_eq!(
        last.requests,
        vec![Request::Hangup {
            uniqueid: "d".into()
        }]
    );
    // The reason of the last attempt is the one kept.
    let mut no_answer = last.clone();
    no_answer.next = steps[5].next.clone();
    let s = step(
        &no_answer.next,
        &Event::NotAnswered {
            party: Party::Patient,
            why: NoAnswer::NoAnswer,
        },
        secs(758),
        &rules(),
    );
    assert_eq!(s.next.end_reason.as_deref(), Some("patient-no-answer"));
}

#[test]
fn a_party_hanging_up_completes_it() {
    for (party, reason, other) in [
        (Party::Doctor, "doctor-hangup", "p"),
        (Party::Patient, "patient-hangup", "d"),
    ] {
        let steps = run(
            &consultation(Kind::Voip),
            &[
                (600, Event::Due(JobKind::Start)),
                (605, joined(Party::Doctor, "d")),
                (606, joined(Party::Patient, "p")),
                (900, Event::Left { party }),
            ],
        );
        let end = &steps[3];
        assert_eq!(end.next.status, Status::Completed);
        assert_eq!(end.next.end_reason.as_deref(), Some(reason));
        assert_eq!(
            end.requests,
            vec![Request::Hangup {
                uniqueid: other.into()
            }]
        );
    }
    let waiting = run(
        &consultation(Kind::Callback),
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (
                606,
                Event::Left {
                    party: Party::Doctor,
                },
            ),
        ],
    );
    assert_eq!(waiting[2].next.status, Status::Completed);
    assert_eq!(
        waiting[2].requests,
        vec![Request::Hangup {
            uniqueid: "medcall-consult-42-patient-1".into()
        }]
    );
}

#[test]
fn terminate_cancels_a_scheduled_one_outside_the_lock_window() {
    let c = consultation(Kind::Voip);
    let s = step(
        &c,
        &Event::Terminate {
            reason: Some("patient asked".into()),
        },
        secs(479),
        &rules(),
    );
    assert_eq!(s.answer, Some(TerminateAnswer::Done));
    assert_eq!(s.next.status, Status::Cancelled);
    assert_eq!(s.next.terminate_reason.as_deref(), Some("patient asked"));
    assert_eq!(s.next.end_reason.as_deref(), Some("cancelled"));
    assert_eq!(s.unschedule, JobKind::ALL.to_vec());
    for at in [480, 599, 600, 700] {
        let s = step(&c, &Event::Terminate { reason: None }, secs(at), &rules());
        assert_eq!(
            s.answer,
            Some(TerminateAnswer::Refused(ABOUT_TO_START)),
            "at {at}"
        );
        assert!(!s.changed);
        assert_eq!(s.next, c);
    }
}

#[test]
fn terminate_of_a_running_one_hangs_up_every_leg() {
    for upto in 1..=3 {
        let events = [
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (606, joined(Party::Patient, "p")),
        ];
        let steps = run(&consultation(Kind::Voip), &events[..upto]);
        let cur = &steps.last().unwrap().next;
        let s = step(cur, &Event::Terminate { reason: None }, secs(700), &rules());
        assert_eq!(s.answer, Some(TerminateAnswer::Done));
        assert_eq!(s.next.status, Status::Terminated);
        assert_eq!(s.next.end_reason.as_deref(), Some("terminated"));
        let hung: Vec<_> = s.requests.clone();
        assert_eq!(hung.len(), if upto == 3 { 2 } else { 1 }, "{hung:?}");
        let again = step(
            &s.next,
            &Event::Terminate { reason: None },
            secs(701),
            &rules(),
        );
        assert_eq!(again.answer, Some(TerminateAnswer::Refused(ALREADY_ENDED)));
        assert!(!again.changed);
    }
}

#[test]
fn terminal_statuses_never_change() {
    let steps = run(
        &consultation(Kind::Voip),
        &[
            (600, Event::Due(JobKind::Start)),
            (660, Event::Due(JobKind::DoctorDeadline)),
        ],
    );
    let ended = &steps[1].next;
    for e in [
        Event::Due(JobKind::Start),
        Event::Due(JobKind::DurationLimit),
        joined(Party::Doctor, "d"),
        Event::Left {
            party: Party::Doctor,
        },
        Event::PbxLost,
    ] {
        let s = step(ended, &e, secs(700), &rules());
        assert_eq!(&s.next, ended, "{e:?}");
        assert!(!s.changed && s.requests.is_empty() && s.schedule.is_empty());
    }
}

#[test]
fn a_lost_pbx_fails_running_ones_only() {
    let scheduled = consultation(Kind::Voip);
    let s = step(&scheduled, &Event::PbxLost, secs(10), &rules());
    assert!(!s.changed);
    let steps = run(
        &scheduled,
        &[(600, Event::Due(JobKind::Start)), (601, Event::PbxLost)],
    );
    assert_eq!(steps[1].next.status, Status::Failed);
    assert_eq!(steps[1].next.end_reason.as_deref(), Some("pbx-lost-call"));
}

#[test]
fn events_out_of_place_are_ignored() {
    let c = consultation(Kind::Voip);
    for e in [
        Event::Due(JobKind::DurationLimit),
        Event::Due(JobKind::PatientRetry),
        joined(Party::Doctor, "d"),
        Event::NotAnswered {
            party: Party::Doctor,
            why: NoAnswer::Busy,
        },
    ] {
        let s = step(&c, &e, secs(10), &rules());
        assert_eq!(s.next, c, "{e:?}");
    }
    // A voip consultation never dials a patient.
    let steps = run(
        &c,
        &[
            (600, Event::Due(JobKind::Start)),
            (605, joined(Party::Doctor, "d")),
            (606, Event::Due(JobKind::PatientRetry)),
        ],
    );
    assert!(steps[2].requests.is_empty());
    // A callback patient cannot dial in while the doctor rings.
    let cb = run(
        &consultation(Kind::Callback),
        &[
            (600, Event::Due(JobKind::Start)),
            (601, joined(Party::Patient, "x")),
        ],
    );
    assert_eq!(cb[1].next.patient_leg, None);
}

#[test]
fn job_kinds_and_reasons_round_trip() {
    for k in JobKind::ALL {
        assert_eq!(JobKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(JobKind::parse("Start"), None);
    assert_eq!(NoAnswer::from_reason(5), NoAnswer::Busy);
    assert_eq!(NoAnswer::from_reason(3), NoAnswer::NoAnswer);
    assert_eq!(NoAnswer::from_reason(1), NoAnswer::NoAnswer);
    assert_eq!(NoAnswer::from_reason(0), NoAnswer::Failed);
    assert_eq!(NoAnswer::from_reason(8), NoAnswer::Failed);
}
