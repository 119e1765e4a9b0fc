#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The MCP gateway end to end: the real binary in front of a real MCP server (the
//! Python fixture, over Streamable HTTP), called by a real MCP client (the Python `mcp`
//! package). A mandate's scope decides what the agent sees and may call; a
//! high-impact call is held for approval and passes once after it; a recommend-only
//! mandate turns calls into proposals a human executes; revoking the mandate stops the
//! next call; the ledger records decisions with argument hashes, never the arguments.

use serde_json::{Value, json};

mod common;
#[path = "gateway/operations.rs"]
mod operations;

use common::{Fixture, Server, admin_token, created, http, mcp_client, task_token};

struct World {
    who: common::Actors,
    server: Server,
    admin: String,
    fixture: Fixture,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    world_with("").await
}

/// A world whose server reads `config` (TOML) as its configuration file.
async fn world_with(config: &str) -> World {
    let fixture = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mandate.toml");
    std::fs::write(&file, config).unwrap();
    let server = Server::start(dir.path(), &["--config", file.to_str().unwrap()]);
    let admin = admin_token(dir.path());
    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "fx", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    let who = common::human_and_agent(&server, &admin).await;
    World {
        who,
        server,
        admin,
        fixture,
        _dir: dir,
    }
}

impl World {
    /// A consented mandate with these terms (agent and grantor filled in).
    async fn mandate(&self, terms: Value) -> String {
        common::consented_mandate(&self.server, &self.admin, &self.who, terms).await
    }

    async fn token(&self, mandate: &str) -> String {
        let resource = format!("{}/mcp", self.server.url);
        task_token(
            &self.server,
            &self.who.agent,
            &self.who.key,
            mandate,
            &resource,
        )
        .await
    }

    fn mcp(&self, path: &str, token: &str, steps: Value) -> Vec<Value> {
        mcp_client(&format!("{}{path}", self.server.url), Some(token), &steps)
    }

