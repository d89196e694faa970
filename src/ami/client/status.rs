//! One client's live status: connection state, version, attempts, last error — behind a
//! lock, changed by the connection task on each transition — and the per-event figures
//! as atomics ([`EventCounters`]), changed on every event without a lock.
//!
//! Owns what a reader of the status sees. It never decides a transition: the connection
//! task does, and readers only take snapshots.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Connection state as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Disconnected,
    Connecting,
    Connected,
}

/// A snapshot of one client's connection and counters.
#[derive(Debug, Clone)]
pub struct ClientStatus {
    pub state: ClientState,
    /// `Asterisk 22.x.y` as last reported at a login (kept if a later login could not
    /// learn it).
    pub version: Option<String>,
    pub connected_since: Option<DateTime<Utc>>,
    /// Connection attempts, successful or not, since start.
    pub connect_attempts: u64,
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_received: u64,
    /// Event deliveries lost because a consumer's queue was full.
    pub events_dropped: u64,
    /// Incoming messages skipped: over a size limit or malformed.
    pub messages_skipped: u64,
    /// Why the last connection attempt or session ended; `None` while connected.
    pub last_error: Option<String>,
}

impl ClientStatus {
    fn new() -> ClientStatus {
        ClientStatus {
            state: ClientState::Disconnected,
            version: None,
            connected_since: None,
            connect_attempts: 0,
            last_event_at: None,
            events_received: 0,
            events_dropped: 0,
            messages_skipped: 0,
            last_error: None,
        }
    }

    /// Attempts after the first: failed ones count too, so a PBX refusing the login
    /// shows its retries.
    pub fn reconnects(&self) -> u64 {
        self.connect_attempts.saturating_sub(1)
    }

    /// Logged in and serving actions and events.
    pub fn is_connected(&self) -> bool {
        self.state == ClientState::Connected
    }
}

/// The per-event figures of a connection, kept apart from [`ClientStatus`] as atomics:
/// they change with every event, and a lock per event cost more than parsing it.
#[derive(Debug, Default)]
pub struct EventCounters {
    received: AtomicU64,
    dropped: AtomicU64,
    /// Microseconds since the epoch; 0 for "none yet".
    last_event_micros: AtomicI64,
}

impl EventCounters {
    /// Events received, deliveries dropped, and when the last event arrived.
    pub fn read(&self) -> (u64, u64, Option<DateTime<Utc>>) {
        let micros = self.last_event_micros.load(Ordering::Relaxed);
        let last = (micros != 0)
            .then(|| DateTime::from_timestamp_micros(micros))
            .flatten();
        (
            self.received.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            last,
        )
    }

    /// Copies the figures into `status`.
    pub fn fill(&self, status: &mut ClientStatus) {
        (
            status.events_received,
            status.events_dropped,
            status.last_event_at,
        ) = self.read();
    }

    /// One event received, now.
    pub(super) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_event_micros
            .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
    }

    /// `n` deliveries dropped.
    pub(super) fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The status and counters of one client, shared by its task (the writer) and its
/// handles (readers).
#[derive(Debug)]
pub(super) struct StatusCell {
    status: Mutex<ClientStatus>,
    counters: Arc<EventCounters>,
}

impl StatusCell {
    pub(super) fn new() -> StatusCell {
        StatusCell {
            status: Mutex::new(ClientStatus::new()),
            counters: Arc::new(EventCounters::default()),
        }
    }

    /// Applies one transition.
    pub(super) fn update(&self, f: impl FnOnce(&mut ClientStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The status now, with the live counters.
    pub(super) fn snapshot(&self) -> ClientStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.counters.fill(&mut status);
        status
    }

    pub(super) fn counters(&self) -> &Arc<EventCounters> {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_the_live_counters_over_the_locked_status() {
        let cell = StatusCell::new();
        let s = cell.snapshot();
        assert_eq!(s.state, ClientState::Disconnected);
        assert_eq!((s.events_received, s.events_dropped), (0, 0));
        assert_eq!(s.last_event_at, None, "no event yet is no time, not 1970");
        cell.counters().received();
        cell.counters().received();
        cell.counters().dropped(3);
        cell.update(|s| {
            s.connect_attempts = 4;
            s.messages_skipped = 1;
        });
        let s = cell.snapshot();
        assert_eq!((s.events_received, s.events_dropped), (2, 3));
        assert!(s.last_event_at.is_some_and(|t| t > DateTime::UNIX_EPOCH));
        assert_eq!((s.connect_attempts, s.messages_skipped), (4, 1));
    }

    #[test]
    fn reconnects_are_the_attempts_after_the_first() {
        let mut s = ClientStatus::new();
        assert_eq!(s.reconnects(), 0);
        s.connect_attempts = 1;
        assert_eq!(s.reconnects(), 0);
        s.connect_attempts = 5;
        assert_eq!(s.reconnects(), 4);
        assert!(!s.is_connected());
        s.state = ClientState::Connecting;
        assert!(!s.is_connected());
        s.state = ClientState::Connected;
        assert!(s.is_connected());
    }
}
