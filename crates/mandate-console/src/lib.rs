//! The console at `/ui/`: HTML rendered by the binary itself (no build step, nothing
//! fetched from elsewhere), for the humans who consent, approve and review, and for the
//! operators of a tenant.
//!
//! ```text
//!   browser ─► security headers ─► route ─► Session (cookie ─► store) ─► CSRF check (POST)
//!                                             │ the signed-in human is the Principal
//!                                             ▼
//!                      mandate_core::Service / mandate_core::calls::Calls (the same use
//!                      cases and permission checks as the admin API)
//!                                             │
//!   page ◄── layout::page(...) ◄──────────────┘   errors: UiError, rendered in one place
//! ```
//!
//! The console never holds more authority than the API would give the same human: it
//! calls the use cases with `Principal::Human`, or with the tenant's `Principal::Admin`
//! only for humans in the `mandate-admins` group.

#![forbid(unsafe_code)]

mod agents;
mod approvals;
mod audit;
mod authorize;
mod charts;
mod connections;
mod error;
mod form;
mod layout;
mod login;
mod mandates;
mod names;
mod oidc;
mod operators;
mod overview;
mod policy;
mod reviews;
mod session;
mod tools;
mod tree;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use mandate_core::Service;
use mandate_core::calls::Calls;

pub use error::UiError;
pub use form::Form;
pub use layout::{Flash, page};
pub use oidc::OidcLogin;
pub use session::{Session, csrf_field};

/// What every console page can reach.
#[derive(Debug, Clone)]
pub struct Console {
    pub service: Service,
    /// The call use cases (approvals, proposals), when the server runs the gateway.
    pub calls: Option<Calls>,
    /// Where browsers reach this server, e.g. `https://mandate.example.com`.
    pub public_url: Arc<str>,
    /// "Sign in with …", when an external identity provider is configured.
    oidc: Option<Arc<OidcLogin>>,
    /// The credential broker (people's connections), when a master key is configured.
    broker: Option<Arc<mandate_core::calls::Broker>>,
}

impl Console {
    pub fn new(service: Service, calls: Option<Calls>, public_url: &str) -> Self {
        Self {
            service,
            calls,
            public_url: Arc::from(public_url.trim_end_matches('/')),
            oidc: None,
            broker: None,
        }
    }

    /// Shows people their connections to upstream tool servers.
    #[must_use]
    pub fn with_broker(mut self, broker: Option<Arc<mandate_core::calls::Broker>>) -> Self {
        self.broker = broker;
        self
    }

    /// Offers sign-in with an external OpenID Provider beside the password form.
    #[must_use]
    pub fn with_oidc(mut self, oidc: OidcLogin) -> Self {
        self.oidc = Some(Arc::new(oidc));
        self
    }

    /// Cookies are `Secure` (and `__Host-` named) when browsers reach us over HTTPS.
    pub fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The origin forms must come from.
    pub fn origin(&self) -> &str {
        origin_of(&self.public_url)
    }
}

fn origin_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path_at = rest
        .find('/')
        .map_or(url.len(), |i| url.len() - rest.len() + i);
    url.get(..path_at).unwrap_or(url)
}

/// The console's routes, to merge beside the API.
pub fn router(console: Console) -> Router {
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::to("/ui/") }),
        )
        .route("/ui/", get(mandates::home))
        .route("/ui/assets/console.css", get(layout::stylesheet))
        .route("/ui/assets/console.js", get(layout::script))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/login/oidc", get(oidc::start))
        .route("/ui/login/oidc/callback", get(oidc::callback))
        .route("/ui/logout", post(login::logout))
        .route("/ui/overview", get(overview::show))
        .route("/ui/approvals", get(approvals::inbox))
        .route("/ui/approvals/live", get(approvals::live))
        .route("/ui/approvals/{id}", get(approvals::show))
        .route("/ui/approvals/{id}/decide", post(approvals::decide))
        .route("/ui/proposals/{id}", get(approvals::proposal))
        .route(
            "/ui/proposals/{id}/decide",
            post(approvals::decide_proposal),
        )
        .route("/ui/mandates", get(mandates::list))
        .route("/ui/mandates/{id}", get(mandates::show))
        .route("/ui/mandates/{id}/consent", post(mandates::consent))
        .route("/ui/mandates/{id}/end", post(mandates::end))
        .route("/ui/mandates/{id}/rollback", post(mandates::rollback))
        // Access reviews: admins review every agent, anyone else those they own or sponsor.
        .route("/ui/reviews", get(reviews::show))
        .route("/ui/reviews/mark", post(reviews::mark))
        .route("/ui/reviews/revoke", post(reviews::revoke))
        // The operators' pages: the tenant's admins only; anyone else sees "nothing here".
        .route("/ui/agents", get(agents::list))
        .route("/ui/agents/{id}", get(agents::show))
        .route("/ui/agents/{id}/status", post(agents::set_status))
        .route("/ui/tools", get(tools::list))
        .route("/ui/tools/{id}", get(tools::show).post(tools::update))
        .route("/ui/policies", get(policy::show))
        .route("/ui/policies/validate", post(policy::validate))
        .route("/ui/policies/test", post(policy::test))
        .route("/ui/policies/replay", post(policy::replay))
        .route("/ui/audit", get(audit::search))
        .route("/ui/audit/verify", post(audit::verify))
        .route("/ui/connections", get(connections::list))
        .route("/ui/connections/callback", get(connections::callback))
        .route("/ui/connections/{id}/connect", get(connections::connect))
        .route("/ui/connections/{id}/revoke", post(connections::revoke))
        .route(
            "/oauth2/authorize",
            get(authorize::show).post(authorize::answer),
        )
        .route("/ui/{*rest}", get(|| async { UiError::NotFound }))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            session::guard,
        ))
        .with_state(console)
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://127.0.0.1:8731"), "http://127.0.0.1:8731");
        assert_eq!(origin_of("https://m.example/base"), "https://m.example");
        assert_eq!(origin_of("weird"), "weird");
    }
}
