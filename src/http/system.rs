//! Open routes: `/health`, `/metrics` (optionally behind a key) and `/openapi.json`.
//!
//! `/health`'s answer is its own view ([`Health`], [`PbxHealth`]) of the registry's live
//! status; it never serializes an `ami` or `pbx` type.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
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

/// Prometheus text exposition. Behind an `admin` key when `http.metrics_require_key` is
/// set (the document then says so).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.metrics.render(&app.pbxs),
    )
}

/// The generated OpenAPI document, handed to [`openapi`] as a request extension (it is
/// complete only once every route, this one included, has been added).
#[derive(Clone)]
pub struct Document(pub Arc<serde_json::Value>);

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Document(..)")
    }
}

/// This document (OpenAPI 3.1), generated from the handlers' annotations.
#[utoipa::path(
    get, path = "/openapi.json", tag = "system",
    responses((status = 200, content_type = "application/json", body = Object, description = "The OpenAPI document"))
)]
pub async fn openapi(Extension(Document(doc)): Extension<Document>) -> Response {
    if doc.is_null() {
        return super::error::ApiError::internal("no OpenAPI document").into_response();
    }
    Json(doc.as_ref()).into_response()
}
