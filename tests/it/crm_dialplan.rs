//! Seed 003 from the PBX: an operator dialling an identifier reaches the right fake
//! phone, bad and unknown identifiers take the dialplan's INVALID/NOTFOUND paths, and an
//! inbound call gets a call id that `call_asterisk` turns into the client's request.

use std::time::Duration;

use serde_json::Value;

use crate::calls::wait_connected;
use crate::support::rig::{RawAmi, RawMessage, Rig, field};
use crate::support::{Daemon, DaemonOptions};

const CLIENTS: &str = r#"{
  "clients": [{"id": 654321, "fullName": "Иванов Иван Иванович", "phones": ["+7 900 123-45-67"]}],
  "contracts": [{"id": 7000, "clientId": 654321, "phones": ["+7 911 222-33-44"]}],
  "requests": [{"id": 123456, "clientId": 654321}]
}"#;

async fn daemon_with_clients() -> (Daemon, String) {
    let d = Daemon::start().await;
    let key = d.admin_key();
    d.put_clients(&key, CLIENTS).await;
    wait_connected(&d, &key).await;
    (d, key)
}

async fn rig_ami() -> RawAmi {
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    let r = ami.login(&rig.username, &rig.secret).await;
    assert_eq!(field(&r, "Response"), Some("Success"));
    ami
}

/// Originates a Local channel into `context` at `exten`, pointed at this daemon's FastAGI.
async fn originate(
    ami: &mut RawAmi,
    d: &Daemon,
    exten: &str,
    context: &str,
    caller: &str,
) -> String {
    let id = format!("crm-{}-{}", std::process::id(), exten.replace('+', "p"));
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", &format!("Local/{exten}@{context}/n")),
        ("Application", "Wait"),
        ("Data", "5"),
        ("Async", "true"),
        ("CallerID", caller),
        // A channel variable shadows the global of the same name, for both Local halves.
        (
            "Variable",
            &format!("__MEDCALL_AGI=agi://127.0.0.1:{}", d.agi_port),
        ),
        ("ActionID", &id),
    ])
    .await;
    id
}

#[tokio::test]
async fn an_operator_dialling_request_and_client_reaches_the_clients_phone() {
    let (d, _key) = daemon_with_clients().await;
    let mut ami = rig_ami().await;
    originate(
        &mut ami,
        &d,
        "+123456s654321",
        "medcall-operator",
        "Operator <100>",
    )
    .await;
    let dial = ami
        .wait_for(Duration::from_secs(10), |m| {
            field(m, "Event") == Some("DialBegin")
                && field(m, "DialString").is_some_and(|s| s.starts_with("89001234567@fake-phones"))
        })
        .await;
    assert!(
        dial.is_some(),
        "the operator's leg dials the resolved number"
    );

    originate(
        &mut ami,
        &d,
        "+7000d0",
        "medcall-operator",
        "Operator <100>",
    )
    .await;
    let dial = ami
        .wait_for(Duration::from_secs(10), |m| {
            field(m, "Event") == Some("DialBegin")
                && field(m, "DialString").is_some_and(|s| s.starts_with("89112223344@fake-phones"))
        })
        .await;
    assert!(dial.is_some(), "the contract's first phone is dialled");
}

#[tokio::test]
async fn invalid_and_unknown_identifiers_take_their_dialplan_paths_and_dial_nothing() {
    let (d, _key) = daemon_with_clients().await;
    let mut ami = rig_ami().await;
    // Each would reach a real number if the lookup were wrong: +123456s1 pairs request
    // 123456 with another client than its own (654321, 89001234567); contract 7000 has
    // one phone (89112223344), not six.
    for (exten, status) in [
        ("+12s", "INVALID"),
        ("+123456s1", "NOTFOUND"),
        ("+7000d5", "NOTFOUND"),
    ] {
        originate(&mut ami, &d, exten, "medcall-operator", "Operator <100>").await;
        let call = watch_operator_call(&mut ami, exten).await;
        let lookup = call
            .iter()
            .find(|m| field(m, "UserEvent") == Some("MedcallNumberLookup"))
            .unwrap_or_else(|| panic!("{exten}: no lookup event"));
        assert_eq!(field(lookup, "Status"), Some(status), "{exten}: {lookup:?}");
        let own = format!("Local/{exten}@medcall-operator-");
        let dialled: Vec<_> = call
            .iter()
            .filter(|m| {
                field(m, "Event") == Some("DialBegin")
                    || (field(m, "Event") == Some("Newchannel")
                        && !field(m, "Channel").is_some_and(|c| c.starts_with(&own)))
            })
            .collect();
        assert!(dialled.is_empty(), "{exten} dialled: {dialled:?}");
    }
}

