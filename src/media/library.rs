//! The converted-file cache the `call.audio/play` route asks: a URL in, the path of a
//! `.sln16` file Asterisk can play out, each file fetched and decoded once.
//!
//! Order: the URL cache (in memory: within `url_ttl` the earlier answer is reused
//! without a request; after it, an answer that had validators is revalidated, a 304
//! reusing it) → fetch → sniff (not audio: refused) → SHA-256 of the bytes → if
//! `<dir>/<sha256>.sln16` exists, no decode → else decode in the child → write a temp
//! file in the same directory, fsync, rename, fsync the directory: a file under its
//! final name is always whole. Prepares of the same content at the same time decode
//! once (a lock per hash).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::child::{ChildLimits, decode_in_child};
use super::decode::{DecodeError, OUTPUT_BYTES_PER_SECOND};
use super::fetch::{Fetch, FetchError, FetchSettings, Validators, fetch_if_changed};
use super::sniff::sniff;
use crate::metrics::{MediaLabels, Metrics};

/// The library's settings; the daemon maps configuration onto them.
#[derive(Debug, Clone)]
pub struct LibrarySettings {
    /// Where converted files live (the PBX's media directory as medcall sees it).
    pub dir: PathBuf,
    /// How long an answer for a URL is reused without asking its server (default 60 s).
    pub url_ttl: Duration,
    /// URLs remembered at most (default 1024); the oldest is forgotten first.
    pub max_urls: usize,
    pub fetch: FetchSettings,
    pub child: ChildLimits,
    /// The `medcall` executable the decode child runs.
    pub exe: PathBuf,
}

impl LibrarySettings {
    /// Defaults for everything but the directory and the executable.
    pub fn new(dir: PathBuf, exe: PathBuf) -> LibrarySettings {
        LibrarySettings {
            dir,
            url_ttl: Duration::from_secs(60),
            max_urls: 1024,
            fetch: FetchSettings::default(),
            child: ChildLimits::default(),
            exe,
        }
    }
}

/// A file ready to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Lowercase hex SHA-256 of the fetched bytes.
    pub sha256: String,
    pub duration_ms: u64,
    /// `<dir>/<sha256>.sln16`; Playback takes it without the extension.
    pub path: PathBuf,
}

/// Why a URL cannot be played. [`MediaError::status`] is the HTTP status the route
/// answers and [`MediaError::message`] what the client reads; the `Display` form has
/// the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the file is not MP3 or WAV audio")]
    NotAudio,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("cannot store the converted file: {0}")]
    Storage(String),
}

impl MediaError {
    /// The HTTP status for the client.
    pub fn status(&self) -> u16 {
        match self {
            MediaError::Fetch(e) => match e {
                FetchError::BadUrl(_) | FetchError::Scheme(_) | FetchError::Denied { .. } => 400,
                FetchError::TooLarge { .. } => 413,
                FetchError::Timeout(_) => 504,
                FetchError::Dns { .. }
                | FetchError::Connect { .. }
                | FetchError::Status(_)
                | FetchError::TooManyRedirects(_)
                | FetchError::BadRedirect(_)
                | FetchError::Transport(_) => 502,
            },
            MediaError::NotAudio => 415,
            MediaError::Decode(e) => match e {
                DecodeError::TooLong { .. } | DecodeError::InputTooLarge { .. } => 413,
                DecodeError::TimedOut(_) => 504,
                DecodeError::Spawn(_) | DecodeError::Output(_) => 500,
                // A decoder the file crashed or exhausted: the file cannot be decoded.
                _ => 415,
            },
            MediaError::Storage(_) => 500,
        }
    }

