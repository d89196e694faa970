//! Booking's SQL (seed 004): the facts a reservation, confirmation or cancellation is
//! decided on, the writes of each decision, the ticket as answered, the lapse sweeper
//! and the replay table of signed requests. The decisions are `booking::rules`'.
//!
//! Every signed write is one grouped job ([`Store::grouped`]): the replay lookup, the
//! facts, the decision, the writes, the rendered answer and its replay row are one
//! savepoint of a transaction shared with the writes queued beside it, so the capacity
//! check and the hold are serial (no two reservations see the same free place) and an
//! acknowledged reservation is on disk (`FULL`) before its answer leaves.

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};

use super::column::{BadValue, Json, read};
use super::{Store, StoreError, StoredTime};
use crate::booking::rules::{
    self, Cancellation, CellFacts, ConfirmFacts, Confirmation, Hold, LpuFacts, OtherAppointment,
    PatientAsk, PatientFacts, Refusal, ReservationAsk, ReservationFacts, TicketFacts, TicketState,
};
use crate::booking::ticket::{HistoryEntry, Ticket, TicketDoctor, lapse_entry};
use crate::booking::{AgeMask, Guid, UtcOffset};

/// A signed request's identity in the replay table: the same client and signature is
/// the same request (the signature covers method, target, timestamp and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayKey {
    pub client_id: String,
    pub signature: String,
    /// Past the signature window of the request's timestamp: the row may go.
    pub keep_until: StoredTime,
}

/// An answer as sent: kept for a replay of the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Turns a decision into the answer sent (and kept for replays); the HTTP layer's.
pub type Render = Box<dyn FnOnce(Result<&Ticket, &Refusal>) -> StoredAnswer + Send>;

/// How many lapsed holds one sweep marks at most (the rest wait for the next).
pub const SWEEP_BATCH: usize = 1_000;

impl Store {
    /// `POST /visit/{lpu}/reservation`: the first answer again for a replay; otherwise
    /// the SPEC §7 rules, and on success a hold with its number and history.
    ///
    /// # Errors
    /// The store fails (nothing is written, nothing kept for a replay).
    pub async fn reserve(
        &self,
        key: ReplayKey,
        lpu: String,
        ask: ReservationAsk,
        now: StoredTime,
        render: Render,
    ) -> Result<StoredAnswer, StoreError> {
        self.grouped(move |c| {
            signed(c, &key, |c| {
                let lpu_guid = lpu.parse::<Guid>().ok();
                let (facts, offset) = reservation_facts(c, lpu_guid, &ask, now)?;
                match rules::reserve(&ask, &facts, now.time()) {
                    Err(refusal) => Ok(render(Err(&refusal))),
                    Ok(hold) => {
                        let (Some(cell), Some(offset)) = (&facts.cell, offset) else {
                            return Err(StoreError::Inconsistent("a hold without its cell or LPU"));
                        };
                        let guid = write_hold(c, cell, offset, &hold, &key.client_id, now)?;
                        render_ticket(c, &guid, &key.client_id, now, render)
                    }
                }
            })
        })
        .await
    }

    /// `POST …/reservation/{ticket}/confirm`: the hold becomes the patient's appointment.
    ///
    /// # Errors
    /// The store fails.
    pub async fn confirm(
        &self,
        key: ReplayKey,
        lpu: String,
        ticket: String,
        patient: Result<PatientAsk, String>,
        now: StoredTime,
        render: Render,
    ) -> Result<StoredAnswer, StoreError> {
        self.grouped(move |c| {
            signed(c, &key, |c| {
                let lpu_guid = lpu.parse::<Guid>().ok();
                let Some(found) = ticket_facts(c, &ticket, &key.client_id)? else {
                    return Ok(render(Err(&Refusal::NotFound)));
                };
                let (guid, facts) = found;
                lapse_if_due(c, &guid, &facts, &key.client_id, now)?;
                let confirm_facts =
                    confirm_facts(c, &guid, facts, lpu_guid, patient.as_ref().ok(), now)?;
                match rules::confirm(
                    patient.as_ref().map_err(Clone::clone),
                    &confirm_facts,
                    now.time(),
                ) {
                    Err(refusal) => Ok(render(Err(&refusal))),
                    Ok(decision) => {
                        if let (Confirmation::Confirm, Ok(p)) = (decision, &patient) {
                            write_confirm(c, &guid, p, &key.client_id, now)?;
                        }
                        render_ticket(c, &guid, &key.client_id, now, render)
                    }
                }
            })
        })
        .await
    }

