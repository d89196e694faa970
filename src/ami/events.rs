//! Fan-out of what one AMI connection produces — its lifecycle and its events — to any
//! number of consumers, each through its own bounded queue.
//!
//! Owns the delivery guarantee: a consumer sees items in connection order; when its
//! queue is full, items are dropped *for that consumer only*, counted, and the consumer
//! is told how many it missed ([`AmiEvent::Lagged`]) at the place of the gap. It never
//! blocks the connection task and never buffers without bound.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::message::Message;

/// One item of a connection's stream, in the order things happened.
#[derive(Debug, Clone)]
pub enum AmiEvent {
    /// Logged in. Whatever a consumer knew about the PBX may be stale: reconcile now.
    Connected {
        /// `Asterisk 22.10.1`, from `CoreSettings` or `core show version`.
        version: Option<String>,
        /// The AMI banner, e.g. `Asterisk Call Manager/11.0.0`.
        banner: String,
    },
    /// The session ended; events may be missed until the next `Connected`.
    Disconnected { error: String },
    /// An event (or another unsolicited message) from the PBX.
    Message(Arc<Message>),
    /// This consumer's queue was full: `missed` items were dropped just before this one.
    Lagged { missed: u64 },
}

/// A consumer's end: items in order, bounded.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<AmiEvent>,
}

impl EventStream {
    /// The next item; `None` once the connection task has stopped.
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Option<AmiEvent> {
        self.rx.recv().await
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<AmiEvent> {
        self.rx.try_recv().ok()
    }
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<AmiEvent>,
    missed: u64,
}

/// The set of consumers of one connection.
#[derive(Debug)]
pub(crate) struct FanOut {
    capacity: usize,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl FanOut {
    pub(crate) fn new(capacity: usize) -> FanOut {
        FanOut {
            capacity: capacity.max(1),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        let (tx, rx) = mpsc::channel(self.capacity);
        self.lock().push(Subscriber { tx, missed: 0 });
        EventStream { rx }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `event` to every consumer without waiting; returns how many deliveries
    /// were dropped because a queue was full. Consumers that went away are forgotten.
    pub(crate) fn publish(&self, event: &AmiEvent) -> u64 {
        let mut dropped = 0;
        self.lock().retain_mut(|s| {
            if s.missed > 0 {
                match s.tx.try_send(AmiEvent::Lagged { missed: s.missed }) {
                    Ok(()) => s.missed = 0,
                    Err(TrySendError::Full(_)) => {
                        s.missed += 1;
                        dropped += 1;
                        return true;
                    }
                    Err(TrySendError::Closed(_)) => return false,
                }
            }
            match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.missed += 1;
                    dropped += 1;
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> AmiEvent {
        AmiEvent::Lagged { missed: n + 1000 }
    }

    #[tokio::test]
    async fn a_slow_consumer_loses_only_its_own_items_and_learns_how_many() {
        let fan = FanOut::new(2);
        let mut slow = fan.subscribe();
        let mut fast = fan.subscribe();
        let mut dropped = 0;
        for n in 0..5 {
            dropped += fan.publish(&event(n));
            // The fast consumer reads as it goes: it gets each item, exactly once.
            let got = fast.try_recv();
            assert!(
                matches!(got, Some(AmiEvent::Lagged { missed }) if missed == n + 1000),
                "item {n}: {got:?}"
            );
            assert!(fast.try_recv().is_none(), "item {n} delivered once");
        }
        assert_eq!(dropped, 3);
        let got: Vec<u64> = std::iter::from_fn(|| slow.try_recv())
            .map(|e| match e {
                AmiEvent::Lagged { missed } => missed,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [1000, 1001]);
        // The gap is reported before the next item that gets through.
        fan.publish(&event(5));
        assert!(matches!(
            slow.try_recv(),
            Some(AmiEvent::Lagged { missed: 3 })
        ));
        assert!(matches!(
            slow.try_recv(),
            Some(AmiEvent::Lagged { missed: 1005 })
        ));
    }

    #[tokio::test]
    async fn consumers_that_went_away_are_forgotten() {
        let fan = FanOut::new(1);
        drop(fan.subscribe());
        assert_eq!(fan.publish(&event(0)), 0);
        assert!(fan.lock().is_empty());
    }
}
