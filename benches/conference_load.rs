//! `conference_load`: conversation calls (seed 002) under load, against the real rig.
//!
//! A real `medcall run` (pinned to core 0 with `taskset` when present; this tool pins
//! itself to core 1) whose users ring the rig's fake phones (`Local/{userId}@medcall-
//! test-users/n`; ids starting `a0` answer and stay silent). Its `[[pbx]]` port is a TCP
//! proxy inside this process, on its own OS threads, that forwards both ways and
//! timestamps every action frame the daemon writes (`Action`, `Account`, `Channel`,
//! `ChannelId`, `Conference`), so each HTTP request can be matched to the action it
//! caused: an Originate carries `Account: <threadId>`, a Redirect's and a Hangup's
//! `Channel` is the leg's uniqueid (`<threadId>-…`), a ConfbridgeKick's `Conference` the
//! thread. A second AMI session of the tool's own, straight to the rig (also on an OS
//! thread), timestamps every `ConfbridgeJoin`/`ConfbridgeLeave`; a third lists channels.
//!
//! Phases (full run):
//! 1. **50 threads × 4 users, concurrently**: start → invite 4 → all joined (ConfbridgeJoin
//!    on the tool's own AMI, then the daemon's view) → pause 1 → unpause → end. Figures:
//!    invite → joined, pause/unpause/end HTTP latencies, HTTP → AMI action (in a burst).
//! 2. **Steady 100 operations/s** on another 50 × 4 already joined: pause and unpause
//!    alternating over the 200 users (each user every 2 s), evenly paced, no polling in
//!    the window. Figures: HTTP → AMI action p50/p99 (the issue's "under 2 ms p99 at 100
//!    operations/s"), HTTP latency, daemon and Asterisk CPU per operation.
//! 3. **100 threads × 4 users**: all joined, all paused, unpaused, ended; then **zero
//!    stuck legs**: the tool's own `CoreShowChannels` shows no channel whose AccountCode
//!    is one of the threads or whose name carries one of the users, and every GET shows
//!    the call ended and every participant no longer live.
//!
//! After every phase the same stuck-leg check runs; any failure (a refused or miscounted
//! operation, a join or action never seen, a stuck leg, an ERROR in the daemon's log)
//! fails the run, after the tool hangs up whatever of its threads is left on the rig.
//!
//! ```text
//! cargo bench --bench conference_load            # the full run (needs the rig: scripts/asterisk-rig up + env)
//! CONF_LOAD_THREADS=50 CONF_LOAD_BIG=100 CONF_LOAD_STEADY_OPS=1200 CONF_LOAD_RATE=100 cargo bench --bench conference_load
//! CONF_LOAD_DB_DIR=/dev/shm cargo bench --bench conference_load   # the database on tmpfs: no fsync cost
//! ```
//!
//! Under `cargo test --benches` (no `--bench`): the same three phases with 2 threads × 2
//! users (the steady phase at 10 operations/s), asserting that everything succeeded and
//! no channel is left; nothing about timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "../tests/it/support/rig.rs"]
mod rig;

#[path = "common/daemon.rs"]
mod daemon;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream as StdStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rig::{RawAmi, Rig, field};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How long any one wait (a join, a state, an action) may take before it is a failure.
const LIMIT: Duration = Duration::from_secs(30);

struct Plan {
    smoke: bool,
    threads: usize,
    users: usize,
    big_threads: usize,
    steady_ops: usize,
    rate: f64,
}

