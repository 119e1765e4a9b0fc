//! Every way a console request can fail, and how each is shown: the one place where
//! errors of the use cases become pages.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::CoreError;
use maud::html;

use crate::layout;

#[derive(Debug)]
pub enum UiError {
    /// Not signed in: go to the sign-in page, then come back to `next`.
    SignIn {
        next: String,
    },
    NotFound,
    /// A form without this session's token, or posted from another origin.
    Csrf,
    TooManyAttempts,
    /// An OAuth authorization request whose client or redirect URI cannot be trusted:
    /// shown here, never redirected.
    OAuthPage(String),
    /// An OAuth error for the client, at its registered redirect URI (RFC 6749 §4.1.2.1).
    OAuthRedirect(String),
    Core(CoreError),
}

impl From<mandate_core::AuthorizeError> for UiError {
    fn from(e: mandate_core::AuthorizeError) -> Self {
        match e {
            mandate_core::AuthorizeError::Page(m) => UiError::OAuthPage(m),
            mandate_core::AuthorizeError::Redirect(to) => UiError::OAuthRedirect(to),
            mandate_core::AuthorizeError::Core(c) => UiError::Core(c),
        }
    }
}

impl From<CoreError> for UiError {
    fn from(e: CoreError) -> Self {
        UiError::Core(e)
    }
}

impl UiError {
    /// Status and what the person is told; internal details stay in the log.
    pub fn shown(&self) -> (StatusCode, String) {
        match self {
            UiError::SignIn { .. } => (StatusCode::UNAUTHORIZED, "Please sign in.".to_owned()),
            UiError::NotFound => (
                StatusCode::NOT_FOUND,
                "There is nothing here, or you may not see it.".to_owned(),
            ),
            UiError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this console. Go back, reload the page and try again."
                    .to_owned(),
            ),
            UiError::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts. Wait a minute and try again.".to_owned(),
            ),
            UiError::OAuthPage(m) => (StatusCode::BAD_REQUEST, m.clone()),
            UiError::OAuthRedirect(_) => (StatusCode::SEE_OTHER, String::new()),
            UiError::Core(e) => match e {
                CoreError::Unauthenticated => {
                    (StatusCode::UNAUTHORIZED, "Please sign in again.".to_owned())
                }
                CoreError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
                CoreError::NotFound { .. } => (StatusCode::NOT_FOUND, e.to_string()),
                CoreError::Invalid { detail } => (StatusCode::BAD_REQUEST, detail.clone()),
                CoreError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
                CoreError::Lifecycle(_) | CoreError::Expired(_) => {
                    (StatusCode::CONFLICT, e.to_string())
                }
                CoreError::PolicySet(_) => (StatusCode::BAD_REQUEST, e.to_string()),
                CoreError::Unavailable(detail) => {
                    tracing::error!(%detail, "console: store unavailable");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The store is unavailable; nothing was changed. Try again shortly."
                            .to_owned(),
                    )
                }
                CoreError::Internal(detail) => {
                    tracing::error!(%detail, "console: internal error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong on our side; nothing was changed.".to_owned(),
                    )
                }
            },
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if let UiError::SignIn { next } = &self {
            let target = format!(
                "/ui/login?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            return Redirect::to(&target).into_response();
        }
        if let UiError::OAuthRedirect(to) = &self {
            return Redirect::to(to).into_response();
        }
        let (status, message) = self.shown();
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (title) }
            p role="alert" class="error" { (message) }
            p { a href="/ui/" { "Back to the console" } }
        };
        (status, layout::bare(title, body)).into_response()
    }
}