/// Everything Asterisk reports of the operator's call to `exten` (by its Linkedid), from
/// its first channel until its dialplan half hangs up: what it dialled, if anything.
async fn watch_operator_call(ami: &mut RawAmi, exten: &str) -> Vec<RawMessage> {
    let own = format!("Local/{exten}@medcall-operator-");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut linkedid: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = ami
            .next(left)
            .await
            .unwrap_or_else(|| panic!("{exten}: the operator's call never hung up: {seen:?}"));
        let channel = field(&m, "Channel").unwrap_or_default();
        if linkedid.is_none()
            && field(&m, "Event") == Some("Newchannel")
            && channel.starts_with(&own)
        {
            linkedid = field(&m, "Linkedid").map(str::to_string);
        }
        if linkedid.is_none() || field(&m, "Linkedid") != linkedid.as_deref() {
            continue;
        }
        let ends = field(&m, "Event") == Some("Hangup")
            && channel.starts_with(&own)
            && channel.ends_with(";2");
        seen.push(m);
        if ends {
            return seen;
        }
    }
}

#[tokio::test]
async fn an_inbound_call_gets_a_call_id_that_call_asterisk_turns_into_the_clients_request() {
    let (d, key) = daemon_with_clients().await;
    let mut ami = rig_ami().await;
    originate(
        &mut ami,
        &d,
        "100",
        "medcall-inbound",
        "Иван <+79001234567>",
    )
    .await;
    let ev = ami
        .wait_for(Duration::from_secs(10), |m| {
            field(m, "UserEvent") == Some("MedcallInbound")
                && field(m, "CallerIDNum") == Some("+79001234567")
        })
        .await
        .expect("the inbound route ran");
    assert_eq!(field(&ev, "Status"), Some("OK"), "{ev:?}");
    let call_id: i64 = field(&ev, "CallId").unwrap().parse().unwrap();

    let r = d
        .get(&format!("/api/events/call_asterisk?call_id={call_id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["client"]["id"], 654321, "{out}");
    assert_eq!(
        out["request"]["id"], 123456,
        "the client's open request: {out}"
    );
    assert_eq!(out["caller"], "+79001234567");

    // The same id is the call in /api/calls, with the AGI session on its timeline.
    let mut detail = Value::Null;
    for _ in 0..50 {
        detail = d.get_json(&format!("/api/calls/{call_id}"), &key).await;
        if detail["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "AgiSessionStart"))
            && detail["legs"].as_array().is_some_and(|l| !l.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = detail["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "AgiSessionStart" && e["detail"]["route"] == "inbound"),
        "{detail:#}"
    );

    // A request made from the call itself links the same client.
    let r = d
        .get_json(&format!("/api/events?call={call_id}"), &key)
        .await;
    assert_eq!(r["source"], "call");
    assert_eq!(r["clientId"], 654321);

    // The session timeline is committed without waiting for the disk
    // (`Durability::Kernel`): what the API has shown must still survive `kill -9`.
    let mut d = d;
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5)).await.unwrap();
    let db = d.data_dir().join("medcall.db");
    let d2 = Daemon::start_with(DaemonOptions::default().env("MEDCALL__STORE__PATH", db.display()))
        .await;
    let after = d2.get_json(&format!("/api/calls/{call_id}"), &key).await;
    let kinds: Vec<&str> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"]["route"] == "inbound")
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"AgiSessionStart") && kinds.contains(&"AgiSessionEnd"),
        "after kill -9: {after:#}"
    );
}
