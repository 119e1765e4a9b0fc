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

#[path = "gateway/announced.rs"]
mod announced;
#[path = "gateway/asks.rs"]
mod asks;
mod common;
#[path = "gateway/notifications.rs"]
mod notifications;
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

    /// A consented `execute` mandate for `intent` over `tools` (internal data), and a
    /// token for it.
    async fn executing(&self, intent: &str, tools: &[&str]) -> (String, String) {
        let scope: Vec<Value> = tools.iter().map(|t| json!({"tool": t})).collect();
        let mandate = self
            .mandate(json!({
                "intent": intent,
                "scope": {"tools": scope},
                "data_ceiling": "internal", "mode": "execute",
            }))
            .await;
        let token = self.token(&mandate).await;
        (mandate, token)
    }

    async fn token(&self, mandate: &str) -> String {
        common::mcp_token(&self.server, &self.who, mandate).await
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

    // Concurrent identical retries of an approved call: one passes; every other is
    // held anew, told the same as a retry after it would be (the approval to ask for).
    let url = format!("{}/mcp/fx", w.server.url);
    let race = json!({"name": "delete_everything", "arguments": {"confirm": "race"}});
    let held = rpc(&url, &token, "tools/call", race.clone()).await;
    let first = held["error"]["data"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = w
        .as_alice(
            reqwest::Method::POST,
            &format!("/v1/approvals/{first}/approve"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let retries: Vec<_> = (0..6)
        .map(|_| {
            let (url, token, race) = (url.clone(), token.clone(), race.clone());
            tokio::spawn(async move { rpc(&url, &token, "tools/call", race).await })
        })
        .collect();
    let mut passed = 0;
    let mut held_anew = std::collections::BTreeSet::new();
    for retry in retries {
        let reply = retry.await.unwrap();
        if reply["result"].is_object() {
            passed += 1;
            continue;
        }
        assert_eq!(
            reply["error"]["data"]["reason"], "approval_required",
            "{reply}"
        );
        let id = reply["error"]["data"]["approval_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(id, first, "{reply}");
        held_anew.insert(id);
    }
    assert_eq!(passed, 1, "an approval is used once");
    assert!(
        held_anew.len() <= 1,
        "one new approval for the same call: {held_anew:?}"
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
    let (mandate, token) = w
        .executing("Echo through two servers", &["fx.echo", "fx2.echo"])
        .await;
    // The tenant's tool list is built now, without `fx2`.
    assert_eq!(listed_tools(&w, &token).await, ["fx.echo"]);
    created(
        &w.server,
        "/v1/tool-servers",
        &w.admin,
        json!({"name": "fx2", "transport": {"kind": "mcp_http", "url": w.fixture.url}}),
    )
    .await;
    // The next request sees the new server (it used to wait for the list's expiry).
    let called = echo(&w, &token, "fx2", "again").await;
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

/// The tools the tenant's `/mcp` lists to `token`, sorted.
async fn listed_tools(w: &World, token: &str) -> Vec<String> {
    let listed = rpc(
        &format!("{}/mcp", w.server.url),
        token,
        "tools/list",
        json!({}),
    )
    .await;
    tool_names(&listed)
}

/// `echo` of `server` called through its own endpoint with `text`: the answer.
async fn echo(w: &World, token: &str, server: &str, text: &str) -> Value {
    rpc(
        &format!("{}/mcp/{server}", w.server.url),
        token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": text}}),
    )
    .await
}

/// Registers an MCP server `name` at `http://127.0.0.1:{port}/mcp`.
async fn register_at(w: &World, name: &str, port: u16) {
    created(
        &w.server,
        "/v1/tool-servers",
        &w.admin,
        json!({"name": name, "transport": {"kind": "mcp_http",
            "url": format!("http://127.0.0.1:{port}/mcp")}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_could_not_be_listed_is_asked_again_soon() {
    let w = world().await;
    let (_, token) = w
        .executing(
            "Echo through a server that starts late",
            &["fx.echo", "late.echo"],
        )
        .await;
    // A server registered at an address where nothing listens yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    register_at(&w, "late", port).await;
    // Twice: the first list catalogues fx's tools, which makes the next one rebuild;
    // the second is a snapshot that lacks `late`, and stays current otherwise.
    for _ in 0..2 {
        assert_eq!(listed_tools(&w, &token).await, ["fx.echo"]);
    }
    // It starts: its tools are listed and callable well within the catalog's 30 s TTL
    // (the snapshot that lacked it used to be kept that long).
    let _late = Fixture::start_with(&["--port", &port.to_string()]);
    let started = std::time::Instant::now();
    loop {
        let names = listed_tools(&w, &token).await;
        if names == ["fx.echo", "late.echo"] {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "still {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let called = echo(&w, &token, "late", "late").await;
    assert_eq!(called["result"]["content"][0]["text"], "late", "{called}");
}

/// An upstream that accepts connections and never answers: listing it runs into the
/// call timeout (6 s here). The tenant's other tools are listed and callable all the
/// while, and no request waits that long for it more than once: a build someone waits
/// for gives it 2 s once it has failed, and a snapshot past its TTL is answered while
/// it is rebuilt behind the answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_upstream_keeps_no_one_waiting_twice() {
    use std::time::{Duration, Instant};
    let w = world_with("[gateway]\ncall_timeout_seconds = 6\n").await;
    let (_, token) = w
        .executing("Echo beside a server that hangs", &["fx.echo", "hang.echo"])
        .await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    register_at(&w, "hang", port).await;
    let timed = |started: Instant| started.elapsed();
    // The first build waits for the call timeout; fx's tools are listed with it.
    let started = Instant::now();
    assert_eq!(listed_tools(&w, &token).await, ["fx.echo"]);
    let first = timed(started);
    // Cataloguing fx's tools changed the catalog: this build is waited for, and gives
    // the server that failed 2 s, not 6.
    let started = Instant::now();
    assert_eq!(listed_tools(&w, &token).await, ["fx.echo"]);
    let second = timed(started);
    assert!(
        second < Duration::from_secs(5),
        "waited {second:?} (first {first:?})"
    );
    // Past the 1 s an incomplete snapshot is kept: answered at once, rebuilt behind.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(listed_tools(&w, &token).await, ["fx.echo"]);
        let called = echo(&w, &token, "fx", "beside").await;
        assert_eq!(called["result"]["content"][0]["text"], "beside", "{called}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let five = timed(started);
    // Each would take at least 2 s if it waited on the upstream (10 s in all).
    assert!(five < Duration::from_secs(6), "five rounds took {five:?}");
    eprintln!("first {first:?}, second {second:?}, five rounds {five:?}");
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
