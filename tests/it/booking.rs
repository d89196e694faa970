//! Seed 004 against a real daemon: the answer's shape against the seed's example field by
//! field, every error code with its status, message and type, the check order, the
//! signature, replays, confirm and cancel, races for the last place, and a hold lapsing
//! across `kill -9`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Daemon;
use crate::support::booking::{
    ADULT_LPU, Booker, CHILDREN_LPU, KIOSK, PORTAL, THERAPIST, add_cells, load_fixtures, now,
    options,
};

/// The seed's cell with one place, of the seed's LPU and doctor.
const SEED_CELL: &str = "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5";
/// ADULT only, 2 places, 1 used: one free.
const ADULT_CELL: &str = "43c6cec0-3b91-48ab-acab-d541a88e91f7";
/// The children's polyclinic's cell, CHILD and TEEN.
const CHILD_CELL: &str = "5e0c1f7a-2b4d-4e6f-8a9b-0c1d2e3f4a5b";
/// TEEN only, the next day.
const TEEN_CELL: &str = "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e";
/// Full: planCount 1, usedCount 1.
const FULL_CELL: &str = "c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f";
/// The cardiologist's dispensary cell.
const DISP_CELL: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

async fn daemon() -> Daemon {
    let d = Daemon::start_with(options()).await;
    load_fixtures(&d).await;
    d
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The seed's example `lpu` object, as the seed writes it.
fn seed_lpu() -> Value {
    let schedule: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/booking/schedule.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut lpu = schedule["lpus"][0].clone();
    lpu.as_object_mut().unwrap().remove("utcOffset");
    lpu
}

fn assert_error(answer: &(u16, Value), status: u16, code: u64, kind: &str, message: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(
        answer.1,
        json!({"code": code, "message": message, "type": kind}),
        "{answer:?}"
    );
}

const M5009: &str = "Подпись запроса некорректна";
const M4036: &str = "Время и гайд врача или гайд ячейки расписания не должны быть пустыми";
const M4040: &str = "ЛПУ, ячейка расписания или запись на прием не найдены";
const M4005: &str =
    "Вы пытаетесь записаться в детское учреждение. Запись пациентов старше 18 лет запрещена.";
const M4029: &str = "Запись недоступна для данной возрастной группы. Сотрудниками МО было установлено ограничение по возрасту при записи на прием.";
const M4009: &str = "Это время уже занято. Выберите другое свободное время приема.";
const M4007_SELF: &str = "Вам запрещена самостоятельная запись на прием через интернет или инфомат. Для записи на прием обратитесь в регистратуру медицинского учреждения лично или по телефону.";
const M4007_DISP: &str =
    "Вы не состоите на диспансерном учете у данного специалиста. Запись невозможна.";

#[tokio::test]
async fn a_reservation_answers_the_seeds_ticket_field_by_field_whole_and_short() {
    let d = daemon().await;
    let portal = Booker::new(&d, PORTAL);
    let before = chrono::Utc::now().timestamp();
    let (status, t) = portal.reserve(ADULT_LPU, SEED_CELL, "CHILD", 10).await;
    assert_eq!(status, 200, "{t}");
    // The seed's example, every field: the same keys, the same values where they are
    // the schedule's, the right form where they are the booking's.
    let seed_keys = [
        "lpu",
        "num",
        "uchastokNum",
        "room",
        "flat",
        "busyType",
        "ticketGuid",
        "timeTableGuid",
        "docFio",
        "docGuid",
        "doctorRole",
        "speciality",
        "beginTime",
        "endTime",
        "dateOfAppointment",
        "planCount",
        "usedCount",
        "source",
        "login",
        "sourceName",
        "dispExamGuid",
        "history",
    ];
    assert_eq!(
        keys(&t),
        seed_keys.iter().map(|k| (*k).to_string()).collect()
    );
    assert_eq!(t["lpu"], seed_lpu(), "the LPU object as the seed has it");
    assert_eq!(t["num"], "001");
    assert_eq!(t["uchastokNum"], "");
    assert_eq!(t["room"], "202");
    assert_eq!(t["flat"], 0);
    assert_eq!(t["busyType"], json!({"name": "", "type": 1, "code": ""}));
    let ticket = t["ticketGuid"].as_str().unwrap();
    assert!(ticket.parse::<medcall::booking::Guid>().is_ok(), "{ticket}");
    assert_eq!(t["timeTableGuid"], SEED_CELL);
    assert_eq!(t["docFio"], "Петрова Мария Ивановна");
    assert_eq!(t["docGuid"], THERAPIST);
    assert_eq!(t["doctorRole"], "врач-терапевт");
    assert_eq!(t["speciality"], "терапия");
    assert_eq!(t["beginTime"], "2030-04-18T08:45:00+03:00");
    assert_eq!(t["endTime"], "2030-04-18T09:00:00+03:00");
    let made =
        chrono::DateTime::parse_from_rfc3339(t["dateOfAppointment"].as_str().unwrap()).unwrap();
    assert_eq!(
        made.offset().local_minus_utc(),
        3 * 3600,
        "the LPU's offset"
    );
    assert!((before - 1..=now() + 1).contains(&made.timestamp()));
    assert_eq!(t["planCount"], 1);
    assert_eq!(
        t["usedCount"], 1,
        "the hold takes the place, as in the seed"
    );
    assert_eq!(t["source"], 0);
    assert_eq!(t["login"], Value::Null);
    assert_eq!(t["sourceName"], "Internet");
    assert_eq!(t["dispExamGuid"], Value::Null);
    let history = t["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    let h = &history[0];
    let history_keys = [
        "element",
        "elementGuid",
        "oldValue",
        "newValue",
        "editor",
        "date",
        "client",
    ];
    assert_eq!(
        keys(h),
        history_keys.iter().map(|k| (*k).to_string()).collect()
    );
    assert_eq!(h["element"], "Status");
    assert_eq!(h["elementGuid"], ticket);
    assert_eq!(h["oldValue"], "");
    assert_eq!(h["newValue"], "Reserved");
    assert_eq!(h["editor"], "portal");
    assert_eq!(h["date"], t["dateOfAppointment"]);
    assert_eq!(
        h["client"],
        json!({"mnem": "portal", "name": "Портал пациента", "description": ""})
    );

    // fullResponse=false: lpu, num and ticketGuid only. The same LPU and day: 002.
    let kiosk = Booker::new(&d, KIOSK);
    let body = json!({"timeTable": ADULT_CELL, "ageCategory": "ADULT", "reserveTime": 5});
    let (status, short) = kiosk
        .call(
            "POST",
            &format!("/visit/{ADULT_LPU}/reservation?fullResponse=false"),
            &body.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{short}");
    assert_eq!(
        keys(&short),
        ["lpu", "num", "ticketGuid"]
            .iter()
            .map(|k| (*k).to_string())
            .collect()
    );
    assert_eq!(short["lpu"], seed_lpu());
    assert_eq!(short["num"], "002");
    // Another day starts its own sequence; a client's source is its own.
    let (status, teen) = kiosk.reserve(ADULT_LPU, TEEN_CELL, "TEEN", 5).await;
    assert_eq!(status, 200, "{teen}");
    assert_eq!(teen["num"], "001");
    assert_eq!(teen["source"], 3);
    assert_eq!(teen["sourceName"], "Infomat");
    assert_eq!(teen["uchastokNum"], "12");
    assert_eq!(
        teen["history"][0]["client"]["name"], "kiosk",
        "no name: the id"
    );
    // The ticket reads back as answered, and only for its own client.
    let (status, read) = portal.get_ticket(ADULT_LPU, ticket).await;
    assert_eq!(status, 200);
    assert_eq!(read, t);
    let (status, _) = kiosk.get_ticket(ADULT_LPU, ticket).await;
    assert_eq!(status, 404, "another client's ticket is not there for it");
    let (status, _) = portal.get_ticket(CHILDREN_LPU, ticket).await;
    assert_eq!(status, 404, "not at another LPU");
}

#[tokio::test]
async fn every_code_answers_its_status_message_and_type_and_the_first_broken_rule_wins() {
    let d = daemon().await;
    let p = Booker::new(&d, PORTAL);
    let past = add_past_cell(&d).await;
    let post = |lpu: &str, body: Value| {
        let p = p.clone();
        let target = format!("/visit/{lpu}/reservation");
        async move { p.call("POST", &target, &body.to_string()).await }
    };
    let ok = |cell: &str| json!({"timeTable": cell, "ageCategory": "ADULT", "reserveTime": 10});

    // 5009: no signature at all.
    let r = p
        .client
        .post(format!("{}/visit/{ADULT_LPU}/reservation", d.http))
        .bearer_auth(&p.key)
        .body(ok(ADULT_CELL).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_error(
        &(status, r.json().await.unwrap()),
        403,
        5009,
        "Error",
        M5009,
    );

    // 4036: missing, null, empty, the nil GUID.
    for body in [
        json!({"ageCategory": "ADULT", "reserveTime": 10}),
        json!({"timeTable": null, "ageCategory": "ADULT", "reserveTime": 10}),
        json!({"timeTable": "", "ageCategory": "ADULT", "reserveTime": 10}),
        json!({"timeTable": "00000000-0000-0000-0000-000000000000", "ageCategory": "ADULT", "reserveTime": 10}),
    ] {
        assert_error(&post(ADULT_LPU, body).await, 400, 4036, "Error", M4036);
    }
    // 4040: unknown LPU, unknown cell, a cell of another LPU, a cell that is no GUID.
    for (lpu, cell) in [
        ("0d8c0000-0000-4000-8000-000000000001", ADULT_CELL),
        ("not-a-guid", ADULT_CELL),
        (ADULT_LPU, "0d8c0000-0000-4000-8000-000000000002"),
        (CHILDREN_LPU, ADULT_CELL),
        (ADULT_LPU, "cell-7"),
    ] {
        assert_error(&post(lpu, ok(cell)).await, 404, 4040, "Error", M4040);
    }
    // 4005: an adult at the children's polyclinic.
    assert_error(
        &post(CHILDREN_LPU, ok(CHILD_CELL)).await,
        400,
        4005,
        "Validation",
        M4005,
    );
    // 4029: a CHILD on an ADULT-only cell.
    let child = json!({"timeTable": ADULT_CELL, "ageCategory": "CHILD", "reserveTime": 10});
    assert_error(
        &post(ADULT_LPU, child).await,
        400,
        4029,
        "Validation",
        M4029,
    );
    // 4009: full, and in the past.
    assert_error(
        &post(ADULT_LPU, ok(FULL_CELL)).await,
        400,
        4009,
        "Validation",
        M4009,
    );
    assert_error(
        &post(ADULT_LPU, ok(&past)).await,
        400,
        4009,
        "Validation",
        M4009,
    );
    // 4000: reserveTime out of 1–60 or not an integer; ageCategory not a category.
    for (minutes, reason) in [
        (
            json!(0),
            "reserveTime должно быть целым числом минут от 1 до 60",
        ),
        (
            json!(61),
            "reserveTime должно быть целым числом минут от 1 до 60",
        ),
        (
            json!("10"),
            "reserveTime должно быть целым числом минут от 1 до 60",
        ),
        (
            json!(1.5),
            "reserveTime должно быть целым числом минут от 1 до 60",
        ),
    ] {
        let body = json!({"timeTable": ADULT_CELL, "ageCategory": "ADULT", "reserveTime": minutes});
        let message = format!("Некорректный запрос: {reason}");
        assert_error(
            &post(ADULT_LPU, body).await,
            400,
            4000,
            "Validation",
            &message,
        );
    }
    let body = json!({"timeTable": SEED_CELL, "ageCategory": "adult", "reserveTime": 10});
    assert_error(
        &post(ADULT_LPU, body).await,
        400,
        4000,
        "Validation",
        "Некорректный запрос: ageCategory должно быть одним из CHILD, TEEN, ADULT",
    );

    // The order: each request breaks two rules and gets the first one's code.
    let bad_sig = p.sign(
        "POST",
        &format!("/visit/{ADULT_LPU}/reservation"),
        r#"{"timeTable":""}"#,
    );
    let tampered = crate::support::booking::Signed {
        body: r#"{"timeTable": ""}"#.into(),
        ..bad_sig
    };
    assert_eq!(p.send(&tampered).await.1["code"], 5009, "5009 before 4036");
    let cases = [
        (
            ADULT_LPU,
            json!({"timeTable": "", "ageCategory": "ADULT", "reserveTime": 0}),
            4036,
        ),
        (
            "0d8c0000-0000-4000-8000-000000000001",
            json!({"timeTable": FULL_CELL, "ageCategory": "ADULT", "reserveTime": 0}),
            4040,
        ),
        (
            CHILDREN_LPU,
            json!({"timeTable": "d4e5f6a7-b8c9-4dae-9f0a-3b4c5d6e7f80", "ageCategory": "ADULT", "reserveTime": 0}),
            4005,
        ),
        (
            ADULT_LPU,
            json!({"timeTable": FULL_CELL, "ageCategory": "ADULT", "reserveTime": 0}),
            4009,
        ),
        (
            ADULT_LPU,
            json!({"timeTable": ADULT_CELL, "ageCategory": "TEEN", "reserveTime": 0}),
            4029,
        ),
        (
            ADULT_LPU,
            json!({"timeTable": past.clone(), "ageCategory": "ADULT", "reserveTime": 99}),
            4009,
        ),
        (
            ADULT_LPU,
            json!({"timeTable": FULL_CELL, "ageCategory": "XYZ", "reserveTime": 10}),
            4009,
        ),
    ];
    for (lpu, body, code) in cases {
        let answer = post(lpu, body.clone()).await;
        assert_eq!(answer.1["code"], code, "{lpu} {body}: {answer:?}");
    }
    // Nothing of all that took a place: the seed cell's one place is free.
    let (status, t) = p.reserve(ADULT_LPU, SEED_CELL, "ADULT", 10).await;
    assert_eq!((status, t["usedCount"].clone()), (200, json!(1)), "{t}");
    // A body that is not a JSON object, and a fullResponse that is not a boolean.
    let message = "Некорректный запрос: тело запроса должно быть объектом JSON";
    for body in ["", "[1]", "{", "null"] {
        let answer = p
            .call("POST", &format!("/visit/{ADULT_LPU}/reservation"), body)
            .await;
        assert_error(&answer, 400, 4000, "Validation", message);
    }
    let answer = p
        .call(
            "POST",
            &format!("/visit/{ADULT_LPU}/reservation?fullResponse=maybe"),
            &ok(ADULT_CELL).to_string(),
        )
        .await;
    assert_eq!(answer.1["code"], 4000, "{answer:?}");
}

/// A cell of the adult LPU that began yesterday.
async fn add_past_cell(d: &Daemon) -> String {
    let guid = "0a570000-0000-4000-8000-000000000001".to_string();
    let begin = chrono::Utc::now() - chrono::Duration::days(1);
    let doc = json!({"cells": [{
        "guid": guid, "lpuGuid": ADULT_LPU, "docGuid": THERAPIST,
        "beginTime": begin.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "endTime": (begin + chrono::Duration::minutes(15)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "planCount": 5,
    }]});
    crate::support::booking::put(d, &d.admin_key(), "/admin/schedule", &doc.to_string()).await;
    guid
}

#[tokio::test]
async fn a_tampered_stale_or_foreign_signature_is_5009_and_a_replay_gets_the_first_answer() {
    let d = daemon().await;
    let p = Booker::new(&d, PORTAL);
    let target = format!("/visit/{ADULT_LPU}/reservation?fullResponse=true");
    let body =
        json!({"timeTable": ADULT_CELL, "ageCategory": "ADULT", "reserveTime": 10}).to_string();
    let good = p.sign("POST", &target, &body);
    let refused = |s: crate::support::booking::Signed| {
        let p = p.clone();
        async move {
            let answer = p.send(&s).await;
            assert_error(&answer, 403, 5009, "Error", M5009);
        }
    };
    // Each part of what is signed, changed after signing.
    refused(crate::support::booking::Signed {
        body: body.replace("10", "11"),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        target: format!("/visit/{ADULT_LPU}/reservation?fullResponse=false"),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        target: format!("/visit/{ADULT_LPU}/reservation"),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        target: format!("/visit/{CHILDREN_LPU}/reservation?fullResponse=true"),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        timestamp: (now() - 1).to_string(),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        signature: good.signature.to_uppercase(),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        signature: String::new(),
        ..good.clone()
    })
    .await;
    // Signed with another client's secret, or as a client nobody configured.
    refused(crate::support::booking::Signed {
        client_id: "kiosk".into(),
        ..good.clone()
    })
    .await;
    refused(crate::support::booking::Signed {
        client_id: "stranger".into(),
        ..good.clone()
    })
    .await;
    // A timestamp outside the window, either way, signed correctly; junk timestamps.
    refused(p.sign_at("POST", &target, &body, now() - 301)).await;
    refused(p.sign_at("POST", &target, &body, now() + 301)).await;
    for junk in ["", "-5", "1e9", " 1700000000", "17000000000000"] {
        let mut s = p.sign("POST", &target, &body);
        s.timestamp = junk.into();
        refused(s).await;
    }
    // Inside the window (a clock a little behind) it is accepted.
    let (status, first) = p
        .send_raw(&p.sign_at("POST", &target, &body, now() - 250))
        .await;
    assert_eq!(status, 200, "{first}");
    let first: Value = serde_json::from_str(&first).unwrap();

    // The good request, sent three times: one answer, byte for byte; one ticket.
    let (status, once) = p.send_raw(&good).await;
    assert_eq!(
        status, 400,
        "the cell's last place went to the request above: {once}"
    );
    let fresh = p.sign(
        "POST",
        &target,
        &json!({"timeTable": SEED_CELL, "ageCategory": "ADULT", "reserveTime": 10}).to_string(),
    );
    let (s1, a1) = p.send_raw(&fresh).await;
    let (s2, a2) = p.send_raw(&fresh).await;
    let (s3, a3) = p.send_raw(&fresh).await;
    assert_eq!(s1, 200, "{a1}");
    assert_eq!((s2, &a2), (s1, &a1), "a replay answers the first answer");
    assert_eq!((s3, &a3), (s1, &a1));
    let t: Value = serde_json::from_str(&a1).unwrap();
    let (_, read) = p
        .get_ticket(ADULT_LPU, t["ticketGuid"].as_str().unwrap())
        .await;
    assert_eq!(
        read["history"].as_array().unwrap().len(),
        1,
        "one history entry"
    );
    // The seed cell has one place: had the replays booked, the ticket would be one of
    // several; a different request for it is refused because the place is taken once.
    let (status, _) = p.reserve(ADULT_LPU, SEED_CELL, "ADULT", 9).await;
    assert_eq!(status, 400);
    // A refused request replayed is refused the same way, even after the place frees.
    let (s, again) = p.send_raw(&good).await;
    assert_eq!((s, again), (400, once));
    let ticket = first["ticketGuid"].as_str().unwrap();
    let (status, _) = p
        .call(
            "DELETE",
            &format!("/visit/{ADULT_LPU}/reservation/{ticket}"),
            "",
        )
        .await;
    assert_eq!(status, 200);
    let (s, again) = p.send_raw(&good).await;
    assert_eq!(s, 400, "the replay of a refusal stays a refusal: {again}");

    // Without a bearer key: 401 in the booking's shape.
    let r = p
        .client
        .post(format!("{}{target}", d.http))
        .header("x-client-id", &good.client_id)
        .header("x-timestamp", &good.timestamp)
        .header("x-signature", &good.signature)
        .body(good.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["code"].clone(), v["type"].clone()),
        (json!(401), json!("Error"))
    );
}

async fn confirm(p: &Booker, ticket: &str, patient: Value) -> (u16, Value) {
    p.call(
        "POST",
        &format!("/visit/{ADULT_LPU}/reservation/{ticket}/confirm"),
        &patient.to_string(),
    )
    .await
}

fn ivanov() -> Value {
    json!({"policyNumber": "5098799789000154", "birthDate": "1985-03-14", "fullName": "Иванов Иван Иванович"})
}

#[tokio::test]
async fn confirming_makes_an_appointment_and_cancelling_frees_the_place() {
    let d = daemon().await;
    let p = Booker::new(&d, PORTAL);
    let (_, hold) = p.reserve(ADULT_LPU, SEED_CELL, "ADULT", 10).await;
    let ticket = hold["ticketGuid"].as_str().unwrap().to_string();
    // The patient's data must be whole and match the register.
    for (patient, reason) in [
        (
            json!({"policyNumber": "5098799789000154", "birthDate": "1985-03-14"}),
            "fullName должно быть ФИО пациента (до 256 символов)",
        ),
        (
            json!({"policyNumber": "5098799789000154", "birthDate": "14.03.1985", "fullName": "Иванов Иван Иванович"}),
            "birthDate должна быть датой рождения в виде ГГГГ-ММ-ДД",
        ),
        (
            json!({"policyNumber": "50987-99", "birthDate": "1985-03-14", "fullName": "Иванов Иван Иванович"}),
            "policyNumber должен быть номером полиса: 1–32 латинские буквы или цифры",
        ),
        (
            json!({"policyNumber": "5098799789000154", "birthDate": "1985-03-15", "fullName": "Иванов Иван Иванович"}),
            "данные пациента не совпадают с данными полиса",
        ),
        (
            json!({"policyNumber": "5098799789000154", "birthDate": "1985-03-14", "fullName": "Иванов Пётр"}),
            "данные пациента не совпадают с данными полиса",
        ),
    ] {
        let answer = confirm(&p, &ticket, patient).await;
        assert_error(
            &answer,
            400,
            4000,
            "Validation",
            &format!("Некорректный запрос: {reason}"),
        );
    }
    // Confirmed: an appointment; the place stays taken; the history says so.
    let mut patient = ivanov();
    patient["fullName"] = json!("иванов  иван иванович");
    let (status, a) = confirm(&p, &ticket, patient).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["usedCount"], 1);
    let history = a["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            history[1]["oldValue"].clone(),
            history[1]["newValue"].clone()
        ),
        (json!("Reserved"), json!("Appointment"))
    );
    // Confirming again (a new request) changes nothing.
    let (status, again) = confirm(&p, &ticket, ivanov()).await;
    assert_eq!(status, 200);
    assert_eq!(again["history"].as_array().unwrap().len(), 2);

    // 4008: the same patient, another терапия appointment, names whom and when.
    let (_, other) = p.reserve(ADULT_LPU, ADULT_CELL, "ADULT", 10).await;
    let other = other["ticketGuid"].as_str().unwrap().to_string();
    let answer = confirm(&p, &other, ivanov()).await;
    assert_error(
        &answer,
        400,
        4008,
        "Validation",
        "Вы уже записаны Петрова Мария Ивановна на 18.04.2030 08:45. Запрещено иметь более одной активной записи на прием на одну специальность.",
    );
    // 4007: a patient who may not book alone.
    let petrov = json!({"policyNumber": "7700000000000001", "birthDate": "2012-09-01", "fullName": "Петров Пётр Петрович"});
    assert_error(
        &confirm(&p, &other, petrov).await,
        400,
        4007,
        "Validation",
        M4007_SELF,
    );
    // 4007: the dispensary cell, for a patient not on the cardiologist's register; a
    // patient who is gets it.
    let (_, disp) = p.reserve(ADULT_LPU, DISP_CELL, "ADULT", 10).await;
    let disp = disp["ticketGuid"].as_str().unwrap().to_string();
    assert_error(
        &confirm(&p, &disp, ivanov()).await,
        400,
        4007,
        "Validation",
        M4007_DISP,
    );
    let sidorova = json!({"policyNumber": "5000000000000002", "birthDate": "1960-01-31", "fullName": "Сидорова Анна Павловна"});
    let (status, a) = confirm(&p, &disp, sidorova).await;
    assert_eq!(status, 200, "{a}");
    // 4040: a ticket that is not there, or another client's.
    let answer = confirm(&p, "0d8c0000-0000-4000-8000-0000000000ff", ivanov()).await;
    assert_error(&answer, 404, 4040, "Error", M4040);
    let kiosk = Booker::new(&d, KIOSK);
    assert_eq!(confirm(&kiosk, &ticket, ivanov()).await.0, 404);

    // Cancel the appointment: the place is free again; cancelling again changes nothing.
    let path = format!("/visit/{ADULT_LPU}/reservation/{ticket}");
    let (status, c) = p.call("DELETE", &path, "").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["usedCount"], 0);
    let history = c["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(
        (
            history[2]["oldValue"].clone(),
            history[2]["newValue"].clone()
        ),
        (json!("Appointment"), json!("Cancelled"))
    );
    let (status, c2) = p.call("DELETE", &path, "").await;
    assert_eq!(status, 200);
    assert_eq!(c2["history"].as_array().unwrap().len(), 3);
    let (status, _) = kiosk.call("DELETE", &path, "").await;
    assert_eq!(status, 404);
    // A cancelled ticket cannot be confirmed.
    assert_error(
        &confirm(&p, &ticket, ivanov()).await,
        400,
        4009,
        "Validation",
        M4009,
    );
    // Its place is free: Иванов's терапия appointment is gone, so the other hold confirms.
    let (status, _) = confirm(&p, &other, ivanov()).await;
    assert_eq!(status, 200);
    let (status, again) = p.reserve(ADULT_LPU, SEED_CELL, "ADULT", 10).await;
    assert_eq!(status, 200, "{again}");
    // Cancelling a hold frees its place too.
    let hold = again["ticketGuid"].as_str().unwrap();
    let (status, c) = p
        .call(
            "DELETE",
            &format!("/visit/{ADULT_LPU}/reservation/{hold}"),
            "",
        )
        .await;
    assert_eq!((status, c["usedCount"].clone()), (200, json!(0)));
    assert_eq!(c["history"][1]["oldValue"], "Reserved");
    let (status, _) = p.reserve(ADULT_LPU, SEED_CELL, "ADULT", 10).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_thousand_concurrent_reservations_of_ten_single_places_book_exactly_ten_twenty_times() {
    let d = daemon().await;
    let clients = [Booker::new(&d, PORTAL), Booker::new(&d, KIOSK)];
    for round in 0..20u16 {
        let cells = add_cells(&d, 0x1000 + round, 10, 1).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000usize {
            let client = clients[i % 2].clone();
            let cell = cells[i % 10].clone();
            tasks.spawn(async move {
                // Each request distinct (`n`): no two share a signature.
                let body =
                    json!({"timeTable": cell, "ageCategory": "ADULT", "reserveTime": 30, "n": i});
                let answer = client
                    .call(
                        "POST",
                        &format!("/visit/{ADULT_LPU}/reservation"),
                        &body.to_string(),
                    )
                    .await;
                (cell, answer)
            });
        }
        let mut won = BTreeSet::new();
        let mut refused = 0;
        while let Some(done) = tasks.join_next().await {
            let (cell, (status, body)) = done.unwrap();
            match status {
                200 => assert!(won.insert(cell), "a cell booked twice: {body}"),
                400 if body["code"] == 4009 => refused += 1,
                _ => panic!("unexpected {status} {body}"),
            }
        }
        assert_eq!(won.len(), 10, "round {round}");
        assert_eq!(refused, 990, "round {round}");
    }
}

#[tokio::test]
async fn two_clients_racing_for_the_last_place_one_wins_two_hundred_times() {
    let d = daemon().await;
    let portal = Booker::new(&d, PORTAL);
    let kiosk = Booker::new(&d, KIOSK);
    let cells = add_cells(&d, 0x2000, 200, 1).await;
    for cell in &cells {
        let (a, b) = tokio::join!(
            portal.reserve(ADULT_LPU, cell, "ADULT", 10),
            kiosk.reserve(ADULT_LPU, cell, "ADULT", 10)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
        let loser = if a.0 == 400 { &a.1 } else { &b.1 };
        assert_eq!(loser["code"], 4009);
    }
}

/// The ticket's stored state, read from the daemon's database file.
fn stored_state(d: &Daemon, ticket: &str) -> String {
    let db = rusqlite::Connection::open(d.data_dir().join("medcall.db")).unwrap();
    db.query_row(
        "SELECT state FROM booking_tickets WHERE guid = ?1",
        [ticket],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_one_minute_hold_lapses_across_kill_9_and_a_restart() {
    let mut d = daemon().await;
    let p = Booker::new(&d, PORTAL);
    let cell = add_cells(&d, 0x3000, 1, 1).await.remove(0);
    let (status, hold) = p.reserve(ADULT_LPU, &cell, "ADULT", 1).await;
    assert_eq!(status, 200, "{hold}");
    let ticket = hold["ticketGuid"].as_str().unwrap().to_string();
    let made =
        chrono::DateTime::parse_from_rfc3339(hold["dateOfAppointment"].as_str().unwrap()).unwrap();
    let (status, _) = p.reserve(ADULT_LPU, &cell, "ADULT", 1).await;
    assert_eq!(status, 400, "held");
    // Killed right after the acknowledgement; back with a sweeper that never runs in
    // this test: the lapse must be seen at read time.
    d.kill9_and_restart(&[("MEDCALL__BOOKING__SWEEP_INTERVAL_MS", "3600000")])
        .await;
    let (status, read) = p.get_ticket(ADULT_LPU, &ticket).await;
    assert_eq!(
        status, 200,
        "the acknowledged hold survived kill -9: {read}"
    );
    assert_eq!(read["history"].as_array().unwrap().len(), 1);
    let (status, _) = p.reserve(ADULT_LPU, &cell, "ADULT", 1).await;
    assert_eq!(status, 400, "still held after the restart");
    // Wait out the minute (the first sweep at start ran before it lapsed).
    let lapse = made.timestamp() + 60;
    while now() <= lapse {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, read) = p.get_ticket(ADULT_LPU, &ticket).await;
    assert_eq!(status, 200);
    let history = read["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{read}");
    assert_eq!(history[1]["newValue"], "Expired");
    assert_eq!(history[1]["editor"], "medcall");
    let lapsed =
        chrono::DateTime::parse_from_rfc3339(history[1]["date"].as_str().unwrap()).unwrap();
    assert!(
        (lapsed.timestamp() - lapse).abs() <= 1,
        "dated when it lapsed: {lapsed}"
    );
    assert_eq!(read["usedCount"], 0);
    assert_eq!(
        stored_state(&d, &ticket),
        "held",
        "not swept: seen at read time"
    );
    // The place is free again.
    let (status, again) = p.reserve(ADULT_LPU, &cell, "ADULT", 10).await;
    assert_eq!(status, 200, "{again}");
    // Restarted with a working sweeper: the lapse is written, dated when it happened.
    d.kill9_and_restart(&[("MEDCALL__BOOKING__SWEEP_INTERVAL_MS", "100")])
        .await;
    let mut state = stored_state(&d, &ticket);
    for _ in 0..100 {
        if state == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = stored_state(&d, &ticket);
    }
    assert_eq!(state, "expired");
    let (_, swept) = p.get_ticket(ADULT_LPU, &ticket).await;
    assert_eq!(
        swept["history"], read["history"],
        "the written lapse is the one shown before"
    );
    // Confirming the lapsed hold is too late.
    let answer = confirm(&p, &ticket, ivanov()).await;
    assert_eq!(answer.1["code"], 4009);
}
