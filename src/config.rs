//! Configuration: embedded defaults, an optional TOML file, then `MEDCALL__SECTION__KEY`
//! environment variables, merged in that order and checked into typed settings.
//!
//! Owns the shape of every key and its validation. It must never log or print a
//! secret: secrets are [`Secret`]s, whose `Debug` and `Serialize` are redacted.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pbx::PbxName;
pub use crate::secret::Secret;

/// The defaults every key falls back to; also the documentation of last resort.
const DEFAULTS: &str = include_str!("config_defaults.toml");

/// Prefix of environment variables that override keys: `MEDCALL__HTTP__LISTEN`.
pub const ENV_PREFIX: &str = "MEDCALL__";

/// Why a configuration could not be loaded. Each message is one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub agi: AgiConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub ami: AmiConfig,
    pub calls: CallsConfig,
    pub media: MediaConfig,
    pub audiosocket: AudioSocketConfig,
    pub booking: BookingConfig,
    pub consultations: ConsultationsConfig,
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub pbx: Vec<PbxConfig>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Put `/metrics` behind an API key with the `admin` scope.
    pub metrics_require_key: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest body of the admin import routes (`PUT /admin/clients`, `/admin/directory`), in bytes.
    pub max_import_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// medcall's own address as clients reach it (`https://medcall.clinic.example`),
    /// the base of the `fileUrl` and `streamUrl` it hands out; empty: `http://<listen>`.
    pub public_url: String,
}

impl HttpConfig {
    /// [`HttpConfig::public_url`] without a trailing `/`, or `http://<listen>`.
    pub fn public_base(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgiConfig {
    pub listen: SocketAddr,
    /// Sessions served at once; one more is refused with `MEDCALL_STATUS=BUSY`.
    pub max_sessions: usize,
    /// How long Asterisk may take to answer one command, in milliseconds.
    pub command_timeout_ms: u64,
    /// How long one whole session may last, handler included, in milliseconds.
    pub session_timeout_ms: u64,
    /// On shutdown, how long running sessions may finish, in milliseconds.
    pub drain_ms: u64,
    /// Peers allowed to connect; empty means loopback plus every `[[pbx]] host`.
    pub allow: Vec<IpAddr>,
    /// Listen backlog: connections the kernel queues before the daemon accepts them.
    pub backlog: u32,
    /// Longest line accepted from Asterisk, in bytes.
    pub max_line_bytes: usize,
    /// Most environment variables accepted in one session.
    pub max_variables: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database file; its directory is the data directory (`admin.key` lives there).
    pub path: PathBuf,
}

impl StoreConfig {
    /// The directory holding the database and the daemon's other files.
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `medcall=debug,info`, …
    pub level: String,
}

/// Conversation calls (seed 002): where they run and how users are dialled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    /// The `[[pbx]]` that holds the threads' conferences; empty: the first one.
    pub pbx: String,
    /// How a user without a directory endpoint is dialled; `{userId}` is replaced by the
    /// user's id.
    pub dial_template: String,
    /// How long an invited user's phone rings (the Originate `Timeout`), in milliseconds.
    pub ring_timeout_ms: u64,
    /// How long `call/end` waits for every leg's Hangup before it closes the call anyway.
    pub end_deadline_ms: u64,
    /// The dialplan context whose extension `<threadId>` joins the thread's conference.
    pub conference_context: String,
    /// The context a paused leg is redirected to (music on hold, out of the mix).
    pub hold_context: String,
    /// The ConfBridge user profile of human participants (`MEDCALL_USER_PROFILE`).
    pub user_profile: String,
    /// The caller id users see when medcall rings them; empty: Asterisk's default.
    pub caller_id: String,
    /// The ConfBridge user profiles of medcall's player and stream listener legs.
    pub player_profile: String,
    pub listener_profile: String,
    /// The context whose extension `s` plays `MEDCALL_PLAY_FILE` (the player's `;2` half).
    pub play_context: String,
    /// How long `call.recording/stop` waits for Asterisk to finish the WAV, in ms.
    pub recording_final_wait_ms: u64,
}

/// Telemedicine consultations (seeds 000/001, SPEC §4): timing, retries, dialling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsultationsConfig {
    /// The `[[pbx]]` consultations run on; empty: `[calls] pbx`.
    pub pbx: String,
    /// `duration` when a request gives none, in minutes (1-240).
    pub default_duration_min: u32,
    /// How long the doctor's phone rings: `doctorAnswerDeadlineUtc` = call time + this.
    pub doctor_answer_timeout_ms: u64,
    /// How long a callback patient's phone rings per attempt.
    pub patient_ring_timeout_ms: u64,
    /// Callback: dials of the patient after the first (busy or no answer).
    pub patient_retries: u32,
    /// Callback: the pause between two dials of the patient.
    pub patient_retry_interval_ms: u64,
    /// Voip: how long the doctor waits in the conference for the patient to join.
    pub patient_wait_ms: u64,
    /// A scheduled consultation starting sooner than this cannot be cancelled.
    pub lock_window_ms: u64,
    /// The warning prompt plays this long before the duration limit.
    pub warning_before_ms: u64,
    /// The warning prompt, as Asterisk names a sound; empty: no warning.
    pub warning_sound: String,
    /// How the callback patient is dialled: `{phone}` (code then number), `{code}` and
    /// `{number}` are replaced by digits.
    pub patient_dial_template: String,
    /// The largest attachment, in bytes (10 MB).
    pub max_attachment_bytes: u64,
    /// Conferences are named `<prefix><id>` (`consult-42`); two medcalls sharing a PBX
    /// need different prefixes.
    pub conference_prefix: String,
}

