//! 2026-07-28: stateless requests, mirrored headers, server/discover, SSE progress.

mod common;

use common::{MODERN, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn discover_list_and_call_without_initialize() {
    let server = Server::start().await;
    let discover = server
        .modern("server/discover", json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(discover.status(), StatusCode::OK);
    assert!(discover.headers().get("mcp-session-id").is_none());
    let discover: Value = discover.json().await.unwrap();
    let result = &discover["result"];
    assert_eq!(
        result["supportedVersions"],
        json!(["2026-07-28", "2025-11-25", "2025-06-18"])
    );
    assert_eq!(result["capabilities"]["tools"]["listChanged"], false);
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mandate-demo"
    );
    assert!(result["ttlMs"].is_u64());

    let list: Value = server
        .modern("tools/list", json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 6);
    assert_eq!(list["result"]["resultType"], "complete");

    let ping: Value = server
        .modern("ping", json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ping["result"]["resultType"], "complete");

    let result = server
        .call_tool("get_balance", json!({ "account": "alice-checking" }))
        .await;
    assert_eq!(result["structuredContent"]["balance_cents"], 250_000);
    assert_eq!(result["resultType"], "complete");
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_id_is_ignored_by_modern_requests() {
    let server = Server::start().await;
    let response = server
        .modern("ping", json!({}))
        .header("mcp-session-id", "made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn header_body_mismatch_is_32020() {
    let server = Server::start().await;
    let meta = json!({ "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {} });
    let call = |name: &str| {
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": { "name": name, "arguments": { "account": "alice-checking" }, "_meta": meta } })
    };
    let cases = [
        // Mcp-Name names another tool than the body.
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "read_file")
            .json(&call("get_balance")),
        // Mcp-Method disagrees with the body.
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "tools/list")
            .header("mcp-name", "get_balance")
            .json(&call("get_balance")),
        // Mcp-Method missing.
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-name", "get_balance")
            .json(&call("get_balance")),
        // Mcp-Name missing on tools/call.
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "tools/call")
            .json(&call("get_balance")),
        // Body version disagrees with the header.
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "ping")
            .json(&json!({
            "jsonrpc": "2.0", "id": 4, "method": "ping",
            "params": { "_meta": { "io.modelcontextprotocol/protocolVersion": "2025-11-25" } } })),
        // Body lacks the version.
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "ping")
            .json(&json!({ "jsonrpc": "2.0", "id": 5, "method": "ping" })),
        // The body says modern but the header is missing.
        server.post().header("mcp-method", "ping").json(&json!({
            "jsonrpc": "2.0", "id": 6, "method": "ping", "params": { "_meta": meta } })),
        // Sentinel-encoded Mcp-Name that decodes to another name ("read_file").
        server
            .post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "=?base64?cmVhZF9maWxl?=")
            .json(&call("get_balance")),
    ];
    for (index, request) in cases.into_iter().enumerate() {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "case {index}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32020, "case {index}: {body}");
    }
    assert_eq!(server.bank.balance("alice-checking"), Some(250_000));
    server.shutdown().await;
}

#[tokio::test]
async fn sentinel_encoded_name_matches() {
    let server = Server::start().await;
    let response = server
        .post()
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "=?base64?Z2V0X2JhbGFuY2U=?=")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "get_balance", "arguments": { "account": "bob-checking" },
            "_meta": { "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {} } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["balance_cents"], 42_000);
    server.shutdown().await;
}

#[tokio::test]
async fn unsupported_version_and_unknown_method() {
    let server = Server::start().await;
    let response = server
        .post()
        .header("mcp-protocol-version", "1900-01-01")
        .header("mcp-method", "ping")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping",
                       "params": { "_meta": { "io.modelcontextprotocol/protocolVersion": "1900-01-01" } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32022);
    assert_eq!(body["error"]["data"]["requested"], "1900-01-01");

    let unknown = server
        .modern("resources/list", json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32601);

    let unknown_tool = server
        .modern(
            "tools/call",
            json!({ "name": "format_disk", "arguments": {} }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_tool.status(), StatusCode::OK);
    let body: Value = unknown_tool.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602);

    let notification = server
        .post()
        .header("mcp-protocol-version", MODERN)
        .json(&json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(notification.status(), StatusCode::ACCEPTED);
    server.shutdown().await;
}

/// Parses an SSE body into its `data:` messages.
#[expect(clippy::unwrap_used, reason = "a malformed event should fail the test")]
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn progress_arrives_as_sse_before_the_result() {
    let server = Server::start().await;
    let response = server
        .modern("tools/call", json!({
            "name": "delete_files",
            "arguments": { "paths": ["/home/alice/todo.txt", "/home/alice/reports/q3-expenses.csv", "/nope"] },
            "_meta": { "progressToken": "p-1" },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let messages = events(&response.text().await.unwrap());
    assert_eq!(messages.len(), 4, "{messages:?}");
    for (index, note) in messages.iter().take(3).enumerate() {
        assert_eq!(note["method"], "notifications/progress");
        assert_eq!(note["params"]["progressToken"], "p-1");
        assert_eq!(note["params"]["progress"], (index + 1) as f64);
        assert_eq!(note["params"]["total"], 3.0);
    }
    let last = &messages[3];
    assert_eq!(last["id"], 7);
    assert_eq!(
        last["result"]["structuredContent"]["deleted"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        last["result"]["structuredContent"]["missing"],
        json!(["/nope"])
    );
    assert!(!server.bank.files().contains_key("/home/alice/todo.txt"));
    server.shutdown().await;
}

#[tokio::test]
async fn progress_token_without_sse_accept_answers_json() {
    let server = Server::start().await;
    let (session, _) = server.initialize("2025-11-25").await;
    let response = server
        .http
        .post(&server.url)
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .json(&json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "transfer", "arguments": { "from": "alice-checking", "to": "bob-checking", "amount_cents": 100 },
            "_meta": { "progressToken": 9 } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["isError"], false);

    // The same in a legacy session with SSE accepted: progress, then the result.
    let response = server
        .post()
        .header("mcp-session-id", &session)
        .json(&json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "transfer", "arguments": { "from": "alice-checking", "to": "bob-checking", "amount_cents": 100 },
            "_meta": { "progressToken": 10 } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let messages = events(&response.text().await.unwrap());
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["params"]["progressToken"], 10);
    assert_eq!(messages[2]["id"], 3);
    assert!(messages[2]["result"].get("resultType").is_none());
    assert_eq!(server.bank.balance("bob-checking"), Some(42_200));
    server.shutdown().await;
}
