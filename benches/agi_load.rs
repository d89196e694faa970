//! `agi_load`: a FastAGI load tool playing Asterisk's side, run against a bare Tokio
//! loop and against medcall's AGI server wired as the daemon wires it, alternately,
//! reporting sessions/s and latency percentiles of both and their ratio.
//!
//! Each session: connect, send a full environment (as Asterisk 22 does), answer the
//! three commands the server sends, wait for the server to close. Latency is connect
//! to close (in the open loop, from when the session was due). The servers run in
//! child processes pinned to core 0, this tool on core 1 (`taskset`); all use a
//! single-threaded runtime.
//!
//! - `bare` (`--serve-bare PORT`): an accept loop that reads the environment up to
//!   the empty line, writes the same three command lines, reads one reply line after
//!   each, and closes. Nothing else: the yardstick.
//! - `medcall` (`--serve PORT`): `medcall::agi::Server` with the production routes
//!   (`routes::router`) plus a few bench routes, the daemon's `SessionLog` hook (every
//!   session's start and end linked to its leg by `agi_uniqueid` in a real `Store`,
//!   SQLite in a temporary directory) and the daemon's tracing subscriber at `info`.
//!
//! The machine it was written for is a shared VM whose speed varies minute to minute,
//! so each level runs in rounds, the servers alternating ABBA-style (round 1 bare then
//! medcall, round 2 medcall then bare, …) so drift cancels; the tables pool all rounds
//! of a server, and the ratio table also shows each round's rate ratio (the spread).
//! The server's run-queue wait and core 0's steal time say whether a slow run was the
//! host's doing.
//!
//! ```text
//! cargo bench --bench agi_load      # 3 rounds of 3 s per level; 1, 64, 512, then 5 000/s offered
//! AGI_LOAD_SECONDS=10 AGI_LOAD_ROUNDS=4 AGI_LOAD_CONCURRENCY=1,64,512 AGI_LOAD_RATE=5000 cargo bench --bench agi_load
//! AGI_LOAD_SERVER=medcall cargo bench --bench agi_load   # bare | medcall | both (default)
//! ```
//!
//! `AGI_LOAD_NO_PIN=1` runs without `taskset`; `AGI_LOAD_NO_SPIN=1` lets the load tool
//! sleep in epoll at concurrency 1 instead of spinning on its own core;
//! `AGI_LOAD_PACING=tick` paces the open loop on Tokio's millisecond timer (sessions in
//! bursts, latency from the task's start) as the first version did, instead of evenly
//! with latency from the due time (`precise`, the default).

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
    if args.iter().any(|a| a == "--list") {
        // A test runner asking for names: there are none.
        return Ok(());
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench binaries without `--bench`.
        return smoke();
    }
    run_suite(&Settings::from_env()?).map(drop)
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
            medcall::pbx::PbxName::new("bench")?,
            vec![IpAddr::from([127, 0, 0, 1])],
        )]));
        let router = routes::router(Arc::clone(&pbxs), store.clone(), None, None)?
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
        let server = Server::new(router, settings);
        // Diagnostics only: without the session log (no store writes), to see what
        // the timeline costs. Not how the daemon runs.
        let server = if std::env::var("AGI_LOAD_NO_SESSION_LOG").is_ok() {
            server
        } else {
            server.with_hook(log)
        };
        server.serve(listener, shutdown).await;
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

/// The environment every session sends, but for its `agi_uniqueid`: each session
/// writes its own (a counter in the last digits, as Asterisk's `epoch.sequence`
/// grows), so the session log's `uniqueid` index sees as many keys as sessions.
#[derive(Clone, Copy)]
struct Environment {
    template: &'static [u8],
    /// Where the uniqueid's counter digits are in `template`.
    counter_at: usize,
}

/// Digits of the uniqueid's counter.
const COUNTER_DIGITS: usize = 9;

impl Environment {
    fn new() -> Environment {
        static TEMPLATE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let template: &'static [u8] = TEMPLATE.get_or_init(environment);
        let marker = b"agi_uniqueid: 1700000000.";
        let counter_at = template
            .windows(marker.len())
            .position(|w| w == marker)
            .map_or(0, |i| i + marker.len());
        Environment {
            template,
            counter_at,
        }
    }

