//! OAuth error responses (RFC 6749 §5.2, RFC 6750 §3, RFC 9449 §7.1, §8): the one
//! place where token-service errors become HTTP.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_token::TokenError;
use serde_json::json;

/// Where the error arose: the token endpoint answers with JSON bodies; a resource
/// answers 401 with `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    TokenEndpoint,
    Resource,
}

/// A token-service error, ready to answer.
#[derive(Debug)]
pub struct OAuthError {
    pub error: TokenError,
    pub at: At,
}

impl OAuthError {
    pub fn token(error: TokenError) -> Self {
        OAuthError {
            error,
            at: At::TokenEndpoint,
        }
    }

    pub fn resource(error: TokenError) -> Self {
        OAuthError {
            error,
            at: At::Resource,
        }
    }
}

impl From<TokenError> for OAuthError {
    fn from(error: TokenError) -> Self {
        OAuthError::token(error)
    }
}

fn status(error: &TokenError, at: At) -> StatusCode {
    match (error, at) {
        (TokenError::Unavailable(_), _) => StatusCode::SERVICE_UNAVAILABLE,
        (TokenError::InvalidClient(_), _) => StatusCode::UNAUTHORIZED,
        (TokenError::InvalidToken(_) | TokenError::InvalidDpopProof(_), At::Resource) => {
            StatusCode::UNAUTHORIZED
        }
        (TokenError::UseDpopNonce { .. }, At::Resource) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let code = self.error.code();
        let description = self.error.description();
        let status = status(&self.error, self.at);
        let body = json!({ "error": code, "error_description": description });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let TokenError::UseDpopNonce { nonce } = &self.error
            && let Ok(v) = HeaderValue::from_str(nonce)
        {
            headers.insert("dpop-nonce", v);
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self.at {
                At::Resource => {
                    format!("DPoP error=\"{code}\", algs=\"EdDSA ES256\", Bearer error=\"{code}\"")
                }
                At::TokenEndpoint => "private_key_jwt".to_owned(),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if matches!(self.error, TokenError::Unavailable(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A refused client registration (RFC 7591 §3.2.2).
#[derive(Debug)]
pub enum RegistrationRefused {
    Refused(mandate_core::RegistrationError),
    TooMany,
}

impl IntoResponse for RegistrationRefused {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            RegistrationRefused::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many registrations from this address; wait a minute".to_owned(),
            ),
            RegistrationRefused::Refused(e @ mandate_core::RegistrationError::Core(core)) => {
                tracing::warn!(error = %core, "client registration failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.code(),
                    "the client cannot be registered now; nothing was stored".to_owned(),
                )
            }
            RegistrationRefused::Refused(e) => (StatusCode::BAD_REQUEST, e.code(), e.to_string()),
        };
        let body = json!({ "error": code, "error_description": description });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status != StatusCode::BAD_REQUEST {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        response
    }
}
