//! Webhook throughput: COUNT consultations, each with an `externalNotificationUrl` on a
//! receiver in this process (loopback, answering 200 at once), are cancelled over HTTP
//! as fast as 32 clients can; each cancel writes one notification to the outbox, and
//! the worker delivers it as a signed `GET`. The daemon's PBX is a fake AMI server that
//! answers everything; the consultations are a day ahead, so nothing else happens.
//!
//!     cargo bench --bench webhook_throughput -- [COUNT] [--backlog]
//!
//! The figures are deliveries per second at the receiver (first to last arrival) and
//! each notification's latency from the cancel's answer to its arrival. Live, the
//! deliveries share the daemon's core with the cancels and can go no faster than they
//! come; with `--backlog` the receiver holds every request until all COUNT cancels are
//! answered, so the outbox drains a backlog of COUNT at its own pace (the rate is then
//! counted from the receiver opening).

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

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// What the receiver saw of one delivery: when, for which consultation, signed or not.
type Arrival = (Instant, i64, bool);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let backlog = std::env::args().any(|a| a == "--backlog");
    let count = if smoke {
        50
    } else {
        std::env::args()
            .filter_map(|a| a.parse().ok())
            .next()
            .unwrap_or(10_000)
    };
    let ami = TcpListener::bind("127.0.0.1:0").unwrap();
    let ami_port = ami.local_addr().unwrap().port();
    fake_ami::serve(ami, Arc::new(|_| {}));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let (open, gate) = tokio::sync::watch::channel(!backlog);
    let hook_port = runtime.block_on(receiver(Arc::clone(&arrivals), gate));
    let http_port = daemon::free_port();
    let data = tempfile::tempdir().unwrap();
    let mut daemon = daemon::command(ami_port, http_port, data.path())
        .env("MEDCALL__MEDIA__ALLOW_NETWORKS", r#"["127.0.0.1/32"]"#)
        .env("MEDCALL__WEBHOOKS__SECRET", "load-tool-secret")
        // Held requests (`--backlog`) must not time out.
        .env("MEDCALL__WEBHOOKS__TIMEOUT_MS", "600000")
        .spawn()
        .expect("start medcall");
    let (cancelled, delivered_by) = runtime.block_on(async {
        let api = daemon::Api::new(http_port, data.path()).await;
        api.one_doctor().await;
        let begin = chrono::Utc::now() + chrono::Duration::days(1);
        let body = serde_json::json!({"doctorId": 1, "patientFullName": "Иванов Иван",
            "videoSupport": true, "beginAtUtc": begin.to_rfc3339(),
            "externalNotificationUrl": format!("http://127.0.0.1:{hook_port}/hook")})
        .to_string();
        let created = api
            .post_all("/api/v1/voiprequest/start", vec![body; count], 32)
            .await;
        let ids: Vec<i64> = created
            .iter()
            .map(|(_, c)| c["id"].as_i64().unwrap())
            .collect();
        let cancels = ids
            .iter()
            .map(|id| serde_json::json!({"requestId": id}).to_string())
            .collect();
        let started = Instant::now();
        let answers = api
            .post_all("/api/v1/voiprequest/terminate", cancels, 32)
            .await;
        let took = started.elapsed();
        println!(
            "cancelled {count} consultations in {:.2} s ({:.0}/s)",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        let mut cancelled = HashMap::new();
        for (id, (at, answer)) in ids.iter().zip(answers) {
            assert_eq!(answer["success"], true, "{answer}");
            cancelled.insert(*id, at);
        }
        let opened = Instant::now();
        open.send(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while arrivals.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} delivered",
                arrivals.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (cancelled, if backlog { opened } else { started })
    });
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), count, "one delivery per notification");
    assert!(
        arrivals.iter().all(|(_, _, signed)| *signed),
        "an unsigned delivery"
    );
    let mut latency: Vec<f64> = arrivals
        .iter()
        .map(|(at, id, _)| {
            let acked = cancelled
                .get(id)
                .expect("a delivery for a consultation not cancelled");
            // A delivery can beat the cancel's answer to the client: then 0.
            at.saturating_duration_since(*acked).as_secs_f64() * 1000.0
        })
        .collect();
    let distinct: std::collections::HashSet<i64> = arrivals.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(
        distinct.len(),
        count,
        "each consultation's notification once"
    );
    latency.sort_by(f64::total_cmp);
    let first = if backlog {
        delivered_by
    } else {
        arrivals.iter().map(|(at, _, _)| *at).min().unwrap()
    };
    let last = arrivals.iter().map(|(at, _, _)| *at).max().unwrap();
    let span = last.duration_since(first).as_secs_f64();
    let pct = |p: f64| latency[((latency.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "delivered {count} webhooks in {span:.2} s ({:.0}/s at the receiver); \
         the last {:.2} s after the {}",
        count as f64 / span.max(1e-9),
        last.duration_since(delivered_by).as_secs_f64(),
        if backlog {
            "receiver opened"
        } else {
            "first cancel"
        }
    );
    println!(
        "cancel answered → webhook arrived: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
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

/// Starts the webhook receiver on a loopback port of its own and returns the port.
/// Each request waits for `gate` to be open before it is counted and answered.
async fn receiver(
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    gate: tokio::sync::watch::Receiver<bool>,
) -> u16 {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(move |headers: HeaderMap| {
            let arrivals = Arc::clone(&arrivals);
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let id = header("x-medcall-consultation-id")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(-1);
                let signed = header("x-medcall-signature").is_some();
                arrivals.lock().unwrap().push((Instant::now(), id, signed));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}
