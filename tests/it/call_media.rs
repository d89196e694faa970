//! Seed 002, part 2, against the real rig: play a file from a URL, record the mix, stream
//! it live. Participants are the test's own AudioSocket channels (A sends 440 Hz, B
//! 660 Hz), so what each hears, what the recording holds and what a stream listener
//! gets is measured on the audio itself, per second, with a Goertzel filter.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::conversation::{Conv, id, options, state_of};
use crate::support::audiosocket::{
    AudioSocketServer, MEASURE, Participant, TONE_ABSENT, fresh_uuid, goertzel_amplitude,
};
use crate::support::web::{Reply, WebServer, fixture};

const A_HZ: f64 = 440.0;
const B_HZ: f64 = 660.0;
/// The fixtures' tone.
const PLAY_HZ: f64 = 1000.0;
/// The fixtures' length (fixtures/audio/README.md).
const FIXTURE_SECONDS: f64 = 3.0;
/// A tone heard in a stretch of audio reads at least this (fraction of full scale);
/// absent, below `TONE_ABSENT`.
const PRESENT: f64 = 0.05;

/// A daemon that may fetch from the test's own web server on loopback.
fn media_options() -> crate::support::DaemonOptions {
    options().env("MEDCALL__MEDIA__ALLOW_NETWORKS", r#"["127.0.0.1/32"]"#)
}

struct Call {
    c: Conv,
    thread: String,
    a: Participant,
    b: Participant,
    _hub: AudioSocketServer,
}

/// A call with two joined AudioSocket participants, A sending 440 Hz and B 660 Hz.
async fn call_with_two() -> Call {
    call_with_two_on(media_options()).await
}

async fn call_with_two_on(options: crate::support::DaemonOptions) -> Call {
    let c = Conv::start_with(options).await;
    let hub = AudioSocketServer::start().await;
    let (ua, ub) = (fresh_uuid(), fresh_uuid());
    let (a, b) = (id("a0"), id("a0"));
    crate::conversation::put_directory(
        &c,
        json!({
            "teams": [{"teamId": c.team, "name": "Reception"}],
            "users": [
                {"userId": a, "teamId": c.team, "name": "A", "endpoint": hub.endpoint(&ua)},
                {"userId": b, "teamId": c.team, "name": "B", "endpoint": hub.endpoint(&ub)},
            ]
        }),
    )
    .await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [a, b]}),
    )
    .await;
    let (pa, pb) = (hub.participant(&ua).await, hub.participant(&ub).await);
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        [&a, &b].iter().all(|u| state_of(call, u) == "joined")
    })
    .await;
    pa.play_tone(A_HZ);
    pb.play_tone(B_HZ);
    let limit = Duration::from_secs(5);
    assert!(pb.wait_for_tone(A_HZ, limit).await, "B hears A");
    assert!(pa.wait_for_tone(B_HZ, limit).await, "A hears B");
    Call {
        c,
        thread,
        a: pa,
        b: pb,
        _hub: hub,
    }
}

/// The amplitude at `hz` in each whole second of `samples` (`rate` per second).
fn per_second(samples: &[f64], rate: usize, hz: f64) -> Vec<f64> {
    samples
        .chunks_exact(rate)
        .map(|s| goertzel_amplitude(s, hz, rate as f64))
        .collect()
}

