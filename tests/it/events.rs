//! Seed 003 over HTTP: every route in GET and POST forms, and a bad-input table.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions};

const CLIENTS: &str = r#"{
  "clients": [{"id": 654321, "fullName": "Иванов Иван Иванович", "phones": ["+7 900 123-45-67", "8 (900) 7654321"]}],
  "contracts": [{"id": 7000, "clientId": 654321, "phones": ["79001112233", "+7 900 444-55-66"]}],
  "requests": [{"id": 123456, "clientId": 654321}]
}"#;

/// Keys of one scope each: the routes are called with exactly the scope they need, so
/// a route that demanded another (or `admin`) would fail its tests.
const ADMIN_KEY: &str = "mc_test_admin_only";
const EVENTS_KEY: &str = "mc_test_events_only";
const CALLS_KEY: &str = "mc_test_calls_only";

fn one_scope_keys() -> String {
    [
        ("admin", ADMIN_KEY),
        ("events", EVENTS_KEY),
        ("calls", CALLS_KEY),
    ]
    .iter()
    .map(|(scope, key)| {
        format!(
            "[[api_keys]]\nname = \"{scope}-only\"\nsha256 = \"{}\"\nscopes = [\"{scope}\"]\n",
            medcall::auth::hash_key(key)
        )
    })
    .collect()
}

/// A daemon with the clients document loaded (with the admin key) and the key that
/// holds only the `events` scope.
async fn daemon_with_clients() -> (Daemon, String) {
    let d = Daemon::start_with(DaemonOptions::default().config(&one_scope_keys())).await;
    d.put_clients(ADMIN_KEY, CLIENTS).await;
    (d, EVENTS_KEY.to_string())
}

/// Rows per CRM table, read straight from the daemon's database: what a refused input
/// must leave exactly as it was (a lookup through the API cannot see every row). Calls
/// and AMI's records are left out: the daemon sees the rig's calls of other tests.
fn crm_rows(db: &std::path::Path) -> BTreeMap<&'static str, i64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    [
        ("clients", "clients"),
        ("client_phones", "client_phones"),
        ("contracts", "contracts"),
        ("contract_phones", "contract_phones"),
        ("requests", "requests"),
        ("crm_events", "crm_events"),
        ("api_cdrs", "call_detail_records WHERE source = 'api'"),
        ("inbound_calls", "inbound_calls"),
    ]
    .into_iter()
    .map(|(name, rows)| {
        let n = c
            .query_row(&format!("SELECT count(*) FROM {rows}"), [], |r| r.get(0))
            .unwrap();
        (name, n)
    })
    .collect()
}

/// Calls `path` with `params` as GET query, POST form and POST JSON; all three must agree.
async fn call_all_ways(d: &Daemon, key: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{}{}", d.http, path);
    let get = d
        .client()
        .get(&url)
        .query(params)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let form = d
        .client()
        .post(&url)
        .form(params)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let obj: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let json_r = d
        .client()
        .post(&url)
        .json(&obj)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let (s1, s2, s3) = (
        get.status().as_u16(),
        form.status().as_u16(),
        json_r.status().as_u16(),
    );
    let (b1, b2, b3): (Value, Value, Value) = (
        get.json().await.unwrap(),
        form.json().await.unwrap(),
        json_r.json().await.unwrap(),
    );
    assert_eq!(
        (s1, s2),
        (s2, s3),
        "{path} {params:?}: GET {b1} / form {b2} / JSON {b3}"
    );
    if s1 >= 400 {
        assert_eq!(b1, b2);
        assert_eq!(b2, b3);
    }
    (s1, b1)
}

#[tokio::test]
async fn get_number_from_id_answers_in_the_eight_form_for_both_identifiers() {
    let (d, key) = daemon_with_clients().await;
    let (s, b) = call_all_ways(
        &d,
        &key,
        "/api/getNumberFromId",
        &[("number", "+123456s654321")],
    )
    .await;
    assert_eq!((s, b["number"].as_str()), (200, Some("89001234567")));
    let (s, b) = call_all_ways(&d, &key, "/api/getNumberFromId", &[("number", "+7000d1")]).await;
    assert_eq!((s, b["number"].as_str()), (200, Some("89004445566")));
    // An unescaped `+` in a hand-written query string arrives as a space.
    let r = d
        .get("/api/getNumberFromId?number=+7000d0")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["number"], "89001112233");
}

