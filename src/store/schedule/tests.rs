use std::sync::{Arc, Mutex};

use super::*;
use crate::directory::{DirectoryDocument, UpsertCounts};

const SEED_LPU: &str = "c3c977af-c3b4-4517-9d57-50a6844ec660";
const CELL: &str = "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5";
const DOCTOR: &str = "f05d7650-a2a0-49dc-99f1-bb57829bc46a";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/booking/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn schedule() -> ScheduleDocument {
    ScheduleDocument::from_json(&fixture("schedule.json")).unwrap()
}

fn doc(json: &str) -> ScheduleDocument {
    ScheduleDocument::from_json(json.as_bytes()).unwrap()
}

/// A store holding the fixture directory's doctors.
async fn store_with_doctors() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("m.db")).unwrap();
    store
        .import_directory(DirectoryDocument::from_json(&fixture("directory.json")).unwrap())
        .await
        .unwrap();
    (dir, store)
}

fn kind(inserted: usize, updated: usize, unchanged: usize) -> UpsertCounts {
    UpsertCounts {
        inserted,
        updated,
        unchanged,
    }
}

/// Row counts of the three schedule tables.
async fn rows(store: &Store) -> [i64; 3] {
    store
        .call(|c| {
            let mut n = [0; 3];
            for (slot, table) in
                n.iter_mut()
                    .zip(["booking_lpus", "booking_cells", "booking_patients"])
            {
                *slot = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            }
            Ok(n)
        })
        .await
        .unwrap()
}

/// One value of the database, as SQL selects it.
async fn value<T: FromSql + Send + 'static>(store: &Store, sql: &str) -> T {
    let sql = sql.to_string();
    store
        .call(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
        .await
        .unwrap()
}

async fn execute(store: &Store, sql: &str) {
    let sql = sql.to_string();
    store
        .call(move |c| {
            c.execute_batch(&sql)?;
            Ok(())
        })
        .await
        .unwrap();
}

/// The fixture's cell `CELL`, with `fields` replaced or added.
fn cell_document(fields: &str) -> ScheduleDocument {
    let mut cell: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&format!(
        r#"{{"guid":"{CELL}","lpuGuid":"{SEED_LPU}","docGuid":"{DOCTOR}",
            "beginTime":"2030-04-18T08:45:00+03:00","endTime":"2030-04-18T09:00:00+03:00",
            "planCount":1,"usedCount":0,"room":"202","flat":0,
            "busyType":{{"name":"","type":1,"code":""}},"uchastokNum":""}}"#
    ))
    .unwrap();
    let more: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&format!("{{{fields}}}")).unwrap();
    cell.extend(more);
    doc(&serde_json::json!({ "cells": [cell] }).to_string())
}

