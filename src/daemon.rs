//! `medcall run`: wires the store, key ring, HTTP server, FastAGI server, one AMI client
//! and one call-ingest task per PBX (gathered in the [`PbxRegistry`]) and the signal
//! watcher together, and shuts them down in order. It also maps the configuration into
//! each part's own plain settings (`agi::ServerSettings`, `ami::ClientSettings`): the
//! protocol modules never read `config`.
//!
//! Every task is spawned on the one [`TaskTracker`] and watches the one
//! [`CancellationToken`]; shutdown cancels the token, waits for the tracker up to the
//! grace period, and returns.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agi;
use crate::ami::{self, AmiClient, EventStream};
use crate::auth;
use crate::calls;
use crate::conference::{self, ConferenceHandle, ControlSettings};
use crate::config::{AmiAuth, AmiConfig, CallsConfig, Config, PbxConfig};
use crate::http::{self, AppState};
use crate::media::library::{LibrarySettings, MediaLibrary};
use crate::media::netguard::NetGuard;
use crate::media::stream::{self as streams, StreamHub};
use crate::metrics::Metrics;
use crate::pbx::{Pbx, PbxRegistry};
use crate::routes::{self, PbxAddresses};
use crate::store::Store;

/// Runs the daemon until SIGTERM or Ctrl-C, then drains and returns `Ok`.
///
/// # Errors
/// Startup failures: the store cannot be opened, a port cannot be bound.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(cancel_on_signal(shutdown.clone()));
    serve(config, shutdown, tasks).await
}

/// Runs the daemon until `shutdown` is cancelled.
///
/// # Errors
/// Startup failures: the store cannot be opened, a port cannot be bound.
pub async fn run_until(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve(config, shutdown, TaskTracker::new()).await
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C; ends when `shutdown` is cancelled either way.
async fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::select! {
        () = wait_for_signal() => {
            tracing::info!("shutdown requested");
            shutdown.cancel();
        }
        () = shutdown.cancelled() => {}
    }
}

