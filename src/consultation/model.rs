//! A consultation's vocabulary: its kind, its statuses (SPEC §4.3), the patient's phone,
//! the attachment's description, and a new consultation as validated from a request.

use chrono::{DateTime, Utc};

use crate::directory::DoctorId;

/// The two kinds share one model and one table (SPEC §4): the prefix of their routes
/// says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Internet call (`/api/v1/voiprequest`): the patient joins by a join code.
    Voip,
    /// Callback (`/api/v1/callbackrequest`): medcall rings the patient's phone.
    Callback,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Voip => "voip",
            Kind::Callback => "callback",
        }
    }

    pub fn parse(word: &str) -> Option<Kind> {
        match word {
            "voip" => Some(Kind::Voip),
            "callback" => Some(Kind::Callback),
            _ => None,
        }
    }
}

/// SPEC §4.3, in lifecycle order: `order=Status` sorts by this order, and the store
/// keeps a status as its [`Status::rank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Scheduled,
    CallingDoctor,
    CallingPatient,
    WaitingForPatient,
    InProgress,
    Completed,
    Missed,
    Cancelled,
    Terminated,
    Failed,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Scheduled,
        Status::CallingDoctor,
        Status::CallingPatient,
        Status::WaitingForPatient,
        Status::InProgress,
        Status::Completed,
        Status::Missed,
        Status::Cancelled,
        Status::Terminated,
        Status::Failed,
    ];

    /// The seeds' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "Scheduled",
            Status::CallingDoctor => "CallingDoctor",
            Status::CallingPatient => "CallingPatient",
            Status::WaitingForPatient => "WaitingForPatient",
            Status::InProgress => "InProgress",
            Status::Completed => "Completed",
            Status::Missed => "Missed",
            Status::Cancelled => "Cancelled",
            Status::Terminated => "Terminated",
            Status::Failed => "Failed",
        }
    }

    /// Exactly the seeds' spelling (a filter naming an unknown status is an error, not
    /// an empty answer).
    pub fn parse(word: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// The position in lifecycle order, 0 for `Scheduled`.
    pub fn rank(self) -> i64 {
        Status::ALL.iter().position(|s| *s == self).unwrap_or(0) as i64
    }

    pub fn from_rank(rank: i64) -> Option<Status> {
        usize::try_from(rank)
            .ok()
            .and_then(|i| Status::ALL.get(i).copied())
    }

    /// Terminal statuses never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed
                | Status::Missed
                | Status::Cancelled
                | Status::Terminated
                | Status::Failed
        )
    }

    /// Started on the PBX and not ended: a terminate ends it as `Terminated`.
    pub fn is_running(self) -> bool {
        !self.is_terminal() && self != Status::Scheduled
    }
}

/// The patient's phone of a callback (seed 001's phone object): `code` 1–3 digits,
/// `number` 4–14 digits, both kept as the digits the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    code: String,
    number: String,
}

impl Phone {
    /// # Errors
    /// The message of the first field that is wrong.
    pub fn new(code: &str, number: &str) -> Result<Phone, &'static str> {
        Phone::with_all_problems(code, number).map_err(|problems| {
            problems
                .first()
                .copied()
                .unwrap_or("patientPhone is not a phone.")
        })
    }

    /// # Errors
    /// The message of every field that is wrong (never empty).
    pub fn with_all_problems(code: &str, number: &str) -> Result<Phone, Vec<&'static str>> {
        let digits = |s: &str, min: usize, max: usize| {
            (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        let mut problems = Vec::new();
        if !digits(code, 1, 3) {
            problems.push("patientPhone.code must be 1 to 3 digits.");
        }
        if !digits(number, 4, 14) {
            problems.push("patientPhone.number must be 4 to 14 digits.");
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Phone {
            code: code.to_owned(),
            number: number.to_owned(),
        })
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn number(&self) -> &str {
        &self.number
    }
}

/// An attachment as stored: described in the object, its bytes under
/// `data/attachments/<sha256>` (one copy per content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// A consultation as a request asked for it, every field valid (SPEC §4.1) but the
/// doctor's existence, which the store checks.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConsultation {
    pub kind: Kind,
    pub doctor: DoctorId,
    pub patient_full_name: String,
    /// Voip only (required there).
    pub video_support: Option<bool>,
    /// Callback only (required there).
    pub patient_phone: Option<Phone>,
    /// `None`: starts now.
    pub begin_at: Option<DateTime<Utc>>,
    /// Minutes, 1–240.
    pub duration_min: u32,
    pub notify_url: Option<String>,
}

/// A consultation as stored and answered (SPEC §4.2), with what the runner needs of its
/// legs on the PBX.
#[derive(Debug, Clone, PartialEq)]
pub struct Consultation {
    pub id: i64,
    pub kind: Kind,
    pub doctor: DoctorId,
    pub patient_full_name: String,
    pub video_support: Option<bool>,
    pub patient_phone: Option<Phone>,
    pub status: Status,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub begin_at: DateTime<Utc>,
    pub duration_min: u32,
    pub doctor_deadline: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub join_code: Option<String>,
    pub attachment: Option<Attachment>,
    pub notify_url: Option<String>,
    pub end_reason: Option<String>,
    pub terminate_reason: Option<String>,
    /// Callback: how many times the patient's phone has been dialled.
    pub patient_attempts: u32,
    /// The doctor's leg (the uniqueid medcall gave it) while it rings or is in.
    pub doctor_leg: Option<String>,
    /// The patient's leg while it rings (callback) or is in.
    pub patient_leg: Option<String>,
    /// The PBX it runs on.
    pub pbx: String,
    /// Every status it has had, with when, oldest first.
    pub history: Vec<(Status, DateTime<Utc>)>,
}

/// `<prefix><id>` (`consult-42`): the conference of consultation `id`. The prefix is
/// configurable so that two medcalls (a staging and a production one) can share a PBX.
pub fn conference_name(prefix: &str, id: i64) -> String {
    format!("{prefix}{id}")
}

/// The consultation a conference name belongs to, if it is one of this medcall's.
pub fn conference_id(prefix: &str, name: &str) -> Option<i64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|id| *id > 0)
}