    /// What the client is told: the problem with its file, never our internals (no
    /// resolved address, no path, no decoder message text).
    pub fn message(&self) -> String {
        match self {
            MediaError::Fetch(e) => match e {
                FetchError::BadUrl(_) => "fileUrl is not a valid URL".into(),
                FetchError::Scheme(s) => {
                    format!("fileUrl scheme {s:?} is not allowed: only http and https")
                }
                FetchError::Denied { host, why, .. } => {
                    format!("fileUrl host {host} is {why}: the address is not allowed")
                }
                FetchError::TooLarge { limit } => {
                    format!("the file is larger than the limit of {limit} bytes")
                }
                FetchError::Timeout(t) => {
                    format!("fetching the file took longer than {} s", t.as_secs())
                }
                FetchError::Dns { host, .. } => format!("fileUrl host {host} cannot be resolved"),
                FetchError::Connect { host, .. } => {
                    format!("cannot connect to fileUrl host {host}")
                }
                FetchError::Status(code) => format!("the file server answered HTTP {code}"),
                FetchError::TooManyRedirects(n) => {
                    format!("the file server redirected more than {n} times")
                }
                FetchError::BadRedirect(_) => "the file server sent an unusable redirect".into(),
                FetchError::Transport(_) => "the file transfer failed".into(),
            },
            MediaError::NotAudio => "the file is not MP3 or WAV audio".into(),
            MediaError::Decode(e) => match e {
                DecodeError::TooLong { max_secs } => {
                    format!("the audio is longer than the limit of {max_secs} s")
                }
                DecodeError::InputTooLarge { max } => {
                    format!("the file is larger than the limit of {max} bytes")
                }
                DecodeError::TooManyChannels { channels, max } => {
                    format!("the audio has {channels} channels; at most {max} are accepted")
                }
                DecodeError::SampleRate { rate, min, max } => {
                    format!("the audio's sample rate {rate} Hz is outside {min}–{max} Hz")
                }
                DecodeError::NotAudio => "the file is not MP3 or WAV audio".into(),
                DecodeError::TimedOut(_) => "converting the file took too long".into(),
                DecodeError::Spawn(_) | DecodeError::Output(_) => {
                    "the file could not be converted".into()
                }
                _ => "the audio could not be decoded (corrupt, truncated or unsupported)".into(),
            },
            MediaError::Storage(_) => "the converted file could not be stored".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct UrlEntry {
    checked: Instant,
    validators: Validators,
    prepared: Prepared,
}

/// The cache. Shared by reference (`Arc<MediaLibrary>`); every method takes `&self`.
#[derive(Debug)]
pub struct MediaLibrary {
    settings: LibrarySettings,
    metrics: Arc<Metrics>,
    urls: Mutex<HashMap<String, UrlEntry>>,
    decoding: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl MediaLibrary {
    pub fn new(settings: LibrarySettings, metrics: Arc<Metrics>) -> MediaLibrary {
        MediaLibrary {
            settings,
            metrics,
            urls: Mutex::new(HashMap::new()),
            decoding: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &LibrarySettings {
        &self.settings
    }

    /// The playable file for `url`, fetching and converting it when needed.
    ///
    /// Cancel-safe: dropping the future stops the fetch or kills the decode child; a
    /// temp file half written is left under its temp name only (removed on error).
    ///
    /// # Errors
    /// [`MediaError`], with its status for the client.
    pub async fn prepare(&self, url: &str) -> Result<Prepared, MediaError> {
        let known = self.known(url);
        let validators = match &known {
            Some(e) if e.checked.elapsed() < self.settings.url_ttl && e.prepared.path.exists() => {
                self.count_fetch("cached");
                return Ok(e.prepared.clone());
            }
            Some(e) if e.prepared.path.exists() => e.validators.clone(),
            _ => Validators::default(),
        };
        let fetched = match fetch_if_changed(url, &validators, &self.settings.fetch).await {
            Ok(Fetch::NotModified) => {
                self.count_fetch("revalidated");
                let Some(mut entry) = known else {
                    // Unreachable in practice: validators come only from an entry.
                    return Err(MediaError::Fetch(FetchError::Status(304)));
                };
                entry.checked = Instant::now();
                let prepared = entry.prepared.clone();
                self.remember(url, entry);
                return Ok(prepared);
            }
            Ok(Fetch::Body(f)) => {
                self.count_fetch("fetched");
                f
            }
            Err(e) => {
                self.count_fetch("failed");
                return Err(e.into());
            }
        };
        if sniff(&fetched.body).is_none() {
            return Err(MediaError::NotAudio);
        }
        let sha256 = hex::encode(Sha256::digest(&fetched.body));
        let prepared = self.convert(&sha256, fetched.body).await?;
        self.remember(
            url,
            UrlEntry {
                checked: Instant::now(),
                validators: fetched.validators,
                prepared: prepared.clone(),
            },
        );
        Ok(prepared)
    }

    /// The file for content `sha256`, decoded only if it is not there yet; one decode
    /// per hash at a time.
    async fn convert(&self, sha256: &str, body: bytes::Bytes) -> Result<Prepared, MediaError> {
        let path = self.settings.dir.join(format!("{sha256}.sln16"));
        let lock = self.hash_lock(sha256);
        let result = {
            let _held = lock.lock().await;
            self.convert_locked(sha256, &path, body).await
        };
        self.release_hash_lock(sha256, lock);
        result
    }

    async fn convert_locked(
        &self,
        sha256: &str,
        path: &Path,
        body: bytes::Bytes,
    ) -> Result<Prepared, MediaError> {
        if let Ok(meta) = tokio::fs::metadata(path).await {
            self.count_decode("cached");
            return Ok(Prepared {
                sha256: sha256.to_owned(),
                duration_ms: meta.len().saturating_mul(1000) / OUTPUT_BYTES_PER_SECOND,
                path: path.to_owned(),
            });
        }
        let decoded = match decode_in_child(&self.settings.exe, body, &self.settings.child).await {
            Ok(d) => d,
            Err(e) => {
                self.count_decode("failed");
                return Err(e.into());
            }
        };
        self.count_decode("decoded");
        let duration_ms = decoded.summary.duration_ms();
        let (dir, final_path) = (self.settings.dir.clone(), path.to_owned());
        let tmp = dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        tokio::task::spawn_blocking(move || write_whole(&dir, &tmp, &final_path, &decoded.pcm))
            .await
            .map_err(|e| MediaError::Storage(e.to_string()))?
            .map_err(|e| MediaError::Storage(e.to_string()))?;
        Ok(Prepared {
            sha256: sha256.to_owned(),
            duration_ms,
            path: path.to_owned(),
        })
    }

    fn known(&self, url: &str) -> Option<UrlEntry> {
        self.urls.lock().ok()?.get(url).cloned()
    }

    fn remember(&self, url: &str, entry: UrlEntry) {
        let Ok(mut urls) = self.urls.lock() else {
            return;
        };
        if urls.len() >= self.settings.max_urls && !urls.contains_key(url) {
            let oldest = urls
                .iter()
                .min_by_key(|(_, e)| e.checked)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                urls.remove(&k);
            }
        }
        urls.insert(url.to_owned(), entry);
    }

    fn hash_lock(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.decoding.lock() {
            Ok(mut map) => map.entry(sha256.to_owned()).or_default().clone(),
            // A poisoned map (a panic elsewhere): a lock of our own still serialises
            // nothing, but the temp-file-and-rename write keeps the file whole.
            Err(_) => Arc::default(),
        }
    }

    /// Forgets the hash's lock when no one else holds or waits for it.
    fn release_hash_lock(&self, sha256: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        if let Ok(mut map) = self.decoding.lock() {
            // Ours and the map's: nobody else is waiting.
            if Arc::strong_count(&lock) <= 2 {
                map.remove(sha256);
            }
        }
    }

    fn count_fetch(&self, outcome: &str) {
        self.metrics
            .media_fetches
            .get_or_create(&MediaLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    fn count_decode(&self, outcome: &str) {
        self.metrics
            .media_decodes
            .get_or_create(&MediaLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Writes `bytes` to `tmp`, syncs it, renames it to `path` and syncs the directory, so
/// that `path` is either absent or whole, even across a crash.
fn write_whole(dir: &Path, tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let result = (|| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::media::netguard::Refusal;

    #[test]
    fn each_failure_has_the_status_the_route_answers() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let cases: Vec<(MediaError, u16)> = vec![
            (FetchError::BadUrl("x".into()).into(), 400),
            (FetchError::Scheme("ftp".into()).into(), 400),
            (
                FetchError::Denied {
                    host: "h".into(),
                    addr: ip,
                    why: Refusal::Loopback,
                }
                .into(),
                400,
            ),
            (FetchError::TooLarge { limit: 1 }.into(), 413),
            (FetchError::Timeout(Duration::from_secs(1)).into(), 504),
            (
                FetchError::Dns {
                    host: "h".into(),
                    detail: "d".into(),
                }
                .into(),
                502,
            ),
            (
                FetchError::Connect {
                    host: "h".into(),
                    detail: "d".into(),
                }
                .into(),
                502,
            ),
            (FetchError::Status(404).into(), 502),
            (FetchError::TooManyRedirects(3).into(), 502),
            (FetchError::BadRedirect("x".into()).into(), 502),
            (FetchError::Transport("x".into()).into(), 502),
            (MediaError::NotAudio, 415),
            (DecodeError::NotAudio.into(), 415),
            (DecodeError::Corrupt("x".into()).into(), 415),
            (DecodeError::NoAudio.into(), 415),
            (DecodeError::Unsupported("x".into()).into(), 415),
            (
                DecodeError::TooManyChannels {
                    channels: 9,
                    max: 8,
                }
                .into(),
                415,
            ),
            (
                DecodeError::SampleRate {
                    rate: 1,
                    min: 2,
                    max: 3,
                }
                .into(),
                415,
            ),
            (DecodeError::Crashed("x".into()).into(), 415),
            (DecodeError::ResourceLimit("memory".into()).into(), 415),
            (DecodeError::OutputTooLarge(1).into(), 415),
            (DecodeError::TooLong { max_secs: 600 }.into(), 413),
            (DecodeError::InputTooLarge { max: 1 }.into(), 413),
            (DecodeError::TimedOut(Duration::from_secs(20)).into(), 504),
            (DecodeError::Spawn("x".into()).into(), 500),
            (DecodeError::Output("x".into()).into(), 500),
            (MediaError::Storage("x".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            assert!(!e.message().is_empty());
        }
    }

    #[test]
    fn client_messages_name_the_problem_but_not_internals() {
        let denied = MediaError::from(FetchError::Denied {
            host: "files.example".into(),
            addr: "169.254.169.254".parse().unwrap(),
            why: Refusal::Metadata,
        });
        let m = denied.message();
        assert!(
            m.contains("not allowed") && m.contains("files.example"),
            "{m}"
        );
        assert!(
            !m.contains("169.254"),
            "the resolved address stays in the log: {m}"
        );
        assert!(
            MediaError::from(FetchError::Status(503))
                .message()
                .contains("503")
        );
        let corrupt = MediaError::from(DecodeError::Corrupt("mpa: invalid main_data_begin".into()));
        assert!(
            !corrupt.message().contains("main_data"),
            "{}",
            corrupt.message()
        );
        let storage = MediaError::Storage("/var/lib/asterisk/x: EACCES".into());
        assert!(!storage.message().contains("/var"));
    }

    #[test]
    fn a_whole_file_appears_under_its_name_or_nothing_does() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join(".a.tmp"), dir.path().join("a.sln16"));
        write_whole(dir.path(), &tmp, &path, b"abcd").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
        assert!(!tmp.exists());
        // A directory that does not exist: no file, no temp left behind.
        let gone = dir.path().join("gone");
        let (tmp, path) = (gone.join(".b.tmp"), gone.join("b.sln16"));
        assert!(write_whole(&gone, &tmp, &path, b"x").is_err());
        assert!(!path.exists() && !tmp.exists());
    }
}
