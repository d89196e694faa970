//! The OpenAPI document is the contract: every operation says what it answers, and a
//! real daemon keeps to it. Schemathesis (installed on first use by `scripts/schemathesis`)
//! drives every route with an admin key, all checks on, and any finding fails the test;
//! a fast structural check makes a new route that forgets its key refusals or its
//! success answer fail even before schemathesis runs.

use std::collections::HashSet;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::support::{Daemon, DaemonOptions};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of `doc` as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_string(), path.clone(), op.clone()));
            }
        }
    }
    out
}

async fn document(d: &Daemon) -> Value {
    let r = d.get("/openapi.json").send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn security(op: &Value) -> Vec<Value> {
    op.get("security")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn every_operation_documents_a_success_and_every_keyed_one_its_401_and_403() {
    let d = Daemon::start().await;
    let doc = document(&d).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{doc}"
    );
    let ops = operations(&doc);
    assert!(ops.len() >= 16, "{} operations", ops.len());
    let mut ids = HashSet::new();
    let mut problems = Vec::new();
    for (method, path, op) in &ops {
        let responses = op["responses"].as_object().unwrap();
        if !responses.keys().any(|s| s.starts_with('2')) {
            problems.push(format!("{method} {path}: no 2xx answer"));
        }
        for requirement in security(op) {
            for scheme in requirement.as_object().unwrap().keys() {
                if doc["components"]["securitySchemes"].get(scheme).is_none() {
                    problems.push(format!("{method} {path}: unknown scheme {scheme}"));
                }
            }
        }
        if !security(op).is_empty() {
            for status in ["401", "403"] {
                if !responses.contains_key(status) {
                    problems.push(format!(
                        "{method} {path}: needs a key but documents no {status}"
                    ));
                }
            }
        }
        match op["operationId"].as_str() {
            Some(id) if !ids.insert(id.to_string()) => {
                problems.push(format!("{method} {path}: operationId {id} is not unique"));
            }
            Some(_) => {}
            None => problems.push(format!("{method} {path}: no operationId")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // What the document says about keys is what the daemon does.
    let scope_of =
        |method: &str, path: &str| -> Vec<Value> { security(&doc["paths"][path][method]) };
    for path in ["/health", "/metrics", "/openapi.json"] {
        assert!(scope_of("get", path).is_empty(), "{path} is open");
        assert_eq!(d.get(path).send().await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(
        scope_of("get", "/api/calls"),
        [serde_json::json!({"bearer": ["admin"]})]
    );
    assert_eq!(
        scope_of("post", "/api/events/coming"),
        [serde_json::json!({"bearer": ["events"]})]
    );
    for (method, path, op) in &ops {
        if security(op).is_empty() || path.contains('{') {
            continue;
        }
        let url = format!("{}{path}", d.http);
        let r = d
            .client()
            .request(method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a key");
    }

    // With `metrics_require_key`, /metrics is documented as needing an admin key.
    let keyed = Daemon::start_with(
        DaemonOptions::default().env("MEDCALL__HTTP__METRICS_REQUIRE_KEY", "true"),
    )
    .await;
    let doc = document(&keyed).await;
    let metrics = &doc["paths"]["/metrics"]["get"];
    assert_eq!(
        security(metrics),
        [serde_json::json!({"bearer": ["admin"]})]
    );
    assert!(metrics["responses"].get("401").is_some(), "{metrics}");
    assert_eq!(keyed.get("/metrics").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn schemathesis_finds_no_contract_fault_on_any_route() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis");
    let url = format!("{}/openapi.json", d.http);
    // Its example database and report go to the daemon's temporary directory.
    let cwd = d.data_dir().to_path_buf();
    let started = Instant::now();
    // call.audio/play fetches the URL it is given: the URLs schemathesis makes up name
    // hosts that do not resolve (502), loopback or metadata addresses the network guard
    // refuses (400), servers that never answer (504). Those answers are documented and
    // right, so for that one operation the two checks that call any 5xx, or any 4xx to
    // a schema-valid request, a fault are off; every other check still runs on it.
    // The consultation create routes need a `doctorId` in the directory (400 otherwise,
    // as SPEC §4.1 says), which no schema can say: acceptance is not checked there,
    // everything else is (and this daemon's directory is empty, so nothing is dialled).
    let config = cwd.join("schemathesis.toml");
    std::fs::write(
        &config,
        "[[operations]]\n\
         include-path = \"/{teamId}/call.audio/play\"\n\
         checks.not_a_server_error.enabled = false\n\
         checks.positive_data_acceptance.enabled = false\n\
         [[operations]]\n\
         include-path-regex = \"^/api/v1/(voiprequest/start|callbackrequest/start-callback)$\"\n\
         checks.positive_data_acceptance.enabled = false\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .current_dir(cwd)
            .arg("--config-file")
            .arg(&config)
            .args(["run", &url, "--header"])
            .arg(format!("Authorization: Bearer {key}"))
            .args([
                // No --checks: every check is on by default, and a --checks on the
                // command line would win over the per-operation settings above.
                // A fixed seed and a bounded number of examples: the same run every time,
                // well under a minute.
                "--seed",
                "1",
                "--max-examples",
                "25",
                // One worker: with two, Hypothesis's lambda-source cache (shared between
                // the worker threads) sometimes fails inside schemathesis itself ("AST
                // constructor recursion depth mismatch", a Runtime Error, not a finding).
                "--workers",
                "1",
                "--no-color",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("schemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "schemathesis found faults ({}):\n{report}",
        out.status
    );
    // Every operation schemathesis selected was tested, none skipped as untestable, and
    // it selected every operation of the document (bar, perhaps, the document's own).
    let (selected, total) = summary_count(&report, "Selected: ")
        .split_once('/')
        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
        .unwrap();
    let tested: usize = summary_count(&report, "Tested: ").parse().unwrap();
    let ops = operations(&document(&d).await).len();
    assert_eq!((selected, tested), (total, total), "{report}");
    assert!(
        total + 1 >= ops,
        "{total} of {ops} operations tested:\n{report}"
    );
}

/// The figure after `label` in schemathesis's summary (`Selected: 16/16` → `16/16`).
fn summary_count<'a>(report: &'a str, label: &str) -> &'a str {
    let at = report
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in the report:\n{report}"));
    let rest = &report[at + label.len()..];
    rest.split(|c: char| !(c.is_ascii_digit() || c == '/'))
        .next()
        .unwrap()
}
