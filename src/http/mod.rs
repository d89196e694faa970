//! The HTTP surface: routes, authentication, error shapes and the OpenAPI document.
//!
//! Handlers translate between HTTP and the domain; they hold no SQL (that is `store`)
//! and speak no AMI or AGI (that is `ami`/`agi`, reached through the application layer).
//! The OpenAPI document is generated from the handlers' annotations, so a route that is
//! served is a route that is documented. What the key middleware adds (the bearer
//! requirement with its scope, 401 and 403) is written into the document by [`scoped`],
//! the same call that installs the middleware, so the two cannot disagree.

mod admin;
mod auth;
pub mod booking;
mod call_media;
mod calls;
pub mod consultation;
pub mod consultation_body;
pub mod conversation;
pub mod error;
mod events;
pub mod files;
mod notifications;
mod params;
mod pbx;
pub mod streams;
mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{HttpMethod, PathItem};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::KeyRing;
use crate::conference::ConferenceHandle;
use crate::config::{HttpConfig, Scope};
use crate::media::stream::StreamHub;
use crate::metrics::{HttpLabels, Metrics};
use crate::pbx::PbxRegistry;
use crate::store::Store;
use error::{ApiError, ErrorBody, KeyRefusals};

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub keys: Arc<KeyRing>,
    pub pbxs: PbxRegistry,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// The conference control of the PBX that holds conversation calls (`None` with no
    /// PBX configured: the call routes answer 502).
    pub conference: Option<ConferenceHandle>,
    /// The largest request body (`http.max_body_bytes`), for routes that read the body
    /// themselves to answer an oversized one in their own shape.
    pub max_body_bytes: usize,
    /// Live streams of conference audio, served at `/streams/{token}` (no key: the
    /// token is the credential).
    pub streams: StreamHub,
    /// Fetches and converts `call.audio/play` files (`None` without a calls PBX).
    pub media: Option<Arc<crate::media::library::MediaLibrary>>,
    /// `http.public_url` (or `http://<listen>`): the base of `fileUrl` and `streamUrl`.
    pub public_base: String,
    /// How long `call.recording/stop` waits for the WAV to be final.
    pub recording_wait: std::time::Duration,
    /// The booking clients and their signature window.
    pub booking: Arc<booking::BookingAccess>,
    /// The consultation runner (`None` with no PBX configured: the consultation
    /// routes that need the PBX answer 503).
    pub consultations: Option<crate::consultation::run::ConsultationHandle>,
    /// Where attachments are kept (`<data>/attachments`, one file per sha256).
    pub attachments_dir: std::path::PathBuf,
    /// Woken when a notification is due at once (a re-send).
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// What a consultation's create request may carry.
    pub consultation_body: consultation_body::BodyLimits,
    /// `duration` when a create request gives none.
    pub default_duration_min: u32,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "medcall", description = "Asterisk ↔ clinic integration daemon"),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, consultation::StatusWord, consultation::OrderWord)),
    tags((name = "system", description = "Health, metrics, this document"), (name = "admin", description = "What the PBX is doing (admin scope)"), (name = "events", description = "Seed 003: leads, incoming calls, call records, arrival, number lookup (events scope)"), (name = "calls", description = "Seed 002: call control of a conversation thread on one ConfBridge (calls scope, limited to the key's teams); every answer is {code, message, data}"), (name = "streams", description = "Seed 002: live audio of a call (call.stream/start's streamUrl), chunked WAV or WebSocket; the URL's token is the credential"), (name = "consultations", description = "Seeds 000/001: telemedicine consultations, internet calls (/api/v1/voiprequest) and callbacks (/api/v1/callbackrequest) (consultations scope); errors are {success: false, messages}"), (name = "booking", description = "Seed 004: booking a timetable cell (booking scope); every request signed (X-Client-Id, X-Timestamp, X-Signature); errors are {code, message, type}"))
)]
struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: `Authorization: Bearer mc_…`. Each operation names the \
                         scope its key needs (`admin` includes every other scope).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Routes needing `scope`, wrapped in the key check; their operations are documented as
/// needing a bearer key with `scope` and answering 401 and 403 (an operation that
/// documents its own security or its own 401/403 keeps them).
fn scoped(
    app: &AppState,
    scope: Scope,
    mut routes: OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    document_key_check(routes.get_openapi_mut(), scope);
    routes.route_layer(middleware::from_fn_with_state(
        (app.clone(), scope),
        auth::require,
    ))
}

/// The document as JSON, with what utoipa's model cannot hold: `allowEmptyValue` on every
/// optional query parameter, because every handler reads an empty one as left out
/// (`calls::filter_from`, `params::Params::text`). `Null` (answered as a 500) if the
/// document cannot be serialized, which a generated document never fails to be.
fn served(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut json = match serde_json::to_value(doc) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document cannot be serialized");
            return serde_json::Value::Null;
        }
    };
    let paths = json
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut);
    for item in paths.into_iter().flat_map(|p| p.values_mut()) {
        let operations = item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut());
        for op in operations {
            let params = op
                .get_mut("parameters")
                .and_then(serde_json::Value::as_array_mut);
            for param in params.into_iter().flatten() {
                let Some(param) = param.as_object_mut() else {
                    continue;
                };
                let optional_query = param.get("in").and_then(|v| v.as_str()) == Some("query")
                    && param.get("required").and_then(serde_json::Value::as_bool) != Some(true);
                if optional_query {
                    param.insert("allowEmptyValue".into(), serde_json::Value::Bool(true));
                }
            }
        }
    }
    json
}

