//! Live streams of a conference's mix: the [`StreamHub`] that registers streams and
//! fans each one's audio out to its listeners, and the AudioSocket server
//! ([`serve`]) that feeds it.
//!
//! A stream's life: [`StreamHub::open`] (before the AudioSocket leg is originated:
//! the uuid goes into the dial string, the token into the `streamUrl`) → the leg's
//! socket connects and sends that uuid ([`serve`] attaches it; one connection per
//! uuid) → audio frames are published to every listener ([`StreamHub::listen`] by
//! token) → the stream ends on a hangup frame, EOF, a protocol error,
//! [`StreamHub::end`], or shutdown: every listener reads what it holds, then a clean
//! end, and the token is forgotten (a later `listen` finds nothing).
//!
//! This module never speaks AMI and never decides which legs exist: the conference
//! engine originates the leg and calls `open`/`discard`/`end`.

mod fanout;
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

pub use fanout::{Ending, Published};
pub use server::{AudioSocketSettings, PeerAllow, serve};

use super::audiosocket::StreamUuid;
use crate::metrics::StreamMetrics;
use fanout::{EndMark, Fanout};

/// The PCM every stream carries (AudioSocket `c(slin16)`): what listeners are told.
pub const SAMPLE_RATE: u32 = 16_000;
/// Duration of one AudioSocket frame from chan_audiosocket (640 B of slin16).
pub const FRAME_MS: u32 = 20;

/// A stream registered by [`StreamHub::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTicket {
    /// Canonical lowercase UUID for the dial string `AudioSocket/<host:port>/<uuid>/c(slin16)`.
    pub uuid: String,
    /// 128 random bits as 32 lowercase hex digits: the credential in the `streamUrl`.
    pub token: String,
}

/// How the fan-out treats slow listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOutSettings {
    /// Frames queued per listener (50 = 1 s of 20 ms frames); one more is dropped for it.
    pub listener_queue_frames: usize,
    /// A listener whose queue stays full this long is cut off.
    pub cut_after: Duration,
}

impl Default for FanOutSettings {
    fn default() -> Self {
        FanOutSettings {
            listener_queue_frames: 50,
            cut_after: Duration::from_secs(5),
        }
    }
}

/// The registry of streams; cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct StreamHub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: FanOutSettings,
    metrics: StreamMetrics,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    by_uuid: HashMap<StreamUuid, Arc<Stream>>,
    /// Token → uuid. A std `HashMap` keys its hash with random SipHash keys, so
    /// lookup time tells nothing usable about a 128-bit token.
    by_token: HashMap<String, StreamUuid>,
}

#[derive(Debug)]
struct Stream {
    uuid: StreamUuid,
    token: String,
    state: Mutex<StreamState>,
    /// Cancelled when the stream ends, whoever ends it: the connection stops reading.
    ended: CancellationToken,
}

#[derive(Debug)]
struct StreamState {
    /// An AudioSocket connection is attached.
    connected: bool,
    /// Ended: no listener may join, no frame is published.
    ended: bool,
    fanout: Fanout,
}

impl Stream {
    fn state(&self) -> MutexGuard<'_, StreamState> {
        // The lock is never held across a panic point that could leave the state half
        // written, so a poisoned lock's state is still whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why an AudioSocket connection was not attached to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("no stream is open for this uuid")]
    Unknown,
    #[error("the stream already has its AudioSocket connection")]
    AlreadyConnected,
}

impl StreamHub {
    /// A hub whose figures go to `metrics`.
    pub fn new(settings: FanOutSettings, metrics: StreamMetrics) -> StreamHub {
        StreamHub {
            shared: Arc::new(Shared {
                settings,
                metrics,
                registry: Mutex::default(),
            }),
        }
    }

