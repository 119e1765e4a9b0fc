//! JSON-RPC 2.0 messages as MCP uses them, and the one place errors become responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::version::SUPPORTED;

/// A message the client may send: a request or a notification. Batches and responses
/// are refused (MCP since 2025-06-18 has no batches; this server sends no requests).
#[derive(Debug, Clone)]
pub(crate) enum Incoming {
    Request(Request),
    Notification { method: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// A string or a number, never null.
    pub(crate) id: Value,
    pub(crate) method: String,
    pub(crate) params: Map<String, Value>,
}

impl Incoming {
    pub(crate) fn method(&self) -> &str {
        match self {
            Self::Request(request) => &request.method,
            Self::Notification { method } => method,
        }
    }

    pub(crate) fn id(&self) -> Option<&Value> {
        match self {
            Self::Request(request) => Some(&request.id),
            Self::Notification { .. } => None,
        }
    }
}

impl Request {
    /// `params._meta`, when present and an object.
    pub(crate) fn meta(&self) -> Option<&Map<String, Value>> {
        self.params.get("_meta").and_then(Value::as_object)
    }

    /// `params._meta.progressToken`, when it is a string or a number.
    pub(crate) fn progress_token(&self) -> Option<&Value> {
        self.meta()
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_number())
    }
}

/// Parses a POST body: JSON first (`-32700`), then the JSON-RPC envelope (`-32600`).
pub(crate) fn parse(body: &[u8]) -> Result<Incoming, Rejection> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::Parse(error.to_string()),
        )
    })?;
    let invalid = |id: Option<Value>, reason: &str| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            id,
            RpcError::InvalidRequest(reason.to_owned()),
        )
    };
    let Value::Object(mut object) = value else {
        return Err(invalid(None, "the body must be one JSON-RPC object"));
    };
    let id = object.remove("id");
    let usable_id = id.clone().filter(|id| id.is_string() || id.is_number());
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(invalid(usable_id, "`jsonrpc` must be \"2.0\""));
    }
    let Some(Value::String(method)) = object.remove("method") else {
        let reason = if object.contains_key("result") || object.contains_key("error") {
            "this server sends no requests, so it accepts no responses"
        } else {
            "`method` must be a string"
        };
        return Err(invalid(usable_id, reason));
    };
    let params = match object.remove("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => return Err(invalid(usable_id, "`params` must be an object")),
    };
    match id {
        None => Ok(Incoming::Notification { method }),
        Some(id) if id.is_string() || id.is_number() => {
            Ok(Incoming::Request(Request { id, method, params }))
        }
        Some(_) => Err(invalid(None, "`id` must be a string or a number")),
    }
}

/// A JSON-RPC error, by kind. Messages are short sentences; details stay in the text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RpcError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("method not found: `{0}`")]
    MethodNotFound(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("internal error")]
    Internal,
    #[error("header mismatch: {0}")]
    HeaderMismatch(String),
    #[error("unsupported protocol version `{0}`")]
    UnsupportedVersion(String),
    #[error("server busy: {0}")]
    Busy(String),
}

impl RpcError {
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => -32700,
            Self::InvalidRequest(_) => -32600,
            Self::MethodNotFound(_) => -32601,
            Self::InvalidParams(_) => -32602,
            Self::Internal => -32603,
            Self::HeaderMismatch(_) => -32020,
            Self::UnsupportedVersion(_) => -32022,
            // Implementation-defined range (-32000 to -32019).
            Self::Busy(_) => -32000,
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            Self::UnsupportedVersion(requested) => {
                Some(json!({ "supported": SUPPORTED, "requested": requested }))
            }
            _ => None,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let (Some(data), Some(object)) = (self.data(), error.as_object_mut()) {
            object.insert("data".into(), data);
        }
        error
    }
}

/// A JSON-RPC error response with its HTTP status: the only way errors leave the server.
#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    id: Option<Value>,
    error: RpcError,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, id: Option<Value>, error: RpcError) -> Self {
        Self { status, id, error }
    }

    /// An HTTP-level refusal (no request id is known or relevant).
    pub(crate) fn http(status: StatusCode, reason: &str) -> Self {
        Self::new(status, None, RpcError::InvalidRequest(reason.to_owned()))
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, error = %self.error, "mcp request rejected");
        let mut body = json!({ "jsonrpc": "2.0", "error": self.error.to_json() });
        if let (Some(id), Some(object)) = (self.id, body.as_object_mut()) {
            object.insert("id".into(), id);
        }
        let mut response = (self.status, json_body(&body)).into_response();
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
        }
        response
    }
}

/// A JSON body with the `application/json` content type.
pub(crate) fn json_body(value: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

pub(crate) fn result_message(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub(crate) fn error_message(id: &Value, error: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> RpcError {
        match parse(body.as_bytes()) {
            Err(rejection) => rejection.error,
            Ok(incoming) => panic!("parsed {incoming:?}"),
        }
    }

    #[test]
    fn envelopes() {
        assert_eq!(error_of("{").code(), -32700);
        assert_eq!(error_of("[]").code(), -32600);
        assert_eq!(
            error_of(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).code(),
            -32600
        );
        assert_eq!(
            error_of(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).code(),
            -32600
        );
        assert_eq!(
            error_of(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).code(),
            -32600
        );
        assert_eq!(
            error_of(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#).code(),
            -32600
        );
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Incoming::Notification { .. })
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#),
            Ok(Incoming::Request(_))
        ));
    }
}
