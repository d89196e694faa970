//! Bearer-key authentication as an axum middleware: 401 without a known key, 403 when
//! the key lacks the route's scope. The authenticated [`Principal`] is put into the
//! request's extensions for handlers that need it (team limits of the `calls` scope).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use crate::config::Scope;

/// Why a request is not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No key, or one the ring does not know (401).
    Unauthenticated,
    /// A known key without the route's scope (403).
    MissingScope,
}

/// The principal of a request's bearer key, if it may use `scope`. Each API family
/// answers the failure in its own error shape.
pub fn check(app: &AppState, req: &Request, scope: Scope) -> Result<Principal, AuthFailure> {
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
        return Err(AuthFailure::Unauthenticated);
    };
    if !principal.allows(scope) {
        tracing::info!(key = %principal.name, scope = scope.as_str(), path = %req.uri().path(), "refused: missing scope");
        return Err(AuthFailure::MissingScope);
    }
    Ok(principal.clone())
}

/// Checks the bearer key against the key ring and the required scope; errors in the
/// `{success, messages}` shape.
pub async fn require(
    State((app, scope)): State<(AppState, Scope)>,
    mut req: Request,
    next: Next,
) -> Response {
    match check(&app, &req, scope) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(AuthFailure::Unauthenticated) => ApiError::unauthorized().into_response(),
        Err(AuthFailure::MissingScope) => ApiError::forbidden(scope.as_str()).into_response(),
    }
}
