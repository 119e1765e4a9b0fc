//! Connections to the MCP servers the gateway fronts.
//!
//! An [`Upstream`] sends one request at a time per call and may have many in flight.
//! It owns the session with its server (the `initialize` handshake, redone when the
//! server forgets the session or the process restarts) and the request ids on that
//! session; callers never see the ids used upstream. Messages the server sends while a
//! request is in flight (progress and log notifications, requests to the client such
//! as elicitation or sampling) are handed to the caller's `events` channel; the
//! caller answers the server's requests with [`Upstream::respond`]. What the server
//! announces about itself (list changes, resource updates) goes instead to its
//! announcement channel ([`Upstream::announcements`]), whichever stream it arrives on.

mod client;
mod http;
mod stdio;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

pub use self::http::HttpUpstream;
pub use self::stdio::{StdioOptions, StdioUpstream};
use crate::announce::Announcement;
use crate::revision;

/// Headers added to every request to this upstream (e.g. an injected credential).
pub type ExtraHeaders = http::ExtraHeaders;

/// Why an upstream could not answer. Messages name the upstream, never its credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Not reachable, not running, or it failed mid-request.
    #[error("{0}")]
    Unavailable(String),
    /// It answered with something that is not MCP.
    #[error("{0}")]
    Protocol(String),
}

/// One request's answer from the server: a result, or the server's error object.
pub type Outcome = Result<Value, Value>;

/// Limits on one upstream.
#[derive(Debug, Clone)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// How long an HTTP upstream may take over `initialize` (and its acknowledgement):
    /// calls wait on the one that initializes, so a silent upstream holds them no longer.
    pub initialize_timeout: Duration,
    /// The largest response (or SSE event) accepted.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(5),
            initialize_timeout: Duration::from_secs(10),
            max_message_bytes: 8 * 1024 * 1024,
        }
    }
}

#[async_trait]
pub trait Upstream: Send + Sync + fmt::Debug {
    /// Sends a request and waits for its response; what the server sends before it
    /// goes to `events` (dropped when `None`).
    async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        extra: &ExtraHeaders,
        events: Option<mpsc::Sender<Value>>,
    ) -> Result<Outcome, UpstreamError>;

    /// Sends a notification.
    async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
        extra: &ExtraHeaders,
    ) -> Result<(), UpstreamError>;

    /// Answers a request the server sent (with the id it used).
    async fn respond(
        &self,
        id: Value,
        outcome: Outcome,
        extra: &ExtraHeaders,
    ) -> Result<(), UpstreamError>;

    /// The server's `initialize` result (capabilities, serverInfo), connecting if needed.
    async fn server_info(&self, extra: &ExtraHeaders) -> Result<Value, UpstreamError>;

    /// What the server announces about itself from now on. A reader that falls more
    /// than a few dozen behind is told it lagged: it should look at everything again.
    fn announcements(&self) -> broadcast::Receiver<Announcement>;

    /// Keeps the server's own stream of announcements open until `until` (extended by
    /// each call). An HTTP server announces outside any call only on the standalone
    /// stream a client opens; a stdio server's output is always read, so this does
    /// nothing there.
    async fn follow(&self, _extra: &ExtraHeaders, _until: tokio::time::Instant) {}
}

/// The `initialize` request the gateway sends upstream. It offers sampling and
/// elicitation so that servers may ask; requests the calling client cannot answer are
/// refused on its behalf.
pub(crate) fn initialize_params() -> Value {
    json!({
        "protocolVersion": revision::LATEST_SESSION,
        "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": false}},
        "clientInfo": {"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// The revision the server chose in its `initialize` result, if it is one we speak.
pub(crate) fn negotiated_version(result: &Value) -> Result<String, UpstreamError> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            UpstreamError::Protocol("the server's initialize result has no protocolVersion".into())
        })?;
    if version == revision::V2025_06_18 || version == revision::V2025_11_25 {
        Ok(version.to_owned())
    } else {
        Err(UpstreamError::Protocol(format!(
            "the server chose protocol revision `{}`, which the gateway does not speak upstream",
            version.chars().take(32).collect::<String>()
        )))
    }
}
