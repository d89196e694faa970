//! Conversation calls as stored: the conference engine's call and leg records, written
//! whole in their latest state (the engine decides; this file only writes and reads).

use rusqlite::{OptionalExtension, Row, Transaction, named_params};

use super::column::read;
use super::time::{StoredTime, time, time_opt};
use super::{Store, StoreError};
use crate::conference::engine::{
    CallKey, CallPhase, CallRecord, Change, LegRecord, RecordingRecord,
};
use crate::directory::ThreadId;

/// A call with its legs in leg order.
pub type CallWithLegs = (CallRecord, Vec<LegRecord>);

const CALL_COLUMNS: &str = "thread_id, started_ms, team_id, direction, phase, started_at, \
     ended_at, result, dialog_ms, dialog_since, next_leg";

const LEG_COLUMNS: &str = "thread_id, started_ms, number, role, user_id, uniqueid, \
     other_uniqueid, channel, dial, state, l.created_at, answered_at, joined_at, l.ended_at, \
     end_reason, hangup_cause, media";

const RECORDING_COLUMNS: &str = "c.thread_id, c.started_ms, number, token, state, \
     r.started_at, stopped_at, error, final_at, size, sha256, duration_ms, final_error, c.pbx";

/// What the finaliser found of a stopped recording's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFacts {
    pub size: u64,
    pub sha256: String,
    pub duration_ms: u64,
}

/// A recording as stored: the engine's record, the PBX it is on, and the file's facts
/// once final (or why it never became final).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecording {
    pub rec: RecordingRecord,
    pub pbx: String,
    pub final_at: Option<chrono::DateTime<chrono::Utc>>,
    pub facts: Option<RecordingFacts>,
    pub final_error: Option<String>,
}

/// A file fetched for a play, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub sha256: String,
    pub source_url: String,
    pub duration_ms: u64,
}

impl Store {
    /// Writes one step's records of PBX `pbx` in one transaction (committed to disk
    /// before it returns: the answers that follow may acknowledge them).
    ///
    /// # Errors
    /// SQLite failures (nothing is written then), including a second open call of a
    /// thread, which the schema refuses.
    pub async fn write_conference(
        &self,
        pbx: &str,
        changes: Vec<Change>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let pbx = pbx.to_string();
        self.transaction(move |tx| {
            for change in &changes {
                match change {
                    Change::Call(call) => write_call(tx, &pbx, call)?,
                    Change::Leg(leg) => write_leg(tx, leg)?,
                    Change::Recording(rec) => write_recording(tx, rec)?,
                }
            }
            Ok(())
        })
        .await
    }

