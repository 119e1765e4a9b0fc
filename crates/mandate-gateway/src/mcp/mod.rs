//! `/mcp` (every tool server of the caller's tenant, names namespaced `server.tool`)
//! and `/mcp/{server}` (one server, its own names), over Streamable HTTP: the
//! transport and its sessions here, method routing in [`methods`], the view across
//! servers in [`aggregate`].
//!
//! Each POST is authenticated on its own (sessions only route relayed requests).
//! Forwarded requests answer with JSON when the upstream answers before it sends
//! anything else, and switch to an SSE stream when it first sends a notification or a
//! request for the client (progress, logs, elicitation, sampling), relaying those with
//! request ids of our own.

mod aggregate;
pub(crate) mod asked;
mod input;
mod methods;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mandate_core::calls::Caller;
use mandate_core::trace::{self, TraceContext};
use mandate_mcp::Outcome;
use mandate_mcp::jsonrpc::{self, Message, code};
use mandate_mcp::revision::{self, Answerable, RequestHeaders};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::catalog::Listing;
use crate::edge::{Resource, caller, host_allowed, origin_allowed};
use crate::error::rpc_error;
use crate::relay::{Relay, event_stream, record_outcome};
use crate::{Gateway, GatewayError};

const SESSION_HEADER: &str = "mcp-session-id";

pub(crate) fn routes(gateway: Gateway) -> Router {
    let limit = gateway.config.max_body_bytes;
    Router::new()
        .route(
            "/mcp",
            get(|s: State<Gateway>, u: Uri, h: HeaderMap| stream(s, None, u, h))
                .post(
                    |s: State<Gateway>, m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                        serve(s, None, m, u, h, b)
                    },
                )
                .delete(|s: State<Gateway>, u: Uri, h: HeaderMap| delete(s, u, h)),
        )
        .route(
            "/mcp/{server}",
            get(
                |s: State<Gateway>, Path(server): Path<String>, u: Uri, h: HeaderMap| {
                    stream(s, Some(server), u, h)
                },
            )
            .post(
                |s: State<Gateway>,
                 Path(server): Path<String>,
                 m: Method,
                 u: Uri,
                 h: HeaderMap,
                 b: Bytes| { serve(s, Some(server), m, u, h, b) },
            )
            .delete(|s: State<Gateway>, u: Uri, h: HeaderMap| delete(s, u, h)),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(server_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/proxy",
            get(proxy_resource_metadata),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

/// GET: a session client's standalone event stream (2025-xx), which carries the list
/// changes it may see and its session's resource updates (`listen.rs`). Without a
/// session there is none: 405.
async fn stream(
    State(gateway): State<Gateway>,
    server: Option<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !origin_allowed(&gateway, &headers) || !host_allowed(&gateway, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(session) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST, DELETE")],
            "the standalone event stream belongs to a session",
        )
            .into_response();
    };
    let resource = Resource::Mcp {
        server: server.as_deref(),
    };
    let caller = match caller(&gateway, &Method::GET, &uri, &headers, resource).await {
        Ok(c) => Arc::new(c),
        Err(r) => return r,
    };
    if gateway.session(session, &caller).await.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match gateway.listen_in_session(&caller, server.as_deref(), session) {
        Ok(stream) => stream,
        Err(e) => crate::error::error_response(&e),
    }
}

/// RFC 9728 protected-resource metadata for the MCP endpoint.
async fn resource_metadata(State(gateway): State<Gateway>) -> Response {
    metadata(&gateway, gateway.config.mcp_resource())
}

/// RFC 9728 §3.1: the metadata of `{public}/mcp/{server}`, the well-known path inserted
/// before the resource's path.
async fn server_resource_metadata(
    State(gateway): State<Gateway>,
    Path(server): Path<String>,
) -> Response {
    if server.is_empty() || server.contains(['/', '?', '#']) {
        return StatusCode::NOT_FOUND.into_response();
    }
    metadata(
        &gateway,
        format!("{}/{server}", gateway.config.mcp_resource()),
    )
}

async fn proxy_resource_metadata(State(gateway): State<Gateway>) -> Response {
    metadata(&gateway, gateway.config.proxy_resource())
}

fn metadata(gateway: &Gateway, resource: String) -> Response {
    axum::Json(json!({
        "resource": resource,
        "authorization_servers": [gateway.config.public_url],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA", "ES256"],
        "resource_name": "Mandate gateway",
        "authorization_details_types_supported": ["mandate"],
    }))
    .into_response()
}

pub(crate) fn json_response(
    status: StatusCode,
    body: &(impl serde::Serialize + ?Sized),
    session: Option<&str>,
) -> Response {
    // Straight into bytes: `Value`'s `Display` goes through `core::fmt` for every token.
    // Invariant: serialising a `Value` or a `Message` into a `Vec` cannot fail (their
    // keys are strings and writing to memory has no I/O error), so the default is
    // never taken.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(bytes),
    )
        .into_response();
    if let Some(id) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, id);
    }
    response
}