/// Consultation webhooks (SPEC §4.6). Their targets pass `[media]`'s network lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Signs every attempt (`X-Medcall-Signature`) when set: at least 16 characters.
    /// Empty: unsigned.
    pub secret: Secret,
    /// One attempt, connect to answer, in milliseconds.
    pub timeout_ms: u64,
    /// The delay after the first failed attempt; each further failure doubles it.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// A notification not delivered this long after it was written is given up.
    pub give_up_after_s: u64,
    /// Attempts in flight at once.
    pub concurrency: usize,
}

/// Audio medcall fetches for `call.audio/play` (SPEC §3 "outbound fetches").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest file fetched, in bytes; reading stops there.
    pub max_fetch_bytes: u64,
    /// TCP (and TLS) connect timeout of a fetch, in ms.
    pub connect_timeout_ms: u64,
    /// The whole fetch, redirects and body included, in ms.
    pub fetch_timeout_ms: u64,
    /// Redirects followed at most (each target checked again).
    pub max_redirects: u32,
    /// Networks (CIDR) fetches may reach even though denied by default (loopback,
    /// link-local, metadata addresses).
    pub allow_networks: Vec<String>,
    /// Networks fetches may never reach (wins over everything).
    pub deny_networks: Vec<String>,
    /// A URL fetched within this time is not fetched again, in ms.
    pub url_cache_ttl_ms: u64,
    /// Longest decoded duration accepted, in seconds.
    pub max_duration_s: u64,
    /// Most channels a file may have.
    pub max_channels: u32,
    /// The decoder child's limits: wall clock (ms), CPU (s), memory (MiB).
    pub decode_timeout_ms: u64,
    pub decode_cpu_s: u64,
    pub decode_memory_mib: u64,
}

/// The AudioSocket server that receives a conference's mix for live streams, and the
/// fan-out of each stream to its HTTP listeners.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AudioSocketConfig {
    /// Where the AudioSocket server listens.
    pub listen: SocketAddr,
    /// `host:port` Asterisk dials (`AudioSocket/<advertise>/<uuid>/c(slin16)`); empty:
    /// the address bound (required when `listen` is `0.0.0.0`).
    pub advertise: String,
    /// Peers allowed to connect; empty means loopback plus every `[[pbx]] host`.
    pub allow: Vec<IpAddr>,
    /// Largest frame payload accepted, in bytes; a larger one ends the connection.
    pub max_frame_bytes: usize,
    /// How long a connection may take to send its uuid frame, in milliseconds.
    pub uuid_timeout_ms: u64,
    /// Frames queued per listener (20 ms each); one more is dropped for that listener.
    pub listener_queue_frames: usize,
    /// A listener whose queue stays full this long is cut off, in milliseconds.
    pub listener_cut_after_ms: u64,
}

