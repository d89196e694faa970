//! `agi_load`: a FastAGI load tool playing Asterisk's side against medcall's AGI
//! server with real routing, and reporting sessions/s and latency percentiles.
//!
//! Each session: connect, send a full environment (as Asterisk 22 does), answer the
//! three commands the route sends, wait for the server to close. Latency is connect
//! to close. The server runs in a child process pinned to core 0, this tool on core 1
//! (`taskset`); both use a single-threaded runtime.
//!
//! ```text
//! cargo bench --bench agi_load                # concurrency 1, 64, 512, then 5 000/s offered
//! AGI_LOAD_SECONDS=10 AGI_LOAD_CONCURRENCY=1,64,512 AGI_LOAD_RATE=5000 cargo bench --bench agi_load
//! ```
//!
//! `AGI_LOAD_NO_PIN=1` runs without `taskset`; `AGI_LOAD_NO_SPIN=1` lets the load tool
//! sleep in epoll at concurrency 1 instead of spinning on its own core.
//!
//! It owns nothing of the daemon: it uses the public `medcall::agi` API only.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use medcall::agi::{self, HandlerFuture, Request, Router, Server, ServerSettings, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = args
        .iter()
        .position(|a| a == "--serve")
        .and_then(|i| args.get(i + 1))
    {
        return serve(port.parse().context("--serve PORT")?);
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench` (and
        // `--list` asks for names): the load suite runs only under `cargo bench`.
        return Ok(());
    }
    run_suite()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- the server side: medcall's AGI server with a handful of routes ----

fn three_commands<'s>(request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
    Box::pin(async move {
        let caller = session.get_variable("CALLERID(num)").await?;
        let id = request.param("id").unwrap_or("none");
        let status = if caller.is_some() && request.query("mode") == Some("fast") {
            "OK"
        } else {
            "ODD"
        };
        session.set_variable("MEDCALL_STATUS", status).await?;
        session.verbose(id, 3).await?;
        Ok(())
    })
}

fn nothing<'s>(_: Request, _: &'s mut Session) -> HandlerFuture<'s> {
    Box::pin(async { Ok(()) })
}

fn serve(port: u16) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let router = Router::new()
            .route("diagnostics", nothing)?
            .route("calls/{id}", nothing)?
            .route("calls/{id}/hold", nothing)?
            .route("queues/{queue}/join", nothing)?
            .route("bench/{id}/session", three_commands)?;
        let settings = ServerSettings {
            max_sessions: 4096,
            ..ServerSettings::default()
        };
        let listener = agi::bind(SocketAddr::from(([127, 0, 0, 1], port)), 4096)?;
        Server::new(router, settings)
            .serve(listener, CancellationToken::new())
            .await;
        anyhow::Ok(())
    })
}

// ---- the load side: plays Asterisk ----

fn environment() -> Vec<u8> {
    let mut env = String::new();
    for (k, v) in [
        ("agi_network", "yes"),
        ("agi_network_script", "bench/4711/session?mode=fast"),
        (
            "agi_request",
            "agi://127.0.0.1:4573/bench/4711/session?mode=fast",
        ),
        ("agi_channel", "PJSIP/reception-00000a1f"),
        ("agi_language", "en"),
        ("agi_type", "PJSIP"),
        ("agi_uniqueid", "1700000000.4711"),
        ("agi_version", "22.10.1"),
        ("agi_callerid", "100"),
        ("agi_calleridname", "Reception"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "200"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "clinic-incoming"),
        ("agi_extension", "200"),
        ("agi_priority", "2"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "139871234567890"),
        ("agi_arg_1", "first argument"),
        ("agi_arg_2", "second"),
    ] {
        env.push_str(k);
        env.push_str(": ");
        env.push_str(v);
        env.push('\n');
    }
    env.push('\n');
    env.into_bytes()
}

const REPLIES: [&[u8]; 3] = [
    b"200 result=1 (100)\n",
    b"200 result=1\n",
    b"200 result=1\n",
];

async fn one_session(addr: SocketAddr, env: &[u8], buf: &mut BytesMut) -> anyhow::Result<()> {
    buf.clear();
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(env).await?;
    for reply in REPLIES {
        loop {
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                buf.advance(end + 1);
                break;
            }
            if stream.read_buf(buf).await? == 0 {
                bail!("server closed before the third command");
            }
        }
        stream.write_all(reply).await?;
    }
    while stream.read_buf(buf).await? != 0 {
        if buf.len() > 4096 {
            bail!("server sent more than three commands");
        }
    }
    Ok(())
}

/// Nanoseconds a process has run on a CPU (`/proc/<pid>/schedstat`, first field):
/// what each side costs per session, whatever else the machine is doing.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

struct Figures {
    /// CPU time of the server and of this tool over the run.
    server_cpu_ns: u64,
    load_cpu_ns: u64,
    sessions: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Figures {
    fn row(&mut self, label: &str) -> String {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            let n = self.latencies_us.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 - 1.0) * p).round() as usize;
            self.latencies_us.get(i).copied().unwrap_or_default() as f64 / 1000.0
        };
        let per_session = |ns: u64| ns as f64 / 1000.0 / self.sessions.max(1) as f64;
        let wall = self.elapsed.as_secs_f64();
        format!(
            "| {label} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.1} ({:.0}%) | {:.1} ({:.0}%) |",
            self.sessions,
            self.sessions as f64 / wall,
            pct(0.50),
            pct(0.99),
            self.latencies_us.last().copied().unwrap_or_default() as f64 / 1000.0,
            self.errors,
            per_session(self.server_cpu_ns),
            self.server_cpu_ns as f64 / 1e9 / wall * 100.0,
            per_session(self.load_cpu_ns),
            self.load_cpu_ns as f64 / 1e9 / wall * 100.0,
        )
    }
}

async fn closed_loop(addr: SocketAddr, concurrency: usize, seconds: u64) -> Figures {
    let env: &'static [u8] = Box::leak(environment().into_boxed_slice());
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(65536);
            let mut errors = 0usize;
            let mut buf = BytesMut::with_capacity(4096);
            while Instant::now() < until {
                let t = Instant::now();
                match one_session(addr, env, &mut buf).await {
                    Ok(()) => latencies.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut figures = Figures {
        server_cpu_ns: 0,
        load_cpu_ns: 0,
        sessions: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    while let Some(Ok((latencies, errors))) = workers.join_next().await {
        figures.latencies_us.extend(latencies);
        figures.errors += errors;
    }
    figures.elapsed = start.elapsed();
    figures.sessions = figures.latencies_us.len();
    figures
}

fn run_suite() -> anyhow::Result<()> {
    let seconds: u64 = env_or("AGI_LOAD_SECONDS", 5);
    let rate: u64 = env_or("AGI_LOAD_RATE", 5000);
    let levels: Vec<usize> = std::env::var("AGI_LOAD_CONCURRENCY")
        .unwrap_or_else(|_| "1,64,512".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let pin = std::env::var("AGI_LOAD_NO_PIN").is_err();
    let spin_at_one = std::env::var("AGI_LOAD_NO_SPIN").is_err();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let mut server: Child = if pin {
        Command::new("taskset")
            .arg("-c")
            .arg("0")
            .arg(&exe)
            .arg("--serve")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .spawn()
            .context("starting the server under taskset")?
    } else {
        Command::new(&exe)
            .arg("--serve")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .spawn()?
    };
    if pin {
        let status = Command::new("taskset")
            .args(["-p", "-c", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            eprintln!("agi_load: could not pin the load tool to core 1");
        }
    }
    let server_pid = server.id();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let ready = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(addr).await.is_err() {
                if Instant::now() > ready {
                    bail!("the AGI server did not start");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Warm up: sockets, allocator, branch predictors.
            let _ = closed_loop(addr, 16, 1).await;
            println!(
                "| load | sessions | sessions/s | p50 ms | p99 ms | max ms | errors | server CPU µs/session (core share) | load tool CPU µs/session (core share) |\n|---|---|---|---|---|---|---|---|---|"
            );
            let me = std::process::id();
            let measured = |server0: u64, load0: u64, f: &mut Figures| {
                f.server_cpu_ns = cpu_ns(server_pid).saturating_sub(server0);
                f.load_cpu_ns = cpu_ns(me).saturating_sub(load0);
            };
            for &c in &levels {
                // With one session at a time this tool would sleep in epoll between
                // every reply and pay the VM's vCPU wake-up on each of the five round
                // trips; a spinning task keeps its own core awake (only the load tool's
                // core — the server still sleeps and wakes as in production).
                let spin = (c == 1 && spin_at_one).then(|| {
                    tokio::spawn(async {
                        loop {
                            tokio::task::yield_now().await;
                        }
                    })
                });
                let (s0, l0) = (cpu_ns(server_pid), cpu_ns(me));
                let mut f = closed_loop(addr, c, seconds).await;
                if let Some(spinner) = spin {
                    spinner.abort();
                }
                measured(s0, l0, &mut f);
                println!("{}", f.row(&format!("concurrency {c}")));
            }
            if rate > 0 {
                let (s0, l0) = (cpu_ns(server_pid), cpu_ns(me));
                let mut f = open_loop_measured(addr, rate, seconds).await;
                measured(s0, l0, &mut f);
                println!("{}", f.row(&format!("offered {rate}/s")));
            }
            anyhow::Ok(())
        });
    let _ = server.kill();
    let _ = server.wait();
    result
}

async fn open_loop_measured(addr: SocketAddr, rate: u64, seconds: u64) -> Figures {
    let env: &'static [u8] = Box::leak(environment().into_boxed_slice());
    let start = Instant::now();
    let total = rate * seconds;
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut sessions = tokio::task::JoinSet::new();
    let mut figures = Figures {
        server_cpu_ns: 0,
        load_cpu_ns: 0,
        sessions: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
    };
    let take =
        |done: Result<anyhow::Result<u64>, tokio::task::JoinError>, f: &mut Figures| match done {
            Ok(Ok(us)) => f.latencies_us.push(us),
            _ => f.errors += 1,
        };
    for i in 0..total {
        let due = start + period * u32::try_from(i).unwrap_or(u32::MAX);
        if due > Instant::now() + Duration::from_micros(500) {
            tokio::time::sleep_until(due.into()).await;
        }
        sessions.spawn(async move {
            let t = Instant::now();
            let mut buf = BytesMut::with_capacity(1024);
            one_session(addr, env, &mut buf)
                .await
                .map(|()| t.elapsed().as_micros() as u64)
        });
        while let Some(done) = sessions.try_join_next() {
            take(done, &mut figures);
        }
    }
    while let Some(done) = sessions.join_next().await {
        take(done, &mut figures);
    }
    figures.elapsed = start.elapsed();
    figures.sessions = figures.latencies_us.len();
    figures
}