#[tokio::test]
async fn text_leads_make_one_request_each_and_arrival_is_kept() {
    let (d, key) = daemon_with_clients().await;
    let (s, first) = call_all_ways(&d, &key, "/api/events", &[("text", "42")]).await;
    assert_eq!(s, 200);
    assert_eq!(first["source"], "text");
    assert_eq!(first["sourceId"], 42);
    let (_, again) = call_all_ways(&d, &key, "/api/events", &[("text", "42")]).await;
    assert_eq!(first["id"], again["id"], "idempotent per lead");

    let id = first["id"].to_string();
    let (s, arrived) = call_all_ways(&d, &key, "/api/events/coming", &[("id", &id)]).await;
    assert_eq!(s, 200);
    let at = arrived["arrivedAt"].as_str().unwrap().to_string();
    let (_, again) = call_all_ways(&d, &key, "/api/events/coming", &[("id", &id)]).await;
    assert_eq!(
        again["arrivedAt"].as_str(),
        Some(at.as_str()),
        "the first arrival time is kept"
    );
    let (s, _) = call_all_ways(&d, &key, "/api/events/coming", &[("id", "123456")]).await;
    assert_eq!(s, 200, "an imported request can be marked too");
}

#[tokio::test]
async fn call_detail_records_are_idempotent_on_event_id() {
    let (d, key) = daemon_with_clients().await;
    let params = [
        ("event_id", "9001"),
        ("phone", "89001234567"),
        ("extension", "101"),
        ("path", "2026/11/22/call-9001.wav"),
        ("call_at", "2026-11-22 09:15:00"),
        ("type", "incoming"),
        ("duration", "93"),
    ];
    let (s, first) = call_all_ways(&d, &key, "/api/events/callDetailRecord", &params).await;
    assert_eq!(s, 200);
    assert_eq!(first["path"], "2026/11/22/call-9001.wav");
    assert_eq!(first["type"], "incoming");
    assert_eq!(first["callAt"], "2026-11-22T09:15:00Z");
    assert_eq!(first["source"], "api");
    let mut changed = params;
    changed[1] = ("phone", "89990000000");
    let (s, again) = call_all_ways(&d, &key, "/api/events/callDetailRecord", &changed).await;
    assert_eq!(s, 200);
    assert_eq!(
        again, first,
        "a repeated event_id returns the stored record unchanged"
    );
}

