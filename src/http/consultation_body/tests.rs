use axum::http::Request as HttpRequest;
use futures_util::stream;

use super::*;
use crate::consultation::request::Raw;

const BOUNDARY: &str = "XyZzY0123";

fn limits() -> BodyLimits {
    BodyLimits {
        max_json_bytes: 1 << 20,
        max_attachment_bytes: 10_485_760,
        max_text_part_bytes: 64 * 1024,
    }
}

fn request(content_type: &str, body: Body) -> Request {
    HttpRequest::builder()
        .method("POST")
        .uri("/api/v1/voiprequest/start")
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .unwrap()
}

fn text_part(name: &str, value: &str) -> Vec<u8> {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        .into_bytes()
}

fn file_part(name: &str, file_name: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

fn multipart(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.concat();
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_json_body_gives_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"doctorId": 7, "patientFullName": "Иванов", "videoSupport": true, "extra": 1}"#;
    let (fields, file) = read_create(
        request("application/json; charset=utf-8", Body::from(body)),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap();
    assert_eq!(file, None);
    assert_eq!(fields.doctor_id, Some(Raw::Json(serde_json::json!(7))));
    assert_eq!(
        fields.patient_full_name,
        Some(Raw::Json(serde_json::json!("Иванов")))
    );
    for (bad, status) in [
        ("[1]", StatusCode::BAD_REQUEST),
        ("{", StatusCode::BAD_REQUEST),
    ] {
        let e = read_create(
            request("application/json", Body::from(bad)),
            &limits(),
            dir.path(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), status, "{bad}");
    }
    let big = format!("{{\"patientFullName\": \"{}\"}}", "a".repeat(2 << 20));
    let e = read_create(
        request("application/json", Body::from(big)),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e = read_create(
        request("text/plain", Body::from("x")),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn multipart_without_an_attachment_gives_its_text_fields() {
    let dir = tempfile::tempdir().unwrap();
    let body = multipart(&[
        text_part("doctorId", "7"),
        text_part("patientPhone.code", "7"),
        text_part("patientPhone[number]", "9001234567"),
        text_part("unknown", "ignored"),
    ]);
    let (fields, file) = read_create(
        request(&multipart_type(), Body::from(body)),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap();
    assert_eq!(file, None);
    assert_eq!(fields.doctor_id, Some(Raw::Text("7".into())));
    assert!(fields.patient_phone.is_some());
    assert!(files(dir.path()).is_empty());
}

#[tokio::test]
async fn an_attachment_of_exactly_the_limit_is_kept_under_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..10_485_760u32).map(|i| (i % 251) as u8).collect();
    let body = multipart(&[
        text_part("doctorId", "7"),
        file_part(
            "attachment",
            "C:\\docs\\anamnesis.pdf",
            "application/pdf",
            &bytes,
        ),
    ]);
    // Streamed in small chunks, as a slow client sends it.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(7919).map(|c| Ok(c.to_vec())).collect();
    let (_, file) = read_create(
        request(&multipart_type(), Body::from_stream(stream::iter(chunks))),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap();
    let file = file.unwrap();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    assert_eq!(
        file.attachment,
        Attachment {
            file_name: "anamnesis.pdf".into(),
            content_type: "application/pdf".into(),
            size: 10_485_760,
            sha256: sha256.clone(),
        }
    );
    assert_eq!(file.path, dir.path().join(&sha256));
    assert_eq!(std::fs::read(&file.path).unwrap(), bytes);
    assert_eq!(files(dir.path()), vec![sha256.clone()]);
    // The same content again: one copy, no temporary left.
    let body = multipart(&[file_part("attachment", "", "bad type", &bytes)]);
    let (_, again) = read_create(
        request(&multipart_type(), Body::from(body)),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap();
    let again = again.unwrap();
    assert_eq!(again.attachment.file_name, "attachment");
    assert_eq!(again.attachment.content_type, "application/octet-stream");
    assert_eq!(files(dir.path()), vec![sha256]);
}

#[tokio::test]
async fn one_byte_over_the_limit_is_413_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = vec![7u8; 10_485_761];
    let body = multipart(&[file_part(
        "attachment",
        "a.bin",
        "application/octet-stream",
        &bytes,
    )]);
    let e = read_create(
        request(&multipart_type(), Body::from(body)),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE, "{e:?}");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[tokio::test]
async fn broken_bodies_are_400_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    // No boundary in the content type.
    let e = read_create(
        request(
            "multipart/form-data",
            Body::from(multipart(&[text_part("doctorId", "7")])),
        ),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
    // Two attachments; a field twice.
    for parts in [
        vec![
            file_part("attachment", "a", "text/plain", b"a"),
            file_part("attachment", "b", "text/plain", b"b"),
        ],
        vec![text_part("doctorId", "7"), text_part("doctorId", "8")],
    ] {
        let e = read_create(
            request(&multipart_type(), Body::from(multipart(&parts))),
            &limits(),
            dir.path(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
    }
    // A body cut off in the middle of the attachment (the client went away).
    let mut cut = file_part(
        "attachment",
        "a.bin",
        "application/octet-stream",
        &[1u8; 100_000],
    );
    cut.truncate(50_000);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(cut),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "gone",
        )),
    ];
    let e = read_create(
        request(&multipart_type(), Body::from_stream(stream::iter(chunks))),
        &limits(),
        dir.path(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e:?}");
    // The first attachment of the two kept; nothing else.
    assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
}

#[test]
fn file_names_are_shown_without_paths_or_control_characters() {
    assert_eq!(display_name("../../etc/passwd"), "passwd");
    assert_eq!(display_name("C:\\a\\b.pdf"), "b.pdf");
    assert_eq!(display_name("a\r\nb.txt"), "ab.txt");
    assert_eq!(display_name(".."), "attachment");
    assert_eq!(display_name(""), "attachment");
    assert_eq!(display_name(&"x".repeat(300)).len(), 255);
    assert!(valid_media_type("application/pdf"));
    assert!(valid_media_type("text/plain; charset=utf-8"));
    assert!(!valid_media_type("pdf"));
    assert!(!valid_media_type("a/b\r\nX: y"));
    assert!(!valid_media_type("/b"));
}
