//! Fan-out of one live stream to many listeners: one AudioSocket stream paced like
//! chan_audiosocket (a 640-byte slin16 frame every 20 ms, its sequence number and send
//! time in the payload), half the listeners chunked WAV over HTTP, half WebSocket, on
//! medcall's own stream server (`media::stream::serve` + `http::streams::router` under
//! `axum::serve`) running on its own runtime threads, so its CPU can be read per thread
//! from `/proc/self/task`. The PBX side is faked: a real Asterisk cannot be told to
//! stamp its frames.
//!
//!     cargo bench --bench stream_fanout -- [LISTENERS] [SECONDS]
//!
//! Two phases of SECONDS each (default 200 listeners, 30 s): all listeners reading;
//! then the same plus one chunked listener that stops reading after the WAV header.
//! For each: frames lost by the listeners that keep up, the delay from the frame's
//! write on the AudioSocket to its arrival at a listener (p50, p99, max), the stream
//! server's CPU (all its threads), and the hub's drop/cut counters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use medcall::media::stream::{self, AudioSocketSettings, StreamHub};
use medcall::metrics::StreamMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const SERVER_THREAD: &str = "stream-srv";
const FRAME: usize = 640;

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: a smoke run then.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let (listeners, seconds) = if smoke {
        (4, 1)
    } else {
        (
            nums.first().copied().unwrap_or(200) as usize,
            nums.get(1).copied().unwrap_or(30),
        )
    };
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stream-clients")
        .enable_all()
        .build()
        .expect("client runtime");
    let metrics = StreamMetrics::default();
    let settings = AudioSocketSettings::default();
    let hub = StreamHub::new(settings.fanout, metrics.clone());
    let cancel = CancellationToken::new();
    let (audiosocket_port, http_port) = server.block_on(async {
        let audiosocket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ports = (
            audiosocket.local_addr().expect("addr").port(),
            http.local_addr().expect("addr").port(),
        );
        tokio::spawn(stream::serve(
            audiosocket,
            settings.clone(),
            hub.clone(),
            cancel.clone(),
        ));
        let router = medcall::http::streams::router(hub.clone());
        let shutdown = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(http, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        ports
    });
    println!(
        "stream_fanout: {listeners} listeners ({} chunked, {} WebSocket), {seconds} s per phase{}",
        listeners - listeners / 2,
        listeners / 2,
        if smoke { " (smoke run)" } else { "" }
    );
    let mut failed = false;
    for stuck in [false, true] {
        let phase = Phase {
            hub: &hub,
            metrics: &metrics,
            audiosocket_port,
            http_port,
            listeners,
            seconds,
            stuck,
        };
        let report = clients.block_on(phase.run());
        report.print(stuck, listeners, seconds);
        if report.frames_sent == 0 || report.lost > 0 || report.short_listeners > 0 {
            failed = true;
        }
    }
    cancel.cancel();
    drop(server);
    if failed {
        eprintln!("stream_fanout: a listener that kept up lost frames or heard nothing");
        std::process::exit(1);
    }
}

struct Phase<'a> {
    hub: &'a StreamHub,
    metrics: &'a StreamMetrics,
    audiosocket_port: u16,
    http_port: u16,
    listeners: usize,
    seconds: u64,
    stuck: bool,
}

/// What one listener saw.
#[derive(Default)]
struct Heard {
    frames: u64,
    /// Sequence numbers skipped.
    lost: u64,
    /// Microseconds from the frame's AudioSocket write to its arrival.
    delays_us: Vec<u64>,
}

impl Heard {
    fn frame(&mut self, payload: &[u8], epoch: Instant, next_seq: &mut u32) {
        let seq = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        let sent_us = u64::from_le_bytes(payload[4..12].try_into().expect("8 bytes"));
        let now_us = epoch.elapsed().as_micros() as u64;
        self.lost += u64::from(seq.saturating_sub(*next_seq));
        *next_seq = seq + 1;
        self.frames += 1;
        self.delays_us.push(now_us.saturating_sub(sent_us));
    }
}

struct Report {
    frames_sent: u32,
    lost: u64,
    /// Listeners that heard fewer frames than were sent after they joined, not counting
    /// ones lost in the middle (the stream ended early for them).
    short_listeners: usize,
    delays_us: Vec<u64>,
    cpu_seconds: f64,
    dropped: u64,
    cut: u64,
}

impl Report {
    fn print(&self, stuck: bool, listeners: usize, seconds: u64) {
        let mut d = self.delays_us.clone();
        d.sort_unstable();
        let pct = |p: f64| -> f64 {
            if d.is_empty() {
                return 0.0;
            }
            let i = ((d.len() as f64 - 1.0) * p).round() as usize;
            d[i] as f64 / 1000.0
        };
        let cpu_pct = 100.0 * self.cpu_seconds / seconds as f64;
        println!(
            "phase {}: frames sent {}, lost by listeners that keep up {}, delay p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
             server CPU {:.2} s ({cpu_pct:.1} % of a core, {:.1} µs per listener-second), \
             hub dropped {} cut {}",
            if stuck {
                "with one stuck listener"
            } else {
                "all reading"
            },
            self.frames_sent,
            self.lost,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            self.cpu_seconds,
            self.cpu_seconds * 1e6 / (listeners as f64 * seconds as f64),
            self.dropped,
            self.cut,
        );
    }
}

