//! Call state from the real rig: calls and legs persisted with state, times, causes and
//! originate results; Cdr stored; reconciliation after a daemon restart (adoption) and
//! after an Asterisk restart in the middle of live calls (legs closed as `pbx-gap`).
//! One fake PBX, for what the rig cannot do on demand: refuse `CoreShowChannels`.
//! Legs of a conversation call, originated one by one into a ConfBridge, are one call by
//! their `MEDCALL_CALL_KEY`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::rig::{HangupOnDrop, RawAmi, Rig, field};
use crate::support::{Daemon, DaemonOptions, free_port};

/// Waits until the daemon reports its PBX connected.
pub async fn wait_connected(d: &Daemon, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pbx: Value = d.get_json("/api/pbx", key).await;
        if pbx[0]["state"] == "connected" {
            return;
        }
        assert!(Instant::now() < deadline, "PBX never connected: {pbx}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Originates `Local/<behaviour>@fake-phones/n` with a known uniqueid; returns it.
async fn originate(ami: &mut RawAmi, behaviour: &str, tag: &str, timeout_ms: u32) -> String {
    originate_for(ami, behaviour, tag, timeout_ms, 1).await
}

/// [`originate`], the originating side waiting `wait_s` seconds before it hangs up.
async fn originate_for(
    ami: &mut RawAmi,
    behaviour: &str,
    tag: &str,
    timeout_ms: u32,
    wait_s: u32,
) -> String {
    let uid = format!("it-{tag}-{}", std::process::id());
    let wait = wait_s.to_string();
    let other = format!("{uid}-2");
    let timeout = timeout_ms.to_string();
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", &format!("Local/{behaviour}@fake-phones/n")),
        ("Application", "Wait"),
        ("Data", &wait),
        ("Async", "true"),
        ("Timeout", &timeout),
        ("ChannelId", &uid),
        ("OtherChannelId", &other),
        ("Account", &format!("acc-{tag}")),
        ("ActionID", &uid),
    ])
    .await;
    uid
}

