//! A ticket as answered: everything the seed's `TicketVisitWithLpu` shows, read by the
//! store in one go. The HTTP layer renders it; nothing here is a wire shape.

use chrono::{DateTime, Utc};

use super::rules::TicketState;
use super::{Guid, UtcOffset};

/// The cell's doctor, from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketDoctor {
    pub guid: String,
    pub full_name: String,
    pub role: String,
    pub speciality: String,
}

/// One change of a ticket (the seed's `DocumentHistory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// What changed: `Status`.
    pub element: String,
    pub old_value: String,
    pub new_value: String,
    /// Who changed it: the booking client's id, or `medcall` for a lapse.
    pub editor: String,
    /// The booking client the ticket belongs to (the entry's `client`).
    pub client_id: String,
    pub at: DateTime<Utc>,
}

/// Who changed a ticket when a hold lapses by itself.
pub const LAPSE_EDITOR: &str = "medcall";

/// The history entry a lapse writes (and a read shows before the sweeper wrote it).
pub fn lapse_entry(client_id: &str, expires_at: DateTime<Utc>) -> HistoryEntry {
    HistoryEntry {
        element: "Status".into(),
        old_value: TicketState::Held.history_word().into(),
        new_value: TicketState::Expired.history_word().into(),
        editor: LAPSE_EDITOR.into(),
        client_id: client_id.into(),
        at: expires_at,
    }
}

/// A ticket with its cell, doctor, LPU and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub guid: Guid,
    pub lpu_guid: Guid,
    /// The LPU object as imported (JSON text), answered as `lpu`.
    pub lpu_document: String,
    pub offset: UtcOffset,
    pub cell_guid: Guid,
    /// As the schedule gives them (`2019-04-18T08:45:00+03:00`).
    pub begin_time: String,
    pub end_time: String,
    pub plan_count: i64,
    /// Places taken now: the schedule's, medcall's appointments, live holds.
    pub used_count: i64,
    pub room: String,
    pub flat: i64,
    /// `{name, type, code}` as imported (JSON text).
    pub busy_type: String,
    pub uchastok_num: String,
    pub doctor: TicketDoctor,
    pub num: String,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    /// The state now (a lapsed hold reads as expired).
    pub state: TicketState,
    pub expires_at: DateTime<Utc>,
    /// Every change, oldest first (a lapse not yet swept included).
    pub history: Vec<HistoryEntry>,
}
