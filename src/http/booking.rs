//! Seed 004: booking a timetable cell (SPEC §7), `booking` scope, every request signed
//! (SPEC §3). Answers are the seed's `TicketVisitWithLpu` (camelCase), errors the seed's
//! `{"code", "message", "type"}` with its Russian messages.
//!
//! A handler checks the bearer key (the route layer), reads the body bounded, checks the
//! signature (5009 before anything else), reads what it can of the request, and hands it
//! to the store with a renderer: the decision (`booking::rules`), the writes, this
//! answer and its replay row are one grouped job, committed before the answer leaves.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::AppState;
use super::auth::{self, AuthFailure};
use crate::booking::rules::{PatientAsk, Refusal, ReservationAsk, TimeTable};
use crate::booking::ticket::{HistoryEntry, Ticket};
use crate::booking::{AgeCategory, Guid};
use crate::config::{BookingConfig, Scope, Secret};
use crate::signing;
use crate::store::{ReplayKey, StoredAnswer, StoredTime};

/// A booking client as the routes know it.
#[derive(Debug, Clone)]
pub struct BookingClient {
    pub id: String,
    pub name: String,
    pub secret: Secret,
    pub source: i64,
    pub source_name: String,
}

/// The booking routes' settings: the clients by id and the signature window.
#[derive(Debug, Clone, Default)]
pub struct BookingAccess {
    pub clients: HashMap<String, BookingClient>,
    pub window_s: u64,
}

impl BookingAccess {
    pub fn from_config(config: &BookingConfig) -> BookingAccess {
        let clients = config
            .clients
            .iter()
            .map(|c| {
                let client = BookingClient {
                    id: c.id.clone(),
                    name: if c.name.is_empty() {
                        c.id.clone()
                    } else {
                        c.name.clone()
                    },
                    secret: c.secret.clone(),
                    source: c.source,
                    source_name: c.source_name.clone(),
                };
                (c.id.clone(), client)
            })
            .collect();
        BookingAccess {
            clients,
            window_s: config.signature_window_s,
        }
    }
}

/// The seed's error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BookingError, example = json!({"code": 4009, "message": "Это время уже занято. Выберите другое свободное время приема.", "type": "Validation"}))]
pub struct BookingError {
    pub code: u16,
    pub message: String,
    /// `Error` or `Validation`.
    #[serde(rename = "type")]
    pub kind: String,
}

fn error_answer(status: u16, code: u16, message: String, kind: &str) -> StoredAnswer {
    let body = BookingError {
        code,
        message,
        kind: kind.to_string(),
    };
    StoredAnswer {
        status,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

fn refusal_answer(refusal: &Refusal) -> StoredAnswer {
    error_answer(
        refusal.status(),
        refusal.code(),
        refusal.message(),
        refusal.kind().as_str(),
    )
}

fn send(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "booking: the store failed");
    send(error_answer(
        500,
        500,
        "Внутренняя ошибка сервера; запрос не выполнен.".into(),
        "Error",
    ))
}

/// The bearer check of this family: 401/403 in the seed's error shape.
pub async fn require_booking(State(app): State<AppState>, req: Request, next: Next) -> Response {
    match auth::check(&app, &req, Scope::Booking) {
        Ok(_) => next.run(req).await,
        Err(AuthFailure::Unauthenticated) => send(error_answer(
            401,
            401,
            "Нужен ключ API: Authorization: Bearer <key>.".into(),
            "Error",
        )),
        Err(AuthFailure::MissingScope) => send(error_answer(
            403,
            403,
            "У ключа API нет права booking.".into(),
            "Error",
        )),
    }
}

/// A request that passed the signature check.
struct Signed {
    client: BookingClient,
    key: ReplayKey,
    body: bytes::Bytes,
}

/// Reads the body (bounded) and checks the signature: 413 or 5009 as answers.
async fn signed(app: &AppState, req: Request) -> Result<Signed, Response> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, app.max_body_bytes)
        .await
        .map_err(|_| {
            send(error_answer(
                413,
                413,
                format!("Тело запроса больше {} байт.", app.max_body_bytes),
                "Error",
            ))
        })?;
    let refuse = |why: &str| {
        tracing::info!(why, path = %parts.uri.path(), "booking: signature refused");
        send(refusal_answer(&Refusal::BadSignature))
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(client_id), Some(timestamp), Some(signature)) = (
        header("x-client-id"),
        header("x-timestamp"),
        header("x-signature"),
    ) else {
        return Err(refuse("a signature header is missing"));
    };
    let Some(client) = app.booking.clients.get(client_id) else {
        return Err(refuse("unknown client"));
    };
    let now = Utc::now().timestamp();
    let Some(ts) = signing::timestamp_within(timestamp, now, app.booking.window_s) else {
        return Err(refuse("timestamp outside the window"));
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let canonical = signing::canonical(parts.method.as_str(), target, timestamp, &body);
    if !signing::verify(&client.secret, &canonical, signature) {
        return Err(refuse("wrong signature"));
    }
    let window = i64::try_from(app.booking.window_s).unwrap_or(i64::MAX);
    let keep_until =
        chrono::DateTime::from_timestamp(ts.saturating_add(window).saturating_add(1), 0)
            .map_or_else(StoredTime::now, StoredTime::at);
    Ok(Signed {
        client: client.clone(),
        key: ReplayKey {
            client_id: client.id.clone(),
            signature: signature.to_string(),
            keep_until,
        },
        body,
    })
}

