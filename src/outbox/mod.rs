//! The webhook outbox (SPEC §4.6): a consultation's status changes, delivered to its
//! `externalNotificationUrl` at least once and in order per consultation.
//!
//! A notification is written in the same transaction as the status change
//! (`store::outbox::enqueue`); this worker attempts the due ones — a consultation's
//! oldest pending notification only, so a later change waits for the earlier one while
//! other consultations go on — as bare `GET`s with medcall's headers (`headers`), through
//! the network guard (`deliver`), and records every attempt with what follows it
//! (`retry`: 1 s doubling to 10 min, given up after 24 h). All state is in the table: a
//! notification whose attempt was in flight at a `kill -9` is attempted again.

pub mod deliver;
pub mod headers;
pub mod model;
pub mod retry;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::model::{Attempt, Outcome, Pending};
use self::retry::RetryPolicy;
use crate::media::netguard::NetGuard;
use crate::secret::Secret;
use crate::store::{Store, StoredTime};

/// How the worker delivers (mapped from `[webhooks]` and `[media]`'s networks).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Signs every attempt when set.
    pub key: Option<Secret>,
    /// One attempt, connect to answer.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The same guard as audio fetches.
    pub guard: NetGuard,
    /// Attempts in flight at once (across consultations).
    pub concurrency: usize,
}

/// The longest sleep without looking at the table.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Starts the worker on `tracker`. `wake` is notified after a commit that wrote a
/// notification.
pub fn spawn(
    store: Store,
    settings: OutboxSettings,
    wake: Arc<Notify>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(run(store, settings, wake, shutdown));
}

type Done = (Pending, Attempt);

async fn run(
    store: Store,
    settings: OutboxSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let mut in_flight: JoinSet<Done> = JoinSet::new();
    let mut busy: HashSet<i64> = HashSet::new();
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let room = settings.concurrency.saturating_sub(busy.len());
        let now = StoredTime::now().time();
        let mut sleep = MAX_SLEEP;
        if room > 0 {
            match store
                .due_notifications(now, room, busy.iter().copied().collect())
                .await
            {
                Ok(due) => {
                    for pending in due {
                        busy.insert(pending.id);
                        let settings = Arc::clone(&settings);
                        in_flight.spawn(async move {
                            let started = Instant::now();
                            let at = StoredTime::now().time();
                            let target = deliver::Target {
                                guard: &settings.guard,
                                timeout: settings.timeout,
                                key: settings.key.as_ref(),
                            };
                            let outcome = deliver::attempt(&pending, at.timestamp(), &target).await;
                            let elapsed_ms =
                                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                            (
                                pending,
                                Attempt {
                                    at,
                                    outcome,
                                    elapsed_ms,
                                },
                            )
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot read due notifications");
                    sleep = Duration::from_secs(1);
                }
            }
            if sleep == MAX_SLEEP {
                match store.next_notification_due().await {
                    Ok(Some(next)) => {
                        sleep = (next - StoredTime::now().time())
                            .to_std()
                            .unwrap_or(Duration::ZERO);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "outbox: cannot read the next due time");
                        sleep = Duration::from_secs(1);
                    }
                }
            }
        }
        // A due head already in flight must not spin the loop: sleep at least a little.
        let sleep = sleep.clamp(
            Duration::from_millis(if busy.is_empty() { 0 } else { 50 }),
            MAX_SLEEP,
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut woken => {}
            Some(first) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Every attempt finished meanwhile is recorded in the same commit.
                let mut finished = Vec::new();
                let mut next = Some(first);
                while let Some(joined) = next {
                    match joined {
                        Ok((pending, attempt)) => {
                            busy.remove(&pending.id);
                            finished.push((pending, attempt));
                        }
                        Err(e) => {
                            // A panicked attempt: its id stays busy until a restart, the
                            // consultation's later notifications wait (logged loudly).
                            tracing::error!(error = %e, "outbox: an attempt task failed");
                        }
                    }
                    next = in_flight.try_join_next();
                }
                record(&store, &settings, finished).await;
            }
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

async fn record(store: &Store, settings: &OutboxSettings, finished: Vec<Done>) {
    let now = StoredTime::now().time();
    let mut rows = Vec::with_capacity(finished.len());
    for (pending, attempt) in finished {
        let step = retry::after_attempt(
            &pending,
            &attempt.outcome,
            now,
            &settings.retry,
            &mut rand::rng(),
        );
        match &attempt.outcome {
            Outcome::Answered(code) => {
                tracing::debug!(notification = pending.id, code, ?step, "webhook attempt")
            }
            Outcome::Failed(why) => {
                tracing::info!(notification = pending.id, %why, ?step, "webhook attempt failed")
            }
        }
        if let model::Step::GiveUp = step {
            tracing::warn!(
                notification = pending.id,
                consultation = pending.consultation_id,
                "webhook given up"
            );
        }
        rows.push((pending.id, attempt, step));
    }
    if let Err(e) = store.record_attempts(rows).await {
        tracing::error!(error = %e, "outbox: attempts not recorded; they are made again");
    }
}

#[cfg(test)]
mod tests;