/// Booking of timetable cells (seed 004; SPEC §3, §7).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingConfig {
    /// How far a request's `X-Timestamp` may be from medcall's clock, either way, in s.
    pub signature_window_s: u64,
    /// How often lapsed holds are marked expired, in ms (a lapsed hold stops counting
    /// the moment it lapses whatever this is).
    pub sweep_interval_ms: u64,
    /// Most booking writes committed together (one fsync for all of them).
    pub group_commit_max: usize,
    /// The clients allowed to book, each with its signing secret.
    #[serde(default)]
    pub clients: Vec<BookingClientConfig>,
}

/// A booking client: the `X-Client-Id` it signs as, and its HMAC secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingClientConfig {
    /// `X-Client-Id`: 1–64 characters of `A-Za-z0-9._-`.
    pub id: String,
    /// Shown in a ticket's history (`client.name`); default: the id.
    #[serde(default)]
    pub name: String,
    /// The HMAC-SHA256 key, at least 16 characters.
    pub secret: Secret,
    /// The ticket's `source` and `sourceName` (default 0, `Internet`).
    #[serde(default)]
    pub source: i64,
    #[serde(default = "default_source_name")]
    pub source_name: String,
}

fn default_source_name() -> String {
    "Internet".to_string()
}

/// How every AMI connection behaves (one `[ami]` section for all `[[pbx]]` entries).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AmiConfig {
    /// TCP connect, banner and login, each, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long an action may wait for its reply (a list: for its last item), in ms.
    pub action_timeout_ms: u64,
    /// First reconnect delay after a failure, in ms; doubles per failure, with jitter.
    pub backoff_min_ms: u64,
    /// Longest reconnect delay, in ms.
    pub backoff_max_ms: u64,
    /// A `Ping` is sent this often while connected, in ms.
    pub ping_interval_ms: u64,
    /// No reply to a `Ping` within this time means the peer is dead: reconnect (ms).
    pub ping_deadline_ms: u64,
    /// Largest incoming message, in bytes; bigger ones are skipped and counted.
    pub max_message_bytes: usize,
    /// Most lines in one incoming message; longer ones are skipped and counted.
    pub max_headers: usize,
    /// Most items one list action (CoreShowChannels, …) may collect.
    pub max_list_items: usize,
    /// Events queued per consumer; what a slow consumer misses is counted.
    pub event_queue_capacity: usize,
    /// Actions waiting to be written; senders wait (within their timeout) beyond it.
    pub action_queue_capacity: usize,
    /// The `Events:` mask sent at login: `on`, `off`, or classes like `call,cdr,system`.
    pub event_mask: String,
    /// When set, every byte received from each PBX is also written to rotating files
    /// `<dir>/<pbx>-<time>-<n>.ami` (for `medcall replay`).
    #[serde(default)]
    pub capture_dir: Option<PathBuf>,
    /// A capture file is closed and a new one started past this size (bytes).
    pub capture_rotate_bytes: u64,
    /// Older capture files beyond this many per PBX are deleted.
    pub capture_keep_files: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbxConfig {
    /// Unique short name (letters, digits, `-`, `_`; checked as it is read); appears in
    /// `/health`, `/api/pbx`, metrics and call records.
    pub name: PbxName,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    /// `plain` sends the secret; `md5` answers a challenge and never sends it.
    #[serde(default = "default_auth")]
    pub auth: AmiAuth,
    /// This PBX's media directory as medcall sees it (converted files to play in
    /// `play/`, recordings in `recordings/`); default `<store dir>/media/<name>`.
    #[serde(default)]
    pub media_dir: Option<PathBuf>,
    /// The same directory as Asterisk sees it (another host's mount, a chroot);
    /// default: `media_dir`, made absolute.
    #[serde(default)]
    pub asterisk_media_dir: Option<String>,
}

