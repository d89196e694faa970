//! `GET /api/pbx`: what the daemon knows about each PBX connection (admin scope).

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::pbx::PbxStatus;

/// Every configured PBX: connection state, Asterisk version, connected since, reconnect
/// count, last event time, events received and dropped.
#[utoipa::path(
    get, path = "/api/pbx", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<PbxStatus>), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody))
)]
pub async fn list(State(app): State<AppState>) -> Json<Vec<PbxStatus>> {
    Json(app.pbxs.snapshot())
}
