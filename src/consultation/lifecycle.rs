//! A consultation's life, pure: its record and one event in, the record it becomes and
//! what must follow out (SPEC §4.3–§4.5).
//!
//! The runner stores the step (the record, a history entry and a notification when the
//! status changed, the jobs to schedule or drop) in one transaction and only then sends
//! the step's requests to the PBX and answers. Nothing here knows Asterisk's words: a
//! leg is "called" and "hung up"; `run` says how.

use chrono::{DateTime, Duration, Utc};

use super::model::{Consultation, Kind, Status};

/// A consultation's two parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    Doctor,
    Patient,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Doctor => "doctor",
            Party::Patient => "patient",
        }
    }
}

/// The time-based things of a consultation, each a durable job (`scheduler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// `beginAtUtc`: call the doctor.
    Start,
    /// The doctor has not answered in time (a safety net: the Originate's own timeout
    /// usually answers first).
    DoctorDeadline,
    /// Dial the callback patient again.
    PatientRetry,
    /// The voip patient has not joined in time.
    PatientWait,
    /// The warning before the duration limit.
    Warning,
    /// The duration limit.
    DurationLimit,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Start,
        JobKind::DoctorDeadline,
        JobKind::PatientRetry,
        JobKind::PatientWait,
        JobKind::Warning,
        JobKind::DurationLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::DoctorDeadline => "doctor-deadline",
            JobKind::PatientRetry => "patient-retry",
            JobKind::PatientWait => "patient-wait",
            JobKind::Warning => "warning",
            JobKind::DurationLimit => "duration-limit",
        }
    }

    pub fn parse(word: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// How the PBX answered the request that calls a party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialled {
    /// The PBX refused the Originate (its message).
    Refused(String),
    /// The PBX could not be reached, or never answered.
    Unreachable,
}

/// Why a called party did not come: Asterisk's OriginateResponse `Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Reason 5.
    Busy,
    /// Reason 3 (rang out), 1 (hung up while ringing), or a leg that vanished ringing.
    NoAnswer,
    /// Reason 0 or 8: the call could not be made (congestion, no route).
    Failed,
}

impl NoAnswer {
    pub fn from_reason(reason: u32) -> NoAnswer {
        match reason {
            5 => NoAnswer::Busy,
            1 | 3 => NoAnswer::NoAnswer,
            _ => NoAnswer::Failed,
        }
    }
}

/// What happened to a consultation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One of its jobs is due.
    Due(JobKind),
    /// The request that calls `party` failed on the PBX's side.
    DialFailed { party: Party, why: Dialled },
    /// The called party's phone did not answer.
    NotAnswered { party: Party, why: NoAnswer },
    /// The party's channel `uniqueid` joined the conference.
    Joined { party: Party, uniqueid: String },
    /// The party's channel left the conference or hung up.
    Left { party: Party },
    /// The API's terminate (voip's `reason`, when given).
    Terminate { reason: Option<String> },
    /// The PBX restarted: every channel it had is gone.
    PbxLost,
}

/// What the PBX must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Call `party` into the conference on a new leg `uniqueid`, ringing at most
    /// `timeout`.
    Call {
        party: Party,
        uniqueid: String,
        timeout: std::time::Duration,
    },
    /// Hang up a leg.
    Hangup { uniqueid: String },
    /// Play the warning prompt into the conference.
    Warn { uniqueid: String },
}

/// The answer to a terminate (SPEC §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateAnswer {
    Done,
    Refused(&'static str),
}

/// The message of a terminate inside the lock window (seed 000's example).
pub const ABOUT_TO_START: &str = "The consultation is about to start.";
/// The message of a terminate of a consultation that has ended.
pub const ALREADY_ENDED: &str = "The consultation has already ended.";

/// A job to schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub kind: JobKind,
    pub due: DateTime<Utc>,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The record after the step (equal to the one before when nothing changed).
    pub next: Consultation,
    /// The status changed: a history entry and a notification are due.
    pub changed: bool,
    /// Jobs to add (or move).
    pub schedule: Vec<Job>,
    /// Jobs to drop (all of them once the consultation is terminal).
    pub unschedule: Vec<JobKind>,
    pub requests: Vec<Request>,
    pub answer: Option<TerminateAnswer>,
}

