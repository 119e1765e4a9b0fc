//! The demo tool server for Mandate.
//!
//! [`mcp_server`] is a small MCP server over Streamable HTTP; [`bank`] is the tool set it
//! serves in the demo: accounts, files and an outbox, all in memory, all fake. Nothing
//! here moves real money, touches the disk or sends mail; it exists so the gateway has a
//! realistic upstream to guard, with read-only, destructive, financial and
//! external-transfer tools.
//!
//! ```text
//!  agent ──► mandate gateway (/mcp) ──► [serve(): POST /mcp] ──► McpServer ──► Bank
//! ```
#![forbid(unsafe_code)]

pub mod bank;
pub mod mcp_server;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::mcp_server::{McpServer, ToolSet};

/// Serves `toolset` at `/mcp` on `listener` until `shutdown` completes, then drains
/// open connections and returns.
pub async fn serve<F>(
    listener: TcpListener,
    toolset: Arc<dyn ToolSet>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = Router::new().nest("/mcp", McpServer::new(toolset).router());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
