//! `medcall run`: wires the store, key ring, PBX registry, HTTP server and (as they
//! land) the AMI and FastAGI tasks together, and shuts them down in order.
//!
//! Every task is spawned on the one [`TaskTracker`] and watches the one
//! [`CancellationToken`]; shutdown cancels the token, waits for the tracker up to the
//! grace period, and returns.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agi;
use crate::ami::{AmiClient, ClientSettings, ClientState, ClientStatus, EventStream, StatusHook};
use crate::auth;
use crate::calls;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::pbx::PbxRegistry;
use crate::routes::{self, PbxAddresses};
use crate::store::Store;

/// Runs the daemon until SIGTERM or Ctrl-C, then drains and returns `Ok`.
///
/// # Errors
/// Startup failures: the store cannot be opened, a port cannot be bound.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signals.cancel();
    });
    run_until(config, shutdown).await
}

/// Runs the daemon until `shutdown` is cancelled.
///
/// # Errors
/// Startup failures: the store cannot be opened, a port cannot be bound.
pub async fn run_until(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store_path = config.store.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path))
        .await?
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?;
    let (keys, created) = auth::load_key_ring(&config.api_keys, &store, &config.store.data_dir())
        .await
        .context("loading API keys")?;
    if let Some(key) = created {
        announce_admin_key(&key, &config);
    }
    let pbxs = PbxRegistry::new(&config.pbx);
    let metrics = Metrics::new();
    let app = AppState {
        keys: Arc::new(keys),
        pbxs,
        metrics,
        store,
    };

    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP to {}", config.http.listen))?;
    tracing::info!(addr = %http_listener.local_addr()?, "HTTP listening");

    let pbx_addresses = Arc::new(PbxAddresses::resolve(&config.pbx).await);
    let (session_log, session_log_writer) = routes::session_log::SessionLog::new(
        app.store.clone(),
        Arc::clone(&pbx_addresses),
        shutdown.child_token(),
    );
    let agi_server =
        agi_server(&config, Arc::clone(&pbx_addresses), app.store.clone())?.with_hook(session_log);
    let agi_listener = agi::bind(config.agi.listen, config.agi.backlog)
        .with_context(|| format!("binding FastAGI to {}", config.agi.listen))?;
    tracing::info!(addr = %agi_listener.local_addr()?, "FastAGI listening");

    let tasks = TaskTracker::new();
    tasks.spawn(session_log_writer);
    let agi_shutdown = shutdown.child_token();
    tasks.spawn(agi_server.serve(agi_listener, agi_shutdown));
    let router = http::router(app.clone(), &config.http);
    let http_shutdown = shutdown.child_token();
    tasks.spawn(async move {
        if let Err(e) = http::serve(http_listener, router, http_shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let ami_clients = spawn_ami_clients(&config, &app.pbxs, &tasks, &shutdown);
    tracing::debug!(count = ami_clients.len(), "AMI clients started");
    for (pbx, (client, events)) in config.pbx.iter().zip(ami_clients) {
        tasks.spawn(calls::ingest::run(
            pbx.name.clone(),
            client,
            events,
            app.store.clone(),
            shutdown.child_token(),
        ));
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

/// One AMI client per `[[pbx]]`, each mirroring its status into the registry, with the
/// call tracker's event stream subscribed before the first connect. The handles are
/// what the call tracker and call control send through.
fn spawn_ami_clients(
    config: &Config,
    pbxs: &PbxRegistry,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Vec<(AmiClient, EventStream)> {
    config
        .pbx
        .iter()
        .map(|pbx| {
            let registry = pbxs.clone();
            let name = pbx.name.clone();
            let hook: StatusHook = Arc::new(move |status: &ClientStatus| {
                registry.update(&name, |s| mirror_status(s, status));
            });
            let (client, events) = AmiClient::spawn_with_events(
                ClientSettings::from_config(pbx, &config.ami),
                tasks,
                shutdown.child_token(),
                Some(hook),
            );
            pbxs.attach_counters(&pbx.name, client.event_counters());
            (client, events)
        })
        .collect()
}

fn mirror_status(s: &mut crate::pbx::PbxStatus, status: &ClientStatus) {
    use crate::pbx::ConnectionState;
    s.state = match status.state {
        ClientState::Disconnected => ConnectionState::NotConnected,
        ClientState::Connecting => ConnectionState::Connecting,
        ClientState::Connected => ConnectionState::Connected,
    };
    if status.version.is_some() {
        s.asterisk_version.clone_from(&status.version);
    }
    s.connected_since = status.connected_since;
    // Attempts after the first: failed ones count too, so a PBX refusing the login shows
    // its retries here.
    s.reconnect_count = status.connect_attempts.saturating_sub(1);
    s.last_event_at = status.last_event_at;
    s.events_received = status.events_received;
    s.events_dropped = status.events_dropped;
    s.messages_skipped = status.messages_skipped;
    s.last_error = if status.state == ClientState::Connected {
        None
    } else {
        status.last_error.clone()
    };
}

/// The FastAGI server with the production routes and the `[agi]` settings.
fn agi_server(
    config: &Config,
    pbxs: Arc<PbxAddresses>,
    store: Store,
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
    let router = routes::router(pbxs, store).context("registering AGI routes")?;
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
    use crate::pbx::ConnectionState;

    #[test]
    fn the_registry_mirrors_the_ami_status_counters_and_error() {
        let config = Config::load(None, Vec::new()).unwrap();
        let registry = PbxRegistry::new(&config.pbx);
        let mut status = ClientStatus {
            state: ClientState::Disconnected,
            version: None,
            connected_since: None,
            connect_attempts: 3,
            last_event_at: None,
            events_received: 10,
            events_dropped: 4,
            messages_skipped: 1,
            last_error: Some("login rejected: Authentication failed".into()),
        };
        registry.update("main", |s| mirror_status(s, &status));
        let s = &registry.snapshot()[0];
        assert_eq!(s.state, ConnectionState::NotConnected);
        assert_eq!(s.reconnect_count, 2);
        assert_eq!(s.events_dropped, 4);
        assert!(s.last_error.as_deref().unwrap().contains("Authentication"));

        status.state = ClientState::Connected;
        status.version = Some("Asterisk 22.10.1".into());
        registry.update("main", |s| mirror_status(s, &status));
        let s = &registry.snapshot()[0];
        assert_eq!(s.state, ConnectionState::Connected);
        assert_eq!(s.asterisk_version.as_deref(), Some("Asterisk 22.10.1"));
        assert_eq!(s.last_error, None);
    }
}
