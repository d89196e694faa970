//! Seed 002: call control of a conversation thread (SPEC §5), `calls` scope limited to
//! the key's teams. Every answer, errors included, is the seed's envelope
//! `{"code": <HTTP status>, "message": "...", "data": {...}}` (`data` absent on errors).
//!
//! Handlers parse and check the request whole (ids are 24 hex digits, so nothing that
//! reaches AMI can hold CR, LF or NUL), then hand one command to the conference
//! control and translate its answer. They never build AMI actions or write SQL.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{self, AuthFailure};
use crate::auth::Principal;
use crate::conference::engine::{
    Answer, CallKey, CallPhase, CallRecord, Command, Direction, Invitee, LegRecord, Refusal, Role,
};
use crate::conference::{ConferenceHandle, ControlError};
use crate::config::Scope;
use crate::directory::{TeamId, ThreadId, UserId};

/// The seed's envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CallEnvelope)]
pub struct Envelope<T> {
    /// The HTTP status, repeated.
    pub code: u16,
    /// `OK`, or what went wrong.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// An error answer in the envelope (no `data`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CallError, example = json!({"code": 404, "message": "Thread 5b0525134c0319001573485e has no active call."}))]
pub struct CallError {
    pub code: u16,
    pub message: String,
}

/// An error of this family: a status and a message, answered in the envelope.
#[derive(Debug)]
pub struct EnvelopeError {
    status: StatusCode,
    message: String,
}

impl EnvelopeError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> EnvelopeError {
        EnvelopeError {
            status,
            message: message.into(),
        }
    }
    pub(super) fn bad_request(message: impl Into<String>) -> EnvelopeError {
        EnvelopeError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for EnvelopeError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(CallError {
                code: self.status.as_u16(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

pub(super) fn ok<T: Serialize>(data: T) -> Response {
    Json(Envelope {
        code: 200,
        message: "OK".into(),
        data: Some(data),
    })
    .into_response()
}

/// The bearer check of this family: 401/403 in the envelope; a key limited to teams may
/// act only on those (403 otherwise).
pub async fn require_calls(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match auth::check(&app, &req, Scope::Calls) {
        Ok(p) => p,
        Err(AuthFailure::Unauthenticated) => {
            return EnvelopeError::new(
                StatusCode::UNAUTHORIZED,
                "A valid API key is required: Authorization: Bearer <key>.",
            )
            .into_response();
        }
        Err(AuthFailure::MissingScope) => {
            return EnvelopeError::new(
                StatusCode::FORBIDDEN,
                "This API key lacks the `calls` scope.",
            )
            .into_response();
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The path's team, checked against the key's team limit.
pub(super) fn team(principal: &Principal, team: &str) -> Result<TeamId, EnvelopeError> {
    let id: TeamId = team
        .parse()
        .map_err(|e| EnvelopeError::bad_request(format!("teamId in the path {e}.")))?;
    let limited = !principal.teams.is_empty();
    if limited
        && !principal
            .teams
            .iter()
            .any(|t| t.eq_ignore_ascii_case(id.as_str()))
    {
        return Err(EnvelopeError::new(
            StatusCode::FORBIDDEN,
            format!("This API key may not control team {id}."),
        ));
    }
    Ok(id)
}

/// The request body as a JSON object, read up to the body limit.
pub(super) async fn body(
    app: &AppState,
    body: Body,
) -> Result<serde_json::Map<String, Value>, EnvelopeError> {
    let bytes = axum::body::to_bytes(body, app.max_body_bytes)
        .await
        .map_err(|_| {
            EnvelopeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The body is larger than {} bytes.", app.max_body_bytes),
            )
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(EnvelopeError::bad_request(
            "The body must be a JSON object.",
        )),
        Err(e) => Err(EnvelopeError::bad_request(format!(
            "The body is not JSON: {e}."
        ))),
    }
}

pub(super) fn thread(body: &serde_json::Map<String, Value>) -> Result<ThreadId, EnvelopeError> {
    match body.get("threadId") {
        None => Err(EnvelopeError::bad_request("threadId is required.")),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|e| EnvelopeError::bad_request(format!("threadId {e}."))),
        Some(_) => Err(EnvelopeError::bad_request("threadId must be a string.")),
    }
}

fn user_id(value: &Value, field: &str) -> Result<UserId, EnvelopeError> {
    match value {
        Value::String(s) => s
            .parse()
            .map_err(|e| EnvelopeError::bad_request(format!("{field} {e}."))),
        _ => Err(EnvelopeError::bad_request(format!(
            "{field} must be a string."
        ))),
    }
}

/// `userId`, or else `userIds` (the seed: with both, `userIds` is ignored — not used,
/// but still refused when malformed, so a request the schema calls invalid is never
/// carried out); distinct, in the order given.
fn users(body: &serde_json::Map<String, Value>) -> Result<Vec<UserId>, EnvelopeError> {
    let many = match body.get("userIds") {
        None => None,
        Some(Value::Array(ids)) if ids.is_empty() => {
            return Err(EnvelopeError::bad_request("userIds must not be empty."));
        }
        Some(Value::Array(ids)) if ids.len() > MAX_USERS => {
            return Err(EnvelopeError::bad_request(format!(
                "userIds may name at most {MAX_USERS} users."
            )));
        }
        Some(Value::Array(ids)) => {
            let mut seen = BTreeSet::new();
            let mut out = Vec::with_capacity(ids.len());
            for (i, v) in ids.iter().enumerate() {
                let id = user_id(v, &format!("userIds[{i}]"))?;
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
            Some(out)
        }
        Some(_) => {
            return Err(EnvelopeError::bad_request(
                "userIds must be an array of user ids.",
            ));
        }
    };
    if let Some(one) = body.get("userId") {
        return Ok(vec![user_id(one, "userId")?]);
    }
    many.ok_or_else(|| EnvelopeError::bad_request("One of userId or userIds is required."))
}

/// The most users one request may name (a conference holds at most 50 members).
const MAX_USERS: usize = 100;

pub(super) fn conference(app: &AppState) -> Result<&ConferenceHandle, EnvelopeError> {
    app.conference.as_ref().ok_or_else(|| {
        EnvelopeError::new(StatusCode::BAD_GATEWAY, "No PBX is configured for calls.")
    })
}

/// The thread's open call must belong to the path's team: a thread of another team is
/// not found (a key limited to one team cannot reach another team's call).
pub(super) async fn check_thread_team(
    handle: &ConferenceHandle,
    thread: &ThreadId,
    team: &TeamId,
) -> Result<(), EnvelopeError> {
    let calls = handle
        .store()
        .thread_conferences(thread.clone(), 1)
        .await
        .map_err(internal)?;
    match calls.first() {
        Some((call, _)) if call.phase != CallPhase::Ended && call.team != *team => {
            Err(EnvelopeError::new(
                StatusCode::NOT_FOUND,
                format!("Thread {thread} has no active call."),
            ))
        }
        _ => Ok(()),
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> EnvelopeError {
    tracing::error!(error = %e, "internal error answering a call-control request");
    EnvelopeError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error; see the daemon's log.",
    )
}

pub(super) async fn execute(
    handle: &ConferenceHandle,
    command: Command,
) -> Result<Answer, EnvelopeError> {
    let thread = command.thread().clone();
    match handle.execute(command).await {
        Ok(Answer::Refused(refusal)) => Err(refused(&thread, &refusal)),
        Ok(answer) => Ok(answer),
        Err(ControlError::Stopped) => Err(EnvelopeError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "medcall is shutting down.",
        )),
        Err(ControlError::Timeout) => Err(EnvelopeError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "No answer in time; the outcome is unknown: read the call's state.",
        )),
        Err(e @ ControlError::Store(_)) => Err(internal(e)),
    }
}

fn refused(thread: &ThreadId, refusal: &Refusal) -> EnvelopeError {
    match refusal {
        Refusal::AlreadyActive => EnvelopeError::new(
            StatusCode::CONFLICT,
            format!("Thread {thread} already has an active call."),
        ),
        Refusal::NoActiveCall => EnvelopeError::new(
            StatusCode::NOT_FOUND,
            format!("Thread {thread} has no active call."),
        ),
        Refusal::Ending => EnvelopeError::new(
            StatusCode::CONFLICT,
            format!("The call of thread {thread} is ending."),
        ),
        Refusal::PbxUnreachable => {
            EnvelopeError::new(StatusCode::BAD_GATEWAY, "The PBX is unreachable.")
        }
        Refusal::PbxRefused(m) => {
            EnvelopeError::new(StatusCode::BAD_GATEWAY, format!("The PBX refused: {m}"))
        }
        Refusal::AlreadyRecording => EnvelopeError::new(
            StatusCode::CONFLICT,
            format!("The call of thread {thread} is already being recorded."),
        ),
        Refusal::NotRecording => EnvelopeError::new(
            StatusCode::CONFLICT,
            format!("The call of thread {thread} is not being recorded."),
        ),
        Refusal::NothingToRecord => EnvelopeError::new(
            StatusCode::CONFLICT,
            format!("Nobody has joined the call of thread {thread} yet: nothing to record."),
        ),
        Refusal::LegFailed(why) => EnvelopeError::new(
            StatusCode::BAD_GATEWAY,
            format!("The PBX did not connect it: {why}"),
        ),
    }
}

pub(super) fn unexpected(answer: &Answer) -> EnvelopeError {
    internal(format!("unexpected conference answer {answer:?}"))
}

/// `data` of `call/start`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CallStarted)]
pub struct StartedView {
    /// `outbound` or `inbound`.
    direction: &'static str,
}

/// `data` of `call/end`: measured from AMI events, never taken from the request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallEnded)]
pub struct EndedView {
    /// Seconds from the call's start to its last leg's hangup.
    call_duration: i64,
    /// Seconds during which at least two human participants were joined.
    dialog_duration: i64,
    /// `answered`, `busy`, `no-answer`, `cancelled` or `failed`.
    result: &'static str,
    direction: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UsersInvited)]
pub struct InvitedView {
    /// Users whose originate Asterisk accepted.
    invited_users_count: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UsersExcluded)]
pub struct ExcludedView {
    excluded_users_count: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UsersPaused)]
pub struct PausedView {
    paused_users_count: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UsersUnpaused)]
pub struct UnpausedView {
    unpaused_users_count: u32,
}

/// `{threadId, direction?}` (`direction`: `outbound`, the default, or `inbound`).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = CallStartBody, rename_all = "camelCase", example = json!({"threadId": "5b0525134c0319001573485e", "direction": "outbound"}))]
pub struct StartBody {
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    thread_id: String,
    direction: Option<DirectionWord>,
}

/// `outbound` or `inbound`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = CallDirection, rename_all = "lowercase")]
pub enum DirectionWord {
    Outbound,
    Inbound,
}

/// `{threadId}`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = CallThreadBody, rename_all = "camelCase", example = json!({"threadId": "5b0525134c0319001573485e"}))]
pub struct ThreadBody {
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    thread_id: String,
}

/// `{threadId, userId}` or `{threadId, userIds: [...]}`; with both, `userIds` is ignored.
#[derive(Debug)]
pub struct UsersBody;

const ID_PATTERN: &str = "^[0-9a-fA-F]{24}$";

impl utoipa::PartialSchema for UsersBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Type,
        };
        let id = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(ID_PATTERN))
        };
        let body = ObjectBuilder::new()
            .property("threadId", id())
            .required("threadId")
            .property(
                "userId",
                id().description(Some("one user; wins over `userIds`")),
            )
            .property(
                "userIds",
                ArrayBuilder::new()
                    .items(id())
                    .min_items(Some(1))
                    .max_items(Some(MAX_USERS))
                    .description(Some("several users (duplicates count once)")),
            );
        let one_of_them = AnyOfBuilder::new()
            .item(ObjectBuilder::new().required("userId"))
            .item(ObjectBuilder::new().required("userIds"));
        AllOfBuilder::new()
            .item(body)
            .item(one_of_them)
            .examples([json!({"threadId": "5b0525134c0319001573485e", "userIds": ["5b4458eb1b2b33001bf213bf", "5b4458eb1b2b33001bf213bc"]})])
            .into()
    }
}