/// Every method an OpenAPI path item can hold, with its name.
const METHODS: [(HttpMethod, &str); 8] = [
    (HttpMethod::Get, "get"),
    (HttpMethod::Put, "put"),
    (HttpMethod::Post, "post"),
    (HttpMethod::Delete, "delete"),
    (HttpMethod::Options, "options"),
    (HttpMethod::Head, "head"),
    (HttpMethod::Patch, "patch"),
    (HttpMethod::Trace, "trace"),
];

/// Adds what `auth::require` does to every operation of `doc`.
fn document_key_check(doc: &mut utoipa::openapi::OpenApi, scope: Scope) {
    let refusals = KeyRefusals::responses();
    for item in doc.paths.paths.values_mut() {
        for (method, _) in METHODS {
            let Some(op) = operation_mut(item, method) else {
                continue;
            };
            op.security
                .get_or_insert_with(|| vec![SecurityRequirement::new(BEARER, [scope.as_str()])]);
            for (status, response) in &refusals {
                op.responses
                    .responses
                    .entry(status.clone())
                    .or_insert_with(|| response.clone());
            }
        }
    }
}

/// A handler serving several methods (the events routes take GET and POST) is one
/// annotation, so its operations share an operation id; each gets its method appended
/// (`lead_get`, `lead_post`), as generated clients need one name per operation.
fn one_operation_id_each(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let ids: Vec<String> = [
            &item.get,
            &item.put,
            &item.post,
            &item.delete,
            &item.options,
            &item.head,
            &item.patch,
            &item.trace,
        ]
        .into_iter()
        .flatten()
        .filter_map(|op| op.operation_id.clone())
        .collect();
        for (method, name) in METHODS {
            let Some(op) = operation_mut(item, method) else {
                continue;
            };
            if let Some(id) = &mut op.operation_id {
                if ids.iter().filter(|other| *other == id).count() > 1 {
                    id.push('_');
                    id.push_str(name);
                }
            }
        }
    }
}

fn operation_mut(
    item: &mut PathItem,
    method: HttpMethod,
) -> Option<&mut utoipa::openapi::path::Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        HttpMethod::Options => item.options.as_mut(),
        HttpMethod::Head => item.head.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Trace => item.trace.as_mut(),
    }
}

/// The whole HTTP application.
pub fn router(app: AppState, config: &HttpConfig) -> Router {
    let metrics_route = OpenApiRouter::new().routes(routes!(system::metrics));
    let metrics_route = if config.metrics_require_key {
        scoped(&app, Scope::Admin, metrics_route)
    } else {
        metrics_route
    };
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(system::openapi))
        .routes(routes!(streams::listen))
        .routes(routes!(call_media::recording_file))
        .merge(metrics_route)
        .merge(scoped(
            &app,
            Scope::Admin,
            OpenApiRouter::new()
                .routes(routes!(pbx::list))
                .routes(routes!(calls::list))
                .routes(routes!(calls::detail)),
        ))
        .merge(scoped(
            &app,
            Scope::Admin,
            OpenApiRouter::new()
                .routes(routes!(admin::put_clients))
                .routes(routes!(admin::put_directory))
                .routes(routes!(admin::put_schedule))
                .layer(DefaultBodyLimit::max(config.max_import_bytes)),
        ))
        .merge(scoped(
            &app,
            Scope::Events,
            OpenApiRouter::new()
                .routes(routes!(events::lead))
                .routes(routes!(events::call_asterisk))
                .routes(routes!(events::call_detail_record))
                .routes(routes!(events::coming))
                .routes(routes!(events::number_from_id)),
        ))
        .merge(scoped(
            &app,
            Scope::Consultations,
            OpenApiRouter::new()
                .routes(routes!(consultation::voip_start))
                .routes(routes!(consultation::callback_start))
                // The create routes read their body bounded themselves (the attachment).
                .layer(DefaultBodyLimit::disable()),
        ))
        .merge(scoped(
            &app,
            Scope::Consultations,
            OpenApiRouter::new()
                .routes(routes!(consultation::voip_get))
                .routes(routes!(consultation::voip_attachment))
                .routes(routes!(consultation::voip_list))
                .routes(routes!(consultation::voip_terminate))
                .routes(routes!(consultation::voip_timeout))
                .routes(routes!(consultation::callback_get))
                .routes(routes!(consultation::callback_attachment))
                .routes(routes!(consultation::callback_list))
                .routes(routes!(consultation::callback_terminate))
                .routes(routes!(notifications::list))
                .routes(routes!(notifications::resend)),
        ))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(booking::reserve))
                .routes(routes!(booking::confirm))
                .routes(routes!(booking::cancel, booking::read_ticket))
                .route_layer(middleware::from_fn_with_state(
                    app.clone(),
                    booking::require_booking,
                )),
        )
        .merge(
            OpenApiRouter::new()
                .routes(routes!(conversation::start))
                .routes(routes!(conversation::end))
                .routes(routes!(conversation::invite))
                .routes(routes!(conversation::exclude))
                .routes(routes!(conversation::pause))
                .routes(routes!(conversation::unpause))
                .routes(routes!(conversation::thread_calls))
                .routes(routes!(call_media::play))
                .routes(routes!(call_media::stop_audio))
                .routes(routes!(call_media::start_recording))
                .routes(routes!(call_media::stop_recording))
                .routes(routes!(call_media::start_stream))
                .routes(routes!(call_media::stop_stream))
                .route_layer(middleware::from_fn_with_state(
                    app.clone(),
                    conversation::require_calls,
                )),
        )
        .split_for_parts();
    let mut document = document;
    one_operation_id_each(&mut document);
    router
        .layer(axum::Extension(system::Document(Arc::new(served(
            &document,
        )))))
        .fallback(|| async { ApiError::not_found("No such route.") })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

async fn count_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response.into_response()
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets in-flight
/// requests finish.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
