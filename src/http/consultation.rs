//! Seeds 000 and 001: telemedicine consultations, `/api/v1/voiprequest/…` (internet
//! calls) and `/api/v1/callbackrequest/…` (callbacks). One handler per operation serves
//! both prefixes where the seeds agree; the kind comes from the path.
//!
//! Answers are the consultation object of SPEC §4.2; errors the seeds' shape
//! `{"success": false, "messages": [...]}` ([`ApiError`]). A terminate the lifecycle
//! refuses (already ended, about to start) is an answer, not an error: 200 with
//! `success: false` and the message, as the seed's example shows it.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::consultation_body::read_create;
use super::error::ApiError;
use super::files::{ServedFile, serve};
use crate::consultation::lifecycle::{TerminateAnswer, answer_timeout_ms};
use crate::consultation::model::{Consultation, Kind, Status};
use crate::consultation::request::{CreateRules, validate};
use crate::consultation::run::{ConsultationHandle, RunError};
use crate::store::consultation::{CreateError, ListQuery, MAX_IDS, Order};

/// The patient's phone (seed 001's phone object).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConsultationPhone)]
pub struct PhoneView {
    #[schema(example = "7")]
    pub code: String,
    #[schema(example = "9001234567")]
    pub number: String,
}

/// The attachment as stored; its bytes at `…/get/{id}/attachment`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConsultationAttachment)]
pub struct AttachmentView {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// One status a consultation had, and when.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConsultationHistoryEntry)]
pub struct HistoryView {
    pub status: String,
    pub at: String,
}

/// The consultation object (SPEC §4.2). `videoSupport` is set for voip, `patientPhone`
/// for callbacks; both keys are always present.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Consultation)]
pub struct ConsultationView {
    pub id: i64,
    #[schema(example = "voip")]
    pub kind: &'static str,
    pub doctor_id: i64,
    pub patient_full_name: String,
    pub video_support: Option<bool>,
    pub patient_phone: Option<PhoneView>,
    /// Scheduled, CallingDoctor, CallingPatient, WaitingForPatient, InProgress,
    /// Completed, Missed, Cancelled, Terminated, Failed.
    #[schema(example = "Scheduled")]
    pub status: &'static str,
    pub created: String,
    pub updated: String,
    pub begin_at_utc: String,
    /// Minutes.
    pub duration: u32,
    pub doctor_answer_deadline_utc: Option<String>,
    pub started_at_utc: Option<String>,
    pub ended_at_utc: Option<String>,
    /// Voip: what the patient dials to join.
    pub join_code: Option<String>,
    pub attachment: Option<AttachmentView>,
    pub external_notification_url: Option<String>,
    /// Why it ended: `duration-limit`, `doctor-hangup`, `patient-hangup`,
    /// `doctor-no-answer`, `doctor-busy`, `patient-busy`, `patient-no-answer`,
    /// `patient-did-not-join`, `cancelled`, `terminated`, `pbx-refused: …`,
    /// `pbx-unreachable`, `pbx-lost-call`, `doctor-call-failed`, `patient-call-failed`.
    pub end_reason: Option<String>,
    pub history: Vec<HistoryView>,
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ConsultationView {
    pub fn of(c: &Consultation) -> ConsultationView {
        ConsultationView {
            id: c.id,
            kind: c.kind.as_str(),
            doctor_id: c.doctor.get(),
            patient_full_name: c.patient_full_name.clone(),
            video_support: c.video_support,
            patient_phone: c.patient_phone.as_ref().map(|p| PhoneView {
                code: p.code().to_owned(),
                number: p.number().to_owned(),
            }),
            status: c.status.as_str(),
            created: at(c.created),
            updated: at(c.updated),
            begin_at_utc: at(c.begin_at),
            duration: c.duration_min,
            doctor_answer_deadline_utc: c.doctor_deadline.map(at),
            started_at_utc: c.started_at.map(at),
            ended_at_utc: c.ended_at.map(at),
            join_code: c.join_code.clone(),
            attachment: c.attachment.as_ref().map(|a| AttachmentView {
                file_name: a.file_name.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
            }),
            external_notification_url: c.notify_url.clone(),
            end_reason: c.end_reason.clone(),
            history: c
                .history
                .iter()
                .map(|(s, t)| HistoryView {
                    status: s.as_str().to_owned(),
                    at: at(*t),
                })
                .collect(),
        }
    }
}

/// A status as get-all's `statuses` names it (the seeds' spelling).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only: the query is read by `list_query`
pub enum StatusWord {
    Scheduled,
    CallingDoctor,
    CallingPatient,
    WaitingForPatient,
    InProgress,
    Completed,
    Missed,
    Cancelled,
    Terminated,
    Failed,
}

/// get-all's `order`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub enum OrderWord {
    Created,
    Status,
}

/// A get-all page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConsultationPage)]
pub struct PageView {
    pub items: Vec<ConsultationView>,
    /// Items in this answer.
    pub count: usize,
    /// All that match.
    pub total_count: u64,
}

/// A terminate's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConsultationTerminateAnswer)]
pub struct TerminateView {
    pub success: bool,
    pub messages: Vec<String>,
}

/// `terminate` (voip): `requestId` and an optional `reason`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = VoipTerminateRequest)]
pub struct TerminateBody {
    /// The consultation's id (a number, or its digits as a string).
    #[schema(value_type = i64, minimum = 1)]
    pub request_id: serde_json::Value,
    /// At most 1024 characters (kept with the consultation).
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

fn handle(app: &AppState) -> Result<&ConsultationHandle, ApiError> {
    app.consultations.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Consultations need a PBX: none is configured.",
        )
    })
}

