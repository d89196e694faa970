//! The schedule import at scale: a directory of DOCTORS doctors, then a schedule of LPUS
//! LPUs and CELLS cells (random GUIDs, as a clinic's system hands them out) imported with
//! `medcall import schedule` into a fresh database, then the same document again (every
//! entry unchanged), then once more with every tenth cell changed. Prints each wall time.
//!
//!     cargo bench --bench schedule_import -- [CELLS] [LPUS] [DOCTORS]
//!
//! With `SCHEDULE_IMPORT_DIR` set, the documents and the database are written there and
//! kept (to profile an import by hand); else in a temporary directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: then a toy-sized run
    // of the same path that fails if an import fails or counts wrong, with no claim on
    // timings. `--list` does nothing.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let (cells, lpus, doctors) = if smoke {
        (500, 3, 7)
    } else {
        (
            nums.first().copied().unwrap_or(1_000_000),
            nums.get(1).copied().unwrap_or(100),
            nums.get(2).copied().unwrap_or(1000),
        )
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("SCHEDULE_IMPORT_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("medcall.db");
    let _ = std::fs::remove_file(&db);
    let directory = dir.join("directory.json");
    let schedule = dir.join("schedule.json");
    let changed = dir.join("schedule-changed.json");
    write_directory(&directory, doctors);
    write_schedule(&schedule, cells, lpus, doctors, 0);
    write_schedule(&changed, cells, lpus, doctors, 10);
    let mb = std::fs::metadata(&schedule).unwrap().len() as f64 / 1e6;

    import(&db, "directory", &directory);
    let runs = [
        (
            "fresh",
            &schedule,
            format!("cells {cells} inserted, 0 updated, 0 unchanged"),
        ),
        (
            "again",
            &schedule,
            format!("cells 0 inserted, 0 updated, {cells} unchanged"),
        ),
        (
            "every tenth cell changed",
            &changed,
            format!(
                "cells 0 inserted, {} updated, {} unchanged",
                cells.div_ceil(10),
                cells - cells.div_ceil(10)
            ),
        ),
    ];
    for (name, file, expected) in runs {
        let (took, summary) = import(&db, "schedule", file);
        assert!(summary.contains(&expected), "{name}: {summary}");
        println!(
            "schedule_import: {cells} cells, {lpus} LPUs, {doctors} doctors ({mb:.0} MB JSON), {name}: {:.2} s wall, {:.0} cells/s",
            took.as_secs_f64(),
            cells as f64 / took.as_secs_f64()
        );
    }
    println!(
        "schedule_import: database {:.0} MB",
        std::fs::metadata(&db).unwrap().len() as f64 / 1e6
    );
}

/// Runs `medcall import WHAT FILE`: its wall time and summary line.
fn import(db: &Path, what: &str, file: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_medcall"))
        .args(["import", what])
        .arg(file)
        .env("MEDCALL__STORE__PATH", db)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {stderr}");
    (took, stderr)
}

/// A GUID that looks random (version 4) and is the same for the same `(kind, n)`.
fn guid(kind: u64, n: u64) -> String {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(kind << 56 ^ n);
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

fn write_directory(path: &Path, doctors: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(f, "{{\"doctors\":[").unwrap();
    for i in 0..doctors {
        let sep = if i > 0 { "," } else { "" };
        write!(
            f,
            "{sep}{{\"id\":{},\"guid\":\"{}\",\"fullName\":\"Врач {i}\",\"speciality\":\"терапия\"}}",
            i + 1,
            guid(1, i)
        )
        .unwrap();
    }
    writeln!(f, "]}}").unwrap();
}

/// The schedule; with `change_every` > 0, every such cell has another room.
fn write_schedule(path: &Path, cells: u64, lpus: u64, doctors: u64, change_every: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(f, "{{\"lpus\":[").unwrap();
    for i in 0..lpus {
        let sep = if i > 0 { "," } else { "" };
        write!(
            f,
            "{sep}{{\"guid\":\"{}\",\"name\":\"Поликлиника {i}\",\"type\":[\"lpu\"],\"isChildrenPolyclinic\":{},\"isActive\":true,\"haveSchedule\":true,\"utcOffset\":\"+03:00\"}}",
            guid(2, i),
            i % 10 == 0
        )
        .unwrap();
    }
    write!(f, "],\"cells\":[").unwrap();
    let ages = [
        r#"["CHILD","TEEN","ADULT"]"#,
        r#"["ADULT"]"#,
        r#"["CHILD","TEEN"]"#,
    ];
    for i in 0..cells {
        let sep = if i > 0 { "," } else { "" };
        // Quarter-hour cells from 2030-01-01 08:00 Moscow time, 32 a day.
        let day = i / 32;
        let minute = 8 * 60 + (i % 32) * 15;
        let date = chrono_date(day);
        let room = if change_every > 0 && i % change_every == 0 {
            "B"
        } else {
            "A"
        };
        write!(
            f,
            "{sep}{{\"guid\":\"{}\",\"lpuGuid\":\"{}\",\"docGuid\":\"{}\",\"beginTime\":\"{date}T{:02}:{:02}:00+03:00\",\"endTime\":\"{date}T{:02}:{:02}:00+03:00\",\"planCount\":2,\"usedCount\":{},\"room\":\"{room}{}\",\"flat\":{},\"ageCategories\":{},\"dispensaryRequired\":{}}}",
            guid(3, i),
            guid(2, i % lpus),
            guid(1, i % doctors),
            minute / 60,
            minute % 60,
            (minute + 15) / 60,
            (minute + 15) % 60,
            i % 3,
            i % 400,
            i % 5,
            ages[(i % 3) as usize],
            i % 7 == 0
        )
        .unwrap();
    }
    writeln!(f, "]}}").unwrap();
}

/// `YYYY-MM-DD` of 2030-01-01 plus `days`.
fn chrono_date(days: u64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
    (start + chrono::Days::new(days))
        .format("%Y-%m-%d")
        .to_string()
}
