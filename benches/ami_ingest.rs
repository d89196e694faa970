//! End-to-end AMI ingestion load tool: plays an Asterisk AMI server that blasts N
//! realistic call events at a running `medcall` daemon, then waits until every call is
//! persisted and reports events/s, zero-loss and the daemon's peak memory.
//!
//!     cargo bench --bench ami_ingest -- [EVENTS] [--rate EVENTS_PER_SECOND]
//!
//! The daemon runs pinned to core 0 (`taskset`, when present); run the tool itself on
//! the other core: `taskset -c 1 cargo bench --bench ami_ingest`.
//! The figure is wall time from the first event byte sent to the last call seen
//! persisted through the HTTP API, so it includes parsing, tracking and SQLite commits.

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

use std::io::{BufReader, Write};

use fake_ami::{read_action, serve_actions_until};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const EVENTS_PER_CALL: usize = 14;

/// Calls in the smoke run: enough for every event kind and a few batches, a second at most.
const SMOKE_CALLS: usize = 5;

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: then a smoke run of
    // the same path (a real daemon, a handful of calls) that fails if any call is lost,
    // with no claim on timings. `--list` (test runners asking for names) does nothing.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"))
        .collect();
    let events: usize = if smoke {
        SMOKE_CALLS * EVENTS_PER_CALL
    } else {
        args.iter()
            .filter(|a| !a.starts_with("--"))
            .find_map(|a| a.parse().ok())
            .unwrap_or(1_000_000)
    };
    // `--rate N`: offer N events/s (sent in 10 ms slices) instead of as fast as TCP takes.
    let rate: Option<f64> = args
        .iter()
        .position(|a| a == "--rate")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok());
    let calls = events / EVENTS_PER_CALL;
    let events = calls * EVENTS_PER_CALL;

    let ami = TcpListener::bind("127.0.0.1:0").unwrap();
    let ami_port = ami.local_addr().unwrap().port();
    let http_port = daemon::free_port();
    let data = tempfile::tempdir().unwrap();
    let mut daemon = daemon::command(ami_port, http_port, data.path())
        .spawn()
        .expect("start medcall");
    let key_path = data.path().join("admin.key");

    let (stream, _) = ami.accept().unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .write_all(b"Asterisk Call Manager/11.0.0\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    // Answer the login and the reconciliation; start blasting once the daemon has asked
    // for the conference rooms (the last step of reconciliation).
    serve_actions_until(&mut reader, &mut writer, "ConfbridgeListRooms");
    let key = std::fs::read_to_string(&key_path)
        .unwrap()
        .trim()
        .to_string();

    let payload = build_events(calls);
    // Keep answering the daemon's keepalive while the events flow; replies and event
    // chunks share the socket under one lock so they never interleave mid-message.
    let shared = std::sync::Arc::new(std::sync::Mutex::new(writer));
    let keepalive = std::sync::Arc::clone(&shared);
    std::thread::spawn(move || serve_shared(&mut reader, &keepalive));

    let started = Instant::now();
    match rate {
        None => {
            for chunk in message_chunks(&payload, 256 * 1024) {
                shared.lock().unwrap().write_all(chunk).unwrap();
            }
        }
        Some(rate) => {
            // Each 10 ms slice carries the bytes of rate/100 events, on schedule.
            let slice_bytes = (payload.len() as f64 / events as f64 * rate / 100.0) as usize;
            for (i, chunk) in message_chunks(&payload, slice_bytes.max(1))
                .into_iter()
                .enumerate()
            {
                let due = started + Duration::from_millis(10 * i as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                shared.lock().unwrap().write_all(chunk).unwrap();
            }
        }
    }
    let sent = started.elapsed();
    let limit = Duration::from_secs(if smoke { 30 } else { 120 });
    let persisted = wait_for_calls(http_port, &key, calls, limit);
    let elapsed = started.elapsed();
    let pbx = get_json(http_port, "/api/pbx", &key);
    let received = pbx[0]["eventsReceived"].as_u64().unwrap_or(0);
    let dropped = pbx[0]["eventsDropped"].as_u64().unwrap_or(0);
    let peak_kib = peak_memory_kib(daemon.id());
    let (user, system) = cpu_seconds(daemon.id());
    let cpu = user + system;
    println!(
        "ami_ingest: {events} events ({calls} calls) sent in {:.3} s ({:.0} events/s offered{})",
        sent.as_secs_f64(),
        events as f64 / sent.as_secs_f64(),
        if rate.is_some() {
            ", paced"
        } else {
            ", as fast as the daemon reads"
        }
    );
    println!(
        "ami_ingest: all {persisted} calls persisted after {:.3} s: {:.0} events/s end to end",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ami_ingest: daemon counted {received} events received, {dropped} dropped; peak RSS {} MiB",
        peak_kib / 1024
    );
    // CPU time is steadier than wall time on a shared machine: it is what the daemon
    // itself spent, whatever else ran.
    println!(
        "ami_ingest: daemon CPU {cpu:.3} s (user {user:.3}, system {system:.3}) = {:.2} µs per event ({:.0} events per CPU-second)",
        cpu * 1e6 / events as f64,
        events as f64 / cpu
    );
    // What the smoke run checks beyond the count: every call stored whole, its two legs
    // joined under the linkedid the events gave it.
    let stored = smoke.then(|| get_json(http_port, "/api/calls?active=false&limit=100", &key));
    stop(&mut daemon);
    assert_eq!(persisted, calls, "calls lost");
    if let Some(stored) = stored {
        assert_eq!(received, events as u64, "events the daemon counted");
        assert_eq!(dropped, 0, "events dropped");
        let mut linkedids: Vec<String> = stored["items"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|call| {
                assert_eq!(call["legCount"], 2, "{call}");
                assert_eq!(call["active"], false, "{call}");
                call["linkedid"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        linkedids.sort();
        let mut expected: Vec<String> = (0..calls)
            .map(|n| format!("1800000000.{}", n * 2))
            .collect();
        expected.sort();
        assert_eq!(linkedids, expected, "the calls stored");
    }
}

/// Answers actions forever through the shared writer.
fn serve_shared(reader: &mut BufReader<TcpStream>, writer: &std::sync::Mutex<TcpStream>) {
    while let Some(fields) = read_action(reader) {
        let id = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ActionID"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let reply = format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n");
        if writer.lock().unwrap().write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Splits `payload` into chunks of about `size` bytes that end on a message boundary.
fn message_chunks(payload: &[u8], size: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < payload.len() {
        let mut end = (start + size).min(payload.len());
        if end < payload.len() {
            let window = &payload[end..];
            end += window
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(window.len(), |p| p + 4);
        }
        out.push(&payload[start..end]);
        start = end;
    }
    out
}

/// `calls` complete calls, 14 events each, as Asterisk 22 words them.
fn build_events(calls: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(calls * 14 * 420);
    for n in 0..calls {
        let a = format!("1800000000.{}", n * 2);
        let b = format!("1800000000.{}", n * 2 + 1);
        let ch = format!("Local/answer@fake-phones-{n:08x}");
        let chan = |suffix: &str, uid: &str, state: &str, desc: &str| {
            format!(
                "Channel: {ch};{suffix}\r\nChannelState: {state}\r\nChannelStateDesc: {desc}\r\nCallerIDNum: 7900{n:07}\r\n\
                 CallerIDName: Пациент {n}\r\nConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\n\
                 AccountCode: load\r\nContext: fake-phones\r\nExten: answer\r\nPriority: 1\r\nUniqueid: {uid}\r\nLinkedid: {a}\r\n"
            )
        };
        let mut ev = |name: &str, body: String| {
            out.extend_from_slice(
                format!("Event: {name}\r\nPrivilege: call,all\r\n{body}\r\n").as_bytes(),
            );
        };
        ev("Newchannel", chan("1", &a, "0", "Down"));
        ev("Newchannel", chan("2", &b, "4", "Ring"));
        ev("Newstate", chan("2", &b, "5", "Ringing"));
        ev(
            "DialBegin",
            format!(
                "{}DialString: answer@fake-phones/n\r\nDestUniqueid: {b}\r\n",
                chan("1", &a, "0", "Down")
            ),
        );
        ev("Newstate", chan("2", &b, "6", "Up"));
        ev("Newstate", chan("1", &a, "6", "Up"));
        ev(
            "DialEnd",
            format!(
                "{}DialStatus: ANSWER\r\nDestUniqueid: {b}\r\n",
                chan("1", &a, "6", "Up")
            ),
        );
        ev(
            "BridgeEnter",
            format!(
                "BridgeUniqueid: br-{n}\r\nBridgeType: basic\r\n{}",
                chan("1", &a, "6", "Up")
            ),
        );
        ev(
            "BridgeEnter",
            format!(
                "BridgeUniqueid: br-{n}\r\nBridgeType: basic\r\n{}",
                chan("2", &b, "6", "Up")
            ),
        );
        ev(
            "BridgeLeave",
            format!(
                "BridgeUniqueid: br-{n}\r\nBridgeType: basic\r\n{}",
                chan("1", &a, "6", "Up")
            ),
        );
        ev(
            "BridgeLeave",
            format!(
                "BridgeUniqueid: br-{n}\r\nBridgeType: basic\r\n{}",
                chan("2", &b, "6", "Up")
            ),
        );
        ev(
            "Hangup",
            format!(
                "{}Cause: 16\r\nCause-txt: Normal Clearing\r\n",
                chan("2", &b, "6", "Up")
            ),
        );
        ev(
            "Hangup",
            format!(
                "{}Cause: 16\r\nCause-txt: Normal Clearing\r\n",
                chan("1", &a, "6", "Up")
            ),
        );
        ev(
            "Cdr",
            format!(
                "AccountCode: load\r\nSource: 7900{n:07}\r\nDestination: answer\r\nDestinationContext: fake-phones\r\n\
                 Channel: {ch};1\r\nDestinationChannel: {ch};2\r\nLastApplication: Dial\r\nStartTime: 2026-11-22 09:00:00\r\n\
                 AnswerTime: 2026-11-22 09:00:01\r\nEndTime: 2026-11-22 09:00:05\r\nDuration: 5\r\nBillableSeconds: 4\r\n\
                 Disposition: ANSWERED\r\nUniqueID: {a}\r\n"
            ),
        );
    }
    out
}

fn get_json(port: u16, path: &str, key: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn wait_for_calls(port: u16, key: &str, calls: usize, limit: Duration) -> usize {
    // Counting every stored call is a scan; while the events are still coming in, poll
    // only the cheap figures (events received, calls still open) so the tool's own
    // queries do not slow the daemon it measures.
    let deadline = Instant::now() + limit;
    loop {
        let pbx = get_json(port, "/api/pbx", key);
        let received = pbx[0]["eventsReceived"].as_u64().unwrap_or(0) as usize;
        let dropped = pbx[0]["eventsDropped"].as_u64().unwrap_or(0);
        let active = get_json(port, "/api/calls?active=true&limit=1", key)["totalCount"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if dropped > 0 {
            // Events were lost: the run has failed; report what was stored.
            std::thread::sleep(Duration::from_secs(1));
            let v = get_json(port, "/api/calls?active=false&limit=1", key);
            return v["totalCount"].as_u64().unwrap_or(0) as usize;
        }
        if received >= calls * EVENTS_PER_CALL && active == 0 {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    loop {
        let v = get_json(port, "/api/calls?active=false&limit=1", key);
        let n = v["totalCount"].as_u64().unwrap_or(0) as usize;
        if n >= calls || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM (the daemon drains and exits, as in production; a profiler wrapping it gets
/// to write its output), then SIGKILL if it is still there after ten seconds.
fn stop(daemon: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = daemon.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// User and system CPU time of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 12th and 13th of them, in clock ticks (100 per second).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

fn peak_memory_kib(pid: u32) -> u64 {
    // With taskset the child is taskset itself, which exec()s medcall: same pid.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