async fn delete(State(gateway): State<Gateway>, uri: Uri, headers: HeaderMap) -> Response {
    let resource = Resource::Mcp { server: None };
    let caller = match caller(&gateway, &Method::DELETE, &uri, &headers, resource).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "no Mcp-Session-Id").into_response();
    };
    // Known here, or resumed from its sealed id, then ended here. Another replica
    // that already holds it keeps it until it idles out, and any replica still
    // resumes its id until it expires: a session carries no authority of its own
    // (every request brings its own token, of the session's agent and mandate).
    if gateway.session(id, &caller).await.is_some()
        && gateway
            .sessions
            .close(id, caller.agent.id, caller.mandate.id)
            .await
    {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// One request's context.
pub(crate) struct Exchange<'a> {
    gateway: &'a Gateway,
    caller: &'a Arc<Caller>,
    /// `Some` on `/mcp/{server}`.
    server: Option<&'a str>,
    session: Option<String>,
    /// The client offered URL elicitation: when it initialized (2025-11-25), or in
    /// this request's `_meta` client capabilities (2026-07-28).
    url_elicitation: bool,
    /// What a 2026-07-28 client declared it can answer when an upstream asks.
    answerable: Answerable,
    stateless: bool,
    accepts_sse: bool,
}

async fn serve(
    State(gateway): State<Gateway>,
    server: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !origin_allowed(&gateway, &headers) {
        return rpc_error(
            StatusCode::FORBIDDEN,
            Value::Null,
            code::INVALID_REQUEST,
            "origin not allowed",
        );
    }
    if !host_allowed(&gateway, &headers) {
        return rpc_error(
            StatusCode::FORBIDDEN,
            Value::Null,
            code::INVALID_REQUEST,
            "host not allowed",
        );
    }
    // With tracing on, the body is parsed before the token is checked (a malformed
    // one is still refused after it): a client's trace context in `params._meta` then
    // parents every span of the request. With it off nothing is exported, and a body
    // is parsed only once its token passed; `_meta` is read then.
    let parsed = trace::enabled().then(|| Message::parse(&body));
    let incoming = TraceContext::from_headers(&headers).or_else(|| match &parsed {
        Some(Ok(Message::Request { params, .. })) => TraceContext::from_meta(params.as_ref()),
        _ => None,
    });
    let span = tracing::info_span!(
        target: trace::TARGET,
        "mcp_request",
        mcp.server = server.as_deref(),
        mcp.method = tracing::field::Empty,
        mandate.id = tracing::field::Empty,
        agent.id = tracing::field::Empty,
    );
    let context = trace::begin(&span, incoming);
    serve_in(
        gateway,
        server,
        method,
        uri,
        headers,
        (parsed, body),
        context,
        span.clone(),
    )
    .instrument(span)
    .await
}

