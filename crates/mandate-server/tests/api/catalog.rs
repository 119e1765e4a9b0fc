// Tool servers and tools: registration, risk tiers from annotations, operator overrides,
// filters, and refusals.

use serde_json::json;

use crate::support::Api;

#[tokio::test]
async fn tools_take_their_tier_from_annotations_until_an_operator_overrides_it() {
    let api = Api::new().await;
    let server = api
        .post(
            "/v1/tool-servers",
            &api.admin,
            &json!({"name": "bank", "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9100/mcp"}, "credential_ref": "bank.api-key"}),
        )
        .await;
    let server_id = server.ok(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(server.body["transport"]["kind"], "mcp_http");
    let stdio = api
        .post(
            "/v1/tool-servers",
            &api.admin,
            &json!({"name": "files", "transport": {"kind": "mcp_stdio", "command": "mcp-files", "args": ["--root", "/srv"]}}),
        )
        .await;
    stdio.ok(201);

    let tool = |name: &str, annotations: serde_json::Value| json!({"server_id": server_id, "name": name, "annotations": annotations, "tags": ["finance"]});
    let balance = api
        .post(
            "/v1/tools",
            &api.admin,
            &tool("balance", json!({"readOnlyHint": true})),
        )
        .await;
    assert_eq!(balance.ok(201)["risk_tier"], "read");
    assert_eq!(balance.body["data_class"], "internal");
    let transfer = api
        .post("/v1/tools", &api.admin, &tool("transfer", json!({})))
        .await;
    // No hints: MCP's defaults are pessimistic.
    assert_eq!(transfer.ok(201)["risk_tier"], "high_impact");
    let note = api
        .post(
            "/v1/tools",
            &api.admin,
            &tool(
                "note",
                json!({"readOnlyHint": false, "destructiveHint": false, "openWorldHint": false}),
            ),
        )
        .await;
    assert_eq!(note.ok(201)["risk_tier"], "write");

    let id = transfer.body["id"].as_str().unwrap();
    let patched = api
        .patch(&format!("/v1/tools/{id}"), &api.admin, &json!({"risk_tier": "write", "data_class": "confidential", "tags": ["finance", "payments"]}))
        .await;
    assert_eq!(patched.ok(200)["risk_tier"], "write");
    assert_eq!(patched.body["data_class"], "confidential");
    assert_eq!(
        api.get(&format!("/v1/tools/{id}"), &api.admin)
            .await
            .ok(200)["tags"],
        json!(["finance", "payments"])
    );

    let listed = api
        .get(
            &format!("/v1/tools?server={server_id}&risk_tier=write"),
            &api.admin,
        )
        .await;
    let names: Vec<&str> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["transfer", "note"]);
    let servers = api.get("/v1/tool-servers", &api.admin).await;
    assert_eq!(servers.ok(200)["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        api.get(&format!("/v1/tool-servers/{server_id}"), &api.admin)
            .await
            .ok(200)["name"],
        "bank"
    );
}

#[tokio::test]
async fn bad_catalog_input_is_refused() {
    let api = Api::new().await;
    let server_id = api
        .post("/v1/tool-servers", &api.admin, &json!({"name": "bank", "transport": {"kind": "http", "base_url": "https://bank.example/api"}}))
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases = [
        (
            "/v1/tool-servers",
            json!({"name": "bank.eu", "transport": {"kind": "http", "base_url": "https://x.example"}}),
            "name",
        ),
        (
            "/v1/tool-servers",
            json!({"name": "x", "transport": {"kind": "http", "base_url": "file:///etc/passwd"}}),
            "base_url",
        ),
        (
            "/v1/tool-servers",
            json!({"name": "x", "transport": {"kind": "mcp_http", "url": "not a url"}}),
            "url",
        ),
        (
            "/v1/tool-servers",
            json!({"name": "x", "transport": {"kind": "mcp_stdio", "command": "  "}}),
            "command",
        ),
        (
            "/v1/tool-servers",
            json!({"name": "x", "transport": {"kind": "ftp", "url": "ftp://x"}}),
            "transport",
        ),
        (
            "/v1/tools",
            json!({"server_id": server_id, "name": "Transfer Money"}),
            "name",
        ),
        (
            "/v1/tools",
            json!({"server_id": server_id, "name": "t", "input_schema": "any"}),
            "input_schema",
        ),
        (
            "/v1/tools",
            json!({"server_id": server_id, "name": "t", "risk_tier": "catastrophic"}),
            "risk_tier",
        ),
        (
            "/v1/tools",
            json!({"server_id": "srv_01a2084501a2084501a2084501a20845", "name": "t"}),
            "server_id",
        ),
        (
            "/v1/tools",
            json!({"server_id": server_id, "name": "t", "annotations": {"readOnlyHint": "yes"}}),
            "readOnlyHint",
        ),
    ];
    for (path, body, field) in cases {
        let detail = api
            .post(path, &api.admin, &body)
            .await
            .problem(422, "invalid-request");
        assert!(
            detail.contains(field),
            "{body}: `{detail}` does not name `{field}`"
        );
    }
    assert_eq!(
        api.get("/v1/tools", &api.admin).await.ok(200)["items"],
        json!([])
    );
    assert_eq!(
        api.get("/v1/tool-servers", &api.admin).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
