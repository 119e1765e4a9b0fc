//! Who is signed in, and the checks every request passes.
//!
//! The session cookie is `HttpOnly`, `SameSite=Lax` (a link from an MCP client to the
//! consent page must arrive signed in; nothing changes state on GET), `Path=/`, and —
//! when browsers reach us over HTTPS — `Secure` with the `__Host-` prefix. Its value is
//! a random secret of which the store keeps only a hash. Every form carries the
//! session's CSRF token, and every state-changing request must come from our origin.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, ORIGIN, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mandate_core::SignedIn;
use maud::{Markup, html};
use sha2::{Digest, Sha256};

use crate::{Console, Form, UiError};

const SESSION_COOKIE: &str = "mandate_session";
const SECURE_SESSION_COOKIE: &str = "__Host-mandate_session";
/// What a page may load: only our own stylesheet and script, no frames, forms posting
/// only here. A handler may set its own (the consent page allows its client's redirect).
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The signed-in human of a console request.
#[derive(Debug, Clone)]
pub struct Session {
    pub signed: SignedIn,
    pub(crate) secret: String,
}

impl Session {
    /// Refuses a form that does not carry this session's token.
    pub fn check(&self, form: &Form) -> Result<(), UiError> {
        match form.raw("csrf") {
            Some(sent) if same(sent, &self.signed.csrf) => Ok(()),
            _ => Err(UiError::Csrf),
        }
    }

    pub fn principal(&self) -> mandate_domain::Principal {
        self.signed.principal()
    }

    /// The tenant's admin principal, for humans in the admin group.
    pub fn admin(&self) -> Option<mandate_domain::Principal> {
        self.signed.admin()
    }

    /// The admin principal where the human is an admin, the human otherwise: for lists
    /// and views where an admin sees the whole tenant.
    pub fn viewer(&self) -> mandate_domain::Principal {
        self.admin().unwrap_or_else(|| self.principal())
    }

    /// One thing as this human may see it; where the human finds nothing and is an
    /// admin, as the tenant's admin. The answer says which principal saw it, so that
    /// what follows (a decision, a consent) is done as that same principal.
    pub(crate) async fn seen_by<T, Fut>(
        &self,
        look: impl Fn(mandate_domain::Principal) -> Fut,
    ) -> Result<(T, mandate_domain::Principal), UiError>
    where
        Fut: std::future::Future<Output = Result<T, mandate_core::CoreError>>,
    {
        let me = self.principal();
        match look(me).await {
            Ok(found) => Ok((found, me)),
            Err(mandate_core::CoreError::NotFound { .. }) if self.admin().is_some() => {
                let admin = self.viewer();
                Ok((look(admin).await?, admin))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Constant-time comparison of two tokens (by their hashes, so lengths leak nothing).
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The hidden field every form of a signed-in page carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.signed.csrf); }
}

pub(crate) fn cookie_name(console: &Console) -> &'static str {
    if console.secure() {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// A cookie of ours: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` over HTTPS.
pub(crate) fn set_cookie(console: &Console, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if console.secure() { "; Secure" } else { "" };
    let cookie =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The value of cookie `name` in the request, if sent once.
pub(crate) fn cookie<'a>(parts: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = parts
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v);
    let first = found.next()?;
    // Two cookies of one name (one planted for a parent domain) are not trusted.
    found.next().is_none().then_some(first)
}

impl FromRequestParts<Console> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, UiError> {
        let next = if parts.method == Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_owned()
        } else {
            "/ui/".to_owned()
        };
        let Some(secret) = cookie(&parts.headers, cookie_name(console)) else {
            return Err(UiError::SignIn { next });
        };
        match console.service.console_session(secret).await? {
            Some(signed) => Ok(Session {
                signed,
                secret: secret.to_owned(),
            }),
            None => Err(UiError::SignIn { next }),
        }
    }
}

/// Every console request: state changes only from our own origin; every answer with
/// headers that keep it out of frames, caches and other sites' reach.
pub(crate) async fn guard(State(console): State<Console>, req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes {
        let headers = req.headers();
        let origin_ok = headers
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|o| o == console.origin());
        let site_ok = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|s| s == "same-origin" || s == "none");
        if !origin_ok || !site_ok {
            return with_headers(UiError::Csrf.into_response());
        }
    }
    with_headers(next.run(req).await)
}

fn with_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    if !h.contains_key(CONTENT_SECURITY_POLICY) {
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn cookies_are_read_once_and_only_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; mandate_session=mds_x; b=2"),
        );
        assert_eq!(cookie(&h, "mandate_session"), Some("mds_x"));
        assert_eq!(cookie(&h, "mandate"), None);
        h.append(
            COOKIE,
            HeaderValue::from_static("mandate_session=mds_planted"),
        );
        assert_eq!(cookie(&h, "mandate_session"), None);
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "x"));
    }
}
