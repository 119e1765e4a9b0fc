//! `/proxy/{server}/…`: plain HTTP APIs behind the same token check, decision, audit
//! and credential injection as MCP. The decision sees the call as the server's `/http`
//! entry with arguments `{method, path, query}`, so policies (and mandate argument
//! constraints) can be written on method and path.
//!
//! The agent's own credentials (`Authorization`, `DPoP`, cookies) never reach the
//! upstream; hop-by-hop headers are dropped both ways.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use mandate_domain::ToolServerTransport;
use mandate_policy::CallAction;
use serde_json::{Value, json};

use mandate_core::calls::{Call, Called, Verdict};
use mandate_core::trace::{self, TraceContext};
use tracing::Instrument as _;

use crate::catalog::HTTP;
use crate::edge::{Resource, caller, host_allowed, origin_allowed};
use crate::{Gateway, GatewayError};

const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Request headers passed on to the upstream; everything else stays here.
const FORWARDED: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "user-agent",
];

/// Response headers never passed back.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "content-length",
];

pub(crate) fn routes(gateway: Gateway) -> Router {
    let limit = gateway.config.max_body_bytes;
    Router::new()
        .route("/proxy/{server}", any(serve_root))
        .route("/proxy/{server}/{*path}", any(serve))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

fn problem(status: StatusCode, error: &str, detail: &str, extra: Value) -> Response {
    let mut body = json!({"error": error, "detail": detail});
    if let (Some(map), Value::Object(more)) = (body.as_object_mut(), extra) {
        map.extend(more);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn serve_root(
    state: State<Gateway>,
    Path(server): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    traced(state, server, String::new(), method, uri, headers, body).await
}

async fn serve(
    state: State<Gateway>,
    Path((server, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    traced(state, server, path, method, uri, headers, body).await
}

/// The request's root span, continuing the client's trace context when it sent one.
async fn traced(
    state: State<Gateway>,
    server: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let span = tracing::info_span!(
        target: trace::TARGET,
        "http_proxy_request",
        mcp.server = server.as_str(),
        http.method = method.as_str(),
    );
    let context = trace::begin(&span, TraceContext::from_headers(&headers));
    handle(state, server, path, method, uri, headers, body, context)
        .instrument(span)
        .await
}

#[allow(
    clippy::too_many_arguments,
    reason = "one request, taken apart by axum"
)]
async fn handle(
    State(gateway): State<Gateway>,
    server: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    context: Option<TraceContext>,
) -> Response {
    if !origin_allowed(&gateway, &headers) || !host_allowed(&gateway, &headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "origin or host not allowed",
            json!({}),
        );
    }
    let caller = match caller(&gateway, &method, &uri, &headers, Resource::Proxy)
        .instrument(tracing::info_span!(target: trace::TARGET, "authentication"))
        .await
    {
        Ok(mut c) => {
            c.trace = context;
            c
        }
        Err(r) => return r,
    };
    let not_available = || {
        problem(
            StatusCode::NOT_FOUND,
            "not_available",
            "this API is not available under this mandate",
            json!({}),
        )
    };
    let snapshot = match gateway.snapshot(&caller.mandate).await {
        Ok(s) => s,
        Err(e) => return failure(&e),
    };
    let Some(listing) = snapshot.special(&server, HTTP).cloned() else {
        return not_available();
    };
    let ToolServerTransport::Http { base_url } = &listing.server.transport else {
        return not_available();
    };
    if path.split('/').any(|seg| seg == ".." || seg == ".") || path.contains('\\') {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "the path may not contain dot segments",
            json!({}),
        );
    }
    let path = format!("/{path}");
    let query = uri.query().unwrap_or_default().to_owned();
    let arguments = json!({"method": method.as_str(), "path": path, "query": query});
    let verdict = gateway
        .calls
        .authorize(
            &caller,
            Call {
                action: CallAction::CallTool,
                target: listing.target(),
                arguments: &arguments,
            },
        )
        .await;
    match verdict {
        Err(e) => return failure(&e.into()),
        Ok(Verdict::Allow { .. }) => {}
        Ok(Verdict::Deny { hidden: true, .. }) => return not_available(),
        Ok(Verdict::Deny { reason, .. }) => {
            return problem(StatusCode::FORBIDDEN, "denied", &reason, json!({}));
        }
        Ok(Verdict::Approval(a)) => {
            return problem(
                StatusCode::FORBIDDEN,
                "approval_required",
                "this request needs a human's approval; retry it unchanged once approved",
                json!({"approval_id": a.id, "expires_at": a.expires_at}),
            );
        }
        Ok(Verdict::Proposal(p)) => {
            return problem(
                StatusCode::ACCEPTED,
                "proposed",
                "the mandate is recommend-only: the request was recorded as a proposal; nothing was sent",
                json!({"proposal_id": p.id}),
            );
        }
    }
    let credentials = match gateway
        .credentials
        .headers(&listing.server, &caller.mandate)
        .await
    {
        Ok(h) => h,
        Err(e) => return failure(&e.into()),
    };
    let target = format!(
        "{}{}{}",
        base_url.trim_end_matches('/'),
        path,
        if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        }
    );
    let Ok(reqwest_method) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            "unsupported method",
            json!({}),
        );
    };
    let mut request = gateway
        .http
        .request(reqwest_method, &target)
        .timeout(gateway.config.call_timeout);
    for name in FORWARDED {
        if let Some(value) = headers.get(*name) {
            request = request.header(*name, value);
        }
    }
    for (name, value) in &credentials {
        request = request.header(name, value);
    }
    let upstream = tracing::info_span!(target: trace::TARGET, "upstream_call");
    if let Some(outgoing) = trace::outgoing(&upstream, caller.trace.as_ref()) {
        let mut trace_headers = HeaderMap::new();
        outgoing.insert_into(&mut trace_headers);
        request = request.headers(trace_headers);
    }
    let started = std::time::Instant::now();
    let result = request.body(body).send().instrument(upstream).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                "did not answer in time"
            } else {
                "is unreachable"
            };
            return failure(&GatewayError::Upstream(
                mandate_mcp::UpstreamError::Unavailable(format!("upstream `{server}` {why}")),
            ));
        }
    };
    let status = response.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if !HOP_BY_HOP.contains(&name.as_str())
            && let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes())
        {
            out_headers.append(name, value.clone());
        }
    }
    let mut response = response;
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return failure(&GatewayError::Upstream(
                        mandate_mcp::UpstreamError::Protocol(format!(
                            "upstream `{server}` answered with more than {MAX_RESPONSE_BYTES} bytes"
                        )),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                return failure(&GatewayError::Upstream(
                    mandate_mcp::UpstreamError::Unavailable(format!(
                        "upstream `{server}` broke off its answer"
                    )),
                ));
            }
        }
    }
    gateway.calls.record_called(
        &caller,
        listing.target(),
        Called::Http {
            method: method.as_str(),
            path: &path,
            status: status.as_u16(),
        },
        started,
    );
    let mut out = (
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        bytes,
    )
        .into_response();
    out.headers_mut().extend(out_headers);
    out
}

fn failure(e: &GatewayError) -> Response {
    let (status, error) = e.http();
    let mut response = problem(status, error, &e.to_string(), json!({}));
    crate::error::retry_after_if_unavailable(&mut response);
    response
}