    /// `DELETE …/reservation/{ticket}`: a live hold or an appointment is cancelled and
    /// its place freed; an ended ticket is answered as it is.
    ///
    /// # Errors
    /// The store fails.
    pub async fn cancel(
        &self,
        key: ReplayKey,
        lpu: String,
        ticket: String,
        now: StoredTime,
        render: Render,
    ) -> Result<StoredAnswer, StoreError> {
        self.grouped(move |c| {
            signed(c, &key, |c| {
                let lpu_guid = lpu.parse::<Guid>().ok();
                let found = ticket_facts(c, &ticket, &key.client_id)?;
                let decision = rules::cancel(
                    found.as_ref().map(|(_, f)| f),
                    lpu_guid.as_ref(),
                    now.time(),
                );
                let guid = match (decision, found) {
                    (Err(refusal), _) => return Ok(render(Err(&refusal))),
                    (Ok(_), None) => return Ok(render(Err(&Refusal::NotFound))),
                    (Ok(decision), Some((guid, facts))) => {
                        lapse_if_due(c, &guid, &facts, &key.client_id, now)?;
                        if let Cancellation::Cancel { was_appointment } = decision {
                            write_cancel(c, &guid, &facts, was_appointment, &key.client_id, now)?;
                        }
                        guid
                    }
                };
                render_ticket(c, &guid, &key.client_id, now, render)
            })
        })
        .await
    }

    /// The ticket `guid` of `client` at the LPU `lpu`, as it is at `now` (`None`: no such
    /// ticket there, or another client's).
    ///
    /// # Errors
    /// The store fails, or a stored value does not read.
    pub async fn ticket(
        &self,
        client_id: String,
        lpu: String,
        guid: String,
        now: StoredTime,
    ) -> Result<Option<Ticket>, StoreError> {
        self.call(move |c| {
            let (Ok(lpu), Ok(guid)) = (lpu.parse::<Guid>(), guid.parse::<Guid>()) else {
                return Ok(None);
            };
            Ok(load_ticket(c, &guid, &client_id, now)?.filter(|t| t.lpu_guid == lpu))
        })
        .await
    }

