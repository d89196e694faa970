//! "Play a file from a URL", the daemon's side without Asterisk: the `medcall decode`
//! child (the real binary) under its limits, and the converted-file library fetching
//! from a local HTTP server, counting what it fetched and decoded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use medcall::media::child::{ChildLimits, decode_in_child};
use medcall::media::decode::{DecodeError, DecodeLimits};
use medcall::media::fetch::FetchSettings;
use medcall::media::library::{LibrarySettings, MediaError, MediaLibrary};
use medcall::media::netguard::NetGuard;
use medcall::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_medcall"))
}

fn fixture(name: &str) -> Bytes {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/audio")
        .join(name);
    Bytes::from(std::fs::read(&p).unwrap())
}

/// A PCM WAV of `seconds` of 8-bit mono at 8 kHz (a ramp): 8 000 bytes a second.
fn long_wav(seconds: u32) -> Bytes {
    let n = seconds * 8_000;
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + n).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&[1, 0, 1, 0]);
    v.extend_from_slice(&8_000u32.to_le_bytes());
    v.extend_from_slice(&8_000u32.to_le_bytes());
    v.extend_from_slice(&[1, 0, 8, 0]);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&n.to_le_bytes());
    v.extend((0..n).map(|i| (i % 256) as u8));
    Bytes::from(v)
}

#[tokio::test]
async fn the_child_converts_the_mp3_tone_to_3_s_at_16_khz() {
    let d = decode_in_child(
        exe(),
        fixture("tone-1k-44k1-stereo.mp3"),
        &ChildLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!((d.summary.input_rate, d.summary.channels), (44_100, 2));
    let frames = d.pcm.len() as i64 / 2;
    assert!((frames - 48_000).abs() <= 418, "{frames}");
    assert_eq!(d.summary.output_frames as i64, frames);
}

#[tokio::test]
async fn the_child_reports_each_content_error_as_itself() {
    let limits = ChildLimits::default();
    let cases = [
        ("html-named.mp3", DecodeError::NotAudio),
        ("crash-id3-flags-only.mp3", DecodeError::NotAudio),
        (
            "crash-wav-65535-channels.wav",
            DecodeError::TooManyChannels {
                channels: 65_535,
                max: 8,
            },
        ),
        (
            "crash-wav-rate-1hz.wav",
            DecodeError::SampleRate {
                rate: 1,
                min: 8_000,
                max: 192_000,
            },
        ),
    ];
    for (name, want) in cases {
        let got = decode_in_child(exe(), fixture(name), &limits)
            .await
            .unwrap_err();
        assert_eq!(got, want, "{name}");
    }
    for name in [
        "crash-wav-huge-fmt.wav",
        "crash-wav-huge-list.wav",
        "corrupt.mp3",
    ] {
        let got = decode_in_child(exe(), fixture(name), &limits)
            .await
            .unwrap_err();
        assert!(matches!(got, DecodeError::Corrupt(_)), "{name}: {got:?}");
    }
    let short = ChildLimits {
        decode: DecodeLimits {
            max_duration: Duration::from_secs(1),
            ..DecodeLimits::default()
        },
        ..limits
    };
    let got = decode_in_child(exe(), fixture("tone-1k-8k-mono.wav"), &short)
        .await
        .unwrap_err();
    assert_eq!(got, DecodeError::TooLong { max_secs: 1 });
}

#[tokio::test]
async fn every_crash_fixture_ends_in_an_answer_not_a_hang() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("crash-") {
            continue;
        }
        let input = Bytes::from(std::fs::read(&path).unwrap());
        let got = decode_in_child(exe(), input, &ChildLimits::default()).await;
        // Whatever the verdict, it is the content's, not a dead or stuck child.
        if let Err(e) = &got {
            assert!(e.is_content(), "{name}: {e:?}");
        }
    }
}

#[tokio::test]
async fn input_over_the_childs_limit_is_refused_by_the_child() {
    let limits = ChildLimits {
        max_input_bytes: 1_000,
        ..ChildLimits::default()
    };
    let got = decode_in_child(exe(), fixture("tone-1k-8k-mono.wav"), &limits)
        .await
        .unwrap_err();
    assert_eq!(got, DecodeError::InputTooLarge { max: 1_000 });
}

#[tokio::test]
async fn a_child_past_its_wall_clock_is_killed() {
    // Ten minutes of audio decoded and resampled take the debug child well over 50 ms.
    let limits = ChildLimits {
        wall_clock: Duration::from_millis(50),
        ..ChildLimits::default()
    };
    let got = decode_in_child(exe(), long_wav(600), &limits)
        .await
        .unwrap_err();
    assert_eq!(got, DecodeError::TimedOut(Duration::from_millis(50)));
}

