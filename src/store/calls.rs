//! Persistence of the call tracker's records, and the queries behind `/api/calls`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, OptionalExtension, Row, Transaction, params};

use super::{Store, StoreError};
use crate::calls::{CallChange, CallRecord, ConferenceRecord, GapRecord, LegRecord};
use crate::timefmt::rfc3339_micros;

fn ts(t: &DateTime<Utc>) -> String {
    rfc3339_micros(t)
}

fn ts_opt(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(ts)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
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
                    started_at: parse_ts(r.get(2)?).unwrap_or_default(),
                    ended_at: parse_ts(r.get(3)?),
                    end_reason: r.get(4)?,
                })
            })? {
                state.conferences.push(row?);
            }
            let last: Option<String> = conn
                // The timeline holds every event of a known call (what AGI sessions add
                // to call_events is not AMI and does not mark the gap).
                .query_row(
                    "SELECT max(last_at) FROM call_timeline WHERE pbx = ?1",
                    [&pbx],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            state.last_event_at = parse_ts(last);
            Ok(state)
        })
        .await
    }

    /// Adds timeline entries about legs known by uniqueid (AGI sessions; each detail is a
    /// JSON object's text). The call is resolved when read, so an entry written before
    /// the leg itself is not lost.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn record_leg_events(
        &self,
        rows: Vec<(String, String, &'static str, DateTime<Utc>, String)>,
    ) -> Result<(), StoreError> {
        self.transaction(move |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO call_events (call_id, pbx, uniqueid, at, kind, detail)
                 VALUES ((SELECT call_id FROM legs WHERE pbx = ?1 AND uniqueid = ?2), ?1, ?2, ?3, ?4, ?5)",
            )?;
            for (pbx, uniqueid, kind, at, detail) in rows {
                stmt.execute(params![pbx, uniqueid, ts(&at), kind, detail])?;
            }
            Ok(())
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
                        disconnected_at: parse_ts(r.get(1)?),
                        reconnected_at: parse_ts(r.get(2)?).unwrap_or_default(),
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
                args.push(ts(&since).into());
                clauses.push(format!("started_at >= ?{}", args.len()));
            }
            if let Some(until) = filter.until {
                args.push(ts(&until).into());
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
                events.extend(timeline_entries(&chunk?));
            }
            let mut stmt = conn.prepare_cached(
                "SELECT at, uniqueid, kind, detail FROM call_events WHERE call_id = ?1
                 UNION ALL
                 SELECT at, uniqueid, kind, detail FROM call_events
                 WHERE call_id IS NULL AND uniqueid IN (SELECT uniqueid FROM legs WHERE call_id = ?1)",
            )?;
            for row in stmt.query_map([id], |r| {
                Ok(EventRow {
                    at: parse_ts(r.get(0)?),
                    uniqueid: r.get(1)?,
                    kind: r.get(2)?,
                    detail: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                })
            })? {
                events.push(row?);
            }
            // Chunks are in write order and entries in event order: a stable sort by
            // time keeps that order among equal times.
            events.sort_by_key(|e| e.at);
            let mut stmt =
                conn.prepare_cached("SELECT raw FROM call_detail_records WHERE call_id = ?1 AND source = 'ami' ORDER BY id")?;
            let cdrs = stmt
                .query_map([id], |r| r.get::<_, String>(0))?
                .map(|r| r.map(|s| serde_json::from_str(&s).unwrap_or_default()))
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

/// The entries of one stored timeline chunk; an unreadable chunk (never written by this
/// code) yields nothing rather than failing the whole call.
fn timeline_entries(chunk: &str) -> Vec<EventRow> {
    #[derive(serde::Deserialize)]
    struct Entry {
        at: String,
        uniqueid: Option<String>,
        kind: String,
        detail: serde_json::Value,
    }
    match serde_json::from_str::<Vec<Entry>>(chunk) {
        Ok(entries) => entries
            .into_iter()
            .map(|e| EventRow {
                at: parse_ts(Some(e.at)),
                uniqueid: e.uniqueid,
                kind: e.kind,
                detail: e.detail,
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "unreadable call timeline chunk");
            Vec::new()
        }
    }
}

