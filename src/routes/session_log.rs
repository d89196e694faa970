//! Ties every FastAGI session to its leg in the AMI call state: the session's start and
//! end (route, channel) become entries of the call's timeline, found through
//! `agi_uniqueid`, so `/api/calls/{id}` shows what the dialplan asked medcall.
//!
//! The hook runs on the AGI accept path and must never block it: entries go through a
//! bounded queue to a writer task; when the queue is full they are dropped and counted.
//! The writer lets entries gather for a few milliseconds and writes them in one
//! transaction, so a busy PBX costs one commit per batch, not one per session.
//!
//! A session is one row (`agi_sessions`) holding both its entries: the writer holds a
//! session's start back until its end arrives, for at most [`HOLD`]. A session that
//! runs longer is written at its start (so a live call's timeline shows it) and its
//! row completed when it ends; a session cut by its deadline or by shutdown keeps its
//! start alone.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{PbxAddresses, pbx_label};
use crate::agi::{Request, SessionHook, SessionMark};
use crate::json::push_string as json_string;
use crate::store::{AgiSessionRow, Store};

/// What the timeline needs of one session, taken once at its start and shared by
/// its two entries (and the session's mark).
#[derive(Debug)]
struct Leg {
    peer: IpAddr,
    uniqueid: String,
    route: &'static str,
    path: String,
    channel: String,
    started_at: DateTime<Utc>,
    /// Where the writer is with this session (only the writer changes it): [`NEW`],
    /// [`HELD`], [`DONE`], or the id of the row its start was written to.
    state: AtomicI64,
}

/// The start was not seen by the writer (dropped, or not yet queued).
const NEW: i64 = 0;
/// The start is held by the writer, waiting for the end.
const HELD: i64 = -1;
/// Written whole (start and end in one row).
const DONE: i64 = -2;

/// One session boundary.
#[derive(Debug)]
enum Entry {
    Start(Arc<Leg>),
    End(Arc<Leg>, DateTime<Utc>),
}

/// The hook half: cheap, never blocks.
#[derive(Debug)]
pub struct SessionLog {
    tx: mpsc::Sender<Entry>,
    dropped: AtomicU64,
}

const QUEUE: usize = 4096;
/// Most entries taken into one transaction.
const BATCH: usize = 512;
/// How long the writer lets entries gather after the first one, so one transaction
/// carries many sessions under load; the timeline shows them that much later. (100 ms
/// was tried: no change in the sessions' latency that showed above the host's noise.)
const LINGER: Duration = Duration::from_millis(20);
/// How long a session's start waits for its end before it is written alone: most
/// sessions end well within it and cost one row; a longer one shows on the timeline
/// this much later.
const HOLD: Duration = Duration::from_millis(250);
/// Most starts held at once; past it the oldest is written alone.
const HELD_MAX: usize = 2 * QUEUE;

impl SessionLog {
    /// The hook and the writer task to run (on the daemon's tracker). The writer ends
    /// once every handle to the hook is gone (the AGI server has stopped) and what was
    /// queued is written; `shutdown` only makes it stop lingering.
    pub fn new(
        store: Store,
        pbxs: Arc<PbxAddresses>,
        shutdown: CancellationToken,
    ) -> (
        Arc<SessionLog>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let log = Arc::new(SessionLog {
            tx,
            dropped: AtomicU64::new(0),
        });
        (log, write_entries(rx, store, pbxs, shutdown))
    }

    /// Entries dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn push(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "AGI session log is behind; entries dropped");
            }
        }
    }
}

impl SessionHook for SessionLog {
    fn session_started(&self, request: &Request) -> SessionMark {
        let leg = Arc::new(Leg {
            peer: request.peer.ip(),
            uniqueid: request.uniqueid.clone(),
            route: request.route,
            path: request.path.clone(),
            channel: request.channel.clone(),
            started_at: Utc::now(),
            state: AtomicI64::new(NEW),
        });
        self.push(Entry::Start(Arc::clone(&leg)));
        SessionMark::new(leg)
    }
    fn session_ended(&self, mark: SessionMark) {
        if let Some(leg) = mark.take::<Leg>() {
            self.push(Entry::End(leg, Utc::now()));
        }
    }
}

