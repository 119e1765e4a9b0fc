//! One in-process server per test, on 127.0.0.1:0, and request builders for both eras.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers: a failure should fail the test loudly"
)]

use std::sync::Arc;

use mandate_demo::bank::Bank;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const MODERN: &str = "2026-07-28";

pub struct Server {
    pub url: String,
    pub bank: Arc<Bank>,
    pub http: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bank = Arc::new(Bank::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mandate_demo::serve(listener, bank.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{addr}/mcp"),
            bank,
            http: Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// A POST with the headers every client sends.
    pub fn post(&self) -> RequestBuilder {
        self.http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
    }

    /// Legacy: initialize at `version`, returning the session id.
    pub async fn initialize(&self, version: &str) -> (String, Value) {
        let response = self
            .post()
            .json(&json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": { "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } }
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let initialized = self
            .post()
            .header("mcp-session-id", &session)
            .header(
                "mcp-protocol-version",
                body["result"]["protocolVersion"].as_str().unwrap(),
            )
            .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .send()
            .await
            .unwrap();
        assert_eq!(initialized.status(), StatusCode::ACCEPTED);
        (session, body)
    }

    /// Legacy: a request inside `session`.
    pub async fn legacy(&self, session: &str, method: &str, params: Value) -> Response {
        self.post()
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
            .send()
            .await
            .unwrap()
    }

    /// Modern: a stateless request with matching headers and `_meta`.
    pub fn modern(&self, method: &str, mut params: Value) -> RequestBuilder {
        params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(MODERN);
        params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
        let mut request = self
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method);
        if let Some(name) = params.get("name").and_then(Value::as_str) {
            request = request.header("mcp-name", name);
        }
        request.json(&json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params }))
    }

    /// Modern tools/call, returning the JSON-RPC `result`.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Value {
        let response = self
            .modern(
                "tools/call",
                json!({ "name": name, "arguments": arguments }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["result"].clone()
    }
}

pub fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
