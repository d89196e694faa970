//! `agi_load`: a FastAGI load tool playing Asterisk's side, run back to back against
//! a bare Tokio loop and against medcall's AGI server wired as the daemon wires it,
//! reporting sessions/s and latency percentiles of both and their ratio.
//!
//! Each session: connect, send a full environment (as Asterisk 22 does), answer the
//! three commands the server sends, wait for the server to close. Latency is connect
//! to close. The servers run in child processes pinned to core 0, this tool on core 1
//! (`taskset`); all use a single-threaded runtime.
//!
//! - `bare` (`--serve-bare PORT`): an accept loop that reads the environment up to
//!   the empty line, writes the same three command lines, reads one reply line after
//!   each, and closes. Nothing else: the yardstick.
//! - `medcall` (`--serve PORT`): `medcall::agi::Server` with the production routes
//!   (`routes::router`) plus a few bench routes, the daemon's `SessionLog` hook (every
//!   session's start and end linked to its leg by `agi_uniqueid` in a real `Store`,
//!   SQLite in a temporary directory) and the daemon's tracing subscriber at `info`.
//!
//! ```text
//! cargo bench --bench agi_load      # per level: bare, then medcall; 1, 64, 512, then 5 000/s offered
//! AGI_LOAD_SECONDS=10 AGI_LOAD_CONCURRENCY=1,64,512 AGI_LOAD_RATE=5000 cargo bench --bench agi_load
//! AGI_LOAD_SERVER=medcall cargo bench --bench agi_load   # bare | medcall | both (default)
//! ```
//!
//! `AGI_LOAD_NO_PIN=1` runs without `taskset`; `AGI_LOAD_NO_SPIN=1` lets the load tool
//! sleep in epoll at concurrency 1 instead of spinning on its own core.

#![allow(clippy::print_stdout, clippy::print_stderr)]

// The daemon's allocator (`src/main.rs`), so medcall is measured as it runs; the bare
// loop, in the same binary, gets it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use medcall::agi::{self, HandlerFuture, Request, Server, ServerSettings, Session};
use medcall::config::{LogConfig, LogFormat};
use medcall::routes::{self, PbxAddresses, session_log::SessionLog};
use medcall::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|p| p.parse::<u16>().with_context(|| format!("{flag} PORT")))
    };
    if let Some(port) = port_after("--serve") {
        return serve(port?);
    }
    if let Some(port) = port_after("--serve-bare") {
        return serve_bare(port?);
    }
    if let Some(i) = args.iter().position(|a| a == "--drive") {
        // `--drive PORT SESSIONS CONCURRENCY`: a fixed number of sessions against a
        // server started by hand (under callgrind, strace, perf…).
        let arg = |k: usize| -> anyhow::Result<usize> {
            args.get(i + k)
                .context("--drive PORT SESSIONS CONCURRENCY")?
                .parse()
                .context("--drive PORT SESSIONS CONCURRENCY")
        };
        return drive(u16::try_from(arg(1)?)?, arg(2)?, arg(3)?);
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

/// medcall's server as `daemon::run` builds it: production routes, the session log
/// hook writing to a real store, the tracing subscriber. A line on stdin asks for
/// `dropped N` (session log entries dropped so far) on stdout; end of stdin stops it.
fn serve(port: u16) -> anyhow::Result<()> {
    medcall::telemetry::init(&LogConfig {
        format: LogFormat::Text,
        level: "info".into(),
    });
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("medcall.db"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let pbxs = Arc::new(PbxAddresses::from_entries(vec![(
            "bench".into(),
            vec![IpAddr::from([127, 0, 0, 1])],
        )]));
        let router = routes::router(Arc::clone(&pbxs), store.clone())?
            .route("calls/{id}", nothing)?
            .route("calls/{id}/hold", nothing)?
            .route("queues/{queue}/join", nothing)?
            .route("bench/{id}/session", three_commands)?;
        let shutdown = CancellationToken::new();
        let (log, writer) = SessionLog::new(store, pbxs, shutdown.child_token());
        let writer = tokio::spawn(writer);
        let stats = Arc::clone(&log);
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() {
                    break;
                }
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "dropped {}", stats.dropped());
                let _ = out.flush();
            }
            stop.cancel();
        });
        let settings = ServerSettings {
            max_sessions: 4096,
            ..ServerSettings::default()
        };
        let listener = agi::bind(SocketAddr::from(([127, 0, 0, 1], port)), 4096)?;
        Server::new(router, settings)
            .with_hook(log)
            .serve(listener, shutdown)
            .await;
        let _ = writer.await;
        anyhow::Ok(())
    })?;
    drop(dir);
    Ok(())
}

