//! Streamable HTTP: origin, body, era selection, header rules, JSON or SSE responses.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::Channel;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Shared;
use super::dispatch::{Era, dispatch, initialize_result};
use super::jsonrpc::{
    self, Incoming, Rejection, Request, RpcError, error_message, json_body, result_message,
};
use super::session::Lookup;
use super::tool::CallContext;
use super::version::{self, META_PROTOCOL_VERSION, MODERN, SUPPORTED};

const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

pub(crate) async fn handle_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    post(shared, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn handle_get(headers: HeaderMap) -> Response {
    if let Err(rejection) = check_origin(&headers) {
        return rejection.into_response();
    }
    Rejection::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "this server offers no standalone SSE stream",
    )
    .into_response()
}

pub(crate) async fn handle_delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let outcome = check_origin(&headers).and_then(|()| {
        let id = header_text(&headers, SESSION_ID)
            .ok()
            .flatten()
            .ok_or_else(|| {
                Rejection::http(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id header")
            })?;
        if shared.sessions.terminate(id) {
            tracing::debug!("mcp session terminated");
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(unknown_session())
        }
    });
    outcome.unwrap_or_else(IntoResponse::into_response)
}

async fn post(
    shared: Arc<Shared>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Rejection> {
    check_origin(headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let reason = format!("the body exceeds {} bytes", shared.max_body_bytes);
            Rejection::http(StatusCode::PAYLOAD_TOO_LARGE, &reason)
        } else {
            Rejection::http(StatusCode::BAD_REQUEST, "the body could not be read")
        }
    })?;
    check_content_type(headers)?;
    let incoming = jsonrpc::parse(&body)?;
    if incoming.method() == "initialize" {
        return initialize(&shared, headers, incoming);
    }
    let era = select_era(&shared, headers, &incoming)?;
    match incoming {
        Incoming::Notification { .. } => Ok(StatusCode::ACCEPTED.into_response()),
        Incoming::Request(request) => Ok(respond(shared, era, request, headers).await),
    }
}

/// A legacy `initialize`: negotiates the version and mints a session.
fn initialize(
    shared: &Shared,
    headers: &HeaderMap,
    incoming: Incoming,
) -> Result<Response, Rejection> {
    let Incoming::Request(request) = incoming else {
        return Err(Rejection::http(
            StatusCode::BAD_REQUEST,
            "`initialize` must be a request",
        ));
    };
    let id = Some(request.id.clone());
    if let Some(version) = header_text(headers, PROTOCOL_VERSION).map_err(|reason| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            id.clone(),
            RpcError::InvalidRequest(reason),
        )
    })? && !SUPPORTED.contains(&version)
    {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            id,
            RpcError::UnsupportedVersion(version.to_owned()),
        ));
    }
    let requested = request
        .params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                id.clone(),
                RpcError::InvalidParams("`protocolVersion` must be a string".into()),
            )
        })?;
    let version = version::negotiate_legacy(requested);
    let session = shared.sessions.open(version).ok_or_else(|| {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            id.clone(),
            RpcError::Busy("too many open sessions".into()),
        )
    })?;
    let session = HeaderValue::from_str(&session)
        .map_err(|_| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, id, RpcError::Internal))?;
    tracing::debug!(version, "mcp session opened");
    let mut response = json_body(&result_message(
        &request.id,
        initialize_result(shared, version),
    ));
    response.headers_mut().insert(SESSION_ID, session);
    Ok(response)
}

