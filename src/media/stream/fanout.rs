//! One stream's listeners: a bounded queue each, filled without waiting.
//!
//! The AudioSocket reader hands every frame to [`Fanout::publish`], which `try_send`s a
//! clone (a reference count, not a copy) into each listener's queue and never awaits:
//! a full queue loses that frame for that listener only (counted), and a listener
//! whose queue has stayed full for `cut_after` is cut off — its queue is closed, so
//! it ends once it has read what it holds. A listener that stops reading therefore
//! costs the reader one failed `try_send` per frame until it is cut, and nothing after.
//!
//! Why per-listener queues and not one `tokio::sync::broadcast`: a broadcast receiver
//! learns it lagged only when it next reads, so a listener that stopped reading would
//! be neither counted nor cut (its drops surface, all at once, if it ever reads again);
//! here the reader sees each drop as it happens. The cost is one `try_send` per
//! listener per frame instead of one `send`; at 50 frames/s that is 10 000 sends a
//! second for 200 listeners (`benches/stream_fanout.rs` measures it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

/// How a listener's stream of frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The stream ended (hangup, socket closed, `end()`, shutdown): a clean end.
    Ended,
    /// This listener stayed full for too long and was cut off.
    Cut,
}

const OPEN: u8 = 0;
const ENDED: u8 = 1;
const CUT: u8 = 2;

/// How a listener's queue ended, set once (the first of "ended" and "cut" wins) and
/// before its sender is dropped: a receiver that saw its queue close reads the reason.
#[derive(Debug, Default)]
pub(super) struct EndMark(AtomicU8);