    /// The `decision` events of `mandate` (at most 500).
    async fn decisions(&self, mandate: &str) -> Value {
        let (status, audit) = http(
            reqwest::Method::GET,
            format!(
                "{}/v1/audit?mandate={mandate}&type=decision&limit=500",
                self.server.url
            ),
            &self.admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{audit}");
        audit
    }

    /// The Python `mcp` package's 2026-07-28 client (`mcp_modern_client.py`) on
    /// `/mcp/fx` with `token`, Alice as the person; `args` name the call. Its lines.
    fn modern_client(&self, token: &str, args: &[&str]) -> Vec<Value> {
        let out = std::process::Command::new("python3")
            .arg(common::python_dir().join("mcp_modern_client.py"))
            .arg(format!("{}/mcp/fx", self.server.url))
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(args)
            .args(["--api", &self.server.url, "--person", &self.who.human_token])
            .output()
            .unwrap();
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(
            out.status.success() && !lines.is_empty(),
            "mcp_modern_client.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines
    }

    /// Alice revokes `mandate`.
    async fn revoke(&self, mandate: &str) {
        let (status, body) = self
            .as_alice(
                reqwest::Method::POST,
                &format!("/v1/mandates/{mandate}/revoke"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn as_alice(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        http(
            method,
            format!("{}{path}", self.server.url),
            &self.who.human_token,
            body,
        )
        .await
    }
}

fn tool_names(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = result["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {result}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Mandate's one refusal code (neither MCP SDK raises it for its own failures).
const REFUSED: i64 = -32010;

fn denied(step: &Value) -> &Value {
    assert_eq!(step["error"]["code"], REFUSED, "expected a refusal: {step}");
    &step["error"]
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_decides_what_is_seen_and_called_and_approvals_pass_once() {
    let w = world().await;
    let mandate = w
        .mandate(json!({
            "intent": "Answer with the fixture's tools",
            "scope": {"tools": [
                {"tool": "fx.echo"},
                {"tool": "fx.test_simple_text"},
                {"tool": "fx.delete_everything"},
                {"tool": "fx./resources"},
                {"tool": "fx./prompts"},
            ]},
            "data_ceiling": "internal",
            "mode": "execute",
            "approval": {"tiers": ["high_impact"]},
            "budgets": {"max_calls": 50},
        }))
        .await;
    let token = w.token(&mandate).await;

    let steps = w.mcp(
        "/mcp/fx",
        &token,
        json!([
            {"op": "list_tools"},
            {"op": "call_tool", "name": "echo", "arguments": {"text": "hello"}},
            {"op": "call_tool", "name": "test_image_content", "arguments": {}},
            {"op": "call_tool", "name": "no_such_tool", "arguments": {}},
            {"op": "call_tool", "name": "delete_everything", "arguments": {"confirm": true}},
            {"op": "read_resource", "uri": "test://static-text"},
            {"op": "get_prompt", "name": "test_simple_prompt", "arguments": {}},
            {"op": "ping"},
        ]),
    );
    assert_eq!(
        tool_names(&steps[0]),
        ["delete_everything", "echo", "test_simple_text"],
        "only the tools in scope are listed"
    );
    let echoed = &steps[1]["result"];
    assert_eq!(echoed["content"][0]["text"], "hello", "{}", steps[1]);
    // Out of scope and nonexistent look the same.
    let out_of_scope = denied(&steps[2]);
    let unknown = denied(&steps[3]);
    assert_eq!(out_of_scope["data"], json!({"reason": "not_available"}));
    assert_eq!(unknown["data"], out_of_scope["data"]);
    assert!(
        out_of_scope["message"]
            .as_str()
            .unwrap()
            .contains("not available")
    );
    assert_eq!(
        out_of_scope["message"]
            .as_str()
            .unwrap()
            .replace("test_image_content", "X"),
        unknown["message"]
            .as_str()
            .unwrap()
            .replace("no_such_tool", "X")
    );
    // High impact: held for approval.
    let held = denied(&steps[4]);
    assert_eq!(held["data"]["reason"], "approval_required", "{held}");
    let approval = held["data"]["approval_id"].as_str().unwrap().to_owned();
    assert!(approval.starts_with("apr_"), "{held}");
    assert!(
        held["data"]["approval_url"]
            .as_str()
            .unwrap()
            .ends_with(&approval)
    );
    assert!(
        steps[5]["result"]["contents"][0]["text"].is_string(),
        "{}",
        steps[5]
    );
    assert!(steps[6]["result"]["messages"].is_array(), "{}", steps[6]);
    assert!(steps[7].get("error").is_none(), "{}", steps[7]);

    // The grantor sees the exact call and approves it.
    let (status, listed) = w
        .as_alice(reqwest::Method::GET, "/v1/approvals?status=pending", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["id"], approval.as_str());
    assert_eq!(listed["items"][0]["tool"], "fx.delete_everything");
    assert_eq!(listed["items"][0]["arguments"], json!({"confirm": true}));
    assert_eq!(listed["items"][0]["risk_tier"], "high_impact");
    let (status, decided) = w
        .as_alice(
            reqwest::Method::POST,
            &format!("/v1/approvals/{approval}/approve"),
            Some(json!({"comment": "go ahead"})),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    let (status, again) = w
        .as_alice(
            reqwest::Method::POST,
            &format!("/v1/approvals/{approval}/deny"),
            None,
        )
        .await;
    assert_eq!(
        status, 409,
        "a decided approval cannot be decided again: {again}"
    );

    // Different arguments are a different call; the same ones pass exactly once.
    let steps = w.mcp(
        "/mcp/fx",
        &token,
        json!([
            {"op": "call_tool", "name": "delete_everything", "arguments": {"confirm": false}},
            {"op": "call_tool", "name": "delete_everything", "arguments": {"confirm": true}},
            {"op": "call_tool", "name": "delete_everything", "arguments": {"confirm": true}},
        ]),
    );
    let other = denied(&steps[0]);
    assert_ne!(other["data"]["approval_id"], approval.as_str());
    assert!(
        steps[1]["result"]["content"].is_array(),
        "approved call passes: {}",
        steps[1]
    );
    let third = denied(&steps[2]);
    assert_ne!(
        third["data"]["approval_id"],
        approval.as_str(),
        "an approval is used once"
    );

    // The CLI lists what waits and decides it: `mandate approvals`, `mandate deny ID`.
    let other = other["data"]["approval_id"].as_str().unwrap();
    let listed = w.server.cli(&w.who.human_token, &["approvals"]);
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&other), "{listed}");
    let (ok, table, _) = w.server.cli_text(&w.who.human_token, &["approvals"]);
    assert!(
        ok && table.contains(other) && table.contains("high_impact"),
        "{table}"
    );
    let denied_now = w.server.cli(
        &w.who.human_token,
        &["deny", other, "--comment", "not that one"],
    );
    assert_eq!(denied_now["status"], "denied", "{denied_now}");
    assert_eq!(denied_now["comment"], "not that one");
    let (ok, _, err) = w.server.cli_text(&w.who.human_token, &["approve", other]);
    assert!(
        !ok && err.contains("409"),
        "a denied approval stays denied: {err}"
    );
    let (ok, _, err) = w.server.cli_text(&w.who.human_token, &["approve", "../x"]);
    assert!(
        !ok && !err.is_empty(),
        "a hostile id is refused before any request"
    );

    // The aggregated endpoint namespaces names.
    let steps = w.mcp("/mcp", &token, json!([{"op": "list_tools"}, {"op": "call_tool", "name": "fx.echo", "arguments": {"text": "x"}}]));
    assert_eq!(
        tool_names(&steps[0]),
        ["fx.delete_everything", "fx.echo", "fx.test_simple_text"]
    );
    assert_eq!(
        steps[1]["result"]["content"][0]["text"], "x",
        "{}",
        steps[1]
    );

    // The ledger has the decisions, with the arguments' hash and never the arguments.
    let audit = w.decisions(&mandate).await;
    let events = audit["items"].as_array().unwrap();
    assert!(events.len() >= 8, "{audit}");
    let text = audit.to_string();
    assert!(text.contains("sha256:"), "argument hashes are recorded");
    assert!(
        !text.contains("hello"),
        "arguments are not recorded by default"
    );
    assert!(!text.contains(&token), "the token is never recorded");
    for kind in ["approval.requested", "approval.granted", "tool.called"] {
        let (_, found) = http(
            reqwest::Method::GET,
            format!("{}/v1/audit?mandate={mandate}&type={kind}", w.server.url),
            &w.admin,
            None,
        )
        .await;
        assert!(
            !found["items"].as_array().unwrap().is_empty(),
            "no {kind} event"
        );
    }

    // Revoking the mandate stops the next call.
    w.revoke(&mandate).await;
    // The very next request, on the replica that revoked: 401, not an empty list.
    let response = reqwest::Client::new()
        .post(format!("{}/mcp/fx", w.server.url))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "a revoked mandate's token keeps working"
    );
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

/// The Python `mcp` package's own 2026-07-28 client (stateless, its multi-round-trip
/// driver): a call held for approval answers `input_required` with the approval page;
/// the client shows it (the person approves), answers, and the SDK's retry passes —
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_2026_07_28_client_shows_the_approval_page_and_its_retry_passes_once() {
    let w = world().await;
    let mandate = w
        .mandate(json!({
            "intent": "Clean up with the fixture",
            "scope": {"tools": [{"tool": "fx.delete_everything"}]},
            "data_ceiling": "internal",
            "mode": "execute",
            "approval": {"tiers": ["high_impact"]},
            "budgets": {"max_calls": 5},
        }))
        .await;
    let token = w.token(&mandate).await;
    let run = || {
        w.modern_client(
            &token,
            &[
                "--tool",
                "delete_everything",
                "--arguments",
                r#"{"confirm": true}"#,
            ],
        )
    };
    let lines = run();
    let asked = lines[0]["asked"]
        .as_str()
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(lines[0]["mode"], "url", "{lines:?}");
    assert!(
        asked.starts_with(&format!("{}/ui/approvals/apr_", w.server.url)),
        "{lines:?}"
    );
    let result = &lines.last().unwrap()["result"];
    assert_eq!(result["isError"], json!(false), "{lines:?}");
    let approval = asked.rsplit('/').next().unwrap();
    let (_, seen) = w
        .as_alice(
            reqwest::Method::GET,
            &format!("/v1/approvals/{approval}"),
            None,
        )
        .await;
    assert_eq!(seen["status"], "used", "{seen}");
    // The same call again needs a new approval (the client is asked about another).
    let again = run();
    assert_ne!(again[0]["asked"].as_str(), Some(asked), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_changes_and_unlimited_usage_are_seen_at_once() {
    let w = world().await;
    let mandate = w
        .mandate(json!({
            "intent": "Echo through two servers",
            "scope": {"tools": [{"tool": "fx.echo"}, {"tool": "fx2.echo"}]},
            "data_ceiling": "internal", "mode": "execute",
        }))
        .await;
    let token = w.token(&mandate).await;
    // The tenant's tool list is built now, without `fx2`.
    let listed = rpc(
        &format!("{}/mcp", w.server.url),
        &token,
        "tools/list",
        json!({}),
    )
    .await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fx.echo"], "{listed}");
    created(
        &w.server,
        "/v1/tool-servers",
        &w.admin,
        json!({"name": "fx2", "transport": {"kind": "mcp_http", "url": w.fixture.url}}),
    )
    .await;
    // The next request sees the new server (it used to wait for the list's expiry).
    let called = rpc(
        &format!("{}/mcp/fx2", w.server.url),
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "again"}}),
    )
    .await;
    assert!(called["error"].is_null(), "{called}");
    assert_eq!(called["result"]["content"][0]["text"], "again", "{called}");

    // A mandate without a call budget shows its use within a second.
    let started = std::time::Instant::now();
    let used = loop {
        let (_, view) = w
            .as_alice(
                reqwest::Method::GET,
                &format!("/v1/mandates/{mandate}"),
                None,
            )
            .await;
        let calls = view["usage"]["calls"].as_u64().unwrap_or(0);
        if calls >= 1 || started.elapsed() > std::time::Duration::from_secs(5) {
            break calls;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(used, 1, "the call was not counted");
}

#[tokio::test(flavor = "multi_thread")]
async fn recommend_only_mandates_record_proposals_a_human_executes_once() {
    let w = world().await;
    let mandate = w
        .mandate(json!({
            "intent": "Suggest what to echo",
            "scope": {"tools": [{"tool": "fx.echo"}]},
            "data_ceiling": "internal",
            "mode": "recommend",
        }))
        .await;
    let token = w.token(&mandate).await;
    let steps = w.mcp(
        "/mcp/fx",
        &token,
        json!([{"op": "call_tool", "name": "echo", "arguments": {"text": "proposed"}}]),
    );
    let error = denied(&steps[0]);
    assert_eq!(error["data"]["reason"], "proposed", "{error}");
    let proposal = error["data"]["proposal_id"].as_str().unwrap().to_owned();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("nothing was executed")
    );

    let (status, listed) = w
        .as_alice(reqwest::Method::GET, "/v1/proposals", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["id"], proposal.as_str());
    assert_eq!(listed["items"][0]["status"], "recorded");
    let (status, executed) = w
        .as_alice(
            reqwest::Method::POST,
            &format!("/v1/proposals/{proposal}/execute"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{executed}");
    assert_eq!(executed["status"], "executed", "{executed}");
    assert_eq!(
        executed["outcome"]["result"]["content"][0]["text"],
        "proposed"
    );
    let (status, twice) = w
        .as_alice(
            reqwest::Method::POST,
            &format!("/v1/proposals/{proposal}/execute"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a proposal executes once: {twice}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_challenges_without_a_token_and_checks_origins() {
    let w = world().await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/mcp", w.server.url))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", w.server.url);
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let response = client.get(&metadata_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let metadata: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(metadata["resource"], format!("{}/mcp", w.server.url));
    assert_eq!(metadata["authorization_servers"][0], w.server.url);

    // A token for another audience (the admin API) is refused at /mcp.
    let mandate = w
        .mandate(json!({
            "intent": "x", "scope": {"tools": [{"tool": "fx.echo"}]},
            "data_ceiling": "internal", "mode": "execute",
        }))
        .await;
    let wrong = task_token(&w.server, &w.who.agent, &w.who.key, &mandate, &w.server.url).await;
    let response = client
        .post(format!("{}/mcp", w.server.url))
        .bearer_auth(&wrong)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "audience is checked");

    // DNS rebinding: a foreign Origin is refused before anything else.
    let token = w.token(&mandate).await;
    let response = client
        .post(format!("{}/mcp", w.server.url))
        .bearer_auth(&token)
        .header("origin", "http://evil.example")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Hostile bodies: not JSON, a batch, a huge body.
    for (body, status) in [
        ("{".to_owned(), 400),
        (
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]".to_owned(),
            400,
        ),
        (
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
                "a".repeat(2 * 1024 * 1024)
            ),
            413,
        ),
    ] {
        // A fresh connection each: the server closes one whose body it refused unread.
        let response = reqwest::Client::new()
            .post(format!("{}/mcp", w.server.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    // Stateless revision: headers must agree with the body.
    let response = client
        .post(format!("{}/mcp/fx", w.server.url))
        .bearer_auth(&token)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "other")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "x"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");
    let response = client
        .post(format!("{}/mcp/fx", w.server.url))
        .bearer_auth(&token)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "stateless"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "stateless", "{body}");
}

/// A raw JSON-RPC call to the gateway (no session: each POST stands alone).
async fn rpc(url: &str, token: &str, method: &str, params: Value) -> Value {
    let (status, _, body) = rpc_answer(url, token, method, params).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `rpc`, with the HTTP status and the `WWW-Authenticate` challenges.
async fn rpc_answer(
    url: &str,
    token: &str,
    method: &str,
    params: Value,
) -> (u16, Vec<String>, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, challenges, response.json().await.unwrap())
}

/// Step-up authorization is the operator's choice per tool server. Off (the default), a
/// catalog tool outside the token's scope is refused like an unknown one; on, it
/// answers 403 with an `insufficient_scope` challenge naming the token's scope plus the
/// tool; a tool an operator policy forbids stays hidden either way, as does an unknown
/// one; the ledger records each refusal as before.
#[tokio::test(flavor = "multi_thread")]
async fn step_up_is_an_operator_choice_and_never_reveals_forbidden_tools() {
    let w = world().await;
    let mandate = w
        .mandate(json!({
            "intent": "Echo things",
            "scope": {"tools": [{"tool": "fx.echo"}]},
            "data_ceiling": "internal", "mode": "execute",
        }))
        .await;
    let token = w.token(&mandate).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let call = |name: &'static str| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            rpc_answer(
                &url,
                &token,
                "tools/call",
                json!({"name": name, "arguments": {}}),
            )
            .await
        }
    };
    let not_available = |(status, challenges, body): &(u16, Vec<String>, Value)| {
        assert_eq!(*status, 200, "{body}");
        assert!(challenges.is_empty(), "{challenges:?}");
        assert_eq!(denied(body)["data"], json!({"reason": "not_available"}));
    };

    // Off: indistinguishable from an unknown tool.
    not_available(&call("test_simple_text").await);
    not_available(&call("no_such_tool").await);

    // The operator turns step-up on for `fx`, and forbids one tool to agents.
    let (status, servers) = http(
        reqwest::Method::GET,
        format!("{}/v1/tool-servers", w.server.url),
        &w.admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{servers}");
    assert_eq!(servers["items"][0]["step_up"], false, "{servers}");
    let id = servers["items"][0]["id"].as_str().unwrap();
    let (status, server) = http(
        reqwest::Method::PATCH,
        format!("{}/v1/tool-servers/{id}", w.server.url),
        &w.admin,
        Some(json!({"step_up": true})),
    )
    .await;
    assert_eq!(status, 200, "{server}");
    assert_eq!(server["step_up"], true, "{server}");
    let (status, body) = http(
        reqwest::Method::PUT,
        format!("{}/v1/policies", w.server.url),
        &w.admin,
        Some(json!({"policies": [{"name": "deny.cedar", "text":
            "@id(\"no-deleting\")\nforbid (principal, action, resource == Mandate::Tool::\"fx.delete_everything\");\n"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // On: a tool the person could add gets the challenge, with the scope to ask for.
    let (status, challenges, body) = call("test_simple_text").await;
    assert_eq!(status, 403, "{body}");
    let bearer = challenges
        .iter()
        .find(|c| c.starts_with("Bearer "))
        .unwrap_or_else(|| panic!("no Bearer challenge: {challenges:?}"));
    assert!(bearer.contains(r#"error="insufficient_scope""#), "{bearer}");
    assert!(
        bearer.contains(r#"scope="fx.echo fx.test_simple_text""#),
        "{bearer}"
    );
    assert!(
        bearer.contains(&format!(
            r#"resource_metadata="{}/.well-known/oauth-protected-resource/mcp/fx""#,
            w.server.url
        )),
        "{bearer}"
    );
    assert_eq!(body["id"], 1, "{body}");
    assert_eq!(body["error"]["code"], REFUSED, "{body}");
    assert_eq!(body["error"]["data"]["reason"], "insufficient_scope");
    assert_eq!(
        body["error"]["data"]["scope"],
        "fx.echo fx.test_simple_text"
    );
    // Forbidden by the operator, or unknown: hidden as before.
    not_available(&call("delete_everything").await);
    not_available(&call("no_such_tool").await);
    // The tool in scope still works.
    let echoed = rpc(
        &url,
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(echoed["result"]["content"][0]["text"], "hi", "{echoed}");

    // Each refusal is in the ledger, out of scope, as before step-up.
    let audit = w.decisions(&mandate).await;
    let refused: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["tool"] == "fx.test_simple_text")
        .collect();
    assert_eq!(refused.len(), 2, "{audit}");
    for e in refused {
        assert_eq!(e["data"]["outcome"], "deny", "{e}");
        assert_eq!(e["data"]["out_of_scope"], true, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_upstreams_restart_budgets_hold_under_concurrency_and_a_dead_upstream_stalls_nothing()
{
    let w = world().await;
    let fixture = common::python_dir().join("mcp_fixture_server.py");
    created(
        &w.server,
        "/v1/tool-servers",
        &w.admin,
        json!({"name": "local", "transport": {"kind": "mcp_stdio", "command": "python3",
               "args": [fixture.to_str().unwrap(), "--stdio"]}}),
    )
    .await;
    // Nothing listens on this port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/mcp", dead.local_addr().unwrap());
    drop(dead);
    created(
        &w.server,
        "/v1/tool-servers",
        &w.admin,
        json!({"name": "gone", "transport": {"kind": "mcp_http", "url": dead_url}}),
    )
    .await;
    let mandate = w
        .mandate(json!({
            "intent": "Echo a little",
            "scope": {"tools": [{"tool": "local.echo"}, {"tool": "fx.echo"}, {"tool": "gone.*"}]},
            "data_ceiling": "internal",
            "mode": "execute",
            "budgets": {"max_calls": 6},
        }))
        .await;
    let token = w.token(&mandate).await;
    let mcp = format!("{}/mcp", w.server.url);

    // Over stdio.
    let reply = rpc(
        &format!("{mcp}/local"),
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "via stdio"}}),
    )
    .await;
    assert_eq!(
        reply["result"]["content"][0]["text"], "via stdio",
        "{reply}"
    );
    // The aggregated list still answers with a dead upstream in the tenant.
    let started = std::time::Instant::now();
    let listed = rpc(&mcp, &token, "tools/list", json!({})).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"local.echo") && names.contains(&"fx.echo"),
        "{listed}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let gone = rpc(
        &format!("{mcp}/gone"),
        &token,
        "tools/call",
        json!({"name": "anything", "arguments": {}}),
    )
    .await;
    assert!(gone.get("error").is_some(), "{gone}");

    // The stdio server dies: the supervisor restarts it, and calls work again.
    let pattern = format!("{} --stdio", fixture.display());
    let killed = std::process::Command::new("pkill")
        .args(["-f", &pattern])
        .status()
        .unwrap();
    assert!(killed.success(), "the stdio upstream was not running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let reply = rpc(
            &format!("{mcp}/local"),
            &token,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "again"}}),
        )
        .await;
        if reply["result"]["content"][0]["text"] == "again" {
            break;
        }
        assert!(reply["error"].is_object(), "{reply}");
        assert!(
            std::time::Instant::now() < deadline,
            "the stdio upstream never came back: {reply}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Budget: 6 calls in all; 2 used above (plus any refused while restarting, which
    // spent too). 12 concurrent calls: never more than the budget in total.
    let (_, before) = http(
        reqwest::Method::GET,
        format!("{}/v1/mandates/{mandate}", w.server.url),
        &w.admin,
        None,
    )
    .await;
    let used = before["mandate"]["usage"]["calls"]
        .as_u64()
        .or_else(|| before["usage"]["calls"].as_u64())
        .unwrap();
    let mut calls = Vec::new();
    for i in 0..12 {
        let (url, token) = (format!("{mcp}/fx"), token.clone());
        calls.push(tokio::spawn(async move {
            rpc(
                &url,
                &token,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": format!("n{i}")}}),
            )
            .await
        }));
    }
    let mut passed = 0;
    for call in calls {
        let reply = call.await.unwrap();
        if reply.get("result").is_some() {
            passed += 1;
        } else {
            assert_eq!(reply["error"]["code"], REFUSED, "{reply}");
            assert_eq!(reply["error"]["data"]["reason"], "budget", "{reply}");
            assert!(
                reply["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("budget"),
                "{reply}"
            );
        }
    }
    assert_eq!(
        passed,
        6u64.saturating_sub(used),
        "exactly the rest of the budget passes"
    );
}

/// A stateless (MCP 2026-07-28) `tools/call`, sent as its revision wants it: the
/// headers, and `_meta` with the revision and the client's capabilities; `extra` is
/// merged into the params (a retry's `requestState` and `inputResponses`).
async fn modern_call(
    url: &str,
    token: &str,
    name: &str,
    arguments: Value,
    capabilities: Value,
    extra: Value,
) -> (u16, Value) {
    let mut params = json!({
        "name": name,
        "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        },
    });
    for (key, value) in extra.as_object().unwrap() {
        params[key] = value.clone();
    }
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What an upstream asks during a call (elicitation, sampling) reaches a 2026-07-28
/// client as `input_required` (its request under our key, our request state); the
/// retry with the answer continues the same upstream call, whose result depends on the
/// answer. Only the token that made the call can answer, once; unknown states and
/// oversized answers are refused without spending the round; a client that did not
/// declare the capability is never asked; a mandate revoked between the rounds
/// refuses the retry and the gateway abandons the upstream call.
#[tokio::test(flavor = "multi_thread")]
async fn what_an_upstream_asks_reaches_a_2026_07_28_client_as_input_required() {
    let w = world().await;
    let terms = json!({
        "intent": "Ask the person through the fixture",
        "scope": {"tools": [{"tool": "fx.test_elicitation"}, {"tool": "fx.test_sampling"}]},
        "data_ceiling": "internal",
        "mode": "execute",
    });
    let mandate = w.mandate(terms.clone()).await;
    let token = w.token(&mandate).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let form = json!({"elicitation": {}});
    let ask = |token: String, capabilities: Value| {
        let url = url.clone();
        async move {
            modern_call(
                &url,
                &token,
                "test_elicitation",
                json!({"message": "Who are you?"}),
                capabilities,
                json!({}),
            )
            .await
        }
    };
    let retry = |token: String, state: Value, answer: Value| {
        let url = url.clone();
        async move {
            modern_call(
                &url,
                &token,
                "test_elicitation",
                json!({"message": "Who are you?"}),
                json!({"elicitation": {}}),
                json!({"requestState": state, "inputResponses": {"mandate/input": answer}}),
            )
            .await
        }
    };
    let (status, asked) = ask(token.clone(), form.clone()).await;
    assert_eq!(status, 200, "{asked}");
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked}");
    let request = &result["inputRequests"]["mandate/input"];
    assert_eq!(request["method"], "elicitation/create", "{asked}");
    assert_eq!(request["params"]["message"], "Who are you?", "{asked}");
    let state = result["requestState"].clone();
    assert!(
        state.as_str().unwrap().starts_with("mandate:ask:"),
        "{asked}"
    );
    let accept =
        json!({"action": "accept", "content": {"username": "alice", "email": "alice@example.com"}});

    // Hostile retries, none of which answers (or spends) the round: another token of
    // the same mandate, another mandate's token, a state never issued, an oversized
    // answer.
    let unknown = |body: &Value| {
        assert_eq!(body["error"]["code"], -32602, "{body}");
        assert!(body.get("result").is_none(), "{body}");
    };
    let other_token = w.token(&mandate).await;
    let (_, body) = retry(other_token, state.clone(), accept.clone()).await;
    unknown(&body);
    let other_mandate = w.mandate(terms.clone()).await;
    let other_mandates_token = w.token(&other_mandate).await;
    let (_, body) = retry(other_mandates_token, state.clone(), accept.clone()).await;
    unknown(&body);
    let (_, body) = retry(
        token.clone(),
        json!("mandate:ask:AAAAAAAAAAAAAAAAAAAAAA"),
        accept.clone(),
    )
    .await;
    unknown(&body);
    let huge =
        json!({"action": "accept", "content": {"username": "a".repeat(300 * 1024), "email": "x"}});
    let (_, body) = retry(token.clone(), state.clone(), huge).await;
    unknown(&body);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger"),
        "{body}"
    );

    // The caller's own answer: the same upstream call goes on, and its result is
    // made of the answer.
    let (status, done) = retry(token.clone(), state.clone(), accept.clone()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("action=accept") && text.contains("alice@example.com"),
        "{done}"
    );
    // Answered once.
    let (_, body) = retry(token.clone(), state.clone(), accept.clone()).await;
    unknown(&body);

    // Sampling, the same way.
    let (_, asked) = modern_call(
        &url,
        &token,
        "test_sampling",
        json!({"prompt": "What is six times seven?"}),
        json!({"sampling": {}}),
        json!({}),
    )
    .await;
    let request = &asked["result"]["inputRequests"]["mandate/input"];
    assert_eq!(request["method"], "sampling/createMessage", "{asked}");
    let sampled = json!({"role": "assistant", "content": {"type": "text", "text": "forty-two"},
        "model": "test-model", "stopReason": "endTurn"});
    let (_, done) = modern_call(
        &url,
        &token,
        "test_sampling",
        json!({"prompt": "What is six times seven?"}),
        json!({"sampling": {}}),
        json!({"requestState": asked["result"]["requestState"], "inputResponses": {"mandate/input": sampled}}),
    )
    .await;
    assert_eq!(
        done["result"]["content"][0]["text"], "LLM response: forty-two",
        "{done}"
    );

    // The Python `mcp` package's own 2026-07-28 client, given an elicitation
    // callback, meets the same thing and answers it; its SDK's retry returns the
    // upstream's result made of that answer.
    let lines = w.modern_client(
        &token,
        &[
            "--tool",
            "test_elicitation",
            "--arguments",
            r#"{"message": "Your name?"}"#,
            "--answer",
            r#"{"username": "bob", "email": "bob@example.com"}"#,
        ],
    );
    assert_eq!(lines[1]["message"], "Your name?", "{lines:?}");
    let text = lines.last().unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("action=accept") && text.contains("bob@example.com"),
        "{lines:?}"
    );

    // A client that declared no elicitation is never asked: the upstream hears the
    // refusal and the call ends without a round trip.
    let (_, body) = ask(token.clone(), json!({})).await;
    assert_ne!(body["result"]["resultType"], "input_required", "{body}");

    // Revoked between the rounds: the retry is refused and the gateway abandons the
    // upstream call (its outcome recorded as an error, not left waiting).
    let (_, asked) = ask(token.clone(), form.clone()).await;
    let state = asked["result"]["requestState"].clone();
    assert!(state.is_string(), "{asked}");
    w.revoke(&mandate).await;
    let (status, body) = retry(token.clone(), state, accept).await;
    assert_eq!(status, 401, "{body}");
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let (_, found) = http(
            reqwest::Method::GET,
            format!(
                "{}/v1/audit?mandate={mandate}&type=tool.called&limit=50",
                w.server.url
            ),
            &w.admin,
            None,
        )
        .await;
        outcomes = found["items"].as_array().cloned().unwrap_or_default();
        // Elicitation answered (raw and by the SDK), sampling, the undeclared one, and
        // the abandoned one.
        if outcomes.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    let abandoned = outcomes
        .iter()
        .filter(|e| e["data"]["is_error"] == json!(true))
        .count();
    assert!(
        abandoned >= 2,
        "the undeclared and the abandoned call failed: {outcomes:?}"
    );
}

/// Opens a 2026-07-28 `subscriptions/listen` stream for tool list changes on `url`;
/// what arrives on it is gathered into the returned text.
async fn listen(url: &str, token: &str) -> std::sync::Arc<std::sync::Mutex<String>> {
    listen_to(url, token, json!({"toolsListChanged": true})).await
}

/// `listen` with the notifications filter `filter`.
async fn listen_to(
    url: &str,
    token: &str,
    filter: Value,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(
            &json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
            "params": {"notifications": filter,
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .send()
        .await
        .unwrap();
    gathered(response)
}

/// Opens a 2025-11-25 session on `url` and its standalone GET stream; what arrives on
/// it is gathered into the returned text.
async fn session_stream(url: &str, token: &str) -> std::sync::Arc<std::sync::Mutex<String>> {
    session_stream_subscribed(url, token, None).await.0
}

/// `session_stream`, the session first subscribing to `uri` (`resources/subscribe`)
/// when one is given; the subscription's answer.
async fn session_stream_subscribed(
    url: &str,
    token: &str,
    uri: Option<&str>,
) -> (std::sync::Arc<std::sync::Mutex<String>>, Value) {
    let client = reqwest::Client::new();
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut subscribed = Value::Null;
    if let Some(uri) = uri {
        subscribed = client
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(
                &json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
                "params": {"uri": uri}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    let stream = client
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    (gathered(stream), subscribed)
}

/// The messages gathered from an event stream once its text holds `awaited` (or after
/// ten seconds), and that text.
async fn messages_once(seen: &std::sync::Mutex<String>, awaited: &str) -> (String, Vec<Value>) {
    let mut heard = String::new();
    for _ in 0..100 {
        heard = seen.lock().unwrap().clone();
        if heard.contains(awaited) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let messages = heard
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    (heard, messages)
}

/// What an event stream (status 200) sends, gathered into a text as it arrives.
fn gathered(mut stream: reqwest::Response) -> std::sync::Arc<std::sync::Mutex<String>> {
    assert_eq!(stream.status(), 200);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.chunk().await {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    seen
}

/// A server in front of the `--dynamic` fixture (`fx`) and, with `other`, a plain one
/// (`other`); `token(tools)` is a task token of a mandate scoped to `tools`.
struct Watching {
    server: Server,
    admin: String,
    who: common::Actors,
    _fixtures: Vec<Fixture>,
    _dir: tempfile::TempDir,
}

impl Watching {
    async fn start(other: bool) -> Watching {
        let mut fixtures = vec![("fx", Fixture::start_with(&["--dynamic"]))];
        if other {
            fixtures.push(("other", Fixture::start()));
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]);
        let admin = admin_token(dir.path());
        for (name, fixture) in &fixtures {
            created(
                &server,
                "/v1/tool-servers",
                &admin,
                json!({"name": name, "transport": {"kind": "mcp_http", "url": fixture.url}}),
            )
            .await;
        }
        let who = common::human_and_agent(&server, &admin).await;
        Watching {
            server,
            admin,
            who,
            _fixtures: fixtures.into_iter().map(|(_, f)| f).collect(),
            _dir: dir,
        }
    }

    async fn token(&self, tools: Value) -> String {
        let terms = json!({"intent": "Watch the tools", "scope": {"tools": tools},
            "data_ceiling": "internal", "mode": "execute"});
        let mandate = common::consented_mandate(&self.server, &self.admin, &self.who, terms).await;
        let resource = format!("{}/mcp", self.server.url);
        task_token(
            &self.server,
            &self.who.agent,
            &self.who.key,
            &mandate,
            &resource,
        )
        .await
    }
}

/// An upstream whose tools change is noticed (the gateway polls the listening
/// tenants' servers): a 2026-07-28 client listening on that server, whose scope
/// covers its tools, is told `notifications/tools/list_changed` on its
/// `subscriptions/listen` stream (after the acknowledgement, tagged with the
/// stream's id), a session client on its standalone GET stream; a caller who cannot
/// see that server hears nothing on either.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_list_change_reaches_the_listeners_who_may_see_it() {
    let w = Watching::start(true).await;
    let server = &w.server;
    let token = w
        .token(json!([{"tool": "fx.echo"}, {"tool": "fx.add_tool"}]))
        .await;
    let stranger = w.token(json!([{"tool": "other.echo"}])).await;
    let told = listen(&format!("{}/mcp/fx", server.url), &token).await;
    let not_told = listen(&format!("{}/mcp", server.url), &stranger).await;
    let in_session = session_stream(&format!("{}/mcp", server.url), &token).await;
    let stranger_in_session = session_stream(&format!("{}/mcp", server.url), &stranger).await;
    // Without a session there is no standalone stream.
    let response = reqwest::Client::new()
        .get(format!("{}/mcp", server.url))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // The poller's first look at the servers.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, added) = modern_call(
        &format!("{}/mcp/fx", server.url),
        &token,
        "add_tool",
        json!({}),
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        added["result"]["content"][0]["text"], "added extra",
        "{added}"
    );
    let (heard, messages) = messages_once(&told, "notifications/tools/list_changed").await;
    assert_eq!(
        messages[0]["method"], "notifications/subscriptions/acknowledged",
        "{heard}"
    );
    assert_eq!(
        messages[0]["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "{heard}"
    );
    assert_eq!(
        messages[1]["method"], "notifications/tools/list_changed",
        "{heard}"
    );
    assert_eq!(
        messages[1]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
        "{heard}"
    );
    // The session client's GET stream, the same notification without a subscription.
    let (heard, messages) = messages_once(&in_session, "list_changed").await;
    assert_eq!(
        messages.first(),
        Some(
            &json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {}})
        ),
        "{heard}"
    );
    let stranger_heard = stranger_in_session.lock().unwrap().clone();
    assert!(!stranger_heard.contains("list_changed"), "{stranger_heard}");
    let stranger_heard = not_told.lock().unwrap().clone();
    assert!(stranger_heard.contains("acknowledged"), "{stranger_heard}");
    assert!(
        !stranger_heard.contains("list_changed"),
        "a caller who cannot see the server was told: {stranger_heard}"
    );
}

/// A resource a 2026-07-28 client subscribed to on `subscriptions/listen`
/// (`resourceSubscriptions`, honoured only where its mandate lets it read the
/// server's resources) is read by the gateway's poller; when its contents change the
/// stream is told `notifications/resources/updated`. A caller who may not read that
/// server's resources is not honoured the subscription and hears nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_resource_update_reaches_only_who_may_read_it() {
    let w = Watching::start(false).await;
    let server = &w.server;
    let token = w
        .token(json!([{"tool": "fx./resources"}, {"tool": "fx.touch_resource"}]))
        .await;
    let stranger = w.token(json!([{"tool": "fx.echo"}])).await;
    let url = format!("{}/mcp/fx", server.url);
    let filter = json!({"resourceSubscriptions": ["test://watched-resource"]});
    let told = listen_to(&url, &token, filter.clone()).await;
    let not_told = listen_to(&url, &stranger, filter).await;
    // Session clients subscribe with resources/subscribe and hear on their GET stream.
    let watched = "test://watched-resource";
    let (in_session, subscribed) = session_stream_subscribed(&url, &token, Some(watched)).await;
    assert_eq!(subscribed["result"], json!({}), "{subscribed}");
    let (stranger_in_session, refused) =
        session_stream_subscribed(&url, &stranger, Some(watched)).await;
    assert_eq!(refused["error"]["code"], REFUSED, "{refused}");
    // The poller's first read.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, touched) = modern_call(
        &url,
        &token,
        "touch_resource",
        json!({}),
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{touched}");
    let (heard, messages) = messages_once(&told, "notifications/resources/updated").await;
    assert_eq!(
        messages[0]["params"]["notifications"],
        json!({"resourceSubscriptions": ["test://watched-resource"]}),
        "{heard}"
    );
    assert_eq!(
        messages[1]["method"], "notifications/resources/updated",
        "{heard}"
    );
    assert_eq!(
        messages[1]["params"]["uri"], "test://watched-resource",
        "{heard}"
    );
    let stranger_heard = not_told.lock().unwrap().clone();
    let messages: Vec<Value> = stranger_heard
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert_eq!(messages.len(), 1, "{stranger_heard}");
    assert_eq!(
        messages[0]["params"]["notifications"],
        json!({}),
        "{stranger_heard}"
    );
    let (heard, messages) = messages_once(&in_session, "resources/updated").await;
    assert_eq!(
        messages.first(),
        Some(
            &json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": watched}})
        ),
        "{heard}"
    );
    let stranger_heard = stranger_in_session.lock().unwrap().clone();
    assert!(!stranger_heard.contains("updated"), "{stranger_heard}");
}
