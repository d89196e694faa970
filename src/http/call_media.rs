//! Seed 002, part 2: sound in a thread's call — `call.audio/play|stop`,
//! `call.recording/start|stop`, `call.stream/start|stop` — and the files and streams
//! medcall hands out for them (`GET /recordings/{token}.wav`; `/streams/{token}` is
//! `http::streams`). Same envelope, key check and team rule as `conversation`.
//!
//! Play fetches and converts the file *before* the engine hears of it (a file that
//! cannot be played never becomes a leg), after the thread was checked to have a call
//! (so a thread without one answers 404 without a fetch).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::conversation::{
    CallError, EnvelopeError, body, check_thread_team, conference, execute, internal, ok, team,
    thread, unexpected,
};
use crate::auth::Principal;
use crate::conference::ConferenceHandle;
use crate::conference::engine::{Answer, CallPhase, Command, RecordingState};
use crate::directory::{TeamId, ThreadId};
use crate::media::recordings;
use crate::store::{MediaFile, StoredRecording};

/// The longest `fileUrl` accepted.
const MAX_URL_LEN: usize = 2048;

/// `{code: 200, message: "OK"}`: the seed's answer of play, stop and recording start.
fn ok_empty() -> Response {
    axum::Json(json!({"code": 200, "message": "OK"})).into_response()
}

/// A fresh unguessable token: 128 random bits, lowercase hex.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The team and thread of a `{threadId}` request, checked: the key may act for the
/// team, the body is a JSON object with a valid `threadId`, the thread's open call (if
/// any) is the team's.
async fn thread_request(
    app: &AppState,
    team_id: &str,
    principal: &Principal,
    raw: Body,
) -> Result<(TeamId, ThreadId), EnvelopeError> {
    let team = team(principal, team_id)?;
    let body = body(app, raw).await?;
    let thread = thread(&body)?;
    check_thread_team(conference(app)?, &thread, &team).await?;
    Ok((team, thread))
}

/// The thread must have an open call of the path's team (404 otherwise).
async fn require_call(
    handle: &ConferenceHandle,
    thread: &ThreadId,
    team: &TeamId,
) -> Result<(), EnvelopeError> {
    check_thread_team(handle, thread, team).await?;
    let calls = handle
        .store()
        .thread_conferences(thread.clone(), 1)
        .await
        .map_err(internal)?;
    match calls.first() {
        Some((call, _)) if call.phase == CallPhase::Active => Ok(()),
        Some((call, _)) if call.phase == CallPhase::Ending => Err(EnvelopeError::new(
            StatusCode::CONFLICT,
            format!("The call of thread {thread} is ending."),
        )),
        _ => Err(EnvelopeError::new(
            StatusCode::NOT_FOUND,
            format!("Thread {thread} has no active call."),
        )),
    }
}

fn file_url(body: &serde_json::Map<String, Value>) -> Result<String, EnvelopeError> {
    let url = match body.get("fileUrl") {
        None => return Err(EnvelopeError::bad_request("fileUrl is required.")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(EnvelopeError::bad_request("fileUrl must be a string.")),
    };
    if url.chars().count() > MAX_URL_LEN {
        return Err(EnvelopeError::bad_request(format!(
            "fileUrl must be at most {MAX_URL_LEN} characters."
        )));
    }
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(EnvelopeError::bad_request(
            "fileUrl must be an http:// or https:// URL.",
        ));
    }
    Ok(url.to_string())
}

/// `{threadId, fileUrl}`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = CallPlayBody, rename_all = "camelCase", example = json!({"threadId": "5b0525134c0319001573485e", "fileUrl": "https://files.clinic.example/greeting.mp3"}))]
pub struct PlayBody {
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    thread_id: String,
    /// An http(s) URL of an MP3 or WAV file of at most 10 MB.
    #[schema(max_length = 2048, pattern = "^[hH][tT][tT][pP][sS]?://")]
    file_url: String,
}

/// `{threadId}`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = CallMediaThreadBody, rename_all = "camelCase", example = json!({"threadId": "5b0525134c0319001573485e"}))]
pub struct ThreadBody {
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    thread_id: String,
}

/// The seed's answer without `data`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CallOk, example = json!({"code": 200, "message": "OK"}))]
pub struct OkBody {
    code: u16,
    message: String,
}

/// `data` of `call.recording/stop`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RecordingFile)]
pub struct FileView {
    /// The finished WAV: an absolute URL of medcall carrying an unguessable token.
    file_url: String,
}

/// `data` of `call.stream/start`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StreamLocation)]
pub struct StreamView {
    /// The live mix: chunked `audio/wav`, or WebSocket frames with `Upgrade: websocket`.
    stream_url: String,
}

