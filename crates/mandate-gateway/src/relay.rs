//! Relaying a forwarded call: what the upstream sends meanwhile onto the client's SSE
//! stream (requests for the client get ids of our own), the final answer, and the
//! call's outcome event. What an upstream announces about itself (list changes,
//! resource updates) never comes this way: mandate-mcp keeps it off the call's events,
//! and `listen.rs` tells who may see it.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use mandate_core::calls::{Called, Caller};
use mandate_mcp::jsonrpc::{code, error_object};
use mandate_mcp::{Outcome, sse};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::catalog::Listing;
use crate::mcp::{set, to_response};
use crate::{Gateway, GatewayError};

pub(crate) fn record_outcome(
    gateway: &Gateway,
    caller: &Caller,
    listing: &Listing,
    tool_name: Option<&str>,
    arguments: Option<&Value>,
    outcome: &Result<Outcome, GatewayError>,
    started: Instant,
) {
    let Some(name) = tool_name else {
        return;
    };
    let (result, is_error, answer) = match outcome {
        Ok(Ok(r)) => (
            "ok",
            r.get("isError").and_then(Value::as_bool).unwrap_or(false),
            Some(r),
        ),
        Ok(Err(_)) => ("error", true, None),
        Err(GatewayError::Upstream(_)) => ("upstream_unavailable", true, None),
        Err(_) => ("failed", true, None),
    };
    gateway.calls.record_called(
        caller,
        listing.target(),
        Called::Tool {
            called_as: name,
            result,
            is_error,
            reversal: arguments.zip(answer),
        },
        started,
    );
}

/// Relays what an upstream sends during a call onto the client's SSE stream.
pub(crate) struct Relay {
    pub(crate) gateway: Gateway,
    pub(crate) session: Option<String>,
    pub(crate) listing: std::sync::Arc<Listing>,
    pub(crate) caller: std::sync::Arc<Caller>,
}

impl Relay {
    /// Sends one upstream message; `false` when the client went away.
    pub(crate) async fn send(
        &self,
        tx: &mpsc::Sender<Result<Bytes, Infallible>>,
        mut event: Value,
    ) -> bool {
        let is_request = event.get("method").is_some() && event.get("id").is_some();
        if is_request {
            let upstream_id = event.get("id").cloned().unwrap_or(Value::Null);
            let connected = self.gateway.catalog.connect(&self.listing.server).await;
            let headers = self
                .gateway
                .credentials
                .headers(&self.listing.server, &self.caller.mandate)
                .await;
            match (&self.session, connected, headers) {
                (Some(session), Ok(connected), Ok(headers)) => {
                    let ours = self
                        .gateway
                        .sessions
                        .relay(session, (connected.upstream, upstream_id, headers))
                        .await;
                    set(&mut event, "id", ours);
                }
                (_, connected, headers) => {
                    // No session to answer in: refuse on the client's behalf.
                    if let (Ok(connected), Ok(headers)) = (connected, headers) {
                        let refusal = Err(error_object(
                            code::METHOD_NOT_FOUND,
                            "the client has no session to answer requests in",
                            None,
                        ));
                        let _ = connected
                            .upstream
                            .respond(upstream_id, refusal, &headers)
                            .await;
                    }
                    return true;
                }
            }
        }
        let frame = sse::encode_message(&event.to_string());
        tx.send(Ok(Bytes::from(frame))).await.is_ok()
    }

    /// Sends the call's answer (its outcome was recorded by the call itself).
    pub(crate) async fn finish(
        &self,
        tx: &mpsc::Sender<Result<Bytes, Infallible>>,
        id: Value,
        outcome: Result<Outcome, GatewayError>,
    ) {
        // Invariant: a `Message` always serialises (see `json_response`).
        let message = serde_json::to_string(&to_response(id, outcome)).unwrap_or_default();
        let frame = sse::encode_message(&message);
        let _ = tx.send(Ok(Bytes::from(frame))).await;
    }
}

/// A response that is an event stream of what `rx` receives.
pub(crate) fn event_stream(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let mut response = Response::new(Body::new(ChannelStream(rx)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// An mpsc receiver as a body stream of data frames.
struct ChannelStream(pub(crate) mpsc::Receiver<Result<Bytes, Infallible>>);

impl http_body::Body for ChannelStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}