    /// The next session's environment, into `out`.
    fn render(self, out: &mut Vec<u8>) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        out.clear();
        out.extend_from_slice(self.template);
        let digits = format!("{:0width$}", n % 1_000_000_000, width = COUNTER_DIGITS);
        if let Some(slot) = out.get_mut(self.counter_at..self.counter_at + COUNTER_DIGITS) {
            slot.copy_from_slice(digits.as_bytes());
        }
    }
}

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
        ("agi_uniqueid", "1700000000.000000000"),
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

async fn one_session(addr: SocketAddr, env: Environment, buf: &mut BytesMut) -> anyhow::Result<()> {
    buf.clear();
    let mut text = Vec::with_capacity(env.template.len());
    env.render(&mut text);
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&text).await?;
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

// ---- what a run costs, read from /proc ----

/// A process's scheduler accounting, summed over its threads.
#[derive(Clone, Copy, Default)]
struct SchedStat {
    /// Nanoseconds on a CPU.
    cpu_ns: u64,
    /// Nanoseconds runnable but waiting in a run queue for a CPU.
    wait_ns: u64,
}

/// `/proc/<pid>/task/*/schedstat` (on-CPU ns, run-queue wait ns, timeslices), all
/// threads (medcall's store thread counts): what each side costs per session whatever
/// else the machine is doing, and how long it was kept from running.
fn schedstat(pid: u32) -> SchedStat {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return SchedStat::default();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .fold(SchedStat::default(), |sum, line| {
            let mut fields = line
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0));
            SchedStat {
                cpu_ns: sum.cpu_ns + fields.next().unwrap_or(0),
                wait_ns: sum.wait_ns + fields.next().unwrap_or(0),
            }
        })
}

/// `/proc/stat` counts in USER_HZ, which Linux exports as 100 on x86 and arm64
/// whatever the kernel's own tick rate.
const USER_HZ: u64 = 100;

/// Core 0's steal time in USER_HZ ticks (8th value of the `cpu0` line of `/proc/stat`):
/// time the hypervisor gave the servers' vCPU to another guest while it wanted to run.
fn steal_ticks_core0() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .find(|l| l.starts_with("cpu0 "))?
                .split_whitespace()
                .nth(8)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The counters a run is charged with, read before and after it.
#[derive(Clone, Copy)]
struct Counters {
    server: SchedStat,
    load_cpu_ns: u64,
    steal_ticks: u64,
}

impl Counters {
    fn read(server_pid: u32) -> Counters {
        Counters {
            server: schedstat(server_pid),
            load_cpu_ns: schedstat(std::process::id()).cpu_ns,
            steal_ticks: steal_ticks_core0(),
        }
    }

    /// Charges `figures` with what was spent between `before` and now.
    fn charge(before: Counters, server_pid: u32, figures: &mut Figures) {
        let after = Counters::read(server_pid);
        figures.server_cpu_ns = after.server.cpu_ns.saturating_sub(before.server.cpu_ns);
        figures.server_wait_ns = after.server.wait_ns.saturating_sub(before.server.wait_ns);
        figures.load_cpu_ns = after.load_cpu_ns.saturating_sub(before.load_cpu_ns);
        figures.steal_ticks = after.steal_ticks.saturating_sub(before.steal_ticks);
    }
}

/// One run's raw figures, or the pool of several runs' (`Figures::pool`).
#[derive(Default)]
struct Figures {
    /// CPU time of the server and of this tool over the run.
    server_cpu_ns: u64,
    load_cpu_ns: u64,
    /// Time the server's threads were runnable but not running: a slow run with a
    /// large wait was the host's doing, not the server's.
    server_wait_ns: u64,
    /// Core 0's steal ticks over the run.
    steal_ticks: u64,
    sessions: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// Session log entries the server dropped during the run (medcall only).
    dropped: Option<u64>,
}

/// One measured run (or a pool of runs), summarised.
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
    server_wait_us: f64,
    steal_ms: f64,
    load_us: f64,
    load_share: f64,
}

