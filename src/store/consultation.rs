//! Consultations as stored (SPEC §4), their history, the get-all search, and the durable
//! scheduler's jobs. `consultation::lifecycle` decides; this file writes a step whole
//! (the record, its history entry, its notification, its jobs, and the fired job's
//! deletion) in one transaction, and reads.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, named_params, params_from_iter};

use super::column::{Json, read};
use super::time::{StoredTime, time, time_opt};
use super::{Store, StoreError};
use crate::consultation::lifecycle::{Job, JobKind};
use crate::consultation::model::{Attachment, Consultation, Kind, NewConsultation, Phone, Status};
use crate::directory::DoctorId;

/// Why a consultation was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("doctorId {0} is not in the directory.")]
    UnknownDoctor(DoctorId),
    /// Every join code tried was taken by an open consultation.
    #[error("no free join code")]
    NoJoinCode,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CreateError {
    fn from(e: rusqlite::Error) -> CreateError {
        CreateError::Store(e.into())
    }
}

/// The order of a get-all (SPEC §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Created,
    /// Lifecycle order ([`Status::rank`]), then creation.
    Status,
}

/// A get-all, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub kind: Kind,
    /// At most [`MAX_IDS`]; empty: no filter.
    pub ids: Vec<i64>,
    /// Empty: no filter.
    pub statuses: Vec<Status>,
    pub order: Order,
    pub asc: bool,
    pub limit: u32,
    pub offset: u32,
    /// Voip only.
    pub video: Option<bool>,
}

/// The most ids one get-all may name.
pub const MAX_IDS: usize = 1000;

/// A page of a get-all.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub items: Vec<Consultation>,
    pub total: u64,
}

/// A job that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueJob {
    pub id: i64,
    pub kind: JobKind,
    pub consultation: i64,
    pub due: DateTime<Utc>,
}

/// One step to store: the record after it, whether its status changed, its jobs, and
/// the job whose firing it is (deleted with it).
#[derive(Debug, Clone, PartialEq)]
pub struct StepWrite {
    pub next: Consultation,
    pub changed: bool,
    pub schedule: Vec<Job>,
    pub unschedule: Vec<JobKind>,
    pub fired: Option<i64>,
}

const COLUMNS: &str = "id, kind, doctor_id, patient_full_name, video, phone_code, \
     phone_number, status, created, updated, begin_at, duration_min, doctor_deadline, \
     started_at, ended_at, join_code, attachment, notify_url, end_reason, terminate_reason, \
     patient_attempts, doctor_leg, patient_leg, pbx";

/// The JSON of the `attachment` column.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAttachment {
    file_name: String,
    content_type: String,
    size: u64,
    sha256: String,
}

fn row_to_consultation(row: &Row<'_>) -> rusqlite::Result<Consultation> {
    let kind_word: String = read(row, 1)?;
    let kind = Kind::parse(&kind_word).ok_or_else(|| bad(1, &kind_word, "voip or callback"))?;
    let doctor: i64 = read(row, 2)?;
    let doctor = DoctorId::new(doctor).map_err(|_| bad(2, &doctor.to_string(), "a doctor id"))?;
    let video: i64 = read(row, 4)?;
    let phone = match (
        read::<Option<String>>(row, 5)?,
        read::<Option<String>>(row, 6)?,
    ) {
        (Some(code), Some(number)) => {
            Some(Phone::new(&code, &number).map_err(|_| bad(6, &number, "a phone number"))?)
        }
        _ => None,
    };
    let rank: i64 = read(row, 7)?;
    let status = Status::from_rank(rank).ok_or_else(|| bad(7, &rank.to_string(), "a status"))?;
    let attachment = read::<Option<Json<StoredAttachment>>>(row, 16)?.map(|Json(a)| Attachment {
        file_name: a.file_name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
    });
    let attempts: i64 = read(row, 20)?;
    Ok(Consultation {
        id: read(row, 0)?,
        kind,
        doctor,
        patient_full_name: read(row, 3)?,
        video_support: (kind == Kind::Voip).then_some(video != 0),
        patient_phone: phone,
        status,
        created: time(row, 8)?,
        updated: time(row, 9)?,
        begin_at: time(row, 10)?,
        duration_min: read(row, 11)?,
        doctor_deadline: time_opt(row, 12)?,
        started_at: time_opt(row, 13)?,
        ended_at: time_opt(row, 14)?,
        join_code: read(row, 15)?,
        attachment,
        notify_url: read(row, 17)?,
        end_reason: read(row, 18)?,
        terminate_reason: read(row, 19)?,
        patient_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        doctor_leg: read(row, 21)?,
        patient_leg: read(row, 22)?,
        pbx: read(row, 23)?,
        history: Vec::new(),
    })
}