    /// The calls of PBX `pbx` that are not ended, with their legs: what the engine takes
    /// back after a restart.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn open_conferences(&self, pbx: &str) -> Result<Vec<CallWithLegs>, StoreError> {
        let pbx = pbx.to_string();
        self.call(move |conn| {
            let keys: Vec<String> = {
                let mut stmt = conn.prepare_cached(
                    "SELECT call_key FROM conference_calls WHERE pbx = ?1 AND phase <> 'ended' \
                     ORDER BY started_ms",
                )?;
                stmt.query_map([&pbx], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            keys.iter().map(|k| load_call(conn, k)).collect()
        })
        .await
    }

    /// Every call of a thread, newest first, with their legs, at most `limit`.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn thread_conferences(
        &self,
        thread: ThreadId,
        limit: usize,
    ) -> Result<Vec<CallWithLegs>, StoreError> {
        self.call(move |conn| {
            let keys: Vec<String> = {
                let mut stmt = conn.prepare_cached(
                    "SELECT call_key FROM conference_calls WHERE thread_id = ?1 \
                     ORDER BY started_ms DESC LIMIT ?2",
                )?;
                stmt.query_map(
                    rusqlite::params![thread, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?
            };
            keys.iter().map(|k| load_call(conn, k)).collect()
        })
        .await
    }
}

fn write_call(tx: &Transaction<'_>, pbx: &str, call: &CallRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO conference_calls (call_key, pbx, thread_id, started_ms, team_id, direction, \
         phase, started_at, ended_at, result, dialog_ms, dialog_since, next_leg) \
         VALUES (:key, :pbx, :thread, :started_ms, :team, :direction, :phase, :started_at, \
         :ended_at, :result, :dialog_ms, :dialog_since, :next_leg) \
         ON CONFLICT (call_key) DO UPDATE SET phase = excluded.phase, \
         ended_at = excluded.ended_at, result = excluded.result, \
         dialog_ms = excluded.dialog_ms, dialog_since = excluded.dialog_since, \
         next_leg = excluded.next_leg",
    )?
    .execute(named_params! {
        ":key": call.key.to_string(),
        ":pbx": pbx,
        ":thread": call.key.thread,
        ":started_ms": call.key.started_ms,
        ":team": call.team,
        ":direction": call.direction,
        ":phase": call.phase,
        ":started_at": StoredTime::at(call.started_at),
        ":ended_at": call.ended_at.map(StoredTime::at),
        ":result": call.result,
        ":dialog_ms": call.dialog_ms,
        ":dialog_since": call.dialog_since.map(StoredTime::at),
        ":next_leg": call.next_leg,
    })?;
    Ok(())
}

fn write_leg(tx: &Transaction<'_>, leg: &LegRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO conference_legs (call_key, number, role, user_id, uniqueid, other_uniqueid, \
         channel, dial, state, created_at, answered_at, joined_at, ended_at, end_reason, \
         hangup_cause, media) VALUES (:key, :number, :role, :user, :uniqueid, :other, :channel, \
         :dial, :state, :created_at, :answered_at, :joined_at, :ended_at, :end_reason, :cause, \
         :media) \
         ON CONFLICT (call_key, number) DO UPDATE SET channel = excluded.channel, \
         state = excluded.state, answered_at = excluded.answered_at, \
         joined_at = excluded.joined_at, ended_at = excluded.ended_at, \
         end_reason = excluded.end_reason, hangup_cause = excluded.hangup_cause",
    )?
    .execute(named_params! {
        ":key": leg.call.to_string(),
        ":number": leg.number,
        ":role": leg.role,
        ":user": leg.user,
        ":uniqueid": leg.uniqueid,
        ":other": leg.other_uniqueid,
        ":channel": leg.channel,
        ":dial": leg.dial,
        ":state": leg.state,
        ":created_at": StoredTime::at(leg.created_at),
        ":answered_at": leg.answered_at.map(StoredTime::at),
        ":joined_at": leg.joined_at.map(StoredTime::at),
        ":ended_at": leg.ended_at.map(StoredTime::at),
        ":end_reason": leg.end_reason,
        ":cause": leg.hangup_cause,
        ":media": leg.media,
    })?;
    Ok(())
}

fn write_recording(tx: &Transaction<'_>, rec: &RecordingRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO conference_recordings (call_key, number, token, state, started_at, \
         stopped_at, error) VALUES (:key, :number, :token, :state, :started_at, :stopped_at, \
         :error) ON CONFLICT (call_key, number) DO UPDATE SET state = excluded.state, \
         stopped_at = excluded.stopped_at, error = excluded.error",
    )?
    .execute(named_params! {
        ":key": rec.call.to_string(),
        ":number": rec.number,
        ":token": rec.token,
        ":state": rec.state,
        ":started_at": StoredTime::at(rec.started_at),
        ":stopped_at": rec.stopped_at.map(StoredTime::at),
        ":error": rec.error,
    })?;
    Ok(())
}

fn recording_row(r: &Row<'_>) -> rusqlite::Result<StoredRecording> {
    let rec = RecordingRecord {
        call: CallKey {
            thread: read(r, 0)?,
            started_ms: read(r, 1)?,
        },
        number: read(r, 2)?,
        token: read(r, 3)?,
        state: read(r, 4)?,
        started_at: time(r, 5)?,
        stopped_at: time_opt(r, 6)?,
        error: read(r, 7)?,
    };
    let final_at = time_opt(r, 8)?;
    let size: Option<u64> = read(r, 9)?;
    let sha256: Option<String> = read(r, 10)?;
    let duration_ms: Option<u64> = read(r, 11)?;
    let facts = match (final_at, size, sha256, duration_ms) {
        (Some(_), Some(size), Some(sha256), Some(duration_ms)) => Some(RecordingFacts {
            size,
            sha256,
            duration_ms,
        }),
        _ => None,
    };
    Ok(StoredRecording {
        rec,
        pbx: read(r, 13)?,
        final_at,
        facts,
        final_error: read(r, 12)?,
    })
}