impl Figures {
    /// All rounds of one server at one level as if they were one run: rate over the
    /// summed wall time, percentiles over every latency, CPU over the summed totals.
    fn pool(runs: Vec<Figures>) -> Figures {
        let mut all = Figures::default();
        for run in runs {
            all.server_cpu_ns += run.server_cpu_ns;
            all.load_cpu_ns += run.load_cpu_ns;
            all.server_wait_ns += run.server_wait_ns;
            all.steal_ticks += run.steal_ticks;
            all.sessions += run.sessions;
            all.errors += run.errors;
            all.elapsed += run.elapsed;
            all.latencies_us.extend(run.latencies_us);
            all.dropped = match (all.dropped, run.dropped) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
        }
        all
    }

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
            server_wait_us: per_session(self.server_wait_ns),
            steal_ms: (self.steal_ticks * 1000 / USER_HZ) as f64,
            load_us: per_session(self.load_cpu_ns),
            load_share: self.load_cpu_ns as f64 / 1e9 / wall * 100.0,
        }
    }
}

const HEADER: &str = "| load | sessions | sessions/s | p50 ms | p99 ms | max ms | errors | server CPU µs/session (core share) | server run-queue wait µs/session | core 0 steal ms | load tool CPU µs/session (core share) |\n|---|---|---|---|---|---|---|---|---|---|---|";

impl Summary {
    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.1} ({:.0}%) | {:.1} | {:.0} | {:.1} ({:.0}%) |",
            self.sessions,
            self.rate,
            self.p50,
            self.p99,
            self.max,
            self.errors,
            self.server_us,
            self.server_share,
            self.server_wait_us,
            self.steal_ms,
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
        // Only medcall reads its stdin; the bare loop would be waited for in vain.
        if self.stats.take().is_some() {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
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

/// How the open loop starts its sessions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pacing {
    /// Evenly, each at its due time to within microseconds; latency from the due time.
    Precise,
    /// The first version's: on Tokio's millisecond timer, so in bursts at each tick;
    /// latency from when the session's task starts. Kept to compare the two.
    Tick,
}

/// The suite's knobs, from the environment.
struct Settings {
    seconds: u64,
    /// The unmeasured run before the levels, and before each level.
    warmup_seconds: u64,
    rounds: usize,
    loads: Vec<Load>,
    kinds: &'static [(&'static str, &'static str)],
    pin: bool,
    spin_at_one: bool,
    pacing: Pacing,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
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
        let kinds: &'static [(&'static str, &'static str)] = match which.as_str() {
            "bare" => &[("bare", "--serve-bare")],
            "medcall" => &[("medcall", "--serve")],
            "both" => &[("bare", "--serve-bare"), ("medcall", "--serve")],
            other => bail!("AGI_LOAD_SERVER={other}: expected bare, medcall or both"),
        };
        let pacing = match std::env::var("AGI_LOAD_PACING").as_deref() {
            Err(_) | Ok("" | "precise") => Pacing::Precise,
            Ok("tick") => Pacing::Tick,
            Ok(other) => bail!("AGI_LOAD_PACING={other}: expected precise or tick"),
        };
        Ok(Settings {
            seconds: env_or("AGI_LOAD_SECONDS", 3),
            warmup_seconds: 1,
            rounds: env_or("AGI_LOAD_ROUNDS", 4_usize).max(1),
            loads,
            kinds,
            pin: std::env::var("AGI_LOAD_NO_PIN").is_err(),
            spin_at_one: std::env::var("AGI_LOAD_NO_SPIN").is_err(),
            pacing,
        })
    }
}

async fn measure(server: &mut ServerProcess, load: Load, settings: &Settings) -> Figures {
    // With one session at a time this tool would sleep in epoll between every reply
    // and pay the VM's vCPU wake-up on each of the five round trips; a spinning task
    // keeps its own core awake (only the load tool's core — the server still sleeps
    // and wakes as in production).
    let spin = (matches!(load, Load::Closed(1)) && settings.spin_at_one).then(|| {
        tokio::spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        })
    });
    let dropped0 = server.dropped();
    let before = Counters::read(server.pid());
    let mut f = match load {
        Load::Closed(c) => closed_loop(server.addr, c, settings.seconds).await,
        Load::Offered(r) => {
            open_loop_measured(server.addr, r, settings.seconds, settings.pacing).await
        }
    };
    Counters::charge(before, server.pid(), &mut f);
    if let Some(spinner) = spin {
        spinner.abort();
    }
    f.dropped = dropped0.and_then(|d0| Some(server.dropped()?.saturating_sub(d0)));
    f
}

