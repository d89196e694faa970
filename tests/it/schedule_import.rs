//! The booking schedule (SPEC §8 "schedule") through the real daemon and the real command
//! line: the same document over `PUT /admin/schedule` and `medcall import schedule FILE`,
//! counted, idempotent, refused whole with every bad entry named, a cell's doctor checked
//! against the directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::support::Daemon;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/booking")
        .join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// `PUT /admin/{what}` with the admin key: the status and the JSON answer.
async fn put(d: &Daemon, what: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = d
        .client()
        .put(format!("{}/admin/{what}", d.http))
        .bearer_auth(d.admin_key())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn kind(inserted: u64, updated: u64, unchanged: u64) -> Value {
    json!({"inserted": inserted, "updated": updated, "unchanged": unchanged})
}

/// Rows of the three schedule tables, read straight from the database file.
fn schedule_rows(db: &Path) -> [i64; 3] {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    ["booking_lpus", "booking_cells", "booking_patients"].map(|t| {
        c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    })
}

#[tokio::test]
async fn put_admin_schedule_upserts_the_document_and_a_second_put_counts_it_unchanged() {
    let d = Daemon::start().await;
    let db = d.data_dir().join("medcall.db");
    let (status, body) = put(&d, "directory", fixture_text("directory.json")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(&d, "schedule", fixture_text("schedule.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"lpus": kind(2, 0, 0), "cells": kind(7, 0, 0), "patients": kind(3, 0, 0)})
    );
    let (status, body) = put(&d, "schedule", fixture_text("schedule.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"lpus": kind(0, 0, 2), "cells": kind(0, 0, 7), "patients": kind(0, 0, 3)})
    );
    assert_eq!(schedule_rows(&db), [2, 7, 3]);

    // The seed's LPU is stored as the seed writes it, without medcall's `utcOffset`.
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let document: String = c
        .query_row(
            "SELECT document FROM booking_lpus WHERE guid = 'c3c977af-c3b4-4517-9d57-50a6844ec660'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut seed: Value =
        serde_json::from_str::<Value>(&fixture_text("schedule.json")).unwrap()["lpus"][0].clone();
    seed.as_object_mut().unwrap().remove("utcOffset");
    assert_eq!(serde_json::from_str::<Value>(&document).unwrap(), seed);

    // One cell moved to another room: an update, and the rest left alone.
    let (status, body) = put(
        &d,
        "schedule",
        r#"{"cells":[{"guid":"12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5","lpuGuid":"c3c977af-c3b4-4517-9d57-50a6844ec660",
            "docGuid":"f05d7650-a2a0-49dc-99f1-bb57829bc46a","beginTime":"2030-04-18T08:45:00+03:00",
            "endTime":"2030-04-18T09:00:00+03:00","planCount":1,"room":"203"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"lpus": kind(0, 0, 0), "cells": kind(0, 1, 0), "patients": kind(0, 0, 0)})
    );
}

#[tokio::test]
async fn a_bad_schedule_document_is_answered_400_and_a_conflicting_one_409_naming_entries_and_writing_nothing()
 {
    let d = Daemon::start().await;
    let db = d.data_dir().join("medcall.db");
    let cell = |guid: &str, doctor: &str, end: &str| {
        format!(
            r#"{{"guid":"{guid}","lpuGuid":"c3c977af-c3b4-4517-9d57-50a6844ec660","docGuid":"{doctor}","beginTime":"2030-04-18T08:45:00+03:00","endTime":"{end}","planCount":1}}"#
        )
    };
    let lpu = r#"{"guid":"c3c977af-c3b4-4517-9d57-50a6844ec660"}"#;
    const CELL: &str = "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5";
    const DOCTOR: &str = "f05d7650-a2a0-49dc-99f1-bb57829bc46a";
    let end = "2030-04-18T09:00:00+03:00";
    let cases: Vec<(String, u16, Vec<String>)> = vec![
        (
            // The directory is empty: the fixture's doctors are unknown.
            fixture_text("schedule.json"),
            409,
            vec![],
        ),
        (
            format!(
                r#"{{"lpus":[{lpu}],"cells":[{},{}]}}"#,
                cell(CELL, DOCTOR, "2030-04-18T08:00:00+03:00"),
                cell("43c6cec0-3b91-48ab-acab-d541a88e91f7", DOCTOR, "soon")
            ),
            400,
            vec![
                format!(r#"cells[0] "{CELL}": endTime must be after beginTime"#),
                r#"cells[1] "43c6cec0-3b91-48ab-acab-d541a88e91f7": endTime must be an RFC 3339 time with an offset, such as 2030-04-18T08:45:00+03:00, got "soon""#.into(),
            ],
        ),
        (
            format!(
                r#"{{"lpus":[{lpu},{lpu}]}}"#
            ),
            409,
            vec![
                r#"lpus[1] "c3c977af-c3b4-4517-9d57-50a6844ec660": guid is also that of lpus[0] "c3c977af-c3b4-4517-9d57-50a6844ec660""#.into(),
            ],
        ),
        (
            format!(r#"{{"cells":[{}]}}"#, cell(CELL, DOCTOR, end)),
            409,
            vec![
                format!(r#"cells[0] "{CELL}": lpuGuid "c3c977af-c3b4-4517-9d57-50a6844ec660" is neither in the document nor stored"#),
                format!(r#"cells[0] "{CELL}": docGuid "{DOCTOR}" is not a doctor of the directory"#),
            ],
        ),
        (
            r#"{"lpus":[{"guid":"c3c977af-c3b4-4517-9d57-50a6844ec660","colour":"red"}]}"#.into(),
            400,
            vec![
                "The schedule document is malformed: lpus[0].colour: unknown field `colour`".into(),
            ],
        ),
    ];
    for (doc, expected, messages) in cases {
        let (status, body) = put(&d, "schedule", doc.clone()).await;
        assert_eq!(status, expected, "{doc}: {body}");
        assert_eq!(body["success"], false, "{body}");
        let got: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        if messages.is_empty() {
            assert_eq!(got.len(), 7, "one per cell: {body}");
            assert!(
                got.iter()
                    .all(|m| m.ends_with("is not a doctor of the directory")),
                "{body}"
            );
        } else if expected == 400 && messages[0].starts_with("The schedule document is malformed") {
            assert_eq!(got.len(), 1, "{body}");
            assert!(got[0].starts_with(&messages[0]), "{body}");
        } else {
            assert_eq!(got, messages, "{doc}");
        }
        assert_eq!(schedule_rows(&db), [0, 0, 0], "{doc}: nothing written");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_put_admin_schedule_with_an_example_that_imports() {
    let d = Daemon::start().await;
    let doc: Value = d
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put_doc = &doc["paths"]["/admin/schedule"]["put"];
    assert_eq!(
        put_doc["security"],
        json!([{"bearer": ["admin"]}]),
        "{put_doc}"
    );
    let body = &put_doc["requestBody"]["content"]["application/json"];
    assert_eq!(
        body["schema"]["$ref"], "#/components/schemas/ScheduleDocument",
        "{body}"
    );
    for status in ["200", "400", "409", "413"] {
        assert!(
            put_doc["responses"][status].is_object(),
            "{status}: {put_doc}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["CellIn"]["properties"]["beginTime"]["format"],
        "date-time"
    );
    assert_eq!(
        schemas["PatientIn"]["properties"]["birthDate"]["format"],
        "date"
    );
    assert_eq!(
        schemas["AgeCategory"]["enum"],
        json!(["CHILD", "TEEN", "ADULT"])
    );
    // The example is a document the route accepts as it stands, once its doctor is known.
    let (status, answer) = put(&d, "directory", fixture_text("directory.json")).await;
    assert_eq!(status, 200, "{answer}");
    let example = body["example"].clone();
    let (status, answer) = put(&d, "schedule", example.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer, put_doc["responses"]["200"]["content"]["application/json"]["example"],
        "the documented answer is the one given"
    );
}

fn import(db: &Path, what: &str, file: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_medcall"))
        .args(["import", what])
        .arg(file)
        .env("MEDCALL__STORE__PATH", db)
        .output()
        .unwrap()
}

#[test]
fn the_import_command_loads_the_schedule_into_a_fresh_data_dir_with_no_progress_bar_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/medcall.db");
    let refused = import(&db, "schedule", &fixture("schedule.json"));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr.starts_with(
            "medcall: the schedule document conflicts with the stored schedule or directory:\n  \
             cells[0] \"12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5\": docGuid \"f05d7650-a2a0-49dc-99f1-bb57829bc46a\" is not a doctor of the directory\n"
        ),
        "{stderr}"
    );
    assert_eq!(schedule_rows(&db), [0, 0, 0]);

    let out = import(&db, "directory", &fixture("directory.json"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = import(&db, "schedule", &fixture("schedule.json"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("imported the schedule in "),
        "{stderr:?}"
    );
    assert!(
        stderr.ends_with(
            "lpus 2 inserted, 0 updated, 0 unchanged; cells 7 inserted, 0 updated, 0 unchanged; \
             patients 3 inserted, 0 updated, 0 unchanged\n"
        ),
        "{stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "the summary alone: {stderr:?}");
    assert!(
        !stderr.contains(['\r', '\u{1b}', '█']),
        "no progress bar in a pipe: {stderr:?}"
    );
    assert_eq!(schedule_rows(&db), [2, 7, 3]);

    let again = import(&db, "schedule", &fixture("schedule.json"));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.ends_with(
            "lpus 0 inserted, 0 updated, 2 unchanged; cells 0 inserted, 0 updated, 7 unchanged; \
             patients 0 inserted, 0 updated, 3 unchanged\n"
        ),
        "{stderr:?}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"patients":[{"policyNumber":"1-2","birthDate":"1985-02-30","fullName":"А"}]}"#,
    )
    .unwrap();
    let refused = import(&db, "schedule", &bad);
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        stderr,
        "medcall: the schedule document has invalid entries:\n  \
         patients[0] \"1-2\": policyNumber must be ASCII letters and digits only\n  \
         patients[0] \"1-2\": birthDate \"1985-02-30\" is not a date\n"
    );
    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "[]").unwrap();
    let refused = import(&db, "schedule", &not_json);
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr.ends_with("is not a valid schedule document: the document must be a JSON object\n"),
        "{stderr}"
    );
    assert_eq!(schedule_rows(&db), [2, 7, 3]);
}
