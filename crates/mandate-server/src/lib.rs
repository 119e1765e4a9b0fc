//! Mandate's HTTP surface: the admin API, the ops endpoints and the OpenAPI document.
//!
//! ```text
//!   request ─► metrics ─► body limit ─► route ─► extract (Caller, ApiJson, ApiQuery, path ids)
//!                                                  │ parse once; reject with problem+json
//!                                                  ▼
//!                                            mandate_core::Service ─► dyn Store
//!                                                  │
//!   response ◄──────── Problem::from(CoreError) ◄──┘  (the one error mapping, problem.rs)
//! ```
//!
//! The OpenAPI document is generated from the handlers' annotations and the types they
//! take and return (`utoipa`), never written by hand.

mod extract;
mod metrics;
mod oauth_error;
mod problem;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mandate_core::Service;
use mandate_core::calls::{Broker, Calls};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use metrics::Metrics;
pub use oauth_error::{At, OAuthError};
pub use problem::Problem;

/// The largest request body the admin API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: Service,
    pub metrics: Arc<Metrics>,
    /// Where clients reach this server (discovery documents name it).
    pub public_url: Arc<str>,
    /// The call use cases (approvals, proposals), when this server runs the gateway
    /// (it needs the token service).
    pub calls: Option<Calls>,
    /// The credential broker's vault, when a master key is configured.
    pub vault: Option<Arc<Broker>>,
    openapi: Arc<String>,
}

/// The URL discovery documents use when none is configured.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8731";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mandate",
        description = "Agents act for people under mandates: a human's consent bound to one task.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "ops", description = "Health, readiness, metrics, this document"),
        (name = "humans", description = "People: grantors, data owners, approvers"),
        (name = "agents", description = "Workload identities acting for people"),
        (name = "tools", description = "Tool servers and their tools"),
        (name = "mandates", description = "Consent bound to one task, and its lifecycle"),
        (name = "audit", description = "The hash-chained audit ledger"),
        (name = "policies", description = "The operator's Cedar policy set"),
        (name = "authzen", description = "OpenID AuthZEN Authorization API 1.0"),
        (name = "oauth", description = "The token service: metadata, JWKS, token, introspection, revocation"),
        (name = "approvals", description = "Calls held for a human: approvals and proposals"),
        (name = "reviews", description = "Access reviews: what agents hold and do, findings, revocation"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document and the routes it describes, built from the same source.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::ops::routes())
        .merge(routes::directory::routes())
        .merge(routes::catalog::routes())
        .merge(routes::mandates::routes())
        .merge(routes::audit::routes())
        .merge(routes::policies::routes())
        .merge(routes::authzen::routes())
        .merge(routes::authzen::discovery_routes())
        .merge(routes::oauth::routes())
        .merge(routes::register::routes())
        .merge(routes::held::routes())
        .merge(routes::secrets::routes())
        .merge(routes::reviews::routes())
        .split_for_parts()
}

/// The served OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The whole HTTP application, announcing [`DEFAULT_PUBLIC_URL`].
pub fn app(service: Service, metrics: Arc<Metrics>) -> Router {
    app_at(service, metrics, DEFAULT_PUBLIC_URL)
}

/// The whole HTTP application, reached by clients at `public_url`.
pub fn app_at(service: Service, metrics: Arc<Metrics>, public_url: &str) -> Router {
    app_with_gateway(service, metrics, public_url, None)
}

/// The whole HTTP application with the gateway's routes (`/mcp`, `/proxy`) beside it.
pub fn app_with_gateway(
    service: Service,
    metrics: Arc<Metrics>,
    public_url: &str,
    gateway: Option<mandate_gateway::Gateway>,
) -> Router {
    app_with_console(service, metrics, public_url, gateway, None)
}

/// [`app_with_gateway`], the console also offering sign-in with an external OpenID
/// Provider when `oidc` is given.
pub fn app_with_console(
    service: Service,
    metrics: Arc<Metrics>,
    public_url: &str,
    gateway: Option<mandate_gateway::Gateway>,
    oidc: Option<mandate_console::OidcLogin>,
) -> Router {
    let (routes, doc) = api();
    let openapi = Arc::new(doc.to_json().unwrap_or_else(|_| "{}".to_owned()));
    let state = AppState {
        service,
        metrics: metrics.clone(),
        public_url: Arc::from(public_url),
        calls: gateway.as_ref().map(|g| g.calls().clone()),
        vault: gateway.as_ref().and_then(|g| g.broker().cloned()),
        openapi,
    };
    let mut console =
        mandate_console::Console::new(state.service.clone(), state.calls.clone(), public_url)
            .with_broker(state.vault.clone());
    if let Some(oidc) = oidc {
        console = console.with_oidc(oidc);
    }
    let console = mandate_console::router(console);
    let gateway_routes = gateway.map(|g| g.router()).unwrap_or_default();
    routes
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this endpoint does not accept that method",
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(gateway_routes)
        .merge(console)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::record,
        ))
}
