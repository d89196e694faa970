//! Seed 002 against the real rig: a thread's call on one ConfBridge, steered over HTTP.
//! Users are Local channels with behaviours (`asterisk-conf/test`'s
//! `medcall-test-users`: the user id's first two digits choose the phone). What Asterisk
//! really did is checked on the test's own raw AMI session, never through medcall.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::calls::wait_connected;
use crate::support::rig::{RawAmi, RawMessage, Rig, field};
use crate::support::{Daemon, DaemonOptions, free_port};

/// A fresh 24-hex-digit id starting with `prefix` (a behaviour for user ids).
pub fn id(prefix: &str) -> String {
    let mut s = prefix.to_string();
    while s.len() < 24 {
        s.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    s.truncate(24);
    s
}

/// A daemon whose users ring the rig's fake phones, ring 3 s before "no answer".
pub fn options() -> DaemonOptions {
    DaemonOptions::default()
        .env(
            "MEDCALL__CALLS__DIAL_TEMPLATE",
            "Local/{userId}@medcall-test-users/n",
        )
        .env("MEDCALL__CALLS__RING_TIMEOUT_MS", 3000)
        .env("MEDCALL__CALLS__END_DEADLINE_MS", 5000)
}

pub struct Conv {
    pub d: Daemon,
    pub key: String,
    pub team: String,
}

impl Conv {
    pub async fn start() -> Conv {
        Conv::start_with(options()).await
    }

    pub async fn start_with(options: DaemonOptions) -> Conv {
        let d = Daemon::start_with(options).await;
        let key = d.admin_key();
        Conv::connected(d, key).await
    }

    /// With `key` (a configured key: the daemon then writes no first-start key).
    pub async fn connected(d: Daemon, key: String) -> Conv {
        wait_connected(&d, &key).await;
        Conv {
            d,
            key,
            team: id(""),
        }
    }

    /// `POST /{team}/{route}` with a JSON body: the status and the envelope.
    pub async fn post(&self, route: &str, body: Value) -> (u16, Value) {
        self.post_raw(route, body.to_string()).await
    }

    pub async fn post_raw(&self, route: &str, body: String) -> (u16, Value) {
        let r = self
            .d
            .post(&format!("/{}/{route}", self.team))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{route}: not JSON ({status}): {text}"));
        (status, v)
    }

    /// `POST`, asserting 200 and the envelope; returns `data`.
    pub async fn ok(&self, route: &str, body: Value) -> Value {
        let (status, v) = self.post(route, body.clone()).await;
        assert_eq!(status, 200, "{route} {body}: {v}");
        assert_eq!(v["code"], 200, "{v}");
        assert_eq!(v["message"], "OK", "{v}");
        v["data"].clone()
    }

    /// The thread's current call (`data.call`).
    pub async fn call(&self, thread: &str) -> Value {
        let v = self
            .d
            .get_json(&format!("/{}/call/{thread}", self.team), &self.key)
            .await;
        v["data"]["call"].clone()
    }

    /// Polls the thread's call until `pred` holds (up to `limit`).
    pub async fn wait_call(
        &self,
        thread: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let call = self.call(thread).await;
            if pred(&call) {
                return call;
            }
            assert!(Instant::now() < deadline, "condition never held: {call:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The participant of `user` in a call view.
pub fn participant<'a>(call: &'a Value, user: &str) -> &'a Value {
    call["participants"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|p| p["userId"] == user)
        .unwrap_or_else(|| panic!("no participant {user} in {call:#}"))
}

pub fn state_of(call: &Value, user: &str) -> String {
    participant(call, user)["state"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn raw_ami() -> RawAmi {
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    ami
}

/// The rig's channels whose AccountCode is `account`, by the test's own CoreShowChannels.
pub async fn channels_of(ami: &mut RawAmi, account: &str) -> Vec<RawMessage> {
    let action_id = format!("csc-{}", rand::random::<u64>());
    ami.send(&[("Action", "CoreShowChannels"), ("ActionID", &action_id)])
        .await;
    let mut found = Vec::new();
    loop {
        let m = ami
            .wait_for(Duration::from_secs(5), |m| {
                field(m, "ActionID") == Some(action_id.as_str())
            })
            .await
            .expect("CoreShowChannels answer");
        match field(&m, "Event") {
            Some("CoreShowChannel") if field(&m, "AccountCode") == Some(account) => found.push(m),
            Some("CoreShowChannelsComplete") => return found,
            _ => {}
        }
    }
}

/// Waits (up to 5 s) until the rig has no channel of `account`.
pub async fn assert_no_channels_left(ami: &mut RawAmi, account: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = channels_of(ami, account).await;
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "channels of {account} left: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn invite_counts_accepted_originates_and_each_user_ends_as_their_phone_behaved() {
    let c = Conv::start().await;
    let mut ami = raw_ami().await;
    let thread = id("");
    assert_eq!(
        c.ok("call/start", json!({"threadId": thread})).await,
        json!({"direction": "outbound"})
    );
    let (status, v) = c.post("call/start", json!({"threadId": thread})).await;
    assert_eq!((status, v["code"].as_u64()), (409, Some(409)), "{v}");

    let (answer, busy, congestion, no_answer) = (id("a0"), id("b0"), id("c0"), id("d0"));
    let data = c
        .ok(
            "call.user/invite",
            json!({"threadId": thread, "userIds": [answer, busy, congestion, no_answer, busy]}),
        )
        .await;
    assert_eq!(
        data,
        json!({"invitedUsersCount": 4}),
        "duplicates count once"
    );
    let call = c
        .wait_call(&thread, Duration::from_secs(15), |call| {
            state_of(call, &answer) == "joined"
                && state_of(call, &busy) == "busy"
                && state_of(call, &congestion) == "congestion"
                && state_of(call, &no_answer) == "no-answer"
        })
        .await;
    assert_eq!(call["state"], "active");
    assert!(
        participant(&call, &answer)["joinedAt"].is_string(),
        "{call:#}"
    );
    assert_eq!(participant(&call, &answer)["role"], "participant");

    // Already in the call: not dialled again, not counted.
    let data = c
        .ok(
            "call.user/invite",
            json!({"threadId": thread, "userId": answer}),
        )
        .await;
    assert_eq!(data, json!({"invitedUsersCount": 0}));

    let ended = c.ok("call/end", json!({"threadId": thread})).await;
    assert_eq!(ended["result"], "answered", "{ended}");
    assert_eq!(ended["dialogDuration"], 0, "one human joined: no dialog");
    assert_eq!(ended["direction"], "outbound");
    assert_no_channels_left(&mut ami, &thread).await;
    let call = c.call(&thread).await;
    assert_eq!(call["state"], "ended", "{call:#}");
    assert_eq!(participant(&call, &answer)["state"], "left");
    assert_eq!(participant(&call, &answer)["endReason"], "ended");
    let (status, v) = c.post("call/end", json!({"threadId": thread})).await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test]
async fn a_call_whose_every_attempt_was_busy_ends_busy() {
    let c = Conv::start().await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    let (b1, b2) = (id("b0"), id("b0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [b1, b2]}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &b1) == "busy" && state_of(call, &b2) == "busy"
    })
    .await;
    let ended = c.ok("call/end", json!({"threadId": thread})).await;
    assert_eq!(ended["result"], "busy", "{ended}");
}

#[tokio::test]
async fn durations_are_what_ami_showed_the_test() {
    let c = Conv::start().await;
    let mut ami = raw_ami().await;
    let thread = id("");
    let started = Instant::now();
    c.ok("call/start", json!({"threadId": thread})).await;
    let (u1, u2) = (id("a0"), id("a0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [u1, u2]}),
    )
    .await;
    let mut joins = 0;
    while joins < 2 {
        ami.wait_for(Duration::from_secs(10), |m| {
            field(m, "Event") == Some("ConfbridgeJoin")
                && field(m, "Conference") == Some(thread.as_str())
        })
        .await
        .expect("both users join");
        joins += 1;
    }
    let dialog_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let end = c.post("call/end", json!({"threadId": thread}));
    let first_leave = async {
        ami.wait_for(Duration::from_secs(10), |m| {
            field(m, "Event") == Some("ConfbridgeLeave")
                && field(m, "Conference") == Some(thread.as_str())
        })
        .await
        .expect("a leave");
        Instant::now()
    };
    let ((status, v), left_at) = tokio::join!(end, first_leave);
    let ended_at = Instant::now();
    assert_eq!(status, 200, "{v}");
    let data = &v["data"];
    let dialog = (left_at - dialog_from).as_secs_f64();
    let call = (ended_at - started).as_secs_f64();
    let got_dialog = data["dialogDuration"].as_f64().unwrap();
    let got_call = data["callDuration"].as_f64().unwrap();
    assert!(
        (got_dialog - dialog).abs() <= 1.0,
        "dialog {got_dialog} vs {dialog:.2}: {v}"
    );
    assert!(
        (got_call - call).abs() <= 1.0,
        "call {got_call} vs {call:.2}: {v}"
    );
    assert_eq!(data["result"], "answered");
}

#[tokio::test]
async fn pause_puts_a_joined_user_on_music_and_unpause_brings_them_back() {
    let c = Conv::start().await;
    let mut ami = raw_ami().await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    let (u1, u2, u3) = (id("a0"), id("a0"), id("a0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [u1, u2, u3]}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        [&u1, &u2, &u3]
            .iter()
            .all(|u| state_of(call, u) == "joined")
    })
    .await;
    let stranger = id("a0");
    let data = c
        .ok(
            "call/pause",
            json!({"threadId": thread, "userIds": [u1, stranger]}),
        )
        .await;
    assert_eq!(
        data,
        json!({"pausedUsersCount": 1}),
        "the stranger is not in the call"
    );
    let call = c.call(&thread).await;
    assert_eq!(state_of(&call, &u1), "paused", "{call:#}");
    let uniqueid = participant(&call, &u1)["uniqueid"]
        .as_str()
        .unwrap()
        .to_string();
    let application = |chans: &[RawMessage]| {
        chans
            .iter()
            .find(|m| field(m, "Uniqueid") == Some(uniqueid.as_str()))
            .and_then(|m| field(m, "Application"))
            .map(str::to_string)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let chans = channels_of(&mut ami, &thread).await;
        if application(&chans).as_deref() == Some("MusicOnHold") {
            break;
        }
        assert!(Instant::now() < deadline, "not on hold: {chans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still paused a moment later: its ConfbridgeLeave was not read as leaving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state_of(&c.call(&thread).await, &u1), "paused");
    let data = c
        .ok("call/pause", json!({"threadId": thread, "userId": u1}))
        .await;
    assert_eq!(data, json!({"pausedUsersCount": 0}), "already paused");

    let data = c
        .ok(
            "call/unpause",
            json!({"threadId": thread, "userIds": [u1, u2]}),
        )
        .await;
    assert_eq!(data, json!({"unpausedUsersCount": 1}), "u2 was not paused");
    c.wait_call(&thread, Duration::from_secs(5), |call| {
        state_of(call, &u1) == "joined"
    })
    .await;
    let chans = channels_of(&mut ami, &thread).await;
    assert_eq!(
        application(&chans).as_deref(),
        Some("ConfBridge"),
        "{chans:#?}"
    );
    c.ok("call/end", json!({"threadId": thread})).await;
    assert_no_channels_left(&mut ami, &thread).await;
}

#[tokio::test]
async fn exclude_hangs_up_ringing_and_joined_users_and_leaves_no_channel_of_theirs() {
    let c = Conv::start_with(options().env("MEDCALL__CALLS__RING_TIMEOUT_MS", 30000)).await;
    let mut ami = raw_ami().await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    let (joined, ringing, stays) = (id("a0"), id("d0"), id("a0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [joined, ringing, stays]}),
    )
    .await;
    let call = c
        .wait_call(&thread, Duration::from_secs(10), |call| {
            state_of(call, &joined) == "joined"
                && state_of(call, &stays) == "joined"
                && state_of(call, &ringing) == "ringing"
        })
        .await;
    let gone: Vec<String> = [&joined, &ringing]
        .iter()
        .map(|u| {
            participant(&call, u)["uniqueid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let data = c
        .ok(
            "call.user/exclude",
            json!({"threadId": thread, "userIds": [joined, ringing, id("a0")]}),
        )
        .await;
    assert_eq!(data, json!({"excludedUsersCount": 2}));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let chans = channels_of(&mut ami, &thread).await;
        let theirs: Vec<_> = chans
            .iter()
            .filter(|m| {
                gone.iter()
                    .any(|g| field(m, "Uniqueid").is_some_and(|u| u.starts_with(g.as_str())))
            })
            .collect();
        if theirs.is_empty() {
            assert!(
                !chans.is_empty(),
                "the remaining user's channels are still up"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "excluded users' channels left: {theirs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = c
        .wait_call(&thread, Duration::from_secs(5), |call| {
            state_of(call, &joined) == "left" && state_of(call, &ringing) == "left"
        })
        .await;
    assert_eq!(
        participant(&call, &joined)["endReason"],
        "excluded",
        "{call:#}"
    );
    assert_eq!(
        participant(&call, &ringing)["endReason"],
        "cancelled",
        "{call:#}"
    );
    assert_eq!(state_of(&call, &stays), "joined");
    c.ok("call/end", json!({"threadId": thread})).await;
    assert_no_channels_left(&mut ami, &thread).await;
}

#[tokio::test]
async fn of_twenty_concurrent_starts_on_one_thread_exactly_one_succeeds() {
    let c = Conv::start().await;
    let thread = id("");
    let starts = (0..20).map(|_| c.post("call/start", json!({"threadId": thread})));
    let answers = futures_util::future::join_all(starts).await;
    let won = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused = answers
        .iter()
        .filter(|(s, v)| *s == 409 && v["code"] == 409)
        .count();
    assert_eq!((won, refused), (1, 19), "{answers:?}");
    c.ok("call/end", json!({"threadId": thread})).await;
}

#[tokio::test]
async fn an_end_racing_invites_leaves_nothing_ringing() {
    let c = Conv::start_with(options().env("MEDCALL__CALLS__RING_TIMEOUT_MS", 30000)).await;
    let mut ami = raw_ami().await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [id("d0"), id("a0")]}),
    )
    .await;
    let invites = (0..6).map(|_| {
        c.post(
            "call.user/invite",
            json!({"threadId": thread, "userIds": [id("d0"), id("f0")]}),
        )
    });
    let (ended, invites) = tokio::join!(
        c.post("call/end", json!({"threadId": thread})),
        futures_util::future::join_all(invites)
    );
    assert_eq!(ended.0, 200, "{ended:?}");
    for (status, v) in &invites {
        assert!(
            [200, 404, 409].contains(status),
            "an invite racing the end: {status} {v}"
        );
    }
    assert_no_channels_left(&mut ami, &thread).await;
    let call = c.call(&thread).await;
    assert_eq!(call["state"], "ended", "{call:#}");
    for p in call["participants"].as_array().unwrap() {
        assert!(
            !["dialing", "ringing", "joined", "paused"].contains(&p["state"].as_str().unwrap()),
            "a live participant after the end: {call:#}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_answered_in_the_envelope_and_writes_nothing() {
    let keys = format!(
        "[[api_keys]]\nname = \"team-calls\"\nsha256 = \"{}\"\nscopes = [\"calls\"]\nteams = [\"{}\"]\n\n\
         [[api_keys]]\nname = \"events-only\"\nsha256 = \"{}\"\nscopes = [\"events\"]\n\n\
         [[api_keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n",
        medcall::auth::hash_key("team-key"),
        "aaaaaaaaaaaaaaaaaaaaaaaa",
        medcall::auth::hash_key("events-key"),
        medcall::auth::hash_key("ops-key"),
    );
    let d = Daemon::start_with(options().config(&keys)).await;
    let c = Conv::connected(d, "ops-key".into()).await;
    let thread = id("");
    let user = id("a0");
    let big = format!(
        "{{\"threadId\": \"{thread}\", \"pad\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "call/start",
            json!({"threadId": "5b05"}).to_string(),
            400,
            "threadId must be 24 hexadecimal digits",
        ),
        (
            "call/start",
            json!({"threadId": "5b0525134c0319001573485g"}).to_string(),
            400,
            "hexadecimal",
        ),
        (
            "call/start",
            json!({}).to_string(),
            400,
            "threadId is required",
        ),
        (
            "call/start",
            json!({"threadId": 5}).to_string(),
            400,
            "threadId must be a string",
        ),
        (
            "call/start",
            json!({"threadId": thread, "direction": "sideways"}).to_string(),
            400,
            "direction must be outbound or inbound",
        ),
        (
            "call/start",
            json!({"threadId": "5b0525134c03190015734\r\n"}).to_string(),
            400,
            "hexadecimal",
        ),
        (
            "call/start",
            json!({"threadId": "5b0525134c031900157348\u{0}"}).to_string(),
            400,
            "hexadecimal",
        ),
        (
            "call/start",
            "{not json".to_string(),
            400,
            "The body is not JSON",
        ),
        (
            "call/start",
            "[1]".to_string(),
            400,
            "must be a JSON object",
        ),
        ("call/start", big, 413, "larger than"),
        (
            "call.user/invite",
            json!({"threadId": thread}).to_string(),
            400,
            "One of userId or userIds is required",
        ),
        (
            "call.user/invite",
            json!({"threadId": thread, "userIds": user}).to_string(),
            400,
            "userIds must be an array",
        ),
        (
            "call.user/invite",
            json!({"threadId": thread, "userIds": []}).to_string(),
            400,
            "userIds must not be empty",
        ),
        (
            "call.user/invite",
            json!({"threadId": thread, "userIds": [user, "x\r\nAction: Hangup"]}).to_string(),
            400,
            "userIds[1]",
        ),
        (
            "call.user/invite",
            json!({"threadId": thread, "userId": "a0\n"}).to_string(),
            400,
            "userId must be 24",
        ),
        (
            "call/pause",
            json!({"threadId": thread, "userIds": [1]}).to_string(),
            400,
            "userIds[0] must be a string",
        ),
        (
            "call/end",
            json!({"threadId": thread}).to_string(),
            404,
            "has no active call",
        ),
        (
            "call.user/invite",
            json!({"threadId": thread, "userId": user}).to_string(),
            404,
            "has no active call",
        ),
        (
            "call/pause",
            json!({"threadId": thread, "userId": user}).to_string(),
            404,
            "has no active call",
        ),
        (
            "call/unpause",
            json!({"threadId": thread, "userId": user}).to_string(),
            404,
            "has no active call",
        ),
        (
            "call.user/exclude",
            json!({"threadId": thread, "userId": user}).to_string(),
            404,
            "has no active call",
        ),
    ];
    for (route, body, status, message) in &cases {
        let (got, v) = c.post_raw(route, body.clone()).await;
        assert_eq!(got, *status, "{route} {:.80}: {v}", body);
        assert_eq!(v["code"].as_u64(), Some(u64::from(*status)), "{v}");
        assert!(
            v["message"].as_str().unwrap().contains(message),
            "{route}: {v}"
        );
        assert!(v.get("data").is_none(), "{v}");
    }
    // Keys: none, wrong scope, a team the key may not control, a bad team id in the path.
    let post = |path: String, key: Option<&'static str>| {
        let mut r =
            c.d.post(&path)
                .header("content-type", "application/json")
                .body(json!({"threadId": thread}).to_string());
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    for (path, key, status) in [
        (format!("/{}/call/start", c.team), None, 401),
        (format!("/{}/call/start", c.team), Some("events-key"), 403),
        (format!("/{}/call/start", c.team), Some("team-key"), 403),
    ] {
        let (got, v) = post(path.clone(), key).await;
        assert_eq!(
            (got, v["code"].as_u64()),
            (status, Some(u64::from(status))),
            "{path} {key:?}: {v}"
        );
    }
    let (got, v) = c
        .post_raw("call/start", json!({"threadId": thread}).to_string())
        .await;
    assert_eq!(got, 200, "the admin key may: {v}");
    c.ok("call/end", json!({"threadId": thread})).await;
    let r =
        c.d.post("/nothex/call/start")
            .bearer_auth(&c.key)
            .body(json!({"threadId": thread}).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    // Nothing was written by the refused requests: the thread has the one call.
    let v =
        c.d.get_json(&format!("/{}/call/{thread}", c.team), &c.key)
            .await;
    assert_eq!(v["data"]["calls"].as_array().unwrap().len(), 1, "{v:#}");
    let other = id("");
    let v =
        c.d.get_json(&format!("/{}/call/{other}", c.team), &c.key)
            .await;
    assert_eq!(v["code"], 404, "{v}");
}

#[tokio::test]
async fn with_the_pbx_unreachable_every_control_route_answers_502_and_writes_nothing() {
    let c = Conv {
        d: Daemon::start_with(options().env("MEDCALL__PBX__0__PORT", free_port())).await,
        key: String::new(),
        team: id(""),
    };
    let c = Conv {
        key: c.d.admin_key(),
        ..c
    };
    let thread = id("");
    for (route, body) in [
        ("call/start", json!({"threadId": thread})),
        (
            "call.user/invite",
            json!({"threadId": thread, "userId": id("a0")}),
        ),
        (
            "call.user/exclude",
            json!({"threadId": thread, "userId": id("a0")}),
        ),
        (
            "call/pause",
            json!({"threadId": thread, "userId": id("a0")}),
        ),
        (
            "call/unpause",
            json!({"threadId": thread, "userId": id("a0")}),
        ),
        ("call/end", json!({"threadId": thread})),
    ] {
        let (status, v) = c.post(route, body).await;
        assert_eq!(
            (status, v["code"].as_u64()),
            (502, Some(502)),
            "{route}: {v}"
        );
        assert!(
            v["message"].as_str().unwrap().contains("unreachable"),
            "{v}"
        );
    }
    let v =
        c.d.get_json(&format!("/{}/call/{thread}", c.team), &c.key)
            .await;
    assert_eq!(v["code"], 404, "nothing was written: {v}");
}

#[tokio::test]
async fn a_call_survives_a_daemon_kill_and_its_durations_cover_the_whole_call() {
    let mut c = Conv::start().await;
    let mut ami = raw_ami().await;
    let thread = id("");
    let started = Instant::now();
    c.ok("call/start", json!({"threadId": thread})).await;
    let (u1, u2, u3) = (id("a0"), id("a0"), id("a0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [u1, u2]}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &u1) == "joined" && state_of(call, &u2) == "joined"
    })
    .await;
    let dialog_from = Instant::now();
    let db = c.d.data_dir().join("medcall.db");
    c.d.signal("KILL");
    c.d.wait_exit(Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = Daemon::start_with(options().env("MEDCALL__STORE__PATH", db.display())).await;
    wait_connected(&d, &c.key).await;
    // The dead daemon's directory holds the store: it lives until the test ends.
    let _dead = std::mem::replace(&mut c.d, d);

    let call = c.call(&thread).await;
    assert_eq!(call["state"], "active", "{call:#}");
    assert_eq!(state_of(&call, &u1), "joined");
    let data = c
        .ok("call/pause", json!({"threadId": thread, "userId": u1}))
        .await;
    assert_eq!(data, json!({"pausedUsersCount": 1}));
    let data = c
        .ok("call/unpause", json!({"threadId": thread, "userId": u1}))
        .await;
    assert_eq!(data, json!({"unpausedUsersCount": 1}));
    let data = c
        .ok(
            "call.user/invite",
            json!({"threadId": thread, "userIds": [u1, u3]}),
        )
        .await;
    assert_eq!(
        data,
        json!({"invitedUsersCount": 1}),
        "u1 is still in the call"
    );
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &u3) == "joined"
    })
    .await;
    let ended = c.ok("call/end", json!({"threadId": thread})).await;
    let whole = started.elapsed().as_secs_f64();
    let dialog = dialog_from.elapsed().as_secs_f64();
    let got_call = ended["callDuration"].as_f64().unwrap();
    let got_dialog = ended["dialogDuration"].as_f64().unwrap();
    assert!(
        (got_call - whole).abs() <= 1.0,
        "call {got_call} vs {whole:.2}: {ended}"
    );
    // The pause of u1 left u2 and u3 (or u2 alone before u3 joined: a gap under a
    // second) — the dialog covers the restart.
    assert!(
        got_dialog >= dialog - 2.0 && got_dialog <= dialog + 1.0,
        "dialog {got_dialog} vs {dialog:.2}: {ended}"
    );
    assert_no_channels_left(&mut ami, &thread).await;
}

/// Loads a directory document through `PUT /admin/directory`.
pub async fn put_directory(c: &Conv, document: Value) {
    let r =
        c.d.client()
            .put(format!("{}/admin/directory", c.d.http))
            .bearer_auth(&c.key)
            .json(&document)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn a_paused_participant_is_out_of_the_mix_both_ways_and_hears_music() {
    use crate::support::audiosocket::{AudioSocketServer, TONE_ABSENT, fresh_uuid};
    let c = Conv::start().await;
    let hub = AudioSocketServer::start().await;
    let (ua, ub, uc) = (fresh_uuid(), fresh_uuid(), fresh_uuid());
    let (a, b, cc) = (id("a0"), id("a0"), id("a0"));
    put_directory(
        &c,
        json!({
            "teams": [{"teamId": c.team, "name": "Reception"}],
            "users": [
                {"userId": a, "teamId": c.team, "name": "A", "endpoint": hub.endpoint(&ua)},
                {"userId": b, "teamId": c.team, "name": "B", "endpoint": hub.endpoint(&ub)},
                {"userId": cc, "teamId": c.team, "name": "C", "endpoint": hub.endpoint(&uc)},
            ]
        }),
    )
    .await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    let data = c
        .ok(
            "call.user/invite",
            json!({"threadId": thread, "userIds": [a, b, cc]}),
        )
        .await;
    assert_eq!(data, json!({"invitedUsersCount": 3}));
    let (pa, pb, pc) = (
        hub.participant(&ua).await,
        hub.participant(&ub).await,
        hub.participant(&uc).await,
    );
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        [&a, &b, &cc].iter().all(|u| state_of(call, u) == "joined")
    })
    .await;
    pa.play_tone(700.0);
    pb.play_tone(1100.0);
    let limit = Duration::from_secs(5);
    assert!(pb.wait_for_tone(700.0, limit).await, "B hears A");
    assert!(pc.wait_for_tone(700.0, limit).await, "C hears A");
    assert!(pa.wait_for_tone(1100.0, limit).await, "A hears B");

    c.ok("call/pause", json!({"threadId": thread, "userId": a}))
        .await;
    assert!(
        pb.wait_until_tone_absent(700.0, limit).await,
        "B no longer hears A"
    );
    assert!(
        pc.wait_until_tone_absent(700.0, limit).await,
        "C no longer hears A"
    );
    assert!(
        pa.wait_until_tone_absent(1100.0, limit).await,
        "A no longer hears B"
    );
    assert!(
        pa.wait_for_rms(TONE_ABSENT, Duration::from_millis(300), limit)
            .await,
        "A hears music on hold"
    );
    assert!(
        pc.wait_for_tone(1100.0, limit).await,
        "B and C still hear each other"
    );

    c.ok("call/unpause", json!({"threadId": thread, "userId": a}))
        .await;
    assert!(pb.wait_for_tone(700.0, limit).await, "B hears A again");
    assert!(pa.wait_for_tone(1100.0, limit).await, "A hears B again");
    c.ok("call/end", json!({"threadId": thread})).await;
    assert!(pa.wait_closed(limit).await, "A's socket closed by the end");
}

#[tokio::test]
async fn an_inbound_caller_joins_the_thread_the_directory_routes_their_number_to() {
    let c = Conv::start().await;
    let mut ami = raw_ami().await;
    let thread = id("");
    let number = format!("7495{:07}", rand::random::<u32>() % 10_000_000);
    put_directory(
        &c,
        json!({
            "teams": [{"teamId": c.team, "name": "Reception"}],
            "inbound": [{"number": number, "teamId": c.team, "threadId": thread}],
        }),
    )
    .await;
    let caller = format!("caller-{}", rand::random::<u32>());
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", &format!("Local/{number}@medcall-inbound/n")),
        ("Application", "Wait"),
        ("Data", "60"),
        ("Async", "true"),
        ("Account", &thread),
        ("ChannelId", &format!("{caller}-1")),
        ("OtherChannelId", &format!("{caller}-2")),
        ("CallerID", "Patient <79001234567>"),
        (
            "Variable",
            &format!("__MEDCALL_AGI=agi://127.0.0.1:{}", c.d.agi_port),
        ),
        ("ActionID", &caller),
    ])
    .await;
    let call = c
        .wait_call(&thread, Duration::from_secs(10), |call| {
            call["participants"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["role"] == "caller" && p["state"] == "joined")
            })
        })
        .await;
    assert_eq!(call["direction"], "inbound", "{call:#}");
    // The route gave the caller the configured ConfBridge profile: ask the half that ran
    // it (the dialplan falls back to the same name when none is set, so only the channel
    // variable tells).
    let asked = format!("{caller}-profile");
    ami.send(&[
        ("Action", "Getvar"),
        ("Channel", &format!("{caller}-2")),
        ("Variable", "MEDCALL_USER_PROFILE"),
        ("ActionID", &asked),
    ])
    .await;
    let reply = ami
        .wait_for(Duration::from_secs(5), |m| {
            field(m, "ActionID") == Some(asked.as_str())
        })
        .await
        .expect("Getvar answer");
    assert_eq!(field(&reply, "Value"), Some("medcall_user"), "{reply:?}");
    let (status, v) = c.post("call/start", json!({"threadId": thread})).await;
    assert_eq!(
        status, 409,
        "the inbound call is the thread's active call: {v}"
    );
    let user = id("a0");
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userId": user}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &user) == "joined"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ended = c.ok("call/end", json!({"threadId": thread})).await;
    assert_eq!(ended["direction"], "inbound", "{ended}");
    assert_eq!(ended["result"], "answered", "{ended}");
    assert!(ended["dialogDuration"].as_i64().unwrap() >= 1, "{ended}");
    assert_no_channels_left(&mut ami, &thread).await;
}

#[tokio::test]
async fn an_asterisk_restart_mid_call_closes_its_legs_and_ends_the_call_failed() {
    use crate::calls::OwnRig;
    let own = OwnRig::up("it-conv-restart");
    let rig = Rig::from_env();
    let c = Conv::start_with(
        options()
            .env("MEDCALL__PBX__0__PORT", own.port)
            .env("MEDCALL__AMI__BACKOFF_MIN_MS", 100)
            .env("MEDCALL__AMI__BACKOFF_MAX_MS", 500),
    )
    .await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    let (u1, u2) = (id("a0"), id("a0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [u1, u2]}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &u1) == "joined" && state_of(call, &u2) == "joined"
    })
    .await;
    // Killed: no Hangup event reaches medcall; the restart is found on reconnect.
    own.script("crash");
    own.script("up");
    let call = c
        .wait_call(&thread, Duration::from_secs(30), |call| {
            call["state"] == "ended"
        })
        .await;
    assert_eq!(call["result"], "failed", "{call:#}");
    for u in [&u1, &u2] {
        let p = participant(&call, u);
        assert_eq!(p["endReason"], "pbx-restart", "{call:#}");
        assert!(p["endedAt"].is_string(), "{call:#}");
    }
    let pbx: Value = c.d.get_json("/api/pbx", &c.key).await;
    assert!(
        !pbx[0]["recentGaps"].as_array().unwrap().is_empty(),
        "the gap is recorded: {pbx:#}"
    );
    let (status, v) = c.post("call/end", json!({"threadId": thread})).await;
    assert_eq!(status, 404, "the call is over: {v}");
    let mut ami = RawAmi::connect(&Rig {
        ami_port: own.port,
        ..rig
    })
    .await;
    ami.login(&Rig::from_env().username, &Rig::from_env().secret)
        .await;
    assert_no_channels_left(&mut ami, &thread).await;
    // A new call starts on the restarted PBX.
    c.ok("call/start", json!({"threadId": thread})).await;
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userId": u1}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &u1) == "joined"
    })
    .await;
    c.ok("call/end", json!({"threadId": thread})).await;
}

#[tokio::test]
async fn a_user_who_answers_then_hangs_up_has_left_and_the_call_stays_open() {
    let c = Conv::start().await;
    let thread = id("");
    c.ok("call/start", json!({"threadId": thread})).await;
    let (leaver, stayer) = (id("e0"), id("a0"));
    c.ok(
        "call.user/invite",
        json!({"threadId": thread, "userIds": [leaver, stayer]}),
    )
    .await;
    c.wait_call(&thread, Duration::from_secs(10), |call| {
        state_of(call, &leaver) == "joined" && state_of(call, &stayer) == "joined"
    })
    .await;
    // The `e0` phone hangs up by itself three seconds after answering.
    let call = c
        .wait_call(&thread, Duration::from_secs(10), |call| {
            state_of(call, &leaver) == "left" && participant(call, &leaver)["endedAt"].is_string()
        })
        .await;
    assert_eq!(
        participant(&call, &leaver)["endReason"],
        "hangup",
        "{call:#}"
    );
    assert_eq!(state_of(&call, &stayer), "joined");
    assert_eq!(call["state"], "active", "{call:#}");
    // Invited again, the user who left is dialled again.
    let data = c
        .ok(
            "call.user/invite",
            json!({"threadId": thread, "userId": leaver}),
        )
        .await;
    assert_eq!(data, json!({"invitedUsersCount": 1}));
    let ended = c.ok("call/end", json!({"threadId": thread})).await;
    assert!(ended["dialogDuration"].as_i64().unwrap() >= 2, "{ended}");
}