impl Plan {
    fn from_args() -> Plan {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let env = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        if smoke {
            Plan {
                smoke,
                threads: 2,
                users: 2,
                big_threads: 2,
                steady_ops: 8,
                rate: 10.0,
            }
        } else {
            Plan {
                smoke,
                threads: env("CONF_LOAD_THREADS", 50),
                users: env("CONF_LOAD_USERS", 4),
                big_threads: env("CONF_LOAD_BIG", 100),
                steady_ops: env("CONF_LOAD_STEADY_OPS", 1200),
                rate: env("CONF_LOAD_RATE", 100) as f64,
            }
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let plan = Plan::from_args();
    if plan.smoke {
        println!("conference_load: toy run (no --bench): every phase with 2 threads × 2 users");
    }
    let rig = Rig::from_env();
    let proxy = Proxy::start(rig.ami_port);
    let joins = Joins::start(&rig);
    // `CONF_LOAD_DB_DIR`: where the daemon's database goes (default the system's temp
    // directory; a tmpfs there takes the fsyncs out of the figures).
    let data = match std::env::var("CONF_LOAD_DB_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let http_port = free_port();
    let mut daemon = start_daemon(&rig, proxy.port, http_port, data.path());
    let asterisk = asterisk_pid();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let failures = rt.block_on(async {
        let key = wait_healthy(http_port, data.path(), &mut daemon).await;
        let http = Arc::new(Http {
            port: http_port,
            key,
            team: hex24(""),
            pool: Mutex::new(Vec::new()),
        });
        wait_connected(&http).await;
        let mut ami = RawAmi::connect(&rig).await;
        ami.login(&rig.username, &rig.secret).await;
        ami.send(&[
            ("Action", "Events"),
            ("EventMask", "off"),
            ("ActionID", "mask"),
        ])
        .await;
        let ctx = Ctx {
            http,
            proxy: proxy.clone(),
            joins: joins.clone(),
            daemon: daemon.id(),
            asterisk,
        };
        let mut run = Run::default();
        run_all(&ctx, &plan, &mut ami, &mut run).await;
        if !run.failures.is_empty() {
            sweep(&mut ami, &run.all_threads, &run.all_users).await;
        }
        run.failures
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    // Whatever the daemon logged at `warn` or above is shown; an error fails the run (a
    // lost batch of call records does not show in any answer the tool checks).
    let log = std::fs::read_to_string(data.path().join("stderr.log")).unwrap_or_default();
    let mut failures = failures;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("conference_load: daemon: {line}");
        if line.contains("ERROR") {
            failures.push(format!("the daemon logged an error: {line}"));
        }
    }
    if !failures.is_empty() {
        for f in failures.iter().take(40) {
            eprintln!("conference_load: FAILED: {f}");
        }
        panic!("conference_load: {} failures", failures.len());
    }
    println!("conference_load: every operation succeeded, no leg stuck");
}

async fn run_all(ctx: &Ctx, plan: &Plan, ami: &mut RawAmi, run: &mut Run) {
    // Phase 1: N threads × U users, start → invite → joined → pause 1 → unpause → end.
    let threads = new_threads(plan.threads, plan.users, run);
    let before = ctx.cpu();
    let started = Instant::now();
    let figures = cycle_all(ctx, &threads, false).await;
    let cost = ctx.cpu().since(&before, started.elapsed());
    run.take(&figures);
    println!(
        "\nconference_load: phase 1, {} threads × {} users concurrently (start → invite → all joined → pause 1 → unpause → end), {}",
        plan.threads,
        plan.users,
        loadavg()
    );
    figures.print(&cost);
    check_nothing_left(ctx, ami, &threads, run, "phase 1").await;

    // Phase 2: steady operations/s on already joined users.
    let threads = new_threads(plan.threads, plan.users, run);
    steady(ctx, plan, &threads, run).await;
    check_nothing_left(ctx, ami, &threads, run, "phase 2").await;

    // Phase 3: the big one, every user paused and unpaused, then zero stuck legs.
    let threads = new_threads(plan.big_threads, plan.users, run);
    let before = ctx.cpu();
    let started = Instant::now();
    let figures = cycle_all(ctx, &threads, true).await;
    let cost = ctx.cpu().since(&before, started.elapsed());
    run.take(&figures);
    println!(
        "\nconference_load: phase 3, {} threads × {} users concurrently (all joined, all paused, unpaused, ended), {}",
        plan.big_threads,
        plan.users,
        loadavg()
    );
    figures.print(&cost);
    check_nothing_left(ctx, ami, &threads, run, "phase 3").await;
}

// ---- the run's bookkeeping ----

#[derive(Default)]
struct Run {
    failures: Vec<String>,
    all_threads: Vec<String>,
    all_users: Vec<String>,
}

impl Run {
    fn take(&mut self, f: &Figures) {
        self.failures.extend(f.failures.iter().cloned());
    }
}

#[derive(Clone)]
struct ThreadPlan {
    thread: String,
    users: Vec<String>,
}

fn new_threads(n: usize, users: usize, run: &mut Run) -> Vec<ThreadPlan> {
    (0..n)
        .map(|_| {
            let t = ThreadPlan {
                thread: hex24(""),
                users: (0..users).map(|_| hex24("a0")).collect(),
            };
            run.all_threads.push(t.thread.clone());
            run.all_users.extend(t.users.iter().cloned());
            t
        })
        .collect()
}

/// A fresh 24-hex-digit id starting with `prefix`.
fn hex24(prefix: &str) -> String {
    let mut s = prefix.to_string();
    while s.len() < 24 {
        s.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    s.truncate(24);
    s
}

struct Ctx {
    http: Arc<Http>,
    proxy: Proxy,
    joins: Joins,
    daemon: u32,
    asterisk: Option<u32>,
}

/// CPU ticks (utime + stime, `/proc/<pid>/stat`) of the daemon and Asterisk.
struct Cpu {
    daemon: u64,
    asterisk: Option<u64>,
}

struct Cost {
    wall: Duration,
    daemon_s: f64,
    asterisk_s: Option<f64>,
}

impl Ctx {
    fn cpu(&self) -> Cpu {
        Cpu {
            daemon: cpu_ticks(self.daemon).unwrap_or(0),
            asterisk: self.asterisk.and_then(cpu_ticks),
        }
    }
}

impl Cpu {
    fn since(&self, before: &Cpu, wall: Duration) -> Cost {
        // USER_HZ is 100 on every Linux this runs on (x86-64, arm64).
        Cost {
            wall,
            daemon_s: self.daemon.saturating_sub(before.daemon) as f64 / 100.0,
            asterisk_s: match (self.asterisk, before.asterisk) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b) as f64 / 100.0),
                _ => None,
            },
        }
    }
}

impl Cost {
    fn line(&self, ops: usize, what: &str) -> String {
        let per = |s: f64| s * 1e6 / ops.max(1) as f64;
        let share = |s: f64| 100.0 * s / self.wall.as_secs_f64();
        let asterisk = match self.asterisk_s {
            Some(a) => format!(
                "Asterisk {a:.2} s ({:.0} µs per operation, {:.0} % of a core)",
                per(a),
                share(a)
            ),
            None => "Asterisk's CPU: its process was not found".into(),
        };
        format!(
            "CPU over {:.2} s and {ops} {what}: daemon {:.2} s ({:.0} µs per operation, {:.0} % of a core); {asterisk}",
            self.wall.as_secs_f64(),
            self.daemon_s,
            per(self.daemon_s),
            share(self.daemon_s)
        )
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<&str> = l.split_whitespace().take(3).collect();
    format!("load average {}", v.join(" "))
}

/// The rig instance's Asterisk: a process whose root is the rig's root and whose
/// command line names this instance's configuration (as `scripts/asterisk-rig` finds it).
fn asterisk_pid() -> Option<u32> {
    let root = std::env::var("MEDCALL_RIG_ROOT").ok()?;
    let instance = std::env::var("MEDCALL_RIG_INSTANCE").unwrap_or_else(|_| "main".into());
    let conf = if instance == "main" {
        "-C /etc/asterisk/asterisk.conf".to_string()
    } else {
        format!("-C /etc/asterisk-{instance}/asterisk.conf")
    };
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(r) = std::fs::read_link(format!("/proc/{pid}/root")) else {
            continue;
        };
        if r.to_str() != Some(root.trim_end_matches('/')) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("asterisk") && cmd.contains(&conf) {
            return Some(pid);
        }
    }
    None
}

// ---- latencies ----

#[derive(Default)]
struct Figures {
    start: Vec<Duration>,
    invite: Vec<Duration>,
    invite_to_joined: Vec<Duration>,
    pause: Vec<Duration>,
    unpause: Vec<Duration>,
    unpause_to_joined: Vec<Duration>,
    end: Vec<Duration>,
    /// HTTP request written → the action it caused passed the proxy.
    to_ami: HashMap<&'static str, Vec<Duration>>,
    posts: usize,
    gets: usize,
    failures: Vec<String>,
}

impl Figures {
    fn merge(&mut self, o: Figures) {
        self.start.extend(o.start);
        self.invite.extend(o.invite);
        self.invite_to_joined.extend(o.invite_to_joined);
        self.pause.extend(o.pause);
        self.unpause.extend(o.unpause);
        self.unpause_to_joined.extend(o.unpause_to_joined);
        self.end.extend(o.end);
        for (k, v) in o.to_ami {
            self.to_ami.entry(k).or_default().extend(v);
        }
        self.posts += o.posts;
        self.gets += o.gets;
        self.failures.extend(o.failures);
    }

    fn print(&self, cost: &Cost) {
        for (name, v) in [
            ("call/start HTTP", &self.start),
            ("call.user/invite HTTP", &self.invite),
            (
                "invite sent → ConfbridgeJoin of that user",
                &self.invite_to_joined,
            ),
            ("call/pause HTTP", &self.pause),
            ("call/unpause HTTP", &self.unpause),
            (
                "unpause sent → ConfbridgeJoin again",
                &self.unpause_to_joined,
            ),
            ("call/end HTTP (answered once every leg is gone)", &self.end),
        ] {
            if !v.is_empty() {
                println!("  {name}: {}", pct(v));
            }
        }
        for name in ["invite", "pause", "unpause", "end"] {
            if let Some(v) = self.to_ami.get(name) {
                println!(
                    "  HTTP {name} sent → its first action on the AMI socket: {}",
                    pct(v)
                );
            }
        }
        println!(
            "  {}",
            cost.line(
                self.posts,
                &format!("control requests (and {} GETs of the call)", self.gets)
            )
        );
        if !self.failures.is_empty() {
            println!("  {} failures", self.failures.len());
        }
    }
}

fn pct(v: &[Duration]) -> String {
    let mut v = v.to_vec();
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1e3
    };
    format!(
        "n {}, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        v.len(),
        at(0.50),
        at(0.99),
        v[v.len() - 1].as_secs_f64() * 1e3
    )
}

// ---- phases 1 and 3: whole cycles ----

async fn cycle_all(ctx: &Ctx, threads: &[ThreadPlan], pause_all: bool) -> Figures {
    let mut handles = Vec::new();
    for t in threads {
        let t = t.clone();
        let http = Arc::clone(&ctx.http);
        let proxy = ctx.proxy.clone();
        let joins = ctx.joins.clone();
        handles.push(tokio::spawn(async move {
            let mut f = Figures::default();
            if let Err(e) = cycle(&http, &proxy, &joins, &t, pause_all, &mut f).await {
                f.failures.push(format!("thread {}: {e}", t.thread));
                // Still ended (if it got that far), so the stuck-leg check judges the
                // daemon's end, not this tool giving up on the thread.
                let _ = http
                    .ok("call/end", json!({"threadId": t.thread}), &mut f)
                    .await;
            }
            f
        }));
    }
    let mut all = Figures::default();
    for h in handles {
        all.merge(h.await.unwrap());
    }
    all
}

/// One thread's call from start to end; `pause_all` pauses every user, else the first.
async fn cycle(
    http: &Http,
    proxy: &Proxy,
    joins: &Joins,
    t: &ThreadPlan,
    pause_all: bool,
    f: &mut Figures,
) -> Result<(), String> {
    let th = t.thread.as_str();
    let r = http.ok("call/start", json!({"threadId": th}), f).await?;
    f.start.push(r.took());

    let r = http
        .ok(
            "call.user/invite",
            json!({"threadId": th, "userIds": t.users}),
            f,
        )
        .await?;
    f.invite.push(r.took());
    expect_count(&r, "invitedUsersCount", t.users.len())?;
    let originate = proxy
        .first_after(th, r.sent, |a| a == "Originate")
        .await
        .ok_or("no Originate seen for the invite")?;
    f.to_ami
        .entry("invite")
        .or_default()
        .push(originate - r.sent);
    for u in &t.users {
        let joined = joins
            .wait(th, u, r.sent, true)
            .await
            .ok_or_else(|| format!("user {u} never joined"))?;
        f.invite_to_joined.push(joined - r.sent);
    }
    let call = wait_states(http, th, f, |call| {
        t.users.iter().all(|u| state_of(call, u) == "joined")
    })
    .await?;
    let uniqueids: HashMap<&str, String> = t
        .users
        .iter()
        .map(|u| (u.as_str(), uniqueid_of(&call, u)))
        .collect();

    let paused: Vec<String> = if pause_all {
        t.users.clone()
    } else {
        t.users.iter().take(1).cloned().collect()
    };
    let r = http
        .ok("call/pause", json!({"threadId": th, "userIds": paused}), f)
        .await?;
    f.pause.push(r.took());
    expect_count(&r, "pausedUsersCount", paused.len())?;
    let redirect = proxy
        .first_after(&uniqueids[paused[0].as_str()], r.sent, |a| a == "Redirect")
        .await
        .ok_or("no Redirect seen for the pause")?;
    f.to_ami.entry("pause").or_default().push(redirect - r.sent);
    for u in &paused {
        joins
            .wait(th, u, r.sent, false)
            .await
            .ok_or_else(|| format!("user {u} never left the mix for hold"))?;
    }
    wait_states(http, th, f, |call| {
        paused.iter().all(|u| state_of(call, u) == "paused")
    })
    .await?;

    let r = http
        .ok(
            "call/unpause",
            json!({"threadId": th, "userIds": paused}),
            f,
        )
        .await?;
    f.unpause.push(r.took());
    expect_count(&r, "unpausedUsersCount", paused.len())?;
    let redirect = proxy
        .first_after(&uniqueids[paused[0].as_str()], r.sent, |a| a == "Redirect")
        .await
        .ok_or("no Redirect seen for the unpause")?;
    f.to_ami
        .entry("unpause")
        .or_default()
        .push(redirect - r.sent);
    for u in &paused {
        let back = joins
            .wait(th, u, r.sent, true)
            .await
            .ok_or_else(|| format!("user {u} never rejoined"))?;
        f.unpause_to_joined.push(back - r.sent);
    }
    wait_states(http, th, f, |call| {
        t.users.iter().all(|u| state_of(call, u) == "joined")
    })
    .await?;

    let r = http.ok("call/end", json!({"threadId": th}), f).await?;
    f.end.push(r.took());
    if r.body["data"]["result"] != "answered" {
        return Err(format!("end: result is not answered: {}", r.body));
    }
    let action = proxy
        .first_after(th, r.sent, |a| a == "Hangup" || a == "ConfbridgeKick")
        .await
        .ok_or("no Hangup or ConfbridgeKick seen for the end")?;
    f.to_ami.entry("end").or_default().push(action - r.sent);
    Ok(())
}

fn expect_count(r: &Reply, name: &str, n: usize) -> Result<(), String> {
    if r.body["data"][name].as_u64() == Some(n as u64) {
        Ok(())
    } else {
        Err(format!("{name} is not {n}: {}", r.body))
    }
}

fn participant<'a>(call: &'a Value, user: &str) -> Option<&'a Value> {
    call["participants"]
        .as_array()?
        .iter()
        .rev()
        .find(|p| p["userId"] == user)
}

