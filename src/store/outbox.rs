//! The webhook outbox as stored: notifications written inside a consultation's step,
//! the due heads the worker attempts (a consultation's oldest pending notification
//! only), each attempt's record, the routes' reads, and re-sends.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::column::read;
use super::time::{StoredTime, time, time_opt};
use super::{Store, StoreError};
use crate::outbox::model::{Attempt, DeliveryState, Notification, Outcome, Pending, Step};

/// A status change to notify, as the consultation's step hands it over.
#[derive(Debug)]
pub struct NewNotification<'a> {
    pub consultation_id: i64,
    pub url: &'a str,
    pub status: &'a str,
    pub changed_at: DateTime<Utc>,
}

/// Writes a notification inside the caller's open transaction; due at once (when it is
/// its consultation's oldest pending one).
///
/// # Errors
/// A store failure (the caller's transaction then rolls back, status change included).
pub(crate) fn enqueue(conn: &Connection, n: &NewNotification<'_>) -> Result<i64, StoreError> {
    let now = StoredTime::now();
    let event_id = crate::booking::Guid::random().to_string();
    conn.prepare_cached(
        "INSERT INTO outbox (event_id, consultation_id, url, status, changed_at, created_at, \
         state, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?6)",
    )?
    .execute(params![
        event_id,
        n.consultation_id,
        n.url,
        n.status,
        StoredTime::at(n.changed_at),
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

const PENDING_COLUMNS: &str =
    "o.id, o.event_id, o.consultation_id, o.url, o.status, o.changed_at, o.created_at, o.attempts";

/// Only a consultation's oldest pending notification is a head.
const IS_HEAD: &str = "o.state = 'pending' AND o.id = (SELECT MIN(p.id) FROM outbox p \
     WHERE p.consultation_id = o.consultation_id AND p.state = 'pending')";

fn pending_row(row: &Row<'_>) -> rusqlite::Result<Pending> {
    let attempts: i64 = read(row, 7)?;
    Ok(Pending {
        id: read(row, 0)?,
        event_id: read(row, 1)?,
        consultation_id: read(row, 2)?,
        url: read(row, 3)?,
        status: read(row, 4)?,
        changed_at: time(row, 5)?,
        created_at: time(row, 6)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}

fn state_word(word: &str) -> Option<DeliveryState> {
    DeliveryState::ALL.into_iter().find(|s| s.as_str() == word)
}

/// Why a re-send was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("Notification {0} not found.")]
    Unknown(i64),
    #[error("Notification {0} is still being delivered.")]
    StillPending(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Up to `limit` due heads at `now`, earliest first, skipping `busy` (in flight).
    ///
    /// # Errors
    /// A store failure.
    pub async fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: Vec<i64>,
    ) -> Result<Vec<Pending>, StoreError> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {PENDING_COLUMNS} FROM outbox o WHERE o.state = 'pending' \
                 AND o.next_attempt_at <= ?1 AND {IS_HEAD} ORDER BY o.next_attempt_at, o.id \
                 LIMIT ?2"
            );
            let take = i64::try_from(limit + busy.len()).unwrap_or(i64::MAX);
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params![StoredTime::at(now), take], pending_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter(|p| !busy.contains(&p.id))
                .take(limit)
                .collect())
        })
        .await
    }

    /// When the next head is due, if any is pending.
    ///
    /// # Errors
    /// A store failure.
    pub async fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.call(|conn| {
            let sql = format!(
                "SELECT o.next_attempt_at FROM outbox o WHERE o.state = 'pending' AND {IS_HEAD} \
                 ORDER BY o.next_attempt_at LIMIT 1"
            );
            let at: Option<StoredTime> = conn
                .prepare_cached(&sql)?
                .query_row([], |r| read(r, 0))
                .optional()?;
            Ok(at.map(StoredTime::time))
        })
        .await
    }

    /// Records attempts (notification id, the attempt, what follows it) in one
    /// transaction: the worker hands over every attempt finished meanwhile, so a busy
    /// outbox pays one commit for many.
    ///
    /// # Errors
    /// A store failure (nothing recorded: those attempts are made again).
    pub async fn record_attempts(&self, done: Vec<(i64, Attempt, Step)>) -> Result<(), StoreError> {
        self.transaction(move |tx| {
            for (id, attempt, step) in done {
                record_attempt(tx, id, &attempt, step)?;
            }
            Ok(())
        })
        .await
    }

    /// A consultation's notifications in order, each with its attempts.
    ///
    /// # Errors
    /// A store failure.
    pub async fn notifications(&self, consultation: i64) -> Result<Vec<Notification>, StoreError> {
        self.call(move |conn| {
            let mut list = conn
                .prepare_cached(
                    "SELECT id, event_id, consultation_id, url, status, changed_at, created_at, \
                     state, next_attempt_at, last_error, finished_at, resend_of \
                     FROM outbox WHERE consultation_id = ?1 ORDER BY id",
                )?
                .query_map([consultation], |row| {
                    let word: String = read(row, 7)?;
                    Ok(Notification {
                        id: read(row, 0)?,
                        event_id: read(row, 1)?,
                        consultation_id: read(row, 2)?,
                        url: read(row, 3)?,
                        status: read(row, 4)?,
                        changed_at: time(row, 5)?,
                        created_at: time(row, 6)?,
                        state: state_word(&word).unwrap_or(DeliveryState::Pending),
                        next_attempt_at: time_opt(row, 8)?,
                        last_error: read(row, 9)?,
                        finished_at: time_opt(row, 10)?,
                        resend_of: read(row, 11)?,
                        attempts: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT at, http_status, error, elapsed_ms FROM outbox_attempts \
                 WHERE outbox_id = ?1 ORDER BY n",
            )?;
            for n in &mut list {
                n.attempts = stmt
                    .query_map([n.id], |row| {
                        let status: Option<i64> = read(row, 1)?;
                        let error: Option<String> = read(row, 2)?;
                        let elapsed: i64 = read(row, 3)?;
                        Ok(Attempt {
                            at: time(row, 0)?,
                            outcome: match status {
                                Some(code) => Outcome::Answered(u16::try_from(code).unwrap_or(0)),
                                None => Outcome::Failed(error.unwrap_or_default()),
                            },
                            elapsed_ms: u64::try_from(elapsed).unwrap_or(0),
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                // Only the head's next attempt is really due; the others wait for it.
                if n.state != DeliveryState::Pending {
                    n.next_attempt_at = None;
                }
            }
            let head = list
                .iter()
                .find(|n| n.state == DeliveryState::Pending)
                .map(|n| n.id);
            for n in &mut list {
                if Some(n.id) != head {
                    n.next_attempt_at = None;
                }
            }
            Ok(list)
        })
        .await
    }

    /// Re-sends a delivered or given-up notification: a new one with the same event id
    /// at the end of its consultation's order. Answers the new one's id.
    ///
    /// # Errors
    /// An unknown id, one still pending, or a store failure.
    pub async fn resend_notification(&self, id: i64) -> Result<i64, ResendError> {
        let result = self
            .transaction(move |tx| {
                let state: Option<String> = tx
                    .prepare_cached("SELECT state FROM outbox WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                match state.as_deref() {
                    None => return Ok(Err(ResendError::Unknown(id))),
                    Some("pending") => return Ok(Err(ResendError::StillPending(id))),
                    Some(_) => {}
                }
                let now = StoredTime::now();
                tx.prepare_cached(
                    "INSERT INTO outbox (event_id, consultation_id, url, status, changed_at, \
                     created_at, state, next_attempt_at, resend_of) \
                     SELECT event_id, consultation_id, url, status, changed_at, ?2, 'pending', ?2, id \
                     FROM outbox WHERE id = ?1",
                )?
                .execute(params![id, now])?;
                Ok(Ok(tx.last_insert_rowid()))
            })
            .await;
        match result {
            Ok(inner) => inner,
            Err(e) => Err(ResendError::Store(e)),
        }
    }
}

/// One attempt of notification `id` and what follows it.
fn record_attempt(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    attempt: &Attempt,
    step: Step,
) -> Result<(), StoreError> {
    let n: i64 = tx
        .prepare_cached("SELECT attempts FROM outbox WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    let (status, error) = match &attempt.outcome {
        Outcome::Answered(code) => (Some(i64::from(*code)), None),
        Outcome::Failed(why) => (None, Some(why.clone())),
    };
    tx.prepare_cached(
        "INSERT INTO outbox_attempts (outbox_id, n, at, http_status, error, elapsed_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        n + 1,
        StoredTime::at(attempt.at),
        status,
        error,
        i64::try_from(attempt.elapsed_ms).unwrap_or(i64::MAX)
    ])?;
    let now = StoredTime::now();
    let (state, next, finished) = match step {
        Step::Delivered => ("delivered", None, Some(now)),
        Step::GiveUp => ("gave_up", None, Some(now)),
        Step::RetryAt(at) => ("pending", Some(StoredTime::at(at)), None),
    };
    tx.prepare_cached(
        "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_attempt_at = ?3, \
         finished_at = ?4, last_error = COALESCE(?5, last_error) WHERE id = ?1",
    )?
    .execute(params![
        id,
        state,
        next,
        finished,
        attempt.outcome.error_text()
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests;
