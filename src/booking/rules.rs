//! The booking's rules (SPEC §7), pure: the check order of a reservation as one function
//! returning the first failing rule, and what confirming and cancelling a ticket do.
//! The store loads the facts ([`ReservationFacts`], [`ConfirmFacts`], [`TicketFacts`]),
//! a function here decides, the store writes the plan, in one transaction.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::{AgeCategory, AgeMask, Guid};

/// The longest hold, in minutes (`reserveTime` 1–60).
pub const MAX_RESERVE_MINUTES: i64 = 60;

/// Why a booking request is refused: the seed's error table (and SPEC §7's 4040, 4000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 5009: the signature is missing or wrong, the client unknown, the time stale.
    BadSignature,
    /// 4036: `timeTable` empty or the nil GUID.
    EmptyTimeTable,
    /// 4040: no such LPU, cell or ticket (or not of this LPU).
    NotFound,
    /// 4005: an ADULT booking at a children's polyclinic.
    ChildrenOnly,
    /// 4029: the cell is closed to the age category.
    AgeGroup,
    /// 4009: the cell is in the past or full; a hold that lapsed or was cancelled.
    Taken,
    /// 4000: a field out of range or malformed; the reason, in Russian.
    Invalid(String),
    /// 4007: the patient may not book by themselves.
    SelfBookingForbidden,
    /// 4007: the cell needs a dispensary registration the patient lacks.
    NotOnDispensaryRegister,
    /// 4008: the patient already has an appointment for this speciality.
    AlreadyBooked {
        /// The doctor of that appointment, and its time as the LPU writes it.
        doctor: String,
        at: String,
    },
}

/// The error's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Error,
    Validation,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Error => "Error",
            RefusalKind::Validation => "Validation",
        }
    }
}

impl Refusal {
    pub fn code(&self) -> u16 {
        match self {
            Refusal::BadSignature => 5009,
            Refusal::EmptyTimeTable => 4036,
            Refusal::NotFound => 4040,
            Refusal::ChildrenOnly => 4005,
            Refusal::AgeGroup => 4029,
            Refusal::Taken => 4009,
            Refusal::Invalid(_) => 4000,
            Refusal::SelfBookingForbidden | Refusal::NotOnDispensaryRegister => 4007,
            Refusal::AlreadyBooked { .. } => 4008,
        }
    }

    /// The HTTP status the seed gives the code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadSignature => 403,
            Refusal::NotFound => 404,
            _ => 400,
        }
    }

    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::BadSignature | Refusal::EmptyTimeTable | Refusal::NotFound => {
                RefusalKind::Error
            }
            _ => RefusalKind::Validation,
        }
    }

    /// The seed's message (4040 and 4000 are medcall's: the seed has none).
    pub fn message(&self) -> String {
        match self {
            Refusal::BadSignature => "Подпись запроса некорректна".into(),
            Refusal::EmptyTimeTable => {
                "Время и гайд врача или гайд ячейки расписания не должны быть пустыми".into()
            }
            Refusal::NotFound => "ЛПУ, ячейка расписания или запись на прием не найдены".into(),
            Refusal::ChildrenOnly => "Вы пытаетесь записаться в детское учреждение. Запись пациентов старше 18 лет запрещена.".into(),
            Refusal::AgeGroup => "Запись недоступна для данной возрастной группы. Сотрудниками МО было установлено ограничение по возрасту при записи на прием.".into(),
            Refusal::Taken => "Это время уже занято. Выберите другое свободное время приема.".into(),
            Refusal::Invalid(reason) => format!("Некорректный запрос: {reason}"),
            Refusal::SelfBookingForbidden => "Вам запрещена самостоятельная запись на прием через интернет или инфомат. Для записи на прием обратитесь в регистратуру медицинского учреждения лично или по телефону.".into(),
            Refusal::NotOnDispensaryRegister => "Вы не состоите на диспансерном учете у данного специалиста. Запись невозможна.".into(),
            Refusal::AlreadyBooked { doctor, at } => format!("Вы уже записаны {doctor} на {at}. Запрещено иметь более одной активной записи на прием на одну специальность."),
        }
    }
}

/// `timeTable` as the request gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeTable {
    /// Absent, `null`, `""` or the nil GUID (4036).
    Empty,
    /// A value that is not a GUID: it names no cell (4040).
    NotAGuid,
    Cell(Guid),
}

/// A reservation request, each field as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationAsk {
    pub time_table: TimeTable,
    /// `None`: absent or not one of CHILD/TEEN/ADULT (4000, in its place).
    pub age_category: Option<AgeCategory>,
    /// `None`: absent or not an integer (4000, in its place).
    pub reserve_minutes: Option<i64>,
}