fn call_record(r: &Row<'_>, at: usize) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        pbx: r.get(at)?,
        linkedid: r.get(at + 1)?,
        started_at: parse_ts(r.get(at + 2)?).unwrap_or_default(),
        ended_at: parse_ts(r.get(at + 3)?),
    })
}

fn leg_record(r: &Row<'_>, at: usize) -> rusqlite::Result<LegRecord> {
    let variables: String = r.get(at + 14)?;
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
        variables: serde_json::from_str::<BTreeMap<String, String>>(&variables).unwrap_or_default(),
        created_at: parse_ts(r.get(at + 15)?),
        answered_at: parse_ts(r.get(at + 16)?),
        ended_at: parse_ts(r.get(at + 17)?),
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
            Sql::LegUpsert => {
                "INSERT INTO legs (call_id, pbx, uniqueid, channel, caller_num, caller_name, connected_num,
                    connected_name, state, account_code, context, exten, bridge_id, conference, variables,
                    created_at, answered_at, ended_at, hangup_cause, hangup_cause_text, end_reason,
                    originate_reason, adopted)
                 VALUES (?2, ?1, ?3, ?4, ?5, ?6, ?7, ?8,
                    ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
                 ON CONFLICT (pbx, uniqueid) DO UPDATE SET
                    channel = excluded.channel, caller_num = excluded.caller_num,
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
                "INSERT INTO call_events (call_id, pbx, uniqueid, at, kind, detail)
                 VALUES (?2, ?1, ?3, ?4, ?5, ?6)"
            }
            Sql::Cdr => {
                "INSERT INTO call_detail_records (source, call_id, pbx, uniqueid, received_at, phone, extension,
                    disposition, duration, billable_seconds, call_at, raw)
                 VALUES ('ami', coalesce(?2, (SELECT call_id FROM legs WHERE pbx = ?1 AND uniqueid = ?3)),
                    ?1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11, ?10)"
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
                let times = (ts(&c.started_at), ts_opt(&c.ended_at));
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
                        ts(&c.started_at)
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
                            ts(&c.started_at),
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
                    ts(&t.first_at),
                    ts(&t.last_at),
                    t.entries
                ])?;
            }
            CallChange::Event(e) => {
                let call_id = self.call_id(&e.pbx, e.linkedid.as_deref())?;
                self.statement(Sql::Event)?.execute(params![
                    e.pbx,
                    call_id,
                    e.uniqueid,
                    ts(&e.at),
                    e.kind,
                    e.detail
                ])?;
            }
            CallChange::Cdr(c) => {
                let call_id = self.call_id(&c.pbx, c.linkedid.as_deref())?;
                self.statement(Sql::Cdr)?.execute(params![
                    c.pbx,
                    call_id,
                    c.uniqueid,
                    ts(&c.received_at),
                    c.source,
                    c.destination,
                    c.disposition,
                    c.duration,
                    c.billable_seconds,
                    c.raw,
                    c.start_time
                ])?;
            }
            CallChange::Gap(g) => {
                self.statement(Sql::Gap)?.execute(params![
                    g.pbx,
                    ts_opt(&g.disconnected_at),
                    ts(&g.reconnected_at),
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
    use crate::calls::{CallTracker, EventFields};

    struct Ev(Vec<(&'static str, String)>);
    impl EventFields for Ev {
        fn field(&self, key: &str) -> Option<std::borrow::Cow<'_, str>> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str().into())
        }
        fn fields(&self, key: &str) -> Vec<std::borrow::Cow<'_, str>> {
            self.0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str().into())
                .collect()
        }
    }
    fn ev(pairs: &[(&'static str, &str)]) -> Ev {
        Ev(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
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
}