// ---- the bare baseline: the same bytes on the wire, nothing else ----

/// The three command lines `three_commands` writes for the bench environment.
fn bare_commands() -> anyhow::Result<[&'static [u8]; 3]> {
    let leak =
        |c: agi::Command| -> &'static [u8] { Box::leak(c.as_bytes().to_vec().into_boxed_slice()) };
    Ok([
        leak(agi::Command::get_variable("CALLERID(num)")?),
        leak(agi::Command::set_variable("MEDCALL_STATUS", "OK")?),
        leak(agi::Command::verbose("4711", 3)?),
    ])
}

fn serve_bare(port: u16) -> anyhow::Result<()> {
    let commands = bare_commands()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = agi::bind(SocketAddr::from(([127, 0, 0, 1], port)), 4096)?;
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(bare_session(stream, commands));
            }
        }
    })
}

/// Environment up to the empty line, then command / reply line three times, close.
async fn bare_session(mut stream: TcpStream, commands: [&'static [u8]; 3]) {
    let mut buf = [0u8; 2048];
    let mut len = 0;
    // The end of the environment: the first "\n\n".
    let mut start = loop {
        let Some(free) = buf.get_mut(len..) else {
            return;
        };
        match stream.read(free).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        if let Some(end) = buf
            .get(..len)
            .and_then(|b| b.windows(2).position(|w| w == b"\n\n"))
        {
            break end + 2;
        }
    };
    for command in commands {
        if stream.write_all(command).await.is_err() {
            return;
        }
        loop {
            let pending = buf.get(start..len).unwrap_or_default();
            if let Some(end) = pending.iter().position(|&b| b == b'\n') {
                start += end + 1;
                break;
            }
            if start == len {
                (start, len) = (0, 0);
            }
            let Some(free) = buf.get_mut(len..) else {
                return;
            };
            match stream.read(free).await {
                Ok(0) | Err(_) => return,
                Ok(n) => len += n,
            }
        }
    }
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

/// Nanoseconds a process has run on a CPU, all its threads (`/proc/<pid>/task/*/
/// schedstat`, first field; medcall's store thread counts): what each side costs
/// per session, whatever else the machine is doing.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

struct Figures {
    /// CPU time of the server and of this tool over the run.
    server_cpu_ns: u64,
    load_cpu_ns: u64,
    sessions: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// Session log entries the server dropped during the run (medcall only).
    dropped: Option<u64>,
}

/// One measured run, summarised.
#[derive(Clone, Copy)]
struct Summary {
    sessions: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    errors: usize,
    server_us: f64,
    server_share: f64,
    load_us: f64,
    load_share: f64,
}

impl Figures {
    fn summary(&mut self) -> Summary {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 - 1.0) * p).round() as usize;
            self.latencies_us.get(i).copied().unwrap_or_default() as f64 / 1000.0
        };
        let per_session = |ns: u64| ns as f64 / 1000.0 / self.sessions.max(1) as f64;
        let wall = self.elapsed.as_secs_f64();
        Summary {
            sessions: self.sessions,
            rate: self.sessions as f64 / wall,
            p50: pct(0.50),
            p99: pct(0.99),
            max: self.latencies_us.last().copied().unwrap_or_default() as f64 / 1000.0,
            errors: self.errors,
            server_us: per_session(self.server_cpu_ns),
            server_share: self.server_cpu_ns as f64 / 1e9 / wall * 100.0,
            load_us: per_session(self.load_cpu_ns),
            load_share: self.load_cpu_ns as f64 / 1e9 / wall * 100.0,
        }
    }
}

