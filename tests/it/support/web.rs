//! A file server for `call.audio/play` tests, on raw TCP so the test controls every
//! byte: honest and lying `Content-Length`s, endless bodies, a server that drips one
//! byte a second, redirects. It counts requests per path and the body bytes it
//! managed to write, so a test can tell that medcall stopped reading at its limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a path answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with the bytes and their true `Content-Length`.
    Bytes(Vec<u8>),
    /// 200 announcing `Content-Length: announced`, then `len` bytes of zeros (or
    /// fewer if the client stops reading).
    Zeros { announced: Option<u64>, len: u64 },
    /// 200 with headers, then one byte a second, forever.
    Drip,
    /// 302 to this location.
    Redirect(String),
}

#[derive(Default)]
struct Counts {
    hits: Mutex<HashMap<String, usize>>,
    written: Mutex<HashMap<String, u64>>,
}

pub struct WebServer {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    counts: Arc<Counts>,
    bytes_total: Arc<AtomicU64>,
}

impl WebServer {
    pub async fn start() -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let counts: Arc<Counts> = Arc::default();
        let bytes_total = Arc::new(AtomicU64::new(0));
        let (r, c, b) = (routes.clone(), counts.clone(), bytes_total.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, r.clone(), c.clone(), b.clone()));
            }
        });
        WebServer {
            base,
            routes,
            counts,
            bytes_total,
        }
    }

    /// Serves `reply` at `path` (`/x.mp3`); returns its URL.
    pub fn route(&self, path: &str, reply: Reply) -> String {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
        format!("{}{path}", self.base)
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.counts.hits.lock().unwrap().get(path).unwrap_or(&0)
    }

    /// Body bytes written for `path` so far (what the kernel accepted).
    pub fn written(&self, path: &str) -> u64 {
        *self.counts.written.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn bytes_total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }
}

async fn serve(
    mut sock: TcpStream,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    counts: Arc<Counts>,
    total: Arc<AtomicU64>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    *counts.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = routes.lock().unwrap().get(&path).cloned();
    let count = |n: u64| {
        *counts
            .written
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_default() += n;
        total.fetch_add(n, Ordering::Relaxed);
    };
    match reply {
        None => {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
        Some(Reply::Bytes(body)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            if sock.write_all(head.as_bytes()).await.is_ok() && sock.write_all(&body).await.is_ok()
            {
                count(body.len() as u64);
            }
        }
        Some(Reply::Zeros { announced, len }) => {
            let length = announced
                .map(|n| format!("content-length: {n}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\n{length}connection: close\r\n\r\n"
            );
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // An MP3-looking start (ID3), so only the size can refuse it.
            let mut chunk = vec![0u8; 64 * 1024];
            chunk[..3].copy_from_slice(b"ID3");
            let mut sent = 0u64;
            while sent < len {
                let n = (len - sent).min(chunk.len() as u64) as usize;
                if sock.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                chunk[..3].copy_from_slice(&[0, 0, 0]);
                sent += n as u64;
                count(n as u64);
            }
        }
        Some(Reply::Drip) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\ncontent-length: 100000\r\nconnection: close\r\n\r\nI";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if sock.write_all(b"D").await.is_err() {
                    return;
                }
                count(1);
            }
        }
        Some(Reply::Redirect(to)) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = sock.write_all(head.as_bytes()).await;
        }
    }
    let _ = sock.shutdown().await;
}

/// A fixture of `fixtures/audio/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/audio")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