impl EndMark {
    /// Marks the ending; false when it was already marked.
    pub(super) fn set(&self, ending: Ending) -> bool {
        let v = match ending {
            Ending::Ended => ENDED,
            Ending::Cut => CUT,
        };
        self.0
            .compare_exchange(OPEN, v, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(super) fn get(&self) -> Ending {
        match self.0.load(Ordering::Acquire) {
            CUT => Ending::Cut,
            _ => Ending::Ended,
        }
    }
}

struct Slot {
    tx: mpsc::Sender<Bytes>,
    end: Arc<EndMark>,
    /// When this listener's queue was first found full in the current run of drops.
    full_since: Option<Instant>,
}

/// What one `publish` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Listeners whose queue took the frame.
    pub delivered: u64,
    /// Listeners whose queue was full: the frame is lost for them.
    pub dropped: u64,
    /// Listeners cut off by this frame.
    pub cut: u64,
}

/// The listeners of one stream.
pub(super) struct Fanout {
    slots: Vec<Slot>,
    queue_frames: usize,
    cut_after: Duration,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("listeners", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Fanout {
    pub(super) fn new(queue_frames: usize, cut_after: Duration) -> Fanout {
        Fanout {
            slots: Vec::new(),
            // A zero-capacity channel cannot exist: one frame is the least a queue holds.
            queue_frames: queue_frames.max(1),
            cut_after,
        }
    }

    /// A new listener's queue and the mark that will say how it ended.
    pub(super) fn add(&mut self) -> (mpsc::Receiver<Bytes>, Arc<EndMark>) {
        let (tx, rx) = mpsc::channel(self.queue_frames);
        let end = Arc::new(EndMark::default());
        self.slots.push(Slot {
            tx,
            end: Arc::clone(&end),
            full_since: None,
        });
        (rx, end)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Offers `frame` to every listener without waiting; listeners gone are forgotten,
    /// listeners full since `cut_after` before `now` are cut.
    pub(super) fn publish(&mut self, frame: &Bytes, now: Instant) -> Published {
        let mut report = Published::default();
        let cut_after = self.cut_after;
        self.slots
            .retain_mut(|slot| match slot.tx.try_send(frame.clone()) {
                Ok(()) => {
                    slot.full_since = None;
                    report.delivered += 1;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    report.dropped += 1;
                    let since = *slot.full_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= cut_after {
                        slot.end.set(Ending::Cut);
                        report.cut += 1;
                        false
                    } else {
                        true
                    }
                }
                // The listener went away (its HTTP response was dropped).
                Err(TrySendError::Closed(_)) => false,
            });
        report
    }

    /// Ends every listener cleanly: each reads what its queue holds, then the end.
    pub(super) fn end(&mut self) {
        for slot in self.slots.drain(..) {
            slot.end.set(Ending::Ended);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 4])
    }

    #[tokio::test]
    async fn every_listener_gets_every_frame_in_order() {
        let mut fanout = Fanout::new(8, Duration::from_secs(5));
        let mut queues: Vec<_> = (0..10).map(|_| fanout.add()).collect();
        let now = Instant::now();
        for n in 0..8 {
            let p = fanout.publish(&frame(n), now);
            assert_eq!(
                p,
                Published {
                    delivered: 10,
                    dropped: 0,
                    cut: 0
                }
            );
        }
        fanout.end();
        for (rx, end) in &mut queues {
            for n in 0..8 {
                assert_eq!(rx.recv().await, Some(frame(n)));
            }
            assert_eq!(rx.recv().await, None);
            assert_eq!(end.get(), Ending::Ended);
        }
        assert_eq!(fanout.len(), 0);
    }

    #[tokio::test]
    async fn a_full_listener_loses_frames_alone_and_is_cut_once_full_for_the_cut_off() {
        let mut fanout = Fanout::new(2, Duration::from_secs(5));
        let (mut reader, reader_end) = fanout.add();
        let (mut stuck, stuck_end) = fanout.add();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut dropped = 0;
        let mut cut = 0;
        // 20 ms frames for 6 s; `reader` keeps up, `stuck` never reads.
        for i in 0..300u64 {
            let p = fanout.publish(&frame(i as u8), at(i * 20));
            assert_eq!(reader.recv().await, Some(frame(i as u8)), "frame {i}");
            dropped += p.dropped;
            cut += p.cut;
            if p.cut == 1 {
                // Full from frame 2 (t = 40 ms): cut at the first frame 5 s later.
                assert_eq!(i, 2 + 250, "cut at frame {i}");
                assert_eq!(p.delivered, 1);
            }
        }
        assert_eq!(cut, 1);
        assert_eq!(
            dropped, 251,
            "frames 2..=252 were lost for the stuck listener"
        );
        assert_eq!(fanout.len(), 1);
        // The cut listener still reads what its queue held, then the end, marked cut.
        assert_eq!(stuck.recv().await, Some(frame(0)));
        assert_eq!(stuck.recv().await, Some(frame(1)));
        assert_eq!(stuck.recv().await, None);
        assert_eq!(stuck_end.get(), Ending::Cut);
        fanout.end();
        assert_eq!(reader.recv().await, None);
        assert_eq!(reader_end.get(), Ending::Ended);
    }

    #[tokio::test]
    async fn a_listener_that_catches_up_starts_a_new_run_of_drops() {
        let mut fanout = Fanout::new(1, Duration::from_secs(5));
        let (mut rx, end) = fanout.add();
        let start = Instant::now();
        assert_eq!(fanout.publish(&frame(0), start).delivered, 1);
        // Full for 4.9 s, then it reads: the clock of its drops starts again.
        assert_eq!(
            fanout
                .publish(&frame(1), start + Duration::from_millis(100))
                .dropped,
            1
        );
        assert_eq!(
            fanout
                .publish(&frame(2), start + Duration::from_millis(5000))
                .cut,
            0
        );
        assert_eq!(rx.recv().await, Some(frame(0)));
        assert_eq!(
            fanout
                .publish(&frame(3), start + Duration::from_millis(5020))
                .delivered,
            1
        );
        let p = fanout.publish(&frame(4), start + Duration::from_millis(9000));
        assert_eq!((p.dropped, p.cut), (1, 0));
        let p = fanout.publish(&frame(5), start + Duration::from_millis(14_000));
        assert_eq!((p.dropped, p.cut), (1, 1));
        assert_eq!(end.get(), Ending::Cut);
    }

    #[tokio::test]
    async fn a_listener_that_went_away_is_forgotten_without_a_drop() {
        let mut fanout = Fanout::new(4, Duration::from_secs(5));
        let (rx, _) = fanout.add();
        let (_kept, _) = fanout.add();
        drop(rx);
        let p = fanout.publish(&frame(0), Instant::now());
        assert_eq!(
            p,
            Published {
                delivered: 1,
                dropped: 0,
                cut: 0
            }
        );
        assert_eq!(fanout.len(), 1);
    }

    #[test]
    fn the_first_ending_marked_is_the_one_kept() {
        let mark = EndMark::default();
        assert_eq!(mark.get(), Ending::Ended, "read as ended while open");
        assert!(mark.set(Ending::Cut));
        assert!(!mark.set(Ending::Ended));
        assert!(!mark.set(Ending::Cut));
        assert_eq!(mark.get(), Ending::Cut);
        let mark = EndMark::default();
        assert!(mark.set(Ending::Ended));
        assert!(!mark.set(Ending::Cut));
        assert_eq!(mark.get(), Ending::Ended);
    }

    #[test]
    fn a_queue_of_zero_frames_holds_one() {
        let mut fanout = Fanout::new(0, Duration::from_secs(5));
        let (_rx, _) = fanout.add();
        assert_eq!(fanout.publish(&frame(0), Instant::now()).delivered, 1);
        assert_eq!(fanout.publish(&frame(1), Instant::now()).dropped, 1);
    }
}