/// The servers' order in round `round` (from 0): as listed, then reversed, and so on
/// (ABBA…), so a host speeding up or slowing down through a level favours neither.
fn round_order(servers: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..servers).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// One server at one level: each round's summary and the pool of all its rounds.
struct Pooled {
    rounds: Vec<Summary>,
    all: Summary,
    dropped: Option<u64>,
    /// The slowest session of the unmeasured warm-up second at this level.
    warmup_max: f64,
}

impl Pooled {
    fn new(mut runs: Vec<Figures>, warmup_max: f64) -> Pooled {
        let rounds = runs.iter_mut().map(Figures::summary).collect();
        let mut all = Figures::pool(runs);
        Pooled {
            rounds,
            all: all.summary(),
            dropped: all.dropped,
            warmup_max,
        }
    }
}

/// All rounds at one level, servers interleaved; one `Pooled` per server, in order.
async fn run_level(servers: &mut [ServerProcess], load: Load, settings: &Settings) -> Vec<Pooled> {
    // One unmeasured second per server at this level first: what a process grows
    // into at a new load (tasks, buffers, the allocator's pages, the store's cache) is
    // then in place, so the rounds measure the steady state. Its slowest session is
    // still reported, as the cost of the first burst.
    let mut warmup_max = Vec::new();
    for server in servers.iter() {
        let warmup = settings.warmup_seconds;
        let mut f = match load {
            Load::Closed(c) => closed_loop(server.addr, c, warmup).await,
            Load::Offered(r) => open_loop_measured(server.addr, r, warmup, settings.pacing).await,
        };
        let max = f.summary().max;
        eprintln!(
            "agi_load: warm-up {} {}: max {max:.1} ms",
            server.name,
            load.label()
        );
        warmup_max.push(max);
    }
    let mut runs: Vec<Vec<Figures>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for i in round_order(servers.len(), round) {
            let (Some(server), Some(out)) = (servers.get_mut(i), runs.get_mut(i)) else {
                continue;
            };
            let mut f = measure(server, load, settings).await;
            eprintln!(
                "agi_load: round {}/{} {} {}{}",
                round + 1,
                settings.rounds,
                server.name,
                f.summary().row(&load.label()),
                f.dropped
                    .map(|d| format!(" session log entries dropped: {d}"))
                    .unwrap_or_default()
            );
            out.push(f);
        }
    }
    runs.into_iter()
        .zip(warmup_max)
        .map(|(runs, max)| Pooled::new(runs, max))
        .collect()
}

fn pin_load_tool() -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        eprintln!("agi_load: could not pin the load tool to core 1");
    }
    Ok(())
}

/// Every level for every server, the tables printed; what each server measured at each
/// level (`results[server][level]`, servers in `settings.kinds` order).
fn run_suite(settings: &Settings) -> anyhow::Result<Vec<Vec<Pooled>>> {
    let mut servers = settings
        .kinds
        .iter()
        .map(|&(name, flag)| ServerProcess::start(name, flag, settings.pin))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if settings.pin {
        pin_load_tool()?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        for server in &servers {
            server.ready().await?;
            // Warm up: sockets, allocator, branch predictors, the store's first pages.
            let _ = closed_loop(server.addr, 16, settings.warmup_seconds).await;
        }
        // results[server][level]
        let mut results: Vec<Vec<Pooled>> = servers.iter().map(|_| Vec::new()).collect();
        for &load in &settings.loads {
            let level = run_level(&mut servers, load, settings).await;
            for (out, pooled) in results.iter_mut().zip(level) {
                out.push(pooled);
            }
        }
        anyhow::Ok(results)
    });
    let names: Vec<&'static str> = servers.iter().map(|s| s.name).collect();
    for server in servers.drain(..) {
        server.stop();
    }
    let results = result?;
    for (name, levels) in names.iter().zip(&results) {
        print_server_table(name, settings, levels);
    }
    if let [bare, medcall] = results.as_slice() {
        print_ratios(&settings.loads, bare, medcall);
        print_round_tails(&settings.loads, bare, medcall);
    }
    Ok(results)
}

