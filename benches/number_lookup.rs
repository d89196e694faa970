//! Number lookup with a million clients: import speed, then `getNumberFromId` over HTTP
//! and the `number-from-id` FastAGI route, each at concurrency 64 against the running
//! daemon (pinned to core 0 with `taskset` when present; the tool pins itself to core 1).
//!
//!     cargo bench --bench number_lookup -- [CLIENTS] [SECONDS]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/daemon.rs"]
mod daemon;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONCURRENCY: usize = 64;

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: then a smoke run of
    // the same path (an import of a few clients, a second of lookups each way) that fails
    // if a lookup fails or none ran, with no claim on timings. `--list` does nothing.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let (clients, seconds) = if smoke {
        (100, 1)
    } else {
        (
            nums.first().copied().unwrap_or(1_000_000),
            nums.get(1).copied().unwrap_or(10),
        )
    };
    let bin = env!("CARGO_BIN_EXE_medcall");
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("clients.json");
    write_document(&doc, clients);
    let db = dir.path().join("medcall.db");

    let started = Instant::now();
    let out = Command::new(bin)
        .args(["import", "clients"])
        .arg(&doc)
        .env("MEDCALL__STORE__PATH", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let import = started.elapsed();
    println!(
        "number_lookup: imported {clients} clients, {} contracts, {clients} requests ({} MB JSON) in {:.2} s: {:.0} clients/s",
        clients / 10,
        std::fs::metadata(&doc).unwrap().len() / 1_000_000,
        import.as_secs_f64(),
        clients as f64 / import.as_secs_f64()
    );

    let http_port = free_port();
    let agi_port = free_port();
    let key = "bench-events-key";
    let sha = {
        use std::process::Stdio;
        let mut c = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(key.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        String::from_utf8(o.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let mut cmd = daemon::pinned(bin);
    let mut daemon = cmd
        .arg("run")
        .env("MEDCALL__HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("MEDCALL__AGI__LISTEN", format!("127.0.0.1:{agi_port}"))
        .env("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__STORE__PATH", &db)
        .env("MEDCALL__PBX__0__PORT", free_port().to_string())
        .env("MEDCALL__LOG__LEVEL", "warn")
        .env("MEDCALL__API_KEYS__0__NAME", "bench")
        .env("MEDCALL__API_KEYS__0__SHA256", &sha)
        .env("MEDCALL__API_KEYS__0__SCOPES", "[\"events\"]")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    daemon::pin_self_to_core_1();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (http, agi) = rt.block_on(async {
        wait_for_port(http_port).await;
        let http = run_closed_loop(seconds, clients, move |n| http_lookup(http_port, key, n)).await;
        let http_counts = (http.latencies.len(), http.errors);
        println!(
            "number_lookup: HTTP getNumberFromId, concurrency {CONCURRENCY}: {}",
            http.report(seconds)
        );
        let agi = run_closed_loop(seconds, clients, move |n| agi_lookup(agi_port, n)).await;
        let agi_counts = (agi.latencies.len(), agi.errors);
        println!(
            "number_lookup: FastAGI number-from-id, concurrency {CONCURRENCY}: {}",
            agi.report(seconds)
        );
        (http_counts, agi_counts)
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    if smoke {
        for (name, (answered, errors)) in [("HTTP", http), ("FastAGI", agi)] {
            assert!(answered > 0, "{name}: no lookup answered");
            assert_eq!(errors, 0, "{name}: lookups failed");
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16) {
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("daemon did not start");
}

fn write_document(path: &std::path::Path, n: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(f, "{{\"clients\":[").unwrap();
    for i in 1..=n {
        let sep = if i > 1 { "," } else { "" };
        write!(f, "{sep}{{\"id\":{i},\"fullName\":\"Пациент {i}\",\"phones\":[\"+7 9{:02} {:03}-{:02}-{:02}\",\"8 (8{:02}) {:07}\"]}}", i % 100, (i / 100) % 1000, (i / 7) % 100, i % 100, i % 100, i % 10_000_000).unwrap();
    }
    write!(f, "],\"contracts\":[").unwrap();
    for i in 1..=n / 10 {
        let sep = if i > 1 { "," } else { "" };
        write!(
            f,
            "{sep}{{\"id\":{i},\"clientId\":{i},\"phones\":[\"7900{i:07}\",\"7901{i:07}\"]}}"
        )
        .unwrap();
    }
    write!(f, "],\"requests\":[").unwrap();
    for i in 1..=n {
        let sep = if i > 1 { "," } else { "" };
        write!(f, "{sep}{{\"id\":{i},\"clientId\":{i}}}").unwrap();
    }
    writeln!(f, "]}}").unwrap();
}

#[derive(Default)]
struct Figures {
    latencies: Vec<Duration>,
    errors: u64,
}

impl Figures {
    fn report(mut self, seconds: u64) -> String {
        self.latencies.sort();
        let n = self.latencies.len();
        let at = |q: f64| {
            self.latencies
                .get(((n as f64 * q) as usize).min(n.saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            n as f64 / seconds as f64,
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            self.latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
            self.errors
        )
    }
}

async fn run_closed_loop<F, Fut>(seconds: u64, clients: u64, op: F) -> Figures
where
    F: Fn(u64) -> Fut + Copy + 'static,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let local = tokio::task::LocalSet::new();
    let mut handles = Vec::new();
    for w in 0..CONCURRENCY as u64 {
        handles.push(local.spawn_local(async move {
            let mut f = Figures::default();
            let mut n = w * 7919;
            while Instant::now() < deadline {
                // Wrapping as in the bench profile, also in the test profile's smoke run.
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407)
                    % clients
                    + 1;
                let t = Instant::now();
                if op(n).await {
                    f.latencies.push(t.elapsed());
                } else {
                    f.errors += 1;
                }
            }
            f
        }));
    }
    local
        .run_until(async move {
            let mut all = Figures::default();
            for h in handles {
                let f = h.await.unwrap();
                all.latencies.extend(f.latencies);
                all.errors += f.errors;
            }
            all
        })
        .await
}

/// One request on a fresh connection (as a CRM without keep-alive would).
async fn http_lookup(port: u16, key: &str, n: u64) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req = format!(
        "GET /api/getNumberFromId?number=%2B{n}s{n} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::with_capacity(512);
    if s.read_to_end(&mut buf).await.is_err() {
        return false;
    }
    buf.starts_with(b"HTTP/1.1 200") && buf.windows(7).any(|w| w == b"\"number")
}

async fn agi_lookup(port: u16, n: u64) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let env = format!(
        "agi_network: yes\nagi_network_script: number-from-id\nagi_request: agi://127.0.0.1/number-from-id\nagi_channel: PJSIP/operator-00000001\n\
         agi_uniqueid: 1800000000.{n}\nagi_callerid: 100\nagi_calleridname: Operator\nagi_context: medcall-operator\nagi_extension: +{n}s{n}\n\
         agi_priority: 3\nagi_accountcode: \nagi_arg_1: +{n}s{n}\n\n"
    );
    if s.write_all(env.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::with_capacity(256);
    let mut answered = 0;
    let mut ok = false;
    loop {
        let mut chunk = [0u8; 512];
        let Ok(k) = s.read(&mut chunk).await else {
            return false;
        };
        if k == 0 {
            return ok && answered == 2;
        }
        buf.extend_from_slice(&chunk[..k]);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if line.starts_with(b"SET VARIABLE \"MEDCALL_NUMBER\" \"8") {
                ok = true;
            }
            answered += 1;
            if s.write_all(b"200 result=1\n").await.is_err() {
                return false;
            }
        }
    }
}
