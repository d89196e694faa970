//! Ties every FastAGI session to its leg in the AMI call state: the session's start and
//! end (route, channel) become entries of the call's timeline, found through
//! `agi_uniqueid`, so `/api/calls/{id}` shows what the dialplan asked medcall.
//!
//! The hook runs on the AGI accept path and must never block it: entries go through a
//! bounded queue to a writer task; when the queue is full they are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PbxAddresses;
use crate::agi::{Request, SessionHook};
use crate::store::Store;

/// One session boundary.
#[derive(Debug)]
struct Entry {
    pbx: String,
    uniqueid: String,
    kind: &'static str,
    at: DateTime<Utc>,
    detail: serde_json::Value,
}

/// The hook half: cheap, never blocks.
#[derive(Debug)]
pub struct SessionLog {
    tx: mpsc::Sender<Entry>,
    pbxs: Arc<PbxAddresses>,
    dropped: AtomicU64,
}

const QUEUE: usize = 4096;

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
            pbxs,
            dropped: AtomicU64::new(0),
        });
        (log, write_entries(rx, store, shutdown))
    }

    /// Entries dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn push(&self, request: &Request, kind: &'static str) {
        let entry = Entry {
            pbx: self
                .pbxs
                .name_for(request.peer.ip())
                .unwrap_or("unknown")
                .to_string(),
            uniqueid: request.uniqueid.clone(),
            kind,
            at: Utc::now(),
            detail: serde_json::json!({ "route": request.route, "path": request.path, "channel": request.channel }),
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
    fn session_started(&self, request: &Request) {
        self.push(request, "AgiSessionStart");
    }
    fn session_ended(&self, request: &Request) {
        self.push(request, "AgiSessionEnd");
    }
}

async fn write_entries(mut rx: mpsc::Receiver<Entry>, store: Store, shutdown: CancellationToken) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => None,
            e = rx.recv() => e,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let rows = batch
            .into_iter()
            .map(|e| (e.pbx, e.uniqueid, e.kind, e.at, e.detail))
            .collect();
        if let Err(e) = store.record_leg_events(rows).await {
            tracing::warn!(error = %e, "cannot record AGI sessions in the call timeline");
        }
    }
}
