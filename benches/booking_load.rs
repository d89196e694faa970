//! `booking_load`: signed cell reservations (seed 004; SPEC §3, §7) against a real daemon.
//!
//! A real `medcall run` (pinned to core 0 with `taskset` when present; this tool pins
//! itself to core 1) on free ports, with a temp config: an `admin` key for the setup, a
//! `booking` key and one signed booking client (`bench`) for the load. Setup per scenario:
//! `PUT /admin/directory` (the doctors), `PUT /admin/schedule` (one LPU and its cells,
//! all in 2031). Load: `POST /visit/{lpu}/reservation?fullResponse=true` from
//! `CONCURRENCY` workers in a closed loop, each with its own keep-alive HTTP/1.1
//! connection, every request signed (`medcall::signing`) and distinct: the daemon answers
//! a repeated signed request from its replay table, so within one second of
//! `X-Timestamp` the body differs — every request asks for 30 minutes, and the n-th
//! request of a worker within a second carries n trailing spaces (JSON ignores them).
//!
//! Scenarios:
//! - **spread**: `CELLS` cells × `PLAN` places, request *i* for cell *i* mod `CELLS`.
//! - **one-cell**: one cell whose `planCount` is the number of requests: every request
//!   races for the same row.
//!
//! Each prints requests/s, p50/p90/p99/max latency, the daemon's CPU per request, and the
//! count of 200s and of 4009s; then checks, and fails on any miss: every answer is a 200
//! with a `ticketGuid` or a 400 with code 4009; each cell got exactly
//! `min(requests sent to it, planCount)` tickets (spread: `min(requests, capacity)` in
//! all; one-cell: all of them); no ticket GUID and no `num` twice; no `ERROR` in the
//! daemon's log. A hold lasts `reserveTime` minutes, so a scenario longer than the
//! shortest (30 min) could free places while it runs: it fails as not measurable.
//!
//! ```text
//! cargo bench --bench booking_load                       # spread 24 000 requests over 2 000 × 10, one-cell 10 000
//! BOOKING_LOAD_REQUESTS=24000 BOOKING_LOAD_CELLS=2000 BOOKING_LOAD_PLAN=10 \
//!   BOOKING_LOAD_ONE_CELL=10000 BOOKING_LOAD_CONCURRENCY=64 cargo bench --bench booking_load
//! BOOKING_LOAD_SCENARIOS=one-cell cargo bench --bench booking_load   # one of them
//! BOOKING_LOAD_DB_DIR=/dev/shm cargo bench --bench booking_load      # the database on tmpfs
//! ```
//!
//! `BOOKING_LOAD_URL=http://host:port` drives a daemon already running instead of
//! starting one; it must know the tool's keys and client (`BOOKING_LOAD_ADMIN_KEY`,
//! `BOOKING_LOAD_KEY`, `BOOKING_LOAD_CLIENT`, `BOOKING_LOAD_SECRET`, defaults below).
//! Every run uses fresh GUIDs and doctor ids, so runs do not see each other's tickets.
//!
//! Under `cargo test --benches` (no `--bench`): spread with 300 requests over 20 × 10
//! (100 of them refused as full) and one-cell with 200, at the same concurrency, failing
//! if a check fails; nothing about timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/daemon.rs"]
mod daemon;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use medcall::secret::Secret;
use medcall::signing;
use sha2::{Digest, Sha256};

const ADMIN_KEY: &str = "bench-booking-admin-key";
const BOOKING_KEY: &str = "bench-booking-key";
const CLIENT_ID: &str = "bench";
const CLIENT_SECRET: &str = "bench-booking-secret-0123456789";
/// The hold every request asks for, in minutes.
const MIN_RESERVE: u64 = 30;
/// Cells per doctor: 09:00, 09:15, … on 2031-01-01 (+03:00).
const SLOTS_PER_DOCTOR: usize = 20;