    /// Marks the holds lapsed by `now` expired (at most a batch; the history entry is
    /// dated when each lapsed) and forgets replays past their window. Returns how many
    /// holds it marked.
    ///
    /// # Errors
    /// The store fails.
    pub async fn sweep_bookings(&self, now: StoredTime) -> Result<usize, StoreError> {
        self.transaction(move |tx| {
            let due: Vec<(Guid, String, StoredTime)> = {
                let mut st = tx.prepare_cached(
                    "SELECT guid, client_id, expires_at FROM booking_tickets
                     WHERE state = 'held' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
                )?;
                let rows = st.query_map(params![now, SWEEP_BATCH as i64], |r| {
                    Ok((read(r, 0)?, read(r, 1)?, read(r, 2)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            for (guid, client, expires) in &due {
                expire(tx, guid, client, *expires)?;
            }
            tx.execute(
                "DELETE FROM booking_replays WHERE keep_until < ?1",
                params![now],
            )?;
            Ok(due.len())
        })
        .await
    }
}

/// The answer for the ticket `guid` this job just wrote or read, as it is now.
fn render_ticket(
    c: &Connection,
    guid: &Guid,
    client_id: &str,
    now: StoredTime,
    render: Render,
) -> Result<StoredAnswer, StoreError> {
    let ticket = load_ticket(c, guid, client_id, now)?
        .ok_or(StoreError::Inconsistent("a ticket just written or read"))?;
    Ok(render(Ok(&ticket)))
}

/// The replay of `key` if it was answered; else `f`'s answer, kept for replays.
fn signed(
    c: &Connection,
    key: &ReplayKey,
    f: impl FnOnce(&Connection) -> Result<StoredAnswer, StoreError>,
) -> Result<StoredAnswer, StoreError> {
    let replay = c
        .prepare_cached(
            "SELECT status, body FROM booking_replays
             WHERE keep_until = ?1 AND client_id = ?2 AND signature = ?3",
        )?
        .query_row(params![key.keep_until, key.client_id, key.signature], |r| {
            Ok(StoredAnswer {
                status: read(r, 0)?,
                body: read(r, 1)?,
            })
        })
        .optional()?;
    if let Some(answer) = replay {
        return Ok(answer);
    }
    let answer = f(c)?;
    c.prepare_cached(
        "INSERT INTO booking_replays (client_id, signature, keep_until, status, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        key.client_id,
        key.signature,
        key.keep_until,
        answer.status,
        answer.body
    ])?;
    Ok(answer)
}

fn offset_of(minutes: i64) -> Result<UtcOffset, StoreError> {
    UtcOffset::from_minutes(minutes).ok_or_else(|| {
        StoreError::BadValue(BadValue {
            column: "utc_offset_minutes".into(),
            value: minutes.to_string(),
            expected: "an offset from UTC in minutes, within ±18 hours",
        })
    })
}

fn mask_of(bits: i64) -> Result<AgeMask, StoreError> {
    AgeMask::from_bits(bits).ok_or_else(|| {
        StoreError::BadValue(BadValue {
            column: "age_categories".into(),
            value: bits.to_string(),
            expected: "an age category mask (1-7)",
        })
    })
}

/// The holds of `cell` still live at `now`: its stored holds less those whose time is up
/// and the sweeper has not written down yet (a range of the holds index over the lapsed
/// holds only: usually none), so the check costs the same for a cell of ten thousand
/// holds as for one of ten.
fn live_holds(c: &Connection, cell: &Guid, now: StoredTime) -> Result<i64, StoreError> {
    let held: i64 = c
        .prepare_cached("SELECT held FROM booking_cell_holds WHERE cell_guid = ?1")?
        .query_row(params![cell], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if held == 0 {
        return Ok(0);
    }
    let lapsed: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM booking_tickets
             WHERE state = 'held' AND expires_at <= ?2 AND cell_guid = ?1",
        )?
        .query_row(params![cell, now], |r| r.get(0))?;
    Ok(held - lapsed)
}

/// The stored holds of `cell` move by `by` (a hold made, or one that ended).
fn count_hold(c: &Connection, cell: &Guid, by: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO booking_cell_holds (cell_guid, held) VALUES (?1, ?2)
         ON CONFLICT (cell_guid) DO UPDATE SET held = held + excluded.held",
    )?
    .execute(params![cell, by])?;
    Ok(())
}

/// The cell of `ticket`.
fn cell_of(c: &Connection, ticket: &Guid) -> Result<Guid, StoreError> {
    Ok(
        c.prepare_cached("SELECT cell_guid FROM booking_tickets WHERE guid = ?1")?
            .query_row(params![ticket], |r| read(r, 0))?,
    )
}

fn reservation_facts(
    c: &Connection,
    lpu_guid: Option<Guid>,
    ask: &ReservationAsk,
    now: StoredTime,
) -> Result<(ReservationFacts, Option<UtcOffset>), StoreError> {
    let lpu = match &lpu_guid {
        None => None,
        Some(guid) => c
            .prepare_cached(
                "SELECT is_children_polyclinic, utc_offset_minutes FROM booking_lpus WHERE guid = ?1",
            )?
            .query_row(params![guid], |r| Ok((read::<bool>(r, 0)?, read::<i64>(r, 1)?)))
            .optional()?,
    };
    let offset = lpu.map(|(_, m)| offset_of(m)).transpose()?;
    let cell = match &ask.time_table {
        rules::TimeTable::Cell(guid) => {
            let row = c
                .prepare_cached(
                    "SELECT lpu_guid, begin_utc, plan_count, used_count + booked_count, age_categories
                     FROM booking_cells WHERE guid = ?1",
                )?
                .query_row(params![guid], |r| {
                    Ok((
                        read::<Guid>(r, 0)?,
                        read::<StoredTime>(r, 1)?,
                        read::<i64>(r, 2)?,
                        read::<i64>(r, 3)?,
                        read::<i64>(r, 4)?,
                    ))
                })
                .optional()?;
            match row {
                None => None,
                Some((lpu_guid, begins, plan_count, used, bits)) => Some(CellFacts {
                    lpu_guid,
                    begins: begins.time(),
                    plan_count,
                    taken: used + live_holds(c, guid, now)?,
                    ages: mask_of(bits)?,
                }),
            }
        }
        _ => None,
    };
    let facts = ReservationFacts {
        lpu_guid,
        lpu: lpu.map(|(children, _)| LpuFacts {
            is_children_polyclinic: children,
        }),
        cell,
    };
    Ok((facts, offset))
}

/// Writes the hold: its number in the LPU's day of the appointment, the ticket, its
/// first history entry. Returns the ticket's GUID.
fn write_hold(
    c: &Connection,
    cell: &CellFacts,
    offset: UtcOffset,
    hold: &Hold,
    client_id: &str,
    now: StoredTime,
) -> Result<Guid, StoreError> {
    let day = offset.day(cell.begins);
    let n: i64 = c
        .prepare_cached(
            "INSERT INTO booking_numbers (lpu_guid, day, last) VALUES (?1, ?2, 1)
             ON CONFLICT (lpu_guid, day) DO UPDATE SET last = last + 1
             RETURNING last",
        )?
        .query_row(params![cell.lpu_guid, day], |r| r.get(0))?;
    let guid = Guid::time_ordered(now.time());
    c.prepare_cached(
        "INSERT INTO booking_tickets
         (guid, lpu_guid, cell_guid, client_id, num, state, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'held', ?6, ?7)",
    )?
    .execute(params![
        guid,
        cell.lpu_guid,
        hold.cell,
        client_id,
        format!("{n:03}"),
        now,
        StoredTime::at(hold.expires)
    ])?;
    count_hold(c, &hold.cell, 1)?;
    insert_history(
        c,
        &guid,
        &HistoryEntry {
            element: "Status".into(),
            old_value: String::new(),
            new_value: TicketState::Held.history_word().into(),
            editor: client_id.into(),
            client_id: client_id.into(),
            at: now.time(),
        },
    )?;
    Ok(guid)
}

fn insert_history(c: &Connection, ticket: &Guid, e: &HistoryEntry) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO booking_history
         (ticket_guid, seq, element, old_value, new_value, editor, client_id, at)
         VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM booking_history WHERE ticket_guid = ?1),
                 ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ticket,
        e.element,
        e.old_value,
        e.new_value,
        e.editor,
        e.client_id,
        StoredTime::at(e.at)
    ])?;
    Ok(())
}