/// Picks legacy-session or modern rules for a request other than `initialize`.
fn select_era(shared: &Shared, headers: &HeaderMap, incoming: &Incoming) -> Result<Era, Rejection> {
    let id = incoming.id().cloned();
    let bad = |error: RpcError| Rejection::new(StatusCode::BAD_REQUEST, id.clone(), error);
    let version = header_text(headers, PROTOCOL_VERSION)
        .map_err(|reason| bad(RpcError::HeaderMismatch(reason)))?;
    if version == Some(MODERN) {
        // A modern request ignores any Mcp-Session-Id (2026-07-28, backward compatibility).
        if let Incoming::Request(request) = incoming {
            check_modern_headers(headers, request)
                .map_err(|reason| bad(RpcError::HeaderMismatch(reason)))?;
        }
        return Ok(Era::Modern);
    }
    let session = header_text(headers, SESSION_ID).map_err(|_| unknown_session())?;
    match (session, version) {
        (Some(session), version) => {
            let Lookup::Found(negotiated) = shared.sessions.lookup(session) else {
                return Err(unknown_session());
            };
            match version {
                None => Ok(Era::Legacy(negotiated)),
                Some(version) if version::legacy(version).is_none() => {
                    Err(bad(RpcError::UnsupportedVersion(version.to_owned())))
                }
                Some(version) if version != negotiated => Err(bad(RpcError::InvalidRequest(format!(
                    "MCP-Protocol-Version `{version}` differs from the session's `{negotiated}`"
                )))),
                Some(_) => Ok(Era::Legacy(negotiated)),
            }
        }
        (None, Some(version)) if version::legacy(version).is_none() => {
            Err(bad(RpcError::UnsupportedVersion(version.to_owned())))
        }
        (None, None) if has_modern_meta(incoming) => Err(bad(RpcError::HeaderMismatch(
            "missing MCP-Protocol-Version header".into(),
        ))),
        (None, _) => Err(bad(RpcError::InvalidRequest(
            "missing Mcp-Session-Id header: send `initialize` first, or use protocol version 2026-07-28".into(),
        ))),
    }
}

