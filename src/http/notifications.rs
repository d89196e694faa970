//! The webhook outbox seen from the API (SPEC §4.6): a consultation's notifications with
//! every attempt, and a re-send. Scope `consultations`; errors in the seeds' shape.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::outbox::model::{Notification, Outcome};
use crate::store::outbox::ResendError;

fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NotificationAttempt)]
pub struct AttemptView {
    pub at: String,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// Why there was no answer (refused by the network guard, connect, timeout).
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// A notification of a status change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Notification)]
pub struct NotificationView {
    pub id: i64,
    /// `X-Medcall-Event-Id`: the same on every attempt and re-send.
    pub event_id: String,
    pub consultation_id: i64,
    pub url: String,
    pub status: String,
    pub changed_at: String,
    pub created_at: String,
    /// `pending`, `delivered` or `gave_up`.
    pub state: &'static str,
    /// The next attempt, for the consultation's oldest pending notification.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub finished_at: Option<String>,
    /// The notification this one re-sends.
    pub resend_of: Option<i64>,
    pub attempts: Vec<AttemptView>,
}

impl NotificationView {
    fn of(n: &Notification) -> NotificationView {
        NotificationView {
            id: n.id,
            event_id: n.event_id.clone(),
            consultation_id: n.consultation_id,
            url: n.url.clone(),
            status: n.status.clone(),
            changed_at: at(n.changed_at),
            created_at: at(n.created_at),
            state: n.state.as_str(),
            next_attempt_at: n.next_attempt_at.map(at),
            last_error: n.last_error.clone(),
            finished_at: n.finished_at.map(at),
            resend_of: n.resend_of,
            attempts: n
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: at(a.at),
                    http_status: match a.outcome {
                        Outcome::Answered(code) => Some(code),
                        Outcome::Failed(_) => None,
                    },
                    error: match &a.outcome {
                        Outcome::Failed(why) => Some(why.clone()),
                        Outcome::Answered(_) => None,
                    },
                    elapsed_ms: a.elapsed_ms,
                })
                .collect(),
        }
    }
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "notifications: store failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
}

/// A consultation's notifications, oldest first, each with its attempts.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "consultations",
    params(("consultationId" = i64, Query, minimum = 1, description = "The consultation's id")),
    responses((status = 200, body = Vec<NotificationView>), (status = 400, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let id = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "consultationId")
        .and_then(|(_, v)| v.parse::<i64>().ok().filter(|id| *id > 0))
        .ok_or_else(|| ApiError::bad_request("consultationId must be a positive integer."))?;
    let list = app.store.notifications(id).await.map_err(store_error)?;
    Ok(Json(list.iter().map(NotificationView::of).collect()))
}

/// The answer to a re-send: the new notification's id.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationResent)]
pub struct ResentView {
    pub success: bool,
    pub id: i64,
}

/// Re-sends a delivered or given-up notification: a new one, same event id, at the end
/// of its consultation's order.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/resend", tag = "consultations",
    params(("id" = i64, Path, minimum = 1, description = "The notification's id")),
    responses((status = 200, body = ResentView), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn resend(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ResentView>, ApiError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("id must be a positive integer."))?;
    match app.store.resend_notification(id).await {
        Ok(new) => {
            app.outbox_wake.notify_one();
            Ok(Json(ResentView {
                success: true,
                id: new,
            }))
        }
        Err(e @ ResendError::Unknown(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ ResendError::StillPending(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(ResendError::Store(e)) => Err(store_error(e)),
    }
}