/// A held ticket becomes expired, its history saying so at the moment it lapsed.
fn expire(
    c: &Connection,
    guid: &Guid,
    client_id: &str,
    expires: StoredTime,
) -> Result<(), StoreError> {
    let changed = c
        .prepare_cached(
            "UPDATE booking_tickets SET state = 'expired' WHERE guid = ?1 AND state = 'held'",
        )?
        .execute(params![guid])?;
    if changed == 1 {
        count_hold(c, &cell_of(c, guid)?, -1)?;
        insert_history(c, guid, &lapse_entry(client_id, expires.time()))?;
    }
    Ok(())
}

/// A write that finds a hold lapsed but not swept records the lapse first.
fn lapse_if_due(
    c: &Connection,
    guid: &Guid,
    facts: &TicketFacts,
    client_id: &str,
    now: StoredTime,
) -> Result<(), StoreError> {
    // Tickets are only ever loaded for their own client: `client_id` is the owner.
    if rules::lapsed_unswept(facts, now.time()) {
        expire(c, guid, client_id, StoredTime::at(facts.expires_at))?;
    }
    Ok(())
}

/// The ticket `text` of `client_id`, if it is one.
fn ticket_facts(
    c: &Connection,
    text: &str,
    client_id: &str,
) -> Result<Option<(Guid, TicketFacts)>, StoreError> {
    let Ok(guid) = text.parse::<Guid>() else {
        return Ok(None);
    };
    let facts = c
        .prepare_cached(
            "SELECT lpu_guid, state, expires_at, policy_number FROM booking_tickets
             WHERE guid = ?1 AND client_id = ?2",
        )?
        .query_row(params![guid, client_id], |r| {
            Ok(TicketFacts {
                lpu_guid: read(r, 0)?,
                state: read(r, 1)?,
                expires_at: read::<StoredTime>(r, 2)?.time(),
                policy_number: read(r, 3)?,
            })
        })
        .optional()?;
    Ok(facts.map(|f| (guid, f)))
}

