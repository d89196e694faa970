//! The directory (SPEC §8) through the real daemon and the real command line: the same
//! document over `PUT /admin/directory` and `medcall import directory FILE`, counted,
//! idempotent, refused whole with every bad entry named.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/directory")
        .join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// `PUT /admin/directory` with `key`: the status and the JSON answer.
async fn put_directory(d: &Daemon, key: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = d
        .client()
        .put(format!("{}/admin/directory", d.http))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// One kind's counts as the answer spells them.
fn kind(inserted: u64, updated: u64, unchanged: u64) -> Value {
    json!({"inserted": inserted, "updated": updated, "unchanged": unchanged})
}

/// What importing `clinic.json` into an empty store answers.
fn clinic_inserted() -> Value {
    json!({"teams": kind(2, 0, 0), "users": kind(3, 0, 0), "doctors": kind(2, 0, 0), "inbound": kind(2, 0, 0)})
}

fn clinic_unchanged() -> Value {
    json!({"teams": kind(0, 0, 2), "users": kind(0, 0, 3), "doctors": kind(0, 0, 2), "inbound": kind(0, 0, 2)})
}

/// Rows of the four directory tables, read straight from the database file.
fn directory_rows(db: &Path) -> [i64; 4] {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    [
        "directory_teams",
        "directory_users",
        "directory_doctors",
        "directory_inbound",
    ]
    .map(|t| {
        c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    })
}

#[tokio::test]
async fn put_admin_directory_upserts_the_document_and_a_second_put_counts_it_unchanged() {
    let d = Daemon::start().await;
    let key = d.admin_key();
    let (status, body) = put_directory(&d, &key, fixture_text("clinic.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, clinic_inserted());
    let (status, body) = put_directory(&d, &key, fixture_text("clinic.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, clinic_unchanged());
    assert_eq!(
        directory_rows(&d.data_dir().join("medcall.db")),
        [2, 3, 2, 2]
    );

    // One user renamed, one route moved to the other team: counted as updates.
    let (status, body) = put_directory(
        &d,
        &key,
        r#"{"users":[{"userId":"5b4458eb1b2b33001bf213c0","teamId":"333ccc134c0319001573485e","name":"Boris K."}],
            "inbound":[{"number":"74951234567","teamId":"444ddd134c0319001573485e","threadId":"5b0525134c0319001573485e"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"teams": kind(0, 0, 0), "users": kind(0, 1, 0), "doctors": kind(0, 0, 0), "inbound": kind(0, 1, 0)})
    );
}

#[tokio::test]
async fn a_bad_directory_document_is_answered_400_and_a_conflicting_one_409_naming_entries_and_writing_nothing()
 {
    let d = Daemon::start().await;
    let key = d.admin_key();
    let db = d.data_dir().join("medcall.db");
    let cases: [(String, u16, Vec<&str>); 4] = [
        (
            fixture_text("unknown-team.json"),
            409,
            vec![
                r#"users[1] "5b4458eb1b2b33001bf213c2": teamId "999fff134c0319001573485e" is neither in the document nor stored"#,
            ],
        ),
        (
            fixture_text("bad-values.json"),
            400,
            vec![
                r#"users[0] "5b4458eb1b2b33001bf213bf": endpoint must be TECH/resource, e.g. PJSIP/1001"#,
                r#"users[1] "5b4458eb1b2b33001bf213bf": userId is also that of users[0] "5b4458eb1b2b33001bf213bf""#,
                "doctors[0] 17: guid must not be the nil GUID, which names no doctor",
                r#"inbound[0] "8 495 123": number must be digits with an optional leading +"#,
            ],
        ),
        (
            r#"{"teams":[{"teamId":"333ccc134c0319001573485e","name":"Reception","colour":"red"}]}"#
                .to_string(),
            400,
            vec![
                "The directory document is malformed: teams[0].colour: unknown field `colour`, expected `teamId` or `name` at line 1 column 74.",
            ],
        ),
        (
            r#"{"doctors":[{"id":"17","guid":"f05d7650-a2a0-49dc-99f1-bb57829bc46a","fullName":"P"}]}"#
                .to_string(),
            400,
            vec![
                "The directory document is malformed: doctors[0].id: invalid type: string \"17\", expected an integer at line 1 column 22.",
            ],
        ),
    ];
    for (doc, expected, messages) in cases {
        let (status, body) = put_directory(&d, &key, doc.clone()).await;
        assert_eq!(status, expected, "{doc}: {body}");
        assert_eq!(
            body,
            json!({"success": false, "messages": messages}),
            "{doc}"
        );
        assert_eq!(directory_rows(&db), [0, 0, 0, 0], "{doc}: nothing written");
    }
    // The valid team of `unknown-team.json` was not written either: the clinic's own
    // import finds every entry new.
    let (status, body) = put_directory(&d, &key, fixture_text("clinic.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, clinic_inserted());
}

#[tokio::test]
async fn put_admin_directory_needs_the_admin_scope_and_takes_bodies_up_to_the_import_limit() {
    let (key, events_key) = ("mc_test_directory_admin", "mc_test_directory_events_only");
    let keys: String = [("admin", key), ("events", events_key)]
        .iter()
        .map(|(scope, key)| {
            format!(
                "[[api_keys]]\nname = \"{scope}-only\"\nsha256 = \"{}\"\nscopes = [\"{scope}\"]\n",
                medcall::auth::hash_key(key)
            )
        })
        .collect();
    let d = Daemon::start_with(
        DaemonOptions::default()
            .config(&keys)
            .env("MEDCALL__HTTP__MAX_BODY_BYTES", 1024)
            .env("MEDCALL__HTTP__MAX_IMPORT_BYTES", 65_536),
    )
    .await;
    let (status, body) = put_directory(&d, events_key, fixture_text("clinic.json")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"success": false, "messages": ["This API key lacks the `admin` scope."]})
    );
    // Past the ordinary body limit, within the import limit.
    let document = fixture_text("clinic.json");
    assert!(document.len() > 1024 && document.len() < 65_536);
    let (status, body) = put_directory(&d, key, document).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, clinic_inserted());
    // Past the import limit: 413, and nothing of it written.
    let users: Vec<String> = (0..1000)
        .map(|i| {
            format!(r#"{{"userId":"{i:024x}","teamId":"333ccc134c0319001573485e","name":"U{i}"}}"#)
        })
        .collect();
    let big = format!(r#"{{"users":[{}]}}"#, users.join(","));
    assert!(big.len() > 65_536);
    let r = d
        .client()
        .put(format!("{}/admin/directory", d.http))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        directory_rows(&d.data_dir().join("medcall.db")),
        [2, 3, 2, 2]
    );
}

#[tokio::test]
async fn the_openapi_document_describes_put_admin_directory_with_an_example_that_imports() {
    let d = Daemon::start().await;
    let doc: Value = d
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = &doc["paths"]["/admin/directory"]["put"];
    assert_eq!(put["security"], json!([{"bearer": ["admin"]}]), "{put}");
    let body = &put["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["schema"]["$ref"], "#/components/schemas/DirectoryDocument",
        "{body}"
    );
    for status in ["200", "400", "409", "413"] {
        assert!(put["responses"][status].is_object(), "{status}: {put}");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["UserIn"]["properties"]["userId"]["pattern"],
        "^[0-9a-fA-F]{24}$"
    );
    // The example is a document the route accepts as it stands.
    let example = body["example"].clone();
    assert!(example["teams"].is_array(), "{body}");
    let (status, answer) = put_directory(&d, &d.admin_key(), example.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer, put["responses"]["200"]["content"]["application/json"]["example"],
        "the documented answer is the one given"
    );
}

fn import_directory(db: &Path, file: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .args(["import", "directory"])
        .arg(file)
        .env("MEDCALL__STORE__PATH", db)
        .output()
        .unwrap()
}

#[test]
fn the_import_command_loads_the_directory_into_a_fresh_data_dir_with_no_progress_bar_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    // A data directory that does not exist yet.
    let db = dir.path().join("data/medcall.db");
    let out = import_directory(&db, &fixture("clinic.json"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    let summary = "teams 2 inserted, 0 updated, 0 unchanged; users 3 inserted, 0 updated, 0 unchanged; \
                   doctors 2 inserted, 0 updated, 0 unchanged; inbound 2 inserted, 0 updated, 0 unchanged";
    assert!(
        stderr.starts_with("imported the directory in "),
        "{stderr:?}"
    );
    assert!(stderr.ends_with(&format!("{summary}\n")), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "the summary alone: {stderr:?}");
    assert!(
        !stderr.contains(['\r', '\u{1b}', '█']),
        "no progress bar in a pipe: {stderr:?}"
    );
    assert_eq!(directory_rows(&db), [2, 3, 2, 2]);

    let again = import_directory(&db, &fixture("clinic.json"));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.ends_with(
            "teams 0 inserted, 0 updated, 2 unchanged; users 0 inserted, 0 updated, 3 unchanged; \
             doctors 0 inserted, 0 updated, 2 unchanged; inbound 0 inserted, 0 updated, 2 unchanged\n"
        ),
        "{stderr:?}"
    );

    let refused = import_directory(&db, &fixture("bad-values.json"));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        stderr,
        "medcall: the directory document has invalid entries:\n  \
         users[0] \"5b4458eb1b2b33001bf213bf\": endpoint must be TECH/resource, e.g. PJSIP/1001\n  \
         users[1] \"5b4458eb1b2b33001bf213bf\": userId is also that of users[0] \"5b4458eb1b2b33001bf213bf\"\n  \
         doctors[0] 17: guid must not be the nil GUID, which names no doctor\n  \
         inbound[0] \"8 495 123\": number must be digits with an optional leading +\n"
    );
    assert_eq!(
        directory_rows(&db),
        [2, 3, 2, 2],
        "the refused document wrote nothing"
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    let endpoint: String = c
        .query_row(
            "SELECT endpoint FROM directory_users WHERE user_id = '5b4458eb1b2b33001bf213bf'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(endpoint, "PJSIP/1001");
}