fn default_auth() -> AmiAuth {
    AmiAuth::Md5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmiAuth {
    Plain,
    Md5,
}

/// An HTTP API key. Only the SHA-256 of the key is configured, never the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    /// Lowercase hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    pub scopes: BTreeSet<Scope>,
    /// For the `calls` scope: the team ids this key may control; empty means all.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// What an API key may do (SPEC §3). `admin` may do everything.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Admin,
    Consultations,
    Events,
    Calls,
    Booking,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Consultations => "consultations",
            Scope::Events => "events",
            Scope::Calls => "calls",
            Scope::Booking => "booking",
        }
    }
}

impl Config {
    /// Defaults, then `file` if given, then the environment (`vars`).
    ///
    /// # Errors
    /// A one-line [`ConfigError`] naming the file, variable or key at fault.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let defaults_path = PathBuf::from("<embedded defaults>");
        let mut merged = parse_toml(DEFAULTS, &defaults_path)?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let overlay = parse_toml(&text, path)?;
            merge(&mut merged, overlay);
        }
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (var, value) in vars {
            apply_env(&mut merged, &var, &value)?;
        }
        let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                key,
                message: one_line(&e.into_inner().to_string()),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| ConfigError::Invalid {
            key,
            message: message.to_string(),
        };
        let mut names = BTreeSet::new();
        for (i, pbx) in self.pbx.iter().enumerate() {
            if !names.insert(pbx.name.as_str()) {
                return Err(invalid(format!("pbx[{i}].name"), "duplicate PBX name"));
            }
            if pbx.host.is_empty() {
                return Err(invalid(format!("pbx[{i}].host"), "must not be empty"));
            }
            for (key, value) in [
                ("username", pbx.username.as_str()),
                ("secret", pbx.secret.expose()),
            ] {
                if value.chars().any(|c| c.is_control()) {
                    return Err(invalid(
                        format!("pbx[{i}].{key}"),
                        "must not contain control characters",
                    ));
                }
            }
        }
        let mut client_ids = BTreeSet::new();
        for (i, client) in self.booking.clients.iter().enumerate() {
            let id_ok = (1..=64).contains(&client.id.len())
                && client
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !id_ok {
                return Err(invalid(
                    format!("booking.clients[{i}].id"),
                    "must be 1-64 characters of A-Za-z0-9._-",
                ));
            }
            if !client_ids.insert(client.id.as_str()) {
                return Err(invalid(
                    format!("booking.clients[{i}].id"),
                    "duplicate booking client id",
                ));
            }
            if client.secret.expose().chars().count() < 16 {
                return Err(invalid(
                    format!("booking.clients[{i}].secret"),
                    "must be at least 16 characters",
                ));
            }
            for (key, value) in [("name", &client.name), ("source_name", &client.source_name)] {
                if value.chars().any(char::is_control) || value.chars().count() > 256 {
                    return Err(invalid(
                        format!("booking.clients[{i}].{key}"),
                        "must be at most 256 characters, none a control character",
                    ));
                }
            }
        }
        let c = &self.consultations;
        if !(1..=240).contains(&c.default_duration_min) {
            return Err(invalid(
                "consultations.default_duration_min".into(),
                "must be 1-240 minutes",
            ));
        }
        for (key, ms) in [
            ("doctor_answer_timeout_ms", c.doctor_answer_timeout_ms),
            ("patient_ring_timeout_ms", c.patient_ring_timeout_ms),
            ("patient_wait_ms", c.patient_wait_ms),
        ] {
            if ms == 0 || ms > 3_600_000 {
                return Err(invalid(
                    format!("consultations.{key}"),
                    "must be 1-3600000 milliseconds",
                ));
            }
        }
        if c.patient_retries > 10 {
            return Err(invalid(
                "consultations.patient_retries".into(),
                "must be 0-10",
            ));
        }
        if c.patient_dial_template
            .bytes()
            .any(|b| !b.is_ascii_graphic())
            || !c.patient_dial_template.contains('/')
        {
            return Err(invalid(
                "consultations.patient_dial_template".into(),
                "must be a dial string (TECH/resource) of printable ASCII without spaces",
            ));
        }
        let prefix = c.conference_prefix.as_bytes();
        let prefix_ok = (1..=40).contains(&prefix.len())
            && prefix
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && prefix.first().is_some_and(u8::is_ascii_alphabetic)
            && !prefix.last().is_some_and(u8::is_ascii_digit);
        if !prefix_ok {
            return Err(invalid(
                "consultations.conference_prefix".into(),
                "must be 1-40 letters, digits or '-', start with a letter, not end with a digit",
            ));
        }
        if c.warning_sound.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(invalid(
                "consultations.warning_sound".into(),
                "must be printable ASCII without spaces",
            ));
        }
        let w = &self.webhooks;
        let secret_len = w.secret.expose().chars().count();
        if secret_len > 0 && secret_len < 16 {
            return Err(invalid(
                "webhooks.secret".into(),
                "must be empty (unsigned) or at least 16 characters",
            ));
        }
        if w.timeout_ms == 0 || w.backoff_min_ms == 0 || w.backoff_min_ms > w.backoff_max_ms {
            return Err(invalid(
                "webhooks.backoff_min_ms".into(),
                "timeout_ms and backoff_min_ms must be positive, backoff_min_ms at most backoff_max_ms",
            ));
        }
        if w.concurrency == 0 || w.concurrency > 1024 {
            return Err(invalid("webhooks.concurrency".into(), "must be 1-1024"));
        }
        if self.booking.signature_window_s == 0 || self.booking.signature_window_s > 3600 {
            return Err(invalid(
                "booking.signature_window_s".into(),
                "must be 1-3600 seconds",
            ));
        }
        if self.booking.group_commit_max == 0 || self.booking.sweep_interval_ms == 0 {
            return Err(invalid(
                "booking".into(),
                "group_commit_max and sweep_interval_ms must be positive",
            ));
        }
        if !self.calls.pbx.is_empty() && !self.pbx.iter().any(|p| p.name.as_str() == self.calls.pbx)
        {
            return Err(invalid("calls.pbx".into(), "names no configured [[pbx]]"));
        }
        if !self.calls.dial_template.contains("{userId}") {
            return Err(invalid(
                "calls.dial_template".into(),
                "must contain {userId}",
            ));
        }
        let example = self
            .calls
            .dial_template
            .replace("{userId}", "000000000000000000000000");
        if let Err(e) = example.parse::<crate::directory::Endpoint>() {
            return Err(invalid("calls.dial_template".into(), &e.to_string()));
        }
        for (key, value) in [
            ("conference_context", &self.calls.conference_context),
            ("hold_context", &self.calls.hold_context),
            ("user_profile", &self.calls.user_profile),
            ("player_profile", &self.calls.player_profile),
            ("listener_profile", &self.calls.listener_profile),
            ("play_context", &self.calls.play_context),
        ] {
            if value.is_empty() || value.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(invalid(
                    format!("calls.{key}"),
                    "must be one word of printable ASCII",
                ));
            }
        }
        if self.calls.caller_id.chars().any(char::is_control) {
            return Err(invalid(
                "calls.caller_id".into(),
                "must not contain control characters",
            ));
        }
        for (i, pbx) in self.pbx.iter().enumerate() {
            if let Some(dir) = &pbx.asterisk_media_dir {
                if !dir.starts_with('/') || dir.bytes().any(|b| !b.is_ascii_graphic()) {
                    return Err(invalid(
                        format!("pbx[{i}].asterisk_media_dir"),
                        "must be an absolute path of printable ASCII without spaces",
                    ));
                }
            }
        }
        let url = &self.http.public_url;
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(invalid(
                "http.public_url".into(),
                "must be an http:// or https:// URL",
            ));
        }
        let mut key_names = BTreeSet::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.sha256.len() != 64
                || !key
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(invalid(
                    format!("api_keys[{i}].sha256"),
                    "must be 64 lowercase hex digits",
                ));
            }
            if !key_names.insert(key.name.as_str()) {
                return Err(invalid(format!("api_keys[{i}].name"), "duplicate key name"));
            }
            if key.scopes.is_empty() {
                return Err(invalid(
                    format!("api_keys[{i}].scopes"),
                    "at least one scope is required",
                ));
            }
        }
        let ami = &self.ami;
        for (key, value) in [
            ("ami.connect_timeout_ms", ami.connect_timeout_ms),
            ("ami.action_timeout_ms", ami.action_timeout_ms),
            ("ami.backoff_min_ms", ami.backoff_min_ms),
            ("ami.ping_interval_ms", ami.ping_interval_ms),
            ("ami.ping_deadline_ms", ami.ping_deadline_ms),
            ("agi.max_sessions", self.agi.max_sessions as u64),
            ("agi.command_timeout_ms", self.agi.command_timeout_ms),
            ("agi.session_timeout_ms", self.agi.session_timeout_ms),
            ("agi.backlog", u64::from(self.agi.backlog)),
            ("agi.max_line_bytes", self.agi.max_line_bytes as u64),
            ("agi.max_variables", self.agi.max_variables as u64),
            (
                "audiosocket.max_frame_bytes",
                self.audiosocket.max_frame_bytes as u64,
            ),
            (
                "audiosocket.uuid_timeout_ms",
                self.audiosocket.uuid_timeout_ms,
            ),
            (
                "audiosocket.listener_queue_frames",
                self.audiosocket.listener_queue_frames as u64,
            ),
            (
                "audiosocket.listener_cut_after_ms",
                self.audiosocket.listener_cut_after_ms,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be positive"));
            }
        }
        if ami.backoff_max_ms < ami.backoff_min_ms {
            return Err(invalid(
                "ami.backoff_max_ms".into(),
                "must not be less than ami.backoff_min_ms",
            ));
        }
        for (key, value) in [
            ("ami.max_message_bytes", ami.max_message_bytes),
            ("ami.max_headers", ami.max_headers),
            ("ami.max_list_items", ami.max_list_items),
            ("ami.event_queue_capacity", ami.event_queue_capacity),
            ("ami.action_queue_capacity", ami.action_queue_capacity),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be positive"));
            }
        }
        if ami.event_mask.is_empty() || ami.event_mask.chars().any(|c| c.is_control()) {
            return Err(invalid(
                "ami.event_mask".into(),
                "must be non-empty without control characters",
            ));
        }
        if self.agi.max_line_bytes < 256 {
            return Err(invalid(
                "agi.max_line_bytes".into(),
                "must be at least 256 (Asterisk's usage lines are long)",
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(invalid("http.max_body_bytes".into(), "must be positive"));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_toml(text: &str, path: &Path) -> Result<toml::Value, ConfigError> {
    text.parse::<toml::Table>()
        .map(toml::Value::Table)
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })
}

/// Tables merge key by key; everything else (arrays included) is replaced whole.
fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// `MEDCALL__HTTP__LISTEN=…` sets `http.listen`; `MEDCALL__PBX__0__SECRET=…` sets
/// `pbx[0].secret` (index = position in the array; the next free index appends a new
/// entry). A value is read as a TOML scalar when it parses as one (`5038`, `true`),
/// otherwise as a string.
fn apply_env(root: &mut toml::Value, var: &str, value: &str) -> Result<(), ConfigError> {
    let env_err = |message: &str| ConfigError::Env {
        var: var.to_string(),
        message: message.to_string(),
    };
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(env_err("empty key segment"));
    }
    let mut node = root;
    let last = path.len() - 1;
    for (depth, segment) in path.iter().enumerate() {
        let is_last = depth == last;
        node = match node {
            toml::Value::Table(t) => {
                if is_last {
                    t.insert(segment.clone(), env_scalar(value));
                    return Ok(());
                }
                let next_is_index = path
                    .get(depth + 1)
                    .is_some_and(|s| s.parse::<usize>().is_ok());
                t.entry(segment.clone()).or_insert_with(|| {
                    if next_is_index {
                        toml::Value::Array(Vec::new())
                    } else {
                        toml::Value::Table(toml::Table::new())
                    }
                })
            }
            toml::Value::Array(a) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| env_err(&format!("`{segment}` must be an array index")))?;
                if index == a.len() {
                    a.push(toml::Value::Table(toml::Table::new()));
                }
                let len = a.len();
                let slot = a.get_mut(index).ok_or_else(|| {
                    env_err(&format!("index {index} is past the end ({len} entries)"))
                })?;
                if is_last {
                    *slot = env_scalar(value);
                    return Ok(());
                }
                slot
            }
            _ => return Err(env_err(&format!("`{segment}` is below a plain value"))),
        };
    }
    Ok(())
}

