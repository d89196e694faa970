//! Open routes: `/health`, `/metrics` (optionally behind a key) and `/openapi.json`.
//!
//! `/health`'s answer is its own view ([`Health`], [`PbxHealth`]) of the registry's live
//! status; it never serializes an `ami` or `pbx` type.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use super::pbx::ConnectionState;
use crate::ami::ClientState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` while the daemon serves; the PBX connections are reported separately.
    status: &'static str,
    version: &'static str,
    pbx: Vec<PbxHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PbxHealth {
    name: String,
    state: ConnectionState,
    connected: bool,
}

/// Liveness and per-PBX connection state.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health(State(app): State<AppState>) -> Json<Health> {
    let pbx = app
        .pbxs
        .iter()
        .map(|pbx| {
            let state = pbx.status().state;
            PbxHealth {
                name: pbx.name().to_string(),
                state: state.into(),
                connected: state == ClientState::Connected,
            }
        })
        .collect();
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        pbx,
    })
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics.render(&app.pbxs),
    )
}