/// Starts every part on `tasks`, waits for `shutdown`, then drains `tasks`.
async fn serve(
    config: Config,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> anyhow::Result<()> {
    let store_path = config.store.path.clone();
    let group_max = config.booking.group_commit_max;
    let store = tokio::task::spawn_blocking(move || Store::open_with_group(&store_path, group_max))
        .await?
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let (keys, created) = auth::load_key_ring(&config.api_keys, &store, &config.store.data_dir())
        .await
        .context("loading API keys")?;
    if let Some(key) = created {
        announce_admin_key(&key, &config);
    }

    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP to {}", config.http.listen))?;
    tracing::info!(addr = %http_listener.local_addr()?, "HTTP listening");

    let pbx_addresses = Arc::new(PbxAddresses::resolve(&config.pbx).await);
    let (session_log, session_log_writer) = routes::session_log::SessionLog::new(
        store.clone(),
        Arc::clone(&pbx_addresses),
        shutdown.child_token(),
    );
    let audiosocket = audiosocket_settings(&config, &pbx_addresses);
    let audiosocket_listener = TcpListener::bind(audiosocket.listen)
        .await
        .with_context(|| format!("binding AudioSocket to {}", audiosocket.listen))?;
    let audiosocket_addr = audiosocket_listener.local_addr()?;
    tracing::info!(addr = %audiosocket_addr, "AudioSocket listening");
    // How Asterisk dials medcall's AudioSocket server: the advertised address, else
    // the one bound (a port 0 in the config is the port the kernel chose).
    let advertised = if config.audiosocket.advertise.is_empty() {
        anyhow::ensure!(
            !audiosocket_addr.ip().is_unspecified(),
            "audiosocket.listen is {audiosocket_addr}: set audiosocket.advertise to the \
             address Asterisk reaches medcall at"
        );
        audiosocket_addr.to_string()
    } else {
        config.audiosocket.advertise.clone()
    };
    let metrics = Metrics::new();
    // Woken after a status change with a notification is committed.
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let conference = match calls_pbx(&config) {
        Some(pbx) => {
            let settings = conference_settings(
                pbx,
                &config.calls,
                &config.store.data_dir(),
                Some(advertised),
            )?;
            Some(conference::control::channel(settings, store.clone()))
        }
        None => None,
    };
    let consultations = consultations_pbx(&config).map(|pbx| {
        crate::consultation::run::channel(
            consultation_settings(&config, pbx.name.as_str()),
            store.clone(),
        )
    });
    let media = conference
        .as_ref()
        .map(|(handle, _)| media_library(&config, handle.media_dir(), &metrics))
        .transpose()?;
    let agi_server = agi_server(
        &config,
        Arc::clone(&pbx_addresses),
        store.clone(),
        conference.as_ref().map(|(handle, _)| handle.clone()),
        consultations.as_ref().map(|(handle, _)| handle.clone()),
    )?
    .with_hook(session_log);
    let agi_listener = agi::bind(config.agi.listen, config.agi.backlog)
        .with_context(|| format!("binding FastAGI to {}", config.agi.listen))?;
    tracing::info!(addr = %agi_listener.local_addr()?, "FastAGI listening");

    // Nothing is spawned before every listener is bound: a startup failure leaves no
    // task (and no AMI login) behind.
    let (pbxs, events) = spawn_ami_clients(&config, &tasks, &shutdown)?;
    tracing::debug!(count = pbxs.len(), "AMI clients started");
    let stream_hub = StreamHub::new(audiosocket.fanout, metrics.streams.clone());
    let app = AppState {
        keys: Arc::new(keys),
        pbxs,
        metrics,
        store,
        conference: conference.as_ref().map(|(handle, _)| handle.clone()),
        max_body_bytes: config.http.max_body_bytes,
        streams: stream_hub.clone(),
        media: media.map(Arc::new),
        public_base: config.http.public_base(),
        recording_wait: Duration::from_millis(config.calls.recording_final_wait_ms),
        booking: Arc::new(http::booking::BookingAccess::from_config(&config.booking)),
        consultations: consultations.as_ref().map(|(handle, _)| handle.clone()),
        attachments_dir: config.store.data_dir().join("attachments"),
        consultation_body: http::consultation_body::BodyLimits {
            max_json_bytes: config.http.max_body_bytes,
            max_attachment_bytes: config.consultations.max_attachment_bytes,
            max_text_part_bytes: 64 * 1024,
        },
        default_duration_min: config.consultations.default_duration_min,
        outbox_wake: Arc::clone(&outbox_wake),
    };
    tasks.spawn(session_log_writer);
    crate::outbox::spawn(
        app.store.clone(),
        outbox_settings(&config)?,
        Arc::clone(&outbox_wake),
        &tasks,
        shutdown.child_token(),
    );
    tasks.spawn(crate::sweeper::run(
        app.store.clone(),
        Duration::from_millis(config.booking.sweep_interval_ms),
        shutdown.child_token(),
    ));
    let agi_shutdown = shutdown.child_token();
    tasks.spawn(agi_server.serve(agi_listener, agi_shutdown));
    tasks.spawn(streams::serve(
        audiosocket_listener,
        audiosocket,
        stream_hub,
        shutdown.child_token(),
    ));
    let router = http::router(app.clone(), &config.http);
    let http_shutdown = shutdown.child_token();
    tasks.spawn(async move {
        if let Err(e) = http::serve(http_listener, router, http_shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    for (pbx, events) in app.pbxs.iter().zip(events) {
        tasks.spawn(calls::ingest::run(
            pbx.name().to_string(),
            pbx.client().clone(),
            events,
            app.store.clone(),
            shutdown.child_token(),
        ));
    }
    if let Some((handle, _)) = &conference {
        tasks.spawn(crate::media::recordings::run(
            handle.store().clone(),
            handle.media_dir().to_path_buf(),
            std::sync::Arc::clone(handle.recording_stopped()),
            shutdown.child_token(),
        ));
    }
    if let Some((_, inbox)) = conference {
        let pbx = inbox.pbx().to_string();
        match app.pbxs.iter().find(|p| p.name().as_str() == pbx) {
            Some(pbx) => conference::control::spawn(
                inbox,
                pbx.client().clone(),
                &tasks,
                shutdown.child_token(),
            ),
            None => tracing::error!(%pbx, "the calls PBX is not registered"),
        }
    }
    if let Some((_, inbox)) = consultations {
        let pbx = inbox.pbx().to_string();
        match app.pbxs.iter().find(|p| p.name().as_str() == pbx) {
            Some(pbx) => {
                let scheduler_wake = Arc::new(tokio::sync::Notify::new());
                let (fired_tx, fired_rx) = tokio::sync::mpsc::channel(1);
                crate::scheduler::spawn(
                    app.store.clone(),
                    Arc::clone(&scheduler_wake),
                    fired_tx,
                    || crate::store::StoredTime::now().time(),
                    &tasks,
                    shutdown.child_token(),
                );
                crate::consultation::run::spawn(
                    inbox,
                    pbx.client().clone(),
                    fired_rx,
                    scheduler_wake,
                    Arc::clone(&outbox_wake),
                    &tasks,
                    shutdown.child_token(),
                );
            }
            None => tracing::error!(%pbx, "the consultations PBX is not registered"),
        }
    }
    tasks.close();

    tracing::info!(version = env!("CARGO_PKG_VERSION"), "medcall started");
    shutdown.cancelled().await;
    // AGI sessions drain for their own period, then are cut: wait for that too.
    let grace = Duration::from_millis(config.http.shutdown_grace_ms)
        .max(Duration::from_millis(config.agi.drain_ms) + Duration::from_secs(1));
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            pending = tasks.len(),
            "tasks still running after the grace period; exiting anyway"
        );
    }
    tracing::info!("medcall stopped");
    Ok(())
}

fn outbox_settings(config: &Config) -> anyhow::Result<crate::outbox::OutboxSettings> {
    let w = &config.webhooks;
    let guard = crate::media::netguard::NetGuard::parse(
        &config.media.allow_networks,
        &config.media.deny_networks,
    )
    .map_err(|e| anyhow::anyhow!("media networks: {}", e.0))?;
    Ok(crate::outbox::OutboxSettings {
        key: (!w.secret.expose().is_empty()).then(|| w.secret.clone()),
        timeout: Duration::from_millis(w.timeout_ms),
        retry: crate::outbox::retry::RetryPolicy {
            backoff_min: Duration::from_millis(w.backoff_min_ms),
            backoff_max: Duration::from_millis(w.backoff_max_ms),
            jitter: 0.1,
            give_up_after: Duration::from_secs(w.give_up_after_s),
        },
        guard,
        concurrency: w.concurrency,
    })
}

/// The PBX `[consultations] pbx` names (`[calls] pbx` when empty).
fn consultations_pbx(config: &Config) -> Option<&PbxConfig> {
    if config.consultations.pbx.is_empty() {
        calls_pbx(config)
    } else {
        config
            .pbx
            .iter()
            .find(|p| p.name.as_str() == config.consultations.pbx)
    }
}

fn consultation_settings(config: &Config, pbx: &str) -> crate::consultation::run::RunSettings {
    let c = &config.consultations;
    let ms = Duration::from_millis;
    crate::consultation::run::RunSettings {
        rules: crate::consultation::lifecycle::Rules {
            doctor_answer_timeout: ms(c.doctor_answer_timeout_ms),
            patient_ring_timeout: ms(c.patient_ring_timeout_ms),
            patient_retries: c.patient_retries,
            patient_retry_interval: ms(c.patient_retry_interval_ms),
            patient_wait: ms(c.patient_wait_ms),
            lock_window: ms(c.lock_window_ms),
            warning_before: (!c.warning_sound.is_empty()).then(|| ms(c.warning_before_ms)),
            conference_prefix: c.conference_prefix.clone(),
        },
        pbx: pbx.to_owned(),
        conference_context: config.calls.conference_context.clone(),
        user_profile: config.calls.user_profile.clone(),
        player_profile: config.calls.player_profile.clone(),
        player_dial: format!("Local/s@{}/n", config.calls.play_context),
        warning_sound: (!c.warning_sound.is_empty()).then(|| c.warning_sound.clone()),
        patient_dial_template: c.patient_dial_template.clone(),
        caller_id: (!config.calls.caller_id.is_empty()).then(|| config.calls.caller_id.clone()),
    }
}

/// The PBX `[calls] pbx` names (the first one when empty); `None` without any PBX.
fn calls_pbx(config: &Config) -> Option<&PbxConfig> {
    if config.calls.pbx.is_empty() {
        config.pbx.first()
    } else {
        config
            .pbx
            .iter()
            .find(|p| p.name.as_str() == config.calls.pbx)
    }
}

fn conference_settings(
    pbx: &PbxConfig,
    calls: &CallsConfig,
    data_dir: &Path,
    audiosocket: Option<String>,
) -> anyhow::Result<ControlSettings> {
    let media_dir = pbx
        .media_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("media").join(pbx.name.as_str()));
    let media_dir = std::path::absolute(&media_dir)
        .with_context(|| format!("the media directory {}", media_dir.display()))?;
    let asterisk_media_dir = match &pbx.asterisk_media_dir {
        Some(dir) => dir.trim_end_matches('/').to_string(),
        None => media_dir
            .to_str()
            .filter(|d| d.bytes().all(|b| b.is_ascii_graphic()))
            .context("the media directory is no printable ASCII path: set asterisk_media_dir")?
            .to_string(),
    };
    for sub in ["play", "recordings"] {
        std::fs::create_dir_all(media_dir.join(sub))
            .with_context(|| format!("creating {}", media_dir.join(sub).display()))?;
    }
    let player_dial = format!("Local/s@{}/n", calls.play_context)
        .parse()
        .context("calls.play_context does not make a dial string")?;
    Ok(ControlSettings {
        pbx: pbx.name.to_string(),
        engine: conference::engine::Settings {
            ring_timeout: Duration::from_millis(calls.ring_timeout_ms),
            end_deadline: Duration::from_millis(calls.end_deadline_ms),
        },
        dialplan: conference::observe::Dialplan {
            conference_context: calls.conference_context.clone(),
            hold_context: calls.hold_context.clone(),
            user_profile: calls.user_profile.clone(),
            player_profile: calls.player_profile.clone(),
            listener_profile: calls.listener_profile.clone(),
            asterisk_media_dir,
            caller_id: Some(calls.caller_id.clone()).filter(|c| !c.is_empty()),
        },
        dial_template: calls.dial_template.clone(),
        player_dial,
        audiosocket,
        media_dir,
    })
}

/// One AMI client per `[[pbx]]`, gathered in the registry, each with the call
/// tracker's event stream (in the same order) subscribed before the first connect.
fn spawn_ami_clients(
    config: &Config,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<(PbxRegistry, Vec<EventStream>)> {
    let mut events = Vec::with_capacity(config.pbx.len());
    let pbxs = config
        .pbx
        .iter()
        .map(|pbx| {
            let (client, stream) = AmiClient::spawn_with_events(
                client_settings(pbx, &config.ami),
                tasks,
                shutdown.child_token(),
            );
            events.push(stream);
            Pbx::new(pbx.name.clone(), pbx.host.clone(), pbx.port, client)
        })
        .collect();
    let registry = PbxRegistry::new(pbxs).context("registering the PBXs")?;
    Ok((registry, events))
}

/// One `[[pbx]]` entry and the `[ami]` section as the AMI client's own settings.
fn client_settings(pbx: &PbxConfig, ami: &AmiConfig) -> ami::ClientSettings {
    let ms = Duration::from_millis;
    ami::ClientSettings {
        name: pbx.name.to_string(),
        host: pbx.host.clone(),
        port: pbx.port,
        username: pbx.username.clone(),
        secret: pbx.secret.clone(),
        auth: match pbx.auth {
            AmiAuth::Plain => ami::LoginMethod::Plain,
            AmiAuth::Md5 => ami::LoginMethod::Md5,
        },
        event_mask: ami.event_mask.clone(),
        timing: ami::Timing {
            connect_timeout: ms(ami.connect_timeout_ms),
            action_timeout: ms(ami.action_timeout_ms),
            backoff_min: ms(ami.backoff_min_ms),
            backoff_max: ms(ami.backoff_max_ms),
            ping_interval: ms(ami.ping_interval_ms),
            ping_deadline: ms(ami.ping_deadline_ms),
        },
        limits: ami::ClientLimits {
            frame: ami::Limits {
                max_message_bytes: ami.max_message_bytes,
                max_headers: ami.max_headers,
            },
            max_list_items: ami.max_list_items,
            event_queue_capacity: ami.event_queue_capacity,
            action_queue_capacity: ami.action_queue_capacity,
        },
        // An empty `capture_dir` (e.g. from an environment variable) is off.
        capture: ami
            .capture_dir
            .as_ref()
            .filter(|d| !d.as_os_str().is_empty())
            .map(|dir| ami::CaptureSettings {
                dir: dir.clone(),
                rotate_bytes: ami.capture_rotate_bytes,
                keep_files: ami.capture_keep_files,
            }),
    }
}

/// The `[media]` section as the play library's settings: converted files go to the
/// PBX's media directory's `play/`, decoded by this very executable's `decode` child.
fn media_library(
    config: &Config,
    media_dir: &Path,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<MediaLibrary> {
    let m = &config.media;
    let guard = NetGuard::parse(&m.allow_networks, &m.deny_networks)
        .map_err(|e| anyhow::anyhow!("media.allow_networks / deny_networks: {}", e.0))?;
    let exe = std::env::current_exe().context("finding medcall's own executable")?;
    let mut settings = LibrarySettings::new(media_dir.join("play"), exe);
    settings.url_ttl = Duration::from_millis(m.url_cache_ttl_ms);
    settings.fetch.guard = guard;
    settings.fetch.max_bytes = m.max_fetch_bytes;
    settings.fetch.connect_timeout = Duration::from_millis(m.connect_timeout_ms);
    settings.fetch.total_timeout = Duration::from_millis(m.fetch_timeout_ms);
    settings.fetch.max_redirects = u8::try_from(m.max_redirects).unwrap_or(u8::MAX);
    settings.child.max_input_bytes = m.max_fetch_bytes;
    settings.child.decode.max_duration = Duration::from_secs(m.max_duration_s);
    settings.child.decode.max_channels = u16::try_from(m.max_channels).unwrap_or(u16::MAX);
    settings.child.memory_bytes = m.decode_memory_mib.saturating_mul(1024 * 1024);
    settings.child.cpu_seconds = m.decode_cpu_s;
    settings.child.wall_clock = Duration::from_millis(m.decode_timeout_ms);
    Ok(MediaLibrary::new(settings, Arc::clone(metrics)))
}

/// The `[audiosocket]` section as the stream server's own settings; an empty `allow`
/// is loopback plus the PBXs' addresses, as for FastAGI.
fn audiosocket_settings(config: &Config, pbxs: &PbxAddresses) -> streams::AudioSocketSettings {
    let a = &config.audiosocket;
    let allow = if a.allow.is_empty() {
        streams::PeerAllow {
            loopback: true,
            addresses: pbxs.all_addresses(),
        }
    } else {
        streams::PeerAllow {
            loopback: false,
            addresses: a.allow.clone(),
        }
    };
    streams::AudioSocketSettings {
        listen: a.listen,
        allow,
        max_frame_bytes: a.max_frame_bytes,
        uuid_timeout: Duration::from_millis(a.uuid_timeout_ms),
        fanout: streams::FanOutSettings {
            listener_queue_frames: a.listener_queue_frames,
            cut_after: Duration::from_millis(a.listener_cut_after_ms),
        },
    }
}

/// The FastAGI server with the production routes and the `[agi]` settings.
fn agi_server(
    config: &Config,
    pbxs: Arc<PbxAddresses>,
    store: Store,
    conference: Option<ConferenceHandle>,
    consultations: Option<crate::consultation::run::ConsultationHandle>,
) -> anyhow::Result<agi::Server> {
    let allow = if config.agi.allow.is_empty() {
        agi::AllowList {
            loopback: true,
            addresses: pbxs.all_addresses(),
        }
    } else {
        agi::AllowList {
            loopback: false,
            addresses: config.agi.allow.clone(),
        }
    };
    let settings = agi::ServerSettings {
        max_sessions: config.agi.max_sessions,
        session: agi::SessionLimits {
            env: agi::EnvLimits {
                max_line: config.agi.max_line_bytes,
                max_variables: config.agi.max_variables,
            },
            reply: agi::ReplyLimits {
                max_line: config.agi.max_line_bytes,
                ..agi::ReplyLimits::default()
            },
            command_timeout: Duration::from_millis(config.agi.command_timeout_ms),
        },
        session_timeout: Duration::from_millis(config.agi.session_timeout_ms),
        drain_timeout: Duration::from_millis(config.agi.drain_ms),
        allow,
    };
    let router =
        routes::router(pbxs, store, conference, consultations).context("registering AGI routes")?;
    Ok(agi::Server::new(router, settings))
}

#[allow(clippy::print_stdout)]
fn announce_admin_key(key: &str, config: &Config) {
    // Printed once, on purpose, so the operator can copy it; never logged.
    println!("medcall: no API key was configured, so an admin key was created:");
    println!("medcall:   {key}");
    println!(
        "medcall: it is saved in {} (mode 0600) and will not be shown again.",
        config.store.data_dir().join("admin.key").display()
    );
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ami_settings_carry_every_configured_value_of_the_pbx_and_the_ami_section() {
        let vars = [
            ("MEDCALL__PBX__0__NAME", "branch-2"),
            ("MEDCALL__PBX__0__HOST", "pbx.example"),
            ("MEDCALL__PBX__0__PORT", "6038"),
            ("MEDCALL__PBX__0__USERNAME", "medcall-b"),
            ("MEDCALL__PBX__0__SECRET", "s3cret"),
            ("MEDCALL__PBX__0__AUTH", "plain"),
            ("MEDCALL__AMI__CONNECT_TIMEOUT_MS", "1001"),
            ("MEDCALL__AMI__ACTION_TIMEOUT_MS", "1002"),
            ("MEDCALL__AMI__BACKOFF_MIN_MS", "1003"),
            ("MEDCALL__AMI__BACKOFF_MAX_MS", "1004"),
            ("MEDCALL__AMI__PING_INTERVAL_MS", "1005"),
            ("MEDCALL__AMI__PING_DEADLINE_MS", "1006"),
            ("MEDCALL__AMI__MAX_MESSAGE_BYTES", "1007"),
            ("MEDCALL__AMI__MAX_HEADERS", "1008"),
            ("MEDCALL__AMI__MAX_LIST_ITEMS", "1009"),
            ("MEDCALL__AMI__EVENT_QUEUE_CAPACITY", "1010"),
            ("MEDCALL__AMI__ACTION_QUEUE_CAPACITY", "1011"),
            ("MEDCALL__AMI__EVENT_MASK", "call,cdr"),
            ("MEDCALL__AMI__CAPTURE_DIR", "/tmp/captures"),
            ("MEDCALL__AMI__CAPTURE_ROTATE_BYTES", "1012"),
            ("MEDCALL__AMI__CAPTURE_KEEP_FILES", "1013"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(None, vars).unwrap();
        let s = client_settings(&config.pbx[0], &config.ami);
        let ms = Duration::from_millis;
        assert_eq!(s.name, "branch-2");
        assert_eq!((s.host.as_str(), s.port), ("pbx.example", 6038));
        assert_eq!(s.username, "medcall-b");
        assert_eq!(s.secret.expose(), "s3cret");
        assert_eq!(s.auth, ami::LoginMethod::Plain);
        assert_eq!(s.event_mask, "call,cdr");
        assert_eq!(
            s.timing,
            ami::Timing {
                connect_timeout: ms(1001),
                action_timeout: ms(1002),
                backoff_min: ms(1003),
                backoff_max: ms(1004),
                ping_interval: ms(1005),
                ping_deadline: ms(1006),
            }
        );
        assert_eq!(
            s.limits,
            ami::ClientLimits {
                frame: ami::Limits {
                    max_message_bytes: 1007,
                    max_headers: 1008,
                },
                max_list_items: 1009,
                event_queue_capacity: 1010,
                action_queue_capacity: 1011,
            }
        );
        let capture = s.capture.unwrap();
        assert_eq!(capture.dir, std::path::PathBuf::from("/tmp/captures"));
        assert_eq!((capture.rotate_bytes, capture.keep_files), (1012, 1013));
    }

    #[test]
    fn md5_is_the_default_login_and_an_empty_capture_dir_is_no_capture() {
        let vars = [("MEDCALL__AMI__CAPTURE_DIR", "")].map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(None, vars).unwrap();
        let s = client_settings(&config.pbx[0], &config.ami);
        assert_eq!(s.auth, ami::LoginMethod::Md5);
        assert!(s.capture.is_none());
        let config = Config::load(None, Vec::new()).unwrap();
        assert!(
            client_settings(&config.pbx[0], &config.ami)
                .capture
                .is_none()
        );
    }

    #[test]
    fn the_audiosocket_settings_carry_the_section_and_an_empty_allow_means_loopback_and_the_pbxs() {
        let vars = [
            ("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:9300"),
            ("MEDCALL__AUDIOSOCKET__MAX_FRAME_BYTES", "2001"),
            ("MEDCALL__AUDIOSOCKET__UUID_TIMEOUT_MS", "2002"),
            ("MEDCALL__AUDIOSOCKET__LISTENER_QUEUE_FRAMES", "2003"),
            ("MEDCALL__AUDIOSOCKET__LISTENER_CUT_AFTER_MS", "2004"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(None, vars).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let pbxs = PbxAddresses::from_entries(vec![(
            crate::pbx::PbxName::new("main").unwrap(),
            vec![ip("10.0.0.5")],
        )]);
        let s = audiosocket_settings(&config, &pbxs);
        assert_eq!(s.listen.to_string(), "127.0.0.1:9300");
        assert_eq!(s.max_frame_bytes, 2001);
        assert_eq!(s.uuid_timeout, Duration::from_millis(2002));
        assert_eq!(
            s.fanout,
            streams::FanOutSettings {
                listener_queue_frames: 2003,
                cut_after: Duration::from_millis(2004),
            }
        );
        assert_eq!(
            s.allow,
            streams::PeerAllow {
                loopback: true,
                addresses: vec![ip("10.0.0.5")],
            }
        );
        let vars = [("MEDCALL__AUDIOSOCKET__ALLOW", "[\"192.0.2.9\"]")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(None, vars).unwrap();
        assert_eq!(
            audiosocket_settings(&config, &pbxs).allow,
            streams::PeerAllow {
                loopback: false,
                addresses: vec![ip("192.0.2.9")],
            }
        );
    }

    #[tokio::test]
    async fn run_until_starts_the_daemon_and_returns_once_the_token_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            ("MEDCALL__HTTP__LISTEN", "127.0.0.1:0".to_string()),
            ("MEDCALL__AGI__LISTEN", "127.0.0.1:0".to_string()),
            ("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:0".to_string()),
            ("MEDCALL__PBX__0__PORT", "1".to_string()),
            (
                "MEDCALL__STORE__PATH",
                dir.path().join("m.db").display().to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let config = Config::load(None, vars).unwrap();
        let shutdown = CancellationToken::new();
        let daemon = tokio::spawn(run_until(config, shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !dir.path().join("admin.key").exists() {
            assert!(tokio::time::Instant::now() < deadline, "never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!daemon.is_finished(), "it runs until cancelled");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), daemon)
            .await
            .expect("stops once cancelled")
            .unwrap()
            .unwrap();
        assert!(dir.path().join("m.db").exists());
    }

    #[tokio::test]
    async fn run_until_fails_when_the_http_port_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let vars = [
            (
                "MEDCALL__HTTP__LISTEN",
                taken.local_addr().unwrap().to_string(),
            ),
            (
                "MEDCALL__STORE__PATH",
                dir.path().join("m.db").display().to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let config = Config::load(None, vars).unwrap();
        let e = run_until(config, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("binding HTTP"), "{e:#}");
    }

    #[tokio::test]
    async fn the_signal_watcher_ends_when_the_daemon_is_shut_down_another_way() {
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(cancel_on_signal(shutdown.clone()));
        tokio::task::yield_now().await;
        assert!(!watcher.is_finished(), "it waits for a signal");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the watcher ends with the shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn every_ami_client_is_in_the_registry_in_order_with_its_event_stream() {
        let vars = [
            ("MEDCALL__PBX__0__NAME", "a"),
            ("MEDCALL__PBX__0__PORT", "1"),
            ("MEDCALL__PBX__1__NAME", "b"),
            ("MEDCALL__PBX__1__HOST", "127.0.0.1"),
            ("MEDCALL__PBX__1__PORT", "1"),
            ("MEDCALL__PBX__1__USERNAME", "u"),
            ("MEDCALL__PBX__1__SECRET", "s"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(None, vars).unwrap();
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let (pbxs, events) = spawn_ami_clients(&config, &tasks, &shutdown).unwrap();
        let names: Vec<&str> = pbxs.iter().map(|p| p.name().as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(events.len(), 2);
        let b = pbxs.iter().nth(1).unwrap();
        assert_eq!(
            (b.client().name(), b.host(), b.port()),
            ("b", "127.0.0.1", 1)
        );
        // The clients run on the daemon's tracker and stop with its token.
        assert_eq!(tasks.len(), 2);
        shutdown.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("the AMI tasks stop on shutdown");
    }
}
