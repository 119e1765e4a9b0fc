//! A small MCP server over Streamable HTTP, serving one [`ToolSet`].
//!
//! ```text
//!  POST /mcp ──► origin ─► size ─► JSON-RPC envelope ─► era ───────────► dispatch ─► ToolSet
//!                 403      413     -32700 / -32600       │                  │
//!                                                        ├ initialize ──► new session (legacy)
//!                                                        ├ Mcp-Session-Id ► session's version
//!                                                        └ MCP-Protocol-Version: 2026-07-28
//!                                                          ► header/body agreement (-32020)
//!  response: application/json, or text/event-stream when a tools/call carries a
//!  progressToken and the client accepts SSE (progress notifications, then the result)
//!  DELETE /mcp ends a legacy session; GET /mcp is 405 (no standalone stream)
//! ```
//!
//! Dual-era, as the 2026-07-28 versioning page describes: an `initialize` request opens a
//! legacy session (2025-06-18 or 2025-11-25); a request carrying the modern version
//! header and `_meta` is served statelessly.

mod dispatch;
mod jsonrpc;
mod session;
mod tool;
mod transport;
mod version;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use serde_json::{Value, json};

pub use tool::{CallContext, Content, ToolAnnotations, ToolDef, ToolError, ToolResult, ToolSet};
pub use version::{LEGACY, MODERN, SUPPORTED};

use session::Sessions;

/// The default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The default number of concurrent legacy sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

/// Builds the MCP endpoint for one tool set.
#[derive(Clone)]
pub struct McpServer {
    toolset: Arc<dyn ToolSet>,
    name: String,
    version: String,
    instructions: Option<String>,
    max_body_bytes: usize,
    max_sessions: usize,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    /// A server for `toolset`, named `mandate-demo` with this crate's version.
    pub fn new(toolset: Arc<dyn ToolSet>) -> Self {
        Self {
            toolset,
            name: "mandate-demo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            instructions: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }

    /// The `serverInfo` name and version.
    pub fn with_server_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.name = name.into();
        self.version = version.into();
        self
    }

    /// Guidance for the model, returned by `initialize` and `server/discover`.
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// The largest accepted POST body; larger ones get 413.
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The most concurrent legacy sessions; `initialize` beyond it gets 503.
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    /// The endpoint as a router with one route, `/`: mount it with
    /// `Router::new().nest("/mcp", server.router())`.
    pub fn router(self) -> Router {
        let max_body_bytes = self.max_body_bytes;
        let shared = Arc::new(Shared {
            toolset: self.toolset,
            server_info: json!({ "name": self.name, "version": self.version }),
            instructions: self.instructions,
            sessions: Sessions::new(self.max_sessions),
            max_body_bytes,
        });
        Router::new()
            .route(
                "/",
                post(transport::handle_post)
                    .get(transport::handle_get)
                    .delete(transport::handle_delete),
            )
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .with_state(shared)
    }
}

/// What every request handler sees.
pub(crate) struct Shared {
    pub(crate) toolset: Arc<dyn ToolSet>,
    pub(crate) server_info: Value,
    pub(crate) instructions: Option<String>,
    pub(crate) sessions: Sessions,
    pub(crate) max_body_bytes: usize,
}
