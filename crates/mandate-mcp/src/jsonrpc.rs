//! JSON-RPC 2.0 messages, kept as JSON so that what the gateway forwards is exactly
//! what it received. Batches are refused (MCP dropped them in 2025-06-18).

use serde_json::{Map, Value, json};

/// Error codes the gateway answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Also the fail-closed answer: the decision or its audit record could not be made.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Every refusal by Mandate (denied, held for approval, turned into a proposal,
    /// not available, over budget); `error.data.reason` says which.
    ///
    /// Why -32010: JSON-RPC leaves -32000..-32099 to implementations, and MCP
    /// 2026-07-28 (schema.ts) keeps -32020..-32099 for codes the specification
    /// defines and never reuses -32002 (resource not found, up to 2025-11-25) or
    /// -32042 (URL elicitation). In what is left, -32000..-32019, the SDKs raise
    /// their own failures: TypeScript `@modelcontextprotocol/sdk` (1.32.2's dist:
    /// nothing else there) -32000 (ConnectionClosed), -32001 (RequestTimeout, and its
    /// server transport's "session not found"), and in its next major line -32003 / -32004 (client
    /// capability, protocol version, from a draft of 2026-07-28); Python `mcp` 2.3.0
    /// (`mcp_types.jsonrpc`, pinned by our tests) -32000 (CONNECTION_CLOSED), -32001
    /// (REQUEST_TIMEOUT) and -32800 (request cancelled; earlier releases used HTTP 408
    /// for their timeout). -32001 was our code until clients read our refusals as
    /// their own time-outs.
    pub const REFUSED: i64 = -32010;
    /// The upstream did not answer, or answered with something that is not MCP. Beside
    /// `REFUSED`, for the same reasons; it was -32002 until that turned out to be the
    /// retired "resource not found" of clients before 2026-07-28.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32011;
    /// MCP 2025-11-25: the client should open a URL (here: where a human approves).
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
    /// MCP 2026-07-28: request headers disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// One parsed message. Requests and notifications keep their params as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response: `Ok(result)` or `Err(error object)`.
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
}

/// Why a body is not a JSON-RPC message, with the code to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Malformed {
    pub code: i64,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Malformed {
    Malformed {
        code: code::INVALID_REQUEST,
        message: message.into(),
    }
}

/// A request id: a string or an integer (JSON-RPC allows null, MCP does not).
fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(s) => s.len() <= 256,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

impl Message {
    /// Parses one message from a body.
    pub fn parse(body: &[u8]) -> Result<Message, Malformed> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Malformed {
            code: code::PARSE_ERROR,
            message: format!("the body is not JSON: {e}"),
        })?;
        Message::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Message, Malformed> {
        let Value::Object(mut map) = value else {
            return Err(invalid(
                "a message must be one JSON-RPC object (batches are not supported)",
            ));
        };
        if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("`jsonrpc` must be \"2.0\""));
        }
        let id = map.remove("id");
        if let Some(method) = map.remove("method") {
            let Value::String(method) = method else {
                return Err(invalid("`method` must be a string"));
            };
            if method.is_empty() || method.len() > 128 {
                return Err(invalid("`method` must be 1 to 128 characters"));
            }
            let params = map.remove("params");
            if let Some(p) = &params
                && !(p.is_object() || p.is_array())
            {
                return Err(invalid("`params` must be an object"));
            }
            return Ok(match id {
                None => Message::Notification { method, params },
                Some(id) if valid_id(&id) => Message::Request { id, method, params },
                Some(_) => return Err(invalid("`id` must be a string or an integer")),
            });
        }
        let Some(id) = id.filter(valid_id) else {
            return Err(invalid("a response needs a string or integer `id`"));
        };
        let outcome = match (map.remove("result"), map.remove("error")) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) if error.is_object() => Err(error),
            _ => {
                return Err(invalid(
                    "a response has exactly one of `result` and `error`",
                ));
            }
        };
        Ok(Message::Response { id, outcome })
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }
}

/// The message as sent, written straight from its parts (`serde_json::to_vec(&message)`,
/// or `serde_json::to_value` where a `Value` is wanted): `jsonrpc`, then `id`,
/// `method`, `params`, `result`, `error` as the kind of message has them, with nothing
/// copied first.
impl serde::Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            jsonrpc: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            method: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            params: Option<&'a Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            result: Option<&'a Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a Value>,
        }
        let (id, method, params, result, error) = match self {
            Message::Request { id, method, params } => {
                (Some(id), Some(method.as_str()), params.as_ref(), None, None)
            }
            Message::Notification { method, params } => {
                (None, Some(method.as_str()), params.as_ref(), None, None)
            }
            Message::Response { id, outcome } => match outcome {
                Ok(result) => (Some(id), None, None, Some(result), None),
                Err(error) => (Some(id), None, None, None, Some(error)),
            },
        };
        Wire {
            jsonrpc: "2.0",
            id,
            method,
            params,
            result,
            error,
        }
        .serialize(serializer)
    }
}

/// A response message.
pub fn response(id: Value, outcome: Result<Value, Value>) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    }
}

/// An error object.
pub fn error_object(code: i64, message: impl Into<String>, data: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("code".into(), json!(code));
    m.insert("message".into(), json!(message.into()));
    if let Some(data) = data {
        m.insert("data".into(), data);
    }
    Value::Object(m)
}