fn run_error(e: RunError) -> ApiError {
    match e {
        RunError::Create(CreateError::UnknownDoctor(d)) => {
            ApiError::bad_request(format!("doctorId {d} is not in the directory."))
        }
        RunError::Create(CreateError::NoJoinCode) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No free join code; try again later.",
        ),
        other => {
            tracing::error!(error = %other, "consultation operation failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
        }
    }
}

/// An id as the path or a body gives it: digits, positive.
fn parse_id(text: &str, field: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ApiError::bad_request(format!("{field} must be a positive integer.")))
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("Consultation {id} not found."))
}

async fn read_one(app: &AppState, kind: Kind, id: &str) -> Result<Consultation, ApiError> {
    let id = parse_id(id, "id")?;
    app.store
        .consultation(kind, id)
        .await
        .map_err(|e| run_error(e.into()))?
        .ok_or_else(|| not_found(id))
}

/// One internet call.
#[utoipa::path(get, path = "/api/v1/voiprequest/get/{id}", tag = "consultations",
    params(("id" = i64, Path, minimum = 1, description = "The consultation's id")),
    responses((status = 200, body = ConsultationView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voip_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConsultationView>, ApiError> {
    Ok(Json(ConsultationView::of(
        &read_one(&app, Kind::Voip, &id).await?,
    )))
}

/// One callback.
#[utoipa::path(get, path = "/api/v1/callbackrequest/get/{id}", tag = "consultations",
    params(("id" = i64, Path, minimum = 1, description = "The consultation's id")),
    responses((status = 200, body = ConsultationView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn callback_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ConsultationView>, ApiError> {
    Ok(Json(ConsultationView::of(
        &read_one(&app, Kind::Callback, &id).await?,
    )))
}

async fn attachment(
    app: &AppState,
    kind: Kind,
    id: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let c = read_one(app, kind, id).await?;
    let Some(a) = c.attachment else {
        return Err(ApiError::not_found(format!(
            "Consultation {} has no attachment.",
            c.id
        )));
    };
    let file = ServedFile {
        path: app.attachments_dir.join(&a.sha256),
        size: a.size,
        sha256: a.sha256,
        content_type: Cow::Owned(a.content_type),
        download_name: Some(a.file_name),
    };
    Ok(serve(method, headers, file).await)
}

/// An internet call's attachment, as uploaded.
#[utoipa::path(get, path = "/api/v1/voiprequest/get/{id}/attachment", tag = "consultations",
    params(("id" = i64, Path, minimum = 1, description = "The consultation's id")),
    responses((status = 200, description = "The file"), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voip_attachment(
    State(app): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    attachment(&app, Kind::Voip, &id, &method, &headers).await
}

/// A callback's attachment, as uploaded.
#[utoipa::path(get, path = "/api/v1/callbackrequest/get/{id}/attachment", tag = "consultations",
    params(("id" = i64, Path, minimum = 1, description = "The consultation's id")),
    responses((status = 200, description = "The file"), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn callback_attachment(
    State(app): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    attachment(&app, Kind::Callback, &id, &method, &headers).await
}

/// Reads a get-all's query: `ids` and `statuses` repeated or comma-separated, the rest
/// once each.
pub fn list_query(kind: Kind, raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        kind,
        ids: Vec::new(),
        statuses: Vec::new(),
        order: Order::Created,
        asc: false,
        limit: 20,
        offset: 0,
        video: None,
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let key = key.as_ref();
        let once = !matches!(key, "ids" | "statuses");
        if once && seen.contains(&key.to_owned()) {
            problems.push(format!("{key} is given more than once."));
            continue;
        }
        seen.push(key.to_owned());
        // `limit=` is how some clients say "no limit given".
        if value.is_empty() {
            continue;
        }
        let parts = || value.split(',').map(str::trim).filter(|p| !p.is_empty());
        match key {
            "ids" => {
                for part in parts() {
                    match part.parse::<i64>() {
                        Ok(id) => q.ids.push(id),
                        Err(_) => problems.push(format!("ids: {part:?} is not an integer.")),
                    }
                }
            }
            "statuses" => {
                for part in parts() {
                    match Status::parse(part) {
                        Some(s) => q.statuses.push(s),
                        None => problems.push(format!("statuses: {part:?} is not a status.")),
                    }
                }
            }
            "order" => match value.as_ref() {
                "Created" => q.order = Order::Created,
                "Status" => q.order = Order::Status,
                _ => problems.push("order must be Created or Status.".into()),
            },
            "asc" => match value.as_ref() {
                "true" => q.asc = true,
                "false" => q.asc = false,
                _ => problems.push("asc must be true or false.".into()),
            },
            "videoSupport" if kind == Kind::Voip => match value.as_ref() {
                "true" => q.video = Some(true),
                "false" => q.video = Some(false),
                _ => problems.push("videoSupport must be true or false.".into()),
            },
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => q.limit = n,
                _ => problems.push("limit must be an integer from 1 to 1000.".into()),
            },
            "offset" => match value.parse::<u32>() {
                Ok(n) if i32::try_from(n).is_ok() => q.offset = n,
                _ => problems.push("offset must be an integer from 0 to 2147483647.".into()),
            },
            _ => {}
        }
    }
    q.ids.sort_unstable();
    q.ids.dedup();
    if q.ids.len() > MAX_IDS {
        problems.push(format!("ids may name at most {MAX_IDS} consultations."));
    }
    if problems.is_empty() {
        Ok(q)
    } else {
        Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            messages: problems,
        })
    }
}

async fn list(app: &AppState, kind: Kind, raw: Option<String>) -> Result<Json<PageView>, ApiError> {
    let q = list_query(kind, raw.as_deref())?;
    let page = app
        .store
        .consultations(q)
        .await
        .map_err(|e| run_error(e.into()))?;
    let items: Vec<ConsultationView> = page.items.iter().map(ConsultationView::of).collect();
    Ok(Json(PageView {
        count: items.len(),
        items,
        total_count: page.total,
    }))
}

/// Internet calls: `ids`, `statuses` (repeated or comma-separated), `order` (Created |
/// Status: lifecycle order), `asc` (false), `limit` (20, at most 1000), `offset`,
/// `videoSupport`.
#[utoipa::path(get, path = "/api/v1/voiprequest/get-all", tag = "consultations",
    params(
        ("ids" = Option<Vec<i64>>, Query, explode, description = "Repeated or comma-separated; an id no consultation has matches nothing"),
        ("statuses" = Option<Vec<StatusWord>>, Query, explode, description = "Repeated or comma-separated"),
        ("order" = Option<OrderWord>, Query, description = "Created (default) or Status (lifecycle order)"),
        ("asc" = Option<bool>, Query, description = "Default false"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Default 20, at most 1000"),
        ("offset" = Option<i32>, Query, minimum = 0, description = "Default 0"),
        ("videoSupport" = Option<bool>, Query, description = "Only these"),
    ),
    responses((status = 200, body = PageView), (status = 400, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voip_list(
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<PageView>, ApiError> {
    list(&app, Kind::Voip, raw).await
}

/// Callbacks: as the internet calls' get-all, without `videoSupport`.
#[utoipa::path(get, path = "/api/v1/callbackrequest/get-all", tag = "consultations",
    params(
        ("ids" = Option<Vec<i64>>, Query, explode, description = "Repeated or comma-separated; an id no consultation has matches nothing"),
        ("statuses" = Option<Vec<StatusWord>>, Query, explode, description = "Repeated or comma-separated"),
        ("order" = Option<OrderWord>, Query, description = "Created (default) or Status (lifecycle order)"),
        ("asc" = Option<bool>, Query, description = "Default false"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Default 20, at most 1000"),
        ("offset" = Option<i32>, Query, minimum = 0, description = "Default 0"),
    ),
    responses((status = 200, body = PageView), (status = 400, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn callback_list(
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<PageView>, ApiError> {
    list(&app, Kind::Callback, raw).await
}

/// A JSON body read bounded, in the seeds' error shape.
async fn json_body<T: serde::de::DeserializeOwned>(
    app: &AppState,
    req: Request,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), app.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The body is larger than {} bytes.", app.max_body_bytes),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("The body is not the expected JSON: {e}.")))
}

fn request_id(value: &serde_json::Value) -> Result<i64, ApiError> {
    match value {
        // `7.0` is how some JSON writers spell 7.
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (1.0..9.0e15).contains(f))
                    .map(|f| f as i64)
            })
            .filter(|id| *id > 0)
            .ok_or_else(|| ApiError::bad_request("requestId must be a positive integer.")),
        serde_json::Value::String(s) => parse_id(s, "requestId"),
        _ => Err(ApiError::bad_request(
            "requestId must be a positive integer.",
        )),
    }
}

async fn terminate(
    app: &AppState,
    kind: Kind,
    id: i64,
    reason: Option<String>,
) -> Result<Json<TerminateView>, ApiError> {
    let answer = handle(app)?
        .terminate(kind, id, reason)
        .await
        .map_err(run_error)?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(match answer {
        TerminateAnswer::Done => TerminateView {
            success: true,
            messages: Vec::new(),
        },
        TerminateAnswer::Refused(message) => TerminateView {
            success: false,
            messages: vec![message.to_owned()],
        },
    }))
}

/// Cancels a scheduled internet call (not within the lock window) or ends a running one.
#[utoipa::path(post, path = "/api/v1/voiprequest/terminate", tag = "consultations",
    request_body = TerminateBody,
    responses((status = 200, body = TerminateView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voip_terminate(
    State(app): State<AppState>,
    req: Request,
) -> Result<Json<TerminateView>, ApiError> {
    let body: TerminateBody = json_body(&app, req).await?;
    let id = request_id(&body.request_id)?;
    if let Some(reason) = &body.reason {
        if reason.chars().count() > 1024 {
            return Err(ApiError::bad_request(
                "reason must be at most 1024 characters.",
            ));
        }
    }
    terminate(&app, Kind::Voip, id, body.reason).await
}

/// `terminate-callback`: `requestId`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallbackTerminateRequest)]
pub struct CallbackTerminateBody {
    /// The consultation's id (a number, or its digits as a string).
    #[schema(value_type = i64, minimum = 1)]
    pub request_id: serde_json::Value,
}

/// Cancels a scheduled callback (not within the lock window) or ends a running one.
#[utoipa::path(post, path = "/api/v1/callbackrequest/terminate-callback", tag = "consultations",
    request_body = CallbackTerminateBody,
    responses((status = 200, body = TerminateView), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn callback_terminate(
    State(app): State<AppState>,
    req: Request,
) -> Result<Json<TerminateView>, ApiError> {
    let body: CallbackTerminateBody = json_body(&app, req).await?;
    let id = request_id(&body.request_id)?;
    terminate(&app, Kind::Callback, id, None).await
}

/// `timeout`: `requestId`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeoutQuery {
    request_id: Option<String>,
}

/// Milliseconds until the doctor's answer deadline, a bare integer: 0 once it has passed
/// or the doctor answered.
#[utoipa::path(get, path = "/api/v1/voiprequest/timeout", tag = "consultations",
    params(("requestId" = i64, Query, minimum = 1, description = "The consultation's id")),
    responses((status = 200, body = i64, example = 41250), (status = 400, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voip_timeout(
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: TimeoutQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::bad_request("requestId must be a positive integer."))?;
    let id = q
        .request_id
        .ok_or_else(|| ApiError::bad_request("requestId is required."))?;
    let c = read_one(&app, Kind::Voip, &id).await?;
    let ms = answer_timeout_ms(&c, crate::store::StoredTime::now().time());
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        ms.to_string(),
    )
        .into_response())
}

/// The create routes' common path: the body read bounded (JSON or multipart), every
/// field checked, the consultation stored (and started when it starts now).
async fn create(
    app: &AppState,
    kind: Kind,
    req: Request,
) -> Result<Json<ConsultationView>, ApiError> {
    let consultations = handle(app)?;
    let (fields, received) = read_create(req, &app.consultation_body, &app.attachments_dir)
        .await
        .map_err(|e| ApiError::new(e.status(), e.message()))?;
    let rules = CreateRules {
        default_duration_min: app.default_duration_min,
        max_past: chrono::Duration::minutes(1),
    };
    let new = validate(
        &fields,
        kind,
        crate::store::StoredTime::now().time(),
        &rules,
    )
    .map_err(|messages| ApiError {
        status: StatusCode::BAD_REQUEST,
        messages,
    })?;
    let attachment = received.map(|r| r.attachment);
    let c = consultations
        .create(new, attachment)
        .await
        .map_err(run_error)?;
    Ok(Json(ConsultationView::of(&c)))
}

/// Asks for an internet call: JSON, or `multipart/form-data` with an `attachment` (at
/// most 10 MB). Fields as seed 000: `doctorId`, `patientFullName`, `videoSupport`,
/// optional `beginAtUtc` (omitted: now), `duration` (minutes, 1–240),
/// `externalNotificationUrl`. Answers the consultation: `Scheduled`, or `CallingDoctor`
/// when it starts now.
#[utoipa::path(post, path = "/api/v1/voiprequest/start", tag = "consultations",
    request_body(content = VoipStartBody, content_type = "application/json"),
    responses((status = 200, body = ConsultationView), (status = 400, body = super::error::ErrorBody),
              (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn voip_start(
    State(app): State<AppState>,
    req: Request,
) -> Result<Json<ConsultationView>, ApiError> {
    create(&app, Kind::Voip, req).await
}

/// Asks for a callback: as `start`, with `patientPhone` `{code, number}` instead of
/// `videoSupport` (seed 001).
#[utoipa::path(post, path = "/api/v1/callbackrequest/start-callback", tag = "consultations",
    request_body(content = CallbackStartBody, content_type = "application/json"),
    responses((status = 200, body = ConsultationView), (status = 400, body = super::error::ErrorBody),
              (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody),
              (status = 503, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn callback_start(
    State(app): State<AppState>,
    req: Request,
) -> Result<Json<ConsultationView>, ApiError> {
    create(&app, Kind::Callback, req).await
}

/// `start`'s JSON body (documentation; the route reads the body itself, so that every
/// bad field gets its own message).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = VoipStartRequest)]
#[allow(dead_code)]
pub struct VoipStartBody {
    #[schema(minimum = 1)]
    pub doctor_id: i64,
    #[schema(min_length = 1, max_length = 256)]
    pub patient_full_name: String,
    pub video_support: bool,
    pub begin_at_utc: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 240)]
    pub duration: Option<u32>,
    pub external_notification_url: Option<String>,
}

/// The patient's phone as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ConsultationPhoneRequest)]
#[allow(dead_code)]
pub struct PhoneBody {
    #[schema(pattern = "^[0-9]{1,3}$")]
    pub code: String,
    #[schema(pattern = "^[0-9]{4,14}$")]
    pub number: String,
}

/// `start-callback`'s JSON body (documentation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallbackStartRequest)]
#[allow(dead_code)]
pub struct CallbackStartBody {
    #[schema(minimum = 1)]
    pub doctor_id: i64,
    #[schema(min_length = 1, max_length = 256)]
    pub patient_full_name: String,
    pub patient_phone: PhoneBody,
    pub begin_at_utc: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 240)]
    pub duration: Option<u32>,
    pub external_notification_url: Option<String>,
}