fn state_of(call: &Value, user: &str) -> String {
    participant(call, user)
        .and_then(|p| p["state"].as_str())
        .unwrap_or("absent")
        .to_string()
}

fn uniqueid_of(call: &Value, user: &str) -> String {
    participant(call, user)
        .and_then(|p| p["uniqueid"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Polls the daemon's view of the thread's call until `pred` holds (the join or leave
/// was already seen on the tool's own AMI session: this is the daemon catching up).
async fn wait_states(
    http: &Http,
    thread: &str,
    f: &mut Figures,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = http.get(&format!("call/{thread}")).await?;
        f.gets += 1;
        let call = r.body["data"]["call"].clone();
        if pred(&call) {
            return Ok(call);
        }
        if Instant::now() > deadline {
            return Err(format!("the call never reached the awaited states: {call}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- phase 2: steady operations/s ----

async fn steady(ctx: &Ctx, plan: &Plan, threads: &[ThreadPlan], run: &mut Run) {
    // Set-up, not measured: every thread started, its users invited and joined.
    let mut setup = Figures::default();
    let mut legs: Vec<(String, String, String)> = Vec::new(); // thread, user, uniqueid
    let mut handles = Vec::new();
    for t in threads {
        let t = t.clone();
        let http = Arc::clone(&ctx.http);
        let joins = ctx.joins.clone();
        handles.push(tokio::spawn(async move {
            let mut f = Figures::default();
            let res = async {
                let th = t.thread.as_str();
                http.ok("call/start", json!({"threadId": th}), &mut f)
                    .await?;
                let r = http
                    .ok(
                        "call.user/invite",
                        json!({"threadId": th, "userIds": t.users}),
                        &mut f,
                    )
                    .await?;
                expect_count(&r, "invitedUsersCount", t.users.len())?;
                for u in &t.users {
                    joins
                        .wait(th, u, r.sent, true)
                        .await
                        .ok_or_else(|| format!("user {u} never joined"))?;
                }
                let call = wait_states(&http, th, &mut f, |call| {
                    t.users.iter().all(|u| state_of(call, u) == "joined")
                })
                .await?;
                Ok::<_, String>(
                    t.users
                        .iter()
                        .map(|u| (t.thread.clone(), u.clone(), uniqueid_of(&call, u)))
                        .collect::<Vec<_>>(),
                )
            }
            .await;
            match res {
                Ok(l) => (f, l),
                Err(e) => {
                    f.failures.push(format!("steady set-up {}: {e}", t.thread));
                    (f, Vec::new())
                }
            }
        }));
    }
    for h in handles {
        let (f, l) = h.await.unwrap();
        setup.merge(f);
        legs.extend(l);
    }
    run.take(&setup);
    if legs.is_empty() {
        return;
    }

    // The standing cost of these joined legs with no operation (Asterisk mixes every
    // conference every 20 ms whatever medcall does): subtracted below.
    let idle_for = Duration::from_secs(if plan.smoke { 1 } else { 3 });
    let idle_before = ctx.cpu();
    tokio::time::sleep(idle_for).await;
    let idle = ctx.cpu().since(&idle_before, idle_for);

    // The window: operation i at start + i/rate, on leg i mod legs; pause on even
    // passes over the legs, unpause on odd ones. No GET inside the window.
    let gap = Duration::from_secs_f64(1.0 / plan.rate);
    let events_before = ctx.http.events_received().await;
    let before = ctx.cpu();
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..plan.steady_ops {
        let due = started + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (thread, user, uniqueid) = legs[i % legs.len()].clone();
        let pause = (i / legs.len()) % 2 == 0;
        let http = Arc::clone(&ctx.http);
        let proxy = ctx.proxy.clone();
        handles.push(tokio::spawn(async move {
            let mut f = Figures::default();
            let (route, count, kind) = if pause {
                ("call/pause", "pausedUsersCount", "pause")
            } else {
                ("call/unpause", "unpausedUsersCount", "unpause")
            };
            let res = async {
                let r = http
                    .ok(route, json!({"threadId": thread, "userId": user}), &mut f)
                    .await?;
                expect_count(&r, count, 1)?;
                if pause {
                    f.pause.push(r.took());
                } else {
                    f.unpause.push(r.took());
                }
                let at = proxy
                    .first_after(&uniqueid, r.sent, |a| a == "Redirect")
                    .await
                    .ok_or("no Redirect seen")?;
                f.to_ami.entry(kind).or_default().push(at - r.sent);
                Ok::<_, String>(())
            }
            .await;
            if let Err(e) = res {
                f.failures
                    .push(format!("steady {route} {thread} {user}: {e}"));
            }
            f
        }));
    }
    let offered = started.elapsed();
    let mut window = Figures::default();
    for h in handles {
        window.merge(h.await.unwrap());
    }
    let cost = ctx.cpu().since(&before, started.elapsed());
    let events = ctx
        .http
        .events_received()
        .await
        .saturating_sub(events_before);
    println!(
        "\nconference_load: phase 2, {} operations (pause/unpause alternating over {} joined users of {} threads) offered at {:.0}/s over {:.2} s, {}",
        plan.steady_ops,
        legs.len(),
        threads.len(),
        plan.rate,
        offered.as_secs_f64(),
        loadavg()
    );
    let mut both: Vec<Duration> = Vec::new();
    for k in ["pause", "unpause"] {
        both.extend(window.to_ami.get(k).cloned().unwrap_or_default());
    }
    if !both.is_empty() {
        println!(
            "  HTTP request sent → its Redirect on the AMI socket (the daemon's added latency): {}",
            pct(&both)
        );
    }
    let mut http_both = window.pause.clone();
    http_both.extend(window.unpause.iter().copied());
    if !http_both.is_empty() {
        println!(
            "  HTTP latency (answered after Asterisk confirmed the Redirect): {}",
            pct(&http_both)
        );
    }
    println!("  {}", cost.line(window.posts, "operations"));
    let marginal = |busy: f64, idle: f64| {
        (busy - idle * cost.wall.as_secs_f64() / idle_for.as_secs_f64()) * 1e6
            / window.posts.max(1) as f64
    };
    println!(
        "  idle, the same legs joined and no operation, over {:.0} s: daemon {:.0} % of a core, Asterisk {}; so per operation beyond idle: daemon {:.0} µs, Asterisk {}",
        idle_for.as_secs_f64(),
        100.0 * idle.daemon_s / idle_for.as_secs_f64(),
        idle.asterisk_s.map_or("n/a".into(), |a| format!(
            "{:.0} % of a core",
            100.0 * a / idle_for.as_secs_f64()
        )),
        marginal(cost.daemon_s, idle.daemon_s),
        match (cost.asterisk_s, idle.asterisk_s) {
            (Some(b), Some(i)) => format!("{:.0} µs", marginal(b, i)),
            _ => "n/a".into(),
        }
    );
    println!(
        "  AMI events the daemon received in the window: {events} ({:.1} per operation)",
        events as f64 / window.posts.max(1) as f64
    );
    if !window.failures.is_empty() {
        println!("  {} failures", window.failures.len());
    }
    run.take(&window);

    // Not measured: end every thread.
    let mut handles = Vec::new();
    for t in threads {
        let http = Arc::clone(&ctx.http);
        let th = t.thread.clone();
        handles.push(tokio::spawn(async move {
            let mut f = Figures::default();
            if let Err(e) = http.ok("call/end", json!({"threadId": th}), &mut f).await {
                f.failures.push(format!("steady end {th}: {e}"));
            }
            f
        }));
    }
    let mut ends = Figures::default();
    for h in handles {
        ends.merge(h.await.unwrap());
    }
    run.take(&ends);
}

// ---- no stuck legs ----

/// The rig's channels of these threads or users, by the tool's own CoreShowChannels.
async fn channels_of(ami: &mut RawAmi, threads: &[String], users: &[String]) -> Vec<String> {
    let action_id = format!("csc-{}", rand::random::<u64>());
    ami.send(&[("Action", "CoreShowChannels"), ("ActionID", &action_id)])
        .await;
    let mut found = Vec::new();
    loop {
        let Some(m) = ami
            .wait_for(Duration::from_secs(10), |m| {
                field(m, "ActionID") == Some(action_id.as_str())
            })
            .await
        else {
            found.push("(CoreShowChannels never completed)".into());
            return found;
        };
        match field(&m, "Event") {
            Some("CoreShowChannel") => {
                let account = field(&m, "AccountCode").unwrap_or_default();
                let channel = field(&m, "Channel").unwrap_or_default();
                if threads.iter().any(|t| t == account)
                    || users.iter().any(|u| channel.contains(u.as_str()))
                {
                    found.push(format!(
                        "{channel} (account {account}, {})",
                        field(&m, "Application").unwrap_or_default()
                    ));
                }
            }
            Some("CoreShowChannelsComplete") => return found,
            _ => {}
        }
    }
}

async fn check_nothing_left(
    ctx: &Ctx,
    ami: &mut RawAmi,
    threads: &[ThreadPlan],
    run: &mut Run,
    phase: &str,
) {
    let ids: Vec<String> = threads.iter().map(|t| t.thread.clone()).collect();
    let users: Vec<String> = threads.iter().flat_map(|t| t.users.clone()).collect();
    let at_once = channels_of(ami, &ids, &users).await;
    let mut left = at_once.clone();
    // Every end was answered "gone"; a channel still listed a moment later is stuck.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = channels_of(ami, &ids, &users).await;
    }
    let mut live = 0;
    for t in threads {
        match ctx.http.get(&format!("call/{}", t.thread)).await {
            Ok(r) => {
                let call = &r.body["data"]["call"];
                if call["state"] != "ended" {
                    run.failures
                        .push(format!("{phase}: call of {} not ended: {call}", t.thread));
                }
                for p in call["participants"].as_array().cloned().unwrap_or_default() {
                    let s = p["state"].as_str().unwrap_or_default();
                    if matches!(s, "dialing" | "ringing" | "joined" | "paused")
                        || p["endedAt"].is_null()
                    {
                        live += 1;
                        run.failures.push(format!(
                            "{phase}: participant of {} still live: {p}",
                            t.thread
                        ));
                    }
                }
            }
            Err(e) => run.failures.push(format!("{phase}: GET {}: {e}", t.thread)),
        }
    }
    println!(
        "  stuck-leg check ({phase}): {} channels of its threads listed right after the last end was answered, {} after 5 s; {live} participants still live in the daemon's view",
        at_once.len(),
        left.len()
    );
    for c in &left {
        run.failures.push(format!("{phase}: stuck channel {c}"));
    }
}

/// Hangs up whatever channel of the run is left on the rig (after a failed run: the
/// fake phones would otherwise wait an hour).
async fn sweep(ami: &mut RawAmi, threads: &[String], users: &[String]) {
    for (i, c) in channels_of(ami, threads, users).await.iter().enumerate() {
        let name = c.split(' ').next().unwrap_or_default().to_string();
        let id = format!("sweep-{i}");
        ami.send(&[("Action", "Hangup"), ("Channel", &name), ("ActionID", &id)])
            .await;
        // Awaited: the session closes right after, and Asterisk drops what it has not read.
        let _ = ami
            .wait_for(Duration::from_secs(5), |m| {
                field(m, "ActionID") == Some(id.as_str())
            })
            .await;
    }
    let left = channels_of(ami, threads, users).await;
    if !left.is_empty() {
        eprintln!(
            "conference_load: the sweep left {} channels: {left:?}",
            left.len()
        );
    }
}

// ---- HTTP: a small keep-alive client, timestamped at the write ----

struct Http {
    port: u16,
    key: String,
    team: String,
    pool: Mutex<Vec<TcpStream>>,
}

struct Reply {
    status: u16,
    body: Value,
    /// Just before the request's bytes were written.
    sent: Instant,
    /// When the whole answer had been read.
    done: Instant,
}

impl Reply {
    fn took(&self) -> Duration {
        self.done - self.sent
    }
}

impl Http {
    /// `POST /{team}/{route}`, expecting 200 and the envelope's code 200.
    async fn ok(&self, route: &str, body: Value, f: &mut Figures) -> Result<Reply, String> {
        f.posts += 1;
        let body = body.to_string();
        let req = format!(
            "POST /{}/{route} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.team,
            self.key,
            body.len()
        );
        let r = self.exchange(req.as_bytes()).await?;
        if r.status != 200 || r.body["code"] != 200 {
            return Err(format!("{route} {body}: {} {}", r.status, r.body));
        }
        Ok(r)
    }

    /// `GET /{team}/{path}`.
    async fn get(&self, path: &str) -> Result<Reply, String> {
        let req = format!(
            "GET /{}/{path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\n\r\n",
            self.team, self.key
        );
        self.exchange(req.as_bytes()).await
    }

    async fn get_root(&self, path: &str) -> Result<Reply, String> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\n\r\n",
            self.key
        );
        self.exchange(req.as_bytes()).await
    }

    /// The daemon's count of AMI events received (`/api/pbx`).
    async fn events_received(&self) -> u64 {
        match self.get_root("/api/pbx").await {
            Ok(r) => r.body[0]["eventsReceived"].as_u64().unwrap_or(0),
            Err(_) => 0,
        }
    }

    async fn exchange(&self, req: &[u8]) -> Result<Reply, String> {
        let pooled = self.pool.lock().unwrap().pop();
        if let Some(mut s) = pooled {
            // A kept-alive connection the server closed meanwhile: try a new one.
            if let Ok(Some(r)) = Self::on(&mut s, req).await {
                self.pool.lock().unwrap().push(s);
                return Ok(r);
            }
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let r = Self::on(&mut s, req)
            .await?
            .ok_or("the server closed the connection")?;
        self.pool.lock().unwrap().push(s);
        Ok(r)
    }

    /// One request on `s`; `None` when the server had closed it before answering.
    async fn on(s: &mut TcpStream, req: &[u8]) -> Result<Option<Reply>, String> {
        let sent = Instant::now();
        s.write_all(req).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err("closed mid-answer".into())
                };
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status: {head}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| format!("no content-length: {head}"))?;
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed mid-body".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let done = Instant::now();
        let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
        Ok(Some(Reply {
            status,
            body,
            sent,
            done,
        }))
    }
}

// ---- the AMI proxy: the daemon's actions, timestamped as they pass ----

/// One action frame as it passed the proxy.
struct Seen {
    at: Instant,
    action: String,
}

#[derive(Clone)]
struct Proxy {
    port: u16,
    /// Actions by every key they name: `Account`, `Channel`, `ChannelId`, `Conference`,
    /// and the thread a uniqueid (`<threadId>-…`) starts with.
    seen: Arc<Mutex<HashMap<String, Vec<Seen>>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::new(Mutex::new(HashMap::new())),
        };
        let seen = Arc::clone(&proxy.seen);
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { continue };
                let Ok(up) = StdStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                // Asterisk → daemon: copied as it comes.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut d2);
                    let _ = d2.shutdown(std::net::Shutdown::Both);
                });
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || forward_actions(down, up, &seen));
            }
        });
        proxy
    }

    /// The first action `is(action)` under `key` that passed at or after `since`
    /// (waits up to [`LIMIT`] for it).
    async fn first_after(
        &self,
        key: &str,
        since: Instant,
        is: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(at) = self.seen.lock().unwrap().get(key).and_then(|v| {
                v.iter()
                    .filter(|s| s.at >= since && is(&s.action))
                    .map(|s| s.at)
                    .min()
            }) {
                return Some(at);
            }
            if Instant::now() > deadline {
                return None;
            }
            // The timestamp was taken by the proxy thread: polling here moves no figure.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Daemon → Asterisk: each read is timestamped, forwarded, then cut into frames.
fn forward_actions(
    mut down: StdStream,
    mut up: StdStream,
    seen: &Mutex<HashMap<String, Vec<Seen>>>,
) {
    let mut buf = [0u8; 65536];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = Instant::now();
        if up.write_all(&buf[..n]).is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let frame: Vec<u8> = pending.drain(..p + 4).collect();
            record_frame(&String::from_utf8_lossy(&frame), at, seen);
        }
    }
    let _ = up.shutdown(std::net::Shutdown::Both);
}