#[derive(Debug, Clone)]
struct Plan {
    concurrency: usize,
    spread: Option<Spread>,
    one_cell: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Spread {
    requests: usize,
    cells: usize,
    plan: usize,
}

fn env_or(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

fn plan(smoke: bool) -> Plan {
    let (requests, cells, places, one) = if smoke {
        (300, 20, 10, 200)
    } else {
        (
            env_or("BOOKING_LOAD_REQUESTS", 24_000),
            env_or("BOOKING_LOAD_CELLS", 2_000),
            env_or("BOOKING_LOAD_PLAN", 10),
            env_or("BOOKING_LOAD_ONE_CELL", 10_000),
        )
    };
    let scenarios =
        std::env::var("BOOKING_LOAD_SCENARIOS").unwrap_or_else(|_| "spread,one-cell".into());
    let wanted: Vec<&str> = scenarios.split(',').map(str::trim).collect();
    for w in &wanted {
        assert!(
            matches!(*w, "spread" | "one-cell"),
            "BOOKING_LOAD_SCENARIOS: unknown scenario {w:?} (spread, one-cell)"
        );
    }
    assert!(cells > 0 && places > 0 && requests > 0 && one > 0);
    Plan {
        concurrency: env_or("BOOKING_LOAD_CONCURRENCY", 64).max(1),
        spread: wanted.contains(&"spread").then_some(Spread {
            requests,
            cells,
            plan: places,
        }),
        one_cell: wanted.contains(&"one-cell").then_some(one),
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: then the toy run.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let plan = plan(smoke);
    let access = Access {
        admin_key: std::env::var("BOOKING_LOAD_ADMIN_KEY").unwrap_or_else(|_| ADMIN_KEY.into()),
        key: std::env::var("BOOKING_LOAD_KEY").unwrap_or_else(|_| BOOKING_KEY.into()),
        client: std::env::var("BOOKING_LOAD_CLIENT").unwrap_or_else(|_| CLIENT_ID.into()),
        secret: Secret::new(
            std::env::var("BOOKING_LOAD_SECRET").unwrap_or_else(|_| CLIENT_SECRET.into()),
        ),
    };
    let data = match std::env::var("BOOKING_LOAD_DB_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let (base, mut daemon) = match std::env::var("BOOKING_LOAD_URL") {
        Ok(url) => (url.trim_end_matches('/').to_string(), None),
        Err(_) => {
            let port = free_port();
            let child = start_daemon(port, data.path(), &access);
            (format!("http://127.0.0.1:{port}"), Some(child))
        }
    };
    let pid = daemon.as_ref().map(Child::id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let failures = rt.block_on(async {
        wait_healthy(&base, daemon.as_mut()).await;
        run_all(&base, &access, &plan, pid).await
    });
    if let Some(mut d) = daemon.take() {
        let _ = d.kill();
        let _ = d.wait();
    }
    let log = std::fs::read_to_string(data.path().join("stderr.log")).unwrap_or_default();
    let mut failures = failures;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("booking_load: daemon: {line}");
        if line.contains("ERROR") {
            failures.push(format!("the daemon logged an error: {line}"));
        }
    }
    if !failures.is_empty() {
        for f in failures.iter().take(40) {
            eprintln!("booking_load: FAILED: {f}");
        }
        panic!("booking_load: {} failures", failures.len());
    }
    println!("booking_load: every check passed");
}

#[derive(Debug)]
struct Access {
    admin_key: String,
    key: String,
    client: String,
    secret: Secret,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn start_daemon(port: u16, data: &std::path::Path, access: &Access) -> Child {
    let config = data.join("medcall.toml");
    std::fs::write(
        &config,
        format!(
            "[[api_keys]]\nname = \"bench-admin\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n\n\
             [[api_keys]]\nname = \"bench-booking\"\nsha256 = \"{}\"\nscopes = [\"booking\"]\n\n\
             [[booking.clients]]\nid = \"{}\"\nsecret = \"{}\"\n",
            sha256_hex(&access.admin_key),
            sha256_hex(&access.key),
            access.client,
            access.secret.expose()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_medcall");
    let mut cmd = daemon::pinned(bin);
    let child = cmd
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("MEDCALL__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("MEDCALL__AGI__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__STORE__PATH", data.join("medcall.db"))
        // Nothing listens there: the AMI client keeps retrying (its warnings filtered
        // out below); booking needs no PBX.
        .env("MEDCALL__PBX__0__PORT", free_port().to_string())
        .env("MEDCALL__LOG__LEVEL", "warn,medcall::ami=error")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    daemon::pin_self_to_core_1();
    child
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(base: &str, mut daemon: Option<&mut Child>) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Some(d) = daemon.as_deref_mut() {
            if let Ok(Some(status)) = d.try_wait() {
                panic!("medcall exited early: {status}");
            }
        }
        assert!(Instant::now() < deadline, "medcall did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The run's own GUIDs and doctor ids: fresh each run, so a daemon reused through
/// `BOOKING_LOAD_URL` holds no earlier run's tickets for them.
#[derive(Debug, Clone, Copy)]
struct Ids {
    tag: u32,
    doctor_base: i64,
}

impl Ids {
    fn new() -> Ids {
        let tag: u32 = rand::random();
        Ids {
            tag,
            doctor_base: 1_000_000 + i64::from(tag % 100_000) * 10_000,
        }
    }
    fn lpu(&self, scenario: u16) -> String {
        format!("{:08x}-{scenario:04x}-4000-8000-00000000000a", self.tag)
    }
    fn cell(&self, scenario: u16, k: usize) -> String {
        format!("{:08x}-{scenario:04x}-4000-8000-{:012x}", self.tag, k + 1)
    }
    fn doctor_guid(&self, k: usize) -> String {
        format!("{:08x}-d0c0-4000-8000-{:012x}", self.tag, k + 1)
    }
    fn doctor_id(&self, k: usize) -> i64 {
        self.doctor_base + k as i64 + 1
    }
}

async fn run_all(base: &str, access: &Access, plan: &Plan, pid: Option<u32>) -> Vec<String> {
    let ids = Ids::new();
    let admin = reqwest::Client::new();
    let mut failures = Vec::new();
    let spread_doctors = plan
        .spread
        .map_or(0, |s| s.cells.div_ceil(SLOTS_PER_DOCTOR));
    // Doctors 0.. for spread, the last one for one-cell.
    let doctors = spread_doctors + 1;
    let directory = serde_json::json!({
        "doctors": (0..doctors).map(|k| serde_json::json!({
            "id": ids.doctor_id(k),
            "guid": ids.doctor_guid(k),
            "fullName": format!("Врач Нагрузочный {}", k + 1),
            "role": "",
            "speciality": "терапия",
        })).collect::<Vec<_>>()
    });
    if let Err(e) = put(
        &admin,
        base,
        "/admin/directory",
        &access.admin_key,
        &directory,
    )
    .await
    {
        return vec![e];
    }
    if let Some(s) = plan.spread {
        let cells: Vec<Slot> = (0..s.cells)
            .map(|k| Slot {
                guid: ids.cell(1, k),
                doctor: k / SLOTS_PER_DOCTOR,
                slot: k % SLOTS_PER_DOCTOR,
                plan: s.plan,
            })
            .collect();
        let targets: Vec<usize> = (0..s.requests).map(|i| i % s.cells).collect();
        let scenario = Scenario {
            name: "spread",
            describe: format!(
                "{} requests over {} cells × {} places (capacity {})",
                s.requests,
                s.cells,
                s.plan,
                s.cells * s.plan
            ),
            lpu: ids.lpu(1),
            cells,
            targets,
        };
        failures.extend(
            scenario
                .run(base, access, &admin, &ids, plan.concurrency, pid)
                .await,
        );
    }
    if let Some(n) = plan.one_cell {
        let scenario = Scenario {
            name: "one-cell",
            describe: format!("{n} requests for one cell of {n} places"),
            lpu: ids.lpu(2),
            cells: vec![Slot {
                guid: ids.cell(2, 0),
                doctor: spread_doctors,
                slot: 0,
                plan: n,
            }],
            targets: vec![0; n],
        };
        failures.extend(
            scenario
                .run(base, access, &admin, &ids, plan.concurrency, pid)
                .await,
        );
    }
    failures
}

async fn put(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
    doc: &serde_json::Value,
) -> Result<(), String> {
    let r = client
        .put(format!("{base}{path}"))
        .bearer_auth(key)
        .json(doc)
        .send()
        .await
        .map_err(|e| format!("PUT {path}: {e}"))?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("PUT {path}: {status}: {body}"))
    }
}

#[derive(Debug)]
struct Slot {
    guid: String,
    doctor: usize,
    slot: usize,
    plan: usize,
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    describe: String,
    lpu: String,
    cells: Vec<Slot>,
    /// The cell of each request, by index into `cells`.
    targets: Vec<usize>,
}

/// What one request got.
#[derive(Debug)]
enum Outcome {
    Ticket {
        cell: usize,
        guid: String,
        num: String,
    },
    Full,
    Other(String),
}

#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<Duration>,
    outcomes: Vec<Outcome>,
}

/// Makes each signed request distinct from every other one signed in the same second.
#[derive(Debug, Default)]
struct Distinct {
    second: Cell<i64>,
    seq: Cell<u64>,
}

impl Distinct {
    /// The timestamp to sign and the request's number within that second.
    fn next(&self) -> (i64, u64) {
        let now = chrono::Utc::now().timestamp();
        if now != self.second.get() {
            self.second.set(now);
            self.seq.set(0);
        }
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        (now, seq)
    }
}

fn body(cell: &str, seq: u64) -> Vec<u8> {
    // One hold length for every request, as a real client sends; trailing whitespace
    // (JSON ignores it) keeps the requests of one second distinct.
    let pad = " ".repeat(seq as usize);
    format!(
        "{{\"timeTable\":\"{cell}\",\"ageCategory\":\"ADULT\",\"reserveTime\":{MIN_RESERVE}}}{pad}"
    )
    .into_bytes()
}

impl Scenario {
    fn schedule(&self, ids: &Ids) -> serde_json::Value {
        serde_json::json!({
            "lpus": [{"guid": self.lpu, "name": format!("Поликлиника нагрузки ({})", self.name)}],
            "cells": self.cells.iter().map(|c| {
                let begin = 9 * 60 + 15 * c.slot;
                let end = begin + 15;
                serde_json::json!({
                    "guid": c.guid,
                    "lpuGuid": self.lpu,
                    "docGuid": ids.doctor_guid(c.doctor),
                    "beginTime": format!("2031-01-01T{:02}:{:02}:00+03:00", begin / 60, begin % 60),
                    "endTime": format!("2031-01-01T{:02}:{:02}:00+03:00", end / 60, end % 60),
                    "planCount": c.plan,
                    "usedCount": 0,
                })
            }).collect::<Vec<_>>()
        })
    }

    async fn run(
        &self,
        base: &str,
        access: &Access,
        admin: &reqwest::Client,
        ids: &Ids,
        concurrency: usize,
        pid: Option<u32>,
    ) -> Vec<String> {
        let started = Instant::now();
        if let Err(e) = put(
            admin,
            base,
            "/admin/schedule",
            &access.admin_key,
            &self.schedule(ids),
        )
        .await
        {
            return vec![format!("{}: {e}", self.name)];
        }
        println!(
            "booking_load: {}: schedule of {} cells loaded in {:.2} s",
            self.name,
            self.cells.len(),
            started.elapsed().as_secs_f64()
        );

        let path = Rc::new(format!("/visit/{}/reservation?fullResponse=true", self.lpu));
        let url = Rc::new(format!("{base}{path}"));
        let targets = Rc::new(self.targets.clone());
        let guids: Rc<Vec<String>> = Rc::new(self.cells.iter().map(|c| c.guid.clone()).collect());
        let key = Rc::new(access.key.clone());
        let client = Rc::new(access.client.clone());
        let secret = Rc::new(access.secret.clone());
        let next = Rc::new(Cell::new(0usize));
        let distinct = Rc::new(Distinct::default());
        let tally = Rc::new(RefCell::new(Tally::default()));
        let local = tokio::task::LocalSet::new();
        let cpu_before = pid.and_then(cpu_ticks);
        let load_before = loadavg();
        let started = Instant::now();
        for _ in 0..concurrency.min(self.targets.len()) {
            // One client per worker, one idle connection kept: its own keep-alive
            // HTTP/1.1 connection (the crate is built without HTTP/2).
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let (path, url, targets, guids) =
                (path.clone(), url.clone(), targets.clone(), guids.clone());
            let (key, client, secret) = (key.clone(), client.clone(), secret.clone());
            let (next, distinct, tally) = (next.clone(), distinct.clone(), tally.clone());
            local.spawn_local(async move {
                loop {
                    let i = next.get();
                    let Some(&cell) = targets.get(i) else {
                        break;
                    };
                    next.set(i + 1);
                    let (ts, seq) = distinct.next();
                    let ts = ts.to_string();
                    let body = body(&guids[cell], seq);
                    let signature =
                        signing::sign(&secret, &signing::canonical("POST", &path, &ts, &body));
                    let sent = Instant::now();
                    let outcome = match http
                        .post(url.as_str())
                        .bearer_auth(key.as_str())
                        .header("content-type", "application/json")
                        .header("x-client-id", client.as_str())
                        .header("x-timestamp", &ts)
                        .header("x-signature", signature)
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            match r.bytes().await {
                                Ok(b) => classify(status, &b, cell),
                                Err(e) => Outcome::Other(format!("reading the answer: {e}")),
                            }
                        }
                        Err(e) => Outcome::Other(format!("sending: {e}")),
                    };
                    let latency = sent.elapsed();
                    let mut t = tally.borrow_mut();
                    t.latencies.push(latency);
                    t.outcomes.push(outcome);
                }
            });
        }
        local.await;
        let elapsed = started.elapsed();
        let cpu_s = pid
            .and_then(cpu_ticks)
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before) as f64 / clock_ticks());
        let tally = std::mem::take(&mut *tally.borrow_mut());
        println!(
            "\nbooking_load: {}: {}, concurrency {concurrency} ({load_before} before, {} after)",
            self.name,
            self.describe,
            loadavg()
        );
        self.check(tally, elapsed, cpu_s)
    }

    /// Prints the figures and returns every check that failed.
    fn check(&self, mut tally: Tally, elapsed: Duration, cpu_s: Option<f64>) -> Vec<String> {
        let n = tally.latencies.len();
        tally.latencies.sort();
        let at = |q: f64| {
            tally
                .latencies
                .get(((n as f64 * q).ceil() as usize).clamp(1, n.max(1)) - 1)
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3
        };
        let mut tickets = vec![0usize; self.cells.len()];
        let mut guids = HashSet::new();
        let mut nums = HashSet::new();
        let (mut full, mut other) = (0usize, Vec::new());
        let (mut guid_twice, mut num_twice) = (0usize, 0usize);
        for o in &tally.outcomes {
            match o {
                Outcome::Ticket { cell, guid, num } => {
                    tickets[*cell] += 1;
                    guid_twice += usize::from(!guids.insert(guid.clone()));
                    num_twice += usize::from(!nums.insert(num.clone()));
                }
                Outcome::Full => full += 1,
                Outcome::Other(why) => other.push(why.clone()),
            }
        }
        let ok: usize = tickets.iter().sum();
        println!(
            "booking_load: {}: {:.0} requests/s ({n} in {:.2} s); latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.name,
            n as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            at(0.50),
            at(0.90),
            at(0.99),
            tally
                .latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        );
        let cpu = cpu_s.map_or_else(String::new, |s| {
            format!(
                "; daemon CPU {s:.2} s, {:.0} µs per request",
                s * 1e6 / n.max(1) as f64
            )
        });
        println!(
            "booking_load: {}: 200 (ticket) {ok}, 400/4009 (full) {full}, other {}{cpu}",
            self.name,
            other.len()
        );

        let mut failures = Vec::new();
        let fail = |failures: &mut Vec<String>, what: String| {
            failures.push(format!("{}: {what}", self.name));
        };
        if n != self.targets.len() {
            fail(
                &mut failures,
                format!("{n} answers for {} requests", self.targets.len()),
            );
        }
        if !other.is_empty() {
            fail(
                &mut failures,
                format!(
                    "{} answers neither a ticket nor 4009, e.g. {:?}",
                    other.len(),
                    &other[..other.len().min(3)]
                ),
            );
        }
        let mut sent = vec![0usize; self.cells.len()];
        for &t in &self.targets {
            sent[t] += 1;
        }
        let mut expected = 0;
        let mut wrong: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for (k, cell) in self.cells.iter().enumerate() {
            let want = sent[k].min(cell.plan);
            expected += want;
            if tickets[k] != want {
                wrong.insert(k, (tickets[k], want));
            }
        }
        if ok != expected {
            fail(
                &mut failures,
                format!("{ok} tickets where capacity allows exactly {expected}"),
            );
        }
        if !wrong.is_empty() {
            let shown: Vec<String> = wrong
                .iter()
                .take(5)
                .map(|(k, (got, want))| format!("{} got {got}, not {want}", self.cells[*k].guid))
                .collect();
            fail(
                &mut failures,
                format!(
                    "{} cells with a wrong ticket count: {}",
                    wrong.len(),
                    shown.join("; ")
                ),
            );
        }
        if other.is_empty() && full != self.targets.len() - expected {
            fail(
                &mut failures,
                format!(
                    "{full} refused as full, not {}",
                    self.targets.len() - expected
                ),
            );
        }
        if guid_twice > 0 {
            fail(
                &mut failures,
                format!("{guid_twice} ticket GUIDs answered twice"),
            );
        }
        if num_twice > 0 {
            fail(
                &mut failures,
                format!("{num_twice} ticket numbers (`num`) given twice"),
            );
        }
        if elapsed >= Duration::from_secs(MIN_RESERVE * 60) {
            fail(
                &mut failures,
                format!(
                    "the run took {:.0} s, longer than the shortest hold ({MIN_RESERVE} min): places may have been freed while it ran",
                    elapsed.as_secs_f64()
                ),
            );
        }
        failures
    }
}

/// A ticket (200 with `ticketGuid` and `num`), full (400 with code 4009), or anything else.
fn classify(status: u16, body: &[u8], cell: usize) -> Outcome {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    match (status, &json) {
        (200, Some(v)) => match (text(v, "ticketGuid"), text(v, "num")) {
            (Some(guid), Some(num)) if !guid.is_empty() => Outcome::Ticket { cell, guid, num },
            _ => Outcome::Other(format!("200 without ticketGuid and num: {}", snippet(body))),
        },
        (400, Some(v)) if v.get("code").and_then(serde_json::Value::as_u64) == Some(4009) => {
            Outcome::Full
        }
        _ => Outcome::Other(format!("{status}: {}", snippet(body))),
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// CPU ticks (utime + stime, `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `getconf CLK_TCK`, 100 if it cannot be read.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<&str> = l.split_whitespace().take(3).collect();
    format!("load average {}", v.join(" "))
}
