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
//! without the code, tokens or the client secret. A pending sign-in is kept in the
//! store (core's `Service::hold_external_sign_in`: sealed, only the browser's handle
//! opens it, used once), so the callback may reach any replica behind a load balancer.

use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use mandate_core::CoreError;
use mandate_token::{OidcError, RelyingParty};
use mandate_types::Secret;
use serde::{Deserialize, Serialize};

use crate::layout::Flash;
use crate::login::{LOGIN_COOKIE, Peer, random, render, safe_next};
use crate::session::{cookie, cookie_name, same, set_cookie};
use crate::{Console, UiError};

const FLOW_COOKIE: &str = "mandate_oidc";
const FLOW_SECONDS: i64 = 600;

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
}

/// What a started sign-in needs at its callback, as held in the store (sealed there).
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    code_verifier: String,
    next: String,
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
        }
    }

    pub fn display_name(&self) -> &str {
        &self.display_name
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
    if !crate::login::attempt_allowed(&console, &keys).await? {
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
    let pending = Pending {
        state: authorization.state.expose().clone(),
        nonce: authorization.nonce.expose().clone(),
        code_verifier: authorization.code_verifier.expose().clone(),
        next: next.clone(),
    };
    let held = serde_json::to_string(&pending).map(Secret::new);
    let held = match held {
        Ok(held) => {
            console
                .service
                .hold_external_sign_in(
                    &oidc.tenant,
                    &handle,
                    &held,
                    Duration::seconds(FLOW_SECONDS),
                )
                .await
        }
        Err(e) => Err(CoreError::Internal(e.to_string())),
    };
    if let Err(e) = held {
        tracing::warn!(error = %e, "console OIDC sign-in cannot be held");
        return Ok(refuse(
            &console,
            StatusCode::SERVICE_UNAVAILABLE,
            &next,
            &format!(
                "The sign-in with {} cannot start right now. Try again shortly.",
                oidc.display_name
            ),
        ));
    }
    let mut response = Redirect::to(authorization.url.as_str()).into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(&console, FLOW_COOKIE, &handle, FLOW_SECONDS),
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
    let taken = match cookie(&headers, FLOW_COOKIE) {
        Some(handle) if handle.len() <= 128 => console.service.take_external_sign_in(handle).await,
        _ => Ok(None),
    };
    let taken = match taken {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "console OIDC callback: the held sign-in cannot be read");
            return Ok(refuse(
                &console,
                StatusCode::SERVICE_UNAVAILABLE,
                "/ui/",
                &again,
            ));
        }
    };
    let pending = taken.and_then(|held| serde_json::from_str::<Pending>(held.expose()).ok());
    let Some(pending) = pending else {
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
    let state_ok = q.state.as_deref().is_some_and(|s| same(s, &pending.state));
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
        .finish(
            code,
            &Secret::new(pending.code_verifier),
            &Secret::new(pending.nonce),
            now,
        )
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
