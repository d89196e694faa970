//! The booking's sweeper task: every `interval`, lapsed holds are marked expired (their
//! history dated when each lapsed) and replays past their window forgotten.
//!
//! Nothing depends on its timing: a lapsed hold stops counting the moment it lapses
//! (the capacity check and every read compare `expires_at` with `now`), so the sweeper
//! only writes down what is already true, after a restart too.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoredTime};

/// Sweeps until `cancel`; a batch that came back full is followed by another at once.
pub async fn run(store: Store, interval: Duration, cancel: CancellationToken) {
    loop {
        match store.sweep_bookings(StoredTime::now()).await {
            Ok(n) if n > 0 => {
                tracing::debug!(expired = n, "booking: lapsed holds marked expired");
                if n >= crate::store::SWEEP_BATCH {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "booking: the sweep failed; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