#[allow(
    clippy::too_many_arguments,
    reason = "one request, taken apart by axum"
)]
async fn serve_in(
    gateway: Gateway,
    server: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    (parsed, body): (Option<Result<Message, jsonrpc::Malformed>>, Bytes),
    context: Option<TraceContext>,
    span: tracing::Span,
) -> Response {
    let resource = Resource::Mcp {
        server: server.as_deref(),
    };
    let mut caller = match caller(&gateway, &method, &uri, &headers, resource)
        .instrument(tracing::info_span!(target: trace::TARGET, "authentication"))
        .await
    {
        Ok(c) => {
            span.record("mandate.id", tracing::field::display(c.mandate.id));
            span.record("agent.id", tracing::field::display(c.agent.id));
            c
        }
        Err(r) => return r,
    };
    let message = match parsed.unwrap_or_else(|| Message::parse(&body)) {
        Ok(m) => m,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, Value::Null, e.code, &e.message),
    };
    // Tracing off: a context the client sent in `_meta` (not in the headers) is read
    // now, to be recorded and passed upstream.
    caller.trace = context.or_else(|| match &message {
        Message::Request { params, .. } => TraceContext::from_meta(params.as_ref()),
        _ => None,
    });
    let caller = Arc::new(caller);
    if let Message::Request { method, .. } = &message {
        span.record("mcp.method", method.as_str());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let version = header("mcp-protocol-version");
    if let Some(v) = version
        && !revision::is_supported(v)
    {
        let id = match &message {
            Message::Request { id, .. } => id.clone(),
            _ => Value::Null,
        };
        return json_response(
            StatusCode::BAD_REQUEST,
            &jsonrpc::error_response(
                id,
                code::INVALID_REQUEST,
                format!(
                    "unsupported protocol version `{}`",
                    v.chars().take(32).collect::<String>()
                ),
                Some(json!({"supported": revision::SUPPORTED})),
            ),
            None,
        );
    }
    let stateless = version.is_some_and(revision::is_stateless);
    let accepts_sse = header("accept").is_some_and(|a| a.contains("text/event-stream"));
    let mut session = None;
    let mut url_elicitation = false;
    let mut answerable = Answerable::default();
    if !stateless && let Some(id) = header(SESSION_HEADER) {
        let Some((_, capabilities)) = gateway.session(id, &caller).await else {
            return rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                code::INVALID_REQUEST,
                "unknown session; initialize again",
            );
        };
        url_elicitation = capabilities.pointer("/elicitation/url").is_some();
        session = Some(id.to_owned());
    }
    if let (true, Message::Request { params, .. }) = (stateless, &message) {
        url_elicitation = revision::offers_url_elicitation(params.as_ref());
        answerable = Answerable::declared(params.as_ref());
    }
    if let (true, Message::Request { method, params, id }) = (stateless, &message)
        && let Err(e) = revision::check_stateless_headers(
            &RequestHeaders {
                protocol_version: version,
                method: header("mcp-method"),
                name: header("mcp-name"),
            },
            method,
            params.as_ref(),
        )
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.clone(),
            code::HEADER_MISMATCH,
            &e.to_string(),
        );
    }
    let exchange = Exchange {
        gateway: &gateway,
        caller: &caller,
        server: server.as_deref(),
        session,
        url_elicitation,
        answerable,
        stateless,
        accepts_sse,
    };
    match message {
        Message::Notification { .. } => StatusCode::ACCEPTED.into_response(),
        Message::Response { id, outcome } => exchange.answer(id, outcome).await,
        Message::Request { id, method, params } => exchange.request(id, &method, params).await,
    }
}

