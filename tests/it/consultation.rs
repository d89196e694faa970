//! Seeds 000 and 001 against the real rig: consultations created over HTTP, run by
//! medcall on Asterisk. Doctors are Local channels to the rig's fake phones (their
//! directory endpoint picks the behaviour), callback patients ring
//! `medcall-test-patients` (the number's first digit picks it), and a voip patient is a
//! channel the test originates into `medcall-consultation-join` with the join code.
//! What Asterisk did is read on the test's own AMI session.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::calls::wait_connected;
use crate::support::booking::put;
use crate::support::rig::{RawAmi, RawMessage, Rig, field};
use crate::support::{Daemon, DaemonOptions};

/// Doctors by behaviour: 1 answers (silent), 2 never answers, 3 is busy, 4 answers
/// and hangs up after 3 s.
const DIRECTORY: &str = r#"{"doctors": [
  {"id": 1, "guid": "00000000-0000-4000-8000-000000000001", "fullName": "Доктор Отвечает", "role": "", "speciality": "", "endpoint": "Local/silent@fake-phones/n"},
  {"id": 2, "guid": "00000000-0000-4000-8000-000000000002", "fullName": "Доктор Молчит", "role": "", "speciality": "", "endpoint": "Local/noanswer@fake-phones/n"},
  {"id": 3, "guid": "00000000-0000-4000-8000-000000000003", "fullName": "Доктор Занят", "role": "", "speciality": "", "endpoint": "Local/busy@fake-phones/n"},
  {"id": 4, "guid": "00000000-0000-4000-8000-000000000004", "fullName": "Доктор Уходит", "role": "", "speciality": "", "endpoint": "Local/hangup@fake-phones/n"}
]}"#;

/// A daemon for consultation tests: short timeouts, callback patients on the rig's
/// test phones, conferences of its own.
pub fn options() -> DaemonOptions {
    let prefix = format!("ct{:08x}-", rand::random::<u32>());
    DaemonOptions::default()
        .env("MEDCALL__CONSULTATIONS__CONFERENCE_PREFIX", prefix)
        .env("MEDCALL__CONSULTATIONS__DOCTOR_ANSWER_TIMEOUT_MS", 4000)
        .env("MEDCALL__CONSULTATIONS__PATIENT_RING_TIMEOUT_MS", 3000)
        .env("MEDCALL__CONSULTATIONS__PATIENT_RETRY_INTERVAL_MS", 1000)
        .env("MEDCALL__CONSULTATIONS__PATIENT_WAIT_MS", 6000)
        .env(
            "MEDCALL__CONSULTATIONS__PATIENT_DIAL_TEMPLATE",
            "Local/{number}@medcall-test-patients/n",
        )
}

pub struct Clinic {
    pub d: Daemon,
    pub key: String,
}

impl Clinic {
    pub async fn start() -> Clinic {
        Clinic::start_with(options()).await
    }

    pub async fn start_with(options: DaemonOptions) -> Clinic {
        let d = Daemon::start_with(options).await;
        let key = d.admin_key();
        wait_connected(&d, &key).await;
        put(&d, &key, "/admin/directory", DIRECTORY).await;
        Clinic { d, key }
    }