#[tokio::test]
async fn call_detail_record_limits_are_inclusive_and_values_are_stored_as_sent() {
    let (d, key) = daemon_with_clients().await;
    let phone_32 = "8".repeat(32);
    let ext_32 = "1".repeat(32);
    let (s, b) = call_all_ways(
        &d,
        &key,
        "/api/events/callDetailRecord",
        &[
            ("event_id", "9100"),
            ("phone", &format!("  {phone_32} ")),
            ("extension", &ext_32),
            ("path", "limits.wav"),
            ("call_at", "2026-11-22T12:15:00+03:00"),
            ("duration", "2678400"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["phone"], phone_32.as_str(), "trimmed, otherwise as sent");
    assert_eq!(b["extension"], ext_32.as_str());
    assert_eq!(
        b["duration"],
        31 * 24 * 3600,
        "31 days is the longest duration"
    );
    assert_eq!(
        b["callAt"], "2026-11-22T09:15:00Z",
        "an offset time is stored as UTC"
    );
    assert_eq!(b["eventId"], 9100);

    let db = d.data_dir().join("medcall.db");
    let before = crm_rows(&db);
    let phone_33 = "8".repeat(33);
    let ext_33 = "1".repeat(33);
    let base = [
        ("event_id", "9101"),
        ("phone", "89001234567"),
        ("extension", "101"),
        ("path", "limits.wav"),
    ];
    for (key_name, value, message) in [
        (
            "duration",
            "2678401",
            "`duration` must be whole seconds from 0 to 2678400.",
        ),
        (
            "phone",
            phone_33.as_str(),
            "`phone` must be at most 32 characters, no control characters.",
        ),
        (
            "extension",
            ext_33.as_str(),
            "`extension` must be at most 32 characters, no control characters.",
        ),
        (
            "extension",
            "10\u{7}1",
            "`extension` must be at most 32 characters, no control characters.",
        ),
        (
            "phone",
            "8900\t1234567",
            "`phone` must be at most 32 characters, no control characters.",
        ),
    ] {
        let mut params: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| *k != key_name)
            .collect();
        params.push((key_name, value));
        let (s, b) = call_all_ways(&d, &key, "/api/events/callDetailRecord", &params).await;
        assert_eq!(s, 400, "{key_name}={value:?}: {b}");
        assert_eq!(b["messages"], json!([message]), "{key_name}={value:?}");
    }
    assert_eq!(crm_rows(&db), before, "a refused record writes no row");
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_or_404_and_writes_nothing() {
    let (d, key) = daemon_with_clients().await;
    let long = "9".repeat(2000);
    let cdr = |k: &'static str, v: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut p = vec![
            ("event_id", "77"),
            ("phone", "89001234567"),
            ("extension", "101"),
            ("path", "a/b.wav"),
        ];
        p.retain(|(key, _)| *key != k);
        if !v.is_empty() {
            p.push((k, v));
        }
        p
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/api/events",
            vec![],
            400,
            "One of `text` or `call` is required",
        ),
        (
            "/api/events",
            vec![("text", "abc")],
            400,
            "`text` must be a positive whole number",
        ),
        (
            "/api/events",
            vec![("text", "-5")],
            400,
            "`text` must be a positive whole number",
        ),
        (
            "/api/events",
            vec![("text", "0")],
            400,
            "`text` must be a positive whole number",
        ),
        (
            "/api/events",
            vec![("call", "99999999999999999999")],
            400,
            "`call` is too large",
        ),
        (
            "/api/events",
            vec![("text", "1"), ("call", "2")],
            400,
            "not both",
        ),
        (
            "/api/events",
            vec![("call", "424242")],
            404,
            "No call 424242",
        ),
        (
            "/api/events/call_asterisk",
            vec![],
            400,
            "`call_id` is required",
        ),
        (
            "/api/events/call_asterisk",
            vec![("call_id", "x1")],
            400,
            "`call_id` must be a positive whole number",
        ),
        (
            "/api/events/call_asterisk",
            vec![("call_id", "424242")],
            404,
            "No call 424242",
        ),
        ("/api/events/coming", vec![], 400, "`id` is required"),
        (
            "/api/events/coming",
            vec![("id", "1.5")],
            400,
            "`id` must be a positive whole number",
        ),
        (
            "/api/events/coming",
            vec![("id", "424242")],
            404,
            "No request 424242",
        ),
        ("/api/getNumberFromId", vec![], 400, "`number` is required"),
        (
            "/api/getNumberFromId",
            vec![("number", "+12s")],
            400,
            "+{request}s{client}",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", "+s1")],
            400,
            "+{request}s{client}",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", "7000d0")],
            400,
            "must start with `+`",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", "+99999999999999999999s1")],
            400,
            "too large",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", "+1s2\r\nX")],
            400,
            "+{request}s{client}",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", "+123456s1")],
            404,
            "Nothing is known",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", "+7000d9")],
            404,
            "Nothing is known",
        ),
        (
            "/api/getNumberFromId",
            vec![("number", &long)],
            400,
            "longer than",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("event_id", ""),
            400,
            "`event_id` is required",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("event_id", "ten"),
            400,
            "`event_id` must be",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("phone", ""),
            400,
            "`phone` is required",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("extension", ""),
            400,
            "`extension` is required",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("path", ""),
            400,
            "`path` is required",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("path", "../../etc/passwd"),
            400,
            "no `..`",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("path", "/var/spool/x.wav"),
            400,
            "not absolute",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("type", "sideways"),
            400,
            "incoming or outgoing",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("duration", "-1"),
            400,
            "`duration`",
        ),
        (
            "/api/events/callDetailRecord",
            cdr("call_at", "yesterday"),
            400,
            "`call_at`",
        ),
    ];
    let db = d.data_dir().join("medcall.db");
    let before = crm_rows(&db);
    assert_eq!(before["clients"], 1, "{before:?}");
    for (path, params, status, message) in &cases {
        let (s, body) = call_all_ways(&d, &key, path, params).await;
        assert_eq!(s, *status, "{path} {params:?}: {body}");
        assert_eq!(body["success"], false, "{path} {params:?}: {body}");
        let text = body["messages"].to_string();
        assert!(
            text.contains(message),
            "{path} {params:?}: {text} lacks {message:?}"
        );
    }
    assert_eq!(
        crm_rows(&db),
        before,
        "a refused input writes no row anywhere"
    );
    // Nothing half-written: the refused record with event_id 77 does not exist.
    let (s, _) = call_all_ways(
        &d,
        &key,
        "/api/events/callDetailRecord",
        &cdr("path", "ok/77.wav"),
    )
    .await;
    assert_eq!(s, 200);
    let (_, b) = call_all_ways(
        &d,
        &key,
        "/api/events/callDetailRecord",
        &cdr("path", "other.wav"),
    )
    .await;
    assert_eq!(
        b["path"], "ok/77.wav",
        "the first accepted record is the stored one"
    );
}

