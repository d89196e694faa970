use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
}

fn rules() -> CreateRules {
    CreateRules {
        default_duration_min: 30,
        max_past: Duration::minutes(1),
    }
}

fn fields(v: Value) -> CreateFields {
    match v {
        Value::Object(m) => CreateFields::from_json(m),
        _ => panic!("an object"),
    }
}

fn voip_ok() -> Value {
    json!({"doctorId": 7, "patientFullName": "Иванов Иван", "videoSupport": true})
}

fn callback_ok() -> Value {
    json!({"doctorId": 7, "patientFullName": "Иванов Иван",
           "patientPhone": {"code": "7", "number": "9001234567"}})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn problems(kind: Kind, v: Value) -> Vec<String> {
    validate(&fields(v), kind, now(), &rules()).unwrap_err()
}

#[test]
fn a_valid_voip_request_gives_its_consultation_with_defaults() {
    let c = validate(&fields(voip_ok()), Kind::Voip, now(), &rules()).unwrap();
    assert_eq!(c.kind, Kind::Voip);
    assert_eq!(c.doctor.get(), 7);
    assert_eq!(c.patient_full_name, "Иванов Иван");
    assert_eq!(c.video_support, Some(true));
    assert_eq!(c.patient_phone, None);
    assert_eq!(c.begin_at, None);
    assert_eq!(c.duration_min, 30);
    assert_eq!(c.notify_url, None);
    // A callback ignores videoSupport; a voip request ignores patientPhone.
    let cb = validate(
        &fields(with(callback_ok(), "videoSupport", json!("x"))),
        Kind::Callback,
        now(),
        &rules(),
    )
    .unwrap();
    assert_eq!(cb.video_support, None);
    assert_eq!(
        cb.patient_phone,
        Some(Phone::new("7", "9001234567").unwrap())
    );
    let v = validate(
        &fields(with(voip_ok(), "patientPhone", json!(1))),
        Kind::Voip,
        now(),
        &rules(),
    )
    .unwrap();
    assert_eq!(v.patient_phone, None);
}

#[test]
fn each_bad_field_alone_gives_exactly_its_message() {
    let cases: Vec<(Kind, Value, &str)> = vec![
        (
            Kind::Voip,
            with(voip_ok(), "doctorId", json!(0)),
            "doctorId must be a positive integer.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "doctorId", json!("7")),
            "doctorId must be a positive integer.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "doctorId", json!(7.5)),
            "doctorId must be a positive integer.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "patientFullName", json!("")),
            "patientFullName must be 1 to 256 characters.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "patientFullName", json!("я".repeat(257))),
            "patientFullName must be 1 to 256 characters.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "patientFullName", json!("a\u{0}b")),
            "patientFullName must not contain control characters.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "patientFullName", json!(5)),
            "patientFullName must be a string.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "videoSupport", json!("true")),
            "videoSupport must be true or false.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "beginAtUtc", json!("2026-11-22 10:00")),
            "beginAtUtc must be an RFC 3339 instant.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "beginAtUtc", json!("2026-11-22T08:58:59Z")),
            "beginAtUtc is more than 1 minute in the past.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "duration", json!(0)),
            "duration must be an integer from 1 to 240.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "duration", json!(241)),
            "duration must be an integer from 1 to 240.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "externalNotificationUrl", json!("ftp://x/y")),
            "externalNotificationUrl must be an absolute http or https URL.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "externalNotificationUrl", json!("/relative")),
            "externalNotificationUrl must be an absolute http or https URL.",
        ),
        (
            Kind::Voip,
            with(voip_ok(), "externalNotificationUrl", json!("http://a b/")),
            "externalNotificationUrl must be an absolute http or https URL.",
        ),
        (
            Kind::Voip,
            with(
                voip_ok(),
                "externalNotificationUrl",
                json!("https://u:p@crm.example/h"),
            ),
            "externalNotificationUrl must not contain a user name or password.",
        ),
        (
            Kind::Callback,
            with(
                callback_ok(),
                "patientPhone",
                json!({"code": "1234", "number": "9001234567"}),
            ),
            "patientPhone.code must be 1 to 3 digits.",
        ),
        (
            Kind::Callback,
            with(
                callback_ok(),
                "patientPhone",
                json!({"code": "7", "number": "123"}),
            ),
            "patientPhone.number must be 4 to 14 digits.",
        ),
        (
            Kind::Callback,
            with(
                callback_ok(),
                "patientPhone",
                json!({"code": "7", "number": "123456789012345"}),
            ),
            "patientPhone.number must be 4 to 14 digits.",
        ),
    ];
    for (kind, body, message) in cases {
        assert_eq!(
            problems(kind, body.clone()),
            vec![message.to_owned()],
            "{body}"
        );
    }
    let long_url = format!("https://crm.example/{}", "a".repeat(2048));
    let got = problems(
        Kind::Voip,
        with(voip_ok(), "externalNotificationUrl", json!(long_url)),
    );
    assert_eq!(
        got,
        vec!["externalNotificationUrl must be at most 2048 bytes.".to_owned()]
    );
}

#[test]
fn missing_required_fields_are_named() {
    assert_eq!(
        problems(Kind::Voip, json!({})),
        vec![
            "doctorId is required.",
            "patientFullName is required.",
            "videoSupport is required."
        ]
    );
    let got = problems(
        Kind::Callback,
        json!({"doctorId": 1, "patientFullName": "A"}),
    );
    assert_eq!(got, vec!["patientPhone is required."]);
    let got = problems(
        Kind::Callback,
        json!({"doctorId": 1, "patientFullName": "A", "patientPhone": {"code": "7"}}),
    );
    assert_eq!(got, vec!["patientPhone.number is required."]);
}

#[test]
fn boundaries_are_inside() {
    let ok = |kind: Kind, v: Value| validate(&fields(v), kind, now(), &rules()).unwrap();
    assert_eq!(
        ok(
            Kind::Voip,
            with(voip_ok(), "patientFullName", json!("я".repeat(256)))
        )
        .patient_full_name
        .chars()
        .count(),
        256
    );
    assert_eq!(
        ok(Kind::Voip, with(voip_ok(), "duration", json!(1))).duration_min,
        1
    );
    assert_eq!(
        ok(Kind::Voip, with(voip_ok(), "duration", json!(240))).duration_min,
        240
    );
    assert_eq!(
        ok(Kind::Voip, with(voip_ok(), "duration", json!(5.0))).duration_min,
        5
    );
    let edge = ok(
        Kind::Voip,
        with(voip_ok(), "beginAtUtc", json!("2026-11-22T08:59:00Z")),
    );
    assert_eq!(edge.begin_at, Some(now() - Duration::minutes(1)));
    let offset = ok(
        Kind::Voip,
        with(
            voip_ok(),
            "beginAtUtc",
            json!("2026-11-22T15:00:00.1234567+03:00"),
        ),
    );
    assert_eq!(
        offset.begin_at,
        Some(
            Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap() + Duration::microseconds(123_456)
        )
    );
    let p = ok(
        Kind::Callback,
        with(
            callback_ok(),
            "patientPhone",
            json!({"code": 123, "number": 12345678901234_i64}),
        ),
    );
    assert_eq!(
        (
            p.patient_phone.as_ref().unwrap().code(),
            p.patient_phone.as_ref().unwrap().number()
        ),
        ("123", "12345678901234")
    );
    let p = ok(
        Kind::Callback,
        with(
            callback_ok(),
            "patientPhone",
            json!({"code": "1", "number": "1234"}),
        ),
    );
    assert!(p.patient_phone.is_some());
    assert_eq!(
        ok(
            Kind::Voip,
            with(
                voip_ok(),
                "externalNotificationUrl",
                json!("https://crm.example/hook/42")
            )
        )
        .notify_url
        .as_deref(),
        Some("https://crm.example/hook/42")
    );
}

#[test]
fn several_bad_fields_give_every_message() {
    let got = problems(
        Kind::Voip,
        json!({"doctorId": -1, "patientFullName": "", "videoSupport": 1, "duration": 999}),
    );
    assert_eq!(got.len(), 4, "{got:?}");
}

#[test]
fn multipart_text_parts_fill_the_same_fields() {
    let mut f = CreateFields::default();
    for (name, value) in [
        ("doctorId", "7"),
        ("patientFullName", "Иванов"),
        ("videoSupport", "false"),
        ("duration", "15"),
        ("ignored", "x"),
    ] {
        f.add_text(name, value.to_owned()).unwrap();
    }
    let c = validate(&f, Kind::Voip, now(), &rules()).unwrap();
    assert_eq!(
        (c.doctor.get(), c.video_support, c.duration_min),
        (7, Some(false), 15)
    );
    assert_eq!(
        f.add_text("doctorId", "8".into()).unwrap_err(),
        "doctorId is given more than once."
    );
    // Digits only in a form: `+7` and ` 7` are not numbers.
    let mut g = f.clone();
    g.doctor_id = Some(Raw::Text("+7".into()));
    assert_eq!(
        validate(&g, Kind::Voip, now(), &rules()).unwrap_err(),
        vec!["doctorId must be a positive integer."]
    );
    // The phone whole (JSON text) or in parts, not both.
    let mut cb = CreateFields::default();
    cb.add_text("doctorId", "7".into()).unwrap();
    cb.add_text("patientFullName", "A".into()).unwrap();
    let mut whole = cb.clone();
    whole
        .add_text(
            "patientPhone",
            r#"{"code":"7","number":"9001234567"}"#.into(),
        )
        .unwrap();
    assert!(validate(&whole, Kind::Callback, now(), &rules()).is_ok());
    assert!(whole.add_text("patientPhone.code", "7".into()).is_err());
    let mut parts = cb.clone();
    parts.add_text("patientPhone[code]", "7".into()).unwrap();
    parts
        .add_text("patientPhone.number", "9001234567".into())
        .unwrap();
    assert!(validate(&parts, Kind::Callback, now(), &rules()).is_ok());
    assert!(parts.add_text("patientPhone", "{}".into()).is_err());
    assert!(parts.add_text("patientPhone.code", "8".into()).is_err());
    let mut broken = cb.clone();
    broken.add_text("patientPhone", "not json".into()).unwrap();
    assert_eq!(
        validate(&broken, Kind::Callback, now(), &rules())
            .unwrap_err()
            .len(),
        1
    );
    // An empty text part is an absent field.
    let mut empty = cb;
    empty.add_text("duration", String::new()).unwrap();
    empty
        .add_text(
            "patientPhone",
            r#"{"code":"7","number":"9001234567"}"#.into(),
        )
        .unwrap();
    assert_eq!(
        validate(&empty, Kind::Callback, now(), &rules())
            .unwrap()
            .duration_min,
        30
    );
    assert!(CreateFields::is_text_field("patientPhone[number]"));
    assert!(!CreateFields::is_text_field("attachment"));
}

#[test]
fn an_empty_string_is_an_absent_optional_field() {
    let mut v = voip_ok();
    v["beginAtUtc"] = json!("");
    v["duration"] = json!("");
    v["externalNotificationUrl"] = json!("");
    let c = validate(&fields(v), Kind::Voip, now(), &rules()).unwrap();
    assert_eq!((c.begin_at, c.duration_min, c.notify_url), (None, 30, None));
    // A required one is still wrong when empty.
    let got = problems(Kind::Voip, with(voip_ok(), "patientFullName", json!("")));
    assert_eq!(got, vec!["patientFullName must be 1 to 256 characters."]);
}
