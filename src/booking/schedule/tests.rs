use super::*;

const SEED_LPU: &str = "c3c977af-c3b4-4517-9d57-50a6844ec660";
const KIDS_LPU: &str = "7a1c2f0e-5b3d-4c8e-9f21-0d6b4a8e3c57";
const CELL: &str = "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5";
const DOCTOR: &str = "f05d7650-a2a0-49dc-99f1-bb57829bc46a";
const OTHER: &str = "43c6cec0-3b91-48ab-acab-d541a88e91f7";

/// The seed's `lpu` object as `booking_lpus.document` holds it: the fixture's LPU
/// without `utcOffset`, compact, in the seed's order.
const SEED_DOCUMENT: &str = r#"{"status":{"name":"Online","lastChangeTime":"2018-08-21T09:15:27+03:00","ping":9},"guid":"c3c977af-c3b4-4517-9d57-50a6844ec660","name":" ","ferName":" ","address":"142632, , - , . , . ","type":["milk","smp","lpu"],"phone":"8-496-416-04-13","mcod":"330501","fullName":"  \\  \\\\","fcod":"503305","stLpu":true,"hostID":209,"isChildrenPolyclinic":false,"isCallDoctor":true,"isWaitingList":true,"isDisp":true,"isActive":true,"haveSchedule":true,"parent":{"guid":"c3c977af-c3b4-4517-9d57-50a6844ec660","name":" \\ \" \\ "},"postIndex":"142632","ratings":null,"addressDetail":{"postcode":"142632","settlement":"","street":"","building":"","house":""},"worktimes":{"monday":"8:00 - 18:00","tuesday":"8:00 - 18:00","wednesday":"8:00 - 18:00","thursday":"8:00 - 18:00","friday":"8:00 - 18:00","saturday":"","sunday":""},"cityId":"2dr_geo_57074312","inn":"5073002930","kpp":"503401001","ogrn":"1035011301038","okato":"46243822001","lic":"1.2.643.5.1.13.3.25.50.293","management":" ","photo":"http://www.volgogradgiprobiosintez.ru/images/article/11/anons.jpg","site":" ","email":"muzdub@yandex.ru","gps":"55.797093, 38.884107"}"#;

/// The seed's keys of the `lpu` object, in its order.
const SEED_KEYS: [&str; 34] = [
    "status",
    "guid",
    "name",
    "ferName",
    "address",
    "type",
    "phone",
    "mcod",
    "fullName",
    "fcod",
    "stLpu",
    "hostID",
    "isChildrenPolyclinic",
    "isCallDoctor",
    "isWaitingList",
    "isDisp",
    "isActive",
    "haveSchedule",
    "parent",
    "postIndex",
    "ratings",
    "addressDetail",
    "worktimes",
    "cityId",
    "inn",
    "kpp",
    "ogrn",
    "okato",
    "lic",
    "management",
    "photo",
    "site",
    "email",
    "gps",
];

fn fixture() -> ScheduleDocument {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/booking/schedule.json"
    );
    ScheduleDocument::from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn parse(json: &str) -> ScheduleDocument {
    ScheduleDocument::from_json(json.as_bytes()).unwrap()
}

/// A document of one cell: `fields` replace or add to a valid cell's.
fn one_cell(fields: &str) -> String {
    let mut cell: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&format!(
        r#"{{"guid":"{CELL}","lpuGuid":"{SEED_LPU}","docGuid":"{DOCTOR}",
            "beginTime":"2030-04-18T08:45:00+03:00","endTime":"2030-04-18T09:00:00+03:00",
            "planCount":1}}"#
    ))
    .unwrap();
    let more: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&format!("{{{fields}}}")).unwrap();
    cell.extend(more);
    serde_json::json!({ "cells": [cell] }).to_string()
}

/// The keys of a JSON object, in the order written.
fn keys_in_order(json: &str) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(k);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde::Deserializer::deserialize_map(&mut de, Keys).unwrap()
}

#[test]
fn the_fixture_validates_and_its_seed_lpu_is_stored_as_the_seed_writes_it() {
    let v = fixture().validate().unwrap();
    assert_eq!((v.lpus.len(), v.cells.len(), v.patients.len()), (2, 7, 3));
    let seed = &v.lpus[0];
    assert_eq!(seed.guid.as_str(), SEED_LPU);
    assert!(!seed.is_children_polyclinic);
    assert_eq!(seed.utc_offset.minutes(), 180);
    assert_eq!(seed.document, SEED_DOCUMENT);
    assert_eq!(keys_in_order(&seed.document), SEED_KEYS);
    let kids = &v.lpus[1];
    assert_eq!(kids.guid.as_str(), KIDS_LPU);
    assert!(kids.is_children_polyclinic);
    assert_eq!(kids.utc_offset.minutes(), 180, "the default offset");
    assert_eq!(keys_in_order(&kids.document), SEED_KEYS);
    assert!(!kids.document.contains("utcOffset"));
}

