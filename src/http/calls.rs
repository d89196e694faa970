//! `GET /api/calls` and `GET /api/calls/{id}`: calls as the PBX saw them (admin scope).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, BadRequest, NotFound};
use crate::store::{CallFilter, CallRow, LegRow};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// One call: the legs sharing a `Linkedid` on one PBX, or, for a conversation call,
/// the legs sharing one `MEDCALL_CALL_KEY` channel variable.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    id: i64,
    pbx: String,
    /// What groups the legs: their `Linkedid`, or the conversation call's key.
    linkedid: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    active: bool,
    leg_count: i64,
}

impl From<CallRow> for CallView {
    fn from(r: CallRow) -> Self {
        CallView {
            id: r.id,
            active: r.record.ended_at.is_none(),
            pbx: r.record.pbx,
            linkedid: r.record.linkedid,
            started_at: r.record.started_at,
            ended_at: r.record.ended_at,
            leg_count: r.leg_count,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallList {
    items: Vec<CallView>,
    /// Items returned.
    count: usize,
    /// All calls matching the filters.
    total_count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegView {
    id: i64,
    uniqueid: String,
    channel: String,
    caller_num: Option<String>,
    caller_name: Option<String>,
    connected_num: Option<String>,
    connected_name: Option<String>,
    state: Option<String>,
    account_code: Option<String>,
    context: Option<String>,
    exten: Option<String>,
    bridge_id: Option<String>,
    conference: Option<String>,
    variables: BTreeMap<String, String>,
    created_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    hangup_cause: Option<i64>,
    hangup_cause_text: Option<String>,
    /// `hangup`, or `pbx-gap` when the leg vanished while the daemon was not connected.
    end_reason: Option<String>,
    /// OriginateResponse reason: 4 answered, 5 busy, 3 no answer, 8 congestion, 0 failed.
    originate_reason: Option<i64>,
    adopted: bool,
}

impl From<LegRow> for LegView {
    fn from(r: LegRow) -> Self {
        let l = r.record;
        LegView {
            id: r.id,
            uniqueid: l.uniqueid,
            channel: l.channel,
            caller_num: l.caller_num,
            caller_name: l.caller_name,
            connected_num: l.connected_num,
            connected_name: l.connected_name,
            state: l.state,
            account_code: l.account_code,
            context: l.context,
            exten: l.exten,
            bridge_id: l.bridge_id,
            conference: l.conference,
            variables: l.variables,
            created_at: l.created_at,
            answered_at: l.answered_at,
            ended_at: l.ended_at,
            hangup_cause: l.hangup_cause,
            hangup_cause_text: l.hangup_cause_text,
            end_reason: l.end_reason,
            originate_reason: l.originate_reason,
            adopted: l.adopted,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    at: Option<DateTime<Utc>>,
    uniqueid: Option<String>,
    kind: String,
    #[schema(value_type = Object)]
    detail: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallDetailView {
    #[serde(flatten)]
    call: CallView,
    legs: Vec<LegView>,
    events: Vec<EventView>,
    #[schema(value_type = Vec<Object>)]
    cdrs: Vec<serde_json::Value>,
}

fn parse_time(key: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{key}` must be an RFC 3339 time, e.g. 2026-11-22T09:00:00Z."
            ))
        })
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "`{key}` must be true or false."
        ))),
    }
}

fn parse_u32(key: &str, v: &str, max: u32) -> Result<u32, ApiError> {
    v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
        ApiError::bad_request(format!("`{key}` must be a whole number from 0 to {max}."))
    })
}

/// The filter a query string asks for. An empty value (`since=`, as a form with a blank
/// field sends it) is the parameter left out.
fn filter_from(q: &HashMap<String, String>) -> Result<CallFilter, ApiError> {
    let mut f = CallFilter {
        limit: DEFAULT_LIMIT,
        ..CallFilter::default()
    };
    for (k, v) in q {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "active" => f.active = Some(parse_bool(k, v)?),
            "since" => f.since = Some(parse_time(k, v)?),
            "until" => f.until = Some(parse_time(k, v)?),
            "pbx" => f.pbx = Some(v.clone()),
            "limit" => f.limit = parse_u32(k, v, MAX_LIMIT)?,
            "offset" => f.offset = parse_u32(k, v, u32::MAX)?,
            _ => return Err(ApiError::bad_request(format!("Unknown parameter `{k}`."))),
        }
    }
    Ok(f)
}

/// Calls, newest first.
#[utoipa::path(
    get, path = "/api/calls", tag = "admin", operation_id = "list_calls",
    params(
        ("active" = Option<bool>, Query, description = "only calls still up (true) or ended (false); `1` and `0` are read as true and false"),
        ("since" = Option<String>, Query, format = DateTime, description = "started at or after this RFC 3339 time"),
        ("until" = Option<String>, Query, format = DateTime, description = "started before this RFC 3339 time"),
        ("pbx" = Option<String>, Query, description = "only this PBX"),
        ("limit" = Option<u32>, Query, maximum = 1000, description = "at most this many (default 50)"),
        ("offset" = Option<u64>, Query, maximum = 4294967295_u64, description = "skip this many"),
    ),
    responses((status = 200, body = CallList), BadRequest)
)]
pub async fn list(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<CallList>, ApiError> {
    let filter = filter_from(&q)?;
    let (rows, total) = app.store.list_calls(filter).await?;
    let items: Vec<CallView> = rows.into_iter().map(CallView::from).collect();
    Ok(Json(CallList {
        count: items.len(),
        items,
        total_count: total,
    }))
}

/// One call with its legs, its event timeline and its CDRs.
#[utoipa::path(
    get, path = "/api/calls/{id}", tag = "admin", operation_id = "call_detail",
    params(("id" = i64, Path, description = "the call's id")),
    responses((status = 200, body = CallDetailView), BadRequest, NotFound)
)]
pub async fn detail(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CallDetailView>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request("The call id must be a number."))?;
    let Some(d) = app.store.call_detail(id).await? else {
        return Err(ApiError::not_found(format!("No call {id}.")));
    };
    Ok(Json(CallDetailView {
        call: d.call.into(),
        legs: d.legs.into_iter().map(LegView::from).collect(),
        events: d
            .events
            .into_iter()
            .map(|e| EventView {
                at: e.at,
                uniqueid: e.uniqueid,
                kind: e.kind,
                detail: e.detail,
            })
            .collect(),
        cdrs: d.cdrs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_filter_parameter_lands_in_its_field_and_the_limit_defaults_to_fifty() {
        let none = filter_from(&q(&[])).unwrap();
        assert_eq!(
            (
                none.active,
                none.since,
                none.until,
                none.pbx,
                none.limit,
                none.offset
            ),
            (None, None, None, None, 50, 0)
        );
        let f = filter_from(&q(&[
            ("active", "0"),
            ("since", "2026-11-22T12:00:00+03:00"),
            ("until", "2026-11-23T09:00:00Z"),
            ("pbx", "north"),
            ("limit", "1000"),
            ("offset", "4294967295"),
        ]))
        .unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(f.active, Some(false));
        assert_eq!(f.since, Some(t("2026-11-22T09:00:00Z")));
        assert_eq!(f.until, Some(t("2026-11-23T09:00:00Z")));
        assert_eq!(f.pbx.as_deref(), Some("north"));
        assert_eq!((f.limit, f.offset), (1000, u32::MAX));
        for (v, want) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            assert_eq!(
                filter_from(&q(&[("active", v)])).unwrap().active,
                Some(want),
                "{v}"
            );
        }
        let e = filter_from(&q(&[("limit", "1001")])).unwrap_err();
        assert_eq!(
            e.messages,
            ["`limit` must be a whole number from 0 to 1000."]
        );
        let e = filter_from(&q(&[("until", "2026-11-23")])).unwrap_err();
        assert_eq!(
            e.messages,
            ["`until` must be an RFC 3339 time, e.g. 2026-11-22T09:00:00Z."]
        );
    }

    #[test]
    fn filters_parse_and_bad_values_are_named() {
        let f = filter_from(&q(&[
            ("active", "true"),
            ("limit", "5"),
            ("since", "2026-11-22T09:00:00Z"),
        ]))
        .unwrap();
        assert_eq!((f.active, f.limit, f.offset), (Some(true), 5, 0));
        for (k, v) in [
            ("active", "yes"),
            ("limit", "5000"),
            ("limit", "-1"),
            ("since", "yesterday"),
            ("colour", "red"),
        ] {
            let e = filter_from(&q(&[(k, v)])).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.messages[0].contains(k), "{k}: {:?}", e.messages);
        }
    }
}
