//! 2025-06-18 and 2025-11-25: the initialize handshake and session rules.

mod common;

use common::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn handshake_negotiates_and_issues_a_session() {
    let server = Server::start().await;
    for (asked, answered) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
    ] {
        let (session, body) = server.initialize(asked).await;
        assert!(session.len() >= 32 && session.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(body["id"], 0);
        assert_eq!(body["result"]["protocolVersion"], answered);
        assert_eq!(
            body["result"]["capabilities"]["tools"]["listChanged"],
            false
        );
        assert_eq!(body["result"]["serverInfo"]["name"], "mandate-demo");
    }
    let (one, _) = server.initialize("2025-11-25").await;
    let (two, _) = server.initialize("2025-11-25").await;
    assert_ne!(one, two);
    server.shutdown().await;
}

#[tokio::test]
async fn session_requests_list_call_and_ping() {
    let server = Server::start().await;
    let (session, _) = server.initialize("2025-11-25").await;

    let ping: Value = server
        .legacy(&session, "ping", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ping, json!({ "jsonrpc": "2.0", "id": 1, "result": {} }));

    let list: Value = server
        .legacy(&session, "tools/list", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: Vec<_> = tools
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "get_balance",
            "transfer",
            "list_files",
            "read_file",
            "delete_files",
            "send_email"
        ]
    );
    let by_name = |name: &str| {
        tools
            .iter()
            .find(|tool| tool["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("get_balance")["annotations"]["readOnlyHint"], true);
    assert_eq!(by_name("transfer")["annotations"]["destructiveHint"], true);
    assert_eq!(by_name("transfer")["annotations"]["openWorldHint"], false);
    assert_eq!(
        by_name("delete_files")["annotations"]["destructiveHint"],
        true
    );
    assert_eq!(by_name("send_email")["annotations"]["openWorldHint"], true);
    assert_eq!(
        by_name("transfer")["inputSchema"]["required"],
        json!(["from", "to", "amount_cents"])
    );
    assert!(
        list["result"].get("resultType").is_none(),
        "legacy results carry no resultType"
    );

    let call: Value = server
        .legacy(
            &session,
            "tools/call",
            json!({ "name": "get_balance", "arguments": { "account": "bob-checking" } }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(call["result"]["isError"], false);
    assert_eq!(call["result"]["structuredContent"]["balance_cents"], 42_000);

    let unknown_tool = server
        .legacy(
            &session,
            "tools/call",
            json!({ "name": "rm_rf", "arguments": {} }),
        )
        .await;
    assert_eq!(unknown_tool.status(), StatusCode::OK);
    let unknown_tool: Value = unknown_tool.json().await.unwrap();
    assert_eq!(unknown_tool["error"]["code"], -32602);

    let unknown_method = server.legacy(&session, "resources/list", json!({})).await;
    assert_eq!(unknown_method.status(), StatusCode::OK);
    let unknown_method: Value = unknown_method.json().await.unwrap();
    assert_eq!(unknown_method["error"]["code"], -32601);
    assert_eq!(unknown_method["id"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn session_rules() {
    let server = Server::start().await;
    let (session, _) = server.initialize("2025-06-18").await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });

    // Missing session id: 400.
    let missing = server
        .post()
        .header("mcp-protocol-version", "2025-06-18")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let missing = server.post().json(&ping).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    // Unknown session id: 404.
    let unknown = server
        .post()
        .header("mcp-session-id", "nope")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The header may be omitted (the session knows its version) but not contradict it.
    let no_header = server
        .post()
        .header("mcp-session-id", &session)
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), StatusCode::OK);
    let other = server
        .post()
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    let unsupported = server
        .post()
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "1900-01-01")
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);
    let body: Value = unsupported.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32022);
    assert_eq!(
        body["error"]["data"]["supported"],
        json!(["2026-07-28", "2025-11-25", "2025-06-18"])
    );

    // initialize always opens a new session (how a client recovers from a 404).
    let again = server
        .legacy(
            &session,
            "initialize",
            json!({ "protocolVersion": "2025-06-18" }),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_ne!(again.headers()["mcp-session-id"].to_str().unwrap(), session);

    // GET: no standalone stream.
    let get = server
        .http
        .get(&server.url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(get.headers()["allow"].to_str().unwrap().contains("POST"));

    // DELETE ends the session; afterwards it is unknown.
    let delete = server
        .http
        .delete(&server.url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let after = server
        .post()
        .header("mcp-session-id", &session)
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    let delete_again = server
        .http
        .delete(&server.url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete_again.status(), StatusCode::NOT_FOUND);
    let delete_none = server.http.delete(&server.url).send().await.unwrap();
    assert_eq!(delete_none.status(), StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn initialize_needs_a_protocol_version() {
    let server = Server::start().await;
    let response = server
        .post()
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("mcp-session-id").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602);
    server.shutdown().await;
}
