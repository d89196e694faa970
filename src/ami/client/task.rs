//! The connection task's life: attempt a session, report the transition, wait out the
//! [`Backoff`] (refusing actions meanwhile as not sent), and try again — forever, until
//! shutdown; then fail what is still queued as not sent.
//!
//! Owns the status transitions and the lifecycle items (`Connected`, `Disconnected`)
//! consumers see. It never writes to the socket itself: [`super::login`] and
//! [`super::session`] do.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::login::connect_and_login;
use super::status::ClientState;
use super::{AmiError, ConnectionError, Task};
use crate::ami::events::AmiEvent;
use crate::backoff::Backoff;

impl Task {
    pub(super) async fn run(mut self) {
        let timing = self.settings.timing;
        let mut backoff = Backoff::new(timing.backoff_min, timing.backoff_max);
        let name = self.shared.name.clone();
        loop {
            self.shared.status.update(|s| {
                s.state = ClientState::Connecting;
                s.connect_attempts += 1;
            });
            let shutdown = self.shutdown.clone();
            let attempt = tokio::select! {
                () = shutdown.cancelled() => break,
                r = connect_and_login(&self.settings, &self.shared) => r,
            };
            match attempt {
                Ok(login) => {
                    backoff.reset();
                    tracing::info!(pbx = %name, version = ?login.version, "AMI connected");
                    self.shared.status.update(|s| {
                        s.state = ClientState::Connected;
                        if login.version.is_some() {
                            s.version.clone_from(&login.version);
                        }
                        s.connected_since = Some(Utc::now());
                        s.last_error = None;
                    });
                    self.shared.publish(&AmiEvent::Connected {
                        version: login.version,
                        banner: login.banner,
                    });
                    for m in login.early {
                        self.shared.publish(&AmiEvent::Message(Arc::new(m)));
                    }
                    let error = self.session(login.conn).await;
                    let shutting_down = error == ConnectionError::Shutdown;
                    if shutting_down {
                        tracing::info!(pbx = %name, "AMI logged off");
                    } else {
                        tracing::warn!(pbx = %name, %error, "AMI connection lost");
                    }
                    self.shared.status.update(|s| {
                        s.state = ClientState::Disconnected;
                        s.connected_since = None;
                        s.last_error = Some(error.to_string());
                    });
                    self.shared.publish(&AmiEvent::Disconnected {
                        error: error.to_string(),
                    });
                    if shutting_down {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(pbx = %name, %error, "AMI connection attempt failed");
                    self.shared.status.update(|s| {
                        s.state = ClientState::Disconnected;
                        s.last_error = Some(error.to_string());
                    });
                }
            }
            let delay = backoff.next_delay(&mut rand::rng());
            tracing::debug!(pbx = %name, ?delay, "AMI reconnecting after a delay");
            if !self.wait_refusing(delay).await {
                break;
            }
        }
        self.shared
            .status
            .update(|s| s.state = ClientState::Disconnected);
        self.rx.close();
        while let Ok(r) = self.rx.try_recv() {
            let _ = r.reply.send(Err(AmiError::NotSent));
        }
    }

    /// Waits `delay`, failing every action that arrives meanwhile as not sent. Returns
    /// `false` when shutdown was requested.
    async fn wait_refusing(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = &mut sleep => return true,
                r = self.rx.recv(), if self.rx_open => match r {
                    Some(r) => { let _ = r.reply.send(Err(AmiError::NotSent)); }
                    None => self.rx_open = false,
                },
            }
        }
    }
}