/// Why Mandate refused a request: `error.data.reason` of every [`code::REFUSED`] error,
/// for clients to act on without reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, outside the token's scope, or hidden by policy: indistinguishable.
    NotAvailable,
    /// The mandate's policy denies it (`data.detail` says why).
    Denied,
    /// The mandate's budget does not cover it.
    Budget,
    /// Held until a person approves these exact arguments (`data.approval_id`).
    ApprovalRequired,
    /// Recorded as a proposal for a person to execute (`data.proposal_id`).
    Proposed,
    /// Outside the token's scope, and the person could grant it (step-up, HTTP 403):
    /// `data.scope` is what a new consent needs.
    InsufficientScope,
    /// The tool server acts as the person, who has not connected their account there
    /// yet: `data.connect_url` is where they do.
    ConnectionRequired,
}

impl Refusal {
    /// The value of `error.data.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAvailable => "not_available",
            Refusal::Denied => "denied",
            Refusal::Budget => "budget",
            Refusal::ApprovalRequired => "approval_required",
            Refusal::Proposed => "proposed",
            Refusal::InsufficientScope => "insufficient_scope",
            Refusal::ConnectionRequired => "connection_required",
        }
    }
}

/// The error object of a refusal: [`code::REFUSED`], `data` = `details` (an object's
/// fields; anything else is dropped) with `reason` set.
pub fn refusal(reason: Refusal, message: impl Into<String>, details: Value) -> Value {
    let mut data = match details {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    data.insert("reason".into(), json!(reason.as_str()));
    error_object(code::REFUSED, message, Some(Value::Object(data)))
}

/// An error response (`id` is `null` when the request's id could not be read).
pub fn error_response(
    id: Value,
    code: i64,
    message: impl Into<String>,
    data: Option<Value>,
) -> Value {
    response(id, Err(error_object(code, message, data)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_carries_its_reason_beside_the_details() {
        let e = refusal(
            Refusal::ApprovalRequired,
            "held",
            json!({"approval_id": "apr_1", "reason": "spoofed"}),
        );
        assert_eq!(
            e,
            json!({"code": -32010, "message": "held",
                   "data": {"approval_id": "apr_1", "reason": "approval_required"}})
        );
        assert_eq!(
            refusal(Refusal::NotAvailable, "no", Value::Null)["data"],
            json!({"reason": "not_available"})
        );
    }

    #[test]
    fn the_refusal_code_is_none_an_sdk_or_the_specification_uses() {
        // TypeScript SDK, Python SDK, and the specification's own codes, past and
        // reserved (see `code::REFUSED`).
        let taken = [-32000, -32001, -32002, -32003, -32004, -32042];
        for ours in [code::REFUSED, code::UPSTREAM_UNAVAILABLE] {
            assert!(!taken.contains(&ours), "{ours}");
            assert!(
                (-32019..=-32000).contains(&ours),
                "{ours}: outside the implementations' range"
            );
        }
        assert_ne!(code::REFUSED, code::UPSTREAM_UNAVAILABLE);
    }

    use super::*;

    #[test]
    fn messages_are_classified_and_hostile_ones_refused() {
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(matches!(m, Message::Request { ref method, .. } if method == "tools/list"));
        let n =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n, Message::Notification { .. }));
        let r = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(r, Message::Response { outcome: Ok(_), .. }));
        let e = Message::parse(br#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#)
            .unwrap();
        assert!(matches!(
            e,
            Message::Response {
                outcome: Err(_),
                ..
            }
        ));

        let refused: &[(&[u8], i64)] = &[
            (b"{", code::PARSE_ERROR),
            (b"", code::PARSE_ERROR),
            (b"[]", code::INVALID_REQUEST),
            (
                br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                code::INVALID_REQUEST,
            ),
            (br#"{"id":1,"method":"ping"}"#, code::INVALID_REQUEST),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":""}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
                code::INVALID_REQUEST,
            ),
            (br#"{"jsonrpc":"2.0","id":1}"#, code::INVALID_REQUEST),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
                code::INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"error":"x"}"#,
                code::INVALID_REQUEST,
            ),
            (br#""just a string""#, code::INVALID_REQUEST),
        ];
        for (body, code) in refused {
            let err = Message::parse(body).unwrap_err();
            assert_eq!(err.code, *code, "{}", String::from_utf8_lossy(body));
        }
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
            "x".repeat(300)
        );
        assert!(Message::parse(long.as_bytes()).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","arguments":{"x":1}}});
        let m = Message::from_value(body.clone()).unwrap();
        let sent = |m: &Message| serde_json::from_slice::<Value>(&serde_json::to_vec(m).unwrap());
        assert_eq!(sent(&m).unwrap(), body);
        assert_eq!(serde_json::to_value(&m).unwrap(), body);
        // The members in JSON-RPC's usual order, whatever order a map keeps.
        let call = Message::Request {
            id: json!(7),
            method: "tools/call".into(),
            params: Some(json!({"name": "a"})),
        };
        assert_eq!(
            serde_json::to_string(&call).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a"}}"#
        );
        for body in [
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","id":"a","result":{"tools":[]}}),
            json!({"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"no"}}),
        ] {
            let m = Message::from_value(body.clone()).unwrap();
            assert_eq!(sent(&m).unwrap(), body);
            assert_eq!(serde_json::to_value(&m).unwrap(), body);
        }
        assert_eq!(
            error_response(json!(1), code::REFUSED, "no", None),
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32010,"message":"no"}})
        );
    }
}