fn pcm(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// A WAV's samples and rate, after checking its header is final (sizes match the length).
fn wav(bytes: &[u8]) -> (Vec<f64>, usize) {
    assert!(bytes.len() >= 44, "a WAV header: {} bytes", bytes.len());
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    assert_eq!(u32_at(4), bytes.len() - 8, "RIFF size is final");
    assert_eq!(&bytes[36..40], b"data");
    assert_eq!(u32_at(40), bytes.len() - 44, "data size is final");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    assert_eq!(channels, 1);
    (pcm(&bytes[44..]), u32_at(24))
}

#[tokio::test]
async fn a_played_mp3_and_wav_are_heard_for_their_length_and_stop_silences_at_once() {
    let call = call_with_two().await;
    let (c, thread) = (&call.c, &call.thread);
    let web = WebServer::start().await;
    let mp3 = web.route(
        "/tone.mp3",
        Reply::Bytes(fixture("tone-1k-44k1-stereo.mp3")),
    );
    let wav8 = web.route("/tone.wav", Reply::Bytes(fixture("tone-1k-8k-mono.wav")));
    let limit = Duration::from_secs(5);
    for url in [&mp3, &wav8] {
        c.post(
            "call.audio/play",
            json!({"threadId": thread, "fileUrl": url}),
        )
        .await;
        let started = Instant::now();
        assert!(call.a.wait_for_tone(PLAY_HZ, limit).await, "A hears {url}");
        let heard_from = started.elapsed();
        assert!(call.b.wait_for_tone(PLAY_HZ, limit).await, "B hears {url}");
        assert!(
            call.a.wait_until_tone_absent(PLAY_HZ, limit).await,
            "{url} ends"
        );
        // Detection lags the onset by up to 40 % of a window and the end by a window.
        let heard = started.elapsed() - heard_from;
        let length = heard.as_secs_f64() - MEASURE.as_secs_f64() * 0.6;
        assert!(
            (length - FIXTURE_SECONDS).abs() < 0.6,
            "{url} was heard {length:.2} s, the file is {FIXTURE_SECONDS} s"
        );
        assert!(
            call.b.level_at(A_HZ, MEASURE) > PRESENT,
            "A is still heard after the file"
        );
    }

    // Played again and stopped: silent within 300 ms of the stop's answer.
    let (status, v) = c
        .post(
            "call.audio/play",
            json!({"threadId": thread, "fileUrl": mp3}),
        )
        .await;
    assert_eq!((status, v), (200, json!({"code": 200, "message": "OK"})));
    assert!(call.a.wait_for_tone(PLAY_HZ, limit).await);
    let (status, v) = c.post("call.audio/stop", json!({"threadId": thread})).await;
    assert_eq!((status, v), (200, json!({"code": 200, "message": "OK"})));
    tokio::time::sleep(Duration::from_millis(300) + MEASURE).await;
    let level = call.a.level_at(PLAY_HZ, MEASURE);
    assert!(
        level < TONE_ABSENT,
        "the file is still heard 300 ms after stop: {level}"
    );
    // Played from the cache: one fetch per URL however often it is played.
    assert_eq!(web.hits("/tone.mp3"), 1);
    let metrics =
        c.d.get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("medcall_media_fetches_total{outcome=\"cached\"}")),
        "{metrics}"
    );

    // The timeline: three plays, each with how long it really played.
    let view = c.call(thread).await;
    let plays: Vec<&Value> = view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "player")
        .collect();
    assert_eq!(plays.len(), 3, "{view:#}");
    for (p, reason, seconds) in [
        (plays[0], "hangup", FIXTURE_SECONDS),
        (plays[1], "hangup", FIXTURE_SECONDS),
    ] {
        assert_eq!(p["endReason"], reason, "{p:#}");
        let played = p["playedMs"].as_f64().unwrap() / 1000.0;
        assert!((played - seconds).abs() < 0.5, "played {played} s: {p:#}");
        assert_eq!(p["media"].as_str().unwrap().len(), 64, "its content hash");
    }
    assert_eq!(plays[2]["endReason"], "stopped");
    assert!(plays[2]["playedMs"].as_f64().unwrap() < FIXTURE_SECONDS * 1000.0);
    assert_eq!(plays[0]["fileUrl"], mp3.as_str());
    assert_eq!(plays[1]["fileUrl"], wav8.as_str());
    c.ok("call/end", json!({"threadId": thread})).await;
}

/// A listener of a stream URL: every PCM byte it received, as chunked WAV or WebSocket.
struct Listener {
    pcm: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    ended: tokio::task::JoinHandle<String>,
}