fn bad(idx: usize, value: &str, expected: &'static str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        Box::new(super::column::BadValue {
            column: String::new(),
            value: value.to_owned(),
            expected,
        }),
    )
}

/// Fills in the history of `items` (one query for the page).
fn with_history(conn: &Connection, items: &mut [Consultation]) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; items.len()].join(",");
    let sql = format!(
        "SELECT consultation_id, status, at FROM consultation_history \
         WHERE consultation_id IN ({marks}) ORDER BY consultation_id, seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let ids = items.iter().map(|c| c.id);
    let mut rows = stmt.query(params_from_iter(ids))?;
    while let Some(row) = rows.next()? {
        let id: i64 = read(row, 0)?;
        let rank: i64 = read(row, 1)?;
        let status =
            Status::from_rank(rank).ok_or_else(|| bad(1, &rank.to_string(), "a status"))?;
        let at = time(row, 2)?;
        if let Some(c) = items.iter_mut().find(|c| c.id == id) {
            c.history.push((status, at));
        }
    }
    Ok(())
}

fn load(conn: &Connection, id: i64) -> Result<Option<Consultation>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM consultations WHERE id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([id], row_to_consultation)
        .optional()?;
    let Some(c) = found else { return Ok(None) };
    let mut items = [c];
    with_history(conn, &mut items)?;
    let [c] = items;
    Ok(Some(c))
}

/// A six-digit join code; the store retries on a clash with an open consultation.
fn join_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

const JOIN_CODE_TRIES: usize = 32;

fn insert(
    conn: &Connection,
    new: &NewConsultation,
    attachment: Option<&Attachment>,
    pbx: &str,
    now: StoredTime,
) -> Result<Consultation, CreateError> {
    let doctor_known = conn
        .prepare_cached("SELECT 1 FROM directory_doctors WHERE id = ?1")?
        .exists([new.doctor.get()])?;
    if !doctor_known {
        return Err(CreateError::UnknownDoctor(new.doctor));
    }
    let begin_at = new.begin_at.map(StoredTime::at).unwrap_or(now);
    let attachment_json = attachment
        .map(|a| {
            serde_json::to_string(&StoredAttachment {
                file_name: a.file_name.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
            })
        })
        .transpose()
        .map_err(|_| StoreError::Inconsistent("an attachment that does not serialise"))?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO consultations (kind, doctor_id, patient_full_name, video, phone_code, \
         phone_number, status, created, updated, begin_at, duration_min, join_code, \
         attachment, notify_url, pbx) \
         VALUES (:kind, :doctor, :name, :video, :code, :number, :status, :now, :now, :begin, \
         :duration, :join_code, :attachment, :url, :pbx)",
    )?;
    let mut tries = 0;
    let id = loop {
        let code = (new.kind == Kind::Voip).then(join_code);
        let inserted = stmt.execute(named_params! {
            ":kind": new.kind.as_str(),
            ":doctor": new.doctor.get(),
            ":name": new.patient_full_name,
            ":video": i64::from(new.video_support.unwrap_or(false)),
            ":code": new.patient_phone.as_ref().map(Phone::code),
            ":number": new.patient_phone.as_ref().map(Phone::number),
            ":status": Status::Scheduled.rank(),
            ":now": now,
            ":begin": begin_at,
            ":duration": new.duration_min,
            ":join_code": code,
            ":attachment": attachment_json,
            ":url": new.notify_url,
            ":pbx": pbx,
        });
        match inserted {
            Ok(_) => break conn.last_insert_rowid(),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation
                    && code.is_some()
                    && tries < JOIN_CODE_TRIES =>
            {
                tries += 1;
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation && code.is_some() =>
            {
                return Err(CreateError::NoJoinCode);
            }
            Err(e) => return Err(StoreError::from(e).into()),
        }
    };
    conn.prepare_cached(
        "INSERT INTO consultation_history (consultation_id, seq, status, at) VALUES (?1, 0, ?2, ?3)",
    )?
    .execute(rusqlite::params![id, Status::Scheduled.rank(), now])?;
    schedule(
        conn,
        id,
        &Job {
            kind: JobKind::Start,
            due: begin_at.time(),
        },
    )?;
    load(conn, id)?
        .ok_or(StoreError::Inconsistent("a consultation just inserted"))
        .map_err(CreateError::from)
}

