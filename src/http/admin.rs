//! Admin routes that load reference data (SPEC §8): `PUT /admin/clients`,
//! `PUT /admin/directory` and `PUT /admin/schedule` take the same JSON documents as
//! `medcall import clients FILE`, `medcall import directory FILE` and `medcall import
//! schedule FILE`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use super::AppState;
use super::error::{ApiError, BadRequest, ErrorBody, PayloadTooLarge};
use crate::booking::schedule::{ScheduleCounts, ScheduleDocument};
use crate::crm::import::ClientsDocument;
use crate::directory::document::{DirectoryCounts, DirectoryDocument, UpsertCounts};
use crate::store::{DirectoryImportError, ImportCounts, ScheduleImportError};

/// How many rows an import wrote.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ImportCounts)]
pub struct ImportCountsView {
    clients: usize,
    contracts: usize,
    requests: usize,
}

impl From<ImportCounts> for ImportCountsView {
    fn from(c: ImportCounts) -> Self {
        ImportCountsView {
            clients: c.clients,
            contracts: c.contracts,
            requests: c.requests,
        }
    }
}

/// Rows per transaction when importing.
pub const IMPORT_BATCH: usize = 10_000;

/// Upserts clients (ordered phones), contracts (ordered phones) and requests. The whole
/// document is validated first: one bad phone (400), or a `clientId` naming a client
/// neither in the document nor imported before (409), and nothing is written.
#[utoipa::path(
    put, path = "/admin/clients", tag = "admin",
    request_body(content = ClientsDocument, content_type = "application/json"),
    responses(
        (status = 200, body = ImportCountsView, description = "The rows written"),
        BadRequest,
        (status = 409, body = ErrorBody, description = "A `clientId` names a client neither in the document nor stored; the messages name each entry"),
        PayloadTooLarge,
    )
)]
pub async fn put_clients(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ImportCountsView>, ApiError> {
    let doc: ClientsDocument = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("The clients document is malformed: {e}.")))?;
    let valid = doc.validate().map_err(|messages| ApiError {
        status: axum::http::StatusCode::BAD_REQUEST,
        messages,
    })?;
    // A contract or request may name a client imported earlier; one that names nobody
    // is refused before anything is written (it used to fail halfway, as a 500). 409: the
    // document is well formed, it conflicts with what the store holds.
    let unknown = app
        .store
        .unknown_clients(valid.outside_client_ids())
        .await?;
    if !unknown.is_empty() {
        return Err(ApiError {
            status: axum::http::StatusCode::CONFLICT,
            messages: valid.unknown_client_problems(&unknown),
        });
    }
    Ok(Json(
        app.store
            .import_clients(valid, IMPORT_BATCH, |_| {})
            .await?
            .into(),
    ))
}

/// How many entries of one kind a directory import inserted, changed, and found as they were.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UpsertCounts)]
pub struct UpsertCountsView {
    inserted: usize,
    updated: usize,
    unchanged: usize,
}

impl From<UpsertCounts> for UpsertCountsView {
    fn from(c: UpsertCounts) -> Self {
        UpsertCountsView {
            inserted: c.inserted,
            updated: c.updated,
            unchanged: c.unchanged,
        }
    }
}

/// What a directory import did, per kind of entry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DirectoryCounts)]
pub struct DirectoryCountsView {
    teams: UpsertCountsView,
    users: UpsertCountsView,
    doctors: UpsertCountsView,
    inbound: UpsertCountsView,
}

impl From<DirectoryCounts> for DirectoryCountsView {
    fn from(c: DirectoryCounts) -> Self {
        DirectoryCountsView {
            teams: c.teams.into(),
            users: c.users.into(),
            doctors: c.doctors.into(),
            inbound: c.inbound.into(),
        }
    }
}