impl Listener {
    async fn chunked(url: &str) -> Listener {
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "audio/wav");
        assert!(r.headers().get("content-length").is_none(), "open-ended");
        let pcm = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = pcm.clone();
        let ended = tokio::spawn(async move {
            let mut body = r.bytes_stream();
            let mut header = Vec::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    return "broken".to_string();
                };
                let mut chunk = &chunk[..];
                if header.len() < 44 {
                    let take = (44 - header.len()).min(chunk.len());
                    header.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if header.len() == 44 {
                        assert_eq!(&header[0..4], b"RIFF");
                        assert_eq!(&header[8..16], b"WAVEfmt ");
                        assert_eq!(
                            u32::from_le_bytes(header[24..28].try_into().unwrap()),
                            16_000
                        );
                        assert_eq!(u16::from_le_bytes([header[22], header[23]]), 1);
                        assert_eq!(u16::from_le_bytes([header[34], header[35]]), 16);
                    }
                }
                sink.lock().unwrap().extend_from_slice(chunk);
            }
            "end".to_string()
        });
        Listener { pcm, ended }
    }

    async fn websocket(url: &str) -> Listener {
        use tokio_tungstenite::tungstenite::Message;
        let ws_url = url.replacen("http://", "ws://", 1);
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let first = ws.next().await.unwrap().unwrap();
        let Message::Text(text) = first else {
            panic!("a text frame first: {first:?}");
        };
        let format: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(format["format"], "s16le", "{format}");
        assert_eq!(format["rate"], 16_000, "{format}");
        assert_eq!(format["channels"], 1, "{format}");
        let pcm = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = pcm.clone();
        let ended = tokio::spawn(async move {
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Binary(b)) => sink.lock().unwrap().extend_from_slice(&b),
                    Ok(Message::Close(frame)) => {
                        return format!("close {}", frame.map_or(0, |f| u16::from(f.code)));
                    }
                    Ok(_) => {}
                    Err(e) => return format!("error {e}"),
                }
            }
            "eof".to_string()
        });
        Listener { pcm, ended }
    }

    fn take(&self) -> Vec<f64> {
        pcm(&std::mem::take(&mut *self.pcm.lock().unwrap()))
    }
}

