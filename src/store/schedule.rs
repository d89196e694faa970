//! Persistence for the booking schedule (SPEC §8 "schedule"): LPUs, timetable cells,
//! patients, upserted by the schedule import; never deleted by it.
//!
//! One transaction on the store thread: load the GUIDs of the stored LPUs and of the
//! directory's doctors once (two sets, not a query per cell), let
//! [`ValidSchedule::check_references`] refuse a cell naming neither, then for each entry
//! ask SQLite whether the stored row equals it in every column the document sets (one
//! point query, no row decoded) and let [`Upsert::decide`] say insert, update or leave
//! alone. An update sets only the document's columns: `booking_cells.booked_count`
//! (medcall's own appointments) is never written here, nor any ticket table.
//!
//! Cells and patients are written in key order: the tables are `WITHOUT ROWID`, keyed by
//! random GUIDs, and a million inserts in document order would touch B-tree pages at
//! random, spilling the page cache; in key order each page is filled once.

use std::collections::HashSet;

use rusqlite::types::{FromSql, FromSqlResult, ValueRef};
use rusqlite::{OptionalExtension, Transaction, params};

use super::column::{read, unreadable};
use super::time::StoredTime;
use super::{Store, StoreError};
use crate::booking::Guid;
use crate::booking::schedule::{ScheduleCounts, ScheduleDocument, Upsert, ValidSchedule};
use crate::directory::DoctorGuid;

/// Why a schedule import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleImportError {
    /// The document was refused: every problem, each naming its entry. Nothing was
    /// written.
    #[error("the schedule document has invalid entries:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// The document is well formed but its entries conflict: with what is stored (a cell
    /// naming an LPU neither in the document nor stored, or a doctor the directory does
    /// not have) or with each other (one key given twice). Nothing was written.
    #[error("the schedule document conflicts with the stored schedule or directory:\n  {}", .0.join("\n  "))]
    Conflict(Vec<String>),
    /// The store failed; the transaction was rolled back, so nothing was written either.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How far an import has come: `done` of the document's `total` entries compared with
/// the store (and written when new or changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleProgress {
    pub done: usize,
    pub total: usize,
}

/// Progress is reported after this many entries, and after the last.
const PROGRESS_EVERY: usize = 4096;

/// A stored GUID, read strictly.
struct StoredGuid(Guid);

impl FromSql for StoredGuid {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<StoredGuid> {
        let text = value.as_str()?;
        match text.parse::<Guid>() {
            Ok(g) if g.as_str() == text => Ok(StoredGuid(g)),
            _ => Err(unreadable(text, "a GUID in lowercase")),
        }
    }
}

/// The GUIDs of every stored LPU and of every doctor of the directory.
fn known_guids(tx: &Transaction<'_>) -> rusqlite::Result<(HashSet<Guid>, HashSet<DoctorGuid>)> {
    let lpus = tx
        .prepare_cached("SELECT guid FROM booking_lpus")?
        .query_map([], |r| read::<StoredGuid>(r, 0).map(|g| g.0))?
        .collect::<rusqlite::Result<_>>()?;
    let doctors = tx
        .prepare_cached("SELECT guid FROM directory_doctors")?
        .query_map([], |r| read::<DoctorGuid>(r, 0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((lpus, doctors))
}

/// Counts entries as they are done and reports every [`PROGRESS_EVERY`] and the last.
struct Tally<'a> {
    done: usize,
    total: usize,
    progress: &'a dyn Fn(ScheduleProgress),
}

impl Tally<'_> {
    fn one(&mut self) {
        self.done += 1;
        if self.done % PROGRESS_EVERY == 0 || self.done == self.total {
            (self.progress)(ScheduleProgress {
                done: self.done,
                total: self.total,
            });
        }
    }
}

