//! Persistence of the call tracker's records, and the queries behind `/api/calls`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, OptionalExtension, Row, Transaction, named_params, params};

use super::column::{BadValue, Json, read};
use super::time::{StoredTime, time, time_opt};
use super::{Durability, Store, StoreError};
use crate::calls::{CallChange, CallRecord, ConferenceRecord, GapRecord, LegRecord};
use crate::timefmt::{parse_rfc3339, push_rfc3339_micros};

#[cfg(test)]
use crate::timefmt::rfc3339_micros;

fn ts_opt(t: &Option<DateTime<Utc>>) -> Option<StoredTime> {
    t.map(StoredTime::at)
}

/// Filters of `GET /api/calls`.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub active: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub pbx: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// A call with its database id and leg count.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub id: i64,
    pub record: CallRecord,
    pub leg_count: i64,
}

/// A leg with its database id.
#[derive(Debug, Clone)]
pub struct LegRow {
    pub id: i64,
    pub record: LegRecord,
}

/// A timeline entry as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub at: Option<DateTime<Utc>>,
    pub uniqueid: Option<String>,
    pub kind: String,
    pub detail: serde_json::Value,
}

/// A FastAGI session as the call timeline stores it: written at its end with both
/// times, or (when it runs long) at its start and completed by a later row naming it.
#[derive(Debug, Clone, Default)]
pub struct AgiSessionRow {
    /// The row already holding this session's start: only `ended_at` is written and
    /// the other fields are ignored.
    pub row: Option<i64>,
    pub pbx: String,
    pub uniqueid: String,
    /// `None` when the start was not seen (the session log dropped it).
    pub started_at: Option<DateTime<Utc>>,
    /// `None` while the session runs (or when it was cut off).
    pub ended_at: Option<DateTime<Utc>>,
    /// A JSON object's text.
    pub detail: String,
}

/// A call with everything known about it.
#[derive(Debug, Clone)]
pub struct CallDetailRow {
    pub call: CallRow,
    pub legs: Vec<LegRow>,
    pub events: Vec<EventRow>,
    pub cdrs: Vec<serde_json::Value>,
}

