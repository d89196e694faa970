//! Seed 003: events and number lookup for the CRM and the PBX (SPEC §6), `events` scope.
//! Every route takes GET with a query string or POST with a form or JSON body; errors
//! are `{"success": false, "messages": [...]}`.
//!
//! The JSON shapes are this module's view types (`RequestView`, …), named in the OpenAPI
//! document as the seed fixes them (`Request`, …); a domain type is never serialized
//! here, so renaming a field of `crm` cannot change the API.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType};
use super::params::Params;
use crate::crm::{
    CallDetailRecord, CallType, Client, DialIdent, IncomingCall, NewCallDetailRecord,
    RecordingPath, Request, RequestSource,
};

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RequestSource)]
pub enum RequestSourceView {
    Text,
    Call,
}

impl From<RequestSource> for RequestSourceView {
    fn from(s: RequestSource) -> Self {
        match s {
            RequestSource::Text => RequestSourceView::Text,
            RequestSource::Call => RequestSourceView::Call,
        }
    }
}

/// A request (заявка).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Request)]
pub struct RequestView {
    id: i64,
    source: RequestSourceView,
    source_id: i64,
    client_id: Option<i64>,
    /// `open` or `closed`.
    status: String,
    created: DateTime<Utc>,
    /// When the patient arrived (`/api/events/coming`); the first mark is kept.
    arrived_at: Option<DateTime<Utc>>,
}

impl From<Request> for RequestView {
    fn from(r: Request) -> Self {
        RequestView {
            id: r.id,
            source: r.source.into(),
            source_id: r.source_id,
            client_id: r.client_id,
            status: r.status.as_str().to_string(),
            created: r.created,
            arrived_at: r.arrived_at,
        }
    }
}

/// A client with their phones in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Client)]
pub struct ClientView {
    id: i64,
    full_name: Option<String>,
    /// Normalised `7XXXXXXXXXX`, in the CRM's order.
    phones: Vec<String>,
}

impl From<Client> for ClientView {
    fn from(c: Client) -> Self {
        ClientView {
            id: c.id,
            full_name: c.full_name,
            phones: c.phones,
        }
    }
}

/// What `call_asterisk` did with an incoming call.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = IncomingCall)]
pub struct IncomingCallView {
    call_id: i64,
    /// The caller's number as the PBX gave it.
    caller: Option<String>,
    client: Option<ClientView>,
    client_created: bool,
    request: Option<RequestView>,
    request_created: bool,
    /// The incoming-call event recorded for the CRM.
    event_id: i64,
}

impl From<IncomingCall> for IncomingCallView {
    fn from(c: IncomingCall) -> Self {
        IncomingCallView {
            call_id: c.call_id,
            caller: c.caller,
            client: c.client.map(ClientView::from),
            client_created: c.client_created,
            request: c.request.map(RequestView::from),
            request_created: c.request_created,
            event_id: c.event_id,
        }
    }
}

/// A call detail record (from the CRM's API or from AMI).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallDetailRecord)]
pub struct CallDetailRecordView {
    id: i64,
    /// `api` or `ami`.
    source: String,
    event_id: Option<i64>,
    call_id: Option<i64>,
    phone: Option<String>,
    extension: Option<String>,
    path: Option<String>,
    call_at: Option<String>,
    #[serde(rename = "type")]
    call_type: Option<String>,
    duration: Option<i64>,
    received_at: DateTime<Utc>,
}

impl From<CallDetailRecord> for CallDetailRecordView {
    fn from(r: CallDetailRecord) -> Self {
        CallDetailRecordView {
            id: r.id,
            source: r.source.as_str().to_string(),
            event_id: r.event_id,
            call_id: r.call_id,
            phone: r.phone,
            extension: r.extension,
            path: r.path,
            call_at: r.call_at,
            call_type: r.call_type.map(|t| t.as_str().to_string()),
            duration: r.duration,
            received_at: r.received_at,
        }
    }
}

// The schema of `callDetailRecord`'s `type`; the handler reads it with `CallType::parse`.
/// The direction of a call.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum CallTypeParam {
    Incoming,
    Outgoing,
}