/// The LPU of the path, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LpuFacts {
    pub is_children_polyclinic: bool,
}

/// The requested cell, as stored, with its places taken now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellFacts {
    pub lpu_guid: Guid,
    pub begins: DateTime<Utc>,
    pub plan_count: i64,
    /// The document's `usedCount` + medcall's appointments + holds live at `now`.
    pub taken: i64,
    pub ages: AgeMask,
}

/// What a reservation is decided on: `None` for what is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationFacts {
    /// The path's LPU GUID, if it is one.
    pub lpu_guid: Option<Guid>,
    pub lpu: Option<LpuFacts>,
    pub cell: Option<CellFacts>,
}

/// A reservation allowed: hold the cell until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub cell: Guid,
    pub expires: DateTime<Utc>,
}

/// SPEC §7, in its order: the first rule the request breaks, or the hold to write.
///
/// # Errors
/// The first failing rule's [`Refusal`].
pub fn reserve(
    ask: &ReservationAsk,
    facts: &ReservationFacts,
    now: DateTime<Utc>,
) -> Result<Hold, Refusal> {
    let cell_guid = match &ask.time_table {
        TimeTable::Empty => return Err(Refusal::EmptyTimeTable),
        TimeTable::NotAGuid => return Err(Refusal::NotFound),
        TimeTable::Cell(guid) => guid,
    };
    let (Some(lpu_guid), Some(lpu), Some(cell)) = (&facts.lpu_guid, &facts.lpu, &facts.cell) else {
        return Err(Refusal::NotFound);
    };
    if &cell.lpu_guid != lpu_guid {
        return Err(Refusal::NotFound);
    }
    if lpu.is_children_polyclinic && ask.age_category == Some(AgeCategory::Adult) {
        return Err(Refusal::ChildrenOnly);
    }
    if let Some(age) = ask.age_category {
        if !cell.ages.allows(age) {
            return Err(Refusal::AgeGroup);
        }
    }
    if cell.begins <= now || cell.taken >= cell.plan_count {
        return Err(Refusal::Taken);
    }
    let minutes = match ask.reserve_minutes {
        Some(m @ 1..=MAX_RESERVE_MINUTES) => m,
        _ => {
            return Err(Refusal::Invalid(
                "reserveTime должно быть целым числом минут от 1 до 60".into(),
            ));
        }
    };
    if ask.age_category.is_none() {
        return Err(Refusal::Invalid(
            "ageCategory должно быть одним из CHILD, TEEN, ADULT".into(),
        ));
    }
    Ok(Hold {
        cell: cell_guid.clone(),
        expires: now + Duration::minutes(minutes),
    })
}

/// A ticket's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    /// Holding its place until `expires_at` (then it lapses by itself).
    Held,
    /// Confirmed for a patient: the place is taken for good.
    Appointment,
    Cancelled,
    /// A hold that lapsed.
    Expired,
}

impl TicketState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Held => "held",
            TicketState::Appointment => "appointment",
            TicketState::Cancelled => "cancelled",
            TicketState::Expired => "expired",
        }
    }

    pub fn parse(word: &str) -> Option<TicketState> {
        [
            TicketState::Held,
            TicketState::Appointment,
            TicketState::Cancelled,
            TicketState::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == word)
    }

    /// The word a history entry shows (`newValue`, `oldValue`).
    pub fn history_word(self) -> &'static str {
        match self {
            TicketState::Held => "Reserved",
            TicketState::Appointment => "Appointment",
            TicketState::Cancelled => "Cancelled",
            TicketState::Expired => "Expired",
        }
    }
}

/// A ticket as stored, for the decisions about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    pub lpu_guid: Guid,
    pub state: TicketState,
    pub expires_at: DateTime<Utc>,
    /// The patient of an appointment.
    pub policy_number: Option<String>,
}

/// A lapse: a hold whose time is up is expired from `expires_at` on, whether or not the
/// sweeper has written it yet.
pub fn state_at(ticket: &TicketFacts, now: DateTime<Utc>) -> TicketState {
    if ticket.state == TicketState::Held && ticket.expires_at <= now {
        TicketState::Expired
    } else {
        ticket.state
    }
}

/// Whether the hold lapsed but is still stored as held: the write that finds it so
/// records the expiry (at `expires_at`) first.
pub fn lapsed_unswept(ticket: &TicketFacts, now: DateTime<Utc>) -> bool {
    ticket.state == TicketState::Held && state_at(ticket, now) == TicketState::Expired
}

/// The patient of a confirmation, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAsk {
    pub policy_number: String,
    pub birth_date: NaiveDate,
    pub full_name: String,
}