impl utoipa::ToSchema for UsersBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "CallUsersBody".into()
    }
}

/// Creates the thread's call (409 if one is active).
#[utoipa::path(
    post, path = "/{teamId}/call/start", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = StartBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<StartedView>, example = json!({"code": 200, "message": "OK", "data": {"direction": "outbound"}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 409, body = CallError), (status = 413, body = CallError), (status = 502, body = CallError)
    )
)]
pub async fn start(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    let run = async {
        let team = team(&principal, &team_id)?;
        let body = body(&app, raw).await?;
        let thread = thread(&body)?;
        let direction = match body.get("direction") {
            None | Some(Value::Null) => Direction::Outbound,
            Some(Value::String(s)) => Direction::parse(s).ok_or_else(|| {
                EnvelopeError::bad_request("direction must be outbound or inbound.")
            })?,
            Some(_) => return Err(EnvelopeError::bad_request("direction must be a string.")),
        };
        let handle = conference(&app)?;
        match execute(
            handle,
            Command::Start {
                thread,
                team,
                direction,
            },
        )
        .await?
        {
            Answer::Started { direction } => Ok(ok(StartedView {
                direction: direction.as_str(),
            })),
            other => Err(unexpected(&other)),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Hangs up every leg (ringing, joined, paused, helpers) and closes the call; answers
/// once they are gone.
#[utoipa::path(
    post, path = "/{teamId}/call/end", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = ThreadBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<EndedView>, example = json!({"code": 200, "message": "OK", "data": {"callDuration": 42, "dialogDuration": 30, "result": "answered", "direction": "outbound"}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 413, body = CallError), (status = 502, body = CallError)
    )
)]
pub async fn end(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    let run = async {
        let team = team(&principal, &team_id)?;
        let body = body(&app, raw).await?;
        let thread = thread(&body)?;
        let handle = conference(&app)?;
        check_thread_team(handle, &thread, &team).await?;
        match execute(handle, Command::End { thread }).await? {
            Answer::Ended {
                direction,
                call_duration_s,
                dialog_duration_s,
                result,
            } => Ok(ok(EndedView {
                call_duration: call_duration_s,
                dialog_duration: dialog_duration_s,
                result: result.as_str(),
                direction: direction.as_str(),
            })),
            other => Err(unexpected(&other)),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// What a users route asks the engine.
enum UsersOp {
    Invite,
    Exclude,
    Pause,
    Unpause,
}

async fn users_route(
    app: AppState,
    team_id: String,
    principal: Principal,
    raw: Body,
    op: UsersOp,
) -> Response {
    let run = async {
        let team = team(&principal, &team_id)?;
        let body = body(&app, raw).await?;
        let thread = thread(&body)?;
        let users = users(&body)?;
        let handle = conference(&app)?;
        check_thread_team(handle, &thread, &team).await?;
        let command = match op {
            UsersOp::Invite => {
                let mut invitees = Vec::with_capacity(users.len());
                for user in users {
                    let entry = app
                        .store
                        .directory_user(user.clone())
                        .await
                        .map_err(internal)?;
                    let endpoint = handle
                        .endpoint_for(&user, entry.and_then(|e| e.endpoint))
                        .map_err(internal)?;
                    invitees.push(Invitee { user, endpoint });
                }
                Command::Invite { thread, invitees }
            }
            UsersOp::Exclude => Command::Exclude { thread, users },
            UsersOp::Pause => Command::Pause { thread, users },
            UsersOp::Unpause => Command::Unpause { thread, users },
        };
        Ok(match execute(handle, command).await? {
            Answer::Invited { count } => ok(InvitedView {
                invited_users_count: count,
            }),
            Answer::Excluded { count } => ok(ExcludedView {
                excluded_users_count: count,
            }),
            Answer::Paused { count } => ok(PausedView {
                paused_users_count: count,
            }),
            Answer::Unpaused { count } => ok(UnpausedView {
                unpaused_users_count: count,
            }),
            other => return Err(unexpected(&other)),
        })
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Dials each user not already in the call into the thread's conference.
#[utoipa::path(
    post, path = "/{teamId}/call.user/invite", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = UsersBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<InvitedView>, example = json!({"code": 200, "message": "OK", "data": {"invitedUsersCount": 1}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError), (status = 502, body = CallError)
    )
)]
pub async fn invite(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    users_route(app, team_id, principal, raw, UsersOp::Invite).await
}

/// Hangs up the users' legs, whatever their state.
#[utoipa::path(
    post, path = "/{teamId}/call.user/exclude", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = UsersBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<ExcludedView>, example = json!({"code": 200, "message": "OK", "data": {"excludedUsersCount": 1}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 413, body = CallError), (status = 502, body = CallError)
    )
)]
pub async fn exclude(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    users_route(app, team_id, principal, raw, UsersOp::Exclude).await
}

/// Takes joined users out of the mix both ways, to music on hold.
#[utoipa::path(
    post, path = "/{teamId}/call/pause", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = UsersBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<PausedView>, example = json!({"code": 200, "message": "OK", "data": {"pausedUsersCount": 1}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 413, body = CallError), (status = 502, body = CallError)
    )
)]
pub async fn pause(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    users_route(app, team_id, principal, raw, UsersOp::Pause).await
}