fn schedule(conn: &Connection, consultation: i64, job: &Job) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO scheduled_jobs (due_at, kind, subject) VALUES (?1, ?2, ?3) \
         ON CONFLICT (subject, kind) DO UPDATE SET due_at = excluded.due_at",
    )?
    .execute(rusqlite::params![
        StoredTime::at(job.due),
        job.kind.as_str(),
        consultation
    ])?;
    Ok(())
}

fn write_step(conn: &Connection, w: &StepWrite) -> Result<(), StoreError> {
    let c = &w.next;
    let updated = conn
        .prepare_cached(
            "UPDATE consultations SET status = :status, updated = :updated, \
             doctor_deadline = :deadline, started_at = :started, ended_at = :ended, \
             end_reason = :end_reason, terminate_reason = :terminate_reason, \
             patient_attempts = :attempts, doctor_leg = :doctor_leg, patient_leg = :patient_leg \
             WHERE id = :id",
        )?
        .execute(named_params! {
            ":status": c.status.rank(),
            ":updated": StoredTime::at(c.updated),
            ":deadline": c.doctor_deadline.map(StoredTime::at),
            ":started": c.started_at.map(StoredTime::at),
            ":ended": c.ended_at.map(StoredTime::at),
            ":end_reason": c.end_reason,
            ":terminate_reason": c.terminate_reason,
            ":attempts": c.patient_attempts,
            ":doctor_leg": c.doctor_leg,
            ":patient_leg": c.patient_leg,
            ":id": c.id,
        })?;
    if updated != 1 {
        return Err(StoreError::Inconsistent(
            "a step of a consultation not stored",
        ));
    }
    if w.changed {
        let seq = c.history.len().saturating_sub(1);
        let (status, at) = c
            .history
            .last()
            .ok_or(StoreError::Inconsistent("a status change without history"))?;
        conn.prepare_cached(
            "INSERT INTO consultation_history (consultation_id, seq, status, at) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(rusqlite::params![
            c.id,
            seq,
            status.rank(),
            StoredTime::at(*at)
        ])?;
        notify(conn, c, *status, *at)?;
    }
    if let Some(job) = w.fired {
        conn.prepare_cached("DELETE FROM scheduled_jobs WHERE id = ?1")?
            .execute([job])?;
    }
    for kind in &w.unschedule {
        conn.prepare_cached("DELETE FROM scheduled_jobs WHERE subject = ?1 AND kind = ?2")?
            .execute(rusqlite::params![c.id, kind.as_str()])?;
    }
    for job in &w.schedule {
        schedule(conn, c.id, job)?;
    }
    Ok(())
}

/// The status change's notification, in the same transaction (SPEC §4.6).
fn notify(
    conn: &Connection,
    c: &Consultation,
    status: Status,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(url) = &c.notify_url else {
        return Ok(());
    };
    super::outbox::enqueue(
        conn,
        &super::outbox::NewNotification {
            consultation_id: c.id,
            url,
            status: status.as_str(),
            changed_at: at,
        },
    )?;
    Ok(())
}

/// The WHERE clause and parameters every get-all shares (kind, video).
fn base_filter(q: &ListQuery, sql: &mut String, params: &mut Vec<Value>) {
    sql.push_str("kind = ?");
    params.push(Value::Text(q.kind.as_str().to_owned()));
    if let Some(video) = q.video {
        sql.push_str(" AND video = ?");
        params.push(Value::Integer(i64::from(video)));
    }
}

fn order_by(q: &ListQuery, prefix: &str) -> String {
    let dir = if q.asc { "ASC" } else { "DESC" };
    match q.order {
        Order::Created => format!("{prefix}created {dir}, {prefix}id {dir}"),
        Order::Status => {
            format!("{prefix}status {dir}, {prefix}created {dir}, {prefix}id {dir}")
        }
    }
}