/// Fetches `fileUrl` (http/https, ≤ 10 MB, checked to be MP3 or WAV, decoded in a
/// limited child process, cached by content) and plays it to everyone in the call
/// through a player leg; a file still playing is replaced. Answers once it plays.
#[utoipa::path(
    post, path = "/{teamId}/call.audio/play", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = PlayBody, content_type = "application/json"),
    responses(
        (status = 200, body = OkBody),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError),
        (status = 415, body = CallError), (status = 502, body = CallError), (status = 504, body = CallError)
    )
)]
pub async fn play(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    let run = async {
        let team = team(&principal, &team_id)?;
        let body = body(&app, raw).await?;
        let thread = thread(&body)?;
        let url = file_url(&body)?;
        let handle = conference(&app)?;
        let library = app.media.as_ref().ok_or_else(|| {
            EnvelopeError::new(StatusCode::BAD_GATEWAY, "No PBX is configured for calls.")
        })?;
        require_call(handle, &thread, &team).await?;
        let prepared = library.prepare(&url).await.map_err(|e| {
            tracing::info!(%url, error = %e, "fileUrl not played");
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            EnvelopeError::new(status, e.message())
        })?;
        app.store
            .remember_media_file(MediaFile {
                sha256: prepared.sha256.clone(),
                source_url: url,
                duration_ms: prepared.duration_ms,
            })
            .await
            .map_err(internal)?;
        let command = Command::Play {
            thread,
            dial: handle.player_dial().clone(),
            media: prepared.sha256,
        };
        match execute(handle, command).await? {
            Answer::Playing { .. } => Ok(ok_empty()),
            other => Err(unexpected(&other)),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Stops what is playing (nothing playing is not an error).
#[utoipa::path(
    post, path = "/{teamId}/call.audio/stop", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = ThreadBody, content_type = "application/json"),
    responses(
        (status = 200, body = OkBody),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError),
        (status = 502, body = CallError)
    )
)]
pub async fn stop_audio(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    stop_helpers(app, team_id, principal, raw, false).await
}

/// Stops the live stream; every listener's response ends (chunked end, WebSocket
/// close 1000).
#[utoipa::path(
    post, path = "/{teamId}/call.stream/stop", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = ThreadBody, content_type = "application/json"),
    responses(
        (status = 200, body = OkBody),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError),
        (status = 502, body = CallError)
    )
)]
pub async fn stop_stream(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    stop_helpers(app, team_id, principal, raw, true).await
}

