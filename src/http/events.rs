//! Seed 003: events and number lookup for the CRM and the PBX (SPEC §6), `events` scope.
//! Every route takes GET with a query string or POST with a form or JSON body; errors
//! are `{"success": false, "messages": [...]}`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::params::Params;
use crate::crm::{
    CallDetailRecord, CallType, DialIdent, IncomingCall, NewCallDetailRecord, RecordingPath,
    Request,
};

/// `?text=ID` or `?call=ID`: registers a lead and returns its request (made if new).
#[utoipa::path(
    method(get, post), path = "/api/events", tag = "events",
    security(("bearer" = [])),
    params(
        ("text" = Option<i64>, Query, description = "id of a text lead in the CRM"),
        ("call" = Option<i64>, Query, description = "medcall's call id (MEDCALL_CALL_ID)"),
    ),
    responses((status = 200, body = Request), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn lead(State(app): State<AppState>, params: Params) -> Result<Json<Request>, ApiError> {
    match (params.id("text")?, params.id("call")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Give either `text` or `call`, not both.",
        )),
        (Some(text), None) => Ok(Json(app.store.text_request(text).await?.0)),
        (None, Some(call)) => match app.store.call_request(call).await? {
            Some((r, _)) => Ok(Json(r)),
            None => Err(ApiError::not_found(format!("No call {call} is known."))),
        },
        (None, None) => Err(ApiError::bad_request(
            "One of `text` or `call` is required.",
        )),
    }
}

/// `call_id=ID`: processes an incoming call the daemon knows from the PBX.
#[utoipa::path(
    method(get, post), path = "/api/events/call_asterisk", tag = "events",
    security(("bearer" = [])),
    params(("call_id" = i64, Query, description = "medcall's call id (MEDCALL_CALL_ID)")),
    responses((status = 200, body = IncomingCall), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn call_asterisk(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<IncomingCall>, ApiError> {
    let id = params.required_id("call_id")?;
    match app.store.process_incoming_call(id).await? {
        Some(out) => Ok(Json(out)),
        None => Err(ApiError::not_found(format!("No call {id} is known."))),
    }
}

/// Stores a call detail record; idempotent on `event_id`.
#[utoipa::path(
    method(get, post), path = "/api/events/callDetailRecord", tag = "events",
    security(("bearer" = [])),
    params(
        ("event_id" = i64, Query, description = "the CRM's event id; repeated ids return the stored record"),
        ("phone" = String, Query), ("extension" = String, Query),
        ("path" = String, Query, description = "relative path below the recordings root, no `..`"),
        ("call_at" = Option<String>, Query, description = "RFC 3339, or `YYYY-MM-DD HH:MM:SS` (UTC)"),
        ("type" = Option<String>, Query, description = "incoming or outgoing"),
        ("duration" = Option<i64>, Query, description = "seconds of audio"),
    ),
    responses((status = 200, body = CallDetailRecord), (status = 400, body = ErrorBody))
)]
pub async fn call_detail_record(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<CallDetailRecord>, ApiError> {
    let cdr = NewCallDetailRecord {
        event_id: params.required_id("event_id")?,
        phone: plain_text(&params, "phone", 32)?,
        extension: plain_text(&params, "extension", 32)?,
        path: RecordingPath::parse(params.required("path")?).map_err(ApiError::bad_request)?,
        call_at: params.text("call_at").map(parse_call_at).transpose()?,
        call_type: match params.text("type") {
            None => None,
            Some("incoming") => Some(CallType::Incoming),
            Some("outgoing") => Some(CallType::Outgoing),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "`type` must be incoming or outgoing.",
                ));
            }
        },
        duration: match params.text("duration") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|d| (0..=31 * 24 * 3600).contains(d))
                    .ok_or_else(|| {
                        ApiError::bad_request("`duration` must be whole seconds from 0 to 2678400.")
                    })?,
            ),
        },
    };
    Ok(Json(app.store.insert_api_cdr(cdr).await?.0))
}

/// `id=ID`: marks request ID as "patient arrived" (the first time is kept).
#[utoipa::path(
    method(get, post), path = "/api/events/coming", tag = "events",
    security(("bearer" = [])),
    params(("id" = i64, Query, description = "the request's id")),
    responses((status = 200, body = Request), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn coming(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<Request>, ApiError> {
    let id = params.required_id("id")?;
    match app.store.mark_arrived(id).await? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::not_found(format!("No request {id}."))),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberAnswer {
    /// `89001234567`.
    number: String,
}

/// `number=+{request}s{client}` or `+{contract}d{index}` → the phone in the form `89001234567`.
/// (Escape `+` as `%2B` in a query string; an unescaped `+` arrives as a space and is read as `+`.)
#[utoipa::path(
    method(get, post), path = "/api/getNumberFromId", tag = "events",
    security(("bearer" = [])),
    params(("number" = String, Query, description = "+123456s654321 or +7000d0")),
    responses((status = 200, body = NumberAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn number_from_id(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<NumberAnswer>, ApiError> {
    let raw = params.0.get("number").map(String::as_str).unwrap_or("");
    if raw.is_empty() {
        return Err(ApiError::bad_request("`number` is required."));
    }
    let ident = DialIdent::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match app.store.lookup_dial_ident(ident).await? {
        Some(phone) => Ok(Json(NumberAnswer {
            number: phone.dial_form(),
        })),
        None => Err(ApiError::not_found(format!(
            "Nothing is known for {ident}."
        ))),
    }
}

fn plain_text(params: &Params, key: &str, max: usize) -> Result<String, ApiError> {
    let v = params.required(key)?.trim();
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{key}` must be at most {max} characters, no control characters."
        )));
    }
    Ok(v.to_string())
}

fn parse_call_at(v: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc())
        .map_err(|_| ApiError::bad_request("`call_at` must be RFC 3339 or `YYYY-MM-DD HH:MM:SS`."))
}