/// The writer's state between batches.
struct Writer {
    store: Store,
    pbxs: Arc<PbxAddresses>,
    /// Starts waiting for their end, oldest first, with when the writer took them.
    held: VecDeque<(Instant, Arc<Leg>)>,
    rows: Vec<AgiSessionRow>,
    /// The sessions whose start is written alone in `rows`: (index in `rows`, leg).
    alone: Vec<(usize, Arc<Leg>)>,
}

impl Writer {
    fn take(&mut self, entry: Entry, now: Instant) {
        match entry {
            Entry::Start(leg) => {
                leg.state.store(HELD, Ordering::Relaxed);
                self.held.push_back((now, leg));
            }
            Entry::End(leg, at) => match leg.state.load(Ordering::Relaxed) {
                HELD => {
                    leg.state.store(DONE, Ordering::Relaxed);
                    let row = self.row(&leg, Some(leg.started_at), Some(at));
                    self.rows.push(row);
                }
                row if row > 0 => self.rows.push(AgiSessionRow {
                    row: Some(row),
                    ended_at: Some(at),
                    ..AgiSessionRow::default()
                }),
                // The start was dropped: the end alone.
                _ => {
                    let row = self.row(&leg, None, Some(at));
                    self.rows.push(row);
                }
            },
        }
    }

    /// Writes alone the starts held past [`HOLD`] (all of them when `all`).
    fn release_held(&mut self, now: Instant, all: bool) {
        while let Some((since, leg)) = self.held.front() {
            let done = leg.state.load(Ordering::Relaxed) != HELD;
            if !(done || all || now >= *since + HOLD || self.held.len() > HELD_MAX) {
                break;
            }
            if let Some((_, leg)) = self.held.pop_front().filter(|_| !done) {
                let row = self.row(&leg, Some(leg.started_at), None);
                self.alone.push((self.rows.len(), leg));
                self.rows.push(row);
            }
        }
    }

    /// When the oldest start still held is due to be written alone.
    fn next_due(&mut self) -> Option<Instant> {
        while let Some((_, leg)) = self.held.front() {
            if leg.state.load(Ordering::Relaxed) == HELD {
                break;
            }
            self.held.pop_front();
        }
        self.held.front().map(|(since, _)| *since + HOLD)
    }

    fn row(
        &self,
        leg: &Leg,
        started_at: Option<DateTime<Utc>>,
        ended_at: Option<DateTime<Utc>>,
    ) -> AgiSessionRow {
        let mut detail =
            String::with_capacity(32 + leg.route.len() + leg.path.len() + leg.channel.len());
        detail.push_str("{\"route\":");
        json_string(&mut detail, leg.route);
        detail.push_str(",\"path\":");
        json_string(&mut detail, &leg.path);
        detail.push_str(",\"channel\":");
        json_string(&mut detail, &leg.channel);
        detail.push('}');
        AgiSessionRow {
            row: None,
            pbx: pbx_label(self.pbxs.name_for(leg.peer)).to_string(),
            uniqueid: leg.uniqueid.clone(),
            started_at,
            ended_at,
            detail,
        }
    }

