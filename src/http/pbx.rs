//! `GET /api/pbx`: what the daemon knows about each PBX connection (admin scope).
//!
//! Owns the wire form of a PBX's status ([`PbxStatus`], [`ConnectionState`], also used
//! by `/health`): built here from the registry's live status, so a renamed field in
//! `ami` or `pbx` can never silently change the API. It never serializes an `ami` or
//! `pbx` type directly.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::ami::ClientState;
use crate::pbx::Pbx;

/// How many of the newest reconnection gaps are shown per PBX.
const GAPS_SHOWN: u32 = 10;

/// Connection state of one PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    /// No AMI session: never connected, or lost and not yet back.
    NotConnected,
    /// TCP connected, logging in.
    Connecting,
    /// Logged in; events flow.
    Connected,
}

impl From<ClientState> for ConnectionState {
    fn from(state: ClientState) -> ConnectionState {
        match state {
            ClientState::Disconnected => ConnectionState::NotConnected,
            ClientState::Connecting => ConnectionState::Connecting,
            ClientState::Connected => ConnectionState::Connected,
        }
    }
}

/// A snapshot of one PBX's status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxStatus {
    name: String,
    host: String,
    port: u16,
    state: ConnectionState,
    /// `Asterisk 22.x.y` as the PBX reports it, once connected.
    asterisk_version: Option<String>,
    connected_since: Option<DateTime<Utc>>,
    reconnect_count: u64,
    last_event_at: Option<DateTime<Utc>>,
    events_received: u64,
    events_dropped: u64,
    /// Messages skipped as over the size or line limit, or malformed.
    messages_skipped: u64,
    /// The last connection or login error, if the PBX is not connected.
    last_error: Option<String>,
}

impl PbxStatus {
    /// `pbx` as it is now.
    pub(super) fn of(pbx: &Pbx) -> PbxStatus {
        let s = pbx.status();
        let reconnect_count = s.reconnects();
        PbxStatus {
            name: pbx.name().to_string(),
            host: pbx.host().to_string(),
            port: pbx.port(),
            state: s.state.into(),
            asterisk_version: s.version,
            connected_since: s.connected_since,
            reconnect_count,
            last_event_at: s.last_event_at,
            events_received: s.events_received,
            events_dropped: s.events_dropped,
            messages_skipped: s.messages_skipped,
            last_error: s.last_error,
        }
    }
}

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
    get, path = "/api/pbx", tag = "admin", operation_id = "list_pbx",
    responses((status = 200, body = Vec<PbxView>))
)]
pub async fn list(State(app): State<AppState>) -> Result<Json<Vec<PbxView>>, ApiError> {
    let mut out = Vec::new();
    for pbx in app.pbxs.iter() {
        let gaps = app
            .store
            .recent_gaps(pbx.name().as_str(), GAPS_SHOWN)
            .await?;
        out.push(PbxView {
            status: PbxStatus::of(pbx),
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