/// What every route checks first: the signature (5009), then `fullResponse` (4000).
async fn checked(app: &AppState, req: Request) -> Result<(Signed, bool), Response> {
    let query = req.uri().query().map(str::to_string);
    let signed = signed(app, req).await?;
    let full = full_response(query.as_deref()).map_err(|r| send(refusal_answer(&r)))?;
    Ok((signed, full))
}

/// `fullResponse` of the query: absent or `true` → the whole ticket, `false` → `lpu`,
/// `num`, `ticketGuid`; anything else is a 4000.
fn full_response(query: Option<&str>) -> Result<bool, Refusal> {
    let mut full = true;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "fullResponse" {
            full = match value.to_ascii_lowercase().as_str() {
                "true" | "" => true,
                "false" => false,
                _ => {
                    return Err(Refusal::Invalid(
                        "fullResponse должно быть true или false".into(),
                    ));
                }
            };
        }
    }
    Ok(full)
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refusal::Invalid(
            "тело запроса должно быть объектом JSON".into(),
        )),
    }
}

/// The reservation body, each field as far as it reads (the rules decide the order).
fn reservation_ask(body: &serde_json::Map<String, Value>) -> ReservationAsk {
    let time_table = match body.get("timeTable") {
        None | Some(Value::Null) => TimeTable::Empty,
        Some(Value::String(s)) if s.is_empty() => TimeTable::Empty,
        Some(Value::String(s)) => match s.parse::<Guid>() {
            Ok(guid) => TimeTable::Cell(guid),
            Err(crate::directory::DoctorIdError::NilGuid) => TimeTable::Empty,
            Err(_) => TimeTable::NotAGuid,
        },
        Some(_) => TimeTable::NotAGuid,
    };
    ReservationAsk {
        time_table,
        age_category: body
            .get("ageCategory")
            .and_then(Value::as_str)
            .and_then(AgeCategory::parse),
        reserve_minutes: body.get("reserveTime").and_then(Value::as_i64),
    }
}

/// The patient of a confirmation, or what is wrong with it (Russian, for 4000).
fn patient_ask(
    body: &serde_json::Map<String, Value>,
    today: NaiveDate,
) -> Result<PatientAsk, String> {
    let text = |name: &str| body.get(name).and_then(Value::as_str);
    // As the register stores it (`PolicyNumber`: letters in uppercase).
    let policy = text("policyNumber")
        .and_then(|p| p.parse::<crate::booking::schedule::PolicyNumber>().ok())
        .ok_or("policyNumber должен быть номером полиса: 1–32 латинские буквы или цифры")?;
    let birth = text("birthDate")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .filter(|d| *d <= today)
        .ok_or("birthDate должна быть датой рождения в виде ГГГГ-ММ-ДД")?;
    let name = text("fullName")
        .filter(|n| {
            !n.trim().is_empty() && n.chars().count() <= 256 && !n.chars().any(char::is_control)
        })
        .ok_or("fullName должно быть ФИО пациента (до 256 символов)")?;
    Ok(PatientAsk {
        policy_number: policy.as_str().to_string(),
        birth_date: birth,
        full_name: name.trim().to_string(),
    })
}