/// What the store says is live on one PBX: the tracker's starting point.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub calls: Vec<CallRecord>,
    pub legs: Vec<LegRecord>,
    pub conferences: Vec<ConferenceRecord>,
    /// The newest event time seen for this PBX: where a gap after a restart begins.
    pub last_event_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Writes a batch of tracker changes in one transaction.
    ///
    /// # Errors
    /// SQLite failures; the whole batch is rolled back.
    pub async fn apply_call_changes(&self, changes: Vec<CallChange>) -> Result<(), StoreError> {
        self.transaction(move |tx| {
            let mut writer = BatchWriter::new(tx);
            for change in &changes {
                writer.apply(change)?;
            }
            Ok(())
        })
        .await
    }

    /// The calls, legs and conferences still open for `pbx`.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn live_call_state(&self, pbx: &str) -> Result<LiveState, StoreError> {
        let pbx = pbx.to_string();
        self.call(move |conn| {
            let mut state = LiveState::default();
            let mut stmt = conn.prepare_cached(
                "SELECT pbx, linkedid, started_at, ended_at FROM calls WHERE pbx = ?1 AND ended_at IS NULL",
            )?;
            for row in stmt.query_map([&pbx], |r| call_record(r, 0))? {
                state.calls.push(row?);
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LEG_COLUMNS} FROM legs JOIN calls c ON c.id = legs.call_id
                 WHERE legs.pbx = ?1 AND legs.ended_at IS NULL"
            ))?;
            for row in stmt.query_map([&pbx], |r| leg_record(r, 0))? {
                state.legs.push(row?);
            }
            let mut stmt = conn.prepare_cached(
                "SELECT pbx, name, started_at, ended_at, end_reason FROM conferences WHERE pbx = ?1 AND ended_at IS NULL",
            )?;
            for row in stmt.query_map([&pbx], |r| {
                Ok(ConferenceRecord {
                    pbx: r.get(0)?,
                    name: r.get(1)?,
                    started_at: time(r, 2)?,
                    ended_at: time_opt(r, 3)?,
                    end_reason: r.get(4)?,
                })
            })? {
                state.conferences.push(row?);
            }
            state.last_event_at = conn
                // The timeline holds every event of a known call (FastAGI sessions, in
                // agi_sessions, are not AMI and do not mark the gap).
                .query_row(
                    "SELECT max(last_at) AS last_at FROM call_timeline WHERE pbx = ?1",
                    [&pbx],
                    |r| time_opt(r, 0),
                )
                .optional()?
                .flatten();
            Ok(state)
        })
        .await
    }

    /// Writes FastAGI sessions to the call timeline (`agi_sessions`), in one
    /// transaction committed [`Durability::Kernel`] (an observation nobody was told
    /// was stored; its fsync would delay the sessions being served). The call is
    /// found through the session's uniqueid when read, so a session written before its
    /// leg is not lost. Returns, for each row written without its end (a session still
    /// running), its id, to complete it later.
    ///
    /// # Errors
    /// SQLite failures; nothing is written.
    pub async fn record_agi_sessions(
        &self,
        rows: Vec<AgiSessionRow>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        self.transaction_with(Durability::Kernel, move |tx| {
            let mut times = TimeText::default();
            let mut ids = vec![None; rows.len()];
            // Ended sessions, most rows, go in statements of several rows each: a
            // statement's run costs about as much as a row.
            let ended: Vec<&AgiSessionRow> = rows
                .iter()
                .filter(|r| r.row.is_none() && r.ended_at.is_some())
                .collect();
            let mut chunks = ended.chunks_exact(ROWS_PER_INSERT);
            if chunks.len() > 0 {
                let mut insert = tx.prepare_cached(&insert_sessions_sql(ROWS_PER_INSERT))?;
                for chunk in &mut chunks {
                    for (i, row) in chunk.iter().enumerate() {
                        bind_session(&mut insert, i * 5, row, &mut times)?;
                    }
                    insert.raw_execute()?;
                }
            }
            let mut insert = tx.prepare_cached(&insert_sessions_sql(1))?;
            for row in chunks.remainder() {
                bind_session(&mut insert, 0, row, &mut times)?;
                insert.raw_execute()?;
            }
            let mut end =
                tx.prepare_cached("UPDATE agi_sessions SET ended_at = ?2 WHERE id = ?1")?;
            for (row, id) in rows.iter().zip(ids.iter_mut()) {
                if let Some(existing) = row.row {
                    end.raw_bind_parameter(1, existing)?;
                    end.raw_bind_parameter(2, row.ended_at.as_ref().map(|t| times.text(t)))?;
                    end.raw_execute()?;
                } else if row.ended_at.is_none() {
                    bind_session(&mut insert, 0, row, &mut times)?;
                    insert.raw_execute()?;
                    *id = Some(tx.last_insert_rowid());
                }
            }
            Ok(ids)
        })
        .await
    }

    /// The newest `limit` reconnection gaps of `pbx`, newest first.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn recent_gaps(&self, pbx: &str, limit: u32) -> Result<Vec<GapRecord>, StoreError> {
        let pbx = pbx.to_string();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT pbx, disconnected_at, reconnected_at, legs_closed, legs_adopted FROM pbx_gaps
                 WHERE pbx = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![pbx, limit], |r| {
                    Ok(GapRecord {
                        pbx: r.get(0)?,
                        disconnected_at: time_opt(r, 1)?,
                        reconnected_at: time(r, 2)?,
                        legs_closed: r.get(3)?,
                        legs_adopted: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Calls matching `filter`, newest first, and the total number matching.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn list_calls(&self, filter: CallFilter) -> Result<(Vec<CallRow>, i64), StoreError> {
        self.call(move |conn| {
            let mut clauses = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            match filter.active {
                Some(true) => clauses.push("ended_at IS NULL".to_string()),
                Some(false) => clauses.push("ended_at IS NOT NULL".to_string()),
                None => {}
            }
            if let Some(since) = filter.since {
                args.push(StoredTime::at(since).text().into());
                clauses.push(format!("started_at >= ?{}", args.len()));
            }
            if let Some(until) = filter.until {
                args.push(StoredTime::at(until).text().into());
                clauses.push(format!("started_at < ?{}", args.len()));
            }
            if let Some(pbx) = filter.pbx {
                args.push(pbx.into());
                clauses.push(format!("pbx = ?{}", args.len()));
            }
            let filter_sql = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let total: i64 = conn.query_row(
                &format!("SELECT count(*) FROM calls {filter_sql}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            args.push(i64::from(filter.limit).into());
            args.push(i64::from(filter.offset).into());
            let sql = format!(
                "SELECT id, pbx, linkedid, started_at, ended_at,
                        (SELECT count(*) FROM legs WHERE legs.call_id = calls.id)
                 FROM calls {filter_sql} ORDER BY started_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
                args.len() - 1,
                args.len()
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok(CallRow {
                        id: r.get(0)?,
                        record: call_record(r, 1)?,
                        leg_count: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total))
        })
        .await
    }

    /// One call with its legs, timeline and CDRs.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn call_detail(&self, id: i64) -> Result<Option<CallDetailRow>, StoreError> {
        self.call(move |conn| {
            let call = conn
                .query_row(
                    "SELECT id, pbx, linkedid, started_at, ended_at,
                            (SELECT count(*) FROM legs WHERE legs.call_id = calls.id)
                     FROM calls WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(CallRow {
                            id: r.get(0)?,
                            record: call_record(r, 1)?,
                            leg_count: r.get(5)?,
                        })
                    },
                )
                .optional()?;
            let Some(call) = call else { return Ok(None) };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT legs.id, {LEG_COLUMNS} FROM legs JOIN calls c ON c.id = legs.call_id
                 WHERE legs.call_id = ?1 ORDER BY legs.created_at, legs.id"
            ))?;
            let legs = stmt
                .query_map([id], |r| {
                    Ok(LegRow {
                        id: r.get(0)?,
                        record: leg_record(r, 1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut events = Vec::new();
            let mut stmt = conn.prepare_cached(
                "SELECT entries FROM call_timeline WHERE call_id = ?1 ORDER BY id",
            )?;
            for chunk in stmt.query_map([id], |r| r.get::<_, String>(0))? {
                events.extend(timeline_entries(&chunk?)?);
            }
            let mut stmt = conn.prepare_cached(
                "SELECT at, uniqueid, kind, detail FROM call_events WHERE call_id = ?1
                 UNION ALL
                 SELECT at, uniqueid, kind, detail FROM call_events
                 WHERE call_id IS NULL AND uniqueid IN (SELECT uniqueid FROM legs WHERE call_id = ?1)",
            )?;
            for row in stmt.query_map([id], |r| {
                Ok(EventRow {
                    at: time_opt(r, 0)?,
                    uniqueid: r.get(1)?,
                    kind: r.get(2)?,
                    detail: read::<Json<serde_json::Value>>(r, 3)?.0,
                })
            })? {
                events.push(row?);
            }
            // Each AGI session is one row: its start and end entries.
            let mut stmt = conn.prepare_cached(
                "SELECT started_at, ended_at, uniqueid, detail FROM agi_sessions
                 WHERE uniqueid IN (SELECT uniqueid FROM legs WHERE call_id = ?1) ORDER BY id",
            )?;
            let mut rows = stmt.query([id])?;
            while let Some(r) = rows.next()? {
                let started = time_opt(r, 0)?;
                let ended = time_opt(r, 1)?;
                let uniqueid: String = r.get(2)?;
                let detail = read::<Json<serde_json::Value>>(r, 3)?.0;
                for (at, kind) in [(started, "AgiSessionStart"), (ended, "AgiSessionEnd")] {
                    if at.is_some() {
                        events.push(EventRow {
                            at,
                            uniqueid: Some(uniqueid.clone()),
                            kind: kind.to_string(),
                            detail: detail.clone(),
                        });
                    }
                }
            }
            // Chunks are in write order and entries in event order: a stable sort by
            // time keeps that order among equal times.
            events.sort_by_key(|e| e.at);
            let mut stmt =
                conn.prepare_cached("SELECT raw FROM call_detail_records WHERE call_id = ?1 AND source = 'ami' ORDER BY id")?;
            let cdrs = stmt
                .query_map([id], |r| read::<Json<serde_json::Value>>(r, 0).map(|j| j.0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(CallDetailRow {
                call,
                legs,
                events,
                cdrs,
            }))
        })
        .await
    }
}

const LEG_COLUMNS: &str = "legs.pbx, legs.uniqueid, c.linkedid, legs.channel, legs.caller_num, legs.caller_name,
    legs.connected_num, legs.connected_name, legs.state, legs.account_code, legs.context, legs.exten,
    legs.bridge_id, legs.conference, legs.variables, legs.created_at, legs.answered_at, legs.ended_at,
    legs.hangup_cause, legs.hangup_cause_text, legs.end_reason, legs.originate_reason, legs.adopted";

/// Sessions per multi-row insert into `agi_sessions`.
const ROWS_PER_INSERT: usize = 16;

/// `OR FAIL`: a statement of several rows that may abort (the `NOT NULL` columns)
/// makes SQLite copy every page it touches into a statement journal first, to undo the
/// statement alone — with 16 KiB pages, 4 % of a session's cost. Nothing here needs
/// that: any error rolls the whole transaction back.
fn insert_sessions_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR FAIL INTO agi_sessions (pbx, uniqueid, started_at, ended_at, detail) VALUES ",
    );
    for i in 0..rows {
        let p = i * 5;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(?{}, ?{}, ?{}, ?{}, ?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5
        ));
    }
    sql
}

/// Binds one session's five columns after the first `at` parameters.
fn bind_session(
    stmt: &mut rusqlite::CachedStatement<'_>,
    at: usize,
    row: &AgiSessionRow,
    times: &mut TimeText,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(at + 1, &row.pbx)?;
    stmt.raw_bind_parameter(at + 2, &row.uniqueid)?;
    stmt.raw_bind_parameter(at + 3, row.started_at.as_ref().map(|t| times.text(t)))?;
    stmt.raw_bind_parameter(at + 4, row.ended_at.as_ref().map(|t| times.text(t)))?;
    stmt.raw_bind_parameter(at + 5, &row.detail)
}

/// Times as [`rfc3339_micros`] writes them, for a run of times mostly within the same
/// second: the text up to the second is reused and only the microseconds written.
#[derive(Default)]
struct TimeText {
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: String,
    out: String,
}

impl TimeText {
    /// `t`'s text; valid until the next call (SQLite copies what it binds).
    fn text(&mut self, t: &DateTime<Utc>) -> &str {
        use chrono::Timelike;
        self.out.clear();
        let micros = t.nanosecond() / 1000;
        if micros >= 1_000_000 {
            // A leap second: the general form.
            push_rfc3339_micros(&mut self.out, t);
            return &self.out;
        }
        if self.second != Some(t.timestamp()) {
            self.prefix.clear();
            push_rfc3339_micros(&mut self.prefix, t);
            // Everything up to the `.` before the microseconds.
            let Some(dot) = self.prefix.rfind('.') else {
                self.second = None;
                push_rfc3339_micros(&mut self.out, t);
                return &self.out;
            };
            self.prefix.truncate(dot + 1);
            self.second = Some(t.timestamp());
        }
        self.out.push_str(&self.prefix);
        let mut digits = [b'0'; 6];
        let mut n = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.out
            .push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
        self.out.push('Z');
        &self.out
    }
}

/// The entries of one stored timeline chunk. A chunk this code did not write (not the
/// JSON array of entries, or an entry whose time is not a time) is an error, as every
/// unreadable stored value is: it is not shown as fewer entries or as 1970.
fn timeline_entries(chunk: &str) -> Result<Vec<EventRow>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        at: String,
        uniqueid: Option<String>,
        kind: String,
        detail: serde_json::Value,
    }
    let unreadable = |expected| {
        StoreError::BadValue(BadValue {
            column: "call_timeline.entries".into(),
            value: chunk.chars().take(200).collect(),
            expected,
        })
    };
    let entries: Vec<Entry> =
        serde_json::from_str(chunk).map_err(|_| unreadable("a JSON array of timeline entries"))?;
    entries
        .into_iter()
        .map(|e| {
            Ok(EventRow {
                at: Some(
                    parse_rfc3339(&e.at)
                        .ok_or_else(|| unreadable("entries whose `at` is an RFC 3339 time"))?,
                ),
                uniqueid: e.uniqueid,
                kind: e.kind,
                detail: e.detail,
            })
        })
        .collect()
}

fn call_record(r: &Row<'_>, at: usize) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        pbx: r.get(at)?,
        linkedid: r.get(at + 1)?,
        started_at: time(r, at + 2)?,
        ended_at: time_opt(r, at + 3)?,
    })
}