    async fn write(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        let count = rows.len();
        match self.store.record_agi_sessions(rows).await {
            Ok(ids) => {
                for (i, leg) in self.alone.drain(..) {
                    let id = ids.get(i).copied().flatten().unwrap_or(NEW);
                    leg.state.store(id.max(NEW), Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = count, "cannot record AGI sessions in the call timeline");
                // Their ends (if they come) are written alone.
                for (_, leg) in self.alone.drain(..) {
                    leg.state.store(NEW, Ordering::Relaxed);
                }
            }
        }
        self.rows = Vec::with_capacity(count);
    }
}

/// Why the writer woke up.
enum Wake {
    Entry(Entry),
    Closed,
    Due,
    Stop,
}

async fn write_entries(
    mut rx: mpsc::Receiver<Entry>,
    store: Store,
    pbxs: Arc<PbxAddresses>,
    shutdown: CancellationToken,
) {
    let mut writer = Writer {
        store,
        pbxs,
        held: VecDeque::new(),
        rows: Vec::new(),
        alone: Vec::new(),
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    let mut closed = false;
    while !closed {
        let due = writer.next_due();
        let wake = tokio::select! {
            () = shutdown.cancelled(), if !stopping => Wake::Stop,
            e = rx.recv() => e.map_or(Wake::Closed, Wake::Entry),
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Wake::Due,
        };
        match wake {
            Wake::Entry(e) => batch.push(e),
            Wake::Closed => closed = true,
            Wake::Stop => stopping = true,
            Wake::Due => {}
        }
        if !batch.is_empty() && !stopping && rx.len() < BATCH - 1 {
            tokio::select! {
                () = shutdown.cancelled() => stopping = true,
                () = tokio::time::sleep(LINGER) => {}
            }
        }
        while !closed && batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => closed = true,
            }
        }
        let now = Instant::now();
        for entry in batch.drain(..) {
            writer.take(entry, now);
        }
        // Closed: every end that will come has come; what is still held was cut off.
        writer.release_held(now, closed);
        writer.write().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(uniqueid: &str) -> Arc<Leg> {
        Arc::new(Leg {
            peer: IpAddr::from([127, 0, 0, 1]),
            uniqueid: uniqueid.into(),
            route: "calls/{id}",
            path: "calls/7".into(),
            channel: "PJSIP/a-1".into(),
            started_at: Utc::now(),
            state: AtomicI64::new(NEW),
        })
    }

    type Stored = (String, String, Option<String>, Option<String>, String);

    async fn stored(store: &Store) -> Vec<Stored> {
        store
            .call(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT pbx, uniqueid, started_at, ended_at, detail FROM agi_sessions ORDER BY uniqueid",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                    .collect::<Result<Vec<Stored>, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_is_one_row_whether_it_ends_soon_late_never_or_without_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let pbxs = Arc::new(PbxAddresses::from_entries(vec![(
            crate::pbx::PbxName::new("main").unwrap(),
            vec![IpAddr::from([10, 0, 0, 1])],
        )]));
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_entries(
            rx,
            store.clone(),
            pbxs,
            CancellationToken::new(),
        ));
        let (soon, late, never, headless) = (leg("1.1"), leg("1.2"), leg("1.3"), leg("1.4"));
        for l in [&soon, &late, &never] {
            tx.send(Entry::Start(Arc::clone(l))).await.unwrap();
        }
        tx.send(Entry::End(Arc::clone(&soon), Utc::now()))
            .await
            .unwrap();
        // `late` outlives the hold: its start is written alone, then completed.
        tokio::time::sleep(HOLD + LINGER * 4).await;
        let early = stored(&store).await;
        assert_eq!(early.len(), 3, "{early:?}");
        assert!(early.iter().all(|r| r.2.is_some()));
        assert!(early.iter().filter(|r| r.3.is_none()).count() == 2);
        tx.send(Entry::End(Arc::clone(&late), Utc::now()))
            .await
            .unwrap();
        tx.send(Entry::End(Arc::clone(&headless), Utc::now()))
            .await
            .unwrap();
        drop(tx);
        writer.await.unwrap();
        let rows = stored(&store).await;
        let ended = |r: &Stored| (r.2.is_some(), r.3.is_some());
        assert_eq!(rows.len(), 4, "{rows:?}");
        let [a, b, c, d] = rows.as_slice() else {
            unreachable!()
        };
        assert_eq!(ended(a), (true, true), "ended soon: one row");
        assert_eq!(ended(b), (true, true), "ended late: its row completed");
        assert_eq!(ended(c), (true, false), "cut off: the start alone");
        assert_eq!(ended(d), (false, true), "start dropped: the end alone");
        assert!(a.2 <= a.3);
        assert_eq!(a.0, "main", "loopback with one PBX is that PBX");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&a.4).unwrap(),
            serde_json::json!({"route": "calls/{id}", "path": "calls/7", "channel": "PJSIP/a-1"})
        );
    }

    /// A fresh store and the writer's task over it, with one PBX on loopback.
    fn writer_over_fresh_store() -> (
        tempfile::TempDir,
        Store,
        mpsc::Sender<Entry>,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let pbxs = Arc::new(PbxAddresses::from_entries(vec![(
            crate::pbx::PbxName::new("main").unwrap(),
            vec![],
        )]));
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_entries(
            rx,
            store.clone(),
            pbxs,
            CancellationToken::new(),
        ));
        (dir, store, tx, writer)
    }

    #[tokio::test]
    async fn a_start_is_held_for_its_end_and_a_long_session_completes_its_first_row() {
        let (_dir, store, tx, writer) = writer_over_fresh_store();
        let long = leg("2.1");
        tx.send(Entry::Start(Arc::clone(&long))).await.unwrap();
        tokio::time::sleep(LINGER * 4).await;
        assert_eq!(stored(&store).await, [], "held, not yet written");
        // Past the hold its start is written alone, as the store's first row (id 1).
        tokio::time::sleep(HOLD).await;
        let early = stored(&store).await;
        assert_eq!(early.len(), 1, "{early:?}");
        assert_eq!((early[0].2.is_some(), early[0].3.is_none()), (true, true));
        tx.send(Entry::End(Arc::clone(&long), Utc::now()))
            .await
            .unwrap();
        drop(tx);
        writer.await.unwrap();
        let rows = stored(&store).await;
        assert_eq!(
            rows.len(),
            1,
            "the first row completed, no second: {rows:?}"
        );
        assert_eq!((rows[0].2.is_some(), rows[0].3.is_some()), (true, true));
    }

    #[tokio::test]
    async fn a_start_still_held_when_the_server_stops_is_written_at_once() {
        let (_dir, store, tx, writer) = writer_over_fresh_store();
        tx.send(Entry::Start(leg("3.1"))).await.unwrap();
        drop(tx);
        // Well before the hold would release it.
        tokio::time::timeout(HOLD / 2, writer)
            .await
            .expect("the writer ends without waiting out the hold")
            .unwrap();
        let rows = stored(&store).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].2.is_some(), rows[0].3.is_none()), (true, true));
    }

    /// A writer over a fresh store in `dir`, holding nothing, with no PBX addresses.
    fn empty_writer(dir: &tempfile::TempDir) -> Writer {
        Writer {
            store: Store::open(&dir.path().join("m.db")).unwrap(),
            pbxs: Arc::new(PbxAddresses::default()),
            held: VecDeque::new(),
            rows: Vec::new(),
            alone: Vec::new(),
        }
    }

    #[tokio::test]
    async fn past_the_most_starts_held_the_oldest_is_written_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = empty_writer(&dir);
        let now = Instant::now();
        for i in 0..HELD_MAX {
            writer.take(Entry::Start(leg(&format!("4.{i}"))), now);
        }
        writer.release_held(now, false);
        assert!(writer.rows.is_empty(), "{} written", writer.rows.len());
        writer.take(Entry::Start(leg("4.last")), now);
        writer.release_held(now, false);
        let uniqueids: Vec<&str> = writer.rows.iter().map(|r| r.uniqueid.as_str()).collect();
        assert_eq!(uniqueids, ["4.0"]);
        assert_eq!(writer.held.len(), HELD_MAX);
    }

    #[tokio::test]
    async fn the_writer_next_wakes_when_the_oldest_start_still_held_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = empty_writer(&dir);
        assert_eq!(writer.next_due(), None, "nothing held");
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(30);
        let (first, second) = (leg("6.1"), leg("6.2"));
        writer.take(Entry::Start(Arc::clone(&first)), t0);
        writer.take(Entry::Start(Arc::clone(&second)), t1);
        assert_eq!(writer.next_due(), Some(t0 + HOLD));
        // The first ended (written whole): the second is the one due next.
        writer.take(Entry::End(first, Utc::now()), t1);
        assert_eq!(writer.next_due(), Some(t1 + HOLD));
        assert_eq!(writer.held.len(), 1, "the ended start left the queue");
    }

    #[tokio::test]
    async fn entries_past_a_full_queue_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        // The writer is not run: nothing leaves the queue.
        let (log, _writer) = SessionLog::new(
            store,
            Arc::new(PbxAddresses::default()),
            CancellationToken::new(),
        );
        for i in 0..QUEUE {
            log.push(Entry::Start(leg(&format!("5.{i}"))));
        }
        assert_eq!(log.dropped(), 0);
        for i in 0..3 {
            log.push(Entry::Start(leg(&format!("5.over.{i}"))));
        }
        assert_eq!(log.dropped(), 3);
    }
}
