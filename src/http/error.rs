//! The HTTP error type. Each API family answers errors in its own shape (SPEC §4–7);
//! this type carries the status and messages, and the family's shape is chosen where
//! the route is mounted. Internal causes are logged, never echoed.
//!
//! The OpenAPI side of the `{"success", "messages"}` shape lives here too: one
//! [`utoipa::IntoResponses`] type per standard refusal ([`KeyRefusals`] for 401 + 403,
//! [`BadRequest`], [`NotFound`], [`PayloadTooLarge`], [`UnsupportedMediaType`]), named in
//! a handler's `responses(...)` next to its own tuples, e.g.
//! `responses((status = 200, body = CallList), BadRequest, NotFound)`. Routes mounted
//! through `http::scoped` get [`KeyRefusals`] and the bearer requirement added to the
//! document by `scoped` itself, so they never name them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer: `{"success": false, "messages": [...]}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub messages: Vec<String>,
}

/// Every error answer of the admin and events routes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// What was wrong, one sentence each.
    pub messages: Vec<String>,
}

/// The bearer-key check's refusals (`auth::require`).
#[derive(Debug, utoipa::IntoResponses)]
pub enum KeyRefusals {
    /// No valid API key: `Authorization: Bearer <key>` is missing or names no known key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key is valid but lacks the route's scope.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// A parameter or the body is missing or malformed; the messages name it.
#[derive(Debug, utoipa::IntoResponses)]
#[response(status = 400)]
pub struct BadRequest(pub ErrorBody);

/// What the request names does not exist.
#[derive(Debug, utoipa::IntoResponses)]
#[response(status = 404)]
pub struct NotFound(pub ErrorBody);

/// The body is over the route's size limit.
#[derive(Debug, utoipa::IntoResponses)]
#[response(status = 413)]
pub struct PayloadTooLarge(pub ErrorBody);

/// The body's content type is not one the route reads.
#[derive(Debug, utoipa::IntoResponses)]
#[response(status = 415)]
pub struct UnsupportedMediaType(pub ErrorBody);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            messages: vec![message.into()],
        }
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A valid API key is required: Authorization: Bearer <key>.",
        )
    }
    pub fn forbidden(scope: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("This API key lacks the `{scope}` scope."),
        )
    }
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// Logs `cause` and answers 500 with a message that reveals nothing of it.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error answering a request");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; see the daemon's log.",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                success: false,
                messages: self.messages,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_error_answers_its_status_in_the_one_shape() {
        let cases = [
            (
                ApiError::unauthorized(),
                401,
                "A valid API key is required: Authorization: Bearer <key>.",
            ),
            (
                ApiError::forbidden("events"),
                403,
                "This API key lacks the `events` scope.",
            ),
            (ApiError::not_found("No call 7."), 404, "No call 7."),
            (
                ApiError::bad_request("`id` is required."),
                400,
                "`id` is required.",
            ),
            (
                ApiError::from(crate::store::StoreError::Closed),
                500,
                "Internal error; see the daemon's log.",
            ),
        ];
        for (e, status, message) in cases {
            let (s, body) = answer(e).await;
            assert_eq!(s.as_u16(), status, "{message}");
            assert_eq!(
                body,
                serde_json::json!({"success": false, "messages": [message]})
            );
        }
    }

    #[tokio::test]
    async fn an_internal_error_never_echoes_its_cause() {
        let (s, body) = answer(ApiError::internal("disk I/O error at /var/lib/medcall")).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("/var/lib"), "{body}");
    }
}
