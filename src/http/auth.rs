//! Bearer-key authentication as an axum middleware: 401 without a known key, 403 when
//! the key lacks the route's scope. The authenticated [`Principal`] is put into the
//! request's extensions for handlers that need it (team limits of the `calls` scope).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::config::Scope;

/// Checks the bearer key against the key ring and the required scope.
pub async fn require(
    State((app, scope)): State<(AppState, Scope)>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(principal) = presented.and_then(|k| app.keys.authenticate(k)) else {
        return ApiError::unauthorized().into_response();
    };
    if !principal.allows(scope) {
        tracing::info!(key = %principal.name, scope = scope.as_str(), path = %req.uri().path(), "refused: missing scope");
        return ApiError::forbidden(scope.as_str()).into_response();
    }
    req.extensions_mut().insert(principal.clone());
    next.run(req).await
}