/// Writes what differs of `valid` (references already checked).
fn write_schedule(
    tx: &Transaction<'_>,
    mut valid: ValidSchedule,
    progress: &dyn Fn(ScheduleProgress),
) -> rusqlite::Result<ScheduleCounts> {
    let now = StoredTime::now();
    let mut counts = ScheduleCounts::default();
    let mut tally = Tally {
        done: 0,
        total: valid.len(),
        progress,
    };

    let mut same = tx.prepare_cached(
        "SELECT is_children_polyclinic IS ?2 AND utc_offset_minutes IS ?3 AND document IS ?4
         FROM booking_lpus WHERE guid = ?1",
    )?;
    let mut up = tx.prepare_cached(
        "INSERT INTO booking_lpus (guid, is_children_polyclinic, utc_offset_minutes, document, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (guid) DO UPDATE SET is_children_polyclinic = excluded.is_children_polyclinic,
             utc_offset_minutes = excluded.utc_offset_minutes, document = excluded.document,
             updated_at = excluded.updated_at",
    )?;
    for l in &valid.lpus {
        let columns = params![
            l.guid.as_str(),
            l.is_children_polyclinic,
            l.utc_offset.minutes(),
            l.document
        ];
        let stored = same.query_row(columns, |r| r.get(0)).optional()?;
        if Upsert::decide(stored).count(&mut counts.lpus) {
            up.execute(params![
                l.guid.as_str(),
                l.is_children_polyclinic,
                l.utc_offset.minutes(),
                l.document,
                now
            ])?;
        }
        tally.one();
    }

    valid
        .cells
        .sort_unstable_by(|a, b| a.guid.as_str().cmp(b.guid.as_str()));
    let mut same = tx.prepare_cached(
        "SELECT lpu_guid IS ?2 AND doc_guid IS ?3 AND begin_time IS ?4 AND end_time IS ?5
             AND begin_utc IS ?6 AND plan_count IS ?7 AND used_count IS ?8 AND room IS ?9
             AND flat IS ?10 AND busy_type IS ?11 AND uchastok_num IS ?12
             AND age_categories IS ?13 AND dispensary_required IS ?14
         FROM booking_cells WHERE guid = ?1",
    )?;
    // `booked_count` is not among the columns: an insert takes its default (0), an update
    // keeps it.
    let mut up = tx.prepare_cached(
        "INSERT INTO booking_cells (guid, lpu_guid, doc_guid, begin_time, end_time, begin_utc,
             plan_count, used_count, room, flat, busy_type, uchastok_num, age_categories,
             dispensary_required, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (guid) DO UPDATE SET lpu_guid = excluded.lpu_guid,
             doc_guid = excluded.doc_guid, begin_time = excluded.begin_time,
             end_time = excluded.end_time, begin_utc = excluded.begin_utc,
             plan_count = excluded.plan_count, used_count = excluded.used_count,
             room = excluded.room, flat = excluded.flat, busy_type = excluded.busy_type,
             uchastok_num = excluded.uchastok_num, age_categories = excluded.age_categories,
             dispensary_required = excluded.dispensary_required,
             updated_at = excluded.updated_at",
    )?;
    // Into an empty table (the first import) every cell is new: no lookups.
    let none_stored = !tx.query_row("SELECT EXISTS (SELECT 1 FROM booking_cells)", [], |r| {
        r.get::<_, bool>(0)
    })?;
    for c in &valid.cells {
        let begin_utc = StoredTime::at(c.begin_utc);
        let busy_type = c.busy_type.json();
        let stored = if none_stored {
            None
        } else {
            same.query_row(
                params![
                    c.guid.as_str(),
                    c.lpu.as_str(),
                    c.doctor.as_str(),
                    c.begin_time,
                    c.end_time,
                    begin_utc,
                    c.plan_count,
                    c.used_count,
                    c.room,
                    c.flat,
                    busy_type,
                    c.uchastok_num,
                    c.ages.bits(),
                    c.dispensary_required
                ],
                |r| r.get(0),
            )
            .optional()?
        };
        if Upsert::decide(stored).count(&mut counts.cells) {
            up.execute(params![
                c.guid.as_str(),
                c.lpu.as_str(),
                c.doctor.as_str(),
                c.begin_time,
                c.end_time,
                begin_utc,
                c.plan_count,
                c.used_count,
                c.room,
                c.flat,
                busy_type,
                c.uchastok_num,
                c.ages.bits(),
                c.dispensary_required,
                now
            ])?;
        }
        tally.one();
    }

    valid
        .patients
        .sort_unstable_by(|a, b| a.policy_number.cmp(&b.policy_number));
    let mut same = tx.prepare_cached(
        "SELECT birth_date IS ?2 AND full_name IS ?3 AND self_booking_forbidden IS ?4
             AND dispensary IS ?5
         FROM booking_patients WHERE policy_number = ?1",
    )?;
    let mut up = tx.prepare_cached(
        "INSERT INTO booking_patients (policy_number, birth_date, full_name,
             self_booking_forbidden, dispensary, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (policy_number) DO UPDATE SET birth_date = excluded.birth_date,
             full_name = excluded.full_name,
             self_booking_forbidden = excluded.self_booking_forbidden,
             dispensary = excluded.dispensary, updated_at = excluded.updated_at",
    )?;
    for p in &valid.patients {
        let birth_date = p.birth_date_text();
        let dispensary = p.dispensary_json();
        let stored = same
            .query_row(
                params![
                    p.policy_number.as_str(),
                    birth_date,
                    p.full_name,
                    p.self_booking_forbidden,
                    dispensary
                ],
                |r| r.get(0),
            )
            .optional()?;
        if Upsert::decide(stored).count(&mut counts.patients) {
            up.execute(params![
                p.policy_number.as_str(),
                birth_date,
                p.full_name,
                p.self_booking_forbidden,
                dispensary,
                now
            ])?;
        }
        tally.one();
    }
    Ok(counts)
}