/// Brings paused users back into the mix.
#[utoipa::path(
    post, path = "/{teamId}/call/unpause", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = UsersBody, content_type = "application/json"),
    responses(
        (status = 200, body = Envelope<UnpausedView>, example = json!({"code": 200, "message": "OK", "data": {"unpausedUsersCount": 1}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 413, body = CallError), (status = 502, body = CallError)
    )
)]
pub async fn unpause(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    users_route(app, team_id, principal, raw, UsersOp::Unpause).await
}

/// A participant of a call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallParticipant)]
pub struct LegView {
    /// The directory user (participants only).
    user_id: Option<String>,
    /// `participant`, `caller`, `player` or `stream`.
    role: &'static str,
    /// `dialing`, `ringing`, `joined`, `paused`, `left`, `busy`, `no-answer`,
    /// `congestion` or `failed`.
    state: &'static str,
    uniqueid: String,
    channel: Option<String>,
    dial: String,
    created_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    joined_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    /// `hangup`, `excluded`, `ended`, `cancelled`, `refused`, `vanished`, `pbx-restart`;
    /// for players and streams also `stopped` and `replaced` (a player that played to
    /// its end ends `hangup`).
    end_reason: Option<&'static str>,
    hangup_cause: Option<u32>,
    /// A player's file (its content's sha256) or a stream's AudioSocket uuid.
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<String>,
    /// A player: where its file came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    file_url: Option<String>,
    /// A player: how long it really played (joined to gone, or so far), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    played_ms: Option<i64>,
}