fn env_scalar(value: &str) -> toml::Value {
    let probe = format!("v = {value}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => v,
            Some(v @ toml::Value::Array(_)) => v,
            _ => toml::Value::String(value.to_string()),
        },
        Err(_) => toml::Value::String(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medcall.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(file.map(|_| path.as_path()), vars)
    }

    #[test]
    fn embedded_defaults_alone_make_a_valid_config() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.agi.listen.to_string(), "127.0.0.1:4573");
        assert_eq!(c.store.path, PathBuf::from("./data/medcall.db"));
        assert_eq!(c.pbx.len(), 1);
        assert_eq!(c.pbx[0].port, 5038);
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let c = load(
            Some("[http]\nlisten = \"127.0.0.1:9000\"\n[agi]\nlisten = \"127.0.0.1:4000\"\n"),
            &[
                ("MEDCALL__HTTP__LISTEN", "127.0.0.1:9100"),
                ("MEDCALL__PBX__0__PORT", "6038"),
            ],
        )
        .unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.agi.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(c.pbx[0].port, 6038);
    }

    #[test]
    fn environment_can_append_a_pbx_by_index() {
        let c = load(
            None,
            &[
                ("MEDCALL__PBX__1__NAME", "branch"),
                ("MEDCALL__PBX__1__HOST", "10.0.0.2"),
                ("MEDCALL__PBX__1__PORT", "5038"),
                ("MEDCALL__PBX__1__USERNAME", "medcall"),
                ("MEDCALL__PBX__1__SECRET", "s3cret"),
            ],
        )
        .unwrap();
        assert_eq!(c.pbx.len(), 2);
        assert_eq!(c.pbx[1].name, "branch");
        assert_eq!(c.pbx[1].auth, AmiAuth::Md5);
    }

    #[test]
    fn invalid_value_names_the_key_in_one_line() {
        let e = load(Some("[[pbx]]\nname = \"a\"\nhost = \"h\"\nport = \"x\"\nusername = \"u\"\nsecret = \"s\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("pbx[0].port"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = load(None, &[("MEDCALL__HTTP__LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.listen"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = load(Some("[http]\nlisten_port = 1\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
    }

    #[test]
    fn syntax_error_is_one_line() {
        let e = load(Some("[http\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("medcall.toml"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_or_rendered_config() {
        let c = load(None, &[("MEDCALL__PBX__0__SECRET", "topsecret-value")]).unwrap();
        assert_eq!(c.pbx[0].secret.expose(), "topsecret-value");
        assert!(!format!("{c:?}").contains("topsecret-value"));
        assert!(!c.to_redacted_toml().contains("topsecret-value"));
        assert!(c.to_redacted_toml().contains("***"));
    }

    #[test]
    fn duplicate_pbx_names_and_bad_key_hashes_are_refused() {
        let e = load(
            None,
            &[
                ("MEDCALL__PBX__1__NAME", "main"),
                ("MEDCALL__PBX__1__HOST", "h"),
                ("MEDCALL__PBX__1__PORT", "1"),
                ("MEDCALL__PBX__1__USERNAME", "u"),
                ("MEDCALL__PBX__1__SECRET", "s"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pbx[1].name"), "{e}");
        assert!(e.contains("duplicate PBX name"), "{e}");
        let e = load(
            Some("[[api_keys]]\nname = \"crm\"\nsha256 = \"abc\"\nscopes = [\"events\"]\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("api_keys[0].sha256"), "{e}");
    }

    #[test]
    fn a_pbx_name_that_is_not_letters_digits_dashes_or_underscores_is_refused_by_key() {
        for bad in ["", "main office", "a.b"] {
            let e = load(None, &[("MEDCALL__PBX__0__NAME", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("pbx[0].name"), "{bad:?}: {e}");
            assert!(e.contains("must be letters, digits, '-' or '_'"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn ami_section_has_defaults_and_refuses_inverted_backoff() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.ami.event_mask, "on");
        assert!(c.ami.backoff_min_ms <= c.ami.backoff_max_ms);
        let e = load(None, &[("MEDCALL__AMI__BACKOFF_MAX_MS", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ami.backoff_max_ms"), "{e}");
    }

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../medcall.example.toml");
        load(Some(text), &[]).unwrap();
    }
}