#[tokio::test]
async fn a_child_over_its_address_space_limit_dies_as_a_memory_limit() {
    // The child sizes its input buffer to the input limit at once: 128 MiB cannot be
    // had under a 96 MiB address-space limit (the binary itself takes ~50 MiB).
    let limits = ChildLimits {
        memory_bytes: 96 * 1024 * 1024,
        max_input_bytes: 128 * 1024 * 1024,
        ..ChildLimits::default()
    };
    let got = decode_in_child(exe(), fixture("tone-1k-8k-mono.wav"), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(&got, DecodeError::ResourceLimit(what) if what == "memory"),
        "{got:?}"
    );
    // The same limits with room for the buffer decode.
    let roomy = ChildLimits {
        memory_bytes: 256 * 1024 * 1024,
        ..limits
    };
    assert!(
        decode_in_child(exe(), fixture("tone-1k-8k-mono.wav"), &roomy)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_memory_limit_below_what_the_child_already_holds_fails_closed() {
    let limits = ChildLimits {
        memory_bytes: 8 * 1024 * 1024,
        ..ChildLimits::default()
    };
    let got = decode_in_child(exe(), fixture("tone-1k-8k-mono.wav"), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(&got, DecodeError::ResourceLimit(what) if what.contains("already reserved")),
        "{got:?}"
    );
}

/// A file server on 127.0.0.1 answering every path with `body` and an ETag, 304 to
/// a matching `If-None-Match`; it counts requests.
struct FileServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn file_server(body: Bytes, etag: Option<&'static str>) -> FileServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (body, counter) = (body.clone(), counter.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if sock.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let tag = etag.map(|t| format!("ETag: {t}\r\n")).unwrap_or_default();
                let fresh = etag.is_some_and(|t| head.contains(&format!("if-none-match: {t}")));
                let reply = if fresh {
                    format!("HTTP/1.1 304 Not Modified\r\n{tag}Connection: close\r\n\r\n")
                        .into_bytes()
                } else {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\n{tag}Content-Type: audio/mpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                };
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    FileServer { base, hits }
}

fn library(dir: &Path, url_ttl: Duration) -> (Arc<MediaLibrary>, Arc<Metrics>) {
    let metrics = Metrics::new();
    let mut settings = LibrarySettings::new(dir.to_owned(), exe().to_owned());
    settings.url_ttl = url_ttl;
    settings.fetch = FetchSettings {
        guard: NetGuard::parse(&["127.0.0.1/32"], &[]).unwrap(),
        ..FetchSettings::default()
    };
    (
        Arc::new(MediaLibrary::new(settings, metrics.clone())),
        metrics,
    )
}

/// The value of `medcall_<family>_total{outcome="<outcome>"}` in the rendered metrics.
fn counter(metrics: &Metrics, family: &str, outcome: &str) -> u64 {
    let text = metrics.render(&medcall::pbx::PbxRegistry::default());
    let key = format!("medcall_{family}_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_same_url_played_again_is_neither_fetched_nor_decoded_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = file_server(fixture("tone-1k-44k1-stereo.mp3"), None).await;
    let (lib, metrics) = library(dir.path(), Duration::from_secs(60));
    let url = format!("{}/tone.mp3", server.base);

    let first = lib.prepare(&url).await.unwrap();
    assert_eq!(
        first.path,
        dir.path().join(format!("{}.sln16", first.sha256))
    );
    assert_eq!(first.sha256.len(), 64);
    let bytes = std::fs::read(&first.path).unwrap();
    assert!((bytes.len() as i64 / 2 - 48_000).abs() <= 418);
    assert_eq!(first.duration_ms, bytes.len() as u64 / 32);

    let second = lib.prepare(&url).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "fetched once");
    assert_eq!(counter(&metrics, "media_fetches", "fetched"), 1);
    assert_eq!(counter(&metrics, "media_fetches", "cached"), 1);
    assert_eq!(counter(&metrics, "media_decodes", "decoded"), 1);
    // Nothing but the one file (no temp left behind).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn after_the_ttl_a_url_with_an_etag_is_revalidated_and_a_304_reuses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = file_server(fixture("tone-1k-8k-mono.wav"), Some("\"tone-v1\"")).await;
    let (lib, metrics) = library(dir.path(), Duration::ZERO);
    let url = format!("{}/tone.wav", server.base);
    let first = lib.prepare(&url).await.unwrap();
    let again = lib.prepare(&url).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "asked again, conditionally"
    );
    assert_eq!(counter(&metrics, "media_fetches", "revalidated"), 1);
    assert_eq!(counter(&metrics, "media_decodes", "decoded"), 1);
    assert_eq!(first.duration_ms, 3_000);
}

#[tokio::test]
async fn the_same_content_under_another_url_is_fetched_but_not_decoded_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = file_server(fixture("tone-1k-8k-mono.wav"), None).await;
    let (lib, metrics) = library(dir.path(), Duration::from_secs(60));
    let a = lib
        .prepare(&format!("{}/a.wav", server.base))
        .await
        .unwrap();
    let b = lib
        .prepare(&format!("{}/b.wav?x=1", server.base))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(counter(&metrics, "media_fetches", "fetched"), 2);
    assert_eq!(counter(&metrics, "media_decodes", "decoded"), 1);
    assert_eq!(counter(&metrics, "media_decodes", "cached"), 1);
}