/// The seed's `TicketVisitWithLpu`, fields in the seed's order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TicketVisitWithLpu)]
pub struct TicketView {
    /// The LPU as imported (the seed's `LpuWithStatus`).
    #[schema(value_type = Object)]
    pub lpu: Box<RawValue>,
    /// The per-LPU, per-day number (`008`).
    pub num: String,
    pub uchastok_num: String,
    pub room: String,
    pub flat: i64,
    /// `{name, type, code}` as imported.
    #[schema(value_type = Object)]
    pub busy_type: Box<RawValue>,
    pub ticket_guid: String,
    pub time_table_guid: String,
    pub doc_fio: String,
    pub doc_guid: String,
    pub doctor_role: String,
    pub speciality: String,
    pub begin_time: String,
    pub end_time: String,
    pub date_of_appointment: String,
    pub plan_count: i64,
    pub used_count: i64,
    pub source: i64,
    #[schema(value_type = Option<String>)]
    pub login: Option<String>,
    pub source_name: String,
    #[schema(value_type = Option<String>)]
    pub disp_exam_guid: Option<String>,
    pub history: Vec<HistoryView>,
}

/// `fullResponse=false`: only these three.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TicketVisitShort)]
pub struct ShortTicketView {
    #[schema(value_type = Object)]
    pub lpu: Box<RawValue>,
    pub num: String,
    pub ticket_guid: String,
}

/// The seed's `DocumentHistory`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DocumentHistory)]
pub struct HistoryView {
    pub element: String,
    pub element_guid: String,
    pub old_value: String,
    pub new_value: String,
    pub editor: String,
    pub date: String,
    pub client: HistoryClient,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DocumentHistoryClient)]
pub struct HistoryClient {
    pub mnem: String,
    pub name: String,
    pub description: String,
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

fn history_view(access: &BookingAccess, ticket: &Ticket, e: &HistoryEntry) -> HistoryView {
    let name = access
        .clients
        .get(&e.client_id)
        .map_or_else(|| e.client_id.clone(), |c| c.name.clone());
    HistoryView {
        element: e.element.clone(),
        element_guid: ticket.guid.to_string(),
        old_value: e.old_value.clone(),
        new_value: e.new_value.clone(),
        editor: e.editor.clone(),
        date: ticket.offset.seed_time(e.at),
        client: HistoryClient {
            mnem: e.client_id.clone(),
            name,
            description: String::new(),
        },
    }
}

/// The ticket as the seed answers it.
pub fn ticket_view(access: &BookingAccess, ticket: &Ticket) -> TicketView {
    let client = access.clients.get(&ticket.client_id);
    TicketView {
        lpu: raw(&ticket.lpu_document),
        num: ticket.num.clone(),
        uchastok_num: ticket.uchastok_num.clone(),
        room: ticket.room.clone(),
        flat: ticket.flat,
        busy_type: raw(&ticket.busy_type),
        ticket_guid: ticket.guid.to_string(),
        time_table_guid: ticket.cell_guid.to_string(),
        doc_fio: ticket.doctor.full_name.clone(),
        doc_guid: ticket.doctor.guid.clone(),
        doctor_role: ticket.doctor.role.clone(),
        speciality: ticket.doctor.speciality.clone(),
        begin_time: ticket.begin_time.clone(),
        end_time: ticket.end_time.clone(),
        date_of_appointment: ticket.offset.seed_time(ticket.created_at),
        plan_count: ticket.plan_count,
        used_count: ticket.used_count,
        source: client.map_or(0, |c| c.source),
        login: None,
        source_name: client.map_or_else(|| "Internet".to_string(), |c| c.source_name.clone()),
        disp_exam_guid: None,
        history: ticket
            .history
            .iter()
            .map(|e| history_view(access, ticket, e))
            .collect(),
    }
}

/// The renderer handed to the store: the ticket (whole or short) or the refusal.
fn renderer(access: Arc<BookingAccess>, full: bool) -> crate::store::Render {
    Box::new(move |decided| match decided {
        Err(refusal) => refusal_answer(refusal),
        Ok(ticket) => {
            let body = if full {
                serde_json::to_vec(&ticket_view(&access, ticket))
            } else {
                serde_json::to_vec(&ShortTicketView {
                    lpu: raw(&ticket.lpu_document),
                    num: ticket.num.clone(),
                    ticket_guid: ticket.guid.to_string(),
                })
            };
            StoredAnswer {
                status: 200,
                body: body.unwrap_or_default(),
            }
        }
    })
}

/// The body of a reservation, for the OpenAPI document only: the handler reads the
/// fields one by one (`reservation_ask`), so that the SPEC's order decides what a
/// malformed field answers.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ReservationBody {
    /// The timetable cell's GUID.
    #[schema(example = "43c6cec0-3b91-48ab-acab-d541a88e91f7")]
    time_table: String,
    /// `CHILD` (0–14), `TEEN` (15–17), `ADULT` (18+).
    #[schema(example = "CHILD")]
    age_category: String,
    /// How long the place is held, in minutes (1–60).
    #[schema(minimum = 1, maximum = 60, example = 10)]
    reserve_time: i64,
}

