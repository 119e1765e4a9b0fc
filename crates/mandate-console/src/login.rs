//! Sign-in and sign-out. Attempts are rate-limited per sign-in name and per client
//! address, and accounts lock after repeated failures; both are counted in the store,
//! so every replica behind a load balancer counts the same attempts.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::CoreError;
use mandate_types::Secret;
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Flash, bare, flash_box};
use crate::session::{cookie, cookie_name, same, set_cookie};
use crate::{Console, Form, Session, UiError};

pub(crate) const LOGIN_COOKIE: &str = "mandate_login";
const ATTEMPTS_PER_MINUTE: u32 = 10;

/// Counts a sign-in attempt under each of `keys` across every replica (the store
/// keeps the count); false when any is over [`ATTEMPTS_PER_MINUTE`].
pub(crate) async fn attempt_allowed(console: &Console, keys: &[String]) -> Result<bool, UiError> {
    Ok(console
        .service
        .attempt_allowed("console-sign-in", keys, ATTEMPTS_PER_MINUTE)
        .await?)
}

/// The client's address, when the server recorded it.
#[derive(Debug)]
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Only a path of this console: never another site, never a scheme-relative URL.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n.starts_with("/ui/") || n == "/ui" || n.starts_with("/oauth2/"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() <= 4096 =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

pub(crate) fn random() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn login_page(
    next: &str,
    email: &str,
    token: &str,
    problem: Option<&Flash>,
    provider: Option<&str>,
) -> Markup {
    bare(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(f) = problem { (flash_box(f)) }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input id="email" type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            @if let Some(name) = provider {
                // A link, not a form: `form-action 'self'` would stop the redirect to
                // the provider.
                p class="oidc" {
                    a href=(format!("/ui/login/oidc?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())) {
                        "Sign in with " (name)
                    }
                }
            }
        },
    )
}

/// The form, with a fresh pre-session token in a cookie of its own (login CSRF).
pub(crate) fn render(
    console: &Console,
    status: axum::http::StatusCode,
    next: &str,
    email: &str,
    problem: Option<&Flash>,
) -> Response {
    let token = random();
    let provider = console.oidc.as_ref().map(|o| o.display_name());
    let mut response = (status, login_page(next, email, &token, problem, provider)).into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(console, LOGIN_COOKIE, &token, 600));
    response
}

pub(crate) async fn form(State(console): State<Console>, Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    render(&console, axum::http::StatusCode::OK, &next, "", None)
}

pub(crate) async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    Peer(peer): Peer,
    form: Form,
) -> Result<Response, UiError> {
    let next = safe_next(form.get("next"));
    let email: String = form.get("email").unwrap_or("").chars().take(254).collect();
    let token_ok = match (cookie(&headers, LOGIN_COOKIE), form.raw("csrf")) {
        (Some(c), Some(f)) => same(c, f),
        _ => false,
    };
    if !token_ok {
        let f = Flash::Error(
            "This sign-in form expired. Please enter your email and password again.".to_owned(),
        );
        return Ok(render(
            &console,
            axum::http::StatusCode::FORBIDDEN,
            &next,
            &email,
            Some(&f),
        ));
    }
    let (Some(_), Some(password)) = (form.get("email"), form.raw("password")) else {
        let f = Flash::Error("Enter your email and your password.".to_owned());
        return Ok(render(
            &console,
            axum::http::StatusCode::BAD_REQUEST,
            &next,
            &email,
            Some(&f),
        ));
    };
    let mut keys = vec![format!("name:{}", email.to_ascii_lowercase())];
    if let Some(addr) = peer {
        keys.push(format!("addr:{}", addr.ip()));
    }
    if !attempt_allowed(&console, &keys).await? {
        let f = Flash::Error(UiError::TooManyAttempts.shown().1);
        return Ok(render(
            &console,
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            &next,
            &email,
            Some(&f),
        ));
    }
    match console
        .service
        .sign_in(&email, Secret::new(password.to_owned()))
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
            h.append(SET_COOKIE, set_cookie(&console, LOGIN_COOKIE, "", 0));
            Ok(response)
        }
        Err(CoreError::Unauthenticated) => {
            let f = Flash::Error(
                "Wrong email or password, or the account is locked for a while after repeated failures."
                    .to_owned(),
            );
            Ok(render(
                &console,
                axum::http::StatusCode::UNAUTHORIZED,
                &next,
                &email,
                Some(&f),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn logout(
    State(console): State<Console>,
    session: Session,
    form: Form,
) -> Result<Response, UiError> {
    session.check(&form)?;
    console.service.sign_out(&session.secret).await?;
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(&console, cookie_name(&console), "", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_console() {
        assert_eq!(safe_next(Some("/ui/mandates/mdt_1")), "/ui/mandates/mdt_1");
        assert_eq!(
            safe_next(Some("/oauth2/authorize?x=1")),
            "/oauth2/authorize?x=1"
        );
        for hostile in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/\\evil.example",
            "/ui/\u{0}",
            "javascript:alert(1)",
            "/v1/agents",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/ui/", "{hostile}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }
}