// The schema of `/api/events`' query: one of two parameters, which separate parameters
// cannot say; an object parameter (`form`, exploded) is each of its properties on the
// wire. Each variant allows the other parameter only empty (read as absent), and other
// parameters freely (ignored), as the handler does; it reads them with `Params`.
/// `text=ID` or `call=ID`, not both.
#[derive(Debug, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum LeadQuery {
    Text(#[schema(inline)] TextLead),
    Call(#[schema(inline)] CallLead),
}

/// A text lead.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
struct TextLead {
    /// The id of a text lead in the CRM.
    #[schema(minimum = 1)]
    text: i64,
    /// Blank, if given.
    #[schema(value_type = String, required = false, pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    call: (),
}

/// A call lead.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
struct CallLead {
    /// medcall's call id (MEDCALL_CALL_ID).
    #[schema(minimum = 1)]
    call: i64,
    /// Blank, if given.
    #[schema(value_type = String, required = false, pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    text: (),
}

/// `?text=ID` or `?call=ID`: registers a lead and returns its request (made if new).
#[utoipa::path(
    method(get, post), path = "/api/events", tag = "events",
    params(("lead" = inline(LeadQuery), Query, style = Form, explode,
        description = "exactly one of `text` and `call`")),
    responses((status = 200, body = RequestView), BadRequest, PayloadTooLarge, UnsupportedMediaType, NotFound)
)]
pub async fn lead(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<RequestView>, ApiError> {
    match (params.id("text")?, params.id("call")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Give either `text` or `call`, not both.",
        )),
        (Some(text), None) => Ok(Json(app.store.text_request(text).await?.0.into())),
        (None, Some(call)) => match app.store.call_request(call).await? {
            Some((r, _)) => Ok(Json(r.into())),
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
    params(("call_id" = i64, Query, minimum = 1, description = "medcall's call id (MEDCALL_CALL_ID)")),
    responses((status = 200, body = IncomingCallView), BadRequest, PayloadTooLarge, UnsupportedMediaType, NotFound)
)]
pub async fn call_asterisk(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<IncomingCallView>, ApiError> {
    let id = params.required_id("call_id")?;
    match app.store.process_incoming_call(id).await? {
        Some(out) => Ok(Json(out.into())),
        None => Err(ApiError::not_found(format!("No call {id} is known."))),
    }
}

/// Stores a call detail record; idempotent on `event_id`.
#[utoipa::path(
    method(get, post), path = "/api/events/callDetailRecord", tag = "events",
    params(
        ("event_id" = i64, Query, minimum = 1, description = "the CRM's event id; repeated ids return the stored record"),
        ("phone" = String, Query, max_length = 1024, pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,30}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
            description = "at most 32 characters once trimmed, no control characters"),
        ("extension" = String, Query, max_length = 1024, pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,30}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
            description = "at most 32 characters once trimmed, no control characters"),
        ("path" = String, Query, max_length = 1024, pattern = r"^(?:(?:[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*|\.[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*|\.\.[^/\\\x00-\x1f\x7f-\x9f]+)(?:/(?:[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*|\.[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]*|\.\.[^/\\\x00-\x1f\x7f-\x9f]+))+|(?:[^/\\\x00-\x1f\x7f-\x9f]*[^./\\\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^/\\\x00-\x1f\x7f-\x9f]*|[ \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][. \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\.[. \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|\.[ \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][. \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*|\.\.[. \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+))$",
            description = "relative path below the recordings root: not absolute, no `..`, `.` or empty segments, no backslashes or control characters, not blank"),
        ("call_at" = Option<String>, Query, format = DateTime,
            description = "RFC 3339; `YYYY-MM-DD HH:MM:SS` (read as UTC) is accepted too"),
        ("type" = inline(Option<CallTypeParam>), Query, description = "incoming or outgoing"),
        ("duration" = Option<i64>, Query, minimum = 0, maximum = 2678400, description = "seconds of audio"),
    ),
    responses((status = 200, body = CallDetailRecordView), BadRequest, PayloadTooLarge, UnsupportedMediaType)
)]
pub async fn call_detail_record(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<CallDetailRecordView>, ApiError> {
    let cdr = NewCallDetailRecord {
        event_id: params.required_id("event_id")?,
        phone: plain_text(&params, "phone", 32)?,
        extension: plain_text(&params, "extension", 32)?,
        path: RecordingPath::parse(params.required("path")?).map_err(ApiError::bad_request)?,
        call_at: params.text("call_at").map(parse_call_at).transpose()?,
        call_type: params
            .text("type")
            .map(|t| {
                CallType::parse(t)
                    .ok_or_else(|| ApiError::bad_request("`type` must be incoming or outgoing."))
            })
            .transpose()?,
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
    Ok(Json(app.store.insert_api_cdr(cdr).await?.0.into()))
}

/// `id=ID`: marks request ID as "patient arrived" (the first time is kept).
#[utoipa::path(
    method(get, post), path = "/api/events/coming", tag = "events",
    params(("id" = i64, Query, minimum = 1, description = "the request's id")),
    responses((status = 200, body = RequestView), BadRequest, PayloadTooLarge, UnsupportedMediaType, NotFound)
)]
pub async fn coming(
    State(app): State<AppState>,
    params: Params,
) -> Result<Json<RequestView>, ApiError> {
    let id = params.required_id("id")?;
    match app.store.mark_arrived(id).await? {
        Some(r) => Ok(Json(r.into())),
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
    params(("number" = String, Query, max_length = 1024, pattern = r"^(?:\+| [\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)[0-9]{1,18}(?:s[0-9]{1,18}|d[0-9]{1,9})[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        description = "+123456s654321 or +7000d0 (a leading space is read as `+`)")),
    responses((status = 200, body = NumberAnswer), BadRequest, PayloadTooLarge, UnsupportedMediaType, NotFound)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::{CdrSource, RequestStatus};
    use serde_json::{Value, json};
    use utoipa::{PartialSchema, ToSchema};

    #[test]
    fn a_plain_text_parameter_is_trimmed_at_most_max_characters_and_has_no_control_characters() {
        let p = Params(
            [
                ("at_max", " ЯЯЯЯ "),
                ("over", "ЯЯЯЯЯ"),
                ("bell", "10\u{7}1"),
                ("tab", "1\t1"),
                ("blank", "   "),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        assert_eq!(plain_text(&p, "at_max", 4).unwrap(), "ЯЯЯЯ");
        for key in ["over", "bell", "tab"] {
            let e = plain_text(&p, key, 4).unwrap_err();
            assert_eq!(
                e.messages,
                [format!(
                    "`{key}` must be at most 4 characters, no control characters."
                )],
            );
        }
        let e = plain_text(&p, "blank", 4).unwrap_err();
        assert_eq!(e.messages, ["`blank` is required."]);
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 250_000_000).unwrap()
    }

    fn request() -> Request {
        Request {
            id: 123456,
            source: RequestSource::Call,
            source_id: 77,
            client_id: Some(654321),
            status: RequestStatus::Closed,
            created: at(0),
            arrived_at: Some(at(60)),
        }
    }

    fn json_of(view: impl Serialize) -> Value {
        serde_json::to_value(view).unwrap()
    }

    const REQUEST_JSON: fn() -> Value = || {
        json!({
            "id": 123456, "source": "call", "sourceId": 77, "clientId": 654321,
            "status": "closed", "created": "2027-01-15T08:00:00.250Z",
            "arrivedAt": "2027-01-15T08:01:00.250Z"
        })
    };

    #[test]
    fn every_events_route_answers_the_field_names_the_seed_fixes() {
        assert_eq!(json_of(RequestView::from(request())), REQUEST_JSON());
        let text = Request {
            source: RequestSource::Text,
            status: RequestStatus::Open,
            client_id: None,
            arrived_at: None,
            ..request()
        };
        assert_eq!(
            json_of(RequestView::from(text)),
            json!({
                "id": 123456, "source": "text", "sourceId": 77, "clientId": null,
                "status": "open", "created": "2027-01-15T08:00:00.250Z", "arrivedAt": null
            })
        );
        let incoming = IncomingCall {
            call_id: 9,
            caller: Some("+79001234567".into()),
            client: Some(Client {
                id: 654321,
                full_name: Some("Иванов".into()),
                phones: vec!["79001234567".into()],
            }),
            client_created: true,
            request: Some(request()),
            request_created: false,
            event_id: 3,
        };
        assert_eq!(
            json_of(IncomingCallView::from(incoming)),
            json!({
                "callId": 9, "caller": "+79001234567",
                "client": {"id": 654321, "fullName": "Иванов", "phones": ["79001234567"]},
                "clientCreated": true, "request": REQUEST_JSON(), "requestCreated": false,
                "eventId": 3
            })
        );
        let cdr = CallDetailRecord {
            id: 1,
            source: CdrSource::Api,
            event_id: Some(9001),
            call_id: None,
            phone: Some("89001234567".into()),
            extension: Some("101".into()),
            path: Some("a/b.wav".into()),
            call_at: Some("2026-11-22T09:15:00Z".into()),
            call_type: Some(CallType::Outgoing),
            duration: Some(93),
            received_at: at(0),
        };
        assert_eq!(
            json_of(CallDetailRecordView::from(cdr.clone())),
            json!({
                "id": 1, "source": "api", "eventId": 9001, "callId": null,
                "phone": "89001234567", "extension": "101", "path": "a/b.wav",
                "callAt": "2026-11-22T09:15:00Z", "type": "outgoing", "duration": 93,
                "receivedAt": "2027-01-15T08:00:00.250Z"
            })
        );
        let ami = CallDetailRecord {
            source: CdrSource::Ami,
            call_type: Some(CallType::Incoming),
            ..cdr
        };
        let ami = json_of(CallDetailRecordView::from(ami));
        assert_eq!(
            (&ami["source"], &ami["type"]),
            (&json!("ami"), &json!("incoming"))
        );
        assert_eq!(
            json_of(NumberAnswer {
                number: "89001234567".into()
            }),
            json!({"number": "89001234567"})
        );
    }

    fn schema_of<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn the_openapi_schemas_keep_their_names_and_shapes() {
        let cases: [(String, Value, &str); 5] = [
            (
                RequestView::name().into(),
                schema_of::<RequestView>(),
                r##"{"type": "object", "description": "A request (заявка).", "required": ["id", "source", "sourceId", "status", "created"], "properties": {"arrivedAt": {"type": ["string", "null"], "format": "date-time", "description": "When the patient arrived (`/api/events/coming`); the first mark is kept."}, "clientId": {"type": ["integer", "null"], "format": "int64"}, "created": {"type": "string", "format": "date-time"}, "id": {"type": "integer", "format": "int64"}, "source": {"$ref": "#/components/schemas/RequestSource"}, "sourceId": {"type": "integer", "format": "int64"}, "status": {"type": "string", "description": "`open` or `closed`."}}}"##,
            ),
            (
                RequestSourceView::name().into(),
                schema_of::<RequestSourceView>(),
                r##"{"type": "string", "description": "Where a request came from.", "enum": ["text", "call"]}"##,
            ),
            (
                ClientView::name().into(),
                schema_of::<ClientView>(),
                r##"{"type": "object", "description": "A client with their phones in order.", "required": ["id", "phones"], "properties": {"fullName": {"type": ["string", "null"]}, "id": {"type": "integer", "format": "int64"}, "phones": {"type": "array", "items": {"type": "string"}, "description": "Normalised `7XXXXXXXXXX`, in the CRM's order."}}}"##,
            ),
            (
                IncomingCallView::name().into(),
                schema_of::<IncomingCallView>(),
                r##"{"type": "object", "description": "What `call_asterisk` did with an incoming call.", "required": ["callId", "clientCreated", "requestCreated", "eventId"], "properties": {"callId": {"type": "integer", "format": "int64"}, "caller": {"type": ["string", "null"], "description": "The caller's number as the PBX gave it."}, "client": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Client"}]}, "clientCreated": {"type": "boolean"}, "eventId": {"type": "integer", "format": "int64", "description": "The incoming-call event recorded for the CRM."}, "request": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Request"}]}, "requestCreated": {"type": "boolean"}}}"##,
            ),
            (
                CallDetailRecordView::name().into(),
                schema_of::<CallDetailRecordView>(),
                r##"{"type": "object", "description": "A call detail record (from the CRM's API or from AMI).", "required": ["id", "source", "receivedAt"], "properties": {"callAt": {"type": ["string", "null"]}, "callId": {"type": ["integer", "null"], "format": "int64"}, "duration": {"type": ["integer", "null"], "format": "int64"}, "eventId": {"type": ["integer", "null"], "format": "int64"}, "extension": {"type": ["string", "null"]}, "id": {"type": "integer", "format": "int64"}, "path": {"type": ["string", "null"]}, "phone": {"type": ["string", "null"]}, "receivedAt": {"type": "string", "format": "date-time"}, "source": {"type": "string", "description": "`api` or `ami`."}, "type": {"type": ["string", "null"]}}}"##,
            ),
        ];
        let names: Vec<&str> = cases.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Request",
                "RequestSource",
                "Client",
                "IncomingCall",
                "CallDetailRecord"
            ]
        );
        for (name, got, pinned) in cases {
            let pinned: Value = serde_json::from_str(pinned).unwrap();
            assert_eq!(got, pinned, "{name}");
        }
    }
}