/// The SQL of a get-all page and its parameters (public to the crate for the
/// query-plan test).
pub(crate) fn page_sql(q: &ListQuery) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let mut sql = format!("SELECT {COLUMNS} FROM consultations WHERE ");
    let statuses = distinct(&q.statuses);
    if !q.ids.is_empty() {
        // A bounded id list: found by primary key, sorted in memory.
        base_filter(q, &mut sql, &mut params);
        let marks = vec!["?"; q.ids.len()].join(",");
        sql.push_str(&format!(" AND id IN ({marks})"));
        params.extend(q.ids.iter().map(|id| Value::Integer(*id)));
        if !statuses.is_empty() {
            let marks = vec!["?"; statuses.len()].join(",");
            sql.push_str(&format!(" AND status IN ({marks})"));
            params.extend(statuses.iter().map(|s| Value::Integer(s.rank())));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order_by(q, "")));
    } else if statuses.is_empty() {
        base_filter(q, &mut sql, &mut params);
        sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", order_by(q, "")));
    } else {
        // One index range per status, each cut at offset + limit, merged: an IN list
        // would make SQLite sort every matching row to find the first page.
        let keep = i64::from(q.offset) + i64::from(q.limit);
        let parts: Vec<String> = statuses
            .iter()
            .map(|s| {
                let mut part = format!("SELECT * FROM (SELECT {COLUMNS} FROM consultations WHERE ");
                base_filter(q, &mut part, &mut params);
                part.push_str(" AND status = ?");
                params.push(Value::Integer(s.rank()));
                part.push_str(&format!(
                    " ORDER BY {} LIMIT {keep})",
                    order_by(
                        &ListQuery {
                            order: Order::Created,
                            ..q.clone()
                        },
                        ""
                    )
                ));
                part
            })
            .collect();
        sql = format!(
            "SELECT * FROM ({}) ORDER BY {} LIMIT ? OFFSET ?",
            parts.join(" UNION ALL "),
            order_by(q, "")
        );
    }
    params.push(Value::Integer(i64::from(q.limit)));
    params.push(Value::Integer(i64::from(q.offset)));
    (sql, params)
}

fn distinct(statuses: &[Status]) -> Vec<Status> {
    let mut out: Vec<Status> = statuses.to_vec();
    out.sort();
    out.dedup();
    out
}