#[tokio::test]
async fn concurrent_prepares_of_the_same_content_decode_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = file_server(fixture("tone-1k-44k1-stereo.mp3"), None).await;
    let (lib, metrics) = library(dir.path(), Duration::from_secs(60));
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (lib, url) = (lib.clone(), format!("{}/{i}.mp3", server.base));
            tokio::spawn(async move { lib.prepare(&url).await })
        })
        .collect();
    let mut paths = Vec::new();
    for t in tasks {
        paths.push(t.await.unwrap().unwrap().path);
    }
    paths.dedup();
    assert_eq!(paths.len(), 1);
    assert_eq!(counter(&metrics, "media_decodes", "decoded"), 1);
    assert_eq!(counter(&metrics, "media_decodes", "cached"), 3);
}

#[tokio::test]
async fn what_cannot_be_played_gets_the_status_the_route_answers() {
    let dir = tempfile::tempdir().unwrap();
    let html = file_server(fixture("html-named.mp3"), None).await;
    let (lib, metrics) = library(dir.path(), Duration::from_secs(60));
    let e = lib
        .prepare(&format!("{}/song.mp3", html.base))
        .await
        .unwrap_err();
    assert_eq!((e.clone(), e.status()), (MediaError::NotAudio, 415));

    let channels = file_server(fixture("crash-wav-65535-channels.wav"), None).await;
    let e = lib
        .prepare(&format!("{}/x.wav", channels.base))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 415, "{e:?}");
    assert_eq!(counter(&metrics, "media_decodes", "failed"), 1);

    let e = lib.prepare("ftp://127.0.0.1/a.mp3").await.unwrap_err();
    assert_eq!(e.status(), 400);
    let e = lib
        .prepare("http://169.254.169.254/latest/meta-data/")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message().contains("not allowed"), "{}", e.message());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = lib
        .prepare(&format!("http://127.0.0.1:{port}/gone.mp3"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 502, "{e:?}");
    assert_eq!(counter(&metrics, "media_fetches", "failed"), 3);
    // Nothing was written for any of them.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_child_sets_its_limits_before_it_reads_any_input() {
    // Started by hand with stdin held open: the child waits for input, and by then its
    // limits are in force (read back from /proc).
    let mut child = std::process::Command::new(exe())
        .args([
            "decode",
            "--max-duration-ms=600000",
            "--max-channels=8",
            "--min-rate=8000",
            "--max-rate=192000",
            "--max-input-bytes=10485760",
            "--memory-bytes=268435456",
            "--cpu-seconds=10",
        ])
        .env("MIMALLOC_ARENA_RESERVE", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let limits_file = format!("/proc/{}/limits", child.id());
    let want = [
        ("Max cpu time", "10", "11"),
        ("Max address space", "268435456", "268435456"),
        ("Max core file size", "0", "0"),
        ("Max open files", "16", "16"),
    ];
    let mut seen = String::new();
    for _ in 0..100 {
        seen = std::fs::read_to_string(&limits_file).unwrap_or_default();
        let applied = want.iter().all(|(name, soft, hard)| {
            seen.lines().any(|l| {
                let w: Vec<&str> = l
                    .strip_prefix(name)
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                w.first() == Some(soft) && w.get(1) == Some(hard)
            })
        });
        if applied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(child.stdin.take());
    let _ = child.wait();
    for (name, soft, hard) in want {
        assert!(
            seen.lines().any(|l| l.starts_with(name)
                && l.split_whitespace().any(|w| w == soft)
                && l.split_whitespace().any(|w| w == hard)),
            "{name} {soft} {hard} in\n{seen}"
        );
    }
}