#[test]
fn an_lpu_left_out_takes_the_documented_defaults() {
    let v = parse(&format!(
        r#"{{"lpus":[{{"guid":"{}"}}]}}"#,
        SEED_LPU.to_uppercase()
    ))
    .validate()
    .unwrap();
    let l = &v.lpus[0];
    assert_eq!(l.guid.as_str(), SEED_LPU);
    assert_eq!(l.utc_offset.minutes(), i64::from(UtcOffset::MOSCOW_MINUTES));
    assert!(!l.is_children_polyclinic);
    assert_eq!(
        l.document,
        format!(
            r#"{{"status":null,"guid":"{SEED_LPU}","name":"","ferName":"","address":"","type":[],"phone":"","mcod":"","fullName":"","fcod":"","stLpu":false,"hostID":null,"isChildrenPolyclinic":false,"isCallDoctor":false,"isWaitingList":false,"isDisp":false,"isActive":false,"haveSchedule":false,"parent":null,"postIndex":"","ratings":null,"addressDetail":{{"postcode":"","settlement":"","street":"","building":"","house":""}},"worktimes":{{"monday":"","tuesday":"","wednesday":"","thursday":"","friday":"","saturday":"","sunday":""}},"cityId":"","inn":"","kpp":"","ogrn":"","okato":"","lic":"","management":"","photo":"","site":"","email":"","gps":""}}"#
        )
    );
}