#[tokio::test]
async fn the_fixture_is_inserted_then_found_unchanged_and_stored_column_by_column() {
    let (_dir, store) = store_with_doctors().await;
    let counts = store.import_schedule(schedule()).await.unwrap();
    assert_eq!(
        counts,
        ScheduleCounts {
            lpus: kind(2, 0, 0),
            cells: kind(7, 0, 0),
            patients: kind(3, 0, 0),
        }
    );
    assert_eq!(rows(&store).await, [2, 7, 3]);
    let updated_at: String = value(&store, "SELECT max(updated_at) FROM booking_cells").await;
    let again = store.import_schedule(schedule()).await.unwrap();
    assert_eq!(
        again,
        ScheduleCounts {
            lpus: kind(0, 0, 2),
            cells: kind(0, 0, 7),
            patients: kind(0, 0, 3),
        }
    );
    let after: String = value(&store, "SELECT max(updated_at) FROM booking_cells").await;
    assert_eq!(after, updated_at, "nothing was rewritten");

    let valid = schedule().validate().unwrap();
    let document: String = value(
        &store,
        &format!("SELECT document FROM booking_lpus WHERE guid = '{SEED_LPU}'"),
    )
    .await;
    assert_eq!(document, valid.lpus[0].document);
    let lpu: (i64, i64) = store
        .call(|c| {
            Ok(c.query_row(
                "SELECT is_children_polyclinic, utc_offset_minutes FROM booking_lpus
                 WHERE guid = '7a1c2f0e-5b3d-4c8e-9f21-0d6b4a8e3c57'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(lpu, (1, 180));
    let cell: Vec<String> = store
        .call(|c| {
            Ok(c.query_row(
                &format!(
                    "SELECT lpu_guid, doc_guid, begin_time, end_time, begin_utc, plan_count,
                         used_count, booked_count, room, flat, busy_type, uchastok_num,
                         age_categories, dispensary_required
                     FROM booking_cells WHERE guid = '{CELL}'"
                ),
                [],
                |r| {
                    (0..14)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                ValueRef::Integer(n) => n.to_string(),
                                v => v.as_str()?.to_string(),
                            })
                        })
                        .collect::<rusqlite::Result<Vec<String>>>()
                },
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        cell,
        [
            SEED_LPU,
            DOCTOR,
            "2030-04-18T08:45:00+03:00",
            "2030-04-18T09:00:00+03:00",
            "2030-04-18T05:45:00.000000Z",
            "1",
            "0",
            "0",
            "202",
            "0",
            r#"{"name":"","type":1,"code":""}"#,
            "",
            "7",
            "0"
        ]
    );
    let masks: String = value(
        &store,
        "SELECT group_concat(age_categories || ':' || dispensary_required, ',') FROM
         (SELECT * FROM booking_cells ORDER BY begin_utc)",
    )
    .await;
    assert_eq!(masks, "7:0,4:0,2:0,3:0,1:1,7:1,7:0");
    let patient: (String, String, i64, String) = store
        .call(|c| {
            Ok(c.query_row(
                "SELECT birth_date, full_name, self_booking_forbidden, dispensary
                 FROM booking_patients WHERE policy_number = '5000000000000002'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        patient,
        (
            "1960-01-31".into(),
            "Сидорова Анна Павловна".into(),
            0,
            r#"["кардиология","педиатрия"]"#.into()
        )
    );
    let forbidden: i64 = value(
        &store,
        "SELECT self_booking_forbidden FROM booking_patients WHERE policy_number = '7700000000000001'",
    )
    .await;
    assert_eq!(forbidden, 1);
}

#[tokio::test]
async fn a_change_to_any_column_of_a_cell_is_an_update_that_keeps_its_booked_places() {
    let (_dir, store) = store_with_doctors().await;
    store.import_schedule(schedule()).await.unwrap();
    let changes = [
        r#""lpuGuid":"7a1c2f0e-5b3d-4c8e-9f21-0d6b4a8e3c57""#,
        r#""docGuid":"9b2e4d61-7c3a-4f5e-8a1b-2c3d4e5f6a7b""#,
        r#""beginTime":"2030-04-18T08:40:00+03:00""#,
        r#""beginTime":"2030-04-18T05:45:00Z""#,
        r#""endTime":"2030-04-18T09:05:00+03:00""#,
        r#""planCount":2"#,
        r#""usedCount":1"#,
        r#""room":"203""#,
        r#""flat":1"#,
        r#""busyType":{"name":"","type":2,"code":""}"#,
        r#""uchastokNum":"1""#,
        r#""ageCategories":["ADULT"]"#,
        r#""dispensaryRequired":true"#,
    ];
    execute(
        &store,
        &format!("UPDATE booking_cells SET booked_count = 1 WHERE guid = '{CELL}'"),
    )
    .await;
    for change in changes {
        let counts = store.import_schedule(cell_document(change)).await.unwrap();
        assert_eq!(counts.cells, kind(0, 1, 0), "{change}");
        let booked: i64 = value(
            &store,
            &format!("SELECT booked_count FROM booking_cells WHERE guid = '{CELL}'"),
        )
        .await;
        assert_eq!(booked, 1, "{change}: medcall's bookings are kept");
        // Back as the fixture has it: an update again, then unchanged.
        let back = store.import_schedule(cell_document("")).await.unwrap();
        assert_eq!(back.cells, kind(0, 1, 0), "{change}");
        let same = store.import_schedule(cell_document("")).await.unwrap();
        assert_eq!(same.cells, kind(0, 0, 1), "{change}");
    }
    assert_eq!(rows(&store).await, [2, 7, 3]);
}

#[tokio::test]
async fn a_change_to_an_lpu_or_a_patient_is_an_update() {
    let (_dir, store) = store_with_doctors().await;
    let lpu = |fields: &str| doc(&format!(r#"{{"lpus":[{{"guid":"{SEED_LPU}"{fields}}}]}}"#));
    assert_eq!(
        store.import_schedule(lpu("")).await.unwrap().lpus,
        kind(1, 0, 0)
    );
    for change in [
        r#","utcOffset":"+04:00""#,
        r#","isChildrenPolyclinic":true"#,
        r#","name":"Больница""#,
    ] {
        let counts = store.import_schedule(lpu(change)).await.unwrap();
        assert_eq!(counts.lpus, kind(0, 1, 0), "{change}");
        assert_eq!(
            store.import_schedule(lpu(change)).await.unwrap().lpus,
            kind(0, 0, 1),
            "{change}"
        );
        store.import_schedule(lpu("")).await.unwrap();
    }
    let offset: i64 = value(&store, "SELECT utc_offset_minutes FROM booking_lpus").await;
    assert_eq!(offset, 180);
    store
        .import_schedule(lpu(r#","utcOffset":"+04:00""#))
        .await
        .unwrap();
    let offset: i64 = value(&store, "SELECT utc_offset_minutes FROM booking_lpus").await;
    assert_eq!(offset, 240);

    let patient = |fields: &str| {
        let mut p: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"policyNumber":"5098799789000154","birthDate":"1985-03-14","fullName":"Иванов Иван"}"#,
        )
        .unwrap();
        let more: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{{}}}", fields.trim_start_matches(','))).unwrap();
        p.extend(more);
        doc(&serde_json::json!({ "patients": [p] }).to_string())
    };
    assert_eq!(
        store.import_schedule(patient("")).await.unwrap().patients,
        kind(1, 0, 0)
    );
    for change in [
        r#","birthDate":"1985-03-15""#,
        r#","fullName":"Иванов И.""#,
        r#","selfBookingForbidden":true"#,
        r#","dispensary":["терапия"]"#,
    ] {
        let counts = store.import_schedule(patient(change)).await.unwrap();
        assert_eq!(counts.patients, kind(0, 1, 0), "{change}");
        assert_eq!(
            store
                .import_schedule(patient(change))
                .await
                .unwrap()
                .patients,
            kind(0, 0, 1),
            "{change}"
        );
        store.import_schedule(patient("")).await.unwrap();
    }
    assert_eq!(rows(&store).await, [1, 0, 1]);
}

#[tokio::test]
async fn an_import_never_deletes_and_a_cell_may_name_an_lpu_stored_before() {
    let (_dir, store) = store_with_doctors().await;
    store.import_schedule(schedule()).await.unwrap();
    // The LPU is not in this document: stored is enough.
    let counts = store
        .import_schedule(cell_document(
            r#""guid":"00000000-0000-4000-8000-000000000001""#,
        ))
        .await
        .unwrap();
    assert_eq!(counts.cells, kind(1, 0, 0));
    assert_eq!(counts.lpus, kind(0, 0, 0));
    assert_eq!(rows(&store).await, [2, 8, 3]);
    store.import_schedule(doc("{}")).await.unwrap();
    assert_eq!(rows(&store).await, [2, 8, 3]);
}

#[tokio::test]
async fn a_cell_naming_an_unknown_lpu_or_doctor_is_a_conflict_and_nothing_is_written() {
    let (_dir, store) = store_with_doctors().await;
    let unknown_doctor = schedule();
    let mut unknown_doctor = unknown_doctor;
    unknown_doctor.cells[2].doc_guid = "00000000-0000-4000-8000-00000000000d".into();
    match store.import_schedule(unknown_doctor).await {
        Err(ScheduleImportError::Conflict(problems)) => assert_eq!(
            problems,
            [
                r#"cells[2] "5e0c1f7a-2b4d-4e6f-8a9b-0c1d2e3f4a5b": docGuid "00000000-0000-4000-8000-00000000000d" is not a doctor of the directory"#
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(rows(&store).await, [0, 0, 0], "not even the LPUs");
    match store.import_schedule(cell_document("")).await {
        Err(ScheduleImportError::Conflict(problems)) => assert_eq!(
            problems,
            [format!(
                r#"cells[0] "{CELL}": lpuGuid "{SEED_LPU}" is neither in the document nor stored"#
            )]
        ),
        other => panic!("{other:?}"),
    }
    // Without the directory, every cell's doctor is unknown.
    let dir = tempfile::tempdir().unwrap();
    let empty = Store::open(&dir.path().join("m.db")).unwrap();
    match empty.import_schedule(schedule()).await {
        Err(ScheduleImportError::Conflict(problems)) => assert_eq!(problems.len(), 7),
        other => panic!("{other:?}"),
    }
    assert_eq!(rows(&empty).await, [0, 0, 0]);
}

#[tokio::test]
async fn a_malformed_entry_is_invalid_and_a_key_given_twice_a_conflict() {
    let (_dir, store) = store_with_doctors().await;
    let mut bad = schedule();
    bad.cells[1].plan_count = -1;
    match store.import_schedule(bad).await {
        Err(ScheduleImportError::Invalid(problems)) => assert_eq!(
            problems,
            [
                r#"cells[1] "43c6cec0-3b91-48ab-acab-d541a88e91f7": planCount must be 0–10000, got -1"#
            ]
        ),
        other => panic!("{other:?}"),
    }
    let mut twice = schedule();
    let first = twice.patients[0].clone();
    twice.patients.push(first);
    match store.import_schedule(twice).await {
        Err(ScheduleImportError::Conflict(problems)) => assert_eq!(
            problems,
            [
                r#"patients[3] "5098799789000154": policyNumber is also that of patients[0] "5098799789000154""#
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(rows(&store).await, [0, 0, 0]);
    let e = ScheduleImportError::Invalid(vec!["a".into(), "b".into()]);
    assert_eq!(
        e.to_string(),
        "the schedule document has invalid entries:\n  a\n  b"
    );
}

#[tokio::test]
async fn progress_is_reported_until_every_entry_is_done() {
    let (_dir, store) = store_with_doctors().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    store
        .import_schedule_with_progress(schedule(), move |p| log.lock().unwrap().push(p))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [ScheduleProgress {
            done: 12,
            total: 12
        }]
    );
    // Thousands of entries: every PROGRESS_EVERY, then the last.
    let cells: Vec<String> = (0..PROGRESS_EVERY * 2 + 1)
        .map(|i| {
            format!(
                r#"{{"guid":"{i:08x}-0000-4000-8000-000000000000","lpuGuid":"{SEED_LPU}","docGuid":"{DOCTOR}","beginTime":"2030-04-18T08:45:00+03:00","endTime":"2030-04-18T09:00:00+03:00","planCount":1}}"#
            )
        })
        .collect();
    let many = doc(&format!(
        r#"{{"lpus":[{{"guid":"{SEED_LPU}"}}],"cells":[{}]}}"#,
        cells.join(",")
    ));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let counts = store
        .import_schedule_with_progress(many, move |p| log.lock().unwrap().push(p.done))
        .await
        .unwrap();
    assert_eq!(counts.cells, kind(PROGRESS_EVERY * 2 + 1, 0, 0));
    assert_eq!(
        *seen.lock().unwrap(),
        [PROGRESS_EVERY, PROGRESS_EVERY * 2, PROGRESS_EVERY * 2 + 2]
    );
}

#[tokio::test]
async fn an_unreadable_stored_lpu_guid_is_a_bad_value_not_a_missing_lpu() {
    let (_dir, store) = store_with_doctors().await;
    store
        .import_schedule(doc(&format!(r#"{{"lpus":[{{"guid":"{SEED_LPU}"}}]}}"#)))
        .await
        .unwrap();
    execute(&store, "UPDATE booking_lpus SET guid = upper(guid)").await;
    match store.import_schedule(doc("{}")).await {
        Err(ScheduleImportError::Store(StoreError::BadValue(bad))) => {
            assert_eq!(bad.column, "guid");
        }
        other => panic!("{other:?}"),
    }
}
