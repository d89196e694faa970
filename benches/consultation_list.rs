//! get-all over many consultations: a store filled with COUNT consultations (half voip,
//! half callbacks, half of the voip ones with video, statuses spread as a clinic's would
//! be after a while: mostly ended), then every documented filter and order asked
//! QUERIES times through `Store::consultations`, the call the route makes. Prints p50
//! and p99 of each.
//!
//!     cargo bench --bench consultation_list -- [COUNT] [QUERIES]
//!
//! The rows are written with SQL in one transaction (the create path commits each one
//! on its own: a million fsyncs would measure the disk, not the search).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use medcall::consultation::model::{Kind, Status};
use medcall::store::Store;
use medcall::store::consultation::{ListQuery, Order};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo test --benches`: a toy-sized run that fails if a page is wrong.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let (count, queries) = if smoke {
        (2_000, 5)
    } else {
        (
            nums.first().copied().unwrap_or(1_000_000),
            nums.get(1).copied().unwrap_or(200),
        )
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(count, queries as usize, smoke));
}

/// The status of the `i`-th row: 70 % Completed, 10 % Missed, 5 % each Cancelled,
/// Scheduled, Failed, and the rest spread over the others.
fn status_of(i: u64) -> Status {
    match i % 100 {
        0..70 => Status::Completed,
        70..80 => Status::Missed,
        80..85 => Status::Cancelled,
        85..90 => Status::Scheduled,
        90..95 => Status::Failed,
        95 => Status::Terminated,
        96 => Status::InProgress,
        97 => Status::CallingDoctor,
        98 => Status::WaitingForPatient,
        _ => Status::CallingPatient,
    }
}

async fn fill(store: &Store, count: u64) {
    store
        .call(move |conn| {
            conn.execute_batch(
                "INSERT INTO directory_doctors (id, guid, full_name, role, speciality, updated_at) \
                 VALUES (1, '00000000-0000-4000-8000-000000000001', 'D', '', '', '2026-01-01T00:00:00.000000Z')",
            )?;
            conn.execute_batch("BEGIN")?;
            {
                let mut row = conn.prepare(
                    "INSERT INTO consultations (id, kind, doctor_id, patient_full_name, video, \
                     phone_code, phone_number, status, created, updated, begin_at, duration_min, \
                     pbx) VALUES (?1, ?2, 1, 'Иванов Иван Иванович', ?3, ?4, ?5, ?6, ?7, ?7, ?7, 30, 'main')",
                )?;
                let mut history = conn.prepare(
                    "INSERT INTO consultation_history (consultation_id, seq, status, at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                    .unwrap()
                    .to_utc();
                for i in 1..=count {
                    let voip = i % 2 == 0;
                    let at = start + chrono::Duration::seconds(i as i64 * 20);
                    let at = medcall::store::StoredTime::at(at);
                    let status = status_of(i / 2);
                    row.execute(rusqlite::params![
                        i as i64,
                        if voip { "voip" } else { "callback" },
                        i64::from(voip && i % 4 == 0),
                        (!voip).then_some("7"),
                        (!voip).then_some("9001234567"),
                        status.rank(),
                        at,
                    ])?;
                    history.execute(rusqlite::params![i as i64, 0, 0, at])?;
                    if status != Status::Scheduled {
                        history.execute(rusqlite::params![i as i64, 1, status.rank(), at])?;
                    }
                }
            }
            conn.execute_batch("COMMIT; ANALYZE")?;
            Ok(())
        })
        .await
        .unwrap();
}

fn base(kind: Kind) -> ListQuery {
    ListQuery {
        kind,
        ids: Vec::new(),
        statuses: Vec::new(),
        order: Order::Created,
        asc: false,
        limit: 20,
        offset: 0,
        video: None,
    }
}

async fn run(count: u64, queries: usize, smoke: bool) {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&temp.path().join("medcall.db")).unwrap();
    let started = Instant::now();
    fill(&store, count).await;
    println!(
        "filled {count} consultations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut cases: Vec<(String, ListQuery)> = Vec::new();
    for kind in [Kind::Voip, Kind::Callback] {
        let k = kind.as_str();
        for asc in [false, true] {
            let dir = if asc { "asc" } else { "desc" };
            cases.push((
                format!("{k} no filter, Created {dir}"),
                ListQuery { asc, ..base(kind) },
            ));
            cases.push((
                format!("{k} no filter, Status {dir}"),
                ListQuery {
                    asc,
                    order: Order::Status,
                    ..base(kind)
                },
            ));
        }
        cases.push((
            format!("{k} statuses=Completed"),
            ListQuery {
                statuses: vec![Status::Completed],
                ..base(kind)
            },
        ));
        cases.push((
            format!("{k} statuses=InProgress (rare)"),
            ListQuery {
                statuses: vec![Status::InProgress],
                ..base(kind)
            },
        ));
        cases.push((
            format!("{k} statuses=Missed,Cancelled,Failed"),
            ListQuery {
                statuses: vec![Status::Missed, Status::Cancelled, Status::Failed],
                ..base(kind)
            },
        ));
        cases.push((
            format!("{k} statuses=Missed,Cancelled, Status asc"),
            ListQuery {
                statuses: vec![Status::Missed, Status::Cancelled],
                order: Order::Status,
                asc: true,
                ..base(kind)
            },
        ));
        cases.push((
            format!("{k} 20 ids"),
            ListQuery {
                ids: (0..20)
                    .map(|i| (i * 977 + 2) as i64 % count as i64 + 1)
                    .collect(),
                ..base(kind)
            },
        ));
        cases.push((
            format!("{k} offset 1000"),
            ListQuery {
                offset: 1000,
                ..base(kind)
            },
        ));
        if kind == Kind::Voip {
            cases.push((
                "voip videoSupport=true".into(),
                ListQuery {
                    video: Some(true),
                    ..base(kind)
                },
            ));
            cases.push((
                "voip videoSupport=false, statuses=Completed, Status".into(),
                ListQuery {
                    video: Some(false),
                    statuses: vec![Status::Completed],
                    order: Order::Status,
                    ..base(kind)
                },
            ));
        }
    }
    println!(
        "{:<52} {:>9} {:>9} {:>7} {:>9}",
        "query", "p50 ms", "p99 ms", "items", "total"
    );
    for (name, q) in cases {
        let mut times = Vec::with_capacity(queries);
        let mut last = None;
        for _ in 0..queries {
            let t = Instant::now();
            let page = store.consultations(q.clone()).await.unwrap();
            times.push(t.elapsed());
            last = Some(page);
        }
        let page = last.unwrap();
        assert!(page.items.len() <= q.limit as usize);
        assert!(page.total >= page.items.len() as u64, "{name}");
        assert!(
            page.items.iter().all(|c| c.kind == q.kind
                && (q.statuses.is_empty() || q.statuses.contains(&c.status))
                && q.video.is_none_or(|v| c.video_support == Some(v))),
            "{name}: an item outside the filter"
        );
        if q.ids.is_empty() && q.offset == 0 {
            assert_eq!(page.items.len(), 20.min(page.total as usize), "{name}");
        }
        times.sort();
        let pct = |p: f64| -> Duration { times[((times.len() as f64 - 1.0) * p).round() as usize] };
        println!(
            "{name:<52} {:>9.3} {:>9.3} {:>7} {:>9}",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            page.items.len(),
            page.total
        );
    }
    if smoke {
        println!("(toy-sized run: no claim on timings)");
    }
}