    /// `POST path` with a JSON body: the status and the answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .d
            .post(path)
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}"));
        (status, v)
    }

    /// Creates a voip consultation; asserts 200.
    pub async fn voip(&self, body: Value) -> Value {
        let (status, v) = self.post("/api/v1/voiprequest/start", body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn callback(&self, body: Value) -> Value {
        let (status, v) = self
            .post("/api/v1/callbackrequest/start-callback", body)
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn get(&self, kind: &str, id: i64) -> Value {
        self.d
            .get_json(&format!("/api/v1/{kind}request/get/{id}"), &self.key)
            .await
    }

    /// Polls the consultation until its status is `status` (up to `limit`).
    pub async fn wait_status(&self, kind: &str, id: i64, status: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.get(kind, id).await;
            if c["status"] == status {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "{kind} {id} never became {status}: {c:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn statuses(c: &Value) -> Vec<String> {
    c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn ami() -> RawAmi {
    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    ami.login(&rig.username, &rig.secret).await;
    ami
}

/// A voip patient: a channel that dials `code` into `medcall-consultation-join`
/// (reaching this test's daemon) and stays on the line. Returns its uniqueid (the
/// `;1` half; the `;2` half, `<id>-2`, is the one in the conference).
async fn dial_code(ami: &mut RawAmi, d: &Daemon, code: &str) -> String {
    let id = format!("pat-{:016x}", rand::random::<u64>());
    ami.send(&[
        ("Action", "Originate"),
        ("ActionID", &id),
        (
            "Channel",
            &format!("Local/{code}@medcall-consultation-join/n"),
        ),
        ("Application", "Wait"),
        ("Data", "120"),
        ("Async", "true"),
        ("ChannelId", &id),
        ("OtherChannelId", &format!("{id}-2")),
        (
            "Variable",
            &format!("__MEDCALL_AGI=agi://127.0.0.1:{}", d.agi_port),
        ),
    ])
    .await;
    id
}

/// The `MedcallConsultationJoin` user event of `code`: its status.
async fn join_status(ami: &mut RawAmi, code: &str) -> String {
    let m = ami
        .wait_for(Duration::from_secs(10), |m| {
            field(m, "UserEvent") == Some("MedcallConsultationJoin")
                && field(m, "Code") == Some(code)
        })
        .await
        .unwrap_or_else(|| panic!("no MedcallConsultationJoin for {code}"));
    field(&m, "Status").unwrap().to_owned()
}

#[tokio::test]
async fn voip_doctor_answers_patient_joins_with_the_code_and_terminate_ends_it() {
    let clinic = Clinic::start().await;
    let mut ami = ami().await;
    let c = clinic
        .voip(
            json!({"doctorId": 1, "patientFullName": "Иванов Иван", "videoSupport": true,
                     "duration": 30}),
        )
        .await;
    assert_eq!(c["status"], "CallingDoctor", "{c}");
    assert_eq!(c["kind"], "voip");
    assert!(c["doctorAnswerDeadlineUtc"].is_string(), "{c}");
    let id = c["id"].as_i64().unwrap();
    let code = c["joinCode"].as_str().unwrap().to_owned();
    clinic
        .wait_status("voip", id, "WaitingForPatient", Duration::from_secs(10))
        .await;
    let timeout: i64 = clinic
        .d
        .get(&format!("/api/v1/voiprequest/timeout?requestId={id}"))
        .bearer_auth(&clinic.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(timeout, 0, "the doctor answered");

    let patient = dial_code(&mut ami, &clinic.d, &code).await;
    assert_eq!(join_status(&mut ami, &code).await, "OK");
    let running = clinic
        .wait_status("voip", id, "InProgress", Duration::from_secs(10))
        .await;
    assert!(running["startedAtUtc"].is_string());
    assert_eq!(
        statuses(&running),
        [
            "Scheduled",
            "CallingDoctor",
            "WaitingForPatient",
            "InProgress"
        ]
    );
    // A second patient with the same code is told the consultation is in use.
    let intruder = dial_code(&mut ami, &clinic.d, &code).await;
    assert_eq!(join_status(&mut ami, &code).await, "INUSE");

    let (status, v) = clinic
        .post(
            "/api/v1/voiprequest/terminate",
            json!({"requestId": id, "reason": "the doctor is needed elsewhere"}),
        )
        .await;
    assert_eq!(
        (status, &v),
        (200, &json!({"success": true, "messages": []}))
    );
    let ended = clinic
        .wait_status("voip", id, "Terminated", Duration::from_secs(5))
        .await;
    assert_eq!(ended["endReason"], "terminated");
    // Both legs are gone from the PBX: the patient's channel hung up.
    ami.wait_for(Duration::from_secs(10), |m| {
        field(m, "Event") == Some("Hangup") && field(m, "Uniqueid") == Some(patient.as_str())
    })
    .await
    .expect("the patient's channel was hung up");
    let (_, again) = clinic
        .post("/api/v1/voiprequest/terminate", json!({"requestId": id}))
        .await;
    assert_eq!(
        again,
        json!({"success": false, "messages": ["The consultation has already ended."]})
    );
    let _ = intruder;
}

#[tokio::test]
async fn voip_join_codes_that_are_wrong_early_or_ended_are_refused() {
    let clinic = Clinic::start().await;
    let mut ami = ami().await;
    // No consultation has this code.
    dial_code(&mut ami, &clinic.d, "000000").await;
    assert_eq!(join_status(&mut ami, "000000").await, "INVALID");
    // Scheduled an hour from now: too early.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let c = clinic
        .voip(
            json!({"doctorId": 1, "patientFullName": "Петров Пётр", "videoSupport": false,
                     "beginAtUtc": later}),
        )
        .await;
    assert_eq!(c["status"], "Scheduled");
    let code = c["joinCode"].as_str().unwrap().to_owned();
    dial_code(&mut ami, &clinic.d, &code).await;
    assert_eq!(join_status(&mut ami, &code).await, "EARLY");
    // Cancelled: ended.
    let id = c["id"].as_i64().unwrap();
    let (_, v) = clinic
        .post("/api/v1/voiprequest/terminate", json!({"requestId": id}))
        .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(clinic.get("voip", id).await["status"], "Cancelled");
    dial_code(&mut ami, &clinic.d, &code).await;
    assert_eq!(join_status(&mut ami, &code).await, "ENDED");
}

#[tokio::test]
async fn voip_doctor_not_answering_is_missed_and_a_patient_who_never_joins_too() {
    let clinic = Clinic::start().await;
    let c = clinic
        .voip(json!({"doctorId": 2, "patientFullName": "Сидоров", "videoSupport": true}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let left: i64 = clinic
        .d
        .get(&format!("/api/v1/voiprequest/timeout?requestId={id}"))
        .bearer_auth(&clinic.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(left > 2000 && left <= 4000, "{left}");
    let missed = clinic
        .wait_status("voip", id, "Missed", Duration::from_secs(12))
        .await;
    assert_eq!(missed["endReason"], "doctor-no-answer", "{missed}");

    // The doctor answers; nobody dials the code within patient_wait (6 s).
    let c = clinic
        .voip(json!({"doctorId": 1, "patientFullName": "Сидоров", "videoSupport": true}))
        .await;
    let id = c["id"].as_i64().unwrap();
    clinic
        .wait_status("voip", id, "WaitingForPatient", Duration::from_secs(10))
        .await;
    let missed = clinic
        .wait_status("voip", id, "Missed", Duration::from_secs(15))
        .await;
    assert_eq!(missed["endReason"], "patient-did-not-join", "{missed}");
}

#[tokio::test]
async fn callback_patient_busy_then_answering_on_the_retry() {
    let clinic = Clinic::start().await;
    // A number of its own: the rig counts dials per number.
    let number = format!("3{:09}", rand::random::<u32>() % 1_000_000_000);
    let c = clinic
        .callback(json!({"doctorId": 1, "patientFullName": "Кузнецова Анна",
                         "patientPhone": {"code": "7", "number": number}}))
        .await;
    assert_eq!(c["status"], "CallingDoctor", "{c}");
    assert_eq!(c["patientPhone"], json!({"code": "7", "number": number}));
    let id = c["id"].as_i64().unwrap();
    let running = clinic
        .wait_status("callback", id, "InProgress", Duration::from_secs(20))
        .await;
    assert_eq!(
        statuses(&running),
        ["Scheduled", "CallingDoctor", "CallingPatient", "InProgress"]
    );
    let (_, v) = clinic
        .post(
            "/api/v1/callbackrequest/terminate-callback",
            json!({"requestId": id.to_string()}),
        )
        .await;
    assert_eq!(v["success"], true, "{v}");
    clinic
        .wait_status("callback", id, "Terminated", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn callback_busy_on_every_attempt_is_missed() {
    let clinic = Clinic::start().await;
    let c = clinic
        .callback(json!({"doctorId": 1, "patientFullName": "Кузнецова Анна",
                         "patientPhone": {"code": "7", "number": "2000000001"}}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let missed = clinic
        .wait_status("callback", id, "Missed", Duration::from_secs(30))
        .await;
    assert_eq!(missed["endReason"], "patient-busy", "{missed}");
    // The doctor, who waited in the conference, was hung up.
    assert_eq!(
        statuses(&missed),
        ["Scheduled", "CallingDoctor", "CallingPatient", "Missed"]
    );
}

#[tokio::test]
async fn terminate_of_a_scheduled_one_cancels_it_outside_the_lock_window_only() {
    let clinic = Clinic::start().await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let locked = clinic
        .voip(json!({"doctorId": 1, "patientFullName": "А", "videoSupport": true, "beginAtUtc": soon}))
        .await;
    let (status, v) = clinic
        .post(
            "/api/v1/voiprequest/terminate",
            json!({"requestId": locked["id"], "reason": "x"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"success": false, "messages": ["The consultation is about to start."]})
    );
    let free = clinic
        .callback(
            json!({"doctorId": 1, "patientFullName": "Б", "beginAtUtc": later,
                         "patientPhone": {"code": "7", "number": "1000000001"}}),
        )
        .await;
    let (_, v) = clinic
        .post(
            "/api/v1/callbackrequest/terminate-callback",
            json!({"requestId": free["id"]}),
        )
        .await;
    assert_eq!(v, json!({"success": true, "messages": []}));
    let cancelled = clinic.get("callback", free["id"].as_i64().unwrap()).await;
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(statuses(&cancelled), ["Scheduled", "Cancelled"]);
    // Unknown ids, and an id of the other kind, are 404 in the seeds' shape.
    let (status, v) = clinic
        .post(
            "/api/v1/voiprequest/terminate",
            json!({"requestId": free["id"]}),
        )
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["success"], false);
    // get-all sees both, by status.
    let page = clinic
        .d
        .get_json(
            "/api/v1/callbackrequest/get-all?statuses=Cancelled,Missed&order=Status",
            &clinic.key,
        )
        .await;
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["items"][0]["id"], free["id"]);
    let voip = clinic
        .d
        .get_json("/api/v1/voiprequest/get-all?videoSupport=true", &clinic.key)
        .await;
    assert_eq!(voip["totalCount"], 1, "{voip}");
}

#[tokio::test]
async fn the_duration_limit_ends_a_running_consultation_after_its_warning() {
    // One minute, the warning 50 s before the end (10 s in).
    let clinic =
        Clinic::start_with(options().env("MEDCALL__CONSULTATIONS__WARNING_BEFORE_MS", 50_000))
            .await;
    let mut ami = ami().await;
    let c = clinic
        .callback(
            json!({"doctorId": 1, "patientFullName": "Долгий Разговор", "duration": 1,
                         "patientPhone": {"code": "7", "number": "1000000002"}}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    let running = clinic
        .wait_status("callback", id, "InProgress", Duration::from_secs(15))
        .await;
    let started = Instant::now();
    // The warning's player leg joins the conference (and leaves when the beep is done).
    let warning = ami
        .wait_for(Duration::from_secs(20), |m| {
            field(m, "Event") == Some("ConfbridgeJoin")
                && field(m, "Uniqueid").is_some_and(|u| u.ends_with(&format!("{id}-warning")))
        })
        .await
        .expect("the warning prompt joined");
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "warned too early"
    );
    let _ = warning;
    assert_eq!(clinic.get("callback", id).await["status"], "InProgress");
    let done = clinic
        .wait_status("callback", id, "Completed", Duration::from_secs(70))
        .await;
    assert_eq!(done["endReason"], "duration-limit", "{done}");
    let began =
        chrono::DateTime::parse_from_rfc3339(running["startedAtUtc"].as_str().unwrap()).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(done["endedAtUtc"].as_str().unwrap()).unwrap();
    let ran = (ended - began).num_milliseconds();
    assert!((60_000..62_000).contains(&ran), "ran {ran} ms");
}

#[tokio::test]
async fn a_party_hanging_up_completes_it() {
    let clinic = Clinic::start().await;
    // The patient answers and hangs up after 3 s.
    let c = clinic
        .callback(json!({"doctorId": 1, "patientFullName": "Краткий",
                         "patientPhone": {"code": "7", "number": "5000000001"}}))
        .await;
    let id = c["id"].as_i64().unwrap();
    clinic
        .wait_status("callback", id, "InProgress", Duration::from_secs(15))
        .await;
    let done = clinic
        .wait_status("callback", id, "Completed", Duration::from_secs(15))
        .await;
    assert_eq!(done["endReason"], "patient-hangup", "{done}");
    // The doctor hangs up 3 s after answering, while the patient's phone still rings.
    let c = clinic
        .callback(json!({"doctorId": 4, "patientFullName": "Краткий",
                         "patientPhone": {"code": "7", "number": "4000000001"}}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let done = clinic
        .wait_status("callback", id, "Completed", Duration::from_secs(15))
        .await;
    assert_eq!(done["endReason"], "doctor-hangup", "{done}");
}

#[tokio::test]
async fn every_bad_field_is_answered_400_with_its_message_and_nothing_is_written() {
    let clinic = Clinic::start().await;
    let cases = [
        (
            "voip",
            json!({"doctorId": 0, "patientFullName": "", "videoSupport": "yes", "duration": 241,
                   "beginAtUtc": "yesterday", "externalNotificationUrl": "ftp://x"}),
            vec![
                "doctorId must be a positive integer.",
                "patientFullName must be 1 to 256 characters.",
                "videoSupport must be true or false.",
                "beginAtUtc must be an RFC 3339 instant.",
                "duration must be an integer from 1 to 240.",
                "externalNotificationUrl must be an absolute http or https URL.",
            ],
        ),
        (
            "voip",
            json!({"doctorId": 99, "patientFullName": "Нет Врача", "videoSupport": true}),
            vec!["doctorId 99 is not in the directory."],
        ),
        (
            "callback",
            json!({"doctorId": 1, "patientFullName": "a\nb",
                   "patientPhone": {"code": "1234", "number": "12"}}),
            vec![],
        ),
    ];
    for (kind, body, messages) in cases {
        let path = if kind == "voip" {
            "/api/v1/voiprequest/start"
        } else {
            "/api/v1/callbackrequest/start-callback"
        };
        let (status, v) = clinic.post(path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["success"], false);
        let got: Vec<&str> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        if messages.is_empty() {
            assert!(got.len() >= 3, "{got:?}");
        } else {
            assert_eq!(got, messages, "{body}");
        }
    }
    let past = (chrono::Utc::now() - chrono::Duration::seconds(120)).to_rfc3339();
    let (status, v) = clinic
        .post(
            "/api/v1/voiprequest/start",
            json!({"doctorId": 1, "patientFullName": "А", "videoSupport": true, "beginAtUtc": past}),
        )
        .await;
    assert_eq!(
        (status, v["messages"][0].as_str()),
        (400, Some("beginAtUtc is more than 1 minute in the past."))
    );
    for kind in ["voip", "callback"] {
        let page = clinic
            .d
            .get_json(&format!("/api/v1/{kind}request/get-all"), &clinic.key)
            .await;
        assert_eq!(page["totalCount"], 0, "{page}");
    }
}

/// A multipart body with `fields` and, when given, an attachment of `size` bytes.
fn form(fields: &[(&str, &str)], attachment: Option<usize>) -> (String, Vec<u8>) {
    let boundary = "medcallTestBoundary42";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some(size) = attachment {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"anamnesis.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").as_bytes(),
        );
        body.extend((0..size).map(|i| (i % 253) as u8));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn multipart_creates_with_an_attachment_up_to_10_mb_and_serves_it_back() {
    let clinic = Clinic::start().await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let fields = [
        ("doctorId", "1"),
        ("patientFullName", "Иванов Иван Иванович"),
        ("videoSupport", "true"),
        ("beginAtUtc", later.as_str()),
    ];
    let send = |content_type: String, body: Vec<u8>| {
        clinic
            .d
            .post("/api/v1/voiprequest/start")
            .bearer_auth(&clinic.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // No attachment.
    let (ct, body) = form(&fields, None);
    let r = send(ct, body).await.unwrap();
    assert_eq!(r.status(), 200);
    let plain: Value = r.json().await.unwrap();
    assert_eq!(plain["attachment"], Value::Null);
    assert_eq!(plain["videoSupport"], true);
    // Exactly 10 MB.
    let (ct, body) = form(&fields, Some(10_485_760));
    let r = send(ct, body).await.unwrap();
    assert_eq!(r.status(), 200);
    let with: Value = r.json().await.unwrap();
    assert_eq!(with["attachment"]["size"], 10_485_760);
    assert_eq!(with["attachment"]["fileName"], "anamnesis.pdf");
    assert_eq!(with["attachment"]["contentType"], "application/pdf");
    let id = with["id"].as_i64().unwrap();
    let r = clinic
        .d
        .get(&format!("/api/v1/voiprequest/get/{id}/attachment"))
        .bearer_auth(&clinic.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len(), 10_485_760);
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8));
    let (status, _) = (
        clinic
            .d
            .get(&format!(
                "/api/v1/voiprequest/get/{}/attachment",
                plain["id"]
            ))
            .bearer_auth(&clinic.key)
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!(status, 404);
    // One byte more: 413, nothing kept.
    let (ct, body) = form(&fields, Some(10_485_761));
    let r = send(ct, body).await.unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["success"], false);
    // No boundary: 400.
    let (_, body) = form(&fields, None);
    let r = send("multipart/form-data".into(), body).await.unwrap();
    assert_eq!(r.status(), 400);
    let page = clinic
        .d
        .get_json("/api/v1/voiprequest/get-all", &clinic.key)
        .await;
    assert_eq!(page["totalCount"], 2, "{page}");
    let kept: Vec<_> = std::fs::read_dir(clinic.d.data_dir().join("attachments"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

#[tokio::test]
async fn kill_9_with_scheduled_ringing_and_running_consultations_then_restart() {
    let mut clinic = Clinic::start_with(webhook_options()).await;
    let port = crate::support::free_port();
    let hits = receiver(port, 0).await;
    let hook = format!("http://127.0.0.1:{port}/hook");
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    // Scheduled 4 s from now: it must start after the restart, once.
    let scheduled = clinic
        .voip(
            json!({"doctorId": 1, "patientFullName": "А", "videoSupport": true, "beginAtUtc": soon,
                     "externalNotificationUrl": hook}),
        )
        .await;
    // Ringing: the doctor never answers (4 s deadline).
    let ringing = clinic
        .voip(
            json!({"doctorId": 2, "patientFullName": "Б", "videoSupport": true,
                     "externalNotificationUrl": hook}),
        )
        .await;
    // Running: a callback in progress, one minute long.
    let running = clinic
        .callback(json!({"doctorId": 1, "patientFullName": "В", "duration": 1,
                         "patientPhone": {"code": "7", "number": "1000000003"},
                         "externalNotificationUrl": hook}))
        .await;
    let running_id = running["id"].as_i64().unwrap();
    clinic
        .wait_status(
            "callback",
            running_id,
            "InProgress",
            Duration::from_secs(15),
        )
        .await;
    let pid = clinic.d.pid();
    clinic.d.kill9_and_restart(&[]).await;
    assert_ne!(clinic.d.pid(), pid);
    wait_connected(&clinic.d, &clinic.key).await;
    // The scheduled one started once: one CallingDoctor in its history.
    let s_id = scheduled["id"].as_i64().unwrap();
    let s = clinic
        .wait_status("voip", s_id, "WaitingForPatient", Duration::from_secs(20))
        .await;
    assert_eq!(
        statuses(&s),
        ["Scheduled", "CallingDoctor", "WaitingForPatient"]
    );
    // The ringing one ended Missed at its deadline.
    let r = clinic
        .wait_status(
            "voip",
            ringing["id"].as_i64().unwrap(),
            "Missed",
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(r["endReason"], "doctor-no-answer", "{r}");
    // The running one was taken back and is still limited.
    assert_eq!(
        clinic.get("callback", running_id).await["status"],
        "InProgress"
    );
    let done = clinic
        .wait_status("callback", running_id, "Completed", Duration::from_secs(70))
        .await;
    assert_eq!(done["endReason"], "duration-limit", "{done}");
    assert_eq!(
        statuses(&done),
        [
            "Scheduled",
            "CallingDoctor",
            "CallingPatient",
            "InProgress",
            "Completed"
        ]
    );
    // Every status change, before and after the kill, notified once and in order.
    let ids = [s_id, r["id"].as_i64().unwrap(), running_id];
    wait_delivered(&clinic, &ids, Duration::from_secs(20)).await;
    let all = [
        clinic.get("voip", ids[0]).await,
        clinic.get("voip", ids[1]).await,
        clinic.get("callback", ids[2]).await,
    ];
    let got = hits.lock().unwrap().clone();
    check_delivered(&got, &all);
}

/// What a webhook receiver got: the path, the headers medcall sets, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    event: String,
    consultation: String,
    status: String,
    changed_at: String,
    timestamp: String,
    signature: String,
    answered: u16,
}

/// A webhook receiver on `port`: answers 500 to its first `fail_first` requests, then 200.
async fn receiver(port: u16, fail_first: usize) -> std::sync::Arc<std::sync::Mutex<Vec<Hit>>> {
    use axum::http::HeaderMap;
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Hit>::new()));
    let seen = std::sync::Arc::clone(&hits);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let seen = std::sync::Arc::clone(&seen);
        async move {
            let h = |n: &str| {
                headers
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            let mut hits = seen.lock().unwrap();
            let answered = if hits.len() < fail_first { 500 } else { 200 };
            hits.push(Hit {
                path: uri.to_string(),
                event: h("x-medcall-event-id"),
                consultation: h("x-medcall-consultation-id"),
                status: h("x-medcall-status"),
                changed_at: h("x-medcall-changed-at"),
                timestamp: h("x-medcall-timestamp"),
                signature: h("x-medcall-signature"),
                answered,
            });
            axum::http::StatusCode::from_u16(answered).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    hits
}

const WEBHOOK_SECRET: &str = "webhook-secret-for-tests";

fn webhook_options() -> DaemonOptions {
    options()
        .env("MEDCALL__MEDIA__ALLOW_NETWORKS", r#"["127.0.0.1/32"]"#)
        .env("MEDCALL__WEBHOOKS__SECRET", WEBHOOK_SECRET)
        .env("MEDCALL__WEBHOOKS__BACKOFF_MIN_MS", 200)
        .env("MEDCALL__WEBHOOKS__BACKOFF_MAX_MS", 800)
}

/// Checks every delivered hit's signature, and that each consultation's delivered
/// notifications are its status changes in order, each once.
fn check_delivered(hits: &[Hit], consultations: &[Value]) {
    use hmac::{Hmac, Mac};
    for hit in hits {
        let text = format!(
            "GET\n{}\n{}\n{}\n{}\n{}\n{}",
            hit.path, hit.timestamp, hit.event, hit.consultation, hit.status, hit.changed_at
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(text.as_bytes());
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            hit.signature,
            "{hit:?}"
        );
    }
    for c in consultations {
        let id = c["id"].as_i64().unwrap().to_string();
        // At least once: an attempt in flight at a kill -9 is made again, with the same
        // event id (receivers deduplicate by it). Each event counts at its first delivery.
        let mut firsts = std::collections::HashSet::new();
        let delivered: Vec<&str> = hits
            .iter()
            .filter(|h| h.consultation == id && h.answered == 200)
            .filter(|h| firsts.insert(h.event.clone()))
            .map(|h| h.status.as_str())
            .collect();
        let changes: Vec<String> = statuses(c).into_iter().skip(1).collect();
        assert_eq!(delivered, changes, "consultation {id}: {hits:#?}");
        let events: std::collections::HashSet<&str> = hits
            .iter()
            .filter(|h| h.consultation == id && h.answered == 200)
            .map(|h| h.event.as_str())
            .collect();
        assert_eq!(events.len(), changes.len(), "one event id per change");
    }
}

async fn notifications(clinic: &Clinic, id: i64) -> Vec<Value> {
    clinic
        .d
        .get_json(
            &format!("/api/v1/notifications?consultationId={id}"),
            &clinic.key,
        )
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// Polls until every notification of `ids` is delivered.
async fn wait_delivered(clinic: &Clinic, ids: &[i64], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut all = true;
        for id in ids {
            let list = notifications(clinic, *id).await;
            all &= !list.is_empty() && list.iter().all(|n| n["state"] == "delivered");
        }
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn webhooks_reach_a_receiver_that_was_down_then_failing_in_order_per_consultation() {
    let clinic = Clinic::start_with(webhook_options()).await;
    let port = crate::support::free_port();
    let url = |n: u32| format!("http://127.0.0.1:{port}/hook/{n}?src=medcall");
    // Callback busy on every attempt: CallingDoctor, CallingPatient, Missed.
    let a = clinic
        .callback(json!({"doctorId": 1, "patientFullName": "А",
                         "patientPhone": {"code": "7", "number": "2000000002"},
                         "externalNotificationUrl": url(1)}))
        .await;
    // Voip whose doctor never answers: CallingDoctor, Missed.
    let b = clinic
        .voip(
            json!({"doctorId": 2, "patientFullName": "Б", "videoSupport": false,
                     "externalNotificationUrl": url(2)}),
        )
        .await;
    let ids = [a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()];
    // The receiver is down for a while: attempts fail to connect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = notifications(&clinic, ids[0]).await;
    assert_eq!(first[0]["state"], "pending", "{first:?}");
    assert!(!first[0]["attempts"].as_array().unwrap().is_empty());
    assert!(first[0]["attempts"][0]["error"].is_string(), "{first:?}");
    // Then it answers 500 three times, then 200.
    let hits = receiver(port, 3).await;
    let a_end = clinic
        .wait_status("callback", ids[0], "Missed", Duration::from_secs(30))
        .await;
    let b_end = clinic
        .wait_status("voip", ids[1], "Missed", Duration::from_secs(15))
        .await;
    wait_delivered(&clinic, &ids, Duration::from_secs(30)).await;
    let got = hits.lock().unwrap().clone();
    assert_eq!(got.iter().filter(|h| h.answered == 500).count(), 3);
    assert!(
        got.iter()
            .all(|h| h.path.starts_with("/hook/") && h.path.ends_with("?src=medcall"))
    );
    check_delivered(&got, &[a_end, b_end]);
    // The attempts are there: the first notification failed, then was delivered.
    let list = notifications(&clinic, ids[0]).await;
    let attempts = list[0]["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts.last().unwrap()["httpStatus"], 200);
    // A re-send delivers the same event again, after the others.
    let (status, v) = clinic
        .post(
            &format!("/api/v1/notifications/{}/resend", list[0]["id"]),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    wait_delivered(&clinic, &ids, Duration::from_secs(10)).await;
    let last = hits.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.event, list[0]["eventId"].as_str().unwrap());
    let (status, _) = clinic
        .post("/api/v1/notifications/999999/resend", json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_webhook_target_outside_the_allowed_networks_is_refused_and_recorded() {
    // Loopback is not allowed by default.
    let clinic = Clinic::start().await;
    let port = crate::support::free_port();
    let hits = receiver(port, 0).await;
    let c = clinic
        .voip(
            json!({"doctorId": 2, "patientFullName": "В", "videoSupport": false,
                     "externalNotificationUrl": format!("http://127.0.0.1:{port}/hook")}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = notifications(&clinic, id).await;
        if let Some(error) = list
            .first()
            .and_then(|n| n["attempts"][0]["error"].as_str())
        {
            assert!(error.contains("127.0.0.1"), "{error}");
            assert_eq!(list[0]["state"], "pending");
            break;
        }
        assert!(Instant::now() < deadline, "{list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        hits.lock().unwrap().is_empty(),
        "a refused target was reached"
    );
}

/// Terminate while a party is still ringing: `Terminated`, the ringing leg (and the
/// doctor waiting in the conference) hung up on the PBX, and no retry follows.
#[tokio::test]
async fn terminate_while_the_doctor_or_the_patient_is_still_ringing() {
    let prefix = format!("tr{:08x}-", rand::random::<u32>());
    let clinic = Clinic::start_with(
        options()
            .env("MEDCALL__CONSULTATIONS__CONFERENCE_PREFIX", &prefix)
            .env("MEDCALL__CONSULTATIONS__DOCTOR_ANSWER_TIMEOUT_MS", 20_000)
            .env("MEDCALL__CONSULTATIONS__PATIENT_RING_TIMEOUT_MS", 20_000),
    )
    .await;
    let mut ami = ami().await;
    let hung_up = |leg: String| {
        move |m: &RawMessage| {
            field(m, "Event") == Some("Hangup") && field(m, "Uniqueid") == Some(leg.as_str())
        }
    };

    // voip, the doctor's phone ringing (doctor 2 never answers).
    let c = clinic
        .voip(json!({"doctorId": 2, "patientFullName": "Сидоров", "videoSupport": true}))
        .await;
    assert_eq!(c["status"], "CallingDoctor", "{c}");
    let id = c["id"].as_i64().unwrap();
    let (_, v) = clinic
        .post("/api/v1/voiprequest/terminate", json!({"requestId": id}))
        .await;
    assert_eq!(v, json!({"success": true, "messages": []}));
    let ended = clinic
        .wait_status("voip", id, "Terminated", Duration::from_secs(5))
        .await;
    assert_eq!(
        statuses(&ended),
        ["Scheduled", "CallingDoctor", "Terminated"]
    );
    ami.wait_for(
        Duration::from_secs(10),
        hung_up(format!("medcall-{prefix}{id}-doctor")),
    )
    .await
    .expect("the ringing doctor's channel was hung up");

    // callback, the doctor in and the patient's phone ringing (numbers 4… never answer).
    let c = clinic
        .callback(json!({"doctorId": 1, "patientFullName": "Кузнецова Анна",
                         "patientPhone": {"code": "7", "number": "4000000001"}}))
        .await;
    let id = c["id"].as_i64().unwrap();
    clinic
        .wait_status("callback", id, "CallingPatient", Duration::from_secs(10))
        .await;
    let (_, v) = clinic
        .post(
            "/api/v1/callbackrequest/terminate-callback",
            json!({"requestId": id}),
        )
        .await;
    assert_eq!(v, json!({"success": true, "messages": []}));
    let ended = clinic
        .wait_status("callback", id, "Terminated", Duration::from_secs(5))
        .await;
    assert_eq!(ended["endReason"], "terminated");
    ami.wait_for(
        Duration::from_secs(10),
        hung_up(format!("medcall-{prefix}{id}-patient-1")),
    )
    .await
    .expect("the ringing patient's channel was hung up");
    ami.wait_for(
        Duration::from_secs(10),
        hung_up(format!("medcall-{prefix}{id}-doctor")),
    )
    .await
    .expect("the doctor's channel was hung up");
    // No retry: past the retry interval (1 s) the consultation is as it ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = clinic.get("callback", id).await;
    assert_eq!(statuses(&after), statuses(&ended));
    assert_eq!(after["status"], "Terminated");
}

/// Asterisk dies under a running consultation and comes back: the conference is gone,
/// and the consultation ends `Failed`, `pbx-lost-call`, once medcall has reconnected.
#[tokio::test]
async fn a_pbx_restart_under_a_running_consultation_fails_it_as_a_lost_call() {
    let own = crate::calls::OwnRig::up("it-consult-restart");
    let clinic = Clinic::start_with(
        options()
            .env("MEDCALL__PBX__0__PORT", own.port)
            .env("MEDCALL__AMI__BACKOFF_MIN_MS", 100)
            .env("MEDCALL__AMI__BACKOFF_MAX_MS", 500)
            .env("MEDCALL__CONSULTATIONS__PATIENT_WAIT_MS", 120_000),
    )
    .await;
    let c = clinic
        .voip(json!({"doctorId": 1, "patientFullName": "Иванов Иван", "videoSupport": false}))
        .await;
    let id = c["id"].as_i64().unwrap();
    clinic
        .wait_status("voip", id, "WaitingForPatient", Duration::from_secs(10))
        .await;
    own.script("crash");
    own.script("up");
    let failed = clinic
        .wait_status("voip", id, "Failed", Duration::from_secs(30))
        .await;
    assert_eq!(failed["endReason"], "pbx-lost-call", "{failed}");
    assert_eq!(
        statuses(&failed),
        ["Scheduled", "CallingDoctor", "WaitingForPatient", "Failed"]
    );
}
