//! Open routes: `/health`, `/metrics` (optionally behind a key) and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use crate::pbx::{ConnectionState, PbxStatus};

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
        .snapshot()
        .into_iter()
        .map(|s: PbxStatus| PbxHealth {
            connected: s.state == ConnectionState::Connected,
            name: s.name,
            state: s.state,
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