fn leg_record(r: &Row<'_>, at: usize) -> rusqlite::Result<LegRecord> {
    Ok(LegRecord {
        pbx: r.get(at)?,
        uniqueid: r.get(at + 1)?,
        linkedid: r.get(at + 2)?,
        channel: r.get(at + 3)?,
        caller_num: r.get(at + 4)?,
        caller_name: r.get(at + 5)?,
        connected_num: r.get(at + 6)?,
        connected_name: r.get(at + 7)?,
        state: r.get(at + 8)?,
        account_code: r.get(at + 9)?,
        context: r.get(at + 10)?,
        exten: r.get(at + 11)?,
        bridge_id: r.get(at + 12)?,
        conference: r.get(at + 13)?,
        variables: read::<Json<BTreeMap<String, String>>>(r, at + 14)?.0,
        created_at: time_opt(r, at + 15)?,
        answered_at: time_opt(r, at + 16)?,
        ended_at: time_opt(r, at + 17)?,
        hangup_cause: r.get(at + 18)?,
        hangup_cause_text: r.get(at + 19)?,
        end_reason: r.get(at + 20)?,
        originate_reason: r.get(at + 21)?,
        adopted: r.get::<_, i64>(at + 22)? != 0,
    })
}

/// The statements a batch of tracker changes runs. Each is prepared once per batch:
/// `prepare_cached` finds a statement by hashing its SQL text, on every use and again
/// when the statement goes back to the cache, which for these long texts cost about as
/// much as a small insert.
#[derive(Clone, Copy)]
enum Sql {
    CallId,
    CallInsert,
    CallUpdate,
    LegUpsert,
    ConferenceOpen,
    ConferenceClose,
    ConferenceInsert,
    Timeline,
    Event,
    Cdr,
    Gap,
    OriginateReason,
}