fn confirm_facts(
    c: &Connection,
    guid: &Guid,
    ticket: TicketFacts,
    lpu_guid: Option<Guid>,
    patient: Option<&PatientAsk>,
    now: StoredTime,
) -> Result<ConfirmFacts, StoreError> {
    let (dispensary_required, speciality): (bool, String) = c
        .prepare_cached(
            "SELECT c.dispensary_required, d.speciality
             FROM booking_tickets t
             JOIN booking_cells c ON c.guid = t.cell_guid
             JOIN directory_doctors d ON d.guid = c.doc_guid
             WHERE t.guid = ?1",
        )?
        .query_row(params![guid], |r| Ok((read(r, 0)?, read(r, 1)?)))?;
    let mut facts = ConfirmFacts {
        ticket: Some(ticket),
        lpu_guid,
        patient: None,
        dispensary_required,
        speciality,
        appointments: Vec::new(),
    };
    let Some(patient) = patient else {
        return Ok(facts);
    };
    facts.patient = c
        .prepare_cached(
            "SELECT birth_date, full_name, self_booking_forbidden, dispensary
             FROM booking_patients WHERE policy_number = ?1",
        )?
        .query_row(params![patient.policy_number], |r| {
            let birth: String = read(r, 0)?;
            Ok((
                birth,
                read(r, 1)?,
                read(r, 2)?,
                read::<Json<Vec<String>>>(r, 3)?,
            ))
        })
        .optional()?
        .map(|(birth, full_name, forbidden, Json(dispensary))| {
            let birth_date = NaiveDate::parse_from_str(&birth, "%Y-%m-%d").map_err(|_| {
                StoreError::BadValue(BadValue {
                    column: "birth_date".into(),
                    value: birth.clone(),
                    expected: "a date (YYYY-MM-DD)",
                })
            })?;
            Ok::<_, StoreError>(PatientFacts {
                birth_date,
                full_name,
                self_booking_forbidden: forbidden,
                dispensary,
            })
        })
        .transpose()?;
    let mut st = c.prepare_cached(
        "SELECT d.speciality, d.full_name, c.begin_utc, l.utc_offset_minutes
         FROM booking_tickets t
         JOIN booking_cells c ON c.guid = t.cell_guid
         JOIN booking_lpus l ON l.guid = t.lpu_guid
         JOIN directory_doctors d ON d.guid = c.doc_guid
         WHERE t.policy_number = ?1 AND t.state = 'appointment' AND t.guid <> ?2
           AND c.begin_utc > ?3
         ORDER BY c.begin_utc",
    )?;
    let rows = st.query_map(params![patient.policy_number, guid, now], |r| {
        Ok((
            read::<String>(r, 0)?,
            read::<String>(r, 1)?,
            read::<StoredTime>(r, 2)?,
            read::<i64>(r, 3)?,
        ))
    })?;
    for row in rows {
        let (speciality, doctor, begins, minutes) = row?;
        let at = begins
            .time()
            .with_timezone(&offset_of(minutes)?.offset())
            .format("%d.%m.%Y %H:%M")
            .to_string();
        facts.appointments.push(OtherAppointment {
            speciality,
            doctor,
            at,
        });
    }
    Ok(facts)
}

fn write_confirm(
    c: &Connection,
    guid: &Guid,
    patient: &PatientAsk,
    client_id: &str,
    now: StoredTime,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE booking_tickets SET state = 'appointment', policy_number = ?2,
                patient_name = ?3, birth_date = ?4
         WHERE guid = ?1",
    )?
    .execute(params![
        guid,
        patient.policy_number,
        patient.full_name,
        patient.birth_date.format("%Y-%m-%d").to_string()
    ])?;
    c.prepare_cached(
        "UPDATE booking_cells SET booked_count = booked_count + 1
         WHERE guid = (SELECT cell_guid FROM booking_tickets WHERE guid = ?1)",
    )?
    .execute(params![guid])?;
    count_hold(c, &cell_of(c, guid)?, -1)?;
    insert_history(
        c,
        guid,
        &HistoryEntry {
            element: "Status".into(),
            old_value: TicketState::Held.history_word().into(),
            new_value: TicketState::Appointment.history_word().into(),
            editor: client_id.into(),
            client_id: client_id.into(),
            at: now.time(),
        },
    )
}

