//! What a tool set implements: tool definitions, results, errors and the call context.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A set of tools served by [`McpServer`](super::McpServer).
#[async_trait]
pub trait ToolSet: Send + Sync + 'static {
    /// The tools, in the order `tools/list` shows them.
    fn tools(&self) -> Vec<ToolDef>;

    /// Runs one tool.
    ///
    /// A failure of the tool itself (bad arguments, refused operation) is an `Ok` result
    /// with `is_error` set, so the model can read it; `Err` is for protocol-level failures.
    async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<ToolResult, ToolError>;
}

/// One tool as `tools/list` describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDef {
    /// The programmatic name, used in `tools/call`.
    pub name: String,
    /// A short human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does, for the model.
    pub description: String,
    /// A JSON Schema object for the arguments (`type: "object"` at the root).
    pub input_schema: Value,
    /// Behaviour hints for clients and gateways.
    pub annotations: ToolAnnotations,
}

/// The MCP tool annotations. All four are always sent: the spec's defaults
/// (destructive and open-world when absent) are easy to misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    /// The tool does not modify its environment.
    pub read_only_hint: bool,
    /// The tool may perform destructive updates.
    pub destructive_hint: bool,
    /// Calling again with the same arguments has no additional effect.
    pub idempotent_hint: bool,
    /// The tool interacts with entities outside the server (the "open world").
    pub open_world_hint: bool,
}

/// One content item of a tool result. Only text is needed by the demo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Content {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
}

/// The result of `tools/call`: content, optional structured content, and whether the tool failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResult {
    /// Unstructured content, for the model.
    pub content: Vec<Content>,
    /// Structured content, for programs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// The tool ran but failed; `content` says why.
    pub is_error: bool,
}

impl ToolResult {
    /// A successful result carrying one text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![Content::Text { text: text.into() }],
            structured_content: None,
            is_error: false,
        }
    }

    /// A failed result carrying one text item that says why.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            is_error: true,
            ..Self::text(message)
        }
    }

    /// Adds structured content.
    pub fn with_structured(mut self, value: Value) -> Self {
        self.structured_content = Some(value);
        self
    }

    /// The concatenated text items.
    pub fn text_content(&self) -> String {
        self.content
            .iter()
            .map(|Content::Text { text }| text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A protocol-level failure of `tools/call` (as opposed to a tool that ran and failed).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No tool has this name: JSON-RPC `-32602`.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// The tool set failed unexpectedly: JSON-RPC `-32603`.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a running tool may use: today, progress notifications.
#[derive(Debug, Default)]
pub struct CallContext {
    progress: Option<ProgressSink>,
}

#[derive(Debug)]
struct ProgressSink {
    token: Value,
    notes: mpsc::Sender<Value>,
    /// The last progress value sent, as `f64` bits: progress must increase.
    last: AtomicU64,
}

impl CallContext {
    /// A context that drops progress: for calling a tool set directly.
    pub fn detached() -> Self {
        Self::default()
    }

    pub(crate) fn with_progress(token: Value, notes: mpsc::Sender<Value>) -> Self {
        Self {
            progress: Some(ProgressSink {
                token,
                notes,
                last: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            }),
        }
    }

    /// Whether progress notifications reach the client (the request carried a
    /// `progressToken` and the response is a stream).
    pub fn reports_progress(&self) -> bool {
        self.progress.is_some()
    }

    /// Sends `notifications/progress`. Does nothing without a progress token, when the
    /// value does not increase (the spec requires it to), or when the client has gone.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(sink) = &self.progress else {
            return;
        };
        let last = f64::from_bits(sink.last.load(Ordering::Relaxed));
        if !progress.is_finite() || progress <= last {
            return;
        }
        sink.last.store(progress.to_bits(), Ordering::Relaxed);
        let mut params = json!({ "progressToken": sink.token, "progress": progress });
        if let Some(object) = params.as_object_mut() {
            if let Some(total) = total {
                object.insert("total".into(), json!(total));
            }
            if let Some(message) = message {
                object.insert("message".into(), json!(message));
            }
        }
        let note =
            json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": params });
        // A closed channel means the client closed the stream; the call is being cancelled.
        let _ = sink.notes.send(note).await;
    }
}