/// How many consultations match `q` (the `totalCount`): from the counts table unless
/// ids are named.
fn total(conn: &Connection, q: &ListQuery) -> Result<u64, StoreError> {
    let statuses = distinct(&q.statuses);
    let mut params = Vec::new();
    let mut sql;
    if q.ids.is_empty() {
        sql = String::from("SELECT COALESCE(SUM(n), 0) FROM consultation_counts WHERE ");
        base_filter(q, &mut sql, &mut params);
    } else {
        sql = String::from("SELECT COUNT(*) FROM consultations WHERE ");
        base_filter(q, &mut sql, &mut params);
        let marks = vec!["?"; q.ids.len()].join(",");
        sql.push_str(&format!(" AND id IN ({marks})"));
        params.extend(q.ids.iter().map(|id| Value::Integer(*id)));
    }
    if !statuses.is_empty() {
        let marks = vec!["?"; statuses.len()].join(",");
        sql.push_str(&format!(" AND status IN ({marks})"));
        params.extend(statuses.iter().map(|s| Value::Integer(s.rank())));
    }
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(params), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

impl Store {
    /// Stores a new consultation (status `Scheduled`, its start job at `beginAtUtc` or
    /// now) and answers it as stored.
    ///
    /// # Errors
    /// [`CreateError::UnknownDoctor`] when the doctor is not in the directory (nothing
    /// is written), or a store failure.
    pub async fn create_consultation(
        &self,
        new: NewConsultation,
        attachment: Option<Attachment>,
        pbx: String,
    ) -> Result<Consultation, CreateError> {
        let result = self
            .transaction(move |t| {
                let outcome = insert(t, &new, attachment.as_ref(), &pbx, StoredTime::now());
                match outcome {
                    Ok(c) => Ok(Ok(c)),
                    Err(CreateError::Store(e)) => Err(e),
                    Err(other) => Ok(Err(other)),
                }
            })
            .await;
        match result {
            Ok(inner) => inner,
            Err(e) => Err(CreateError::Store(e)),
        }
    }

    /// A consultation of `kind` with its history.
    ///
    /// # Errors
    /// A store failure.
    pub async fn consultation(
        &self,
        kind: Kind,
        id: i64,
    ) -> Result<Option<Consultation>, StoreError> {
        self.call(move |conn| Ok(load(conn, id)?.filter(|c| c.kind == kind)))
            .await
    }

    /// Any consultation by id (the runner's read).
    ///
    /// # Errors
    /// A store failure.
    pub async fn consultation_any(&self, id: i64) -> Result<Option<Consultation>, StoreError> {
        self.call(move |conn| load(conn, id)).await
    }

    /// The consultations of `ids` that exist, by id, in one store call (a fired batch
    /// of jobs loads its consultations together).
    ///
    /// # Errors
    /// A store failure.
    pub async fn consultations_by_id(
        &self,
        ids: Vec<i64>,
    ) -> Result<std::collections::HashMap<i64, Consultation>, StoreError> {
        self.call(move |conn| {
            let mut found = std::collections::HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(c) = load(conn, id)? {
                    found.insert(id, c);
                }
            }
            Ok(found)
        })
        .await
    }

    /// A get-all page and the count of all that match.
    ///
    /// # Errors
    /// A store failure.
    pub async fn consultations(&self, q: ListQuery) -> Result<ListPage, StoreError> {
        self.call(move |conn| {
            let (sql, params) = page_sql(&q);
            let mut items = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(params), row_to_consultation)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            with_history(conn, &mut items)?;
            let total = total(conn, &q)?;
            Ok(ListPage { items, total })
        })
        .await
    }

    /// The voip consultation whose join code is `code`: the open one, or else the one
    /// that ended last.
    ///
    /// # Errors
    /// A store failure.
    pub async fn consultation_by_join_code(
        &self,
        code: String,
    ) -> Result<Option<Consultation>, StoreError> {
        self.call(move |conn| {
            let id: Option<i64> = conn
                .prepare_cached(
                    "SELECT id FROM consultations WHERE join_code = ?1 \
                     ORDER BY ended_at IS NULL DESC, id DESC LIMIT 1",
                )?
                .query_row([code], |r| r.get(0))
                .optional()?;
            match id {
                Some(id) => load(conn, id),
                None => Ok(None),
            }
        })
        .await
    }

    /// The consultations started and not ended (restored by the runner at start).
    ///
    /// # Errors
    /// A store failure.
    pub async fn running_consultations(&self) -> Result<Vec<Consultation>, StoreError> {
        self.call(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM consultations WHERE status BETWEEN 1 AND 4 ORDER BY id"
            );
            let mut items = conn
                .prepare_cached(&sql)?
                .query_map([], row_to_consultation)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            with_history(conn, &mut items)?;
            Ok(items)
        })
        .await
    }

    /// Stores steps in one transaction, committed to disk before it returns.
    ///
    /// # Errors
    /// A store failure: none of the steps is stored.
    pub async fn write_consultation_steps(&self, steps: Vec<StepWrite>) -> Result<(), StoreError> {
        if steps.is_empty() {
            return Ok(());
        }
        self.transaction(move |tx| {
            for w in &steps {
                write_step(tx, w)?;
            }
            Ok(())
        })
        .await
    }

    /// Up to `limit` jobs due at `now`, earliest first.
    ///
    /// # Errors
    /// A store failure, or a job of a kind this medcall does not know.
    pub async fn due_jobs(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueJob>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, subject, due_at FROM scheduled_jobs \
                 WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![StoredTime::at(now), limit], |row| {
                let word: String = read(row, 1)?;
                let kind = JobKind::parse(&word).ok_or_else(|| bad(1, &word, "a job kind"))?;
                Ok(DueJob {
                    id: read(row, 0)?,
                    kind,
                    consultation: read(row, 2)?,
                    due: time(row, 3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// When the next job is due, if any.
    ///
    /// # Errors
    /// A store failure.
    pub async fn next_job_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.call(|conn| {
            let at: Option<StoredTime> = conn
                .prepare_cached("SELECT due_at FROM scheduled_jobs ORDER BY due_at, id LIMIT 1")?
                .query_row([], |r| read(r, 0))
                .optional()?;
            Ok(at.map(StoredTime::time))
        })
        .await
    }

    /// Drops a job without effects (its consultation is gone or ended).
    ///
    /// # Errors
    /// A store failure.
    pub async fn drop_job(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM scheduled_jobs WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