async fn stop_helpers(
    app: AppState,
    team_id: String,
    principal: Principal,
    raw: Body,
    stream: bool,
) -> Response {
    let run = async {
        let (_, thread) = thread_request(&app, &team_id, &principal, raw).await?;
        let handle = conference(&app)?;
        let command = if stream {
            Command::StopStream { thread }
        } else {
            Command::StopPlay { thread }
        };
        match execute(handle, command).await? {
            Answer::Stopped { .. } => Ok(ok_empty()),
            other => Err(unexpected(&other)),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Starts a live stream of the conference mix (a muted AudioSocket listener leg) and
/// answers its URL once the leg is in; with a stream already running, its URL.
#[utoipa::path(
    post, path = "/{teamId}/call.stream/start", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = ThreadBody, content_type = "application/json"),
    responses(
        (status = 200, body = super::conversation::Envelope<StreamView>, example = json!({"code": 200, "message": "OK", "data": {"streamUrl": "https://medcall.clinic.example/streams/3f6c0e5e9b2d4a51a7c8d9e0f1a2b3c4"}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError),
        (status = 502, body = CallError)
    )
)]
pub async fn start_stream(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    let run = async {
        let (_, thread) = thread_request(&app, &team_id, &principal, raw).await?;
        let handle = conference(&app)?;
        let ticket = app.streams.open();
        let Some(dial) = handle.stream_dial(&ticket.uuid) else {
            app.streams.discard(&ticket.uuid);
            return Err(EnvelopeError::new(
                StatusCode::BAD_GATEWAY,
                "No AudioSocket server is configured for live streams.",
            ));
        };
        let command = Command::StartStream {
            thread,
            dial,
            media: ticket.uuid.clone(),
        };
        let answer = execute(handle, command).await;
        let media = match answer {
            Ok(Answer::Streaming { media }) => media,
            Ok(other) => {
                app.streams.discard(&ticket.uuid);
                return Err(unexpected(&other));
            }
            Err(e) => {
                app.streams.discard(&ticket.uuid);
                return Err(e);
            }
        };
        if media != ticket.uuid {
            // A stream was running already: the new ticket was not used.
            app.streams.discard(&ticket.uuid);
        }
        let token = app.streams.token_of(&media).ok_or_else(|| {
            EnvelopeError::new(
                StatusCode::BAD_GATEWAY,
                "The stream ended before it could be listened to.",
            )
        })?;
        Ok(ok(StreamView {
            stream_url: format!("{}/streams/{token}", app.public_base),
        }))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Starts recording the conference mix (409 while a recording runs).
#[utoipa::path(
    post, path = "/{teamId}/call.recording/start", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = ThreadBody, content_type = "application/json"),
    responses(
        (status = 200, body = OkBody),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError),
        (status = 502, body = CallError)
    )
)]
pub async fn start_recording(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    let run = async {
        let (_, thread) = thread_request(&app, &team_id, &principal, raw).await?;
        let handle = conference(&app)?;
        let command = Command::StartRecording {
            thread,
            token: new_token(),
        };
        match execute(handle, command).await? {
            Answer::RecordingStarted(_) => Ok(ok_empty()),
            other => Err(unexpected(&other)),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Stops the recording and answers its `fileUrl` once the WAV is final (its sha256,
/// size and duration stored). After the call ended (which stopped the recording), the
/// last recording of the thread's last call is answered the same way.
#[utoipa::path(
    post, path = "/{teamId}/call.recording/stop", tag = "calls",
    security(("bearer" = [])),
    params(("teamId" = String, Path, pattern = "^[0-9a-fA-F]{24}$", description = "24 hexadecimal digits")),
    request_body(content = ThreadBody, content_type = "application/json"),
    responses(
        (status = 200, body = super::conversation::Envelope<FileView>, example = json!({"code": 200, "message": "OK", "data": {"fileUrl": "https://medcall.clinic.example/recordings/9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e.wav"}})),
        (status = 400, body = CallError), (status = 401, body = CallError), (status = 403, body = CallError),
        (status = 404, body = CallError), (status = 409, body = CallError), (status = 413, body = CallError),
        (status = 502, body = CallError), (status = 504, body = CallError)
    )
)]
pub async fn stop_recording(
    State(app): State<AppState>,
    Path(team_id): Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    raw: Body,
) -> Response {
    let run = async {
        let (team, thread) = thread_request(&app, &team_id, &principal, raw).await?;
        let handle = conference(&app)?;
        let stopped = match execute(
            handle,
            Command::StopRecording {
                thread: thread.clone(),
            },
        )
        .await
        {
            Ok(Answer::RecordingStopped(rec)) => rec,
            Ok(other) => return Err(unexpected(&other)),
            Err(refused) => last_stopped(handle, &thread, &team).await?.ok_or(refused)?,
        };
        let facts = recordings::finalise(
            handle.store(),
            handle.media_dir(),
            &stopped,
            app.recording_wait,
        )
        .await
        .map_err(|e| EnvelopeError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()))?;
        tracing::debug!(sha256 = %facts.sha256, size = facts.size, "recording final");
        Ok(ok(FileView {
            file_url: recording_url(&app, &stopped.token),
        }))
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The last recording of the thread's last call when that call ended (its end stopped
/// the recording): what a `stop` after the end answers.
async fn last_stopped(
    handle: &ConferenceHandle,
    thread: &ThreadId,
    team: &TeamId,
) -> Result<Option<crate::conference::engine::RecordingRecord>, EnvelopeError> {
    let calls = handle
        .store()
        .thread_conferences(thread.clone(), 1)
        .await
        .map_err(internal)?;
    let Some((call, _)) = calls.first().filter(|(c, _)| c.phase == CallPhase::Ended) else {
        return Ok(None);
    };
    if call.team != *team {
        return Ok(None);
    }
    let recordings = handle
        .store()
        .call_recordings(call.key.clone())
        .await
        .map_err(internal)?;
    Ok(recordings
        .into_iter()
        .map(|r| r.rec)
        .rfind(|r| r.state == RecordingState::Stopped))
}

/// A recording's `fileUrl`.
pub fn recording_url(app: &AppState, token: &str) -> String {
    format!("{}/recordings/{token}.wav", app.public_base)
}

/// A finished recording, by the token of its `fileUrl` (the token is the credential).
/// GET and HEAD, `Range`, `ETag`/`If-None-Match`; a recording not final yet is not found.
#[utoipa::path(
    get, path = "/recordings/{file}", tag = "calls",
    params(("file" = String, Path, pattern = "^[0-9a-f]{32}\\.wav$", description = "<token>.wav, from call.recording/stop's fileUrl")),
    responses(
        (status = 200, description = "the whole WAV", content_type = "audio/wav"),
        (status = 206, description = "the requested byte range", content_type = "audio/wav"),
        (status = 304, description = "not modified (If-None-Match)"),
        (status = 404, body = CallError),
        (status = 416, description = "the range is outside the file")
    )
)]
pub async fn recording_file(
    State(app): State<AppState>,
    Path(file): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let not_found =
        || EnvelopeError::new(StatusCode::NOT_FOUND, "No such recording.").into_response();
    let Some(token) = file.strip_suffix(".wav") else {
        return not_found();
    };
    if token.len() != 32
        || !token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return not_found();
    }
    let Some(handle) = app.conference.as_ref() else {
        return not_found();
    };
    let stored: StoredRecording = match app.store.recording_by_token(token.to_string()).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return internal(e).into_response(),
    };
    let Some(facts) = stored.facts else {
        return EnvelopeError::new(
            StatusCode::NOT_FOUND,
            "The recording is not finished yet: stop it first.",
        )
        .into_response();
    };
    let stem = stored.rec.file_stem();
    let served = super::files::ServedFile {
        path: recordings::path(handle.media_dir(), &stored.rec),
        size: facts.size,
        sha256: facts.sha256,
        content_type: "audio/wav".into(),
        download_name: Some(format!("{stem}.wav")),
    };
    super::files::serve(&method, &headers, served).await
}