/// The call holding the leg `uniqueid`, once `done` says it is complete.
pub async fn call_with_leg(
    d: &Daemon,
    key: &str,
    uniqueid: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    let mut last = Value::Null;
    loop {
        let list: Value = d.get_json("/api/calls?limit=200", key).await;
        for c in list["items"].as_array().unwrap() {
            let detail: Value = d.get_json(&format!("/api/calls/{}", c["id"]), key).await;
            if detail["legs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["uniqueid"] == uniqueid)
            {
                if done(&detail) {
                    return detail;
                }
                last = detail;
            }
        }
        assert!(
            Instant::now() < deadline,
            "call with leg {uniqueid} not complete in time; last seen: {last:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn leg<'a>(call: &'a Value, uniqueid: &str) -> &'a Value {
    call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["uniqueid"] == uniqueid)
        .unwrap()
}

#[tokio::test]
async fn originated_calls_are_persisted_with_state_times_cause_and_originate_reason() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;

    // (behaviour, originate timeout, expected OriginateResponse reason, answered?)
    let cases = [
        ("answer", 10_000, 4, true),
        ("busy", 10_000, 5, false),
        ("noanswer", 2_000, 3, false),
        ("congestion", 10_000, 8, false),
    ];
    let mut uids = Vec::new();
    for (behaviour, timeout, _, _) in cases {
        uids.push(originate(&mut ami, behaviour, behaviour, timeout).await);
    }
    for ((behaviour, _, reason, answered), uid) in cases.iter().zip(&uids) {
        let call = call_with_leg(&d, &key, uid, Duration::from_secs(20), |c| {
            !c["active"].as_bool().unwrap() && leg(c, uid)["originateReason"].is_number()
        })
        .await;
        let l = leg(&call, uid);
        assert_eq!(l["originateReason"], *reason, "{behaviour}: {call:#}");
        assert_eq!(l["accountCode"], format!("acc-{behaviour}"), "{behaviour}");
        assert_eq!(l["endReason"], "hangup", "{behaviour}");
        assert!(
            l["createdAt"].is_string() && l["endedAt"].is_string(),
            "{behaviour}: {l}"
        );
        assert!(l["hangupCause"].is_number(), "{behaviour}: {l}");
        assert_eq!(l["answeredAt"].is_string(), *answered, "{behaviour}: {l}");
        assert!(call["endedAt"].is_string());
        assert!(
            call["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "Hangup"),
            "{behaviour}: timeline has the hangup"
        );
        assert_eq!(
            call["legs"].as_array().unwrap().len(),
            2,
            "{behaviour}: both halves of the Local channel"
        );
    }
    // The busy call's cause is "user busy" (17) on the device side.
    let busy = call_with_leg(&d, &key, &uids[1], Duration::from_secs(5), |_| true).await;
    assert!(
        busy["legs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["hangupCause"] == 17),
        "{busy:#}"
    );
}

#[tokio::test]
async fn the_real_cdr_of_a_finished_call_is_stored_with_the_call() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    let uid = originate(&mut ami, "hangup", "cdr", 10_000).await;
    let call = call_with_leg(&d, &key, &uid, Duration::from_secs(20), |c| {
        !c["cdrs"].as_array().unwrap().is_empty()
    })
    .await;
    let cdr = &call["cdrs"][0];
    assert_eq!(cdr["AccountCode"], "acc-cdr", "{cdr}");
    assert_eq!(cdr["Disposition"], "ANSWERED", "{cdr}");
}

/// A second Asterisk from the rig's root on its own port, stopped on drop.
pub struct OwnRig {
    pub instance: String,
    pub port: u16,
}

impl OwnRig {
    pub fn script(&self, verb: &str) {
        let out = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/asterisk-rig"
        ))
        .arg(verb)
        .env("MEDCALL_RIG_INSTANCE", &self.instance)
        .env("MEDCALL_RIG_AMI_PORT", self.port.to_string())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "asterisk-rig {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn up(name: &str) -> OwnRig {
        let rig = OwnRig {
            instance: format!("{name}-{}", std::process::id()),
            port: free_port(),
        };
        rig.script("up");
        rig
    }
}

impl Drop for OwnRig {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/asterisk-rig"
        ))
        .arg("down")
        .env("MEDCALL_RIG_INSTANCE", &self.instance)
        .output();
    }
}

