//! The HTTP surface: routes, authentication, error shapes and the OpenAPI document.
//!
//! Handlers translate between HTTP and the domain; they hold no SQL (that is `store`)
//! and speak no AMI or AGI (that is `ami`/`agi`, reached through the application layer).
//! The OpenAPI document is generated from the handlers' annotations, so a route that is
//! served is a route that is documented.

mod admin;
mod auth;
mod calls;
pub mod conversation;
pub mod error;
mod events;
mod params;
mod pbx;
mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::KeyRing;
use crate::conference::ConferenceHandle;
use crate::config::{HttpConfig, Scope};
use crate::metrics::{HttpLabels, Metrics};
use crate::pbx::PbxRegistry;
use crate::store::Store;
use error::ApiError;

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
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "medcall", description = "Asterisk ↔ clinic integration daemon"),
    modifiers(&BearerAuth),
    tags((name = "system", description = "Health, metrics, this document"), (name = "admin", description = "What the PBX is doing (admin scope)"), (name = "events", description = "Seed 003: leads, incoming calls, call records, arrival, number lookup (events scope)"), (name = "calls", description = "Seed 002: call control of a conversation thread on one ConfBridge (calls scope, limited to the key's teams); every answer is {code, message, data}"))
)]
struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Routes needing `scope`, wrapped in the key check.
fn scoped(
    app: &AppState,
    scope: Scope,
    routes: OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    routes.route_layer(middleware::from_fn_with_state(
        (app.clone(), scope),
        auth::require,
    ))
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
        .merge(
            OpenApiRouter::new()
                .routes(routes!(conversation::start))
                .routes(routes!(conversation::end))
                .routes(routes!(conversation::invite))
                .routes(routes!(conversation::exclude))
                .routes(routes!(conversation::pause))
                .routes(routes!(conversation::unpause))
                .routes(routes!(conversation::thread_calls))
                .route_layer(middleware::from_fn_with_state(
                    app.clone(),
                    conversation::require_calls,
                )),
        )
        .split_for_parts();
    let document = Arc::new(document);
    router
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(document.as_ref().clone()) }),
        )
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