/// A recording of a call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallRecording)]
pub struct RecordingView {
    number: u32,
    /// `starting`, `recording`, `stopped` or `failed`.
    state: &'static str,
    started_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    /// Once the WAV is final: where it is served, and what it is.
    file_url: Option<String>,
    size_bytes: Option<u64>,
    sha256: Option<String>,
    duration_ms: Option<u64>,
    /// Why it failed or never became final.
    error: Option<String>,
}

/// A call of a thread.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ThreadCall)]
pub struct CallView {
    /// `active`, `ending` or `ended`.
    state: &'static str,
    direction: &'static str,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    /// Seconds so far, or of the whole call once ended.
    call_duration: i64,
    /// Seconds with at least two human participants joined, so far.
    dialog_duration: i64,
    result: Option<&'static str>,
    participants: Vec<LegView>,
    recordings: Vec<RecordingView>,
}

/// A thread's current (or last) call and its past calls, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ThreadCalls)]
pub struct ThreadView {
    thread_id: String,
    /// The active call, or the last one.
    call: Option<CallView>,
    /// Every call of the thread (up to 50), newest first; the first is `call`.
    calls: Vec<CallView>,
}

fn seconds(ms: i64) -> i64 {
    (ms + 500).div_euclid(1000)
}

fn call_view(call: &CallRecord, legs: &[LegRecord], now: DateTime<Utc>) -> CallView {
    let end = call.ended_at.unwrap_or(now);
    let open_dialog = call
        .dialog_since
        .map_or(0, |since| (end - since).num_milliseconds().max(0));
    CallView {
        state: call.phase.as_str(),
        direction: call.direction.as_str(),
        started_at: call.started_at,
        ended_at: call.ended_at,
        call_duration: seconds((end - call.started_at).num_milliseconds().max(0)),
        dialog_duration: seconds(call.dialog_ms + open_dialog),
        result: call.result.map(|r| r.as_str()),
        participants: legs
            .iter()
            .map(|l| LegView {
                user_id: l.user.as_ref().map(|u| u.to_string()),
                role: l.role.as_str(),
                state: l.state.as_str(),
                uniqueid: l.uniqueid.clone(),
                channel: l.channel.clone(),
                dial: l.dial.clone(),
                created_at: l.created_at,
                answered_at: l.answered_at,
                joined_at: l.joined_at,
                ended_at: l.ended_at,
                end_reason: l.end_reason.map(|r| r.as_str()),
                hangup_cause: l.hangup_cause,
                media: l.media.clone(),
                file_url: None,
                played_ms: (l.role == Role::Player).then(|| {
                    l.joined_at.map_or(0, |from| {
                        (l.ended_at.unwrap_or(now) - from).num_milliseconds().max(0)
                    })
                }),
            })
            .collect(),
        recordings: Vec::new(),
    }
}