#[tokio::test]
async fn reconciliation_adopts_calls_made_while_away_and_closes_those_lost_in_an_asterisk_restart()
{
    let own = OwnRig::up("it-restart");
    let rig = Rig::from_env();
    let options = || {
        DaemonOptions::default()
            .env("MEDCALL__PBX__0__PORT", own.port)
            .env("MEDCALL__AMI__BACKOFF_MIN_MS", 100)
            .env("MEDCALL__AMI__BACKOFF_MAX_MS", 500)
    };
    let mut d = Daemon::start_with(options()).await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let db = d.data_dir().join("medcall.db");

    let mut ami = RawAmi::connect(&Rig {
        ami_port: own.port,
        ..rig.clone()
    })
    .await;
    ami.login(&rig.username, &rig.secret).await;
    // Both calls must outlive the daemon's restart and end only in Asterisk's crash:
    // with the usual one-second wait a slow restart saw them hang up first.
    let seen = originate_for(&mut ami, "silent", "seen", 10_000, 120).await;
    call_with_leg(&d, &key, &seen, Duration::from_secs(10), |c| {
        leg(c, &seen)["answeredAt"].is_string()
    })
    .await;

    // The daemon dies; a call starts while it is away; it comes back on the same store.
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).await.unwrap();
    let away = originate_for(&mut ami, "silent", "away", 10_000, 120).await;
    ami.wait_for(Duration::from_secs(10), |m| {
        field(m, "Event") == Some("OriginateResponse")
            && field(m, "ActionID") == Some(away.as_str())
    })
    .await
    .expect("the call made while away is up");
    let d = Daemon::start_with(options().env("MEDCALL__STORE__PATH", db.display())).await;
    wait_connected(&d, &key).await;
    let call = call_with_leg(&d, &key, &away, Duration::from_secs(10), |c| {
        c["active"] == true
    })
    .await;
    assert_eq!(leg(&call, &away)["adopted"], true, "{call:#}");
    let call = call_with_leg(&d, &key, &seen, Duration::from_secs(10), |_| true).await;
    assert!(
        leg(&call, &seen)["endedAt"].is_null(),
        "still live: {call:#}"
    );

    // Asterisk dies with both calls up (no Hangup events) and comes back: the calls
    // vanished while the daemon was not connected, and it says so.
    own.script("crash");
    own.script("up");
    for uid in [&seen, &away] {
        let call = call_with_leg(&d, &key, uid, Duration::from_secs(30), |c| {
            !c["active"].as_bool().unwrap()
        })
        .await;
        assert_eq!(leg(&call, uid)["endReason"], "pbx-gap", "{call:#}");
    }
    let pbx: Value = d.get_json("/api/pbx", &key).await;
    assert_eq!(pbx[0]["state"], "connected");
    assert!(pbx[0]["reconnectCount"].as_u64().unwrap() >= 1, "{pbx}");
    let gaps = pbx[0]["recentGaps"].as_array().unwrap();
    assert!(
        gaps.iter().any(|g| g["legsClosed"].as_i64().unwrap() >= 4),
        "both Local halves of both calls: {pbx:#}"
    );
    assert!(
        gaps.iter().any(|g| g["legsAdopted"].as_i64().unwrap() >= 2),
        "{pbx:#}"
    );
}

/// A fake PBX on a free port: answers the login and every action with success, except
/// `CoreShowChannels`, refused the first `refusals` times (as a PBX still loading its
/// modules refuses it) and then answered with one live channel, `fake-1.1`. Returns the
/// port and when each `CoreShowChannels` came.
async fn pbx_slow_to_answer(
    refusals: usize,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Instant>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&asked);
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        let mut fields: Vec<(String, String)> = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                continue;
            }
            if !line.trim().is_empty() {
                continue;
            }
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or("", |(_, v)| v.as_str())
                    .to_string()
            };
            let (action, id) = (get("action").to_ascii_lowercase(), get("actionid"));
            fields.clear();
            let reply = match action.as_str() {
                "coreshowchannels" => {
                    let n = {
                        let mut asked = seen.lock().unwrap();
                        asked.push(Instant::now());
                        asked.len()
                    };
                    if n <= refusals {
                        format!(
                            "Response: Error\r\nActionID: {id}\r\nMessage: Still loading\r\n\r\n"
                        )
                    } else {
                        format!(
                            "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n\
                             Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: PJSIP/fake-00000001\r\nChannelStateDesc: Up\r\n\
                             Uniqueid: fake-1.1\r\nLinkedid: fake-1.1\r\nDuration: 00:00:05\r\n\r\n\
                             Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"
                        )
                    }
                }
                "confbridgelistrooms" => format!(
                    "Response: Error\r\nActionID: {id}\r\nMessage: No active conferences.\r\n\r\n"
                ),
                _ => format!("Response: Success\r\nActionID: {id}\r\nMessage: OK\r\n\r\n"),
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    (port, asked)
}

#[tokio::test]
async fn a_reconciliation_the_pbx_cannot_answer_yet_is_retried_every_second_until_it_runs() {
    let (port, asked) = pbx_slow_to_answer(2).await;
    let d = Daemon::start_with(
        DaemonOptions::default()
            .env("MEDCALL__PBX__0__PORT", port)
            .env("MEDCALL__PBX__0__AUTH", "plain"),
    )
    .await;
    let key = d.admin_key();
    let call = call_with_leg(&d, &key, "fake-1.1", Duration::from_secs(10), |c| {
        c["active"] == true
    })
    .await;
    assert_eq!(leg(&call, "fake-1.1")["adopted"], true, "{call:#}");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 3, "two refusals, then the answer");
    for pair in asked.windows(2) {
        let pause = pair[1] - pair[0];
        assert!(
            pause >= Duration::from_millis(900),
            "retried after {pause:?}, not a second"
        );
    }
}

