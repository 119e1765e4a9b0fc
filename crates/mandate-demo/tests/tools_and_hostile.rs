//! Each bank tool over HTTP (happy path and bad input), and hostile requests.

mod common;

use common::{Server, text_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn bank_tools_happy_paths() {
    let server = Server::start().await;
    let balance = server
        .call_tool("get_balance", json!({ "account": "alice-savings" }))
        .await;
    assert_eq!(balance["isError"], false);
    assert_eq!(text_of(&balance), "alice-savings: $10000.00");

    let transfer = server
        .call_tool("transfer", json!({ "from": "alice-checking", "to": "carol-checking", "amount_cents": 2_500, "memo": "lunch" }))
        .await;
    assert_eq!(transfer["isError"], false, "{transfer}");
    assert_eq!(transfer["structuredContent"]["id"], "tx-0001");
    assert_eq!(server.bank.balance("carol-checking"), Some(3_000));

    let listed = server
        .call_tool("list_files", json!({ "dir": "/home/alice/reports" }))
        .await;
    assert_eq!(
        listed["structuredContent"]["files"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let all = server.call_tool("list_files", json!({})).await;
    assert_eq!(
        all["structuredContent"]["files"].as_array().unwrap().len(),
        5
    );

    let read = server
        .call_tool("read_file", json!({ "path": "/shared/handbook.md" }))
        .await;
    assert!(text_of(&read).starts_with("# Team handbook"));

    let deleted = server
        .call_tool("delete_files", json!({ "paths": ["/shared/handbook.md"] }))
        .await;
    assert_eq!(deleted["isError"], false);
    assert!(!server.bank.files().contains_key("/shared/handbook.md"));

    let sent = server
        .call_tool(
            "send_email",
            json!({ "to": "eve@external.example", "subject": "Q3", "body": "attached" }),
        )
        .await;
    assert_eq!(sent["isError"], false);
    let outbox = server.bank.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].to, "eve@external.example");
    server.shutdown().await;
}

#[tokio::test]
async fn bank_tools_bad_input_is_a_tool_error() {
    let server = Server::start().await;
    let before = server.bank.balances();
    let files = server.bank.files();
    for (name, arguments, says) in [
        ("get_balance", json!({}), "missing field `account`"),
        (
            "get_balance",
            json!({ "account": "nobody" }),
            "unknown account",
        ),
        (
            "transfer",
            json!({ "from": "carol-checking", "to": "bob-checking", "amount_cents": 100_000 }),
            "insufficient funds",
        ),
        (
            "transfer",
            json!({ "from": "alice-checking", "to": "bob-checking", "amount_cents": "100" }),
            "invalid type",
        ),
        (
            "transfer",
            json!({ "from": "alice-checking", "to": "bob-checking", "amount_cents": 0 }),
            "must be positive",
        ),
        (
            "list_files",
            json!({ "dir": "/nowhere" }),
            "no such directory",
        ),
        (
            "read_file",
            json!({ "path": "/etc/passwd" }),
            "no such file",
        ),
        (
            "read_file",
            json!({ "path": "/home/alice/../../etc/passwd" }),
            "not an absolute, normalized path",
        ),
        ("delete_files", json!({ "paths": [] }), "at least one"),
        (
            "delete_files",
            json!({ "paths": ["/missing"] }),
            "nothing was deleted",
        ),
        (
            "send_email",
            json!({ "to": "x@y.example", "subject": "a\r\nBcc: z@w.example", "body": "" }),
            "control characters",
        ),
        (
            "send_email",
            json!({ "to": "x@y.example", "subject": "s" }),
            "missing field `body`",
        ),
    ] {
        let result = server.call_tool(name, arguments.clone()).await;
        assert_eq!(result["isError"], true, "{name} {arguments}: {result}");
        assert!(
            text_of(&result).contains(says),
            "{name}: {}",
            text_of(&result)
        );
    }
    assert_eq!(server.bank.balances(), before);
    assert_eq!(server.bank.files(), files);
    assert!(server.bank.outbox().is_empty());

    // Arguments that are not an object are a protocol error.
    let response = server
        .modern(
            "tools/call",
            json!({ "name": "get_balance", "arguments": [1] }),
        )
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602);
    server.shutdown().await;
}

#[tokio::test]
async fn hostile_requests() {
    let server = Server::start().await;
    let (session, _) = server.initialize("2025-11-25").await;
    let send_raw = |body: &'static str| {
        server
            .post()
            .header("content-type", "application/json")
            .header("mcp-session-id", &session)
            .body(body)
            .send()
    };

    let malformed = send_raw("{\"jsonrpc\": \"2.0\", ").await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert!(body.get("id").is_none());

    for invalid in [
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"id":1,"method":"ping"}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#""ping""#,
    ] {
        let response = send_raw(invalid).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{invalid}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32600, "{invalid}");
    }

    // More than 1 MiB: 413, whatever the content.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "a".repeat(1024 * 1024 + 1)
    );
    let response = server
        .post()
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Not JSON: 415.
    let response = server
        .post()
        .header("mcp-session-id", &session)
        .body("ping")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A foreign Origin: 403 on every method, before anything else.
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    for origin in [
        "http://evil.example",
        "null",
        "http://localhost.evil.example",
    ] {
        let response = server
            .post()
            .header("origin", origin)
            .header("mcp-session-id", &session)
            .json(&ping)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
        let delete = server
            .http
            .delete(&server.url)
            .header("origin", origin)
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(delete.status(), StatusCode::FORBIDDEN);
    }
    let local = server
        .post()
        .header("origin", "http://localhost:5173")
        .header("mcp-session-id", &session)
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), StatusCode::OK);

    // Missing session on a tool call: 400 and nothing happens.
    let response = server
        .post()
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": { "name": "delete_files", "arguments": { "paths": ["/shared/handbook.md"] } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(server.bank.files().contains_key("/shared/handbook.md"));
    server.shutdown().await;
}