const HEADER: &str = "| load | sessions | sessions/s | p50 ms | p99 ms | max ms | errors | server CPU µs/session (core share) | load tool CPU µs/session (core share) |\n|---|---|---|---|---|---|---|---|---|";

impl Summary {
    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.1} ({:.0}%) | {:.1} ({:.0}%) |",
            self.sessions,
            self.rate,
            self.p50,
            self.p99,
            self.max,
            self.errors,
            self.server_us,
            self.server_share,
            self.load_us,
            self.load_share,
        )
    }
}

/// A server under test: a child process, pinned to core 0 unless told otherwise.
struct ServerProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// medcall only: ask for the session log's drop count.
    stats: Option<(ChildStdin, BufReader<ChildStdout>)>,
}

impl ServerProcess {
    fn start(name: &'static str, flag: &str, pin: bool) -> anyhow::Result<ServerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let mut command = if pin {
            let mut c = Command::new("taskset");
            c.arg("-c").arg("0").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let mut child = command
            .arg(flag)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {name} server"))?;
        let stats = match (name, child.stdin.take(), child.stdout.take()) {
            ("medcall", Some(stdin), Some(stdout)) => Some((stdin, BufReader::new(stdout))),
            _ => None,
        };
        Ok(ServerProcess {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stats,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn dropped(&mut self) -> Option<u64> {
        let (stdin, stdout) = self.stats.as_mut()?;
        stdin.write_all(b"\n").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        stdout.read_line(&mut line).ok()?;
        line.trim().strip_prefix("dropped ")?.parse().ok()
    }

    async fn ready(&self) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).await.is_err() {
            if Instant::now() > until {
                bail!("the {} AGI server did not start", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// medcall stops (and removes its store) at the end of its stdin; bare is killed.
    fn stop(mut self) {
        drop(self.stats.take());
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Load {
    Closed(usize),
    Offered(u64),
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Closed(c) => format!("concurrency {c}"),
            Load::Offered(r) => format!("offered {r}/s"),
        }
    }
}

async fn measure(
    server: &mut ServerProcess,
    load: Load,
    seconds: u64,
    spin_at_one: bool,
) -> Figures {
    let me = std::process::id();
    // With one session at a time this tool would sleep in epoll between every reply
    // and pay the VM's vCPU wake-up on each of the five round trips; a spinning task
    // keeps its own core awake (only the load tool's core — the server still sleeps
    // and wakes as in production).
    let spin = (matches!(load, Load::Closed(1)) && spin_at_one).then(|| {
        tokio::spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        })
    });
    let dropped0 = server.dropped();
    let (s0, l0) = (cpu_ns(server.pid()), cpu_ns(me));
    let mut f = match load {
        Load::Closed(c) => closed_loop(server.addr, c, seconds).await,
        Load::Offered(r) => open_loop_measured(server.addr, r, seconds).await,
    };
    f.server_cpu_ns = cpu_ns(server.pid()).saturating_sub(s0);
    f.load_cpu_ns = cpu_ns(me).saturating_sub(l0);
    if let Some(spinner) = spin {
        spinner.abort();
    }
    f.dropped = dropped0.and_then(|d0| Some(server.dropped()?.saturating_sub(d0)));
    f
}

fn run_suite() -> anyhow::Result<()> {
    let seconds: u64 = env_or("AGI_LOAD_SECONDS", 5);
    let rate: u64 = env_or("AGI_LOAD_RATE", 5000);
    let mut loads: Vec<Load> = std::env::var("AGI_LOAD_CONCURRENCY")
        .unwrap_or_else(|_| "1,64,512".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .map(Load::Closed)
        .collect();
    if rate > 0 {
        loads.push(Load::Offered(rate));
    }
    let which = std::env::var("AGI_LOAD_SERVER").unwrap_or_else(|_| "both".into());
    let kinds: &[(&'static str, &str)] = match which.as_str() {
        "bare" => &[("bare", "--serve-bare")],
        "medcall" => &[("medcall", "--serve")],
        "both" => &[("bare", "--serve-bare"), ("medcall", "--serve")],
        other => bail!("AGI_LOAD_SERVER={other}: expected bare, medcall or both"),
    };
    let pin = std::env::var("AGI_LOAD_NO_PIN").is_err();
    let spin_at_one = std::env::var("AGI_LOAD_NO_SPIN").is_err();
    let mut servers = kinds
        .iter()
        .map(|&(name, flag)| ServerProcess::start(name, flag, pin))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if pin {
        let status = Command::new("taskset")
            .args(["-p", "-c", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            eprintln!("agi_load: could not pin the load tool to core 1");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        for server in &servers {
            server.ready().await?;
            // Warm up: sockets, allocator, branch predictors, the store's first pages.
            let _ = closed_loop(server.addr, 16, 1).await;
        }
        // Back to back at each level, so both see the same machine.
        let mut results: Vec<Vec<Summary>> = vec![Vec::new(); servers.len()];
        for &load in &loads {
            for (server, out) in servers.iter_mut().zip(results.iter_mut()) {
                let mut f = measure(server, load, seconds, spin_at_one).await;
                let summary = f.summary();
                eprintln!(
                    "agi_load: {} {}{}",
                    server.name,
                    summary.row(&load.label()),
                    f.dropped
                        .map(|d| format!(" session log entries dropped: {d}"))
                        .unwrap_or_default()
                );
                out.push(summary);
            }
        }
        anyhow::Ok(results)
    });
    let names: Vec<&'static str> = servers.iter().map(|s| s.name).collect();
    for server in servers.drain(..) {
        server.stop();
    }
    let results = result?;
    for (name, summaries) in names.iter().zip(&results) {
        println!("\n{name}\n\n{HEADER}");
        for (load, summary) in loads.iter().zip(summaries) {
            println!("{}", summary.row(&load.label()));
        }
    }
    if let [bare, medcall] = results.as_slice() {
        println!(
            "\nmedcall ÷ bare\n\n| load | sessions/s | p50 | p99 | max | server CPU µs/session |\n|---|---|---|---|---|---|"
        );
        for ((load, b), m) in loads.iter().zip(bare).zip(medcall) {
            let ratio = |m: f64, b: f64| if b > 0.0 { m / b } else { 0.0 };
            println!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                load.label(),
                ratio(m.rate, b.rate),
                ratio(m.p50, b.p50),
                ratio(m.p99, b.p99),
                ratio(m.max, b.max),
                ratio(m.server_us, b.server_us),
            );
        }
    }
    Ok(())
}

fn drive(port: u16, sessions: usize, concurrency: usize) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let env: &'static [u8] = Box::leak(environment().into_boxed_slice());
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(sessions));
    let start = Instant::now();
    let errors = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let left = Arc::clone(&left);
                workers.spawn(async move {
                    let mut buf = BytesMut::with_capacity(4096);
                    let mut errors = 0usize;
                    while left
                        .fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        )
                        .is_ok()
                    {
                        if one_session(addr, env, &mut buf).await.is_err() {
                            errors += 1;
                        }
                    }
                    errors
                });
            }
            let mut errors = 0;
            while let Some(Ok(e)) = workers.join_next().await {
                errors += e;
            }
            errors
        });
    println!(
        "{sessions} sessions, {errors} errors, {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
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
        dropped: None,
    };
    while let Some(Ok((latencies, errors))) = workers.join_next().await {
        figures.latencies_us.extend(latencies);
        figures.errors += errors;
    }
    figures.elapsed = start.elapsed();
    figures.sessions = figures.latencies_us.len();
    figures
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
        dropped: None,
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
