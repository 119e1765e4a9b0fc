//! Methods: what each request does, independent of HTTP.

use serde_json::{Map, Value, json};

use super::Shared;
use super::jsonrpc::{Request, RpcError};
use super::tool::{CallContext, ToolError};
use super::version::{META_SERVER_INFO, SUPPORTED};

/// Which protocol rules a request is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// Inside a session opened by `initialize`, at its negotiated version.
    Legacy(&'static str),
    /// Stateless 2026-07-28.
    Modern,
}

/// How long a client may cache `tools/list` and `server/discover` (2026-07-28): the
/// tool set of this server does not change while it runs.
const CACHE_TTL_MS: u64 = 60_000;

pub(crate) async fn dispatch(
    shared: &Shared,
    era: Era,
    request: &Request,
    ctx: &CallContext,
) -> Result<Value, RpcError> {
    let modern = era == Era::Modern;
    let mut result = match request.method.as_str() {
        "ping" => json!({}),
        "tools/list" => {
            if request.params.contains_key("cursor") {
                // This server never hands out cursors, so none can be valid.
                return Err(RpcError::InvalidParams("unknown cursor".into()));
            }
            let mut result = json!({ "tools": shared.toolset.tools() });
            if modern {
                add_cache_hints(&mut result);
            }
            result
        }
        "tools/call" => call_tool(shared, request, ctx).await?,
        "server/discover" if modern => {
            let mut result = json!({
                "supportedVersions": SUPPORTED,
                "capabilities": capabilities(),
            });
            if let (Some(text), Some(object)) = (&shared.instructions, result.as_object_mut()) {
                object.insert("instructions".into(), json!(text));
            }
            add_cache_hints(&mut result);
            result
        }
        other => return Err(RpcError::MethodNotFound(other.to_owned())),
    };
    if modern && let Some(object) = result.as_object_mut() {
        object.insert("resultType".into(), json!("complete"));
        let mut meta = Map::new();
        meta.insert(META_SERVER_INFO.into(), shared.server_info.clone());
        object.insert("_meta".into(), Value::Object(meta));
    }
    Ok(result)
}

/// The result of a legacy `initialize`, at the negotiated `version`.
pub(crate) fn initialize_result(shared: &Shared, version: &str) -> Value {
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": shared.server_info,
    });
    if let (Some(text), Some(object)) = (&shared.instructions, result.as_object_mut()) {
        object.insert("instructions".into(), json!(text));
    }
    result
}

fn capabilities() -> Value {
    json!({ "tools": { "listChanged": false } })
}

fn add_cache_hints(result: &mut Value) {
    if let Some(object) = result.as_object_mut() {
        object.insert("ttlMs".into(), json!(CACHE_TTL_MS));
        object.insert("cacheScope".into(), json!("public"));
    }
}

async fn call_tool(
    shared: &Shared,
    request: &Request,
    ctx: &CallContext,
) -> Result<Value, RpcError> {
    let name = request
        .params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::InvalidParams("`name` must be a string".into()))?;
    let arguments = match request.params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(arguments @ Value::Object(_)) => arguments.clone(),
        Some(_) => {
            return Err(RpcError::InvalidParams(
                "`arguments` must be an object".into(),
            ));
        }
    };
    if !shared.toolset.tools().iter().any(|tool| tool.name == name) {
        return Err(RpcError::InvalidParams(format!("unknown tool `{name}`")));
    }
    match shared.toolset.call(name, arguments, ctx).await {
        Ok(result) => serde_json::to_value(result).map_err(|error| {
            tracing::error!(%error, tool = name, "tool result did not serialize");
            RpcError::Internal
        }),
        Err(ToolError::UnknownTool(name)) => {
            Err(RpcError::InvalidParams(format!("unknown tool `{name}`")))
        }
        Err(ToolError::Internal(reason)) => {
            tracing::error!(%reason, tool = name, "tool set failed");
            Err(RpcError::Internal)
        }
    }
}