/// The patient confirming a hold, for the OpenAPI document only (read by `patient_ask`).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PatientBody {
    #[schema(example = "7700000000000001")]
    policy_number: String,
    #[schema(format = Date, example = "1980-05-17")]
    birth_date: String,
    #[schema(example = "Иванов Иван Иванович")]
    full_name: String,
}

fn answered(result: Result<StoredAnswer, crate::store::StoreError>) -> Response {
    match result {
        Ok(answer) => send(answer),
        Err(e) => internal(&e),
    }
}

#[utoipa::path(
    post, path = "/visit/{lpuGuid}/reservation", tag = "booking",
    security(("bearer" = ["booking"])),
    params(
        ("lpuGuid" = String, Path, description = "The LPU's GUID"),
        ("fullResponse" = Option<bool>, Query, description = "false: only lpu, num and ticketGuid (default true)"),
        ("X-Client-Id" = String, Header, description = "The booking client"),
        ("X-Timestamp" = String, Header, description = "Unix seconds"),
        ("X-Signature" = String, Header, description = "Lowercase hex HMAC-SHA256(secret, METHOD\\nPATH?QUERY\\nTIMESTAMP\\nBODY)"),
    ),
    request_body(content = ReservationBody, content_type = "application/json"),
    responses(
        (status = 200, body = TicketView, description = "The hold (with fullResponse=false only lpu, num and ticketGuid: TicketVisitShort)"),
        (status = 400, body = BookingError, description = "4036, 4005, 4029, 4009, 4000"),
        (status = 401, body = BookingError), (status = 403, body = BookingError, description = "5009: the signature"),
        (status = 404, body = BookingError, description = "4040"), (status = 413, body = BookingError),
        (status = 500, body = BookingError)
    )
)]
pub async fn reserve(
    State(app): State<AppState>,
    Path(lpu): Path<String>,
    req: Request,
) -> Response {
    let (signed, full) = match checked(&app, req).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let body = match object(&signed.body) {
        Ok(body) => body,
        Err(refusal) => return send(refusal_answer(&refusal)),
    };
    let ask = reservation_ask(&body);
    let render = renderer(Arc::clone(&app.booking), full);
    answered(
        app.store
            .reserve(signed.key, lpu, ask, StoredTime::now(), render)
            .await,
    )
}

