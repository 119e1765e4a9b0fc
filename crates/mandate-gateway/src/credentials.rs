//! The port to the credential broker: what to add to a request to an upstream. The
//! agent never sees these headers; they are marked sensitive and never logged.

use async_trait::async_trait;
use axum::http::HeaderMap;
use mandate_domain::{Mandate, ToolServer};

use crate::GatewayError;

#[async_trait]
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// Headers carrying `server`'s credential for a call under `mandate`; empty when
    /// the server has none. An error means the call must not be forwarded.
    async fn headers(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
    ) -> Result<HeaderMap, GatewayError>;
}

/// No broker configured: servers without a credential work; a server that names one is
/// refused (its calls would reach the upstream unauthenticated).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

#[async_trait]
impl Credentials for NoCredentials {
    async fn headers(&self, server: &ToolServer, _: &Mandate) -> Result<HeaderMap, GatewayError> {
        match &server.credential_ref {
            None => Ok(HeaderMap::new()),
            Some(_) => Err(GatewayError::Unavailable(format!(
                "tool server `{}` needs a credential, but no credential broker is configured (set MANDATE_MASTER_KEY or MANDATE_MASTER_KEY_FILE)",
                server.name
            ))),
        }
    }
}
