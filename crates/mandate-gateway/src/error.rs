//! The gateway's errors and how each protocol sees them — the one mapping.
//!
//! | error             | MCP (JSON-RPC)          | HTTP proxy |
//! |-------------------|-------------------------|------------|
//! | `Unauthenticated` | HTTP 401 + `WWW-Authenticate` (resource metadata) | 401 |
//! | denied by policy  | -32001 (`crate::mcp`)   | 403        |
//! | `Unavailable`     | -32603, nothing forwarded (fail closed) | 503 |
//! | `Upstream`        | -32002                  | 502        |
//! | `Invalid`         | -32602                  | 400        |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_mcp::{UpstreamError, code};
use mandate_store::StoreError;
use mandate_token::TokenError;

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

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed on the gateway path; failing closed");
        GatewayError::Unavailable(
            "the gateway cannot decide right now; nothing was forwarded".into(),
        )
    }
}

impl GatewayError {
    pub(crate) fn from_token(e: TokenError) -> Self {
        match e {
            TokenError::Unavailable(m) => GatewayError::Unavailable(m),
            other => GatewayError::Unauthenticated {
                description: Some(other.description()),
            },
        }
    }

    /// The JSON-RPC error code and message.
    pub fn rpc(&self) -> (i64, String) {
        match self {
            GatewayError::Unauthenticated { .. } => (code::INVALID_REQUEST, self.to_string()),
            GatewayError::Unavailable(m) => (code::INTERNAL_ERROR, m.clone()),
            GatewayError::Upstream(e) => (code::UPSTREAM_UNAVAILABLE, e.to_string()),
            GatewayError::Invalid(m) => (code::INVALID_PARAMS, m.clone()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Invalid(_) => StatusCode::BAD_REQUEST,
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
        let clean: String = d
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .take(200)
            .collect();
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
    response
}