impl Store {
    /// Validates the schedule document whole and upserts it in one transaction: entries
    /// that are new are inserted, those that differ updated, equal ones left alone (and
    /// counted so: a second import of the same document writes nothing). Nothing is
    /// deleted; a cell's `booked_count` is never written.
    ///
    /// # Errors
    /// [`ScheduleImportError::Invalid`] with every problem when an entry is malformed,
    /// [`ScheduleImportError::Conflict`] when a key is given twice or a cell names an LPU
    /// or doctor that is neither in the document nor stored, or
    /// [`ScheduleImportError::Store`]; whichever, nothing is written.
    pub async fn import_schedule(
        &self,
        doc: ScheduleDocument,
    ) -> Result<ScheduleCounts, ScheduleImportError> {
        self.import_schedule_with_progress(doc, |_| {}).await
    }

    /// [`Store::import_schedule`], calling `progress` on the store thread as entries are
    /// compared and written (every few thousand, and after the last).
    ///
    /// # Errors
    /// As [`Store::import_schedule`].
    pub async fn import_schedule_with_progress(
        &self,
        doc: ScheduleDocument,
        progress: impl Fn(ScheduleProgress) + Send + 'static,
    ) -> Result<ScheduleCounts, ScheduleImportError> {
        // A million cells take a second to validate: off the async runtime, and before
        // the store thread is taken.
        let valid = tokio::task::spawn_blocking(move || doc.validate_classified())
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(|(problems, only_duplicates)| {
                if only_duplicates {
                    ScheduleImportError::Conflict(problems)
                } else {
                    ScheduleImportError::Invalid(problems)
                }
            })?;
        let decided = self
            .transaction(move |tx| {
                let (lpus, doctors) = known_guids(tx)?;
                match valid.check_references(&lpus, &doctors) {
                    Ok(()) => Ok(Ok(write_schedule(tx, valid, &progress)?)),
                    // Nothing was written: committing the reads changes nothing.
                    Err(problems) => Ok(Err(problems)),
                }
            })
            .await?;
        decided.map_err(ScheduleImportError::Conflict)
    }
}

#[cfg(test)]
mod tests;