/// A patient of the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientFacts {
    pub birth_date: NaiveDate,
    pub full_name: String,
    pub self_booking_forbidden: bool,
    /// The specialities the patient is on the dispensary register for.
    pub dispensary: Vec<String>,
}

/// Another coming appointment of the same patient, for 4008.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherAppointment {
    /// Its doctor's speciality.
    pub speciality: String,
    pub doctor: String,
    /// As the message shows it (`18.04.2019 08:45`, the LPU's local time).
    pub at: String,
}

/// What a confirmation is decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmFacts {
    /// `None`: no such ticket, or not of the path's LPU.
    pub ticket: Option<TicketFacts>,
    /// The path's LPU GUID, if it is one.
    pub lpu_guid: Option<Guid>,
    /// `None`: the policy is not in the register (no restriction is known of it).
    pub patient: Option<PatientFacts>,
    /// The cell admits only patients on the register for `speciality`.
    pub dispensary_required: bool,
    pub speciality: String,
    /// The patient's other appointments still to come (other tickets), earliest first.
    pub appointments: Vec<OtherAppointment>,
}

/// What a confirmation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The hold becomes the patient's appointment.
    Confirm,
    /// Already this patient's appointment: nothing to write (a retry).
    AlreadyConfirmed,
}

/// Confirming a hold: 4040, then the patient's data (4000), then the ticket's state
/// (4009), then 4007 and 4008.
///
/// # Errors
/// The first failing rule's [`Refusal`].
pub fn confirm(
    patient: Result<&PatientAsk, String>,
    facts: &ConfirmFacts,
    now: DateTime<Utc>,
) -> Result<Confirmation, Refusal> {
    let Some(ticket) = &facts.ticket else {
        return Err(Refusal::NotFound);
    };
    if facts.lpu_guid.as_ref() != Some(&ticket.lpu_guid) {
        return Err(Refusal::NotFound);
    }
    let patient = patient.map_err(Refusal::Invalid)?;
    if let Some(known) = &facts.patient {
        if known.birth_date != patient.birth_date
            || !same_name(&known.full_name, &patient.full_name)
        {
            return Err(Refusal::Invalid(
                "данные пациента не совпадают с данными полиса".into(),
            ));
        }
    }
    match state_at(ticket, now) {
        TicketState::Held => {}
        TicketState::Appointment
            if ticket.policy_number.as_deref() == Some(patient.policy_number.as_str()) =>
        {
            return Ok(Confirmation::AlreadyConfirmed);
        }
        TicketState::Appointment | TicketState::Cancelled | TicketState::Expired => {
            return Err(Refusal::Taken);
        }
    }
    if facts
        .patient
        .as_ref()
        .is_some_and(|p| p.self_booking_forbidden)
    {
        return Err(Refusal::SelfBookingForbidden);
    }
    if facts.dispensary_required {
        let registered = facts
            .patient
            .as_ref()
            .is_some_and(|p| p.dispensary.iter().any(|s| same_name(s, &facts.speciality)));
        if !registered {
            return Err(Refusal::NotOnDispensaryRegister);
        }
    }
    let same = facts
        .appointments
        .iter()
        .find(|a| same_name(&a.speciality, &facts.speciality));
    if let Some(other) = same {
        return Err(Refusal::AlreadyBooked {
            doctor: other.doctor.clone(),
            at: other.at.clone(),
        });
    }
    Ok(Confirmation::Confirm)
}

/// Names compared as people write them: case and runs of spaces do not matter.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    norm(a) == norm(b)
}

/// What cancelling a ticket does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    /// A live hold or an appointment is cancelled; `was_appointment` frees a booked place.
    Cancel { was_appointment: bool },
    /// Already cancelled or expired: nothing changes (a retry, or too late).
    Unchanged,
}

/// Cancelling a hold or an appointment frees its place; a cancelled or lapsed ticket
/// stays as it is.
///
/// # Errors
/// 4040 for a ticket that is not there (or not of the path's LPU).
pub fn cancel(
    ticket: Option<&TicketFacts>,
    lpu_guid: Option<&Guid>,
    now: DateTime<Utc>,
) -> Result<Cancellation, Refusal> {
    let Some(ticket) = ticket else {
        return Err(Refusal::NotFound);
    };
    if lpu_guid != Some(&ticket.lpu_guid) {
        return Err(Refusal::NotFound);
    }
    Ok(match state_at(ticket, now) {
        TicketState::Held => Cancellation::Cancel {
            was_appointment: false,
        },
        TicketState::Appointment => Cancellation::Cancel {
            was_appointment: true,
        },
        TicketState::Cancelled | TicketState::Expired => Cancellation::Unchanged,
    })
}

#[cfg(test)]
mod tests;
