//! What one AMI client is told: where the PBX is, how to log in, its timings and
//! limits. Plain values the caller fills in (the daemon maps them from its
//! configuration); `ami` never reads a configuration file or the environment itself.

use std::time::Duration;

use crate::ami::capture::CaptureSettings;
use crate::ami::codec::Limits;
use crate::secret::Secret;

/// Everything one client needs: where the PBX is, how to log in, how to behave.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The PBX's name, for logs and capture file names.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    pub auth: LoginMethod,
    /// The `Events:` mask sent at login: `on`, `off`, or classes like `call,cdr,system`.
    pub event_mask: String,
    pub timing: Timing,
    pub limits: ClientLimits,
    /// Raw byte capture of everything received, when on.
    pub capture: Option<CaptureSettings>,
}

/// How the client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// `Login` with the secret in the clear.
    Plain,
    /// `Challenge` then `Login` with the MD5 of challenge and secret: never sends it.
    Md5,
}

/// The client's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// TCP connect, banner and login, each; also the limit on writing one action.
    pub connect_timeout: Duration,
    /// How long an action may wait for its reply (a list: for its last item).
    pub action_timeout: Duration,
    /// First reconnect delay after a failure; doubles per failure, with jitter.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A `Ping` is sent this often while connected.
    pub ping_interval: Duration,
    /// No frame at all within this time of a `Ping` means the peer is dead.
    pub ping_deadline: Duration,
}

/// The client's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Largest incoming message and most lines in one; bigger ones are skipped, counted.
    pub frame: Limits,
    /// Most items one list action (CoreShowChannels, …) may collect.
    pub max_list_items: usize,
    /// Events queued per consumer (and kept during login); what a slow consumer misses
    /// is counted.
    pub event_queue_capacity: usize,
    /// Actions waiting to be written; senders wait (within their timeout) beyond it.
    pub action_queue_capacity: usize,
}

/// A loopback port nobody listens on: every connect is refused at once.
#[cfg(test)]
pub(crate) const CLOSED_PORT: u16 = 1;

/// Settings for unit tests: `127.0.0.1:port`, plain login, a reconnect delay of a minute
/// (so a test sees one attempt), no capture.
#[cfg(test)]
pub(crate) fn for_tests(name: &str, port: u16) -> ClientSettings {
    let second = Duration::from_secs(1);
    ClientSettings {
        name: name.to_string(),
        host: "127.0.0.1".to_string(),
        port,
        username: "medcall".to_string(),
        secret: Secret::new("test-secret"),
        auth: LoginMethod::Plain,
        event_mask: "on".to_string(),
        timing: Timing {
            connect_timeout: second,
            action_timeout: second,
            backoff_min: 60 * second,
            backoff_max: 60 * second,
            ping_interval: 10 * second,
            ping_deadline: 5 * second,
        },
        limits: ClientLimits {
            frame: Limits::default(),
            max_list_items: 1000,
            event_queue_capacity: 100,
            action_queue_capacity: 8,
        },
        capture: None,
    }
}