/// Fills in what other tables know of a call: its recordings, its players' sources.
async fn add_media(
    app: &AppState,
    key: &CallKey,
    view: &mut CallView,
) -> Result<(), EnvelopeError> {
    let recordings = app
        .store
        .call_recordings(key.clone())
        .await
        .map_err(internal)?;
    view.recordings = recordings
        .into_iter()
        .map(|r| RecordingView {
            number: r.rec.number,
            state: r.rec.state.as_str(),
            started_at: r.rec.started_at,
            stopped_at: r.rec.stopped_at,
            file_url: r
                .facts
                .is_some()
                .then(|| super::call_media::recording_url(app, &r.rec.token)),
            size_bytes: r.facts.as_ref().map(|f| f.size),
            sha256: r.facts.as_ref().map(|f| f.sha256.clone()),
            duration_ms: r.facts.as_ref().map(|f| f.duration_ms),
            error: r.rec.error.or(r.final_error),
        })
        .collect();
    let hashes: Vec<String> = view
        .participants
        .iter()
        .filter(|p| p.role == Role::Player.as_str())
        .filter_map(|p| p.media.clone())
        .collect();
    if !hashes.is_empty() {
        let files = app.store.media_files(hashes).await.map_err(internal)?;
        for p in view
            .participants
            .iter_mut()
            .filter(|p| p.role == Role::Player.as_str())
        {
            p.file_url = files
                .iter()
                .find(|f| Some(&f.sha256) == p.media.as_ref())
                .map(|f| f.source_url.clone());
        }
    }
    Ok(())
}