/// CPU seconds (user + system) of this process's threads named `SERVER_THREAD`.
fn server_cpu_seconds() -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != SERVER_THREAD {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let field = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(14) + field(15);
    }
    ticks as f64 / ticks_per_second
}

impl Phase<'_> {
    async fn run(&self) -> Report {
        let ticket = self.hub.open();
        let epoch = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..self.listeners {
            let (port, token) = (self.http_port, ticket.token.clone());
            if i % 2 == 0 {
                tasks.push(tokio::spawn(chunked_listener(port, token, epoch)));
            } else {
                tasks.push(tokio::spawn(ws_listener(port, token, epoch)));
            }
        }
        let stuck = if self.stuck {
            Some(stuck_listener(self.http_port, &ticket.token).await)
        } else {
            None
        };
        // Every listener is registered before the first frame.
        let want = self.listeners + usize::from(self.stuck);
        while (self.metrics.listeners.get() as usize) < want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let dropped_before = self.metrics.frames_dropped.get();
        let cut_before = self.metrics.listeners_cut.get();
        let cpu_before = server_cpu_seconds();
        let frames_sent = pbx(self.audiosocket_port, &ticket.uuid, self.seconds, epoch).await;
        let mut report = Report {
            frames_sent,
            lost: 0,
            short_listeners: 0,
            delays_us: Vec::new(),
            cpu_seconds: 0.0,
            dropped: 0,
            cut: 0,
        };
        for task in tasks {
            let heard = task.await.expect("listener task");
            report.lost += heard.lost;
            if heard.frames + heard.lost < u64::from(frames_sent) {
                report.short_listeners += 1;
            }
            report.delays_us.extend(heard.delays_us);
        }
        report.cpu_seconds = server_cpu_seconds() - cpu_before;
        report.dropped = self.metrics.frames_dropped.get() - dropped_before;
        report.cut = self.metrics.listeners_cut.get() - cut_before;
        drop(stuck);
        report
    }
}

/// The fake PBX: the uuid, then a stamped frame every 20 ms for `seconds`, then hangup.
async fn pbx(port: u16, uuid: &str, seconds: u64, epoch: Instant) -> u32 {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut first = vec![0x01, 0, 16];
    first.extend_from_slice(&hex::decode(uuid.replace('-', "")).expect("uuid"));
    socket.write_all(&first).await.expect("uuid frame");
    let frames = (seconds * 50) as u32;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut frame = vec![0u8; 3 + FRAME];
    frame[0] = 0x12;
    frame[1..3].copy_from_slice(&(FRAME as u16).to_be_bytes());
    for seq in 0..frames {
        tick.tick().await;
        frame[3..7].copy_from_slice(&seq.to_le_bytes());
        let now_us = epoch.elapsed().as_micros() as u64;
        frame[7..15].copy_from_slice(&now_us.to_le_bytes());
        socket.write_all(&frame).await.expect("frame");
    }
    socket.write_all(&[0, 0, 0]).await.expect("hangup");
    let _ = socket.read(&mut [0u8; 1]).await;
    frames
}

async fn chunked_listener(port: u16, token: String, epoch: Instant) -> Heard {
    let url = format!("http://127.0.0.1:{port}/streams/{token}");
    let response = reqwest::get(url).await.expect("GET");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut heard = Heard::default();
    let mut pending: Vec<u8> = Vec::with_capacity(2 * FRAME);
    let mut header_left = 44usize;
    let mut next_seq = 0u32;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        let mut bytes = &chunk[..];
        let skip = header_left.min(bytes.len());
        header_left -= skip;
        bytes = &bytes[skip..];
        pending.extend_from_slice(bytes);
        while pending.len() >= FRAME {
            heard.frame(&pending[..FRAME], epoch, &mut next_seq);
            pending.drain(..FRAME);
        }
    }
    heard
}

async fn ws_listener(port: u16, token: String, epoch: Instant) -> Heard {
    let url = format!("ws://127.0.0.1:{port}/streams/{token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket");
    let mut heard = Heard::default();
    let mut next_seq = 0u32;
    while let Some(Ok(message)) = ws.next().await {
        match message {
            tokio_tungstenite::tungstenite::Message::Binary(b) => {
                heard.frame(&b, epoch, &mut next_seq)
            }
            tokio_tungstenite::tungstenite::Message::Close(_) => break,
            _ => {}
        }
    }
    heard
}

/// A chunked listener that reads the response head and then nothing: its socket is
/// kept (a 4 KiB receive buffer, so it and the server's send buffer fill within
/// seconds instead of absorbing the whole phase) until dropped.
async fn stuck_listener(port: u16, token: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut socket = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let request = format!("GET /streams/{token} HTTP/1.1\r\nHost: medcall\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("request");
    let mut head = [0u8; 256];
    let _ = socket.read(&mut head).await;
    socket
}
