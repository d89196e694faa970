//! The AudioSocket server: chan_audiosocket connects *out* to medcall, sends its uuid
//! frame, then the conference mix as `0x12` frames (640 B per 20 ms with `c(slin16)`).
//!
//! One task per connection reads without pause and publishes to the stream's
//! listeners without waiting for any of them: chan_audiosocket writes with a blocking
//! `write()` on the bridge's thread, so a connection that stopped reading would stall
//! the conference's mixing. Peers are checked against [`PeerAllow`] before a byte is
//! read; the uuid frame must come within `uuid_timeout` and name a stream opened by
//! [`StreamHub::open`] that has no connection yet, or the socket is closed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{FanOutSettings, SAMPLE_RATE, StreamHub};
use crate::media::audiosocket::{AudioSocketCodec, DEFAULT_MAX_FRAME_BYTES, Frame};

/// Which peers may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAllow {
    /// Any loopback address (127.0.0.0/8, ::1).
    pub loopback: bool,
    /// These exact addresses (the PBXs').
    pub addresses: Vec<IpAddr>,
}

impl Default for PeerAllow {
    /// Loopback only: AudioSocket carries the conference's audio, so nothing but the
    /// PBX on this machine is trusted unless configured.
    fn default() -> Self {
        PeerAllow {
            loopback: true,
            addresses: Vec::new(),
        }
    }
}

impl PeerAllow {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (self.loopback && ip.is_loopback()) || self.addresses.contains(&ip)
    }
}

/// The AudioSocket server's and the fan-out's settings (the daemon maps `[audiosocket]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSocketSettings {
    /// Where the server listens (the host:port in `AudioSocket/<host:port>/<uuid>/…`).
    pub listen: SocketAddr,
    pub allow: PeerAllow,
    /// Largest frame payload; a larger one ends the connection.
    pub max_frame_bytes: usize,
    /// How long a connection may take to send its uuid frame.
    pub uuid_timeout: Duration,
    pub fanout: FanOutSettings,
}

impl Default for AudioSocketSettings {
    fn default() -> Self {
        AudioSocketSettings {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9092),
            allow: PeerAllow::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            uuid_timeout: Duration::from_secs(5),
            fanout: FanOutSettings::default(),
        }
    }
}

/// Accepts AudioSocket connections until `cancel`, then closes them all (their streams
/// end, their listeners end cleanly) and returns once every connection task is done.
///
/// Streams are looked up in `hub`; its fan-out settings are the hub's own.
pub async fn serve(
    listener: TcpListener,
    settings: AudioSocketSettings,
    hub: StreamHub,
    cancel: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and the like: back off a little instead of spinning.
                tracing::warn!(error = %e, "AudioSocket accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        if !settings.allow.allows(peer.ip()) {
            tracing::warn!(%peer, "AudioSocket connection refused: peer not allowed");
            continue;
        }
        connections.spawn(connection(
            socket,
            peer,
            settings.clone(),
            hub.clone(),
            cancel.child_token(),
        ));
    }
    connections.close();
    connections.wait().await;
}

/// One connection: the uuid, then frames until the stream ends.
async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    settings: AudioSocketSettings,
    hub: StreamHub,
    cancel: CancellationToken,
) {
    let mut frames = FramedRead::new(socket, AudioSocketCodec::new(settings.max_frame_bytes));
    let first = tokio::select! {
        () = cancel.cancelled() => return,
        first = tokio::time::timeout(settings.uuid_timeout, frames.next()) => first,
    };
    let uuid = match first {
        Ok(Some(Ok(Frame::Uuid(uuid)))) => uuid,
        Ok(Some(Ok(other))) => {
            tracing::warn!(%peer, frame = ?other, "AudioSocket connection refused: the first frame is not a uuid");
            return;
        }
        Ok(Some(Err(e))) => {
            tracing::warn!(%peer, error = %e, "AudioSocket connection refused: bad first frame");
            return;
        }
        Ok(None) => return,
        Err(_) => {
            tracing::warn!(%peer, timeout = ?settings.uuid_timeout, "AudioSocket connection refused: no uuid in time");
            return;
        }
    };
    let feed = match hub.attach(uuid) {
        Ok(feed) => feed,
        Err(e) => {
            tracing::warn!(%peer, %uuid, error = %e, "AudioSocket connection refused");
            return;
        }
    };
    tracing::info!(%peer, %uuid, "AudioSocket stream connected");
    let mut other_rate_seen = false;
    let reason = loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => break "shutdown",
            () = feed.ended() => break "ended by medcall",
            frame = frames.next() => frame,
        };
        match frame {
            Some(Ok(Frame::Audio { rate, samples })) if rate.hz() == SAMPLE_RATE => {
                // A copy of its own, so queued frames never pin the socket's read buffer.
                feed.publish(&bytes::Bytes::copy_from_slice(&samples));
            }
            Some(Ok(Frame::Audio { rate, .. })) => {
                // Listeners were told 16 kHz: other rates (a dial string without
                // `c(slin16)`) are drained, not passed on.
                if !other_rate_seen {
                    other_rate_seen = true;
                    tracing::warn!(%uuid, hz = rate.hz(), "AudioSocket audio not at 16 kHz is dropped");
                }
            }
            Some(Ok(Frame::Hangup)) => break "hangup",
            Some(Ok(Frame::Error(payload))) => {
                tracing::warn!(%uuid, code = ?payload.first(), "AudioSocket error frame");
            }
            Some(Ok(Frame::Dtmf(_) | Frame::Uuid(_))) => {}
            Some(Err(e)) => {
                tracing::warn!(%uuid, error = %e, "AudioSocket protocol error");
                break "protocol error";
            }
            None => break "closed",
        }
    };
    tracing::info!(%uuid, reason, "AudioSocket stream ended");
    // Dropping the feed ends the stream; dropping `frames` closes the socket, which
    // makes chan_audiosocket hang its leg up.
}