impl Exchange<'_> {
    /// An outcome of `method` in the shape this client's revision expects
    /// (2026-07-28: every result says its `resultType`, lists their caching hints).
    pub(super) fn shaped(&self, method: &str, outcome: Outcome) -> Outcome {
        if self.stateless {
            outcome.map(|result| revision::complete(method, result))
        } else {
            outcome
        }
    }

    async fn answer(&self, id: Value, outcome: Outcome) -> Response {
        let Some(session) = &self.session else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                "a response needs the session it answers in",
            );
        };
        let Some(ask) = self.gateway.sessions.answered(session, &id).await else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                "this response answers no pending request",
            );
        };
        match ask
            .upstream
            .respond(ask.upstream_id, outcome, &ask.headers)
            .await
        {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => rpc_error(
                StatusCode::BAD_GATEWAY,
                Value::Null,
                code::UPSTREAM_UNAVAILABLE,
                &e.to_string(),
            ),
        }
    }

    async fn initialize(&self, id: Value, params: Option<Value>) -> Response {
        let requested = params
            .as_ref()
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = revision::negotiate(requested);
        let mut capabilities = json!({"tools": {"listChanged": true}});
        let mut server_info =
            json!({"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")});
        let mut instructions = Value::Null;
        if let Some(server) = self.server {
            match self.gateway.snapshot(&self.caller.mandate).await {
                Ok(snapshot) => match snapshot.info.get(server) {
                    Some(info) => {
                        capabilities = info.get("capabilities").cloned().unwrap_or(capabilities);
                        if let Some(si) = info.get("serverInfo") {
                            server_info = si.clone();
                        }
                        instructions = info.get("instructions").cloned().unwrap_or(Value::Null);
                    }
                    None if !snapshot.servers.contains_key(server) => {
                        return json_response(
                            StatusCode::OK,
                            &jsonrpc::response(id, methods::hidden(server)),
                            None,
                        );
                    }
                    None => {}
                },
                Err(e) => return json_response(StatusCode::OK, &e.response(id), None),
            }
        } else {
            capabilities = json!({
                "tools": {"listChanged": true},
                "resources": {"listChanged": true, "subscribe": true},
                "prompts": {"listChanged": true},
                "logging": {},
            });
        }
        let client_capabilities = params
            .as_ref()
            .and_then(|p| p.get("capabilities"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let Some(session) = self
            .gateway
            .open_session(self.caller, version, &client_capabilities)
            .await
        else {
            return json_response(
                StatusCode::OK,
                &jsonrpc::error_response(
                    id,
                    code::INTERNAL_ERROR,
                    "no session could be opened",
                    None,
                ),
                None,
            );
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": server_info,
        });
        if !instructions.is_null() {
            set(&mut result, "instructions", instructions);
        }
        json_response(
            StatusCode::OK,
            &jsonrpc::response(id, Ok(result)),
            Some(&session),
        )
    }

    /// Forwards an allowed request: JSON if the upstream answers straight away, an SSE
    /// stream once it sends anything else first.
    async fn forward(
        &self,
        id: Value,
        listing: Arc<Listing>,
        method: &str,
        params: Option<Value>,
        tool_name: Option<String>,
    ) -> Response {
        let (events_tx, mut events) = mpsc::channel::<Value>(64);
        // A 2026-07-28 client is asked what the upstream asks as input_required
        // (`asked.rs`); a session client gets it on an event stream.
        let wants_events = self.accepts_sse || self.stateless;
        // The call records its own outcome, and is polled here, in the request's task
        // (no hand-off to another task on the common path); a client that goes away
        // does not cancel a call already forwarded: it is finished in a task of its own.
        let gateway = self.gateway.clone();
        let caller = self.caller.clone();
        let method_owned = method.to_owned();
        let listing_for_call = listing.clone();
        let upstream = tracing::info_span!(
            target: trace::TARGET,
            "upstream_call",
            mcp.method = method,
            mcp.server = listing.server.name.as_str(),
            tool.name = tool_name.as_deref(),
        );
        let outgoing = trace::outgoing(&upstream, caller.trace.as_ref());
        // A reversible tool's arguments are kept for its compensation (copied only then:
        // the call's own arguments go upstream as they are).
        let kept = listing.tool.compensation.as_ref().map(|_| {
            params
                .as_ref()
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
        });
        // The client's 2026-07-28 envelope is between it and us: the upstream's session
        // has its own revision and capabilities.
        let params = revision::without_envelope(params);
        let mut call = Forwarded::new(
            async move {
                let started = Instant::now();
                let outcome = gateway
                    .call_upstream(
                        &listing_for_call,
                        &caller.mandate,
                        &method_owned,
                        params,
                        wants_events.then_some(events_tx),
                        outgoing.as_ref(),
                    )
                    .await;
                record_outcome(
                    &gateway,
                    &caller,
                    &listing_for_call,
                    tool_name.as_deref(),
                    kept.as_ref(),
                    &outcome,
                    started,
                );
                outcome
            }
            .instrument(upstream),
        );
        if self.stateless {
            // Only a tool call's retry continues a parked call: what an upstream asks
            // during anything else is refused on the client's behalf.
            let answerable = if method == "tools/call" {
                self.answerable
            } else {
                Answerable::default()
            };
            let answer =
                asked::first_round(self.gateway, self.caller, listing, call, events, answerable)
                    .await;
            return tracing::info_span!(target: trace::TARGET, "response").in_scope(|| {
                json_response(
                    StatusCode::OK,
                    &to_response(id, answer.map(|o| self.shaped(method, o))),
                    None,
                )
            });
        }
        // Whichever comes first: the answer (JSON) or an event (switch to SSE).
        let first = tokio::select! {
            biased;
            done = &mut call => Err(done),
            event = events.recv() => match event {
                Some(event) => Ok(event),
                // No events will come (the client takes none): wait for the answer.
                None => Err((&mut call).await),
            },
        };
        match first {
            Err(outcome) => tracing::info_span!(target: trace::TARGET, "response").in_scope(|| {
                json_response(
                    StatusCode::OK,
                    &to_response(id, outcome.map(|o| self.shaped(method, o))),
                    None,
                )
            }),
            Ok(first_event) => {
                let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
                let relay = Relay {
                    gateway: self.gateway.clone(),
                    session: self.session.clone(),
                    listing: listing.clone(),
                    caller: self.caller.clone(),
                };
                tokio::spawn(async move {
                    if !relay.send(&tx, first_event).await {
                        call.cancel();
                        return;
                    }
                    loop {
                        tokio::select! {
                            biased;
                            event = events.recv() => match event {
                                Some(event) => {
                                    if !relay.send(&tx, event).await {
                                        call.cancel();
                                        return;
                                    }
                                }
                                None => {
                                    let outcome = (&mut call).await;
                                    relay.finish(&tx, id, outcome).await;
                                    return;
                                }
                            },
                            done = &mut call => {
                                // Events sent before the answer still go first.
                                while let Ok(event) = events.try_recv() {
                                    if !relay.send(&tx, event).await {
                                        return;
                                    }
                                }
                                relay.finish(&tx, id, done).await;
                                return;
                            }
                        }
                    }
                });
                event_stream(rx)
            }
        }
    }
}

