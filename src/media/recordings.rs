//! Recordings after `ConfbridgeStopRecord` (or the conference's end): waiting for
//! Asterisk to finish the WAV, describing it (size, sha256, duration) and storing that,
//! once. The route `call.recording/stop` finalises the recording it stopped; the
//! finaliser task does the same for every other stopped recording (a call that ended
//! while recording, a daemon restarted in between), so none stays undescribed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::wavfile;
use crate::conference::engine::RecordingRecord;
use crate::store::{RecordingFacts, Store};

/// How long after its stop the finaliser keeps waiting for a recording's file before it
/// records it as never final (Asterisk crashed while writing it, the file was removed).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Why a recording has no facts (yet).
#[derive(Debug, thiserror::Error)]
pub enum FinaliseError {
    #[error("the recording's file is not final yet: {0}")]
    NotFinal(String),
    #[error("the recording could not be stored: {0}")]
    Store(String),
}

/// Where the recording's WAV is, as medcall sees it.
pub fn path(media_dir: &Path, rec: &RecordingRecord) -> PathBuf {
    media_dir
        .join("recordings")
        .join(format!("{}.wav", rec.file_stem()))
}

/// Waits (at most `wait`) until the recording's WAV is final, describes it and stores
/// the facts; a recording already described answers what is stored (the file is read
/// once more only to check it is still whole).
///
/// # Errors
/// [`FinaliseError::NotFinal`] when the file is not final within `wait`;
/// [`FinaliseError::Store`] when the facts could not be stored.
pub async fn finalise(
    store: &Store,
    media_dir: &Path,
    rec: &RecordingRecord,
    wait: Duration,
) -> Result<RecordingFacts, FinaliseError> {
    let stored = store
        .recording_by_token(rec.token.clone())
        .await
        .map_err(|e| FinaliseError::Store(e.to_string()))?;
    if let Some(facts) = stored.and_then(|s| s.facts) {
        return Ok(facts);
    }
    let file = path(media_dir, rec);
    wavfile::wait_final(&file, wait)
        .await
        .map_err(|e| FinaliseError::NotFinal(e.to_string()))?;
    let described = wavfile::describe(&file)
        .await
        .map_err(|e| FinaliseError::NotFinal(e.to_string()))?;
    let facts = RecordingFacts {
        size: described.size,
        sha256: described.sha256,
        duration_ms: described.duration_ms,
    };
    store
        .finish_recording(rec.call.clone(), rec.number, Ok(facts.clone()), Utc::now())
        .await
        .map_err(|e| FinaliseError::Store(e.to_string()))?;
    Ok(facts)
}

/// The finaliser task: on every notification (and every few seconds, and at start)
/// it describes the stopped recordings not described yet; one whose file is still not
/// final [`GIVE_UP_AFTER`] its stop is stored as never final, with why.
pub async fn run(
    store: Store,
    media_dir: PathBuf,
    stopped: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        match store.unfinished_recordings().await {
            Ok(list) => {
                for stored in list {
                    let rec = stored.rec;
                    match finalise(&store, &media_dir, &rec, Duration::from_millis(200)).await {
                        Ok(_) => {}
                        Err(FinaliseError::NotFinal(why)) => {
                            let since = rec.stopped_at.unwrap_or(rec.started_at);
                            let overdue = (Utc::now() - since)
                                .to_std()
                                .is_ok_and(|d| d >= GIVE_UP_AFTER);
                            if overdue {
                                tracing::warn!(file = %path(&media_dir, &rec).display(), %why, "recording never became final");
                                if let Err(e) = store
                                    .finish_recording(
                                        rec.call.clone(),
                                        rec.number,
                                        Err(why),
                                        Utc::now(),
                                    )
                                    .await
                                {
                                    tracing::error!(error = %e, "cannot store a recording's failure");
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "recording not finalised"),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list the recordings to finalise"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = stopped.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