impl Sql {
    const ALL: [Sql; 12] = [
        Sql::CallId,
        Sql::CallInsert,
        Sql::CallUpdate,
        Sql::LegUpsert,
        Sql::ConferenceOpen,
        Sql::ConferenceClose,
        Sql::ConferenceInsert,
        Sql::Timeline,
        Sql::Event,
        Sql::Cdr,
        Sql::Gap,
        Sql::OriginateReason,
    ];
    const COUNT: usize = Sql::ALL.len();

    fn text(self) -> &'static str {
        match self {
            Sql::CallId => "SELECT id FROM calls WHERE pbx = ?1 AND linkedid = ?2",
            Sql::CallInsert => {
                "INSERT INTO calls (pbx, linkedid, started_at, ended_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pbx, linkedid) DO NOTHING"
            }
            Sql::CallUpdate => {
                "UPDATE calls SET ended_at = ?4, started_at = min(started_at, ?3)
                 WHERE pbx = ?1 AND linkedid = ?2"
            }
            // `call_id` is updated too: a leg tagged with a call key after it was placed
            // moves to that call (`calls::tracker`).
            Sql::LegUpsert => {
                "INSERT INTO legs (pbx, call_id, uniqueid, channel, caller_num, caller_name, connected_num,
                    connected_name, state, account_code, context, exten, bridge_id, conference, variables,
                    created_at, answered_at, ended_at, hangup_cause, hangup_cause_text, end_reason,
                    originate_reason, adopted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                    ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
                 ON CONFLICT (pbx, uniqueid) DO UPDATE SET
                    call_id = excluded.call_id, channel = excluded.channel, caller_num = excluded.caller_num,
                    caller_name = excluded.caller_name, connected_num = excluded.connected_num,
                    connected_name = excluded.connected_name, state = excluded.state,
                    account_code = excluded.account_code, context = excluded.context, exten = excluded.exten,
                    bridge_id = excluded.bridge_id, conference = excluded.conference,
                    variables = excluded.variables, answered_at = excluded.answered_at,
                    ended_at = excluded.ended_at, hangup_cause = excluded.hangup_cause,
                    hangup_cause_text = excluded.hangup_cause_text, end_reason = excluded.end_reason,
                    originate_reason = coalesce(excluded.originate_reason, legs.originate_reason)"
            }
            Sql::ConferenceOpen => {
                "INSERT INTO conferences (pbx, name, started_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pbx, name) WHERE ended_at IS NULL DO NOTHING"
            }
            Sql::ConferenceClose => {
                "UPDATE conferences SET ended_at = ?3, end_reason = ?4
                 WHERE pbx = ?1 AND name = ?2 AND ended_at IS NULL"
            }
            Sql::ConferenceInsert => {
                "INSERT INTO conferences (pbx, name, started_at, ended_at, end_reason) VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Sql::Timeline => {
                "INSERT INTO call_timeline (call_id, pbx, first_at, last_at, entries)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Sql::Event => {
                "INSERT INTO call_events (pbx, call_id, uniqueid, at, kind, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            }
            Sql::Cdr => {
                "INSERT INTO call_detail_records (source, call_id, pbx, uniqueid, received_at, phone, extension,
                    disposition, duration, billable_seconds, call_at, raw)
                 VALUES ('ami',
                    coalesce(:call_id, (SELECT call_id FROM legs WHERE pbx = :pbx AND uniqueid = :uniqueid)),
                    :pbx, :uniqueid, :received_at, :phone, :extension, :disposition, :duration,
                    :billable_seconds, :call_at, :raw)"
            }
            Sql::Gap => {
                "INSERT INTO pbx_gaps (pbx, disconnected_at, reconnected_at, legs_closed, legs_adopted)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            Sql::OriginateReason => {
                "UPDATE legs SET originate_reason = ?3 WHERE pbx = ?1 AND uniqueid = ?2"
            }
        }
    }
}

type CallIdMap = HashMap<String, HashMap<String, Option<i64>, foldhash::fast::RandomState>>;

/// Writes one batch of tracker changes inside its transaction.
struct BatchWriter<'a> {
    tx: &'a Transaction<'a>,
    statements: [Option<CachedStatement<'a>>; Sql::COUNT],
    /// Call row ids by PBX and linkedid: a batch names few calls many times (every leg
    /// and timeline row), so each is looked up once.
    call_ids: CallIdMap,
}

