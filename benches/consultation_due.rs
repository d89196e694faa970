//! Many consultations due at once: COUNT consultations created over HTTP with the same
//! `beginAtUtc`, against a real `medcall run` whose PBX is a fake AMI server in this
//! process that answers every action at once. The fake server timestamps each Originate
//! of a doctor (its `Account` is the consultation's conference); the figure is how late
//! each start was against `beginAtUtc`, the last one above all.
//!
//!     cargo bench --bench consultation_due -- [COUNT] [LEAD_SECONDS]
//!
//! LEAD_SECONDS (default 60) is how far ahead `beginAtUtc` is set: every create must be
//! done by then (the tool says how long creating took).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/fake_ami.rs"]
mod fake_ami;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// An Originate's arrival time and its `Account` (the conference).
type Start = (DateTime<Utc>, String);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let (count, lead) = if smoke {
        (50, 4)
    } else {
        (
            nums.first().copied().unwrap_or(10_000) as usize,
            nums.get(1).copied().unwrap_or(60) as i64,
        )
    };
    let ami = TcpListener::bind("127.0.0.1:0").unwrap();
    let ami_port = ami.local_addr().unwrap().port();
    let http_port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut daemon = start_daemon(ami_port, http_port, data.path());
    // Every Originate's arrival time and its Account.
    let starts: Arc<Mutex<Vec<Start>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&starts);
    std::thread::spawn(move || {
        for stream in ami.incoming() {
            let Ok(stream) = stream else { return };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                if writer
                    .write_all(b"Asterisk Call Manager/11.0.0\r\n")
                    .is_err()
                {
                    return;
                }
                while let Some(fields) = fake_ami::read_action(&mut reader) {
                    let action = fake_ami::get(&fields, "Action");
                    if action.eq_ignore_ascii_case("Originate") {
                        let account = fake_ami::get(&fields, "Account").to_string();
                        seen.lock().unwrap().push((Utc::now(), account));
                    }
                    let id = fake_ami::get(&fields, "ActionID");
                    if writer
                        .write_all(fake_ami::reply(action, id).as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    // Whole seconds: the instant every start is measured against.
    let begin = DateTime::from_timestamp(
        (Utc::now() + chrono::Duration::seconds(lead)).timestamp(),
        0,
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let key = wait_key(data.path()).await;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{http_port}");
        let directory = r#"{"doctors": [{"id": 1, "guid": "00000000-0000-4000-8000-000000000001", "fullName": "D", "role": "", "speciality": "", "endpoint": "PJSIP/2001"}]}"#;
        let r = http
            .put(format!("{base}/admin/directory"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(directory)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = serde_json::json!({"doctorId": 1, "patientFullName": "Иванов Иван",
            "videoSupport": true, "beginAtUtc": begin.to_rfc3339()})
        .to_string();
        let created = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..32 {
            let (http, base, key, body, next) =
                (http.clone(), base.clone(), key.clone(), body.clone(), Arc::clone(&next));
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                    let r = http
                        .post(format!("{base}/api/v1/voiprequest/start"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let took = created.elapsed();
        let left = (begin - Utc::now()).num_milliseconds();
        println!(
            "created {count} consultations in {:.1} s ({:.0}/s); {left} ms before beginAtUtc",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        assert!(left > 0, "creating took longer than the lead: raise LEAD_SECONDS");
        let deadline = Instant::now() + Duration::from_millis(left as u64) + Duration::from_secs(60);
        loop {
            let n = starts.lock().unwrap().iter().filter(|(at, _)| *at >= begin).count();
            if n >= count {
                break;
            }
            assert!(Instant::now() < deadline, "only {n} of {count} started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let starts = starts.lock().unwrap().clone();
    let mut late: Vec<i64> = starts
        .iter()
        .filter(|(_, account)| account.starts_with("consult-"))
        .map(|(at, _)| (*at - begin).num_microseconds().unwrap())
        .collect();
    assert_eq!(late.len(), count, "one start per consultation");
    let accounts: std::collections::HashSet<&str> =
        starts.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(accounts.len(), count, "each consultation started once");
    assert!(late.iter().all(|us| *us >= 0), "a start before beginAtUtc");
    late.sort();
    let pct = |p: f64| late[((late.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
    println!(
        "start lateness against beginAtUtc: first {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, last {:.1} ms",
        pct(0.0),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    if smoke {
        println!("(toy-sized run: no claim on timings)");
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_key(data: &std::path::Path) -> String {
    let path = data.join("admin.key");
    for _ in 0..200 {
        if let Ok(key) = std::fs::read_to_string(&path) {
            if !key.trim().is_empty() {
                return key.trim().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no admin key");
}

fn start_daemon(ami_port: u16, http_port: u16, data: &std::path::Path) -> Child {
    let bin = env!("CARGO_BIN_EXE_medcall");
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg("run")
        .env("MEDCALL__HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("MEDCALL__AGI__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__STORE__PATH", data.join("medcall.db"))
        .env("MEDCALL__PBX__0__PORT", ami_port.to_string())
        .env("MEDCALL__PBX__0__AUTH", "plain")
        .env("MEDCALL__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd.spawn().expect("start medcall")
}
