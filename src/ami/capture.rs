//! Capture of the raw AMI byte stream to rotating files, for `medcall replay` and for
//! reproducing field problems. A [`CaptureStream`] wraps the socket and copies every
//! byte read into a bounded queue; a dedicated thread writes the files, so disk I/O
//! never blocks the connection task. When the queue is full bytes are dropped and
//! counted — the connection always wins over the capture.
//!
//! Must never alter the stream it observes.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where and how much to capture.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub dir: PathBuf,
    /// A file is closed and a new one started past this size.
    pub rotate_bytes: u64,
    /// Older files beyond this many are deleted.
    pub keep_files: usize,
}

/// A handle to one PBX's capture writer thread.
#[derive(Debug, Clone)]
pub struct Capture {
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// Chunks waiting for the writer thread.
const QUEUE_CHUNKS: usize = 4096;

impl Capture {
    /// Starts the writer thread for `pbx`'s captures.
    ///
    /// # Errors
    /// The directory cannot be created or the thread cannot start.
    pub fn start(settings: CaptureSettings, pbx: &str) -> std::io::Result<Capture> {
        std::fs::create_dir_all(&settings.dir)?;
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_CHUNKS);
        let prefix = pbx.to_string();
        std::thread::Builder::new().name(format!("ami-capture-{pbx}")).spawn(move || {
            let mut writer = Rotating::new(settings, prefix);
            while let Ok(chunk) = rx.recv() {
                if let Err(e) = writer.write(&chunk) {
                    tracing::warn!(error = %e, "AMI capture write failed; capture continues with a new file");
                    writer.file = None;
                }
            }
        })?;
        Ok(Capture {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues a copy of `bytes`; never blocks.
    pub fn record(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.tx.try_send(bytes.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
                self.dropped.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Bytes that could not be captured because the writer fell behind.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts a new file (called at each new connection, so a file begins with a banner).
    pub fn new_connection(&self) {
        let _ = self.tx.try_send(Vec::new());
    }
}

struct Rotating {
    settings: CaptureSettings,
    prefix: String,
    file: Option<(File, u64)>,
    seq: u64,
}

impl Rotating {
    fn new(settings: CaptureSettings, prefix: String) -> Rotating {
        Rotating {
            settings,
            prefix,
            file: None,
            seq: 0,
        }
    }

    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        // An empty chunk marks a new connection: start a new file.
        if chunk.is_empty() {
            self.file = None;
            return Ok(());
        }
        let full = matches!(&self.file, Some((_, n)) if *n >= self.settings.rotate_bytes);
        if full || self.file.is_none() {
            self.open()?;
        }
        if let Some((f, n)) = self.file.as_mut() {
            f.write_all(chunk)?;
            *n += chunk.len() as u64;
        }
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<()> {
        self.seq += 1;
        let name = format!(
            "{}-{}-{:04}.ami",
            self.prefix,
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            self.seq
        );
        let file = File::create(self.settings.dir.join(name))?;
        self.file = Some((file, 0));
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.settings.dir) else {
            return;
        };
        let mut ours: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{}-", self.prefix)) && n.ends_with(".ami")
                })
            })
            .collect();
        ours.sort();
        let excess = ours.len().saturating_sub(self.settings.keep_files.max(1));
        for old in ours.iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// A socket whose received bytes are also captured.
#[derive(Debug)]
pub struct CaptureStream<S> {
    inner: S,
    capture: Option<Capture>,
}

impl<S> CaptureStream<S> {
    pub fn new(inner: S, capture: Option<Capture>) -> CaptureStream<S> {
        if let Some(c) = &capture {
            c.new_connection();
        }
        CaptureStream { inner, capture }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CaptureStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(capture)) = (&poll, &this.capture) {
            if let Some(new) = buf.filled().get(before..) {
                capture.record(new);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CaptureStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn captured_bytes_equal_the_bytes_read_and_files_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let capture = Capture::start(
            CaptureSettings {
                dir: dir.path().to_path_buf(),
                rotate_bytes: 64,
                keep_files: 100,
            },
            "rig",
        )
        .unwrap();
        let (mut a, b) = tokio::io::duplex(1024);
        let mut stream = CaptureStream::new(b, Some(capture.clone()));
        let sent: Vec<u8> = (0..1000u32)
            .flat_map(|i| format!("Key{i}: v\r\n").into_bytes())
            .collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                a.write_all(&sent).await.unwrap();
                a.shutdown().await.unwrap();
            })
        };
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, sent, "the stream is not altered");
        drop(stream);
        drop(capture);
        // The writer thread ends when every sender is gone; give it a moment to flush.
        let mut files = Vec::new();
        for _ in 0..100 {
            files = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            let total: u64 = files
                .iter()
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum();
            if total as usize == sent.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(files.len() > 1, "rotated");
        let joined: Vec<u8> = files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect();
        assert_eq!(joined, sent);
    }

    #[tokio::test]
    async fn old_capture_files_are_pruned_to_the_configured_number_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Another PBX's capture and an unrelated file share the directory.
        std::fs::write(dir.path().join("other-20000101T000000-0001.ami"), b"x").unwrap();
        std::fs::write(dir.path().join("rig-notes.txt"), b"x").unwrap();
        let capture = Capture::start(
            CaptureSettings {
                dir: dir.path().to_path_buf(),
                rotate_bytes: 10,
                keep_files: 3,
            },
            "rig",
        )
        .unwrap();
        // Each 10-byte chunk fills a file: the next one starts a new file.
        let chunks: Vec<String> = (0..12).map(|i| format!("chunk-{i:04}")).collect();
        for c in &chunks {
            capture.record(c.as_bytes());
        }
        drop(capture);
        let ours = |dir: &std::path::Path| -> Vec<PathBuf> {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_str().unwrap();
                    n.starts_with("rig-") && n.ends_with(".ami")
                })
                .collect();
            files.sort();
            files
        };
        // The writer thread ends once every sender is gone; wait for its last file.
        let last = chunks.last().unwrap().as_bytes().to_vec();
        for _ in 0..250 {
            let files = ours(dir.path());
            if files
                .last()
                .is_some_and(|f| std::fs::read(f).unwrap() == last)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let kept: Vec<Vec<u8>> = ours(dir.path())
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        let newest: Vec<Vec<u8>> = chunks[9..].iter().map(|c| c.as_bytes().to_vec()).collect();
        assert_eq!(
            kept, newest,
            "the three newest files, the older nine deleted"
        );
        assert!(dir.path().join("other-20000101T000000-0001.ami").exists());
        assert!(dir.path().join("rig-notes.txt").exists());
    }
}
