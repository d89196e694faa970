//! The durable scheduler: one task that sleeps until the next due job, hands every job
//! due by then to its consumer in one batch, and waits until the consumer has stored
//! their effects before it looks again.
//!
//! Jobs are rows (`scheduled_jobs`), never timers in memory: a job fires after a
//! restart too, late ones at once. The consumer deletes a job in the same transaction as
//! the effects of firing it, so a job fires once; a batch is handed out only after the
//! previous one is stored, so no job is handed out twice. Whoever adds a job that may be
//! due sooner than the one the task sleeps for calls `wake`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::Store;
use crate::store::consultation::DueJob;

/// Jobs due, and where to say they are stored.
#[derive(Debug)]
pub struct Fired {
    pub jobs: Vec<DueJob>,
    pub done: oneshot::Sender<()>,
}

/// The most jobs handed out at once (they are stored in one transaction).
pub const BATCH: u32 = 1024;

/// The longest sleep without looking at the table (a job added without a wake, or a
/// clock that jumped, is seen within this).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Starts the scheduler on `tracker`; `clock` tells the time (tests pass their own).
pub fn spawn(
    store: Store,
    wake: Arc<Notify>,
    out: mpsc::Sender<Fired>,
    clock: fn() -> DateTime<Utc>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(run(store, wake, out, clock, shutdown));
}

async fn run(
    store: Store,
    wake: Arc<Notify>,
    out: mpsc::Sender<Fired>,
    clock: fn() -> DateTime<Utc>,
    shutdown: CancellationToken,
) {
    loop {
        // Registered before the table is read, so a wake during the read is not lost.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = clock();
        let sleep = match store.due_jobs(now, BATCH).await {
            Ok(jobs) if !jobs.is_empty() => {
                let (done, stored) = oneshot::channel();
                if out.send(Fired { jobs, done }).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = stored => {}
                }
                continue;
            }
            Ok(_) => match store.next_job_due().await {
                Ok(Some(next)) => (next - clock()).to_std().unwrap_or(Duration::ZERO),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler: cannot read the next job");
                    Duration::from_secs(1)
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "scheduler: cannot read the due jobs");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut woken => {}
            () = tokio::time::sleep(sleep.min(MAX_SLEEP)) => {}
        }
    }
}
