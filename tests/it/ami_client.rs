//! The AMI client against the real Asterisk rig: logins, lists, commands, originate
//! results correlated by ActionID, and the daemon showing the PBX connected.

use std::time::{Duration, Instant};

use medcall::ami::{
    Action, AmiClient, AmiEvent, ClientLimits, ClientSettings, ClientState, EventStream, Limits,
    LoginMethod, Originate, OriginateTarget, Timing,
};
use medcall::secret::Secret;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::Daemon;
use crate::support::rig::Rig;

/// A client of the rig, stopped (Logoff) when dropped.
pub struct RigClient {
    pub client: AmiClient,
    pub events: EventStream,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for RigClient {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RigClient {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .expect("client task stops within 5 s");
    }
}

/// A client of `127.0.0.1:port`: the daemon's default timings and limits, except a
/// reconnect delay of 100 ms doubling to 800 ms; no capture.
pub fn client_settings(
    name: &str,
    port: u16,
    username: &str,
    secret: &str,
    auth: LoginMethod,
) -> ClientSettings {
    let ms = Duration::from_millis;
    ClientSettings {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        username: username.into(),
        secret: Secret::new(secret),
        auth,
        event_mask: "on".into(),
        timing: Timing {
            connect_timeout: ms(5_000),
            action_timeout: ms(10_000),
            backoff_min: ms(100),
            backoff_max: ms(800),
            ping_interval: ms(10_000),
            ping_deadline: ms(5_000),
        },
        limits: ClientLimits {
            frame: Limits {
                max_message_bytes: 1024 * 1024,
                max_headers: 20_000,
            },
            max_list_items: 100_000,
            event_queue_capacity: 100_000,
            action_queue_capacity: 256,
        },
        capture: None,
    }
}

pub fn rig_settings(auth: LoginMethod, secret: &str) -> ClientSettings {
    let rig = Rig::from_env();
    client_settings("rig", rig.ami_port, &rig.username, secret, auth)
}

pub fn start(settings: ClientSettings) -> RigClient {
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (client, events) = AmiClient::spawn_with_events(settings, &tasks, shutdown.clone());
    RigClient {
        client,
        events,
        shutdown,
        tasks,
    }
}

/// The next item matching `pred`, within `limit`.
pub async fn next_matching(
    events: &mut EventStream,
    limit: Duration,
    pred: impl Fn(&AmiEvent) -> bool,
) -> AmiEvent {
    tokio::time::timeout(limit, async {
        loop {
            let e = events.recv().await.expect("event stream open");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("expected event within the limit")
}

async fn connected(auth: LoginMethod) -> (RigClient, Option<String>) {
    let rig = Rig::from_env();
    let mut c = start(rig_settings(auth, &rig.secret));
    let e = next_matching(&mut c.events, Duration::from_secs(10), |e| {
        matches!(e, AmiEvent::Connected { .. })
    })
    .await;
    let AmiEvent::Connected { version, .. } = e else {
        unreachable!()
    };
    (c, version)
}

#[tokio::test]
async fn plain_login_connects_and_reports_the_asterisk_version() {
    let (c, version) = connected(LoginMethod::Plain).await;
    let version = version.expect("a version");
    assert!(version.starts_with("Asterisk 22"), "{version}");
    let status = c.client.status();
    assert_eq!(status.state, ClientState::Connected);
    assert_eq!(status.version.as_deref(), Some(version.as_str()));
    assert!(status.connected_since.is_some());
    c.stop().await;
}

#[tokio::test]
async fn md5_login_answers_the_challenge_and_connects() {
    let (c, version) = connected(LoginMethod::Md5).await;
    assert!(version.unwrap().starts_with("Asterisk 22"));
    let pong = c.client.send(Action::ping().unwrap()).await.unwrap();
    assert!(pong.is("Response", "Success"), "{pong:?}");
    c.stop().await;
}

// The spacing of the retries is proved against a peer that refuses at once
// (`ami_faults`): Asterisk sleeps a second per failed login, which would hide a busy loop.
#[tokio::test]
async fn a_wrong_secret_is_reported_as_a_rejected_login_retried_and_actions_are_not_sent() {
    let c = start(rig_settings(LoginMethod::Md5, "not-the-secret"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = c.client.status();
        if status.connect_attempts >= 2 && status.last_error.is_some() {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(status.state, ClientState::Connected);
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("Authentication failed"), "{error}");
    // While not connected, actions fail at once as not sent.
    let e = c.client.send(Action::ping().unwrap()).await.unwrap_err();
    assert!(matches!(e, medcall::ami::AmiError::NotSent), "{e}");
    c.stop().await;
}

#[tokio::test]
async fn core_show_channels_lists_a_live_call() {
    let (c, _) = connected(LoginMethod::Md5).await;
    let leg = format!("it-live-{}", std::process::id());
    let originate = Originate::new(
        "Local/silent@fake-phones/n",
        &OriginateTarget::Application {
            application: "Wait".into(),
            data: "30".into(),
        },
    )
    .and_then(Originate::asynchronous)
    .and_then(|o| o.channel_id(&leg))
    .and_then(|o| o.other_channel_id(&format!("{leg}-2")))
    .unwrap()
    .build();
    c.client.send(originate).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let list = c
            .client
            .list(Action::core_show_channels().unwrap())
            .await
            .unwrap();
        assert!(
            list.complete
                .as_ref()
                .unwrap()
                .is("Event", "CoreShowChannelsComplete")
        );
        if let Some(item) = list
            .items
            .iter()
            .find(|m| m.get("Uniqueid").is_some_and(|u| u.text() == leg.as_str()))
        {
            break item.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the call never appeared: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(found.is("Event", "CoreShowChannel"));
    assert!(
        found
            .text("Channel")
            .unwrap()
            .starts_with("Local/silent@fake-phones")
    );
    c.client
        .send(Action::hangup(&leg, None).unwrap())
        .await
        .unwrap();
    c.stop().await;
}

#[tokio::test]
async fn empty_confbridge_lists_are_empty_lists_not_errors() {
    let (c, _) = connected(LoginMethod::Md5).await;
    let name = format!("no-such-room-{}", std::process::id());
    let users = c
        .client
        .list(Action::confbridge_list(&name).unwrap())
        .await
        .unwrap();
    assert!(users.items.is_empty());
    // Other engineers' tests may hold conferences on the shared rig: the list is a list
    // (empty when nobody does), and never holds our room.
    let rooms = c
        .client
        .list(Action::confbridge_list_rooms().unwrap())
        .await
        .unwrap();
    assert!(rooms.items.iter().all(|r| {
        r.get("Conference")
            .is_none_or(|v| v.text() != name.as_str())
    }));
    c.stop().await;
}

#[tokio::test]
async fn command_returns_core_show_version_as_lines() {
    let (c, _) = connected(LoginMethod::Plain).await;
    let lines = c.client.command("core show version").await.unwrap();
    assert!(lines[0].starts_with("Asterisk 22"), "{lines:?}");
    let e = c.client.command("no such command at all").await;
    assert!(e.is_err() || !e.unwrap().is_empty());
    c.stop().await;
}

#[tokio::test]
async fn async_originate_results_are_correlated_by_action_id() {
    let (mut c, _) = connected(LoginMethod::Md5).await;
    let pid = std::process::id();
    let mut expected = Vec::new();
    for (behaviour, reason) in [("busy", "5"), ("noanswer", "3"), ("answer", "4")] {
        let leg = format!("it-orig-{behaviour}-{pid}");
        let originate = Originate::new(
            &format!("Local/{behaviour}@fake-phones/n"),
            &OriginateTarget::Application {
                application: "Wait".into(),
                data: "5".into(),
            },
        )
        .and_then(|o| o.timeout(Duration::from_secs(2)))
        .and_then(Originate::asynchronous)
        .and_then(|o| o.channel_id(&leg))
        .unwrap()
        .build();
        let queued = c.client.send(originate).await.unwrap();
        let id = queued.action_id().unwrap().text().into_owned();
        expected.push((id, reason, leg));
    }
    // The results come in whatever order the calls end: collect them by ActionID.
    let mut results = std::collections::HashMap::new();
    while results.len() < expected.len() {
        let e = next_matching(
            &mut c.events,
            Duration::from_secs(15),
            |e| matches!(e, AmiEvent::Message(m) if m.is("Event", "OriginateResponse")),
        )
        .await;
        let AmiEvent::Message(m) = e else {
            unreachable!()
        };
        let id = m.action_id().unwrap().text().into_owned();
        if expected.iter().any(|(want, _, _)| *want == id) {
            results.insert(id, m);
        }
    }
    for (id, reason, leg) in &expected {
        let m = &results[id];
        assert_eq!(m.text("Reason").unwrap(), *reason, "{leg}: {m:?}");
        assert_eq!(m.text("Uniqueid").unwrap(), leg.as_str());
        let _ = c.client.send(Action::hangup(leg, None).unwrap()).await;
    }
    c.stop().await;
}

#[tokio::test]
async fn daemon_shows_the_pbx_connected_with_its_version_in_api_pbx() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: serde_json::Value = d.get_json("/api/pbx", &key).await;
        let pbx = &body[0];
        if pbx["state"] == "connected" {
            let version = pbx["asteriskVersion"].as_str().unwrap();
            assert!(version.starts_with("Asterisk 22"), "{body}");
            assert!(pbx["connectedSince"].is_string(), "{body}");
            assert!(pbx["lastError"].is_null(), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never connected: {body}\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health: serde_json::Value = d.get("/health").send().await.unwrap().json().await.unwrap();
    assert_eq!(
        health["pbx"],
        serde_json::json!([{"name": "rig", "state": "connected", "connected": true}]),
        "{health}"
    );
    let metrics = d
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("medcall_pbx_connected{pbx=\"rig\"} 1"),
        "{metrics}"
    );
}