fn write_cancel(
    c: &Connection,
    guid: &Guid,
    facts: &TicketFacts,
    was_appointment: bool,
    client_id: &str,
    now: StoredTime,
) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE booking_tickets SET state = 'cancelled' WHERE guid = ?1")?
        .execute(params![guid])?;
    if was_appointment {
        c.prepare_cached(
            "UPDATE booking_cells SET booked_count = booked_count - 1
             WHERE guid = (SELECT cell_guid FROM booking_tickets WHERE guid = ?1)",
        )?
        .execute(params![guid])?;
    } else {
        count_hold(c, &cell_of(c, guid)?, -1)?;
    }
    insert_history(
        c,
        guid,
        &HistoryEntry {
            element: "Status".into(),
            old_value: facts.state.history_word().into(),
            new_value: TicketState::Cancelled.history_word().into(),
            editor: client_id.into(),
            client_id: client_id.into(),
            at: now.time(),
        },
    )
}

/// The ticket as answered, with the state and history it has at `now`.
fn load_ticket(
    c: &Connection,
    guid: &Guid,
    client_id: &str,
    now: StoredTime,
) -> Result<Option<Ticket>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT t.lpu_guid, l.document, l.utc_offset_minutes, t.cell_guid,
                    c.begin_time, c.end_time, c.plan_count, c.used_count + c.booked_count,
                    c.room, c.flat, c.busy_type, c.uchastok_num,
                    d.guid, d.full_name, d.role, d.speciality,
                    t.num, t.created_at, t.state, t.expires_at, t.policy_number
             FROM booking_tickets t
             JOIN booking_cells c ON c.guid = t.cell_guid
             JOIN booking_lpus l ON l.guid = t.lpu_guid
             JOIN directory_doctors d ON d.guid = c.doc_guid
             WHERE t.guid = ?1 AND t.client_id = ?2",
        )?
        .query_row(params![guid, client_id], |r| {
            Ok((
                (
                    read::<Guid>(r, 0)?,
                    read::<String>(r, 1)?,
                    read::<i64>(r, 2)?,
                    read::<Guid>(r, 3)?,
                    read::<String>(r, 4)?,
                    read::<String>(r, 5)?,
                    read::<i64>(r, 6)?,
                    read::<i64>(r, 7)?,
                ),
                (
                    read::<String>(r, 8)?,
                    read::<i64>(r, 9)?,
                    read::<String>(r, 10)?,
                    read::<String>(r, 11)?,
                ),
                TicketDoctor {
                    guid: read(r, 12)?,
                    full_name: read(r, 13)?,
                    role: read(r, 14)?,
                    speciality: read(r, 15)?,
                },
                (
                    read::<String>(r, 16)?,
                    read::<StoredTime>(r, 17)?,
                    read::<TicketState>(r, 18)?,
                    read::<StoredTime>(r, 19)?,
                    read::<Option<String>>(r, 20)?,
                ),
            ))
        })
        .optional()?;
    let Some((
        (lpu_guid, lpu_document, minutes, cell_guid, begin_time, end_time, plan_count, used),
        (room, flat, busy_type, uchastok_num),
        doctor,
        (num, created_at, state, expires_at, policy_number),
    )) = row
    else {
        return Ok(None);
    };
    let mut history: Vec<HistoryEntry> = {
        let mut st = c.prepare_cached(
            "SELECT element, old_value, new_value, editor, client_id, at
             FROM booking_history WHERE ticket_guid = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map(params![guid], |r| {
            Ok(HistoryEntry {
                element: read(r, 0)?,
                old_value: read(r, 1)?,
                new_value: read(r, 2)?,
                editor: read(r, 3)?,
                client_id: read(r, 4)?,
                at: read::<StoredTime>(r, 5)?.time(),
            })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let facts = TicketFacts {
        lpu_guid: lpu_guid.clone(),
        state,
        expires_at: expires_at.time(),
        policy_number,
    };
    if rules::lapsed_unswept(&facts, now.time()) {
        history.push(lapse_entry(client_id, expires_at.time()));
    }
    let used_count = used + live_holds(c, &cell_guid, now)?;
    Ok(Some(Ticket {
        guid: guid.clone(),
        lpu_guid,
        lpu_document,
        offset: offset_of(minutes)?,
        cell_guid,
        begin_time,
        end_time,
        plan_count,
        used_count,
        room,
        flat,
        busy_type,
        uchastok_num,
        doctor,
        num,
        client_id: client_id.to_string(),
        created_at: created_at.time(),
        state: rules::state_at(&facts, now.time()),
        expires_at: expires_at.time(),
        history,
    }))
}
