//! Capture and replay: a daemon with `[ami] capture_dir` records what the rig sends,
//! and `medcall replay` finds the calls in it — and in the committed rig capture.

use std::time::Duration;

use crate::calls::{call_with_leg, wait_connected};
use crate::support::rig::{RawAmi, Rig};
use crate::support::{Daemon, DaemonOptions};

fn replay(path: &std::path::Path) -> String {
    replay_with(path, &[])
}

fn replay_with(path: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .arg("replay")
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn figure(report: &str, key: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("{key} missing: {report}"))
        .parse()
        .unwrap()
}

#[test]
fn replaying_the_committed_rig_capture_finds_its_42_calls() {
    let report = replay(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ami/rig-capture-1.ami"
    )));
    assert_eq!(figure(&report, "events"), 872, "{report}");
    assert_eq!(figure(&report, "calls"), 42, "{report}");
    assert_eq!(figure(&report, "skipped"), 0);
    assert!(report.contains("event Hangup: 84"), "{report}");
}

#[test]
fn replay_skips_a_message_over_the_limit_and_keeps_going() {
    // The fixture's first message is 75 KB: over a 64 KiB limit.
    let report = replay_with(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/ami/over-limit.ami"
        )),
        &[("MEDCALL__AMI__MAX_MESSAGE_BYTES", "65536")],
    );
    assert!(figure(&report, "skipped") >= 1, "{report}");
    assert!(
        figure(&report, "frames") > figure(&report, "skipped"),
        "{report}"
    );
}

#[tokio::test]
async fn a_capture_of_the_live_stream_replays_to_the_same_call() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("capture");
    let d = Daemon::start_with(
        DaemonOptions::default().env("MEDCALL__AMI__CAPTURE_DIR", dir.display()),
    )
    .await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    let uid = format!("it-capture-{}", std::process::id());
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", "Local/busy@fake-phones/n"),
        ("Application", "Wait"),
        ("Data", "1"),
        ("Async", "true"),
        ("ChannelId", &uid),
        ("ActionID", &uid),
    ])
    .await;
    call_with_leg(&d, &key, &uid, Duration::from_secs(20), |c| {
        c["active"] == false
    })
    .await;
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "a capture file was written");
    let bytes: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(
        bytes.starts_with(b"Asterisk Call Manager/"),
        "the capture starts with the banner"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains(&format!("Uniqueid: {uid}")),
        "the call's events were captured"
    );
    let report = replay(&files[0]);
    assert!(figure(&report, "calls") >= 1, "{report}");
}
