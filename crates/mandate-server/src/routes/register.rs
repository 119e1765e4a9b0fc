//! `POST /oauth2/register`: dynamic client registration (RFC 7591) for public MCP
//! clients, rate-limited per client address.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::RegistrationError;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::oauth_error::RegistrationRefused;

/// Registrations one client address may make per minute, across every replica (the
/// count is the store's).
pub const REGISTRATIONS_PER_MINUTE: u32 = 20;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register))
}

/// Registers a public client (`token_endpoint_auth_method` `none`) of the default
/// tenant. Unknown metadata is ignored (RFC 7591 §2); it is granted
/// `authorization_code` and `refresh_token`.
#[utoipa::path(post, path = "/oauth2/register", tag = "oauth",
    request_body(content = Object, content_type = "application/json",
        description = "RFC 7591 client metadata: redirect_uris (required; https, http on loopback, or for application_type native a private-use scheme), client_name, token_endpoint_auth_method (none; client_secret_post and client_secret_basic are registered as none, RFC 7591 §3.2.1), dpop_bound_access_tokens (RFC 9449 §5.2: every token request must carry a DPoP proof), grant_types, response_types, scope, …"),
    responses(
        (status = 201, body = Object, description = "client_id, client_id_issued_at and the registered metadata"),
        (status = 400, body = Object, description = "invalid_redirect_uri or invalid_client_metadata"),
        (status = 429, body = Object, description = "too many registrations from this address"),
    ))]
async fn register(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, RegistrationRefused> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers: HeaderMap = request.headers().clone();
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(RegistrationRefused::Refused(
            RegistrationError::InvalidClientMetadata(
                "the registration request must be application/json".into(),
            ),
        ));
    }
    // The client's address as the listener resolved it (behind a trusted proxy, the
    // address the proxy reported).
    let address = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let allowed = state
        .service
        .attempt_allowed("registration", &[address], REGISTRATIONS_PER_MINUTE)
        .await
        .map_err(|e| RegistrationRefused::Refused(RegistrationError::Core(e)))?;
    if !allowed {
        return Err(RegistrationRefused::TooMany);
    }
    let body: Bytes = axum::body::to_bytes(request.into_body(), crate::MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            RegistrationRefused::Refused(RegistrationError::InvalidClientMetadata(
                "the registration request is too large".into(),
            ))
        })?;
    let client = state
        .service
        .register_oauth_client(&body)
        .await
        .map_err(RegistrationRefused::Refused)?;
    let m = &client.metadata;
    let mut answer = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.issued_at.timestamp(),
        "redirect_uris": m.redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": [mandate_core::AUTHORIZATION_CODE, mandate_core::REFRESH_TOKEN],
        "response_types": ["code"],
    });
    if let (true, Value::Object(o)) = (m.dpop_bound_access_tokens, &mut answer) {
        o.insert("dpop_bound_access_tokens".to_owned(), Value::Bool(true));
    }
    for (name, value) in [
        ("client_name", &m.client_name),
        ("client_uri", &m.client_uri),
        ("scope", &m.scope),
        ("software_id", &m.software_id),
        ("software_version", &m.software_version),
        ("application_type", &m.application_type),
    ] {
        if let (Some(v), Value::Object(o)) = (value, &mut answer) {
            o.insert(name.to_owned(), Value::String(v.clone()));
        }
    }
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
