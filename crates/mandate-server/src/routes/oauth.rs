//! The OAuth authorization server: metadata (RFC 8414), JWKS, the token endpoint
//! (client_credentials with RFC 9396 details, RFC 8693 token exchange; RFC 7523
//! client assertions; RFC 9449 DPoP), introspection (RFC 7662) and revocation
//! (RFC 7009), and the `authorization_code` grant of public clients (PKCE S256; the
//! authorization endpoint itself is the console's consent screen). Bodies are `application/x-www-form-urlencoded`; every parameter but
//! `resource` and `audience` may appear once.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mandate_core::trace::{self, TraceContext};
use mandate_core::{RevokeRequest, TokenForm, TokenService};
use mandate_token::TokenError;
use serde_json::{Value, json};
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::oauth_error::OAuthError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metadata))
        .routes(routes!(jwks))
        .routes(routes!(token))
        .routes(routes!(introspect))
        .routes(routes!(revoke))
}

fn service(state: &AppState) -> Result<&Arc<TokenService>, OAuthError> {
    state.service.tokens().ok_or_else(|| {
        OAuthError::token(TokenError::Unavailable(
            "this server does not run the token service".into(),
        ))
    })
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = Object, description = "RFC 8414 metadata")))]
async fn metadata(State(state): State<AppState>) -> Result<Json<Value>, OAuthError> {
    let tokens = service(&state)?;
    let issuer = &tokens.config().issuer;
    let auth_algs = ["EdDSA", "ES256", "RS256", "PS256"];
    let mut grant_types = vec![
        mandate_core::AUTHORIZATION_CODE,
        mandate_core::REFRESH_TOKEN,
        "client_credentials",
        mandate_core::TOKEN_EXCHANGE,
    ];
    if tokens.accepts_id_jag() {
        grant_types.push(mandate_token::JWT_BEARER_GRANT);
    }
    Ok(Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/oauth2/jwks"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "registration_endpoint": format!("{issuer}/oauth2/register"),
        "grant_types_supported": grant_types,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "authorization_response_iss_parameter_supported": true,
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": state.service.client_metadata_documents(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": auth_algs,
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": auth_algs,
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "dpop_signing_alg_values_supported": tokens.dpop_algs(),
        "authorization_details_types_supported": [mandate_token::MANDATE_DETAILS_TYPE],
        "scopes_supported": [mandate_token::REQUEST_MANDATES_SCOPE],
        "resource_indicators_supported": true,
        "token_types_supported": [mandate_core::ACCESS_TOKEN_TYPE],
    })))
}

/// The public keys tokens are signed with (every replica's, during rotation overlap).
#[utoipa::path(get, path = "/oauth2/jwks", tag = "oauth",
    responses((status = 200, body = Object, description = "JWK Set")))]
async fn jwks(State(state): State<AppState>) -> Result<Response, OAuthError> {
    let tokens = service(&state)?;
    let mut response = Json(tokens.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

/// `value` as JSON (serialised straight into the body), not to be cached.
fn no_store<T: serde::Serialize>(value: T) -> Response {
    let mut response = Json(value).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The token endpoint.
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "grant_type, client_assertion_type, client_assertion, assertion (an ID-JAG), scope, authorization_details, resource, subject_token, actor_token, code, code_verifier, redirect_uri, client_id, …"),
    responses(
        (status = 200, body = Object, description = "access_token, token_type (DPoP or Bearer), expires_in, scope, authorization_details"),
        (status = "4XX", body = Object, description = "OAuth error: {error, error_description}"),
    ))]
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let span = tracing::info_span!(
        target: trace::TARGET,
        "token_request",
        oauth.grant_type = tracing::field::Empty,
    );
    trace::begin(&span, TraceContext::from_headers(&headers));
    let tokens = service(&state)?;
    let form = TokenForm::parse(&headers, &body)?;
    let request = form.token_request(&headers)?;
    span.record("oauth.grant_type", request.grant_type.as_str());
    let issued = tokens.token(&request).instrument(span).await?;
    Ok(no_store(issued))
}

/// Token introspection for resource servers (an admin bearer token).
#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth", security(("bearer" = [])),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token"),
    responses(
        (status = 200, body = Object, description = "`{active: false}` or the token's claims"),
        (status = "4XX", body = Object, description = "an OAuth error (RFC 6749 §5.2): `error`, `error_description`"),
        (status = 503, body = Object, description = "`temporarily_unavailable`: the store did not answer; `Retry-After`"),
    ))]
async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let tokens = service(&state)?;
    let caller = api_caller(&state, &headers).await?.ok_or_else(|| {
        TokenError::InvalidClient("introspection needs an admin bearer token".into())
    })?;
    let form = TokenForm::parse(&headers, &body)?;
    let token = form
        .get("token")
        .ok_or_else(|| TokenError::InvalidRequest("`token` is missing".into()))?;
    let answer = tokens.introspect(&caller, &token).await?;
    Ok(no_store(Value::Object(answer.0)))
}

/// Token revocation: by the client holding the token (or one it was delegated
/// from), with a client assertion; a refresh token (and its whole family) by the
/// public client it was issued to, with its `client_id`; or by an API caller. Always
/// 200 for a token that is unknown or not the caller's to revoke (RFC 7009 §2.2).
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token, client_assertion_type, client_assertion | client_id"),
    responses(
        (status = 200, description = "revoked (or nothing to revoke)"),
        (status = "4XX", body = Object, description = "an OAuth error (RFC 6749 §5.2): `error`, `error_description`"),
        (status = 503, body = Object, description = "`temporarily_unavailable`: the store did not answer; `Retry-After`"),
    ))]
async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let tokens = service(&state)?;
    let form = TokenForm::parse(&headers, &body)?;
    let token = form
        .get("token")
        .ok_or_else(|| TokenError::InvalidRequest("`token` is missing".into()))?;
    // `token_type_hint` is only a hint (RFC 7009 §2.1): a refresh token is told from an
    // access token by its form.
    match api_caller(&state, &headers).await? {
        Some(caller) => tokens.revoke(RevokeRequest::Api(&caller), &token).await?,
        None if form.get("client_assertion").is_none() && form.get("client_id").is_some() => {
            let client_id = form.get("client_id").unwrap_or_default();
            tokens
                .revoke(
                    RevokeRequest::Public {
                        client_id: &client_id,
                    },
                    &token,
                )
                .await?;
        }
        None => {
            let request = form.token_request(&headers)?;
            tokens
                .revoke(RevokeRequest::Client(&request), &token)
                .await?;
        }
    }
    Ok(no_store(json!({})))
}

/// An admin-API bearer token in `Authorization`, if one is sent.
async fn api_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<mandate_domain::Principal>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| TokenError::InvalidClient("the Authorization header is not ASCII".into()))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(
            TokenError::InvalidClient("the Authorization header is malformed".into()).into(),
        );
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(
            TokenError::InvalidClient("only Bearer API tokens are accepted here".into()).into(),
        );
    }
    state
        .service
        .authenticate(token.trim())
        .await
        .map(Some)
        .map_err(|e| match e {
            // The store did not answer: the token may well be valid (503, retry).
            mandate_core::CoreError::Unavailable(m) => TokenError::Unavailable(m).into(),
            _ => TokenError::InvalidClient("the API token is not valid".into()).into(),
        })
}