impl Store {
    /// The recordings of PBX `pbx`'s calls that are not ended (restored with them).
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn open_recordings(&self, pbx: &str) -> Result<Vec<RecordingRecord>, StoreError> {
        let pbx = pbx.to_string();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORDING_COLUMNS} FROM conference_recordings r \
                 JOIN conference_calls c USING (call_key) \
                 WHERE c.pbx = ?1 AND c.phase <> 'ended' ORDER BY call_key, number"
            ))?;
            let rows = stmt.query_map([&pbx], recording_row)?;
            Ok(rows
                .map(|r| r.map(|s| s.rec))
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The recording whose `fileUrl` carries `token`.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn recording_by_token(
        &self,
        token: String,
    ) -> Result<Option<StoredRecording>, StoreError> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {RECORDING_COLUMNS} FROM conference_recordings r \
                     JOIN conference_calls c USING (call_key) WHERE token = ?1"
                ))?
                .query_row([&token], recording_row)
                .optional()?)
        })
        .await
    }

    /// Every recording of the call `key`, by number.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn call_recordings(&self, key: CallKey) -> Result<Vec<StoredRecording>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORDING_COLUMNS} FROM conference_recordings r \
                 JOIN conference_calls c USING (call_key) WHERE call_key = ?1 ORDER BY number"
            ))?;
            let rows = stmt.query_map([key.to_string()], recording_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Stopped recordings whose file the finaliser has not described yet.
    ///
    /// # Errors
    /// SQLite failures; an unreadable stored value.
    pub async fn unfinished_recordings(&self) -> Result<Vec<StoredRecording>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORDING_COLUMNS} FROM conference_recordings r \
                 JOIN conference_calls c USING (call_key) \
                 WHERE state = 'stopped' AND final_at IS NULL AND final_error IS NULL \
                 ORDER BY r.stopped_at"
            ))?;
            let rows = stmt.query_map([], recording_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Stores what the finaliser found: the file's facts, or why it is not final. The
    /// first outcome stays (a second finaliser of the same file finds the same).
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn finish_recording(
        &self,
        key: CallKey,
        number: u32,
        outcome: Result<RecordingFacts, String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.transaction(move |tx| {
            let (size, sha, duration, error) = match &outcome {
                Ok(f) => (
                    Some(f.size),
                    Some(f.sha256.clone()),
                    Some(f.duration_ms),
                    None,
                ),
                Err(e) => (None, None, None, Some(e.clone())),
            };
            tx.prepare_cached(
                "UPDATE conference_recordings SET final_at = :at, size = :size, \
                 sha256 = :sha, duration_ms = :duration, final_error = :error \
                 WHERE call_key = :key AND number = :number AND final_at IS NULL \
                 AND final_error IS NULL",
            )?
            .execute(named_params! {
                ":at": outcome.is_ok().then(|| StoredTime::at(now)),
                ":size": size,
                ":sha": sha,
                ":duration": duration,
                ":error": error,
                ":key": key.to_string(),
                ":number": number,
            })?;
            Ok(())
        })
        .await
    }

    /// Remembers where a played file came from (its first source stays).
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn remember_media_file(&self, file: MediaFile) -> Result<(), StoreError> {
        self.transaction(move |tx| {
            tx.prepare_cached(
                "INSERT INTO media_files (sha256, source_url, duration_ms, created_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sha256) DO NOTHING",
            )?
            .execute(rusqlite::params![
                file.sha256,
                file.source_url,
                file.duration_ms,
                StoredTime::at(chrono::Utc::now())
            ])?;
            Ok(())
        })
        .await
    }

    /// The files with these hashes (those known).
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn media_files(&self, hashes: Vec<String>) -> Result<Vec<MediaFile>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sha256, source_url, duration_ms FROM media_files WHERE sha256 = ?1",
            )?;
            let mut out = Vec::new();
            for h in &hashes {
                if let Some(f) = stmt
                    .query_row([h], |r| {
                        Ok(MediaFile {
                            sha256: r.get(0)?,
                            source_url: r.get(1)?,
                            duration_ms: r.get(2)?,
                        })
                    })
                    .optional()?
                {
                    out.push(f);
                }
            }
            Ok(out)
        })
        .await
    }
}

fn load_call(conn: &rusqlite::Connection, key: &str) -> Result<CallWithLegs, StoreError> {
    let call = conn
        .prepare_cached(&format!(
            "SELECT {CALL_COLUMNS} FROM conference_calls WHERE call_key = ?1"
        ))?
        .query_row([key], call_row)
        .optional()?
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
    let legs = conn
        .prepare_cached(&format!(
            "SELECT {LEG_COLUMNS} FROM conference_legs l JOIN conference_calls c USING (call_key) \
             WHERE call_key = ?1 ORDER BY number"
        ))?
        .query_map([key], leg_row)?
        .collect::<Result<_, _>>()?;
    Ok((call, legs))
}

