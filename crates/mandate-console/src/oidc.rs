//! "Sign in with …": console sign-in through an external OpenID Provider.
//!
//! ```text
//!   GET /ui/login/oidc?next  ─► state, nonce, PKCE verifier kept here (10 min, single use),
//!                               the browser holds only a random handle (HttpOnly cookie)
//!                           ─► 303 to the provider's authorization endpoint
//!   GET /ui/login/oidc/callback?code&state[&iss]  (or ?error)
//!      handle cookie ─► pending (removed) ─► state matches ─► iss (RFC 9207) matches
//!      ─► RelyingParty::finish (token endpoint, ID token verified) ─► verified email
//!      ─► Service::sign_in_external (an existing human of the tenant) ─► session cookie
//! ```
//!
//! Every refusal lands on the sign-in page with a plain message; the reason is logged
//! without the code, tokens or the client secret. The pending sign-ins live in this
//! replica's memory: behind a load balancer the round trip must return to the replica
//! that started it (sticky sessions), or the person is asked to start again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::CoreError;
use mandate_token::{OidcError, RelyingParty};
use mandate_types::Secret;
use serde::Deserialize;

use crate::layout::Flash;
use crate::login::{LOGIN_COOKIE, Peer, random, render, safe_next};
use crate::session::{cookie, cookie_name, same, set_cookie};
use crate::{Console, UiError};

const FLOW_COOKIE: &str = "mandate_oidc";
const FLOW_SECONDS: u64 = 600;
const MAX_PENDING: usize = 10_000;

/// The console's external identity provider.
#[derive(Debug)]
pub struct OidcLogin {
    relying_party: RelyingParty,
    /// Shown as "Sign in with {display_name}".
    display_name: String,
    /// The tenant whose humans sign in this way (by name).
    tenant: String,
    /// The ID token claim holding the human's email.
    email_claim: String,
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    state: Secret<String>,
    nonce: Secret<String>,
    code_verifier: Secret<String>,
    next: String,
    started: Instant,
}

