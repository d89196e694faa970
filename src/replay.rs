//! `medcall replay CAPTURE`: runs a recorded AMI byte stream through the framer, the
//! parser and the call tracker (in memory, nothing written) and reports what it found
//! and how fast.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;

use crate::ami::codec::decode_all;
use crate::ami::{Frame, Limits, MessageKind};
use crate::calls::{CallChange, CallTracker};

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub bytes: usize,
    pub frames: usize,
    pub events: u64,
    pub responses: u64,
    pub skipped: u64,
    pub by_event: BTreeMap<String, u64>,
    pub calls: usize,
    pub legs: usize,
    pub changes: u64,
    pub elapsed: Duration,
}

impl ReplayReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as text, one fact a line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "bytes: {}\nframes: {}\nevents: {}\nresponses: {}\nskipped: {}\ncalls: {}\nlegs: {}\nchanges: {}\nelapsed: {:.3} s\nevents/s: {:.0}\nMB/s: {:.1}\n",
            self.bytes,
            self.frames,
            self.events,
            self.responses,
            self.skipped,
            self.calls,
            self.legs,
            self.changes,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.megabytes_per_second()
        );
        let mut by: Vec<_> = self.by_event.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (name, n) in by {
            out.push_str(&format!("event {name}: {n}\n"));
        }
        out
    }
}

/// Replays the bytes of a capture (a banner first, when the capture starts with one).
pub fn replay_bytes(bytes: &[u8], limits: Limits) -> ReplayReport {
    let started = Instant::now();
    let banner = bytes.starts_with(b"Asterisk Call Manager/");
    let frames = decode_all(bytes, limits, banner);
    let mut tracker = CallTracker::new("replay", vec![], vec![], vec![]);
    let mut report = ReplayReport {
        bytes: bytes.len(),
        frames: frames.len(),
        ..ReplayReport::default()
    };
    let mut calls = HashSet::new();
    let mut legs = HashSet::new();
    let now = Utc::now();
    for frame in &frames {
        match frame {
            Frame::Banner(_) => {}
            Frame::Skipped(_) => report.skipped += 1,
            Frame::Message(m) => match m.kind() {
                MessageKind::Event => {
                    report.events += 1;
                    if let Some(name) = m.event() {
                        *report.by_event.entry(name.text().into_owned()).or_default() += 1;
                    }
                    for change in tracker.apply(&m.reader(), now) {
                        report.changes += 1;
                        match change {
                            CallChange::Call(c) => {
                                calls.insert(c.linkedid);
                            }
                            CallChange::Leg(l) => {
                                legs.insert(l.uniqueid);
                            }
                            _ => {}
                        }
                    }
                }
                _ => report.responses += 1,
            },
        }
    }
    report.calls = calls.len();
    report.legs = legs.len();
    report.elapsed = started.elapsed();
    report
}

/// Replays the capture file at `path`.
///
/// # Errors
/// The file cannot be read.
pub fn replay_file(path: &Path, limits: Limits) -> anyhow::Result<ReplayReport> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(replay_bytes(&bytes, limits))
}