    /// The fan-out settings the hub was made with.
    pub fn settings(&self) -> FanOutSettings {
        self.shared.settings
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Only map inserts and removals run under this lock: never half done.
        self.shared
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new stream, before its AudioSocket leg is originated. Listeners may
    /// join at once; they get audio once the leg's socket connects.
    pub fn open(&self) -> StreamTicket {
        let mut registry = self.registry();
        let uuid = loop {
            let uuid = StreamUuid::random();
            if !registry.by_uuid.contains_key(&uuid) {
                break uuid;
            }
        };
        let token = loop {
            let token = hex::encode(rand::random::<[u8; 16]>());
            if !registry.by_token.contains_key(&token) {
                break token;
            }
        };
        let stream = Arc::new(Stream {
            uuid,
            token: token.clone(),
            state: Mutex::new(StreamState {
                connected: false,
                ended: false,
                fanout: Fanout::new(
                    self.shared.settings.listener_queue_frames,
                    self.shared.settings.cut_after,
                ),
            }),
            ended: CancellationToken::new(),
        });
        registry.by_uuid.insert(uuid, stream);
        registry.by_token.insert(token.clone(), uuid);
        StreamTicket {
            uuid: uuid.to_string(),
            token,
        }
    }

    fn find(&self, uuid: &str) -> Option<Arc<Stream>> {
        let uuid: StreamUuid = uuid.parse().ok()?;
        self.registry().by_uuid.get(&uuid).cloned()
    }

    /// The token of the open stream `uuid`.
    pub fn token_of(&self, uuid: &str) -> Option<String> {
        self.find(uuid).map(|s| s.token.clone())
    }

    /// Forgets a stream whose leg could not be originated (ends it if it connected
    /// after all). False when `uuid` was not open.
    pub fn discard(&self, uuid: &str) -> bool {
        self.end(uuid)
    }

    /// Ends the stream now, as its socket closing would: every listener reads what it
    /// holds, then a clean end; the connection, if any, is closed. False when `uuid`
    /// was not open.
    pub fn end(&self, uuid: &str) -> bool {
        match self.find(uuid) {
            Some(stream) => {
                self.finish(&stream);
                true
            }
            None => false,
        }
    }

    /// Whether the stream's AudioSocket connection is attached and delivering.
    pub fn is_live(&self, uuid: &str) -> bool {
        self.find(uuid).is_some_and(|s| {
            let state = s.state();
            state.connected && !state.ended
        })
    }

    /// Open streams (connected or not).
    pub fn open_streams(&self) -> usize {
        self.registry().by_uuid.len()
    }

    /// A new listener of the stream whose token is `token`; `None` when no open stream
    /// has it.
    pub fn listen(&self, token: &str) -> Option<StreamListener> {
        let stream = {
            let registry = self.registry();
            let uuid = registry.by_token.get(token)?;
            Arc::clone(registry.by_uuid.get(uuid)?)
        };
        let mut state = stream.state();
        if state.ended {
            return None;
        }
        let (rx, end) = state.fanout.add();
        drop(state);
        self.shared.metrics.listeners.inc();
        Some(StreamListener {
            rx,
            end,
            metrics: self.shared.metrics.clone(),
        })
    }

    /// Attaches the AudioSocket connection that sent `uuid`.
    fn attach(&self, uuid: StreamUuid) -> Result<Feed, AttachError> {
        let stream = self
            .registry()
            .by_uuid
            .get(&uuid)
            .cloned()
            .ok_or(AttachError::Unknown)?;
        let mut state = stream.state();
        if state.ended {
            return Err(AttachError::Unknown);
        }
        if state.connected {
            return Err(AttachError::AlreadyConnected);
        }
        state.connected = true;
        drop(state);
        self.shared.metrics.live.inc();
        Ok(Feed {
            hub: self.clone(),
            stream,
        })
    }

    /// Ends `stream` once: listeners end, the token is forgotten, the connection stops.
    fn finish(&self, stream: &Arc<Stream>) {
        {
            let mut registry = self.registry();
            if registry
                .by_uuid
                .get(&stream.uuid)
                .is_some_and(|s| Arc::ptr_eq(s, stream))
            {
                registry.by_uuid.remove(&stream.uuid);
                registry.by_token.remove(&stream.token);
            }
        }
        let mut state = stream.state();
        if state.ended {
            return;
        }
        state.ended = true;
        state.fanout.end();
        if state.connected {
            self.shared.metrics.live.dec();
        }
        drop(state);
        stream.ended.cancel();
    }
}

/// The publishing side of one stream, held by its AudioSocket connection; dropping it
/// ends the stream.
#[derive(Debug)]
struct Feed {
    hub: StreamHub,
    stream: Arc<Stream>,
}

impl Feed {
    /// Offers one frame of samples to every listener; never waits.
    fn publish(&self, samples: &Bytes) -> Published {
        let metrics = &self.hub.shared.metrics;
        metrics.frames_received.inc();
        let now = tokio::time::Instant::now();
        let published = {
            let mut state = self.stream.state();
            if state.ended {
                return Published::default();
            }
            state.fanout.publish(samples, now)
        };
        if published.dropped > 0 {
            metrics.frames_dropped.inc_by(published.dropped);
        }
        if published.cut > 0 {
            metrics.listeners_cut.inc_by(published.cut);
        }
        published
    }

    /// Resolves when the stream was ended by someone else (`end()`, `discard()`).
    fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.stream.ended.cancelled()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.hub.finish(&self.stream);
    }
}

/// One listener of one stream: frames of s16le 16 kHz mono samples, in order, with
/// gaps where its queue was full.
#[derive(Debug)]
pub struct StreamListener {
    rx: mpsc::Receiver<Bytes>,
    end: Arc<EndMark>,
    metrics: StreamMetrics,
}

impl StreamListener {
    /// The next frame; `None` once the stream ended for this listener (then
    /// [`StreamListener::ending`] says how).
    ///
    /// Cancel-safe: a frame is taken only when this resolves.
    pub async fn next(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// How the stream ended for this listener; meaningful once `next` gave `None`.
    pub fn ending(&self) -> Ending {
        self.end.get()
    }

    /// Gives this listener up as too slow (its client stopped taking data): counted as
    /// cut, unless the stream had already ended or cut it.
    pub fn abandon(self) {
        if self.end.set(Ending::Cut) {
            self.metrics.listeners_cut.inc();
        }
    }
}

impl Drop for StreamListener {
    fn drop(&mut self) {
        self.metrics.listeners.dec();
    }
}

#[cfg(test)]
mod tests;