/// `cargo test --benches`: the suite's own path at a toy size (both servers, a second
/// at concurrency 4 and a second at 100/s offered, no warm-up, no pinning), failing on
/// any failed session, a level that ran none, or a session log entry dropped; no claim
/// on timings. First one session checks that medcall's route sends the command lines
/// the bare loop sends, i.e. it read the path parameter and the query.
fn smoke() -> anyhow::Result<()> {
    let settings = Settings {
        seconds: 1,
        warmup_seconds: 0,
        rounds: 1,
        loads: vec![Load::Closed(4), Load::Offered(100)],
        kinds: &[("bare", "--serve-bare"), ("medcall", "--serve")],
        pin: false,
        spin_at_one: false,
        pacing: Pacing::Precise,
    };
    let server = ServerProcess::start("medcall", "--serve", false)?;
    let sent = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            server.ready().await?;
            commands_sent(server.addr).await
        });
    server.stop();
    let expected: Vec<Vec<u8>> = bare_commands()?.iter().map(|c| c.to_vec()).collect();
    if sent? != expected {
        bail!("medcall's bench route sent other commands than the bare loop's");
    }
    let results = run_suite(&settings)?;
    for (&(name, _), levels) in settings.kinds.iter().zip(&results) {
        for (load, level) in settings.loads.iter().zip(levels) {
            let what = format!("{name} at {}", load.label());
            if level.all.sessions == 0 || level.all.errors > 0 {
                bail!(
                    "{what}: {} sessions, {} errors",
                    level.all.sessions,
                    level.all.errors
                );
            }
            if name == "medcall" && level.dropped != Some(0) {
                bail!("{what}: session log entries dropped: {:?}", level.dropped);
            }
        }
    }
    Ok(())
}

/// One session as `one_session` plays it, returning the command lines the server sent.
async fn commands_sent(addr: SocketAddr) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut text = Vec::new();
    Environment::new().render(&mut text);
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&text).await?;
    let mut buf = BytesMut::new();
    let mut sent = Vec::new();
    for reply in REPLIES {
        loop {
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                sent.push(buf.split_to(end + 1).to_vec());
                break;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("server closed before the third command");
            }
        }
        stream.write_all(reply).await?;
    }
    Ok(sent)
}

fn print_server_table(name: &str, settings: &Settings, levels: &[Pooled]) {
    println!(
        "\n{name}, {} round(s) of {} s pooled\n\n{HEADER}",
        settings.rounds, settings.seconds
    );
    for (load, level) in settings.loads.iter().zip(levels) {
        println!("{}", level.all.row(&load.label()));
    }
    let dropped: Vec<String> = settings
        .loads
        .iter()
        .zip(levels)
        .filter_map(|(load, level)| Some(format!("{} {}", load.label(), level.dropped?)))
        .collect();
    if !dropped.is_empty() {
        println!(
            "\nsession log entries dropped, all rounds: {}",
            dropped.join(", ")
        );
    }
}

fn print_ratios(loads: &[Load], bare: &[Pooled], medcall: &[Pooled]) {
    let ratio = |m: f64, b: f64| if b > 0.0 { m / b } else { 0.0 };
    println!(
        "\nmedcall ÷ bare (sessions/s of each round, then of the pooled figures)\n\n| load | sessions/s by round | sessions/s | p50 | p99 | max | server CPU µs/session |\n|---|---|---|---|---|---|---|"
    );
    for ((load, b), m) in loads.iter().zip(bare).zip(medcall) {
        let by_round: Vec<String> = b
            .rounds
            .iter()
            .zip(&m.rounds)
            .map(|(b, m)| format!("{:.2}", ratio(m.rate, b.rate)))
            .collect();
        let (b, m) = (&b.all, &m.all);
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            load.label(),
            by_round.join(" / "),
            ratio(m.rate, b.rate),
            ratio(m.p50, b.p50),
            ratio(m.p99, b.p99),
            ratio(m.max, b.max),
            ratio(m.server_us, b.server_us),
        );
    }
}