/// A forwarded call, polled where it is awaited. Dropped before it finished (the client
/// went away), it is finished in a task of its own, outcome recorded: a call already
/// forwarded is never cut halfway, and never left unrecorded. [`Forwarded::cancel`]
/// drops it for good (an event stream whose client went away: its call is abandoned).
pub(crate) type Answer = Result<Outcome, GatewayError>;

pub(crate) struct Forwarded(Option<Pin<Box<dyn Future<Output = Answer> + Send>>>);

impl Forwarded {
    fn new(call: impl Future<Output = Answer> + Send + 'static) -> Self {
        Forwarded(Some(Box::pin(call)))
    }

    fn cancel(mut self) {
        self.0 = None;
    }
}

impl Future for Forwarded {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        // Never polled again once it answered (as for any future); if it were, it
        // would simply not answer twice.
        let Some(call) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let answer = std::task::ready!(call.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(answer)
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        if let Some(call) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = call.await;
            });
        }
    }
}

pub(crate) fn to_response(id: Value, outcome: Result<Outcome, GatewayError>) -> Message {
    Message::Response {
        id,
        outcome: outcome.unwrap_or_else(|e| Err(e.error_object())),
    }
}

/// Sets `key` on a JSON object (anything else is left as it is).
pub(crate) fn set(value: &mut Value, key: &str, new: Value) {
    if let Some(map) = value.as_object_mut() {
        map.insert(key.to_owned(), new);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// A call that finishes after `after`, flagging `finished`.
    fn slow(finished: Arc<AtomicBool>, after: Duration) -> Forwarded {
        Forwarded::new(async move {
            tokio::time::sleep(after).await;
            finished.store(true, Ordering::SeqCst);
            Ok(Ok(json!({"done": true})))
        })
    }

    async fn settle() {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_forwarded_call_answers_where_it_is_awaited() {
        let finished = Arc::new(AtomicBool::new(false));
        let answer = slow(finished.clone(), Duration::from_millis(1)).await;
        assert!(matches!(answer, Ok(Ok(_))));
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_call_whose_client_went_away_is_finished_anyway() {
        let finished = Arc::new(AtomicBool::new(false));
        let mut call = slow(finished.clone(), Duration::from_millis(50));
        // Polled once (forwarded), then dropped: the client went away.
        let polled = tokio::time::timeout(Duration::from_millis(1), &mut call).await;
        assert!(polled.is_err(), "it cannot have answered yet");
        drop(call);
        settle().await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the call was cut when its client went away"
        );
    }

    #[tokio::test]
    async fn a_cancelled_call_is_abandoned() {
        let finished = Arc::new(AtomicBool::new(false));
        let mut call = slow(finished.clone(), Duration::from_millis(50));
        let polled = tokio::time::timeout(Duration::from_millis(1), &mut call).await;
        assert!(polled.is_err());
        call.cancel();
        settle().await;
        assert!(!finished.load(Ordering::SeqCst), "a cancelled call went on");
    }
}