#[tokio::test]
async fn the_recording_and_every_stream_listener_hold_both_participants_but_not_a_paused_one() {
    let call = call_with_two().await;
    let (c, thread) = (&call.c, &call.thread);
    let (status, v) = c
        .post("call.recording/start", json!({"threadId": thread}))
        .await;
    assert_eq!((status, v), (200, json!({"code": 200, "message": "OK"})));
    let (status, v) = c
        .post("call.recording/start", json!({"threadId": thread}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["code"], 409);

    let data = c.ok("call.stream/start", json!({"threadId": thread})).await;
    let url = data["streamUrl"].as_str().unwrap().to_string();
    assert!(url.starts_with(&c.d.http), "absolute, medcall's: {url}");
    let token = url.rsplit('/').next().unwrap();
    assert!(token.len() >= 32, "≥ 128 bits: {token}");
    let again = c.ok("call.stream/start", json!({"threadId": thread})).await;
    assert_eq!(again["streamUrl"], url.as_str(), "the running stream");
    let chunked = Listener::chunked(&url).await;
    let socket = Listener::websocket(&url).await;

    // Both talk for 3 s, then A is paused for 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (both_chunked, both_socket) = (chunked.take(), socket.take());
    pause_the_440_sender(c, thread, &call).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    chunked.take();
    socket.take();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (paused_chunked, paused_socket) = (chunked.take(), socket.take());

    for (name, both, paused) in [
        ("chunked", &both_chunked, &paused_chunked),
        ("websocket", &both_socket, &paused_socket),
    ] {
        let a = per_second(both, 16_000, A_HZ);
        let b = per_second(both, 16_000, B_HZ);
        assert!(a.len() >= 2, "{name}: {} s of audio", a.len());
        for (s, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(
                *a > PRESENT && *b > PRESENT,
                "{name} second {s}: A {a:.3} B {b:.3}"
            );
        }
        let a = per_second(paused, 16_000, A_HZ);
        let b = per_second(paused, 16_000, B_HZ);
        assert!(a.len() >= 2, "{name}: {} s of audio while paused", a.len());
        for (s, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(
                *a < TONE_ABSENT && *b > PRESENT,
                "{name} paused second {s}: A {a:.3} B {b:.3}"
            );
        }
    }

    let data = c
        .ok("call.recording/stop", json!({"threadId": thread}))
        .await;
    let file_url = data["fileUrl"].as_str().unwrap().to_string();
    assert!(
        file_url.starts_with(&c.d.http) && file_url.ends_with(".wav"),
        "{file_url}"
    );
    let r = reqwest::get(&file_url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let bytes = r.bytes().await.unwrap();
    let (samples, rate) = wav(&bytes);
    let a = per_second(&samples, rate, A_HZ);
    let b = per_second(&samples, rate, B_HZ);
    assert!(a.len() >= 6, "{} s recorded", a.len());
    // The first seconds hold both, the seconds after the pause only B.
    for s in 0..2 {
        assert!(
            a[s] > PRESENT && b[s] > PRESENT,
            "second {s}: A {} B {}",
            a[s],
            b[s]
        );
    }
    let paused = &a[a.len() - 3..a.len() - 1];
    for (s, level) in paused.iter().enumerate() {
        assert!(*level < TONE_ABSENT, "A paused, second -{}: {level}", 3 - s);
    }
    assert!(b[b.len() - 2] > PRESENT);

    // Served correctly: HEAD, a range, the ETag.
    let client = reqwest::Client::new();
    let head = client.head(&file_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );
    let part = client
        .get(&file_url)
        .header("range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(0..44));
    let same = client
        .get(&file_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);
    let unknown = client
        .get(format!("{}/recordings/{}.wav", c.d.http, "0".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // The stream ends cleanly for every listener when it is stopped.
    let (status, v) = c
        .post("call.stream/stop", json!({"threadId": thread}))
        .await;
    assert_eq!((status, v), (200, json!({"code": 200, "message": "OK"})));
    let ended = |l: Listener| async move {
        tokio::time::timeout(Duration::from_secs(5), l.ended)
            .await
            .expect("the listener's response ends")
            .unwrap()
    };
    assert_eq!(ended(chunked).await, "end", "chunked terminator");
    assert_eq!(ended(socket).await, "close 1000");
    c.ok("call/end", json!({"threadId": thread})).await;
}

/// Pauses the participant who sends 440 Hz (A) and waits until B no longer hears it.
async fn pause_the_440_sender(c: &Conv, thread: &str, call: &Call) {
    let view = c.call(thread).await;
    let users: Vec<String> = view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "participant")
        .map(|p| p["userId"].as_str().unwrap().to_string())
        .collect();
    // The directory lists A first; invite kept that order.
    c.ok(
        "call/pause",
        json!({"threadId": thread, "userId": users[0]}),
    )
    .await;
    assert!(
        call.b
            .wait_until_tone_absent(A_HZ, Duration::from_secs(5))
            .await,
        "B no longer hears A"
    );
}

#[tokio::test]
async fn the_calls_end_finalises_a_running_recording_and_a_later_stop_returns_it() {
    let call = call_with_two().await;
    let (c, thread) = (&call.c, &call.thread);
    c.ok("call.recording/start", json!({"threadId": thread}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.ok("call/end", json!({"threadId": thread})).await;
    let view = c
        .wait_call(thread, Duration::from_secs(10), |call| {
            call["recordings"][0]["sha256"].is_string()
        })
        .await;
    let rec = &view["recordings"][0];
    assert_eq!(rec["state"], "stopped", "{rec:#}");
    let data = c
        .ok("call.recording/stop", json!({"threadId": thread}))
        .await;
    assert_eq!(data["fileUrl"], rec["fileUrl"]);
    let bytes = reqwest::get(data["fileUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (samples, rate) = wav(&bytes);
    let seconds = samples.len() as f64 / rate as f64;
    assert!((1.5..4.0).contains(&seconds), "{seconds} s recorded");
    assert_eq!(rec["sizeBytes"].as_u64(), Some(bytes.len() as u64));
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(rec["sha256"], sha.as_str());
    let _ = call.a.uuid();
}

#[tokio::test]
async fn a_recording_survives_a_daemon_kill_and_stop_after_the_restart_returns_the_whole_file() {
    let (media, asterisk_media) = crate::support::rig::Rig::from_env().media_dir();
    let same_media = || {
        media_options()
            .env("MEDCALL__PBX__0__MEDIA_DIR", &media)
            .env("MEDCALL__PBX__0__ASTERISK_MEDIA_DIR", &asterisk_media)
    };
    let call = call_with_two_on(same_media()).await;
    let thread = call.thread.clone();
    let Call { c, a, b, _hub, .. } = call;
    c.ok("call.recording/start", json!({"threadId": thread}))
        .await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let Conv { mut d, key, team } = c;
    let db = d.data_dir().join("medcall.db");
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).await.expect("killed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again =
        crate::support::Daemon::start_with(same_media().env("MEDCALL__STORE__PATH", db.display()))
            .await;
    // The dead daemon's directory holds the store: it lives until the test ends.
    let _dead = d;
    let c = Conv::connected(again, key).await;
    let c = Conv { team, ..c };
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        call["state"] == "active"
    })
    .await;
    let data = c
        .ok("call.recording/stop", json!({"threadId": thread}))
        .await;
    let recorded = started.elapsed().as_secs_f64();
    let bytes = reqwest::get(data["fileUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (samples, rate) = wav(&bytes);
    let seconds = samples.len() as f64 / rate as f64;
    assert!(
        (seconds - recorded).abs() < 1.5,
        "{seconds} s in the file, {recorded} s recorded"
    );
    // Both participants throughout, the seconds while medcall was down included.
    let la = per_second(&samples, rate, A_HZ);
    let lb = per_second(&samples, rate, B_HZ);
    for s in 0..la.len().saturating_sub(1) {
        assert!(
            la[s] > PRESENT && lb[s] > PRESENT,
            "second {s}: {} {}",
            la[s],
            lb[s]
        );
    }
    c.ok("call/end", json!({"threadId": thread})).await;
    drop((a, b));
}

#[tokio::test]
async fn bad_media_input_is_answered_in_the_envelope_and_leaves_nothing_behind() {
    // A short fetch deadline: the dripping server is cut after 3 s, not the default 30.
    let c = Conv::start_with(media_options().env("MEDCALL__MEDIA__FETCH_TIMEOUT_MS", 3000)).await;
    let thread = id("");
    // Without a call: 404 for all six, before anything is fetched.
    let web = WebServer::start().await;
    let mp3 = web.route("/ok.mp3", Reply::Bytes(fixture("tone-1k-44k1-stereo.mp3")));
    for (route, body) in [
        (
            "call.audio/play",
            json!({"threadId": thread, "fileUrl": mp3}),
        ),
        ("call.audio/stop", json!({"threadId": thread})),
        ("call.recording/start", json!({"threadId": thread})),
        ("call.recording/stop", json!({"threadId": thread})),
        ("call.stream/start", json!({"threadId": thread})),
        ("call.stream/stop", json!({"threadId": thread})),
    ] {
        let (status, v) = c.post(route, body).await;
        assert_eq!(status, 404, "{route}: {v}");
        assert_eq!(v["code"], 404);
        assert!(
            v["message"].as_str().unwrap().contains("no active call"),
            "{v}"
        );
    }
    assert_eq!(web.hits("/ok.mp3"), 0, "nothing fetched without a call");

    c.ok("call/start", json!({"threadId": thread})).await;
    let rss_before = rss_kib(c.d.pid());
    let limit = 10 * 1024 * 1024u64;
    let closed = crate::support::free_port();
    let cases: Vec<(String, u16, &str)> = vec![
        ("ftp://127.0.0.1/x.mp3".into(), 400, "http:// or https://"),
        ("file:///etc/passwd".into(), 400, "http:// or https://"),
        (
            web.route(
                "/big-cl.mp3",
                Reply::Zeros {
                    announced: Some(limit + 1),
                    len: limit + 1,
                },
            ),
            413,
            "larger",
        ),
        (
            web.route(
                "/big-chunked.mp3",
                Reply::Zeros {
                    announced: None,
                    len: 4 * limit,
                },
            ),
            413,
            "larger",
        ),
        (
            web.route(
                "/lying.mp3",
                Reply::Zeros {
                    announced: Some(1000),
                    len: 4 * limit,
                },
            ),
            415,
            "",
        ),
        (
            web.route("/page.mp3", Reply::Bytes(fixture("html-named.mp3"))),
            415,
            "not",
        ),
        (
            web.route(
                "/truncated.mp3",
                Reply::Bytes(fixture("truncated-first-frame.mp3")),
            ),
            415,
            "",
        ),
        (
            web.route("/corrupt.mp3", Reply::Bytes(fixture("corrupt.mp3"))),
            415,
            "",
        ),
        (web.route("/drip.mp3", Reply::Drip), 504, ""),
        (
            web.route(
                "/to-metadata.mp3",
                Reply::Redirect("http://169.254.169.254/latest".into()),
            ),
            400,
            "not allowed",
        ),
        (format!("http://127.0.0.1:{closed}/gone.mp3"), 502, ""),
    ];
    let crash_inputs: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("crash-"))
            .map(|e| {
                let path = format!("/{}", e.file_name().to_string_lossy());
                web.route(&path, Reply::Bytes(std::fs::read(e.path()).unwrap()))
            })
            .collect();
    assert!(
        crash_inputs.len() >= 5,
        "fixtures/audio holds the decoders' crash inputs"
    );
    for (url, want, words) in &cases {
        let (status, v) = c
            .post(
                "call.audio/play",
                json!({"threadId": thread, "fileUrl": url}),
            )
            .await;
        assert_eq!(status, *want, "{url}: {v}");
        assert_eq!(v["code"], *want, "{v}");
        assert!(v.get("data").is_none(), "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(words), "{url}: {message}");
    }
    // The fetches stopped at the limit instead of reading on.
    for path in ["/big-chunked.mp3", "/lying.mp3"] {
        let written = web.written(path);
        assert!(
            written < limit + 8 * 1024 * 1024,
            "{path}: the server wrote {written} bytes: medcall read past the limit"
        );
    }
    // Nothing played, nothing kept, the daemon as it was.
    let view = c.call(&thread).await;
    assert!(
        view["participants"].as_array().unwrap().is_empty(),
        "{view:#}"
    );
    // The decoders' known crash inputs: refused in the envelope where nothing playable
    // is left, played where the decoder skips the bad part (a huge tag) — never a crash.
    let mut refused = 0;
    for url in &crash_inputs {
        let (status, v) = c
            .post(
                "call.audio/play",
                json!({"threadId": thread, "fileUrl": url}),
            )
            .await;
        assert!([200, 413, 415].contains(&status), "{url}: {status} {v}");
        assert_eq!(v["code"], status, "{v}");
        refused += usize::from(status != 200);
    }
    assert!(refused >= 5, "{refused} of {} refused", crash_inputs.len());
    let rss_after = rss_kib(c.d.pid());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the daemon grew from {rss_before} KiB to {rss_after} KiB"
    );
    let health = c.d.get("/health").send().await.unwrap();
    assert_eq!(health.status(), 200, "still up");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
