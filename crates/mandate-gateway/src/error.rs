//! The gateway's errors and how each protocol sees them — the one mapping. Core's
//! [`CallError`] becomes a [`GatewayError`] here (and back, for a proposal a human
//! executes through the gateway), and nowhere else.
//!
//! | error             | MCP (JSON-RPC)          | HTTP proxy |
//! |-------------------|-------------------------|------------|
//! | `Unauthenticated` | HTTP 401 + `WWW-Authenticate` (resource metadata) | 401 |
//! | step-up (server opted in) | HTTP 403 + `WWW-Authenticate: Bearer error="insufficient_scope", scope=…` ([`insufficient_scope`]) | — |
//! | refused (policy, scope, approval, proposal, budget) | -32010 + `data.reason` (`crate::mcp::methods`) | 403  |
//! | `Unavailable`     | -32603, nothing forwarded (fail closed) | 503 |
//! | `Upstream`        | -32011                  | 502        |
//! | `Invalid`         | -32602                  | 400        |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::calls::CallError;
use mandate_mcp::jsonrpc::{self, error_object};
use mandate_mcp::{Refusal, UpstreamError, code, refusal};
use serde_json::Value;

use crate::GatewayConfig;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// No valid task token for this resource.
    #[error("a valid task token for this resource is required")]
    Unauthenticated { description: Option<String> },
    /// A dependency of the decision (store, ledger) failed; nothing was forwarded.
    #[error("{0}")]
    Unavailable(String),
    /// The upstream could not answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

impl From<CallError> for GatewayError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unauthenticated { description } => {
                GatewayError::Unauthenticated { description }
            }
            CallError::Unavailable(m) => GatewayError::Unavailable(m),
            CallError::Invalid(m) => GatewayError::Invalid(m),
            CallError::Upstream(m) => GatewayError::Upstream(UpstreamError::Unavailable(m)),
        }
    }
}

impl From<GatewayError> for CallError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Unauthenticated { description } => {
                CallError::Unauthenticated { description }
            }
            GatewayError::Unavailable(m) => CallError::Unavailable(m),
            GatewayError::Invalid(m) => CallError::Invalid(m),
            GatewayError::Upstream(e) => CallError::Upstream(e.to_string()),
        }
    }
}

impl GatewayError {
    /// The JSON-RPC error code and message.
    pub fn rpc(&self) -> (i64, String) {
        match self {
            GatewayError::Unauthenticated { .. } => (code::INVALID_REQUEST, self.to_string()),
            GatewayError::Unavailable(m) => (code::INTERNAL_ERROR, m.clone()),
            GatewayError::Upstream(e) => (code::UPSTREAM_UNAVAILABLE, e.to_string()),
            GatewayError::Invalid(m) => (code::INVALID_PARAMS, m.clone()),
        }
    }

    /// The JSON-RPC error object.
    pub fn error_object(&self) -> Value {
        let (code, message) = self.rpc();
        error_object(code, message, None)
    }

    /// The JSON-RPC error response to request `id`.
    pub fn response(&self, id: Value) -> Value {
        jsonrpc::response(id, Err(self.error_object()))
    }

    /// The HTTP status, and the error's name in the HTTP proxy's answers.
    pub fn http(&self) -> (StatusCode, &'static str) {
        match self {
            GatewayError::Unauthenticated { .. } => (StatusCode::UNAUTHORIZED, "invalid_token"),
            GatewayError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            GatewayError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
            GatewayError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        }
    }
}

/// A JSON-RPC error with an HTTP status of its own (a request refused before, or
/// instead of, its method: `Origin`, session, protocol version, headers).
pub(crate) fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        jsonrpc::error_response(id, code, message, None).to_string(),
    )
        .into_response();
    retry_after_if_unavailable(&mut response);
    response
}

/// A 503 (the store or the ledger failed; nothing was forwarded) says when to try
/// again: one second.
pub(crate) fn retry_after_if_unavailable(response: &mut Response) {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
}

/// `e` for a request whose id was never read: its HTTP status, its JSON-RPC error.
pub(crate) fn error_response(e: &GatewayError) -> Response {
    let (code, message) = e.rpc();
    rpc_error(e.http().0, Value::Null, code, &message)
}

/// 403 with the step-up challenge (MCP authorization, "scope challenge"; RFC 6750 §3.1
/// `insufficient_scope`): `scope` is what a new consent needs. The body is the JSON-RPC
/// refusal of request `id`, `data.reason` `insufficient_scope`, for clients that read
/// the body rather than the header.
pub(crate) fn insufficient_scope(metadata_url: &str, scope: &[String], id: Value) -> Response {
    let scope = scope
        .iter()
        .map(|s| quotable(s, 256))
        .collect::<Vec<_>>()
        .join(" ");
    let message = "the tool is outside this token's scope; authorize again with the scope named";
    let body = jsonrpc::response(
        id,
        Err(refusal(
            Refusal::InsufficientScope,
            message,
            serde_json::json!({"scope": scope}),
        )),
    );
    let mut response = (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let params = format!(
        "error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{metadata_url}\", error_description=\"{message}\""
    );
    challenge(&mut response, &params);
    response
}

/// `s` without what would end or escape a quoted-string (RFC 9110 §5.6.4), or a
/// control character, cut at `max` characters.
fn quotable(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(max)
        .collect()
}

/// Appends a challenge with `params` for both schemes we accept.
fn challenge(response: &mut Response, params: &str) {
    for scheme in ["Bearer", "DPoP"] {
        let challenge = if scheme == "DPoP" {
            format!("DPoP algs=\"EdDSA ES256\", {params}")
        } else {
            format!("Bearer {params}")
        };
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, value);
        }
    }
}

/// 401 with the challenge MCP clients follow to our metadata (RFC 9728 §5.1), for both
/// schemes we accept.
pub(crate) fn unauthorized(
    config: &GatewayConfig,
    metadata_url: &str,
    description: Option<&str>,
) -> Response {
    let _ = config;
    let mut params = format!("resource_metadata=\"{metadata_url}\"");
    if let Some(d) = description {
        let clean = quotable(d, 200);
        params.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{clean}\""
        ));
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "error": if description.is_some() { "invalid_token" } else { "unauthorized" },
            "error_description": description.unwrap_or("a task token is required"),
        })
        .to_string(),
    )
        .into_response();
    challenge(&mut response, &params);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_keep_their_message_both_ways() {
        let errors = [
            GatewayError::Unauthenticated {
                description: Some("expired".into()),
            },
            GatewayError::Unavailable("the decision could not be recorded".into()),
            GatewayError::Invalid("`arguments` must be an object".into()),
            GatewayError::Upstream(UpstreamError::Protocol("not MCP".into())),
        ];
        for e in errors {
            let there = CallError::from(e.clone());
            assert_eq!(there.to_string(), e.to_string());
            let back = GatewayError::from(there);
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(back.rpc().0, e.rpc().0, "{e:?}");
            assert_eq!(back.http(), e.http(), "{e:?}");
        }
    }
}