/// The knobs of a consultation's life (mapped from `[consultations]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// How long the doctor's phone rings (`doctorAnswerDeadlineUtc` = call time + this).
    pub doctor_answer_timeout: std::time::Duration,
    /// How long a callback patient's phone rings per attempt.
    pub patient_ring_timeout: std::time::Duration,
    /// Callback: dials of the patient after the first one.
    pub patient_retries: u32,
    /// Callback: the pause between two dials.
    pub patient_retry_interval: std::time::Duration,
    /// Voip: how long the doctor waits for the patient to join.
    pub patient_wait: std::time::Duration,
    /// A scheduled consultation starting sooner than this cannot be cancelled.
    pub lock_window: std::time::Duration,
    /// The warning this long before the duration limit; `None`: no warning.
    pub warning_before: Option<std::time::Duration>,
    /// Conferences are named `<prefix><id>`, legs after their conference.
    pub conference_prefix: String,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            doctor_answer_timeout: std::time::Duration::from_secs(60),
            patient_ring_timeout: std::time::Duration::from_secs(30),
            patient_retries: 2,
            patient_retry_interval: std::time::Duration::from_secs(60),
            patient_wait: std::time::Duration::from_secs(600),
            lock_window: std::time::Duration::from_secs(120),
            warning_before: Some(std::time::Duration::from_secs(60)),
            conference_prefix: "consult-".to_owned(),
        }
    }
}

impl Rules {
    /// The conference of consultation `id`.
    pub fn conference(&self, id: i64) -> String {
        super::model::conference_name(&self.conference_prefix, id)
    }

    /// The uniqueid of the doctor's leg of consultation `id`.
    pub fn doctor_leg(&self, id: i64) -> String {
        format!("medcall-{}-doctor", self.conference(id))
    }

    /// The uniqueid of the callback patient's `attempt`-th leg.
    pub fn patient_leg(&self, id: i64, attempt: u32) -> String {
        format!("medcall-{}-patient-{attempt}", self.conference(id))
    }

    /// The uniqueid of the warning prompt's player leg.
    pub fn warning_leg(&self, id: i64) -> String {
        format!("medcall-{}-warning", self.conference(id))
    }
}

/// After this long past the doctor's deadline, a doctor still ringing is given up by
/// medcall itself (the Originate's own timeout ends the ringing at the deadline).
const DEADLINE_GRACE: Duration = Duration::seconds(2);

fn span(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// Milliseconds until the doctor's answer deadline (SPEC §4.5 `timeout`): 0 once it has
/// passed, or once the doctor is no longer being called.
pub fn answer_timeout_ms(c: &Consultation, now: DateTime<Utc>) -> i64 {
    match (c.status, c.doctor_deadline) {
        (Status::CallingDoctor, Some(deadline)) => (deadline - now).num_milliseconds().max(0),
        _ => 0,
    }
}

/// One event of consultation `c` at `now`.
pub fn step(c: &Consultation, event: &Event, now: DateTime<Utc>, rules: &Rules) -> Step {
    let mut s = Stepper {
        step: Step {
            next: c.clone(),
            changed: false,
            schedule: Vec::new(),
            unschedule: Vec::new(),
            requests: Vec::new(),
            answer: None,
        },
        now,
        rules,
    };
    s.apply(event);
    s.step
}

struct Stepper<'a> {
    step: Step,
    now: DateTime<Utc>,
    rules: &'a Rules,
}

