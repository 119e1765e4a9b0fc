//! Request parsing at the edge: credentials, bodies, queries and path ids become typed
//! values here or the request ends with a problem response.

use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use mandate_domain::Principal;
use mandate_types::IdError;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AppState;
use crate::problem::Problem;

/// The authenticated caller of an admin-API request.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(Problem::unauthenticated)?;
        let value = header.to_str().map_err(|_| Problem::unauthenticated())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(Problem::unauthenticated)?;
        let token = token.trim();
        let dpop = scheme.eq_ignore_ascii_case("dpop");
        if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Problem::unauthenticated());
        }
        if !dpop && token.starts_with(mandate_core::TOKEN_PREFIX) {
            return Ok(Caller(state.service.authenticate(token).await?));
        }
        // A task token of ours (an agent asking for mandates).
        let mut proofs = parts.headers.get_all("dpop").iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(p), None) => Some(p.to_str().map_err(|_| Problem::unauthenticated())?),
            (None, _) => None,
            (Some(_), Some(_)) => return Err(Problem::unauthenticated()),
        };
        let url = format!(
            "{}{}",
            state.public_url.trim_end_matches('/'),
            parts.uri.path()
        );
        let presented = mandate_core::Presented {
            token,
            dpop_scheme: dpop,
            proof,
            method: parts.method.as_str(),
            url: &url,
            audience: state.public_url.trim_end_matches('/'),
        };
        let principal = state.service.authenticate_task_token(&presented).await?;
        Ok(Caller(principal))
    }
}

/// A JSON body; its rejections are problem responses.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        decode(value).map(ApiJson)
    }
}

/// An optional JSON body: absent when the request has no `Content-Type`.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Problem> {
        let value =
            <axum::Json<Value> as axum::extract::OptionalFromRequest<S>>::from_request(req, state)
                .await?;
        value
            .map(|axum::Json(v)| decode(v).map(ApiJson))
            .transpose()
    }
}

/// Two steps, so that the status says whose mistake it is: text that is not JSON at all
/// was rejected above (400); JSON of the wrong shape is refused here (422), naming the
/// path of the offending field.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, Problem> {
    Ok(serde_path_to_error::deserialize(value)?)
}

/// A query string; its rejections are problem responses.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// An id from the path. An id that cannot exist is reported as not found.
pub fn path_id<T: FromStr<Err = IdError>>(raw: &str) -> Result<T, Problem> {
    raw.parse()
        .map_err(|e: IdError| Problem::not_found(e.to_string()))
}

/// An id from a query filter. Malformed filters are the caller's mistake.
pub fn query_id<T: FromStr<Err = IdError>>(
    field: &str,
    raw: Option<&str>,
) -> Result<Option<T>, Problem> {
    raw.map(|s| {
        s.parse()
            .map_err(|e: IdError| Problem::bad_request(format!("`{field}`: {e}")))
    })
    .transpose()
}