/// Upserts teams, users, doctors and inbound routes. The whole document is validated
/// first, a user's or route's team against the document and the store: one bad entry
/// and nothing is written, every problem named by its entry (`users[1] "5b44…": …`).
/// Importing the same document again writes nothing and counts every entry `unchanged`.
#[utoipa::path(
    put, path = "/admin/directory", tag = "admin",
    request_body(content = DirectoryDocument, content_type = "application/json", example = json!({
        "teams": [{"teamId": "333ccc134c0319001573485e", "name": "Reception"}],
        "users": [{"userId": "5b4458eb1b2b33001bf213bf", "teamId": "333ccc134c0319001573485e", "name": "Anna", "endpoint": "PJSIP/1001"}],
        "doctors": [{"id": 17, "guid": "f05d7650-a2a0-49dc-99f1-bb57829bc46a", "fullName": "Петрова Мария Ивановна", "role": "врач-терапевт", "speciality": "терапия", "endpoint": "PJSIP/2001"}],
        "inbound": [{"number": "74951234567", "teamId": "333ccc134c0319001573485e", "threadId": "5b0525134c0319001573485e"}]
    })),
    responses(
        (status = 200, body = DirectoryCountsView, example = json!({
            "teams": {"inserted": 1, "updated": 0, "unchanged": 0},
            "users": {"inserted": 1, "updated": 0, "unchanged": 0},
            "doctors": {"inserted": 1, "updated": 0, "unchanged": 0},
            "inbound": {"inserted": 1, "updated": 0, "unchanged": 0}
        })),
        (status = 400, body = ErrorBody, example = json!({
            "success": false,
            "messages": ["users[0] \"5b4458eb1b2b33001bf213bf\": endpoint must be TECH/resource, e.g. PJSIP/1001"]
        })),
        (status = 409, body = ErrorBody, description = "The document disagrees with the stored directory; nothing was written", example = json!({
            "success": false,
            "messages": ["users[0] \"5b4458eb1b2b33001bf213bf\": teamId \"999fff134c0319001573485e\" is neither in the document nor stored"]
        })),
        (status = 413, body = ErrorBody)
    )
)]
pub async fn put_directory(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<DirectoryCountsView>, ApiError> {
    let doc = DirectoryDocument::from_json(&body)
        .map_err(|e| ApiError::bad_request(format!("The directory document is malformed: {e}.")))?;
    match app.store.import_directory(doc).await {
        Ok(counts) => Ok(Json(counts.into())),
        Err(DirectoryImportError::Invalid(messages)) => Err(ApiError {
            status: axum::http::StatusCode::BAD_REQUEST,
            messages,
        }),
        Err(DirectoryImportError::Conflict(messages)) => Err(ApiError {
            status: axum::http::StatusCode::CONFLICT,
            messages,
        }),
        Err(DirectoryImportError::Store(e)) => Err(e.into()),
    }
}

/// What a schedule import did, per kind of entry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScheduleCounts)]
pub struct ScheduleCountsView {
    lpus: UpsertCountsView,
    cells: UpsertCountsView,
    patients: UpsertCountsView,
}

impl From<ScheduleCounts> for ScheduleCountsView {
    fn from(c: ScheduleCounts) -> Self {
        ScheduleCountsView {
            lpus: c.lpus.into(),
            cells: c.cells.into(),
            patients: c.patients.into(),
        }
    }
}

/// Upserts the booking schedule: LPUs (seed 004's `lpu` object and medcall's
/// `utcOffset`), timetable cells and patients. The whole document is validated first, each
/// cell's LPU against the document and the store and its doctor against the directory:
/// one bad entry and nothing is written, every problem named by its entry
/// (`cells[1] "12d4…": …`). Nothing is deleted; a cell's places booked through medcall are
/// kept. Importing the same document again writes nothing and counts every entry
/// `unchanged`.
#[utoipa::path(
    put, path = "/admin/schedule", tag = "admin",
    request_body(content = ScheduleDocument, content_type = "application/json", example = json!({
        "lpus": [{
            "status": {"name": "Online", "lastChangeTime": "2018-08-21T09:15:27+03:00", "ping": 9},
            "guid": "c3c977af-c3b4-4517-9d57-50a6844ec660",
            "name": "ГБУЗ МО «Дубненская городская больница»",
            "type": ["lpu"],
            "phone": "8-496-416-04-13",
            "isChildrenPolyclinic": false,
            "isActive": true,
            "haveSchedule": true,
            "worktimes": {"monday": "8:00 - 18:00", "tuesday": "8:00 - 18:00", "wednesday": "8:00 - 18:00", "thursday": "8:00 - 18:00", "friday": "8:00 - 18:00", "saturday": "", "sunday": ""},
            "utcOffset": "+03:00"
        }],
        "cells": [{
            "guid": "12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5",
            "lpuGuid": "c3c977af-c3b4-4517-9d57-50a6844ec660",
            "docGuid": "f05d7650-a2a0-49dc-99f1-bb57829bc46a",
            "beginTime": "2030-04-18T08:45:00+03:00",
            "endTime": "2030-04-18T09:00:00+03:00",
            "planCount": 1,
            "room": "202",
            "flat": 0,
            "busyType": {"name": "", "type": 1, "code": ""},
            "ageCategories": ["TEEN", "ADULT"]
        }],
        "patients": [{"policyNumber": "5098799789000154", "birthDate": "1985-03-14", "fullName": "Иванов Иван Иванович", "dispensary": ["терапия"]}]
    })),
    responses(
        (status = 200, body = ScheduleCountsView, example = json!({
            "lpus": {"inserted": 1, "updated": 0, "unchanged": 0},
            "cells": {"inserted": 1, "updated": 0, "unchanged": 0},
            "patients": {"inserted": 1, "updated": 0, "unchanged": 0}
        })),
        (status = 400, body = ErrorBody, example = json!({
            "success": false,
            "messages": ["cells[0] \"12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5\": endTime must be after beginTime"]
        })),
        (status = 409, body = ErrorBody, description = "A key given twice, or a cell naming an LPU neither in the document nor stored or a doctor the directory does not have; nothing was written", example = json!({
            "success": false,
            "messages": ["cells[0] \"12d4329b-cbe3-4ca3-8cdc-0e7a8f23e0d5\": docGuid \"f05d7650-a2a0-49dc-99f1-bb57829bc46a\" is not a doctor of the directory"]
        })),
        (status = 413, body = ErrorBody)
    )
)]
pub async fn put_schedule(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<ScheduleCountsView>, ApiError> {
    // A large schedule takes a while to parse: off the async runtime.
    let doc = tokio::task::spawn_blocking(move || ScheduleDocument::from_json(&body))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(format!("The schedule document is malformed: {e}.")))?;
    match app.store.import_schedule(doc).await {
        Ok(counts) => Ok(Json(counts.into())),
        Err(ScheduleImportError::Invalid(messages)) => Err(ApiError {
            status: axum::http::StatusCode::BAD_REQUEST,
            messages,
        }),
        Err(ScheduleImportError::Conflict(messages)) => Err(ApiError {
            status: axum::http::StatusCode::CONFLICT,
            messages,
        }),
        Err(ScheduleImportError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::{PartialSchema, ToSchema};

    #[test]
    fn the_import_answer_keeps_its_field_names_and_schema() {
        let counts = ImportCounts {
            clients: 1,
            contracts: 2,
            requests: 3,
        };
        assert_eq!(
            serde_json::to_value(ImportCountsView::from(counts)).unwrap(),
            json!({"clients": 1, "contracts": 2, "requests": 3})
        );
        assert_eq!(ImportCountsView::name(), "ImportCounts");
        let pinned: serde_json::Value = serde_json::from_str(
            r##"{"type": "object", "description": "How many rows an import wrote.", "required": ["clients", "contracts", "requests"], "properties": {"clients": {"type": "integer", "minimum": 0}, "contracts": {"type": "integer", "minimum": 0}, "requests": {"type": "integer", "minimum": 0}}}"##,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(ImportCountsView::schema()).unwrap(),
            pinned
        );
    }

    #[test]
    fn the_directory_import_answer_keeps_its_field_names_and_schema_names() {
        let kind = |n| UpsertCounts {
            inserted: n,
            updated: n + 1,
            unchanged: n + 2,
        };
        let counts = DirectoryCounts {
            teams: kind(0),
            users: kind(10),
            doctors: kind(20),
            inbound: kind(30),
        };
        assert_eq!(
            serde_json::to_value(DirectoryCountsView::from(counts)).unwrap(),
            json!({
                "teams": {"inserted": 0, "updated": 1, "unchanged": 2},
                "users": {"inserted": 10, "updated": 11, "unchanged": 12},
                "doctors": {"inserted": 20, "updated": 21, "unchanged": 22},
                "inbound": {"inserted": 30, "updated": 31, "unchanged": 32}
            })
        );
        assert_eq!(DirectoryCountsView::name(), "DirectoryCounts");
        assert_eq!(UpsertCountsView::name(), "UpsertCounts");
    }

    #[test]
    fn the_schedule_import_answer_keeps_its_field_names_and_schema_names() {
        let kind = |n| UpsertCounts {
            inserted: n,
            updated: n + 1,
            unchanged: n + 2,
        };
        let counts = ScheduleCounts {
            lpus: kind(0),
            cells: kind(10),
            patients: kind(20),
        };
        assert_eq!(
            serde_json::to_value(ScheduleCountsView::from(counts)).unwrap(),
            json!({
                "lpus": {"inserted": 0, "updated": 1, "unchanged": 2},
                "cells": {"inserted": 10, "updated": 11, "unchanged": 12},
                "patients": {"inserted": 20, "updated": 21, "unchanged": 22}
            })
        );
        assert_eq!(ScheduleCountsView::name(), "ScheduleCounts");
    }
}