impl Stepper<'_> {
    fn c(&self) -> &Consultation {
        &self.step.next
    }

    fn apply(&mut self, event: &Event) {
        let status = self.c().status;
        if let Event::Terminate { reason } = event {
            return self.terminate(reason.as_deref());
        }
        if status.is_terminal() {
            return;
        }
        match (status, event) {
            (Status::Scheduled, Event::Due(JobKind::Start)) => self.call_doctor(),
            (_, Event::PbxLost) if status.is_running() => self.end(Status::Failed, "pbx-lost-call"),
            (
                Status::CallingDoctor,
                Event::DialFailed {
                    party: Party::Doctor,
                    why,
                },
            )
            | (
                Status::CallingPatient,
                Event::DialFailed {
                    party: Party::Patient,
                    why,
                },
            ) => {
                let reason = match why {
                    Dialled::Refused(message) => format!("pbx-refused: {message}"),
                    Dialled::Unreachable => "pbx-unreachable".to_owned(),
                };
                self.end(Status::Failed, &reason);
            }
            (
                Status::CallingDoctor,
                Event::NotAnswered {
                    party: Party::Doctor,
                    why,
                },
            ) => {
                self.step.next.doctor_leg = None;
                match why {
                    NoAnswer::Busy => self.end(Status::Missed, "doctor-busy"),
                    NoAnswer::NoAnswer => self.end(Status::Missed, "doctor-no-answer"),
                    NoAnswer::Failed => self.end(Status::Failed, "doctor-call-failed"),
                }
            }
            (Status::CallingDoctor, Event::Due(JobKind::DoctorDeadline)) => {
                self.end(Status::Missed, "doctor-no-answer");
            }
            (
                Status::CallingDoctor,
                Event::Joined {
                    party: Party::Doctor,
                    uniqueid,
                },
            ) => {
                self.step.next.doctor_leg = Some(uniqueid.clone());
                self.doctor_in();
            }
            // A voip patient may dial in while the doctor's phone still rings: they wait
            // in the conference.
            (
                Status::CallingDoctor,
                Event::Joined {
                    party: Party::Patient,
                    uniqueid,
                },
            ) if self.c().kind == Kind::Voip => {
                self.step.next.patient_leg = Some(uniqueid.clone());
            }
            (
                Status::CallingDoctor,
                Event::Left {
                    party: Party::Patient,
                },
            ) => {
                self.step.next.patient_leg = None;
            }
            (
                Status::WaitingForPatient | Status::CallingPatient,
                Event::Joined {
                    party: Party::Patient,
                    uniqueid,
                },
            ) => {
                self.step.next.patient_leg = Some(uniqueid.clone());
                self.in_progress();
            }
            (Status::WaitingForPatient, Event::Due(JobKind::PatientWait)) => {
                self.end(Status::Missed, "patient-did-not-join");
            }
            (
                Status::WaitingForPatient | Status::CallingPatient,
                Event::Left {
                    party: Party::Doctor,
                },
            ) => {
                self.step.next.doctor_leg = None;
                self.end(Status::Completed, "doctor-hangup");
            }
            (
                Status::CallingPatient,
                Event::NotAnswered {
                    party: Party::Patient,
                    why,
                },
            ) => {
                self.patient_not_reached(*why);
            }
            (Status::CallingPatient, Event::Due(JobKind::PatientRetry)) => self.call_patient(),
            (Status::InProgress, Event::Left { party }) => {
                match party {
                    Party::Doctor => self.step.next.doctor_leg = None,
                    Party::Patient => self.step.next.patient_leg = None,
                }
                let reason = match party {
                    Party::Doctor => "doctor-hangup",
                    Party::Patient => "patient-hangup",
                };
                self.end(Status::Completed, reason);
            }
            (Status::InProgress, Event::Due(JobKind::Warning)) => {
                let uniqueid = self.rules.warning_leg(self.c().id);
                self.step.requests.push(Request::Warn { uniqueid });
            }
            (Status::InProgress, Event::Due(JobKind::DurationLimit)) => {
                self.end(Status::Completed, "duration-limit");
            }
            _ => {}
        }
    }

    fn to(&mut self, status: Status) {
        let now = self.now;
        let next = &mut self.step.next;
        next.status = status;
        next.updated = now;
        next.history.push((status, now));
        self.step.changed = true;
    }

    fn call_doctor(&mut self) {
        let id = self.c().id;
        let deadline = self.now + span(self.rules.doctor_answer_timeout);
        self.step.next.doctor_deadline = Some(deadline);
        self.step.next.doctor_leg = Some(self.rules.doctor_leg(id));
        self.to(Status::CallingDoctor);
        self.step.requests.push(Request::Call {
            party: Party::Doctor,
            uniqueid: self.rules.doctor_leg(id),
            timeout: self.rules.doctor_answer_timeout,
        });
        self.step.schedule.push(Job {
            kind: JobKind::DoctorDeadline,
            due: deadline + DEADLINE_GRACE,
        });
    }

    fn doctor_in(&mut self) {
        self.step.unschedule.push(JobKind::DoctorDeadline);
        match self.c().kind {
            Kind::Voip if self.c().patient_leg.is_some() => self.in_progress(),
            Kind::Voip => {
                self.to(Status::WaitingForPatient);
                self.step.schedule.push(Job {
                    kind: JobKind::PatientWait,
                    due: self.now + span(self.rules.patient_wait),
                });
            }
            Kind::Callback => {
                self.to(Status::CallingPatient);
                self.call_patient();
            }
        }
    }

    fn call_patient(&mut self) {
        let attempt = self.c().patient_attempts + 1;
        let uniqueid = self.rules.patient_leg(self.c().id, attempt);
        self.step.next.patient_attempts = attempt;
        self.step.next.patient_leg = Some(uniqueid.clone());
        self.step.next.updated = self.now;
        self.step.requests.push(Request::Call {
            party: Party::Patient,
            uniqueid,
            timeout: self.rules.patient_ring_timeout,
        });
    }

    fn patient_not_reached(&mut self, why: NoAnswer) {
        self.step.next.patient_leg = None;
        self.step.next.updated = self.now;
        if self.c().patient_attempts <= self.rules.patient_retries {
            self.step.schedule.push(Job {
                kind: JobKind::PatientRetry,
                due: self.now + span(self.rules.patient_retry_interval),
            });
            return;
        }
        let reason = match why {
            NoAnswer::Busy => "patient-busy",
            NoAnswer::NoAnswer => "patient-no-answer",
            NoAnswer::Failed => "patient-call-failed",
        };
        self.end(Status::Missed, reason);
    }

    fn in_progress(&mut self) {
        self.step.unschedule.push(JobKind::PatientWait);
        self.step.next.started_at = Some(self.now);
        self.to(Status::InProgress);
        let limit = self.now + Duration::minutes(i64::from(self.c().duration_min));
        self.step.schedule.push(Job {
            kind: JobKind::DurationLimit,
            due: limit,
        });
        if let Some(before) = self.rules.warning_before {
            let before = span(before);
            if before < Duration::minutes(i64::from(self.c().duration_min)) {
                self.step.schedule.push(Job {
                    kind: JobKind::Warning,
                    due: limit - before,
                });
            }
        }
    }

    /// Ends it: every live leg hung up, every job dropped.
    fn end(&mut self, status: Status, reason: &str) {
        let next = &mut self.step.next;
        for leg in [next.doctor_leg.take(), next.patient_leg.take()]
            .into_iter()
            .flatten()
        {
            self.step.requests.push(Request::Hangup { uniqueid: leg });
        }
        next.ended_at = Some(self.now);
        next.end_reason = Some(reason.to_owned());
        self.to(status);
        self.step.unschedule = JobKind::ALL.to_vec();
        self.step.schedule.clear();
    }

    fn terminate(&mut self, reason: Option<&str>) {
        let (status, begin_at) = (self.c().status, self.c().begin_at);
        if status.is_terminal() {
            self.step.answer = Some(TerminateAnswer::Refused(ALREADY_ENDED));
            return;
        }
        if status == Status::Scheduled && begin_at - self.now <= span(self.rules.lock_window) {
            self.step.answer = Some(TerminateAnswer::Refused(ABOUT_TO_START));
            return;
        }
        self.step.next.terminate_reason = reason.map(str::to_owned);
        if status == Status::Scheduled {
            self.end(Status::Cancelled, "cancelled");
        } else {
            self.end(Status::Terminated, "terminated");
        }
        self.step.answer = Some(TerminateAnswer::Done);
    }
}

#[cfg(test)]
mod tests;