#[utoipa::path(
    post, path = "/visit/{lpuGuid}/reservation/{ticketGuid}/confirm", tag = "booking",
    security(("bearer" = ["booking"])),
    params(
        ("lpuGuid" = String, Path, description = "The LPU's GUID"),
        ("ticketGuid" = String, Path, description = "The ticket's GUID"),
        ("fullResponse" = Option<bool>, Query, description = "false: only lpu, num and ticketGuid (default true)"),
        ("X-Client-Id" = String, Header), ("X-Timestamp" = String, Header), ("X-Signature" = String, Header),
    ),
    request_body(content = PatientBody, content_type = "application/json"),
    responses(
        (status = 200, body = TicketView, description = "The appointment"),
        (status = 400, body = BookingError, description = "4000, 4009, 4007, 4008"),
        (status = 401, body = BookingError), (status = 403, body = BookingError, description = "5009"),
        (status = 404, body = BookingError, description = "4040"), (status = 413, body = BookingError),
        (status = 500, body = BookingError)
    )
)]
pub async fn confirm(
    State(app): State<AppState>,
    Path((lpu, ticket)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (signed, full) = match checked(&app, req).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let patient = object(&signed.body)
        .map_err(|r| match r {
            Refusal::Invalid(why) => why,
            other => other.message(),
        })
        .and_then(|body| patient_ask(&body, Utc::now().date_naive()));
    let render = renderer(Arc::clone(&app.booking), full);
    answered(
        app.store
            .confirm(signed.key, lpu, ticket, patient, StoredTime::now(), render)
            .await,
    )
}

#[utoipa::path(
    delete, path = "/visit/{lpuGuid}/reservation/{ticketGuid}", tag = "booking",
    security(("bearer" = ["booking"])),
    params(
        ("lpuGuid" = String, Path, description = "The LPU's GUID"),
        ("ticketGuid" = String, Path, description = "The ticket's GUID"),
        ("fullResponse" = Option<bool>, Query, description = "false: only lpu, num and ticketGuid (default true)"),
        ("X-Client-Id" = String, Header), ("X-Timestamp" = String, Header), ("X-Signature" = String, Header),
    ),
    responses(
        (status = 200, body = TicketView, description = "The ticket, cancelled (or as it was, if it had ended)"),
        (status = 400, body = BookingError, description = "4000"),
        (status = 401, body = BookingError), (status = 403, body = BookingError, description = "5009"),
        (status = 404, body = BookingError, description = "4040"), (status = 413, body = BookingError),
        (status = 500, body = BookingError)
    )
)]
pub async fn cancel(
    State(app): State<AppState>,
    Path((lpu, ticket)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (signed, full) = match checked(&app, req).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let render = renderer(Arc::clone(&app.booking), full);
    answered(
        app.store
            .cancel(signed.key, lpu, ticket, StoredTime::now(), render)
            .await,
    )
}

#[utoipa::path(
    get, path = "/visit/{lpuGuid}/reservation/{ticketGuid}", tag = "booking",
    security(("bearer" = ["booking"])),
    params(
        ("lpuGuid" = String, Path, description = "The LPU's GUID"),
        ("ticketGuid" = String, Path, description = "The ticket's GUID"),
        ("fullResponse" = Option<bool>, Query, description = "false: only lpu, num and ticketGuid (default true)"),
        ("X-Client-Id" = String, Header), ("X-Timestamp" = String, Header), ("X-Signature" = String, Header),
    ),
    responses(
        (status = 200, body = TicketView, description = "The ticket as it is now"),
        (status = 400, body = BookingError, description = "4000"),
        (status = 401, body = BookingError), (status = 403, body = BookingError, description = "5009"),
        (status = 404, body = BookingError, description = "4040"), (status = 413, body = BookingError),
        (status = 500, body = BookingError)
    )
)]
pub async fn read_ticket(
    State(app): State<AppState>,
    Path((lpu, ticket)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (signed, full) = match checked(&app, req).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let found = app
        .store
        .ticket(signed.client.id.clone(), lpu, ticket, StoredTime::now())
        .await;
    let render = renderer(Arc::clone(&app.booking), full);
    match found {
        Ok(Some(ticket)) => send(render(Ok(&ticket))),
        Ok(None) => send(render(Err(&Refusal::NotFound))),
        Err(e) => internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::UtcOffset;
    use crate::booking::rules::TicketState;
    use crate::booking::ticket::TicketDoctor;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn full_response_is_true_unless_false_and_nothing_else() {
        assert_eq!(full_response(None), Ok(true));
        assert_eq!(full_response(Some("")), Ok(true));
        assert_eq!(full_response(Some("fullResponse=true")), Ok(true));
        assert_eq!(full_response(Some("fullResponse=TRUE")), Ok(true));
        assert_eq!(full_response(Some("fullResponse=false")), Ok(false));
        assert_eq!(full_response(Some("r=1&fullResponse=False")), Ok(false));
        assert_eq!(full_response(Some("other=false")), Ok(true));
        assert_eq!(full_response(Some("fullResponse")), Ok(true));
        assert_eq!(
            full_response(Some("fullResponse=0")).map_err(|e| e.code()),
            Err(4000)
        );
    }

    #[test]
    fn a_reservation_body_is_read_field_by_field() {
        let ask = reservation_ask(&map(json!({
            "timeTable": "43C6CEC0-3b91-48ab-acab-d541a88e91f7", "ageCategory": "TEEN", "reserveTime": 10
        })));
        assert_eq!(
            ask.time_table,
            TimeTable::Cell("43c6cec0-3b91-48ab-acab-d541a88e91f7".parse().unwrap())
        );
        assert_eq!(ask.age_category, Some(AgeCategory::Teen));
        assert_eq!(ask.reserve_minutes, Some(10));
        for empty in [
            json!({}),
            json!({"timeTable": null}),
            json!({"timeTable": ""}),
            json!({"timeTable": "00000000-0000-0000-0000-000000000000"}),
        ] {
            assert_eq!(
                reservation_ask(&map(empty.clone())).time_table,
                TimeTable::Empty,
                "{empty}"
            );
        }
        for other in [
            json!({"timeTable": "x"}),
            json!({"timeTable": 5}),
            json!({"timeTable": []}),
        ] {
            assert_eq!(
                reservation_ask(&map(other.clone())).time_table,
                TimeTable::NotAGuid,
                "{other}"
            );
        }
        let odd = reservation_ask(&map(json!({"ageCategory": "adult", "reserveTime": "10"})));
        assert_eq!((odd.age_category, odd.reserve_minutes), (None, None));
        assert_eq!(
            reservation_ask(&map(json!({"reserveTime": 1.5}))).reserve_minutes,
            None
        );
    }

    #[test]
    fn a_body_must_be_a_json_object() {
        assert!(object(b"{}").is_ok());
        for bad in [&b""[..], b"[]", b"null", b"{", b"1"] {
            assert_eq!(object(bad).map_err(|e| e.code()), Err(4000));
        }
    }

    #[test]
    fn a_patient_is_whole_and_its_policy_in_the_registers_spelling() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let p = patient_ask(
            &map(json!({"policyNumber": "ab12", "birthDate": "1985-03-14", "fullName": "  Иванов Иван "})),
            today,
        )
        .unwrap();
        assert_eq!(p.policy_number, "AB12");
        assert_eq!(p.birth_date, NaiveDate::from_ymd_opt(1985, 3, 14).unwrap());
        assert_eq!(p.full_name, "Иванов Иван");
        let ok = json!({"policyNumber": "1", "birthDate": "2026-12-02", "fullName": "A"});
        assert!(patient_ask(&map(ok.clone()), today).is_ok(), "born today");
        let with = |k: &str, v: Value| {
            let mut m = map(ok.clone());
            m.insert(k.into(), v);
            patient_ask(&m, today)
        };
        assert!(
            with("birthDate", json!("2026-12-03")).is_err(),
            "born tomorrow"
        );
        assert!(with("birthDate", json!("1985-02-30")).is_err());
        assert!(with("policyNumber", json!("")).is_err());
        assert!(with("policyNumber", json!("1".repeat(33))).is_err());
        assert!(with("policyNumber", json!(123)).is_err());
        assert!(with("fullName", json!("   ")).is_err());
        assert!(with("fullName", json!("a\nb")).is_err());
        assert!(with("fullName", json!("я".repeat(257))).is_err());
        assert!(with("fullName", json!("я".repeat(256))).is_ok());
    }

    fn ticket() -> Ticket {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&Utc)
        };
        Ticket {
            guid: "019b0000-0000-7000-8000-000000000001".parse().unwrap(),
            lpu_guid: "c3c977af-c3b4-4517-9d57-50a6844ec660".parse().unwrap(),
            lpu_document: r#"{"guid":"c3c977af-c3b4-4517-9d57-50a6844ec660"}"#.into(),
            offset: UtcOffset::from_minutes(180).unwrap(),
            cell_guid: "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5".parse().unwrap(),
            begin_time: "2030-04-18T08:45:00+03:00".into(),
            end_time: "2030-04-18T09:00:00+03:00".into(),
            plan_count: 3,
            used_count: 2,
            room: "202".into(),
            flat: 4,
            busy_type: r#"{"name":"","type":1,"code":""}"#.into(),
            uchastok_num: "7".into(),
            doctor: TicketDoctor {
                guid: "f05d7650-a2a0-49dc-99f1-bb57829bc46a".into(),
                full_name: "Петрова М. И.".into(),
                role: "врач".into(),
                speciality: "терапия".into(),
            },
            num: "008".into(),
            client_id: "kiosk".into(),
            created_at: at("2026-12-02T06:18:26Z"),
            state: TicketState::Held,
            expires_at: at("2026-12-02T06:28:26Z"),
            history: vec![HistoryEntry {
                element: "Status".into(),
                old_value: String::new(),
                new_value: "Reserved".into(),
                editor: "kiosk".into(),
                client_id: "kiosk".into(),
                at: at("2026-12-02T06:18:27Z"),
            }],
        }
    }

    fn access() -> BookingAccess {
        let mut clients = HashMap::new();
        clients.insert(
            "kiosk".to_string(),
            BookingClient {
                id: "kiosk".into(),
                name: "Инфомат".into(),
                secret: Secret::new("s"),
                source: 3,
                source_name: "Infomat".into(),
            },
        );
        BookingAccess {
            clients,
            window_s: 300,
        }
    }

    #[test]
    fn the_ticket_renders_as_the_seeds_model_in_the_lpus_time() {
        let v = serde_json::to_value(ticket_view(&access(), &ticket())).unwrap();
        assert_eq!(
            v,
            json!({
                "lpu": {"guid": "c3c977af-c3b4-4517-9d57-50a6844ec660"},
                "num": "008", "uchastokNum": "7", "room": "202", "flat": 4,
                "busyType": {"name": "", "type": 1, "code": ""},
                "ticketGuid": "019b0000-0000-7000-8000-000000000001",
                "timeTableGuid": "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5",
                "docFio": "Петрова М. И.", "docGuid": "f05d7650-a2a0-49dc-99f1-bb57829bc46a",
                "doctorRole": "врач", "speciality": "терапия",
                "beginTime": "2030-04-18T08:45:00+03:00", "endTime": "2030-04-18T09:00:00+03:00",
                "dateOfAppointment": "2026-12-02T09:18:26+03:00",
                "planCount": 3, "usedCount": 2, "source": 3, "login": null,
                "sourceName": "Infomat", "dispExamGuid": null,
                "history": [{
                    "element": "Status", "elementGuid": "019b0000-0000-7000-8000-000000000001",
                    "oldValue": "", "newValue": "Reserved", "editor": "kiosk",
                    "date": "2026-12-02T09:18:27+03:00",
                    "client": {"mnem": "kiosk", "name": "Инфомат", "description": ""}
                }]
            })
        );
        // A client no longer configured: its id for the name, the seed's defaults.
        let v = serde_json::to_value(ticket_view(&BookingAccess::default(), &ticket())).unwrap();
        assert_eq!(
            (v["source"].clone(), v["sourceName"].clone()),
            (json!(0), json!("Internet"))
        );
        assert_eq!(v["history"][0]["client"]["name"], "kiosk");
    }

    #[test]
    fn the_renderer_answers_the_whole_or_short_ticket_or_the_refusal() {
        let t = ticket();
        let whole = renderer(Arc::new(access()), true)(Ok(&t));
        assert_eq!(whole.status, 200);
        let v: Value = serde_json::from_slice(&whole.body).unwrap();
        assert_eq!(v["num"], "008");
        assert_eq!(v.as_object().unwrap().len(), 22);
        let short = renderer(Arc::new(access()), false)(Ok(&t));
        let v: Value = serde_json::from_slice(&short.body).unwrap();
        assert_eq!(
            v,
            json!({"lpu": {"guid": "c3c977af-c3b4-4517-9d57-50a6844ec660"}, "num": "008",
                   "ticketGuid": "019b0000-0000-7000-8000-000000000001"})
        );
        let refused = renderer(Arc::new(access()), true)(Err(&Refusal::NotFound));
        assert_eq!(refused.status, 404);
        let v: Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(
            v,
            json!({"code": 4040, "message": Refusal::NotFound.message(), "type": "Error"})
        );
    }

    #[tokio::test]
    async fn a_store_failure_is_a_500_in_the_seeds_shape() {
        let r = internal(&"disk full");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"code": 500, "message": "Внутренняя ошибка сервера; запрос не выполнен.", "type": "Error"})
        );
    }

    #[test]
    fn clients_come_from_the_configuration_named_by_their_id_when_unnamed() {
        let config: crate::config::BookingConfig = serde_json::from_value(json!({
            "signature_window_s": 120, "sweep_interval_ms": 1000, "group_commit_max": 8,
            "clients": [{"id": "a", "secret": "0123456789abcdef"},
                        {"id": "b", "name": "B", "secret": "0123456789abcdef", "source": 2, "source_name": "X"}]
        }))
        .unwrap();
        let access = BookingAccess::from_config(&config);
        assert_eq!(access.window_s, 120);
        assert_eq!(access.clients["a"].name, "a");
        assert_eq!(access.clients["a"].source_name, "Internet");
        assert_eq!(access.clients["b"].name, "B");
        assert_eq!(
            (
                access.clients["b"].source,
                access.clients["b"].source_name.as_str()
            ),
            (2, "X")
        );
    }
}
