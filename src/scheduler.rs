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

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;

    use super::*;
    use crate::consultation::lifecycle::{Job, JobKind};
    use crate::consultation::model::{Kind, NewConsultation};
    use crate::directory::DoctorId;
    use crate::store::consultation::StepWrite;

    async fn store_with_doctor() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("medcall.db")).unwrap();
        store
            .call(|conn| {
                conn.execute_batch(
                    "INSERT INTO directory_doctors (id, guid, full_name, role, speciality, updated_at) \
                     VALUES (7, '6f1c2d4e-0000-4000-8000-000000000007', 'D', '', '', '2026-01-01T00:00:00.000000Z')",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        (dir, store)
    }

    /// A consultation whose start job is due at `begin`.
    async fn consultation(store: &Store, begin: DateTime<Utc>) -> i64 {
        let new = NewConsultation {
            kind: Kind::Voip,
            doctor: DoctorId::new(7).unwrap(),
            patient_full_name: "P".into(),
            video_support: Some(false),
            patient_phone: None,
            begin_at: Some(begin),
            duration_min: 30,
            notify_url: None,
        };
        store
            .create_consultation(new, None, "main".into())
            .await
            .unwrap()
            .id
    }

    /// Consumes fired batches: records (id, kind), deletes the jobs as the runner does.
    async fn consume(
        store: Store,
        mut rx: mpsc::Receiver<Fired>,
        seen: tokio::sync::mpsc::UnboundedSender<(i64, JobKind)>,
    ) {
        while let Some(batch) = rx.recv().await {
            let mut writes = Vec::new();
            for job in &batch.jobs {
                let c = store
                    .consultation_any(job.consultation)
                    .await
                    .unwrap()
                    .unwrap();
                seen.send((job.consultation, job.kind)).unwrap();
                writes.push(StepWrite {
                    next: c,
                    changed: false,
                    schedule: Vec::new(),
                    unschedule: Vec::new(),
                    fired: Some(job.id),
                });
            }
            store.write_consultation_steps(writes).await.unwrap();
            let _ = batch.done.send(());
        }
    }

    async fn next(
        seen: &mut tokio::sync::mpsc::UnboundedReceiver<(i64, JobKind)>,
    ) -> (i64, JobKind) {
        tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn due_jobs_fire_once_in_due_order_and_a_wake_brings_a_sooner_one() {
        let (_d, store) = store_with_doctor().await;
        let now = Utc::now();
        // Late ones (as after a restart) fire at once, earliest first.
        let late_b = consultation(&store, now - Span::seconds(5)).await;
        let late_a = consultation(&store, now - Span::seconds(30)).await;
        let future = consultation(&store, now + Span::milliseconds(400)).await;
        let far = consultation(&store, now + Span::hours(1)).await;
        let wake = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(1);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        tokio::spawn(consume(store.clone(), rx, seen_tx));
        spawn(
            store.clone(),
            Arc::clone(&wake),
            tx,
            Utc::now,
            &tracker,
            shutdown.clone(),
        );
        assert_eq!(next(&mut seen).await, (late_a, JobKind::Start));
        assert_eq!(next(&mut seen).await, (late_b, JobKind::Start));
        let started = std::time::Instant::now();
        assert_eq!(next(&mut seen).await, (future, JobKind::Start));
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "fired before it was due"
        );
        // A job added sooner than the one the task sleeps for: the wake brings it.
        let soon = consultation(&store, Utc::now() + Span::milliseconds(100)).await;
        wake.notify_one();
        assert_eq!(next(&mut seen).await, (soon, JobKind::Start));
        // Nothing fires twice, and the far one waits.
        let quiet = tokio::time::timeout(Duration::from_millis(600), seen.recv()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        assert_eq!(
            store
                .due_jobs(Utc::now() + Span::hours(2), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        let _ = far;
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        // A job moved by scheduling it again keeps one row (kind, consultation unique).
        let c = store.consultation_any(far).await.unwrap().unwrap();
        store
            .write_consultation_steps(vec![StepWrite {
                next: c,
                changed: false,
                schedule: vec![Job {
                    kind: JobKind::Start,
                    due: Utc::now() - Span::seconds(1),
                }],
                unschedule: Vec::new(),
                fired: None,
            }])
            .await
            .unwrap();
        assert_eq!(store.due_jobs(Utc::now(), 10).await.unwrap().len(), 1);
    }
}