fn call_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        key: CallKey {
            thread: read(r, 0)?,
            started_ms: read(r, 1)?,
        },
        team: read(r, 2)?,
        direction: read(r, 3)?,
        phase: read::<CallPhase>(r, 4)?,
        started_at: time(r, 5)?,
        ended_at: time_opt(r, 6)?,
        result: read(r, 7)?,
        dialog_ms: read(r, 8)?,
        dialog_since: time_opt(r, 9)?,
        next_leg: read(r, 10)?,
    })
}

fn leg_row(r: &Row<'_>) -> rusqlite::Result<LegRecord> {
    Ok(LegRecord {
        call: CallKey {
            thread: read(r, 0)?,
            started_ms: read(r, 1)?,
        },
        number: read(r, 2)?,
        role: read(r, 3)?,
        user: read(r, 4)?,
        uniqueid: read(r, 5)?,
        other_uniqueid: read(r, 6)?,
        channel: read(r, 7)?,
        dial: read(r, 8)?,
        state: read(r, 9)?,
        created_at: time(r, 10)?,
        answered_at: time_opt(r, 11)?,
        joined_at: time_opt(r, 12)?,
        ended_at: time_opt(r, 13)?,
        end_reason: read(r, 14)?,
        hangup_cause: read(r, 15)?,
        media: read(r, 16)?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::conference::engine::{
        CallResult, Direction, EndReason, LegState, RecordingState, Role,
    };

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + s, 123_456_000)
            .single()
            .unwrap()
    }

    fn call(phase: CallPhase) -> CallRecord {
        let thread: ThreadId = "5b0525134c0319001573485e".parse().unwrap();
        CallRecord {
            key: CallKey {
                thread,
                started_ms: at(0).timestamp_millis(),
            },
            team: "333ccc134c0319001573485e".parse().unwrap(),
            direction: Direction::Inbound,
            phase,
            started_at: at(0),
            ended_at: None,
            result: None,
            dialog_ms: 0,
            dialog_since: None,
            next_leg: 1,
        }
    }

    fn leg(call: &CallRecord, number: u32) -> LegRecord {
        LegRecord {
            call: call.key.clone(),
            number,
            role: Role::Participant,
            user: Some("5b4458eb1b2b33001bf213bf".parse().unwrap()),
            uniqueid: format!("{}-{number}", call.key),
            other_uniqueid: Some(format!("{}-{number}-2", call.key)),
            channel: None,
            dial: "Local/x@y/n".into(),
            state: LegState::Dialing,
            created_at: at(1),
            answered_at: None,
            joined_at: None,
            ended_at: None,
            end_reason: None,
            hangup_cause: None,
            media: Some("ab".into()),
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn records_read_back_whole_in_their_latest_state() {
        let (_dir, store) = store().await;
        let mut c = call(CallPhase::Active);
        let mut l = leg(&c, 1);
        c.next_leg = 2;
        store
            .write_conference("rig", vec![Change::Call(c.clone()), Change::Leg(l.clone())])
            .await
            .unwrap();
        assert_eq!(
            store.open_conferences("rig").await.unwrap(),
            vec![(c.clone(), vec![l.clone()])]
        );

        c.phase = CallPhase::Ended;
        c.ended_at = Some(at(30));
        c.result = Some(CallResult::Answered);
        c.dialog_ms = 12_345;
        c.dialog_since = Some(at(20));
        l.state = LegState::Left;
        l.channel = Some("Local/x@y-00000001;1".into());
        l.answered_at = Some(at(2));
        l.joined_at = Some(at(3));
        l.ended_at = Some(at(29));
        l.end_reason = Some(EndReason::Ended);
        l.hangup_cause = Some(16);
        store
            .write_conference("rig", vec![Change::Call(c.clone()), Change::Leg(l.clone())])
            .await
            .unwrap();
        assert!(store.open_conferences("rig").await.unwrap().is_empty());
        assert_eq!(
            store
                .thread_conferences(c.key.thread.clone(), 10)
                .await
                .unwrap(),
            vec![(c, vec![l])]
        );
    }

    #[tokio::test]
    async fn open_calls_are_per_pbx_and_a_thread_has_at_most_one() {
        let (_dir, store) = store().await;
        let c = call(CallPhase::Active);
        store
            .write_conference("rig", vec![Change::Call(c.clone())])
            .await
            .unwrap();
        assert!(store.open_conferences("other").await.unwrap().is_empty());
        let mut second = call(CallPhase::Active);
        second.key.started_ms += 1;
        let refused = store
            .write_conference("rig", vec![Change::Call(second.clone())])
            .await;
        assert!(
            refused.is_err(),
            "a second open call of the thread was stored"
        );
        assert_eq!(
            store
                .thread_conferences(c.key.thread.clone(), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        let mut ended = c.clone();
        ended.phase = CallPhase::Ended;
        store
            .write_conference(
                "rig",
                vec![Change::Call(ended), Change::Call(second.clone())],
            )
            .await
            .unwrap();
        let calls = store
            .thread_conferences(c.key.thread.clone(), 10)
            .await
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, second, "newest first");
        assert_eq!(
            store
                .thread_conferences(c.key.thread, 1)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    fn recording(call: &CallRecord, number: u32, state: RecordingState) -> RecordingRecord {
        RecordingRecord {
            call: call.key.clone(),
            number,
            token: format!("tok{number}"),
            state,
            started_at: at(2),
            stopped_at: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn recordings_read_back_whole_and_their_facts_are_written_once() {
        let (_dir, store) = store().await;
        let c = call(CallPhase::Active);
        let mut live = recording(&c, 1, RecordingState::Recording);
        let mut failed = recording(&c, 2, RecordingState::Starting);
        store
            .write_conference(
                "rig",
                vec![
                    Change::Call(c.clone()),
                    Change::Recording(live.clone()),
                    Change::Recording(failed.clone()),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            store.open_recordings("rig").await.unwrap(),
            vec![live.clone(), failed.clone()]
        );
        assert!(store.open_recordings("other").await.unwrap().is_empty());
        assert!(
            store.unfinished_recordings().await.unwrap().is_empty(),
            "none stopped"
        );

        failed.state = RecordingState::Failed;
        failed.error = Some("Conference not found.".into());
        live.state = RecordingState::Stopped;
        live.stopped_at = Some(at(9));
        store
            .write_conference(
                "rig",
                vec![
                    Change::Recording(live.clone()),
                    Change::Recording(failed.clone()),
                ],
            )
            .await
            .unwrap();
        let unfinished = store.unfinished_recordings().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(
            unfinished[0],
            StoredRecording {
                rec: live.clone(),
                pbx: "rig".into(),
                final_at: None,
                facts: None,
                final_error: None,
            }
        );
        let facts = RecordingFacts {
            size: 80_044,
            sha256: "ab".repeat(32),
            duration_ms: 5000,
        };
        store
            .finish_recording(c.key.clone(), 1, Ok(facts.clone()), at(10))
            .await
            .unwrap();
        // A second outcome does not overwrite the first.
        store
            .finish_recording(c.key.clone(), 1, Err("late".into()), at(11))
            .await
            .unwrap();
        let stored = store
            .recording_by_token("tok1".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.facts, Some(facts));
        assert_eq!((stored.final_at, stored.final_error), (Some(at(10)), None));
        assert_eq!(stored.rec, live);
        assert!(store.unfinished_recordings().await.unwrap().is_empty());
        assert!(
            store
                .recording_by_token("nope".into())
                .await
                .unwrap()
                .is_none()
        );
        let all = store.call_recordings(c.key.clone()).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.rec.clone()).collect::<Vec<_>>(),
            vec![live, failed]
        );
        // A recording that never became final keeps why.
        let mut third = recording(&c, 3, RecordingState::Stopped);
        third.stopped_at = Some(at(12));
        store
            .write_conference("rig", vec![Change::Recording(third)])
            .await
            .unwrap();
        store
            .finish_recording(c.key.clone(), 3, Err("header never final".into()), at(13))
            .await
            .unwrap();
        let third = store
            .recording_by_token("tok3".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (third.facts, third.final_at, third.final_error.as_deref()),
            (None, None, Some("header never final"))
        );
        assert!(store.unfinished_recordings().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_played_file_keeps_its_first_source() {
        let (_dir, store) = store().await;
        let file = |url: &str| MediaFile {
            sha256: "cd".repeat(32),
            source_url: url.into(),
            duration_ms: 3000,
        };
        store
            .remember_media_file(file("http://a/x.mp3"))
            .await
            .unwrap();
        store
            .remember_media_file(file("http://b/y.mp3"))
            .await
            .unwrap();
        assert_eq!(
            store
                .media_files(vec!["cd".repeat(32), "ef".repeat(32)])
                .await
                .unwrap(),
            vec![file("http://a/x.mp3")]
        );
    }
}