fn record_frame(frame: &str, at: Instant, seen: &Mutex<HashMap<String, Vec<Seen>>>) {
    let mut action = None;
    let mut keys: Vec<String> = Vec::new();
    for line in frame.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "action" => action = Some(v.to_string()),
            "account" | "conference" => keys.push(v.to_string()),
            "channel" | "channelid" => {
                keys.push(v.to_string());
                if let Some((thread, _)) = v.split_once('-') {
                    if thread.len() == 24 && thread.bytes().all(|b| b.is_ascii_hexdigit()) {
                        keys.push(thread.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let Some(action) = action else { return };
    keys.sort();
    keys.dedup();
    let mut seen = seen.lock().unwrap();
    for k in keys {
        seen.entry(k).or_default().push(Seen {
            at,
            action: action.clone(),
        });
    }
}

// ---- the tool's own AMI session: joins and leaves, timestamped as they arrive ----

/// (conference, user) → (when, true for a join / false for a leave).
type JoinLog = HashMap<(String, String), Vec<(Instant, bool)>>;

#[derive(Clone)]
struct Joins {
    seen: Arc<Mutex<JoinLog>>,
    notify: Arc<Notify>,
}

impl Joins {
    fn start(rig: &Rig) -> Joins {
        let joins = Joins {
            seen: Arc::new(Mutex::new(HashMap::new())),
            notify: Arc::new(Notify::new()),
        };
        let stream = StdStream::connect(("127.0.0.1", rig.ami_port)).unwrap_or_else(|e| {
            panic!(
                "the Asterisk rig is not answering on AMI port {}: {e}; run `scripts/asterisk-rig up` and export `scripts/asterisk-rig env`",
                rig.ami_port
            )
        });
        let mut w = stream.try_clone().unwrap();
        write!(
            w,
            "Action: Login\r\nUsername: {}\r\nSecret: {}\r\nEvents: call\r\n\r\n",
            rig.username, rig.secret
        )
        .unwrap();
        let j = joins.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, stream);
            let mut msg: Vec<(String, String)> = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if !l.is_empty() {
                    if let Some((k, v)) = l.split_once(':') {
                        msg.push((k.to_string(), v.trim_start().to_string()));
                    }
                    continue;
                }
                let at = Instant::now();
                let get = |k: &str| {
                    msg.iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.as_str())
                };
                let join = match get("Event") {
                    Some("ConfbridgeJoin") => Some(true),
                    Some("ConfbridgeLeave") => Some(false),
                    _ => None,
                };
                if let (Some(join), Some(conf), Some(chan)) =
                    (join, get("Conference"), get("Channel"))
                {
                    // `Local/<userId>@medcall-test-users-…;1`: the user is in the name.
                    if let Some(user) = chan
                        .strip_prefix("Local/")
                        .and_then(|c| c.split_once('@'))
                        .map(|(u, _)| u.to_string())
                    {
                        j.seen
                            .lock()
                            .unwrap()
                            .entry((conf.to_string(), user))
                            .or_default()
                            .push((at, join));
                    }
                }
                msg.clear();
                if r.buffer().is_empty() {
                    j.notify.notify_waiters();
                }
            }
        });
        joins
    }

    /// When `user` joined (`join`) or left the conference `thread` at or after `since`.
    async fn wait(&self, thread: &str, user: &str, since: Instant, join: bool) -> Option<Instant> {
        let key = (thread.to_string(), user.to_string());
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.seen.lock().unwrap().get(&key).and_then(|v| {
                v.iter()
                    .find(|(at, j)| *at >= since && *j == join)
                    .map(|(at, _)| *at)
            }) {
                return Some(at);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

// ---- the daemon ----

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_daemon(rig: &Rig, ami_port: u16, http_port: u16, data: &std::path::Path) -> Child {
    let bin = env!("CARGO_BIN_EXE_medcall");
    let mut cmd = daemon::pinned(bin);
    let child = cmd
        .arg("run")
        .env("MEDCALL__HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("MEDCALL__AGI__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__STORE__PATH", data.join("medcall.db"))
        .env("MEDCALL__LOG__LEVEL", "warn")
        .env("MEDCALL__PBX__0__NAME", "rig")
        .env("MEDCALL__PBX__0__PORT", ami_port.to_string())
        .env("MEDCALL__PBX__0__USERNAME", &rig.username)
        .env("MEDCALL__PBX__0__SECRET", &rig.secret)
        .env(
            "MEDCALL__CALLS__DIAL_TEMPLATE",
            "Local/{userId}@medcall-test-users/n",
        )
        // Generous: under load a fake phone must never be taken for "no answer".
        .env("MEDCALL__CALLS__RING_TIMEOUT_MS", "60000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    daemon::pin_self_to_core_1();
    child
}

async fn wait_healthy(http_port: u16, data: &std::path::Path, daemon: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(key) = std::fs::read_to_string(data.join("admin.key")) {
            if TcpStream::connect(("127.0.0.1", http_port)).await.is_ok() {
                return key.trim().to_string();
            }
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!("medcall exited early: {status}");
        }
        assert!(Instant::now() < deadline, "medcall did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_connected(http: &Http) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get_root("/api/pbx").await {
            if r.body[0]["state"] == "connected" {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never connected to the rig through the proxy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