impl<'a> BatchWriter<'a> {
    fn new(tx: &'a Transaction<'a>) -> BatchWriter<'a> {
        BatchWriter {
            tx,
            statements: Default::default(),
            call_ids: CallIdMap::default(),
        }
    }

    /// The batch's prepared statement for `sql`.
    fn statement(&mut self, sql: Sql) -> Result<&mut CachedStatement<'a>, StoreError> {
        let tx = self.tx;
        let slot = self
            .statements
            .get_mut(sql as usize)
            .ok_or(rusqlite::Error::InvalidQuery)?;
        if slot.is_none() {
            *slot = Some(tx.prepare_cached(sql.text())?);
        }
        Ok(slot.as_mut().ok_or(rusqlite::Error::InvalidQuery)?)
    }

    fn remember_call(&mut self, pbx: &str, linkedid: &str, id: Option<i64>) {
        if !self.call_ids.contains_key(pbx) {
            self.call_ids.insert(pbx.to_string(), HashMap::default());
        }
        if let Some(calls) = self.call_ids.get_mut(pbx) {
            calls.insert(linkedid.to_string(), id);
        }
    }

    fn call_id(&mut self, pbx: &str, linkedid: Option<&str>) -> Result<Option<i64>, StoreError> {
        let Some(linkedid) = linkedid else {
            return Ok(None);
        };
        if let Some(id) = self.call_ids.get(pbx).and_then(|calls| calls.get(linkedid)) {
            return Ok(*id);
        }
        let id = self
            .statement(Sql::CallId)?
            .query_row(params![pbx, linkedid], |r| r.get(0))
            .optional()?;
        self.remember_call(pbx, linkedid, id);
        Ok(id)
    }

    fn apply(&mut self, change: &CallChange) -> Result<(), StoreError> {
        match change {
            CallChange::Call(c) => {
                // Insert, and only on a conflict update: a new call's id is then
                // `last_insert_rowid`, without an upsert's `RETURNING`, which cost twice
                // a plain insert (SQLite runs it as a trigger program per row).
                let times = (StoredTime::at(c.started_at), ts_opt(&c.ended_at));
                let inserted = self
                    .statement(Sql::CallInsert)?
                    .execute(params![c.pbx, c.linkedid, times.0, times.1])?;
                if inserted == 1 {
                    let id = self.tx.last_insert_rowid();
                    self.remember_call(&c.pbx, &c.linkedid, Some(id));
                } else {
                    self.statement(Sql::CallUpdate)?
                        .execute(params![c.pbx, c.linkedid, times.0, times.1])?;
                }
            }
            CallChange::Leg(l) => {
                let variables = serde_json::to_string(&l.variables).unwrap_or_else(|_| "{}".into());
                let call_id = self.call_id(&l.pbx, Some(&l.linkedid))?;
                self.statement(Sql::LegUpsert)?.execute(params![
                    l.pbx,
                    call_id,
                    l.uniqueid,
                    l.channel,
                    l.caller_num,
                    l.caller_name,
                    l.connected_num,
                    l.connected_name,
                    l.state,
                    l.account_code,
                    l.context,
                    l.exten,
                    l.bridge_id,
                    l.conference,
                    variables,
                    ts_opt(&l.created_at),
                    ts_opt(&l.answered_at),
                    ts_opt(&l.ended_at),
                    l.hangup_cause,
                    l.hangup_cause_text,
                    l.end_reason,
                    l.originate_reason,
                    l.adopted
                ])?;
            }
            CallChange::Conference(c) => {
                if c.ended_at.is_none() {
                    self.statement(Sql::ConferenceOpen)?.execute(params![
                        c.pbx,
                        c.name,
                        StoredTime::at(c.started_at)
                    ])?;
                } else {
                    let ended = ts_opt(&c.ended_at);
                    let n = self.statement(Sql::ConferenceClose)?.execute(params![
                        c.pbx,
                        c.name,
                        ended,
                        c.end_reason
                    ])?;
                    if n == 0 {
                        self.statement(Sql::ConferenceInsert)?.execute(params![
                            c.pbx,
                            c.name,
                            StoredTime::at(c.started_at),
                            ended,
                            c.end_reason
                        ])?;
                    }
                }
            }
            CallChange::Timeline(t) => {
                let call_id = self.call_id(&t.pbx, Some(&t.linkedid))?;
                self.statement(Sql::Timeline)?.execute(params![
                    call_id,
                    t.pbx,
                    StoredTime::at(t.first_at),
                    StoredTime::at(t.last_at),
                    t.entries
                ])?;
            }
            CallChange::Event(e) => {
                let call_id = self.call_id(&e.pbx, e.linkedid.as_deref())?;
                self.statement(Sql::Event)?.execute(params![
                    e.pbx,
                    call_id,
                    e.uniqueid,
                    StoredTime::at(e.at),
                    e.kind,
                    e.detail
                ])?;
            }
            CallChange::Cdr(c) => {
                let call_id = self.call_id(&c.pbx, c.linkedid.as_deref())?;
                self.statement(Sql::Cdr)?.execute(named_params! {
                    ":pbx": c.pbx,
                    ":call_id": call_id,
                    ":uniqueid": c.uniqueid,
                    ":received_at": StoredTime::at(c.received_at),
                    ":phone": c.source,
                    ":extension": c.destination,
                    ":disposition": c.disposition,
                    ":duration": c.duration,
                    ":billable_seconds": c.billable_seconds,
                    ":raw": c.raw,
                    ":call_at": c.start_time,
                })?;
            }
            CallChange::Gap(g) => {
                self.statement(Sql::Gap)?.execute(params![
                    g.pbx,
                    ts_opt(&g.disconnected_at),
                    StoredTime::at(g.reconnected_at),
                    g.legs_closed,
                    g.legs_adopted
                ])?;
            }
            CallChange::OriginateReason {
                pbx,
                uniqueid,
                reason,
            } => {
                self.statement(Sql::OriginateReason)?
                    .execute(params![pbx, uniqueid, reason])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::CallTracker;
    use crate::calls::test_event::Ev;

    fn ev(pairs: &[(&'static str, &str)]) -> Ev {
        Ev::from_pairs(pairs)
    }

    #[tokio::test]
    async fn every_batch_statement_prepares_in_its_own_slot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .transaction(|tx| {
                let mut writer = BatchWriter::new(tx);
                for (i, sql) in Sql::ALL.into_iter().enumerate() {
                    assert_eq!(sql as usize, i);
                    writer.statement(sql)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }

    /// A store in a temporary directory (kept alive by the returned guard).
    fn fresh_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        (dir, store)
    }

    /// `s` seconds after a fixed instant.
    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[tokio::test]
    async fn a_leg_reads_back_whole_through_the_live_state_and_the_call_detail() {
        let (_dir, store) = fresh_store();
        let text = |s: &str| Some(s.to_string());
        // Every field different, so a column read from the wrong place shows.
        let leg = LegRecord {
            pbx: "rig".into(),
            uniqueid: "50.1".into(),
            linkedid: "50.0".into(),
            channel: "PJSIP/doctor-0001".into(),
            caller_num: text("79001112233"),
            caller_name: text("Врач"),
            connected_num: text("79004445566"),
            connected_name: text("Пациент"),
            state: text("Up"),
            account_code: text("thread-1"),
            context: text("medcall-conf"),
            exten: text("s"),
            bridge_id: text("br-1"),
            conference: text("thread-1-room"),
            variables: [("MEDCALL_ROLE".to_string(), "doctor".to_string())].into(),
            created_at: Some(at(1)),
            answered_at: Some(at(2)),
            ended_at: None,
            hangup_cause: Some(16),
            hangup_cause_text: text("Normal Clearing"),
            end_reason: text("hangup"),
            originate_reason: Some(4),
            adopted: true,
        };
        let call = CallRecord {
            pbx: "rig".into(),
            linkedid: "50.0".into(),
            started_at: at(0),
            ended_at: None,
        };
        store
            .apply_call_changes(vec![
                CallChange::Call(call.clone()),
                CallChange::Leg(Box::new(leg.clone())),
            ])
            .await
            .unwrap();
        let live = store.live_call_state("rig").await.unwrap();
        assert_eq!((live.calls, live.legs), (vec![call], vec![leg.clone()]));
        let (rows, _) = store
            .list_calls(CallFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let detail = store.call_detail(rows[0].id).await.unwrap().unwrap();
        let legs: Vec<LegRecord> = detail.legs.into_iter().map(|l| l.record).collect();
        assert_eq!(legs, [leg]);
    }

    #[tokio::test]
    async fn a_conference_is_inserted_when_it_starts_and_closed_in_place_when_it_ends() {
        let (_dir, store) = fresh_store();
        let room = |name: &str, ended: Option<i64>| {
            CallChange::Conference(ConferenceRecord {
                pbx: "rig".into(),
                name: name.into(),
                started_at: at(0),
                ended_at: ended.map(at),
                end_reason: ended.map(|_| "ended".to_string()),
            })
        };
        store
            .apply_call_changes(vec![room("thread-1", None), room("thread-2", None)])
            .await
            .unwrap();
        let live = store.live_call_state("rig").await.unwrap();
        let names: Vec<&str> = live.conferences.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["thread-1", "thread-2"]);
        store
            .apply_call_changes(vec![room("thread-1", Some(9))])
            .await
            .unwrap();
        let live = store.live_call_state("rig").await.unwrap();
        let names: Vec<&str> = live.conferences.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["thread-2"],
            "closed in place, not inserted again open"
        );
    }

    #[tokio::test]
    async fn recent_gaps_are_the_newest_of_that_pbx_newest_first() {
        let (_dir, store) = fresh_store();
        let gap = |pbx: &str, s: i64, closed: i64| {
            CallChange::Gap(GapRecord {
                pbx: pbx.into(),
                disconnected_at: (s > 10).then(|| at(s - 5)),
                reconnected_at: at(s),
                legs_closed: closed,
                legs_adopted: closed + 1,
            })
        };
        store
            .apply_call_changes(vec![
                gap("rig", 10, 1),
                gap("other", 15, 7),
                gap("rig", 20, 2),
                gap("rig", 30, 3),
            ])
            .await
            .unwrap();
        let gaps = store.recent_gaps("rig", 2).await.unwrap();
        assert_eq!(
            gaps,
            [
                GapRecord {
                    pbx: "rig".into(),
                    disconnected_at: Some(at(25)),
                    reconnected_at: at(30),
                    legs_closed: 3,
                    legs_adopted: 4,
                },
                GapRecord {
                    pbx: "rig".into(),
                    disconnected_at: Some(at(15)),
                    reconnected_at: at(20),
                    legs_closed: 2,
                    legs_adopted: 3,
                },
            ]
        );
        let all = store.recent_gaps("rig", 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].disconnected_at, None);
    }

    #[tokio::test]
    async fn tracker_changes_round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut changes = Vec::new();
        for (uid, ch) in [("1.0", "Local/a@b-1;1"), ("1.1", "Local/a@b-1;2")] {
            changes.extend(tr.apply(
                &ev(&[
                    ("Event", "Newchannel"),
                    ("Channel", ch),
                    ("Uniqueid", uid),
                    ("Linkedid", "1.0"),
                    ("ChannelStateDesc", "Ring"),
                ]),
                t0,
            ));
        }
        changes.extend(tr.apply(
            &ev(&[("Event", "Hangup"), ("Uniqueid", "1.1"), ("Cause", "16")]),
            t0,
        ));
        changes.extend(tr.apply(
            &ev(&[
                ("Event", "Cdr"),
                ("UniqueID", "1.0"),
                ("Disposition", "ANSWERED"),
                ("Duration", "3"),
            ]),
            t0,
        ));
        changes.extend(tr.apply(
            &ev(&[
                ("Event", "Newchannel"),
                ("Channel", "Local/c@d-1;1"),
                ("Uniqueid", "2.0"),
                ("Linkedid", "2.0"),
            ]),
            t0,
        ));
        changes.extend(tr.apply(
            &ev(&[("Event", "Hangup"), ("Uniqueid", "2.0"), ("Cause", "17")]),
            t0,
        ));
        // The Cdr of a call comes after its last Hangup, when the tracker has forgotten
        // the leg: it is still filed with its call.
        changes.extend(tr.apply(
            &ev(&[
                ("Event", "Cdr"),
                ("UniqueID", "2.0"),
                ("Disposition", "BUSY"),
            ]),
            t0,
        ));
        store.apply_call_changes(changes).await.unwrap();

        let live = store.live_call_state("rig").await.unwrap();
        assert_eq!(live.calls.len(), 1);
        assert_eq!(live.legs.len(), 1);
        assert_eq!(live.legs[0].uniqueid, "1.0");

        let (rows, total) = store
            .list_calls(CallFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(total, 2);
        let (active, n) = store
            .list_calls(CallFilter {
                active: Some(true),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((n, active[0].record.linkedid.as_str()), (1, "1.0"));
        let detail = store.call_detail(active[0].id).await.unwrap().unwrap();
        assert_eq!(detail.legs.len(), 2);
        assert_eq!(
            detail
                .legs
                .iter()
                .find(|l| l.record.uniqueid == "1.1")
                .unwrap()
                .record
                .hangup_cause,
            Some(16)
        );
        assert!(detail.events.iter().any(|e| e.kind == "Hangup"));
        assert_eq!(detail.cdrs.len(), 1);
        assert!(rows.iter().all(|r| r.leg_count >= 1));
        let ended = rows.iter().find(|r| r.record.linkedid == "2.0").unwrap();
        let detail = store.call_detail(ended.id).await.unwrap().unwrap();
        assert_eq!(detail.cdrs.len(), 1, "the late Cdr is filed with its call");
        assert!(store.call_detail(9999).await.unwrap().is_none());
    }

    /// Seen on the rig with 100 conferences filling at once: a leg's ConfbridgeJoin came
    /// before its Newchannel, its Linkedid naming no call yet. The batch holding it must
    /// still be written whole (it used to fail on `call_timeline.call_id`, losing the
    /// other calls' changes with it), and the entry must show in the leg's call.
    #[tokio::test]
    async fn a_conference_join_before_its_channel_is_known_loses_nothing_and_shows_in_its_call() {
        let (_dir, store) = fresh_store();
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut batch = Vec::new();
        batch.extend(tr.apply(
            &ev(&[
                ("Event", "Newchannel"),
                ("Channel", "Local/other@b-1;1"),
                ("Uniqueid", "8.0"),
                ("Linkedid", "8.0"),
            ]),
            t0,
        ));
        batch.extend(tr.apply(
            &ev(&[
                ("Event", "ConfbridgeJoin"),
                ("Conference", "room-1"),
                ("Channel", "Local/a0@users-1;1"),
                ("Uniqueid", "9.0"),
                ("Linkedid", "9.0"),
            ]),
            t0,
        ));
        store.apply_call_changes(batch).await.unwrap();
        let late = tr.apply(
            &ev(&[
                ("Event", "Newchannel"),
                ("Channel", "Local/a0@users-1;1"),
                ("Uniqueid", "9.0"),
                ("Linkedid", "9.0"),
            ]),
            t0,
        );
        store.apply_call_changes(late).await.unwrap();

        let (rows, total) = store
            .list_calls(CallFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(total, 2, "the other call of the batch was written too");
        let call = rows.iter().find(|r| r.record.linkedid == "9.0").unwrap();
        let detail = store.call_detail(call.id).await.unwrap().unwrap();
        assert!(
            detail
                .events
                .iter()
                .any(|e| e.kind == "ConfbridgeJoin" && e.uniqueid.as_deref() == Some("9.0")),
            "{:?}",
            detail.events
        );
    }

    #[tokio::test]
    async fn a_leg_tagged_with_a_call_key_moves_to_that_call_with_its_cdr_and_its_old_call_ends_empty()
     {
        let (_dir, store) = fresh_store();
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let key = "MEDCALL_CALL_KEY=conv-1";
        let batches: Vec<Vec<(&'static str, &str)>> = vec![
            vec![
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/trunk-1"),
                ("Uniqueid", "5.0"),
                ("Linkedid", "5.0"),
                ("ChanVariable", "MEDCALL_CALL_KEY="),
            ],
            vec![
                ("Event", "Newchannel"),
                ("Channel", "Local/silent@fake-phones-1;1"),
                ("Uniqueid", "6.0"),
                ("Linkedid", "6.0"),
                ("ChanVariable", key),
            ],
            vec![
                ("Event", "Newstate"),
                ("Uniqueid", "5.0"),
                ("ChannelStateDesc", "Up"),
                ("ChanVariable", key),
            ],
            vec![("Event", "Hangup"), ("Uniqueid", "5.0")],
            // Its CDR names its own Linkedid, after the tracker forgot the leg.
            vec![
                ("Event", "Cdr"),
                ("UniqueID", "5.0"),
                ("LinkedID", "5.0"),
                ("Disposition", "ANSWERED"),
            ],
        ];
        // One batch each, so the move rewrites a leg row already stored.
        for (i, batch) in batches.iter().enumerate() {
            let changes = tr.apply(&ev(batch), at(i as i64));
            store.apply_call_changes(changes).await.unwrap();
        }
        let (rows, _) = store
            .list_calls(CallFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let row = |linkedid: &str| rows.iter().find(|r| r.record.linkedid == linkedid).unwrap();
        let (keyed, own) = (row("conv-1"), row("5.0"));
        assert_eq!((keyed.leg_count, keyed.record.ended_at), (2, None));
        assert_eq!((own.leg_count, own.record.ended_at), (0, Some(at(2))));
        assert_eq!(
            keyed.record.started_at,
            at(0),
            "the call starts with its first leg"
        );
        let detail = store.call_detail(keyed.id).await.unwrap().unwrap();
        assert_eq!(detail.cdrs.len(), 1, "the CDR follows its leg");
        let kinds: Vec<&str> = detail.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["Newchannel", "LegMovedIn", "Newstate", "Hangup"]);
        let old = store.call_detail(own.id).await.unwrap().unwrap();
        let kinds: Vec<&str> = old.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["Newchannel", "LegMovedOut"]);
        assert!(old.legs.is_empty() && old.cdrs.is_empty());
        let live = store.live_call_state("rig").await.unwrap();
        assert_eq!(live.legs.len(), 1);
        assert_eq!(
            (
                live.legs[0].uniqueid.as_str(),
                live.legs[0].linkedid.as_str()
            ),
            ("6.0", "conv-1")
        );
    }

    #[test]
    fn session_times_are_written_exactly_as_the_stored_form() {
        let mut times = TimeText::default();
        let base = DateTime::from_timestamp(1_800_000_000, 999_999_000).unwrap();
        let mut samples: Vec<DateTime<Utc>> = (0..2000)
            .map(|i| base + chrono::Duration::microseconds(i * 997))
            .collect();
        samples.push(DateTime::from_timestamp(1_800_000_059, 1_500_000_000).unwrap());
        samples.push(DateTime::from_timestamp(-62_167_219_300, 5_000).unwrap());
        samples.push(DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap());
        samples.push(base);
        for t in &samples {
            assert_eq!(times.text(t), rfc3339_micros(t), "{t:?}");
        }
    }

    #[tokio::test]
    async fn agi_sessions_show_as_start_and_end_entries_of_their_legs_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let session = |uniqueid: &str, started: Option<i64>, ended: Option<i64>| AgiSessionRow {
            row: None,
            pbx: "rig".into(),
            uniqueid: uniqueid.into(),
            started_at: started.map(at),
            ended_at: ended.map(at),
            detail: r#"{"route":"inbound"}"#.into(),
        };
        // Written before AMI reported the leg: found through it once it is known.
        // Enough ended sessions to fill a multi-row insert and leave a remainder.
        let mut rows = vec![
            session("1.0", Some(1), Some(2)),
            session("1.0", Some(5), None),
        ];
        rows.extend((0..ROWS_PER_INSERT + 3).map(|_| session("9.9", Some(1), Some(2))));
        let ids = store.record_agi_sessions(rows).await.unwrap();
        assert_eq!(ids.iter().filter(|id| id.is_some()).count(), 1);
        let stored: i64 = store
            .call(|conn| Ok(conn.query_row("SELECT count(*) FROM agi_sessions", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(stored, ROWS_PER_INSERT as i64 + 5);
        store
            .record_agi_sessions(vec![AgiSessionRow {
                row: ids.get(1).copied().flatten(),
                ended_at: Some(at(7)),
                ..AgiSessionRow::default()
            }])
            .await
            .unwrap();
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let changes = tr.apply(
            &ev(&[
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/a-1"),
                ("Uniqueid", "1.0"),
                ("Linkedid", "1.0"),
            ]),
            t0,
        );
        store.apply_call_changes(changes).await.unwrap();
        let (rows, _) = store
            .list_calls(CallFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let detail = store.call_detail(rows[0].id).await.unwrap().unwrap();
        let agi: Vec<(&str, i64)> = detail
            .events
            .iter()
            .filter(|e| e.kind.starts_with("AgiSession"))
            .map(|e| (e.kind.as_str(), (e.at.unwrap() - t0).num_seconds()))
            .collect();
        assert_eq!(
            agi,
            [
                ("AgiSessionStart", 1),
                ("AgiSessionEnd", 2),
                ("AgiSessionStart", 5),
                ("AgiSessionEnd", 7)
            ]
        );
        let first = detail
            .events
            .iter()
            .find(|e| e.kind == "AgiSessionStart")
            .unwrap();
        assert_eq!(first.detail["route"], "inbound");
        assert_eq!(first.uniqueid.as_deref(), Some("1.0"));
    }

    #[tokio::test]
    async fn corrupt_stored_times_and_json_fail_the_read_with_the_column_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let mut tr = CallTracker::new("rig", vec![], vec![], vec![]);
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let changes = tr.apply(
            &ev(&[
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/a-1"),
                ("Uniqueid", "1.0"),
                ("Linkedid", "1.0"),
            ]),
            t0,
        );
        store.apply_call_changes(changes).await.unwrap();
        let filter = || CallFilter {
            limit: 10,
            ..Default::default()
        };
        let (rows, _) = store.list_calls(filter()).await.unwrap();
        let id = rows[0].id;
        let cases: [(&str, &str, &str); 5] = [
            ("UPDATE calls SET started_at = 'soon'", "started_at", "soon"),
            (
                "UPDATE legs SET answered_at = '12:00'",
                "answered_at",
                "12:00",
            ),
            ("UPDATE legs SET variables = '[1]'", "variables", "[1]"),
            (
                "UPDATE call_timeline SET entries = '{'",
                "call_timeline.entries",
                "{",
            ),
            (
                r#"UPDATE call_timeline SET entries = '[{"at":"never","uniqueid":null,"kind":"X","detail":{}}]'"#,
                "call_timeline.entries",
                "never",
            ),
        ];
        for (sql, column, value) in cases {
            let clean: Vec<(String, String)> = store
                .call(|c| {
                    let mut out = Vec::new();
                    for t in [
                        "calls.started_at",
                        "legs.answered_at",
                        "legs.variables",
                        "call_timeline.entries",
                    ] {
                        let (table, col) = t.split_once('.').unwrap();
                        let v: Option<String> =
                            c.query_row(&format!("SELECT {col} FROM {table}"), [], |r| r.get(0))?;
                        out.push((t.to_string(), v.unwrap_or_default()));
                    }
                    Ok(out)
                })
                .await
                .unwrap();
            store
                .call(move |c| Ok(c.execute_batch(sql)?))
                .await
                .unwrap();
            let e = match store.call_detail(id).await {
                Err(e) => e,
                Ok(_) => panic!("{sql}: read as if sound"),
            };
            let StoreError::BadValue(bad) = &e else {
                panic!("{sql}: {e}")
            };
            assert_eq!(bad.column, column, "{sql}");
            assert!(bad.value.contains(value), "{sql}: {bad}");
            assert!(e.to_string().contains(column), "{e}");
            if column == "started_at" {
                assert!(store.list_calls(filter()).await.is_err(), "the list too");
                assert!(
                    store.live_call_state("rig").await.is_err(),
                    "the live state too"
                );
            }
            // Restore every column for the next case.
            store
                .call(move |c| {
                    for (t, v) in &clean {
                        let (table, col) = t.split_once('.').unwrap();
                        c.execute(&format!("UPDATE {table} SET {col} = ?1"), [v.as_str()])?;
                    }
                    c.execute("UPDATE legs SET answered_at = NULL", [])?;
                    Ok(())
                })
                .await
                .unwrap();
            store.call_detail(id).await.unwrap().unwrap();
        }
    }
}