#[tokio::test]
async fn a_channel_variable_the_manager_reports_is_kept_on_its_leg() {
    // `channelvars = MEDCALL_CALL_ID,…` (asterisk-conf/manager.conf): every event of a
    // channel reports each listed variable as `ChanVariable`, an unset one as empty.
    let d = Daemon::start().await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    let uid = format!("it-vars-{}", std::process::id());
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", "Local/answer@fake-phones/n"),
        ("Application", "Wait"),
        ("Data", "1"),
        ("Async", "true"),
        ("Timeout", "10000"),
        ("ChannelId", &uid),
        ("OtherChannelId", &format!("{uid}-2")),
        ("Variable", "MEDCALL_CALL_ID=4711"),
        ("ActionID", &uid),
    ])
    .await;
    let call = call_with_leg(&d, &key, &uid, Duration::from_secs(10), |c| {
        leg(c, &uid)["variables"]["MEDCALL_CALL_ID"].is_string()
    })
    .await;
    assert_eq!(
        leg(&call, &uid)["variables"],
        serde_json::json!({
            "MEDCALL_CALL_ID": "4711",
            "MEDCALL_CALL_KEY": "",
            "MEDCALL_CONSULTATION_ID": "",
            "MEDCALL_ROLE": "",
            "MEDCALL_THREAD_ID": "",
            "MEDCALL_USER_ID": "",
        }),
        "{call:#}"
    );
}

