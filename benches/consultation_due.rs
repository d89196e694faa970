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

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/fake_ami.rs"]
mod fake_ami;

use std::net::TcpListener;
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
    let http_port = daemon::free_port();
    let data = tempfile::tempdir().unwrap();
    let mut daemon = daemon::command(ami_port, http_port, data.path())
        .spawn()
        .expect("start medcall");
    // Every Originate's arrival time and its Account.
    let starts: Arc<Mutex<Vec<Start>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&starts);
    fake_ami::serve(
        ami,
        Arc::new(move |fields| {
            if fake_ami::get(fields, "Action").eq_ignore_ascii_case("Originate") {
                let account = fake_ami::get(fields, "Account").to_string();
                seen.lock().unwrap().push((Utc::now(), account));
            }
        }),
    );
    // Whole seconds: the instant every start is measured against.
    let begin = DateTime::from_timestamp(
        (Utc::now() + chrono::Duration::seconds(lead)).timestamp(),
        0,
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let api = daemon::Api::new(http_port, data.path()).await;
        api.one_doctor().await;
        let body = serde_json::json!({"doctorId": 1, "patientFullName": "Иванов Иван",
            "videoSupport": true, "beginAtUtc": begin.to_rfc3339()})
        .to_string();
        let created = Instant::now();
        api.post_all("/api/v1/voiprequest/start", vec![body; count], 32)
            .await;
        let took = created.elapsed();
        let left = (begin - Utc::now()).num_milliseconds();
        println!(
            "created {count} consultations in {:.1} s ({:.0}/s); {left} ms before beginAtUtc",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        assert!(
            left > 0,
            "creating took longer than the lead: raise LEAD_SECONDS"
        );
        let deadline =
            Instant::now() + Duration::from_millis(left as u64) + Duration::from_secs(60);
        loop {
            let n = starts
                .lock()
                .unwrap()
                .iter()
                .filter(|(at, _)| *at >= begin)
                .count();
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