/// The thread's current (or last) call with every participant, and its past calls.
#[utoipa::path(
    get, path = "/{teamId}/call/{threadId}", tag = "calls",
    security(("bearer" = [])),
    params(
        ("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits"),
        ("threadId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits"),
    ),
    responses(
        (status = 200, body = Envelope<ThreadView>),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError)
    )
)]
pub async fn thread_calls(
    State(app): State<AppState>,
    Path((team_id, thread_id)): Path<(String, String)>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Response {
    let run = async {
        let team = team(&principal, &team_id)?;
        let thread: ThreadId = thread_id
            .parse()
            .map_err(|e| EnvelopeError::bad_request(format!("threadId in the path {e}.")))?;
        let calls = app
            .store
            .thread_conferences(thread.clone(), 50)
            .await
            .map_err(internal)?;
        let now = crate::store::StoredTime::now().time();
        let mut views = Vec::new();
        for (c, legs) in calls.iter().filter(|(c, _)| c.team == team) {
            let mut view = call_view(c, legs, now);
            // The current call in full; past calls keep their participants only.
            if views.is_empty() {
                add_media(&app, &c.key, &mut view).await?;
            }
            views.push(view);
        }
        let calls = views;
        if calls.is_empty() {
            return Err(EnvelopeError::new(
                StatusCode::NOT_FOUND,
                format!("Thread {thread} has no calls in team {team}."),
            ));
        }
        Ok(ok(ThreadView {
            thread_id: thread.to_string(),
            call: calls.first().cloned(),
            calls,
        }))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    //! The parsing and reporting helpers on their own: the integration suite reaches them
    //! through a daemon, but not every boundary (the team limit's case, the user cap, the
    //! rounding of durations) is worth a PBX round trip.

    use chrono::TimeZone;

    use super::*;
    use crate::conference::engine::{CallKey, CallResult, EndReason, LegState, Role};

    const TEAM: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

    fn principal(teams: &[&str]) -> Principal {
        Principal {
            name: "k".into(),
            scopes: BTreeSet::from([Scope::Calls]),
            teams: teams.iter().map(|t| (*t).to_string()).collect(),
        }
    }
    fn object(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }
    fn user(n: u32) -> String {
        format!("{n:024x}")
    }
    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + s * 1000)
            .unwrap()
    }
    fn message<T: std::fmt::Debug>(r: Result<T, EnvelopeError>) -> (StatusCode, String) {
        let e = r.unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn a_key_without_a_team_limit_controls_every_team() {
        assert_eq!(team(&principal(&[]), TEAM).unwrap().as_str(), TEAM);
    }

    #[test]
    fn a_key_limited_to_teams_controls_those_in_any_case_and_no_other() {
        let key = principal(&["aaaaaaaaaaaaaaaaaaaaaaaa", &TEAM.to_uppercase()]);
        assert_eq!(team(&key, TEAM).unwrap().as_str(), TEAM);
        let (status, text) = message(team(&key, "cccccccccccccccccccccccc"));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(text.contains("may not control team"), "{text}");
    }

    #[test]
    fn a_malformed_team_in_the_path_is_a_bad_request() {
        let (status, text) = message(team(&principal(&[]), "5b05"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.starts_with("teamId in the path"), "{text}");
    }

    #[test]
    fn user_id_wins_over_user_ids_but_a_malformed_user_ids_is_still_refused() {
        let both = object(json!({"userId": user(1), "userIds": [user(2)]}));
        assert_eq!(users(&both).unwrap(), vec![user(1).parse().unwrap()]);
        let bad = object(json!({"userId": user(1), "userIds": [5]}));
        assert_eq!(message(users(&bad)).1, "userIds[0] must be a string.");
    }

    #[test]
    fn user_ids_count_each_user_once_in_the_order_given() {
        let body = object(json!({"userIds": [user(2), user(1), user(2)]}));
        let want: Vec<UserId> = [user(2), user(1)]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        assert_eq!(users(&body).unwrap(), want);
    }

    #[test]
    fn user_ids_name_at_least_one_and_at_most_a_hundred_users() {
        let ids = |n: u32| object(json!({ "userIds": (1..=n).map(user).collect::<Vec<_>>() }));
        assert_eq!(users(&ids(100)).unwrap().len(), 100);
        assert_eq!(
            message(users(&ids(101))).1,
            "userIds may name at most 100 users."
        );
        assert_eq!(users(&ids(1)).unwrap().len(), 1);
        assert_eq!(message(users(&ids(0))).1, "userIds must not be empty.");
    }

    #[test]
    fn durations_are_whole_seconds_rounded_half_up() {
        let rounded: Vec<i64> = [0, 499, 500, 1499, 1500, 61_000].map(seconds).to_vec();
        assert_eq!(rounded, vec![0, 0, 1, 1, 2, 61]);
    }

    fn call(ended_at: Option<DateTime<Utc>>, dialog_since: Option<DateTime<Utc>>) -> CallRecord {
        CallRecord {
            key: CallKey {
                thread: "aaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap(),
                started_ms: at(0).timestamp_millis(),
            },
            team: TEAM.parse().unwrap(),
            direction: Direction::Outbound,
            phase: if ended_at.is_some() {
                CallPhase::Ended
            } else {
                CallPhase::Active
            },
            started_at: at(0),
            ended_at,
            result: ended_at.map(|_| CallResult::Answered),
            dialog_ms: 4000,
            dialog_since,
            next_leg: 2,
        }
    }

    #[test]
    fn an_open_call_is_measured_to_now_with_its_open_dialog_interval() {
        let view = call_view(&call(None, Some(at(10))), &[], at(30));
        assert_eq!((view.call_duration, view.dialog_duration), (30, 24));
        assert_eq!((view.state, view.result), ("active", None));
    }

    #[test]
    fn an_ended_call_is_measured_to_its_end_whatever_the_time_now() {
        let view = call_view(&call(Some(at(20)), None), &[], at(90));
        assert_eq!((view.call_duration, view.dialog_duration), (20, 4));
        assert_eq!((view.state, view.result), ("ended", Some("answered")));
    }

    #[test]
    fn a_call_view_lists_every_leg_with_its_fields() {
        let rec = call(Some(at(20)), None);
        let leg = LegRecord {
            call: rec.key.clone(),
            number: 1,
            role: Role::Participant,
            user: Some(user(1).parse().unwrap()),
            uniqueid: "u-1".into(),
            other_uniqueid: None,
            channel: Some("PJSIP/101-1".into()),
            dial: "PJSIP/101".into(),
            state: LegState::Left,
            created_at: at(1),
            answered_at: Some(at(2)),
            joined_at: Some(at(3)),
            ended_at: Some(at(20)),
            end_reason: Some(EndReason::Ended),
            hangup_cause: Some(16),
            media: None,
        };
        let view = call_view(&rec, &[leg], at(90));
        let json = serde_json::to_value(&view.participants).unwrap();
        assert_eq!(
            json,
            json!([{
                "userId": user(1), "role": "participant", "state": "left", "uniqueid": "u-1",
                "channel": "PJSIP/101-1", "dial": "PJSIP/101",
                "createdAt": at(1), "answeredAt": at(2), "joinedAt": at(3), "endedAt": at(20),
                "endReason": "ended", "hangupCause": 16
            }])
        );
    }
}