/// The active calls `/api/calls?active=true` lists holding any of `uids`, with their
/// detail, once `done` says so (bounded).
async fn active_calls_holding(
    d: &Daemon,
    key: &str,
    uids: &[String],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list: Value = d.get_json("/api/calls?active=true&limit=200", key).await;
        let mut holding = Vec::new();
        for c in list["items"].as_array().unwrap() {
            let detail: Value = d.get_json(&format!("/api/calls/{}", c["id"]), key).await;
            let mine = detail["legs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| uids.iter().any(|u| l["uniqueid"] == u.as_str()));
            if mine {
                holding.push(serde_json::json!({"listed": c, "detail": detail}));
            }
        }
        if done(&holding) {
            return holding;
        }
        assert!(
            Instant::now() < deadline,
            "active calls never matched; last seen: {holding:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn legs_originated_one_by_one_into_a_conference_with_one_call_key_are_one_call() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    let pid = std::process::id();
    let conf = format!("itkey{pid}");
    let call_key = format!("5b0525134c0319001573485e-it{pid}");
    // Each leg its own Originate, so each pair of Local halves has its own Linkedid.
    let mut uids = Vec::new();
    let mut cleanup = HangupOnDrop(Vec::new());
    for who in ["a", "b"] {
        let uid = format!("{conf}-{who}");
        let other = format!("{uid}-2");
        cleanup.0.push(uid.clone());
        ami.send(&[
            ("Action", "Originate"),
            ("Channel", "Local/silent@fake-phones/n"),
            ("Context", "medcall-conference"),
            ("Exten", &conf),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", "10000"),
            ("ChannelId", &uid),
            ("OtherChannelId", &other),
            ("Account", &conf),
            ("Variable", &format!("MEDCALL_CALL_KEY={call_key}")),
            ("ActionID", &uid),
        ])
        .await;
        uids.push(uid);
        uids.push(other);
    }
    // Asterisk's own view: two Linkedids among the four channels.
    let mut linkedids = std::collections::BTreeSet::new();
    while linkedids.len() < 2 {
        let m = ami
            .wait_for(Duration::from_secs(10), |m| {
                field(m, "Event") == Some("Newchannel")
                    && field(m, "Uniqueid").is_some_and(|u| uids.iter().any(|x| x == u))
            })
            .await
            .expect("the legs' channels appear");
        linkedids.insert(field(&m, "Linkedid").unwrap_or_default().to_string());
    }

    // One call, with all four channels, and both conference halves seen joining.
    let calls = active_calls_holding(&d, &key, &uids, |calls| {
        let joined = |c: &Value| {
            c["detail"]["legs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["conference"] == conf.as_str())
                .count()
        };
        calls.len() == 1 && calls[0]["listed"]["legCount"] == 4 && joined(&calls[0]) == 2
    })
    .await;
    let call = &calls[0]["detail"];
    assert_eq!(call["linkedid"], call_key.as_str(), "{call:#}");
    assert_eq!(calls[0]["listed"]["active"], true);
    let mut legs: Vec<&str> = call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["uniqueid"].as_str().unwrap())
        .collect();
    legs.sort_unstable();
    let mut expected: Vec<&str> = uids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(legs, expected, "all four channels are its legs: {call:#}");

    for uid in [&uids[0], &uids[2]] {
        ami.send(&[("Action", "Hangup"), ("Channel", uid)]).await;
    }
    let ended = call_with_leg(&d, &key, &uids[0], Duration::from_secs(15), |c| {
        c["active"] == false
    })
    .await;
    assert_eq!(ended["id"], call["id"]);
    assert!(ended["endedAt"].is_string());
    for l in ended["legs"].as_array().unwrap() {
        assert!(l["endedAt"].is_string(), "every leg ended: {ended:#}");
    }
    drop(cleanup);
}

#[tokio::test]
async fn a_channel_tagged_with_a_call_key_after_it_began_moves_to_that_call_and_its_own_call_ends()
{
    let d = Daemon::start().await;
    let key = d.admin_key();
    wait_connected(&d, &key).await;
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    let uid = originate_for(&mut ami, "silent", "late-key", 10_000, 30).await;
    let other = format!("{uid}-2");
    let _cleanup = HangupOnDrop(vec![uid.clone()]);
    let first = call_with_leg(&d, &key, &uid, Duration::from_secs(10), |c| {
        leg(c, &uid)["answeredAt"].is_string()
    })
    .await;
    assert_eq!(
        first["linkedid"],
        uid.as_str(),
        "untagged: its Linkedid's call"
    );
    // Tagged as the FastAGI route tags the inbound caller; its next event shows it.
    let call_key = format!("late-key-{}", std::process::id());
    ami.send(&[
        ("Action", "Setvar"),
        ("Channel", &uid),
        ("Variable", "MEDCALL_CALL_KEY"),
        ("Value", &call_key),
    ])
    .await;
    ami.send(&[("Action", "Hangup"), ("Channel", &uid)]).await;
    let moved = call_with_leg(&d, &key, &uid, Duration::from_secs(10), |c| {
        c["linkedid"] == call_key.as_str() && c["active"] == false
    })
    .await;
    assert_ne!(moved["id"], first["id"]);
    assert_eq!(leg(&moved, &uid)["endReason"], "hangup", "{moved:#}");
    assert_eq!(moved["legs"].as_array().unwrap().len(), 1, "{moved:#}");
    // The old call keeps the other half and what was written before the move.
    let old = call_with_leg(&d, &key, &other, Duration::from_secs(10), |c| {
        c["active"] == false
    })
    .await;
    assert_eq!(old["id"], first["id"]);
    let kinds: Vec<(&str, &str)> = old["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["uniqueid"] == uid.as_str())
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["detail"]["to"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds.first(), Some(&("Newchannel", "")), "{old:#}");
    assert_eq!(
        kinds.last(),
        Some(&("LegMovedOut", call_key.as_str())),
        "{old:#}"
    );
}
