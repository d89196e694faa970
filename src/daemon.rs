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

use crate::ami::{AmiClient, ClientSettings, ClientState, ClientStatus, StatusHook};
use crate::auth;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::pbx::PbxRegistry;
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

    let tasks = TaskTracker::new();
    let router = http::router(app.clone(), &config.http);
    let http_shutdown = shutdown.child_token();
    tasks.spawn(async move {
        if let Err(e) = http::serve(http_listener, router, http_shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let ami_clients = spawn_ami_clients(&config, &app.pbxs, &tasks, &shutdown);
    tracing::debug!(count = ami_clients.len(), "AMI clients started");
    tasks.close();

    tracing::info!(version = env!("CARGO_PKG_VERSION"), "medcall started");
    shutdown.cancelled().await;
    let grace = Duration::from_millis(config.http.shutdown_grace_ms);
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

/// One AMI client per `[[pbx]]`, each mirroring its status into the registry. The
/// handles are what the call tracker and call control subscribe to and send through.
fn spawn_ami_clients(
    config: &Config,
    pbxs: &PbxRegistry,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Vec<AmiClient> {
    config
        .pbx
        .iter()
        .map(|pbx| {
            let registry = pbxs.clone();
            let name = pbx.name.clone();
            let hook: StatusHook = Arc::new(move |status: &ClientStatus| {
                registry.update(&name, |s| mirror_status(s, status));
            });
            AmiClient::spawn(
                ClientSettings::from_config(pbx, &config.ami),
                tasks,
                shutdown.child_token(),
                Some(hook),
            )
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
    s.last_error = if status.state == ClientState::Connected {
        None
    } else {
        status.last_error.clone()
    };
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