/// 2026-07-28: the mirrored headers must be present and agree with the body.
fn check_modern_headers(headers: &HeaderMap, request: &Request) -> Result<(), String> {
    let method = header_text(headers, MCP_METHOD)?.ok_or("missing Mcp-Method header")?;
    if method != request.method {
        return Err(format!(
            "Mcp-Method header `{method}` does not match body method `{}`",
            request.method
        ));
    }
    let body_version = request
        .meta()
        .and_then(|meta| meta.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the body lacks `params._meta[\"{META_PROTOCOL_VERSION}\"]`"))?;
    if body_version != MODERN {
        return Err(format!(
            "MCP-Protocol-Version header `{MODERN}` does not match body version `{body_version}`"
        ));
    }
    let name_field = match request.method.as_str() {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    let header_name = header_text(headers, MCP_NAME)?.ok_or("missing Mcp-Name header")?;
    let header_name = decode_sentinel(header_name)?;
    let body_name = request.params.get(name_field).and_then(Value::as_str);
    if body_name != Some(header_name.as_str()) {
        return Err(format!(
            "Mcp-Name header `{header_name}` does not match body `{name_field}` `{}`",
            body_name.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Decodes a `=?base64?…?=` header value; other values are taken as they are.
fn decode_sentinel(value: &str) -> Result<String, String> {
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Ok(value.to_owned());
    };
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| "Mcp-Name header is not valid base64".to_owned())?;
    String::from_utf8(bytes).map_err(|_| "Mcp-Name header does not decode to UTF-8".to_owned())
}

fn has_modern_meta(incoming: &Incoming) -> bool {
    match incoming {
        Incoming::Request(request) => request
            .meta()
            .is_some_and(|meta| meta.contains_key(META_PROTOCOL_VERSION)),
        Incoming::Notification { .. } => false,
    }
}

/// Runs one request: a JSON body, or an SSE stream when progress was asked for and the
/// client accepts one.
async fn respond(shared: Arc<Shared>, era: Era, request: Request, headers: &HeaderMap) -> Response {
    let token = request.progress_token().cloned();
    match token {
        Some(token) if request.method == "tools/call" && accepts_event_stream(headers) => {
            stream(shared, era, request, token)
        }
        _ => {
            let outcome = dispatch(&shared, era, &request, &CallContext::detached()).await;
            match outcome {
                Ok(result) => json_body(&result_message(&request.id, result)),
                Err(error) => {
                    let status = error_status(era, &error);
                    let mut response = json_body(&error_message(&request.id, &error));
                    *response.status_mut() = status;
                    response
                }
            }
        }
    }
}

/// The HTTP status of a JSON-RPC error answered as a JSON body.
fn error_status(era: Era, error: &RpcError) -> StatusCode {
    match error {
        RpcError::Parse(_)
        | RpcError::InvalidRequest(_)
        | RpcError::HeaderMismatch(_)
        | RpcError::UnsupportedVersion(_) => StatusCode::BAD_REQUEST,
        // 2026-07-28 answers an unimplemented method with 404; earlier revisions with 200.
        RpcError::MethodNotFound(_) if era == Era::Modern => StatusCode::NOT_FOUND,
        RpcError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        RpcError::MethodNotFound(_) | RpcError::InvalidParams(_) | RpcError::Internal => {
            StatusCode::OK
        }
    }
}

/// An SSE response scoped to one request: progress notifications, then the response.
/// Closing the stream cancels the call (the tool future is dropped).
fn stream(shared: Arc<Shared>, era: Era, request: Request, token: Value) -> Response {
    let (mut body_tx, body) = Channel::<Bytes, Infallible>::new(16);
    let (note_tx, mut note_rx) = mpsc::channel::<Value>(16);
    tokio::spawn(async move {
        let ctx = CallContext::with_progress(token, note_tx);
        let call = dispatch(&shared, era, &request, &ctx);
        tokio::pin!(call);
        let outcome = loop {
            tokio::select! {
                outcome = &mut call => break outcome,
                Some(note) = note_rx.recv() => {
                    if body_tx.send_data(sse_event(&note)).await.is_err() {
                        tracing::debug!("client closed the stream; call cancelled");
                        return;
                    }
                }
            }
        };
        while let Ok(note) = note_rx.try_recv() {
            if body_tx.send_data(sse_event(&note)).await.is_err() {
                return;
            }
        }
        let message = match outcome {
            Ok(result) => result_message(&request.id, result),
            Err(error) => error_message(&request.id, &error),
        };
        let _ = body_tx.send_data(sse_event(&message)).await;
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::new(body),
    )
        .into_response()
}

fn sse_event(message: &Value) -> Bytes {
    // Compact JSON has no newlines, so one `data:` line carries the whole message.
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let media = item.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("text/event-stream")
        })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(Rejection::http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ))
    }
}

/// DNS-rebinding defence: a browser-sent `Origin` must name a loopback host.
fn check_origin(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    if origin.to_str().is_ok_and(is_loopback_origin) {
        Ok(())
    } else {
        Err(Rejection::http(StatusCode::FORBIDDEN, "origin not allowed"))
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, rest)) if is_port_suffix(rest) => host,
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, rest)) if is_port_suffix(&format!(":{rest}")) => host,
            Some(_) => return false,
            None => authority,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port_suffix(rest: &str) -> bool {
    rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|port| {
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
        })
}

/// A header as text; `Err` when it holds bytes outside visible ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| format!("header `{name}` holds invalid characters")),
    }
}

fn unknown_session() -> Rejection {
    Rejection::http(StatusCode::NOT_FOUND, "unknown or terminated session")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for good in [
            "http://localhost",
            "http://localhost:8731",
            "https://127.0.0.1:3000",
            "http://127.1.2.3",
            "http://[::1]:80",
            "http://LOCALHOST",
        ] {
            assert!(is_loopback_origin(good), "{good}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "http://localhost:80/path",
            "http://localhost:",
            "file://localhost",
            "http://[::2]",
            "http://user@localhost",
            "http://10.0.0.1",
        ] {
            assert!(!is_loopback_origin(bad), "{bad}");
        }
    }

    #[test]
    fn sentinel() {
        assert_eq!(decode_sentinel("get_balance").unwrap(), "get_balance");
        assert_eq!(
            decode_sentinel("=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
            "Hello, 世界"
        );
        assert!(decode_sentinel("=?base64?***?=").is_err());
    }
}
