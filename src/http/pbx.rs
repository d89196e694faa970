//! `GET /api/pbx`: what the daemon knows about each PBX connection (admin scope).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::pbx::PbxStatus;

/// How many of the newest reconnection gaps are shown per PBX.
const GAPS_SHOWN: u32 = 10;

/// A time the daemon was not connected, and what reconciliation found afterwards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GapView {
    /// When the connection was lost; null when the daemon itself was not running.
    disconnected_at: Option<DateTime<Utc>>,
    reconnected_at: DateTime<Utc>,
    /// Legs that ended while the daemon was away (closed with reason `pbx-gap`).
    legs_closed: i64,
    /// Legs found live that the daemon had not seen start.
    legs_adopted: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxView {
    #[serde(flatten)]
    status: PbxStatus,
    recent_gaps: Vec<GapView>,
}

/// Every configured PBX: connection state, Asterisk version, connected since, reconnect
/// count, last event time, events received and dropped, and the newest gaps.
#[utoipa::path(
    get, path = "/api/pbx", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<PbxView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn list(State(app): State<AppState>) -> Result<Json<Vec<PbxView>>, ApiError> {
    let mut out = Vec::new();
    for status in app.pbxs.snapshot() {
        let gaps = app.store.recent_gaps(&status.name, GAPS_SHOWN).await?;
        out.push(PbxView {
            status,
            recent_gaps: gaps
                .into_iter()
                .map(|g| GapView {
                    disconnected_at: g.disconnected_at,
                    reconnected_at: g.reconnected_at,
                    legs_closed: g.legs_closed,
                    legs_adopted: g.legs_adopted,
                })
                .collect(),
        });
    }
    Ok(Json(out))
}
