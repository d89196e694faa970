//! Ties every FastAGI session to its leg in the AMI call state: the session's start and
//! end (route, channel) become entries of the call's timeline, found through
//! `agi_uniqueid`, so `/api/calls/{id}` shows what the dialplan asked medcall.
//!
//! The hook runs on the AGI accept path and must never block it: entries go through a
//! bounded queue to a writer task; when the queue is full they are dropped and counted.
//! The writer lets entries gather for a few milliseconds and writes them in one
//! transaction, so a busy PBX costs one commit per batch, not one per session.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PbxAddresses;
use crate::agi::{Request, SessionHook, SessionMark};
use crate::store::Store;

/// What the timeline needs of one session, taken once at its start and shared by
/// its two entries (and the session's mark).
#[derive(Debug)]
struct Leg {
    peer: IpAddr,
    uniqueid: String,
    route: &'static str,
    path: String,
    channel: String,
}

/// One session boundary.
#[derive(Debug)]
struct Entry {
    leg: Arc<Leg>,
    kind: &'static str,
    at: DateTime<Utc>,
}

/// The hook half: cheap, never blocks.
#[derive(Debug)]
pub struct SessionLog {
    tx: mpsc::Sender<Entry>,
    dropped: AtomicU64,
}

const QUEUE: usize = 4096;
/// Most entries in one transaction.
const BATCH: usize = 512;
/// How long the writer lets entries gather after the first one, so one transaction
/// (one fsync) carries many sessions under load; the timeline shows them that much
/// later.
const LINGER: Duration = Duration::from_millis(20);

impl SessionLog {
    /// The hook and the writer task to run (on the daemon's tracker).
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

    fn push(&self, leg: Arc<Leg>, kind: &'static str) {
        let entry = Entry {
            leg,
            kind,
            at: Utc::now(),
        };
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
        });
        self.push(Arc::clone(&leg), "AgiSessionStart");
        SessionMark::new(leg)
    }
    fn session_ended(&self, mark: SessionMark) {
        if let Some(leg) = mark.take::<Leg>() {
            self.push(leg, "AgiSessionEnd");
        }
    }
}

/// A session entry's detail in the timeline.
#[derive(serde::Serialize)]
struct Detail<'a> {
    route: &'a str,
    path: &'a str,
    channel: &'a str,
}

async fn write_entries(
    mut rx: mpsc::Receiver<Entry>,
    store: Store,
    pbxs: Arc<PbxAddresses>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => None,
            e = rx.recv() => e,
        };
        let Some(first) = first else { break };
        batch.push(first);
        if rx.len() < BATCH - 1 {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = tokio::time::sleep(LINGER) => {}
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let rows = batch
            .drain(..)
            .map(|Entry { leg, kind, at }| {
                let pbx = pbxs.name_for(leg.peer).unwrap_or("unknown").to_string();
                let detail = serde_json::to_string(&Detail {
                    route: leg.route,
                    path: &leg.path,
                    channel: &leg.channel,
                })
                .unwrap_or_else(|_| "{}".into());
                (pbx, leg.uniqueid.clone(), kind, at, detail)
            })
            .collect();
        if let Err(e) = store.record_leg_events(rows).await {
            tracing::warn!(error = %e, "cannot record AGI sessions in the call timeline");
        }
    }
}
