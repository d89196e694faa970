//! The foundation: the rig answers, the daemon starts on defaults, guards its API with
//! keys and scopes, and stops cleanly on SIGTERM.

use std::time::{Duration, Instant};

use crate::support::rig::{RawAmi, Rig, field};
use crate::support::{Daemon, DaemonOptions};

#[tokio::test]
async fn rig_ami_answers_with_the_asterisk_banner_and_accepts_the_configured_login() {
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    assert!(
        ami.banner.starts_with("Asterisk Call Manager/"),
        "banner: {}",
        ami.banner
    );
    let reply = ami.login(&rig.username, &rig.secret).await;
    assert_eq!(field(&reply, "Response"), Some("Success"), "{reply:?}");

    let mut wrong = RawAmi::connect(&rig).await;
    let reply = wrong.login(&rig.username, "not-the-secret").await;
    assert_eq!(field(&reply, "Response"), Some("Error"), "{reply:?}");
}

#[tokio::test]
async fn daemon_serves_health_metrics_and_openapi_without_a_key() {
    let d = Daemon::start().await;
    let health: serde_json::Value = d.get("/health").send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["pbx"][0]["name"], "rig");

    let metrics = d.get("/metrics").send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("medcall_pbx_connected{pbx=\"rig\"}"),
        "{text}"
    );
    assert!(text.contains("medcall_http_requests_total"), "{text}");
    assert!(
        text.contains("medcall_ami_messages_skipped{pbx=\"rig\"}"),
        "{text}"
    );
    assert!(
        text.contains("medcall_ami_events_dropped{pbx=\"rig\"}"),
        "{text}"
    );

    let doc: serde_json::Value = d
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/health", "/metrics", "/api/pbx"] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn first_start_prints_an_admin_key_once_and_keeps_it_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start().await;
    let key = d.admin_key();
    assert!(key.starts_with("mc_") && key.len() == 67, "{key}");
    let mode = std::fs::metadata(d.data_dir().join("admin.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(d.stdout().matches(&key).count(), 1, "printed exactly once");
    assert!(
        !d.stderr().contains(&key),
        "the key must never reach the log"
    );
}

#[tokio::test]
async fn api_refuses_requests_without_a_key_and_keys_without_the_scope() {
    let events_key = "events-only-key";
    let hash = medcall::auth::hash_key(events_key);
    let admin_key = "admin-key-for-tests";
    let admin_hash = medcall::auth::hash_key(admin_key);
    let d = Daemon::start_with(DaemonOptions::default().config(&format!(
        "[[api_keys]]\nname = \"crm\"\nsha256 = \"{hash}\"\nscopes = [\"events\"]\n\n\
         [[api_keys]]\nname = \"ops\"\nsha256 = \"{admin_hash}\"\nscopes = [\"admin\"]\n"
    )))
    .await;
    assert!(
        !d.data_dir().join("admin.key").exists(),
        "configured keys: no first-start key"
    );

    let r = d.get("/api/pbx").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert!(body["messages"][0].as_str().unwrap().contains("API key"));

    let r = d
        .get("/api/pbx")
        .bearer_auth("wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = d
        .get("/api/pbx")
        .bearer_auth(events_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["messages"][0].as_str().unwrap().contains("admin"));

    let r = d
        .get("/api/pbx")
        .bearer_auth(admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body[0]["name"], "rig");
}

#[tokio::test]
async fn metrics_can_be_put_behind_a_key() {
    let d = Daemon::start_with(
        DaemonOptions::default().env("MEDCALL__HTTP__METRICS_REQUIRE_KEY", "true"),
    )
    .await;
    assert_eq!(d.get("/metrics").send().await.unwrap().status(), 401);
    let r = d
        .get("/metrics")
        .bearer_auth(d.admin_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unknown_routes_get_the_error_shape() {
    let d = Daemon::start_with(DaemonOptions::default().env("MEDCALL__HTTP__MAX_BODY_BYTES", 1024))
        .await;
    let r = d.get("/no/such/route").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn daemon_exits_zero_within_five_seconds_of_sigterm() {
    let mut d = Daemon::start().await;
    let started = Instant::now();
    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exited within 5 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        d.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(d.stderr().contains("medcall stopped"));
}

#[tokio::test]
async fn data_written_before_kill_9_is_there_after_restart() {
    // The first-start key is a state change acknowledged by printing it; it must survive
    // an unclean stop, and the restarted daemon must not make a second one.
    let mut d = Daemon::start().await;
    let key = d.admin_key();
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).await.unwrap();
    let db = d.data_dir().join("medcall.db");
    let d2 = Daemon::start_with(DaemonOptions::default().env("MEDCALL__STORE__PATH", db.display()))
        .await;
    assert!(!d2.stdout().contains("mc_"), "no second admin key");
    let r = d2.get("/api/pbx").bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .arg("check-config")
        .env("MEDCALL__PBX__0__SECRET", "very-secret-value")
        .env("MEDCALL__HTTP__LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("127.0.0.1:9999"), "{text}");
    assert!(!text.contains("very-secret-value"), "{text}");
    assert!(text.contains("***"));
}

#[test]
fn check_config_names_the_bad_key_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[agi]\nlisten = 4573\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("agi.listen"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn health_and_api_pbx_report_each_pbx_state_exactly() {
    // `down`: nobody listens, and a minute's backoff keeps it not connected. `silent`:
    // the kernel accepts the connection but no banner ever comes, so it stays connecting.
    let down = crate::support::free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let mut options = DaemonOptions::default()
        .env("MEDCALL__AMI__BACKOFF_MIN_MS", 60_000)
        .env("MEDCALL__AMI__BACKOFF_MAX_MS", 60_000)
        .env("MEDCALL__AMI__CONNECT_TIMEOUT_MS", 60_000);
    for (i, name, port) in [(1, "down", down), (2, "silent", silent_port)] {
        for (key, value) in [
            ("NAME", name.to_string()),
            ("HOST", "127.0.0.1".to_string()),
            ("PORT", port.to_string()),
            ("USERNAME", "medcall".to_string()),
            ("SECRET", "unused".to_string()),
        ] {
            options = options.env(&format!("MEDCALL__PBX__{i}__{key}"), value);
        }
    }
    let d = crate::support::Daemon::start_with(options).await;
    let key = d.admin_key();
    let deadline = Instant::now() + Duration::from_secs(15);
    let pbx = loop {
        let pbx: serde_json::Value = d.get_json("/api/pbx", &key).await;
        if pbx[0]["state"] == "connected" && pbx[1]["lastError"].is_string() {
            break pbx;
        }
        assert!(Instant::now() < deadline, "{pbx}\n{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let health: serde_json::Value = d.get("/health").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        health["pbx"],
        serde_json::json!([
            {"name": "rig", "state": "connected", "connected": true},
            {"name": "down", "state": "not-connected", "connected": false},
            {"name": "silent", "state": "connecting", "connected": false},
        ]),
        "{health}"
    );

    let rig = Rig::from_env();
    let (up, down_view, silent_view) = (&pbx[0], &pbx[1], &pbx[2]);
    assert_eq!(up["name"], "rig");
    assert_eq!(up["host"], "127.0.0.1");
    assert_eq!(up["port"], rig.ami_port);
    assert!(
        up["asteriskVersion"]
            .as_str()
            .unwrap()
            .starts_with("Asterisk 22"),
        "{up}"
    );
    assert!(up["connectedSince"].is_string(), "{up}");
    assert!(up["lastError"].is_null(), "{up}");
    assert_eq!(up["reconnectCount"], 0);
    assert_eq!(up["messagesSkipped"], 0);
    assert!(
        up["eventsReceived"].as_u64().unwrap() >= 1,
        "FullyBooted at least: {up}"
    );
    assert!(up["lastEventAt"].is_string(), "{up}");
    assert_eq!(up["eventsDropped"], 0);
    assert!(up["recentGaps"].is_array(), "{up}");

    assert_eq!(down_view["name"], "down");
    assert_eq!(down_view["port"], down);
    assert_eq!(down_view["state"], "not-connected");
    assert!(down_view["asteriskVersion"].is_null(), "{down_view}");
    assert!(down_view["connectedSince"].is_null(), "{down_view}");
    assert!(down_view["lastEventAt"].is_null(), "{down_view}");
    assert_eq!(down_view["eventsReceived"], 0);
    assert_eq!(
        down_view["reconnectCount"], 0,
        "one attempt so far: no reconnect"
    );
    let error = down_view["lastError"].as_str().unwrap();
    assert!(error.starts_with("cannot connect to 127.0.0.1:"), "{error}");
    assert_eq!(down_view["recentGaps"], serde_json::json!([]));

    assert_eq!(silent_view["state"], "connecting");
    assert!(silent_view["lastError"].is_null(), "{silent_view}");

    let metrics = d
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "medcall_pbx_connected{pbx=\"rig\"} 1",
        "medcall_pbx_connected{pbx=\"down\"} 0",
        "medcall_pbx_connected{pbx=\"silent\"} 0",
        "medcall_pbx_reconnects{pbx=\"down\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    drop(silent);
}

#[tokio::test]
async fn shutdown_waits_for_fastagi_sessions_to_drain_even_past_the_http_grace() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut d = Daemon::start_with(
        DaemonOptions::default()
            .env("MEDCALL__HTTP__SHUTDOWN_GRACE_MS", 100)
            .env("MEDCALL__AGI__DRAIN_MS", 1_500),
    )
    .await;
    // A session whose Asterisk never answers the route's first command.
    let mut agi = tokio::net::TcpStream::connect(("127.0.0.1", d.agi_port))
        .await
        .unwrap();
    agi.write_all(
        b"agi_network: yes\nagi_network_script: diagnostics\nagi_channel: Local/x;1\nagi_uniqueid: 1.1\n\n",
    )
    .await
    .unwrap();
    let mut first = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), agi.read(&mut first))
        .await
        .expect("the route sends its first command")
        .unwrap();
    assert!(first[..n].starts_with(b"SET VARIABLE"), "{:?}", &first[..n]);
    let started = Instant::now();
    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits after the drain");
    let took = started.elapsed();
    assert!(status.success(), "{status}\n{}", d.stderr());
    // The drain (1.5 s) plus its margin is the grace, not the 0.1 s HTTP grace.
    assert!(
        took >= Duration::from_millis(1_400),
        "exited after {took:?}"
    );
    assert!(
        !d.stderr().contains("exiting anyway"),
        "cut before the drain ended:\n{}",
        d.stderr()
    );
}

#[tokio::test]
async fn a_fastagi_reply_longer_than_the_configured_line_limit_ends_the_session() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d =
        Daemon::start_with(DaemonOptions::default().env("MEDCALL__AGI__MAX_LINE_BYTES", 300)).await;
    let mut agi = tokio::net::TcpStream::connect(("127.0.0.1", d.agi_port))
        .await
        .unwrap();
    agi.write_all(
        b"agi_network: yes\nagi_network_script: diagnostics\nagi_channel: Local/x;1\nagi_uniqueid: 1.2\n\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), agi.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"SET VARIABLE"), "{:?}", &buf[..n]);
    // 400 bytes: within the default 8 KiB, over the configured 300.
    let long = format!("200 result=1 ({})\n", "x".repeat(380));
    agi.write_all(long.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), agi.read_to_end(&mut rest))
        .await
        .expect("the daemon closes the session")
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rest).contains("MEDCALL_STATUS"),
        "the route went on after an over-long reply: {:?}",
        String::from_utf8_lossy(&rest)
    );
}
