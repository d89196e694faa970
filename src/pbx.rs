//! What the daemon knows about each configured PBX's connection, for `/health`,
//! `/api/pbx` and `/metrics`. The AMI connection task is the only writer of a PBX's
//! status; HTTP handlers only read snapshots.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ami::EventCounters;
use crate::config::PbxConfig;

/// Connection state of one PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    /// No AMI session: never connected, or lost and not yet back.
    NotConnected,
    /// TCP connected, logging in.
    Connecting,
    /// Logged in; events flow.
    Connected,
}

/// A snapshot of one PBX's status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxStatus {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub state: ConnectionState,
    /// `Asterisk 22.x.y` as the PBX reports it, once connected.
    pub asterisk_version: Option<String>,
    pub connected_since: Option<DateTime<Utc>>,
    pub reconnect_count: u64,
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_received: u64,
    pub events_dropped: u64,
    /// Messages skipped as over the size or line limit, or malformed.
    pub messages_skipped: u64,
    /// The last connection or login error, if the PBX is not connected.
    pub last_error: Option<String>,
}

/// Every PBX's status, shared between the AMI tasks (writers) and HTTP (readers).
#[derive(Debug, Clone)]
pub struct PbxRegistry {
    entries: Arc<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    status: Mutex<PbxStatus>,
    /// The connection's per-event figures, read live at each snapshot (they change with
    /// every event, so they are not copied in on each one).
    counters: Mutex<Option<Arc<EventCounters>>>,
}

impl PbxRegistry {
    pub fn new(pbxs: &[PbxConfig]) -> PbxRegistry {
        let entries = pbxs
            .iter()
            .map(|p| Entry {
                counters: Mutex::new(None),
                status: Mutex::new(PbxStatus {
                    name: p.name.clone(),
                    host: p.host.clone(),
                    port: p.port,
                    state: ConnectionState::NotConnected,
                    asterisk_version: None,
                    connected_since: None,
                    reconnect_count: 0,
                    last_event_at: None,
                    events_received: 0,
                    events_dropped: 0,
                    messages_skipped: 0,
                    last_error: None,
                }),
            })
            .collect();
        PbxRegistry {
            entries: Arc::new(entries),
        }
    }

    /// Snapshots of every PBX, in configuration order.
    pub fn snapshot(&self) -> Vec<PbxStatus> {
        self.entries
            .iter()
            .map(|e| {
                let mut s = e.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let counters = e.counters.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = counters.as_ref() {
                    (s.events_received, s.events_dropped, s.last_event_at) = c.read();
                }
                s
            })
            .collect()
    }

    /// Makes the named PBX's snapshots read `counters` live.
    pub fn attach_counters(&self, name: &str, counters: Arc<EventCounters>) {
        for e in self.entries.iter() {
            let is_it = e.status.lock().unwrap_or_else(|p| p.into_inner()).name == name;
            if is_it {
                *e.counters.lock().unwrap_or_else(|p| p.into_inner()) = Some(counters);
                return;
            }
        }
    }

    /// Applies `f` to the named PBX's status; unknown names are ignored.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut PbxStatus)) {
        for e in self.entries.iter() {
            let mut s = e.status.lock().unwrap_or_else(|p| p.into_inner());
            if s.name == name {
                f(&mut s);
                return;
            }
        }
    }
}
