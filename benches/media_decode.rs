//! Decode + resample speed and the decode child's memory, on a 10 MB MP3 (128 kbit/s,
//! 44.1 kHz stereo, about 655 s) made here from a recipe with sox and lame:
//!
//!     cargo bench --bench media_decode            # needs sox and lame on PATH
//!
//! Speed is the in-process core (`media::decode::decode_to`, one thread, output
//! counted not kept) in × real time; memory is the peak resident size (`VmHWM`) of a
//! real `medcall decode` child fed the same file, under the default child limits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use medcall::media::decode::{DecodeLimits, decode_to};

struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: then the same two paths on
    // the 3-second fixture, failing if either fails, with no claim on timings.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().unwrap();
    let (input, limits) = if smoke {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio/tone-1k-44k1-stereo.mp3");
        (std::fs::read(p).unwrap(), DecodeLimits::default())
    } else {
        let mp3 = dir.path().join("bench.mp3");
        make_mp3(dir.path(), &mp3);
        // 655 s of audio: over the 600 s default, so the cap is raised for the bench.
        let limits = DecodeLimits {
            max_duration: Duration::from_secs(700),
            ..DecodeLimits::default()
        };
        (std::fs::read(&mp3).unwrap(), limits)
    };

    let runs = if smoke { 1 } else { 3 };
    let mut best = Duration::MAX;
    let mut audio_s = 0.0;
    for _ in 0..runs {
        let started = Instant::now();
        let mut out = Count(0);
        let summary = decode_to(&input, &limits, &mut out).unwrap();
        best = best.min(started.elapsed());
        audio_s = summary.output_frames as f64 / 16_000.0;
        assert_eq!(out.0, summary.output_frames * 2);
    }
    let (hwm_kib, child_wall) = child_peak(&input, &limits);
    println!(
        "media_decode: {} bytes, {audio_s:.1} s of audio: decode + resample {:.3} s (best of {runs}) = {:.0}x real time; child peak RSS {:.1} MiB, child wall {:.2} s",
        input.len(),
        best.as_secs_f64(),
        audio_s / best.as_secs_f64(),
        hwm_kib as f64 / 1024.0,
        child_wall.as_secs_f64()
    );
}

/// sox makes 655 s of a 1 kHz tone (left) and pink noise (right); lame encodes it at
/// 128 kbit/s CBR: 10.48 MB.
fn make_mp3(dir: &Path, mp3: &Path) {
    let wav = dir.join("bench.wav");
    let sox = Command::new("sox")
        .args([
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            "-b",
            "16",
            "-e",
            "signed-integer",
        ])
        .arg(&wav)
        .args(["synth", "655", "sine", "1000", "pinknoise", "vol", "0.5"])
        .status()
        .expect("sox is needed (apt-get install sox)");
    assert!(sox.success());
    let lame = Command::new("lame")
        .args(["--quiet", "--cbr", "-b", "128"])
        .arg(&wav)
        .arg(mp3)
        .status()
        .expect("lame is needed (apt-get install lame)");
    assert!(lame.success());
}

/// Runs a real `medcall decode` child on `input` and returns its peak resident size
/// (`VmHWM`, KiB, polled from /proc while it runs) and its wall time.
fn child_peak(input: &[u8], limits: &DecodeLimits) -> (u64, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medcall"))
        .args([
            "decode".to_owned(),
            format!("--max-duration-ms={}", limits.max_duration.as_millis()),
            "--max-channels=8".to_owned(),
            "--min-rate=8000".to_owned(),
            "--max-rate=192000".to_owned(),
            "--max-input-bytes=10485760".to_owned(),
            format!("--memory-bytes={}", 256 * 1024 * 1024),
            "--cpu-seconds=10".to_owned(),
        ])
        .env_clear()
        .env("MIMALLOC_ARENA_RESERVE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        stdin.write_all(&data).unwrap();
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k as u64,
            }
        }
    });
    let mut hwm = 0u64;
    while !reader.is_finished() {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                hwm = hwm.max(kib);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    feeder.join().unwrap();
    let written = reader.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(written > 0);
    (hwm, started.elapsed())
}