impl OidcLogin {
    pub fn new(
        relying_party: RelyingParty,
        display_name: &str,
        tenant: &str,
        email_claim: &str,
    ) -> OidcLogin {
        OidcLogin {
            relying_party,
            display_name: display_name.to_owned(),
            tenant: tenant.to_owned(),
            email_claim: email_claim.to_owned(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    fn keep(&self, handle: String, pending: Pending) -> bool {
        let Ok(mut map) = self.pending.lock() else {
            return false;
        };
        if map.len() >= MAX_PENDING {
            map.retain(|_, p| p.started.elapsed() < Duration::from_secs(FLOW_SECONDS));
            if map.len() >= MAX_PENDING {
                return false;
            }
        }
        map.insert(handle, pending);
        true
    }

    /// The pending sign-in of this handle, once, while it lasts.
    fn take(&self, handle: &str) -> Option<Pending> {
        let mut map = self.pending.lock().ok()?;
        map.remove(handle)
            .filter(|p| p.started.elapsed() < Duration::from_secs(FLOW_SECONDS))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
}

fn refuse(console: &Console, status: StatusCode, next: &str, message: &str) -> Response {
    let mut response = render(
        console,
        status,
        next,
        "",
        Some(&Flash::Error(message.to_owned())),
    );
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(console, FLOW_COOKIE, "", 0));
    response
}

/// Starts a sign-in with the provider: remembers the flow, sends the browser there.
pub(crate) async fn start(
    State(console): State<Console>,
    Peer(peer): Peer,
    Query(q): Query<StartQuery>,
) -> Result<Response, UiError> {
    let Some(oidc) = console.oidc.clone() else {
        return Err(UiError::NotFound);
    };
    let next = safe_next(q.next.as_deref());
    let keys: Vec<String> = peer
        .map(|a| vec![format!("oidc:{}", a.ip())])
        .unwrap_or_default();
    if !console.limiter.allow(&keys) {
        return Ok(refuse(
            &console,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &UiError::TooManyAttempts.shown().1,
        ));
    }
    let now = console.service.clock().now().timestamp();
    let authorization = match oidc.relying_party.start(now).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(reason = %e, "console OIDC sign-in cannot start");
            return Ok(refuse(
                &console,
                StatusCode::SERVICE_UNAVAILABLE,
                &next,
                &format!(
                    "{} cannot be reached right now. Try again shortly, or sign in with your password.",
                    oidc.display_name
                ),
            ));
        }
    };
    let handle = random();
    let kept = oidc.keep(
        handle.clone(),
        Pending {
            state: authorization.state,
            nonce: authorization.nonce,
            code_verifier: authorization.code_verifier,
            next,
            started: Instant::now(),
        },
    );
    if !kept {
        return Err(UiError::TooManyAttempts);
    }
    let mut response = Redirect::to(authorization.url.as_str()).into_response();
    let max_age = i64::try_from(FLOW_SECONDS).unwrap_or(600);
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(&console, FLOW_COOKIE, &handle, max_age),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// The provider sent the browser back: check everything, then open a session.
pub(crate) async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, UiError> {
    let Some(oidc) = console.oidc.clone() else {
        return Err(UiError::NotFound);
    };
    let name = oidc.display_name.clone();
    let again = format!("The sign-in with {name} did not complete. Please try again.");
    let Some(pending) = cookie(&headers, FLOW_COOKIE).and_then(|h| oidc.take(h)) else {
        tracing::info!("console OIDC callback refused: no pending sign-in for this browser");
        return Ok(refuse(
            &console,
            StatusCode::BAD_REQUEST,
            "/ui/",
            &format!(
                "This sign-in with {name} expired or was started in another browser. Please try again."
            ),
        ));
    };
    let next = pending.next.clone();
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| same(s, pending.state.expose()));
    if !state_ok {
        tracing::warn!("console OIDC callback refused: state mismatch");
        return Ok(refuse(&console, StatusCode::BAD_REQUEST, &next, &again));
    }
    if let Some(iss) = q.iss.as_deref()
        && iss != oidc.relying_party.issuer()
    {
        tracing::warn!("console OIDC callback refused: `iss` is not our provider");
        return Ok(refuse(&console, StatusCode::BAD_REQUEST, &next, &again));
    }
    if let Some(error) = q.error.as_deref() {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '_')
            .take(40)
            .collect();
        tracing::info!(error = %code, "console OIDC sign-in refused by the provider");
        return Ok(refuse(
            &console,
            StatusCode::UNAUTHORIZED,
            &next,
            &format!("{name} did not sign you in ({code})."),
        ));
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return Ok(refuse(&console, StatusCode::BAD_REQUEST, &next, &again));
    };
    let now = console.service.clock().now().timestamp();
    let verified = oidc
        .relying_party
        .finish(code, &pending.code_verifier, &pending.nonce, now)
        .await;
    let email = match verified.and_then(|t| t.verified_email(&oidc.email_claim)) {
        Ok(email) => email,
        Err(e) => {
            let status = match e {
                OidcError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                OidcError::Refused(_) | OidcError::IdToken(_) => StatusCode::UNAUTHORIZED,
            };
            tracing::warn!(reason = %e, "console OIDC sign-in refused");
            return Ok(refuse(&console, status, &next, &again));
        }
    };
    match console
        .service
        .sign_in_external(&oidc.tenant, &email, oidc.relying_party.issuer())
        .await
    {
        Ok((secret, signed)) => {
            let ttl = (signed.expires_at - console.service.clock().now()).num_seconds();
            let mut response = Redirect::to(&next).into_response();
            let h = response.headers_mut();
            h.append(
                SET_COOKIE,
                set_cookie(&console, cookie_name(&console), secret.expose(), ttl),
            );
            h.append(SET_COOKIE, set_cookie(&console, FLOW_COOKIE, "", 0));
            h.append(SET_COOKIE, set_cookie(&console, LOGIN_COOKIE, "", 0));
            Ok(response)
        }
        Err(CoreError::Unauthenticated) => Ok(refuse(
            &console,
            StatusCode::FORBIDDEN,
            &next,
            &format!(
                "{name} signed you in, but no one in this console has that email, or the account is locked. Ask an administrator to add you."
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