#[tokio::test]
async fn events_routes_need_the_events_scope() {
    let (d, events_key) = daemon_with_clients().await;
    let routes = [
        "/api/events?text=1",
        "/api/events/call_asterisk?call_id=1",
        "/api/events/callDetailRecord?event_id=1&phone=1&extension=1&path=a.wav",
        "/api/events/coming?id=123456",
        "/api/getNumberFromId?number=%2B7000d0",
    ];
    for route in routes {
        let r = d.get(route).send().await.unwrap();
        assert_eq!(r.status(), 401, "{route} without a key");
        let r = d.get(route).bearer_auth(CALLS_KEY).send().await.unwrap();
        assert_eq!(r.status(), 403, "{route} with a `calls` key");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"success": false, "messages": ["This API key lacks the `events` scope."]}),
            "{route}"
        );
        let r = d.get(route).bearer_auth(&events_key).send().await.unwrap();
        assert!(
            ![401, 403].contains(&r.status().as_u16()),
            "{route} with the `events` key: {}",
            r.status()
        );
    }
    // The `events` key reaches nothing of admin's.
    let r = d
        .client()
        .put(format!("{}/admin/clients", d.http))
        .bearer_auth(&events_key)
        .header("content-type", "application/json")
        .body(CLIENTS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"success": false, "messages": ["This API key lacks the `admin` scope."]})
    );
}

#[tokio::test]
async fn a_clients_document_with_a_bad_phone_is_refused_whole() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    let db = d.data_dir().join("medcall.db");
    let empty = crm_rows(&db);
    assert!(empty.values().all(|n| *n == 0), "{empty:?}");
    // Every kind of entry is valid but one phone, which comes last.
    let docs = [
        (
            r#"{"clients":[{"id":1,"phones":["+79001234567"]},{"id":2,"phones":["+79007654321","12-34"]}],
                "contracts":[{"id":9,"clientId":1,"phones":["+79001112233"]}],
                "requests":[{"id":5,"clientId":1}]}"#,
            "client 2, phone 1",
        ),
        (
            r#"{"clients":[{"id":1,"phones":["+79001234567"]}],
                "contracts":[{"id":9,"clientId":1,"phones":["+79001112233"]}],
                "requests":[{"id":5,"clientId":1},{"id":6,"clientId":1,"status":"done"}]}"#,
            "request 6: status `done`",
        ),
        (
            r#"{"clients":[{"id":1,"phones":["+79001234567"]}],"requests":[{"id":5,"clientId":1}],"extra":1}"#,
            "malformed",
        ),
    ];
    for (doc, message) in docs {
        let r = d
            .client()
            .put(format!("{}/admin/clients", d.http))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(doc)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["messages"][0].as_str().unwrap().contains(message),
            "{body}"
        );
        assert_eq!(body["success"], false);
        assert_eq!(crm_rows(&db), empty, "{message}: not one row written");
        for lookup in ["%2B5s1", "%2B9d0"] {
            let r = d
                .get(&format!("/api/getNumberFromId?number={lookup}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{lookup}");
        }
    }
}

#[test]
fn the_import_command_loads_the_same_document_and_names_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clients.json");
    std::fs::write(&file, CLIENTS).unwrap();
    let db = dir.path().join("m.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .args(["import", "clients"])
        .arg(&file)
        .env("MEDCALL__STORE__PATH", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("imported 1 clients, 1 contracts, 1 requests")
    );

    std::fs::write(
        &file,
        r#"{"clients":[{"id":3,"phones":["+44 20 7946 0958"]}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .args(["import", "clients"])
        .arg(&file)
        .env("MEDCALL__STORE__PATH", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("client 3, phone 0"));
    let rows = crm_rows(&db);
    assert_eq!(
        (
            rows["clients"],
            rows["client_phones"],
            rows["contracts"],
            rows["requests"]
        ),
        (1, 2, 1, 1),
        "the refused document wrote nothing: {rows:?}"
    );
}

#[tokio::test]
async fn an_import_naming_an_unknown_client_is_refused_whole_with_409_and_writes_nothing() {
    let (d, _) = daemon_with_clients().await;
    let db = d.data_dir().join("medcall.db");
    let before = crm_rows(&db);
    // A new client, a contract of a client imported before, then two entries naming
    // client 999 999, which is neither in the document nor stored.
    let r = d
        .client()
        .put(format!("{}/admin/clients", d.http))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(
            r#"{"clients":[{"id":777001,"phones":["89001110001"]}],
                "contracts":[{"id":888001,"clientId":777001},{"id":888002,"clientId":999999}],
                "requests":[{"id":999001,"clientId":999999}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"success": false, "messages": [
            "contract 888002: client 999999 is not known",
            "request 999001: client 999999 is not known"
        ]})
    );
    assert_eq!(crm_rows(&db), before);
    // Whole floats are integers, and a client the document itself holds is known.
    d.put_clients(
        ADMIN_KEY,
        r#"{"clients":[{"id":777001.0}],"requests":[{"id":999001,"clientId":7.77001e5}]}"#,
    )
    .await;
}
