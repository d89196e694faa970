//! Admin routes that load reference data (SPEC §8): `PUT /admin/clients` takes the same
//! JSON document as `medcall import clients FILE`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use super::AppState;
use super::error::{ApiError, BadRequest, ErrorBody, PayloadTooLarge};
use crate::crm::import::ClientsDocument;
use crate::store::ImportCounts;

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
}