#[test]
fn an_lpu_keeps_its_offset_apart_and_its_guids_and_times_normalized() {
    let v = parse(&format!(
        r#"{{"lpus":[{{"guid":"{SEED_LPU}","utcOffset":"-05:30","isChildrenPolyclinic":true,
            "status":{{"name":"Online","lastChangeTime":"2018-08-21T06:15:27.000Z"}},
            "parent":{{"guid":"{}"}},"ratings":{{"stars":4.5,"votes":[1,2]}}}}]}}"#,
        OTHER.to_uppercase()
    ))
    .validate()
    .unwrap();
    let l = &v.lpus[0];
    assert_eq!(l.utc_offset.minutes(), -330);
    assert!(l.is_children_polyclinic);
    let doc: serde_json::Value = serde_json::from_str(&l.document).unwrap();
    assert_eq!(
        doc["status"],
        serde_json::json!({"name": "Online", "lastChangeTime": "2018-08-21T06:15:27+00:00", "ping": null})
    );
    assert_eq!(
        doc["parent"],
        serde_json::json!({"guid": OTHER, "name": ""})
    );
    assert_eq!(
        doc["ratings"],
        serde_json::json!({"stars": 4.5, "votes": [1, 2]})
    );
    assert_eq!(doc["isChildrenPolyclinic"], true);
    assert!(doc.get("utcOffset").is_none());
    // The nil GUID is the seed's "none": a parent kept as given.
    let nil = "00000000-0000-0000-0000-000000000000";
    let v = parse(&format!(
        r#"{{"lpus":[{{"guid":"{SEED_LPU}","parent":{{"guid":"{nil}","name":"-"}}}}]}}"#
    ))
    .validate()
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&v.lpus[0].document).unwrap();
    assert_eq!(doc["parent"], serde_json::json!({"guid": nil, "name": "-"}));
    // Any JSON is a rating.
    for ratings in ["[null,1]", "\"5\"", "7", "true"] {
        let v = parse(&format!(
            r#"{{"lpus":[{{"guid":"{SEED_LPU}","ratings":{ratings}}}]}}"#
        ))
        .validate()
        .unwrap();
        assert!(
            v.lpus[0]
                .document
                .contains(&format!(r#""ratings":{ratings}"#)),
            "{ratings}"
        );
    }
}

#[test]
fn lpu_document_gives_the_canonical_json_of_one_lpu_object() {
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/booking/schedule.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let lpu = fixture["lpus"][0].to_string();
    assert_eq!(lpu_document(lpu.as_bytes()).unwrap(), SEED_DOCUMENT);
    assert_eq!(
        lpu_document(br#"{"guid":"x"}"#).unwrap_err(),
        [r#"lpus[0] "x": guid must be a GUID (8-4-4-4-12 hexadecimal digits)"#]
    );
    let e = lpu_document(br#"{"guid":"x","colour":1}"#).unwrap_err();
    assert!(e[0].starts_with("unknown field `colour`"), "{e:?}");
}

#[test]
fn the_fixture_cells_and_patients_validate_into_their_columns() {
    let v = fixture().validate().unwrap();
    let c = &v.cells[0];
    assert_eq!(
        *c,
        Cell {
            guid: CELL.parse().unwrap(),
            lpu: SEED_LPU.parse().unwrap(),
            doctor: DOCTOR.parse().unwrap(),
            begin_time: "2030-04-18T08:45:00+03:00".into(),
            end_time: "2030-04-18T09:00:00+03:00".into(),
            begin_utc: DateTime::parse_from_rfc3339("2030-04-18T05:45:00Z")
                .unwrap()
                .with_timezone(&Utc),
            plan_count: 1,
            used_count: 0,
            room: "202".into(),
            flat: 0,
            busy_type: BusyType::default(),
            uchastok_num: String::new(),
            ages: AgeMask::ALL,
            dispensary_required: false,
        }
    );
    assert_eq!(c.busy_type.json(), r#"{"name":"","type":1,"code":""}"#);
    let masks: Vec<i64> = v.cells.iter().map(|c| c.ages.bits()).collect();
    assert_eq!(masks, [7, 4, 3, 7, 2, 7, 1]);
    let disp: Vec<bool> = v.cells.iter().map(|c| c.dispensary_required).collect();
    assert_eq!(disp, [false, false, false, true, false, false, true]);
    assert_eq!(
        v.cells[3].busy_type,
        BusyType {
            name: "Диспансерный приём".into(),
            kind: 2,
            code: "DISP".into()
        }
    );
    assert_eq!((v.cells[1].used_count, v.cells[1].flat), (1, 2));
    // `Z` is kept as the offset it is.
    assert_eq!(v.cells[6].begin_time, "2030-05-21T07:00:00+00:00");
    assert_eq!(v.cells[6].end_time, "2030-05-21T07:20:00+00:00");

    let p = &v.patients;
    assert_eq!(p[0].policy_number.as_str(), "5098799789000154");
    assert_eq!(p[0].birth_date_text(), "1985-03-14");
    assert_eq!(p[0].full_name, "Иванов Иван Иванович");
    assert!(!p[0].self_booking_forbidden);
    assert_eq!(p[0].dispensary_json(), "[]");
    assert!(p[1].self_booking_forbidden);
    assert_eq!(p[2].dispensary, ["кардиология", "педиатрия"]);
    assert_eq!(p[2].dispensary_json(), r#"["кардиология","педиатрия"]"#);
}

#[test]
fn a_cell_left_out_takes_the_documented_defaults_and_keeps_its_offset() {
    let v = parse(&one_cell(
        r#""beginTime":"2030-04-18T23:30:00.000-05:00","endTime":"2030-04-19T00:00:00-05:00""#,
    ))
    .validate()
    .unwrap();
    let c = &v.cells[0];
    assert_eq!(c.begin_time, "2030-04-18T23:30:00-05:00");
    assert_eq!(c.end_time, "2030-04-19T00:00:00-05:00");
    assert_eq!(c.begin_utc.to_rfc3339(), "2030-04-19T04:30:00+00:00");
    assert_eq!((c.used_count, c.flat), (0, 0));
    assert_eq!((c.room.as_str(), c.uchastok_num.as_str()), ("", ""));
    assert_eq!(c.busy_type.json(), r#"{"name":"","type":1,"code":""}"#);
    assert_eq!(c.ages, AgeMask::ALL);
    assert!(!c.dispensary_required);
    // A busy type given in part takes the rest's defaults.
    let v = parse(&one_cell(r#""busyType":{"code":"A\"1"}"#))
        .validate()
        .unwrap();
    assert_eq!(
        v.cells[0].busy_type.json(),
        r#"{"name":"","type":1,"code":"A\"1"}"#
    );
    assert_eq!(
        v.cells[0].busy_type.json(),
        serde_json::to_string(&v.cells[0].busy_type).unwrap()
    );
}

#[test]
fn a_patients_policy_number_is_kept_in_uppercase() {
    let v = parse(
        r#"{"patients":[{"policyNumber":"ab12","birthDate":"2000-02-29","fullName":"Анна"}]}"#,
    )
    .validate()
    .unwrap();
    assert_eq!(v.patients[0].policy_number.as_str(), "AB12");
    assert_eq!(v.patients[0].policy_number.to_string(), "AB12");
    assert_eq!(
        "ab12".parse::<PolicyNumber>().unwrap(),
        "AB12".parse().unwrap()
    );
    assert!("".parse::<PolicyNumber>().is_err());
    assert!("1".repeat(33).parse::<PolicyNumber>().is_err());
    assert!("1".repeat(32).parse::<PolicyNumber>().is_ok());
    assert!("12 34".parse::<PolicyNumber>().is_err());
    assert!("№1".parse::<PolicyNumber>().is_err());
}

/// Each document holds one bad value; the refusal is exactly `message`.
#[test]
fn every_refusal_names_its_entry_and_the_reason() {
    let long = "я".repeat(MAX_TEXT + 1);
    let lpu = |fields: &str| format!(r#"{{"lpus":[{{"guid":"{SEED_LPU}",{fields}}}]}}"#);
    let at_lpu = |m: &str| format!(r#"lpus[0] "{SEED_LPU}": {m}"#);
    let at_cell = |m: &str| format!(r#"cells[0] "{CELL}": {m}"#);
    let patient = |policy: &str, birth: &str, name: &str, more: &str| {
        format!(
            r#"{{"patients":[{{"policyNumber":"{policy}","birthDate":"{birth}","fullName":"{name}"{more}}}]}}"#
        )
    };
    let at_patient = |m: &str| format!(r#"patients[0] "5098799789000154": {m}"#);
    let p = "5098799789000154";
    let many: Vec<String> = (0..=MAX_LIST).map(|i| format!("\"t{i}\"")).collect();
    let big_ratings = format!(r#""ratings":"{}""#, "r".repeat(MAX_RATINGS_BYTES));
    let cases: Vec<(String, String)> = vec![
        (
            r#"{"lpus":[{"guid":"not-a-guid"}]}"#.into(),
            r#"lpus[0] "not-a-guid": guid must be a GUID (8-4-4-4-12 hexadecimal digits)"#.into(),
        ),
        (
            r#"{"lpus":[{"guid":"00000000-0000-0000-0000-000000000000"}]}"#.into(),
            r#"lpus[0] "00000000-0000-0000-0000-000000000000": guid must not be the nil GUID, which names no doctor"#.into(),
        ),
        (lpu(&format!(r#""name":"{long}""#)), at_lpu("name must be at most 1024 characters")),
        (lpu(r#""fullName":"a\u0007b""#), at_lpu("fullName must not contain control characters")),
        (lpu(r#""gps":"1\n2""#), at_lpu("gps must not contain control characters")),
        (lpu(r#""addressDetail":{"street":"a\tb"}"#), at_lpu("addressDetail.street must not contain control characters")),
        (lpu(r#""worktimes":{"sunday":"\r"}"#), at_lpu("worktimes.sunday must not contain control characters")),
        (lpu(r#""type":["lpu","a\u0000"]"#), at_lpu("type[1] must not contain control characters")),
        (lpu(&format!(r#""type":[{}]"#, many.join(","))), at_lpu("type must have at most 64 entries")),
        (lpu(r#""hostID":2147483648"#), at_lpu("hostID must be -2147483648–2147483647, got 2147483648")),
        (lpu(r#""status":{"ping":-2147483649}"#), at_lpu("status.ping must be -2147483648–2147483647, got -2147483649")),
        (lpu(r#""status":{"name":"\u001b"}"#), at_lpu("status.name must not contain control characters")),
        (
            lpu(r#""status":{"lastChangeTime":"21.08.2018 09:15"}"#),
            at_lpu(r#"status.lastChangeTime must be an RFC 3339 time with an offset, such as 2030-04-18T08:45:00+03:00, got "21.08.2018 09:15""#),
        ),
        (lpu(r#""parent":{"guid":"p"}"#), at_lpu("parent.guid must be a GUID (8-4-4-4-12 hexadecimal digits)")),
        (lpu(&format!(r#""parent":{{"guid":"{SEED_LPU}","name":"\n"}}"#)), at_lpu("parent.name must not contain control characters")),
        (lpu(r#""utcOffset":"+3""#), at_lpu(r#"utcOffset must be an offset from UTC such as +03:00, got "+3""#)),
        (lpu(r#""utcOffset":"+18:30""#), at_lpu(r#"utcOffset must be an offset from UTC such as +03:00, got "+18:30""#)),
        (lpu(&big_ratings), at_lpu("ratings must be at most 16384 bytes of JSON")),
        (
            one_cell(r#""guid":"c""#),
            r#"cells[0] "c": guid must be a GUID (8-4-4-4-12 hexadecimal digits)"#.into(),
        ),
        (one_cell(r#""lpuGuid":"l""#), at_cell("lpuGuid must be a GUID (8-4-4-4-12 hexadecimal digits)")),
        (one_cell(r#""docGuid":"00000000-0000-0000-0000-000000000000""#), at_cell("docGuid must not be the nil GUID, which names no doctor")),
        (
            one_cell(r#""beginTime":"2030-04-18T08:45:00""#),
            at_cell(r#"beginTime must be an RFC 3339 time with an offset, such as 2030-04-18T08:45:00+03:00, got "2030-04-18T08:45:00""#),
        ),
        (
            one_cell(r#""endTime":"2030-02-30T09:00:00+03:00""#),
            at_cell(r#"endTime must be an RFC 3339 time with an offset, such as 2030-04-18T08:45:00+03:00, got "2030-02-30T09:00:00+03:00""#),
        ),
        (one_cell(r#""planCount":-1"#), at_cell("planCount must be 0–10000, got -1")),
        (one_cell(r#""planCount":10001"#), at_cell("planCount must be 0–10000, got 10001")),
        (one_cell(r#""usedCount":-1"#), at_cell("usedCount must be 0–10000, got -1")),
        (one_cell(r#""usedCount":10001"#), at_cell("usedCount must be 0–10000, got 10001")),
        (one_cell(r#""room":"2\n02""#), at_cell("room must not contain control characters")),
        (one_cell(r#""flat":2147483648"#), at_cell("flat must be -2147483648–2147483647, got 2147483648")),
        (one_cell(r#""busyType":{"name":"\u0001"}"#), at_cell("busyType.name must not contain control characters")),
        (one_cell(r#""busyType":{"type":-2147483649}"#), at_cell("busyType.type must be -2147483648–2147483647, got -2147483649")),
        (one_cell(r#""busyType":{"code":"\u0085"}"#), at_cell("busyType.code must not contain control characters")),
        (one_cell(&format!(r#""uchastokNum":"{long}""#)), at_cell("uchastokNum must be at most 1024 characters")),
        (one_cell(r#""ageCategories":[]"#), at_cell("ageCategories must not be empty")),
        (
            one_cell(r#""ageCategories":["CHILD","adult"]"#),
            at_cell(r#"ageCategories[1] must be CHILD, TEEN or ADULT, got "adult""#),
        ),
        (
            patient("50987-99", "1985-03-14", "Анна", ""),
            r#"patients[0] "50987-99": policyNumber must be ASCII letters and digits only"#.into(),
        ),
        (
            patient("", "1985-03-14", "Анна", ""),
            r#"patients[0] "": policyNumber must be 1–32 ASCII letters and digits, got 0 characters"#.into(),
        ),
        (patient(p, "1985-3-14", "Анна", ""), at_patient(r#"birthDate must be a date YYYY-MM-DD, got "1985-3-14""#)),
        (patient(p, "1985-03-14T00:00:00", "Анна", ""), at_patient(r#"birthDate must be a date YYYY-MM-DD, got "1985-03-14T00:00:00""#)),
        (patient(p, "2023-02-29", "Анна", ""), at_patient(r#"birthDate "2023-02-29" is not a date"#)),
        (patient(p, "1985-03-14", " ", ""), at_patient("fullName must not be empty")),
        (patient(p, "1985-03-14", &"я".repeat(MAX_NAME + 1), ""), at_patient("fullName must be at most 256 characters")),
        (patient(p, "1985-03-14", "А\\tнна", ""), at_patient("fullName must not contain control characters")),
        (patient(p, "1985-03-14", "Анна", r#","dispensary":["терапия",""]"#), at_patient("dispensary[1] must not be empty")),
        (
            patient(p, "1985-03-14", "Анна", &format!(r#","dispensary":[{}]"#, many.join(","))),
            at_patient("dispensary must have at most 64 entries"),
        ),
    ];
    for (doc, message) in cases {
        let (problems, only_conflicts) = parse(&doc).validate_classified().unwrap_err();
        assert_eq!(problems, [message], "{doc}");
        assert!(!only_conflicts, "{doc}");
    }
}

/// Rules between two fields of a cell, which no JSON Schema can state: conflicts (409),
/// as keys given twice are.
#[test]
fn a_cell_whose_fields_disagree_is_a_conflict() {
    let at_cell = |m: &str| format!(r#"cells[0] "{CELL}": {m}"#);
    let cases = [
        (
            r#""endTime":"2030-04-18T08:45:00+03:00""#,
            "endTime must be after beginTime",
        ),
        (
            r#""endTime":"2030-04-18T08:00:00+03:00""#,
            "endTime must be after beginTime",
        ),
        // The same instant in another offset is not after it either.
        (
            r#""endTime":"2030-04-18T05:45:00Z""#,
            "endTime must be after beginTime",
        ),
        (
            r#""usedCount":2"#,
            "usedCount must be at most planCount (1), got 2",
        ),
        (
            r#""planCount":0,"usedCount":1"#,
            "usedCount must be at most planCount (0), got 1",
        ),
    ];
    for (fields, message) in cases {
        let (problems, only_conflicts) =
            parse(&one_cell(fields)).validate_classified().unwrap_err();
        assert_eq!(problems, [at_cell(message)], "{fields}");
        assert!(only_conflicts, "{fields}");
    }
    // Beside a malformed value, the document is malformed.
    let (problems, only_conflicts) = parse(&one_cell(r#""usedCount":2,"room":"\n""#))
        .validate_classified()
        .unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(!only_conflicts);
    // A plan out of range is not compared with the places used.
    let (problems, _) = parse(&one_cell(r#""planCount":-1,"usedCount":0"#))
        .validate_classified()
        .unwrap_err();
    assert_eq!(problems, [at_cell("planCount must be 0–10000, got -1")]);
}

#[test]
fn the_limits_themselves_are_accepted() {
    let longest = "я".repeat(MAX_TEXT);
    let types: Vec<String> = (0..MAX_LIST).map(|i| format!("\"t{i}\"")).collect();
    let ratings = format!("\"{}\"", "r".repeat(MAX_RATINGS_BYTES - 2));
    parse(&format!(
        r#"{{"lpus":[{{"guid":"{SEED_LPU}","name":"{longest}","type":[{}],"hostID":-2147483648,"ratings":{ratings},"utcOffset":"-18:00"}}]}}"#,
        types.join(",")
    ))
    .validate()
    .unwrap();
    parse(&one_cell(&format!(
        r#""planCount":10000,"usedCount":10000,"flat":2147483647,"room":"{longest}","ageCategories":["ADULT","ADULT"],"endTime":"2030-04-18T08:45:01+03:00""#
    )))
    .validate()
    .unwrap();
    let v = parse(&one_cell(r#""planCount":0"#)).validate().unwrap();
    assert_eq!((v.cells[0].plan_count, v.cells[0].used_count), (0, 0));
    parse(&format!(
        r#"{{"patients":[{{"policyNumber":"{}","birthDate":"2000-02-29","fullName":"{}","dispensary":[{}]}}]}}"#,
        "Z".repeat(MAX_POLICY_NUMBER),
        "я".repeat(MAX_NAME),
        types.join(",")
    ))
    .validate()
    .unwrap();
}

#[test]
fn every_problem_of_a_document_is_listed_not_only_the_first() {
    let problems = parse(&format!(
        r#"{{"lpus":[{{"guid":"x","name":"\n"}}],
            "cells":[{{"guid":"{CELL}","lpuGuid":"{SEED_LPU}","docGuid":"{DOCTOR}",
                "beginTime":"2030-04-18T09:00:00+03:00","endTime":"2030-04-18T08:00:00+03:00","planCount":1,"usedCount":3}}],
            "patients":[{{"policyNumber":"1","birthDate":"x","fullName":""}}]}}"#
    ))
    .validate()
    .unwrap_err();
    assert_eq!(
        problems,
        [
            r#"lpus[0] "x": guid must be a GUID (8-4-4-4-12 hexadecimal digits)"#.to_string(),
            r#"lpus[0] "x": name must not contain control characters"#.into(),
            format!(r#"cells[0] "{CELL}": endTime must be after beginTime"#),
            format!(r#"cells[0] "{CELL}": usedCount must be at most planCount (1), got 3"#),
            r#"patients[0] "1": birthDate must be a date YYYY-MM-DD, got "x""#.into(),
            r#"patients[0] "1": fullName must not be empty"#.into(),
        ]
    );
}

#[test]
fn at_most_fifty_problems_are_listed_then_a_count_of_the_rest() {
    let lpus: Vec<String> = (0..60).map(|i| format!(r#"{{"guid":"g{i}"}}"#)).collect();
    let problems = parse(&format!(r#"{{"lpus":[{}]}}"#, lpus.join(",")))
        .validate()
        .unwrap_err();
    assert_eq!(problems.len(), MAX_PROBLEMS + 1);
    assert_eq!(problems.last().unwrap(), "… and 10 more problems");
    assert_eq!(
        problems[MAX_PROBLEMS - 1],
        r#"lpus[49] "g49": guid must be a GUID (8-4-4-4-12 hexadecimal digits)"#
    );
}

#[test]
fn a_key_given_twice_is_a_conflict_naming_both_entries() {
    let cell = |guid: &str| {
        format!(
            r#"{{"guid":"{guid}","lpuGuid":"{SEED_LPU}","docGuid":"{DOCTOR}","beginTime":"2030-04-18T08:45:00+03:00","endTime":"2030-04-18T09:00:00+03:00","planCount":1}}"#
        )
    };
    let doc = format!(
        r#"{{"lpus":[{{"guid":"{SEED_LPU}"}},{{"guid":"{}"}}],
            "cells":[{},{},{}],
            "patients":[{{"policyNumber":"ab1","birthDate":"2000-01-01","fullName":"A"}},
                        {{"policyNumber":"AB1","birthDate":"2000-01-01","fullName":"B"}}]}}"#,
        SEED_LPU.to_uppercase(),
        cell(CELL),
        cell(OTHER),
        cell(&CELL.to_uppercase())
    );
    let (problems, only_duplicates) = parse(&doc).validate_classified().unwrap_err();
    assert_eq!(
        problems,
        [
            format!(
                r#"lpus[1] "{}": guid is also that of lpus[0] "{SEED_LPU}""#,
                SEED_LPU.to_uppercase()
            ),
            format!(
                r#"cells[2] "{}": guid is also that of cells[0] "{CELL}""#,
                CELL.to_uppercase()
            ),
            // The first is named by its key as validated.
            r#"patients[1] "AB1": policyNumber is also that of patients[0] "AB1""#.into(),
        ]
    );
    assert!(only_duplicates);
    // With a malformed entry as well, the document is malformed.
    let also_bad = doc.replace(r#""fullName":"B""#, r#""fullName":"""#);
    let (problems, only_duplicates) = parse(&also_bad).validate_classified().unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(!only_duplicates);
    assert!(parse("{}").validate_classified().is_ok());
}

#[test]
fn a_malformed_document_is_refused_naming_the_place() {
    let cases = [
        (r#"{"cellz":[]}"#, "cellz: unknown field `cellz`"),
        (
            r#"{"cells":[{"guid":"a","lpuGuid":"b","docGuid":"c","beginTime":"t","endTime":"t","planCount":"1"}]}"#,
            "cells[0].planCount: invalid type: string \"1\"",
        ),
        (
            r#"{"cells":[{"guid":"a","lpuGuid":"b","docGuid":"c","beginTime":"t","endTime":"t","planCount":1.5}]}"#,
            "cells[0].planCount: invalid value: floating point `1.5`",
        ),
        (
            r#"{"cells":[{"guid":"a","lpuGuid":"b","docGuid":"c","beginTime":"t","endTime":"t"}]}"#,
            "cells[0]: missing field `planCount`",
        ),
        (
            r#"{"lpus":[{"guid":"a","worktimes":{"funday":""}}]}"#,
            "lpus[0].worktimes.funday: unknown field `funday`",
        ),
        (
            r#"{"lpus":[{"guid":"a","isActive":"yes"}]}"#,
            "lpus[0].isActive: invalid type: string \"yes\"",
        ),
        (
            r#"{"patients":[{"policyNumber":"1","birthDate":"2000-01-01"}]}"#,
            "patients[0]: missing field `fullName`",
        ),
        (
            r#"{"lpus":[{"guid":"a","utcOffset":180}]}"#,
            "lpus[0].utcOffset: invalid type",
        ),
        ("[]", "the document must be a JSON object"),
        ("{", "EOF while parsing"),
        ("{} {}", "trailing characters"),
    ];
    for (json, start) in cases {
        let e = ScheduleDocument::from_json(json.as_bytes()).unwrap_err();
        assert!(e.starts_with(start), "{json}: {e}");
    }
    // A whole float is an integer, as in the other import documents.
    let v = parse(&one_cell(r#""planCount":2.0,"usedCount":1e0"#))
        .validate()
        .unwrap();
    assert_eq!((v.cells[0].plan_count, v.cells[0].used_count), (2, 1));
}

#[test]
fn a_cell_must_name_an_lpu_of_the_document_or_stored_and_a_doctor_of_the_directory() {
    let v = parse(&one_cell("")).validate().unwrap();
    let doctor: DoctorGuid = DOCTOR.parse().unwrap();
    let lpu: Guid = SEED_LPU.parse().unwrap();
    let none = HashSet::new();
    assert_eq!(
        v.check_references(&none, &HashSet::new()).unwrap_err(),
        [
            format!(
                r#"cells[0] "{CELL}": lpuGuid "{SEED_LPU}" is neither in the document nor stored"#
            ),
            format!(r#"cells[0] "{CELL}": docGuid "{DOCTOR}" is not a doctor of the directory"#),
        ]
    );
    let doctors = HashSet::from([doctor]);
    assert_eq!(
        v.check_references(&none, &doctors).unwrap_err().len(),
        1,
        "the doctor is known"
    );
    let stored = HashSet::from([lpu]);
    assert!(v.check_references(&stored, &doctors).is_ok());
    assert_eq!(
        v.check_references(&stored, &HashSet::new()).unwrap_err(),
        [format!(
            r#"cells[0] "{CELL}": docGuid "{DOCTOR}" is not a doctor of the directory"#
        )]
    );
    // An LPU of the document is enough.
    let with_lpu =
        parse(&one_cell("").replacen("{", &format!(r#"{{"lpus":[{{"guid":"{SEED_LPU}"}}],"#), 1))
            .validate()
            .unwrap();
    assert!(with_lpu.check_references(&none, &doctors).is_ok());
    // At most fifty problems are listed.
    let cells: Vec<String> = (0..60)
        .map(|i| {
            format!(
                r#"{{"guid":"{i:08x}-0000-4000-8000-000000000000","lpuGuid":"{SEED_LPU}","docGuid":"{DOCTOR}","beginTime":"2030-04-18T08:45:00+03:00","endTime":"2030-04-18T09:00:00+03:00","planCount":1}}"#
            )
        })
        .collect();
    let many = parse(&format!(r#"{{"cells":[{}]}}"#, cells.join(",")))
        .validate()
        .unwrap();
    let problems = many.check_references(&none, &doctors).unwrap_err();
    assert_eq!(problems.len(), MAX_PROBLEMS + 1);
    assert_eq!(problems.last().unwrap(), "… and 10 more problems");
}

#[test]
fn an_entry_is_inserted_when_not_stored_updated_when_it_differs_and_else_left_alone() {
    assert_eq!(Upsert::decide(None), Upsert::Insert);
    assert_eq!(Upsert::decide(Some(false)), Upsert::Update);
    assert_eq!(Upsert::decide(Some(true)), Upsert::Unchanged);
    let mut counts = UpsertCounts::default();
    assert!(Upsert::Insert.count(&mut counts));
    assert!(Upsert::Update.count(&mut counts));
    assert!(Upsert::Update.count(&mut counts));
    assert!(!Upsert::Unchanged.count(&mut counts));
    assert_eq!(
        counts,
        UpsertCounts {
            inserted: 1,
            updated: 2,
            unchanged: 1
        }
    );
}

#[test]
fn seed_times_are_rfc3339_with_an_offset_kept_to_the_second() {
    for (good, kept) in [
        ("2030-04-18T08:45:00+03:00", "2030-04-18T08:45:00+03:00"),
        ("2030-04-18T08:45:00Z", "2030-04-18T08:45:00+00:00"),
        ("2030-04-18T08:45:00.000-05:30", "2030-04-18T08:45:00-05:30"),
        ("2030-04-18T08:45:59.999+03:00", "2030-04-18T08:45:59+03:00"),
    ] {
        assert_eq!(seed_text(&seed_time(good).unwrap()), kept, "{good}");
    }
    for bad in [
        "2030-04-18T08:45:00",
        "2030-04-18T08:45+03:00",
        "2030-04-18T25:45:00+03:00",
        "2030-02-30T08:45:00+03:00",
        "2030-4-18T08:45:00+03:00",
        "18.04.2030 08:45",
        "",
    ] {
        assert!(seed_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_empty_document_has_nothing_to_upsert() {
    let doc = parse("{}");
    assert!(doc.is_empty());
    let v = doc.validate().unwrap();
    assert!(v.is_empty());
    assert_eq!(v, ValidSchedule::default());
    let doc = fixture();
    assert_eq!(doc.len(), 12);
    assert!(!doc.is_empty());
    let v = doc.validate().unwrap();
    assert_eq!(v.len(), 12);
    assert!(!v.is_empty());
}

#[test]
fn the_document_schema_states_the_parsers_rules() {
    use utoipa::PartialSchema;
    let schema = |s: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
        serde_json::to_value(s).unwrap()
    };
    let cell = schema(CellIn::schema());
    let props = &cell["properties"];
    assert_eq!(
        props["guid"]["pattern"],
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    );
    assert_eq!(props["planCount"]["maximum"], 10000);
    assert_eq!(props["ageCategories"]["minItems"], 1);
    let required: Vec<&str> = cell["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        [
            "guid",
            "lpuGuid",
            "docGuid",
            "beginTime",
            "endTime",
            "planCount"
        ]
    );
    let lpu = schema(LpuIn::schema());
    assert_eq!(lpu["required"], serde_json::json!(["guid"]));
    assert!(lpu["properties"]["hostID"].is_object(), "{lpu}");
    assert_eq!(
        schema(LpuText::schema())["maxLength"],
        serde_json::json!(MAX_TEXT)
    );
    let speciality = schema(SpecialityText::schema());
    assert_eq!(speciality["minLength"], 1);
    assert_eq!(speciality["maxLength"], 256);
}