/// Each round's p99 and max, and core 0's steal in it: a pooled tail is set by its
/// worst round, and this shows whether that round was the server's doing or the host's
/// (a stall of the VM hits whichever server is running).
fn print_round_tails(loads: &[Load], bare: &[Pooled], medcall: &[Pooled]) {
    let each = |p: &Pooled, f: fn(&Summary) -> f64, digits: usize| -> String {
        p.rounds
            .iter()
            .map(|s| format!("{:.*}", digits, f(s)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "\nper round, in the order run (ms); warm-up: the slowest session of the unmeasured first second at the level\n\n| load | bare p99 | medcall p99 | bare max | medcall max | core 0 steal, bare | core 0 steal, medcall | warm-up max, bare / medcall |\n|---|---|---|---|---|---|---|---|"
    );
    for ((load, b), m) in loads.iter().zip(bare).zip(medcall) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} |",
            load.label(),
            each(b, |s| s.p99, 2),
            each(m, |s| s.p99, 2),
            each(b, |s| s.max, 1),
            each(m, |s| s.max, 1),
            each(b, |s| s.steal_ms, 0),
            each(m, |s| s.steal_ms, 0),
            b.warmup_max,
            m.warmup_max,
        );
    }
}

fn drive(port: u16, sessions: usize, concurrency: usize) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let env = Environment::new();
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
    let env = Environment::new();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(async move {
            // Small, grown as needed. With 512 workers each reserving 64 Ki latencies
            // (256 MiB) up front, this tool stalled for about a second at the start of
            // the first concurrency-512 round, whichever server it was talking to:
            // connects took ~1 s while tcpdump showed every SYN answered at once and
            // the kernel counted no drop or retransmission. With small vectors the
            // stall is gone.
            let mut latencies = Vec::with_capacity(1024);
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
    let mut figures = Figures::default();
    while let Some(Ok((latencies, errors))) = workers.join_next().await {
        figures.latencies_us.extend(latencies);
        figures.errors += errors;
    }
    figures.elapsed = start.elapsed();
    figures.sessions = figures.latencies_us.len();
    figures
}

/// When session `i` of an open loop at `rate`/s is due, after the loop's start:
/// computed from `i` rather than accumulated, so rounding never drifts.
fn due_offset(i: u64, rate: u64) -> Duration {
    let ns = u128::from(i) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Tokio's timer has millisecond ticks and rounds a deadline up to the next one, so a
/// sleep can end up to a tick late: sleep only until this much before the due time.
const SPIN_WITHIN: Duration = Duration::from_micros(1500);

/// Returns at `due`, give or take the few microseconds of one turn of the runtime.
async fn wait_precisely(due: Instant) {
    if due.saturating_duration_since(Instant::now()) > SPIN_WITHIN {
        if let Some(wake) = due.checked_sub(SPIN_WITHIN) {
            tokio::time::sleep_until(wake.into()).await;
        }
    }
    // The load tool owns its core, so spinning takes nothing from the servers;
    // `yield_now` lets the sessions' tasks and the I/O driver run between checks.
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// The first version's pacing: the timer alone, so at 5 000/s about five sessions
/// start together at each millisecond tick.
async fn wait_tick(due: Instant) {
    if due > Instant::now() + Duration::from_micros(500) {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// One open-loop session. Latency runs from `due` when given (wrk2's way: if the
/// tool starts the session late, the lateness counts against the server, never in
/// its favour), otherwise from when the task starts (the tick pacing's origin).
async fn timed_session(
    addr: SocketAddr,
    env: Environment,
    due: Option<Instant>,
) -> anyhow::Result<u64> {
    let origin = due.unwrap_or_else(Instant::now);
    let mut buf = BytesMut::with_capacity(1024);
    one_session(addr, env, &mut buf).await?;
    Ok(origin.elapsed().as_micros() as u64)
}

async fn open_loop_measured(addr: SocketAddr, rate: u64, seconds: u64, pacing: Pacing) -> Figures {
    let env = Environment::new();
    let start = Instant::now();
    let total = rate * seconds;
    let mut sessions = tokio::task::JoinSet::new();
    let mut figures = Figures {
        latencies_us: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
        ..Figures::default()
    };
    let take =
        |done: Result<anyhow::Result<u64>, tokio::task::JoinError>, f: &mut Figures| match done {
            Ok(Ok(us)) => f.latencies_us.push(us),
            _ => f.errors += 1,
        };
    for i in 0..total {
        let due = start + due_offset(i, rate);
        let origin = match pacing {
            Pacing::Precise => {
                wait_precisely(due).await;
                Some(due)
            }
            Pacing::Tick => {
                wait_tick(due).await;
                None
            }
        };
        sessions.spawn(timed_session(addr, env, origin));
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
