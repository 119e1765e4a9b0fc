#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The console in a real browser (Debian's chromium, driven by playwright-core) against
//! the real binary, an MCP upstream and an MCP client: a person signs in, consents to
//! the mandate an agent asked for, watches the agent's high-impact call arrive in the
//! inbox without reloading, approves it and sees it go through, then revokes the
//! mandate and the agent's next call fails, and reads her agent's access review. An
//! administrator then walks every console
//! page: no secret (a broker secret, API tokens, the password) appears on any of them.
//! Screenshots of every step: `target/tmp/screenshots/`.

use base64::Engine as _;
use serde_json::{Value, json};

mod common;

use common::browser::Browser;
use common::{Fixture, Server, admin_token, created, http, mcp_client, task_token};

const PASSWORD: &str = "a long console password";
const PLANTED: &str = "sk-console-must-never-show-0123456789";

fn call(server: &Server, token: &str, name: &str, arguments: Value) -> Value {
    let steps = mcp_client(
        &format!("{}/mcp/fx", server.url),
        Some(token),
        &json!([{"op": "call_tool", "name": name, "arguments": arguments}]),
    );
    steps[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_approve_and_revoke_in_the_browser() {
    let fixture = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[("MANDATE_MASTER_KEY", &format!("k1:{key}"))],
    );
    let admin = admin_token(dir.path());
    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "fx", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    let (status, _) = http(
        reqwest::Method::PUT,
        format!("{}/v1/secrets/upstream-key", server.url),
        &admin,
        Some(json!({"value": PLANTED, "inject": {"kind": "bearer"}})),
    )
    .await;
    assert_eq!(status, 200);
    let who = common::human_and_agent(&server, &admin).await;
    common::set_password(&server, &admin, &who.human, PASSWORD);
    let operator = created(
        &server,
        "/v1/humans",
        &admin,
        json!({"display_name": "Olivia Operator", "email": "olivia@example.com", "groups": ["mandate-admins"]}),
    )
    .await;
    common::set_password(&server, &admin, &operator, PASSWORD);

    // The agent asks for a mandate, as itself.
    let (status, agent_token) = http(
        reqwest::Method::POST,
        format!("{}/v1/agents/{}/tokens", server.url, who.agent),
        &admin,
        Some(json!({"label": "requests"})),
    )
    .await;
    assert_eq!(status, 201);
    let agent_token = agent_token["token"].as_str().unwrap().to_owned();
    let mandate = created(
        &server,
        "/v1/mandates",
        &agent_token,
        json!({
            "agent_id": who.agent,
            "human_id": who.human,
            "intent": "Tidy the fixture's test data",
            "scope": {"tools": [{"tool": "fx.echo"}, {"tool": "fx.delete_everything"}]},
            "data_ceiling": "internal",
            "mode": "execute",
            "approval": {"tiers": ["high_impact"]},
            "budgets": {"max_calls": 10},
            "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        }),
    )
    .await;

    // Alice signs in (a wrong password first: refused, visibly) and consents.
    let mut alice = Browser::open(&server.url, "alice");
    alice.goto("/ui/mandates");
    alice.see("Sign in");
    alice.fill("Email", "alice@example.com");
    alice.fill("Password", "not my password");
    alice.click("button", "Sign in");
    alice.see("Wrong email or password");
    alice.fill("Password", PASSWORD);
    alice.click("button", "Sign in");
    assert!(
        alice.url().ends_with("/ui/mandates"),
        "back where she was going"
    );
    alice.goto("/ui/");
    alice.see("Waiting for your consent");
    alice.click("link", "Tidy the fixture's test data");
    alice.see("fx.delete_everything");
    alice.click("button", "Consent");
    alice.see("You consented");
    let (_, view) = http(
        reqwest::Method::GET,
        format!("{}/v1/mandates/{mandate}", server.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        view["mandate"]["status"]
            .as_str()
            .or(view["status"].as_str()),
        Some("active"),
        "{view}"
    );

    // The inbox is open when the agent's high-impact call is held: it appears live.
    let resource = format!("{}/mcp", server.url);
    let token = task_token(&server, &who.agent, &who.key, &mandate, &resource).await;
    alice.goto("/ui/approvals");
    alice.see("No approvals here.");
    let held = call(
        &server,
        &token,
        "delete_everything",
        json!({"confirm": true}),
    );
    let approval = held["error"]["data"]["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("held: {held}"))
        .to_owned();
    alice.see("fx.delete_everything");
    assert!(!alice.url().contains(&approval), "no reload, no navigation");
    alice.click("link", "fx.delete_everything");
    alice.see("\"confirm\": true");
    alice.see("Tidy the fixture's test data");
    alice.fill("Comment (optional)", "fine for the test data");
    alice.click("button", "Approve");
    alice.see("Approved.");

    // The agent's identical retry goes through, once; the console shows it used.
    let passed = call(
        &server,
        &token,
        "delete_everything",
        json!({"confirm": true}),
    );
    assert!(
        passed["result"]["content"].is_array(),
        "approved call passes: {passed}"
    );
    alice.goto(&format!("/ui/approvals/{approval}"));
    alice.see("used");

    // Alice revokes; the agent's next call fails.
    alice.goto(&format!("/ui/mandates/{mandate}"));
    alice.see("approval.granted");
    alice.fill("Reason (optional)", "done with it");
    alice.click("button", "Revoke");
    alice.see("Revoked.");
    let mut refused = false;
    for _ in 0..50 {
        let after = call(&server, &token, "echo", json!({"text": "still there?"}));
        if after.get("result").is_none() {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(refused, "the revoked mandate's token still works");

    // Alice's access review of her agent: the revoked mandate, both tools used, the
    // approval asked and given.
    alice.goto("/ui/reviews");
    alice.see("Access reviews");
    alice.see("Tidy the fixture's test data");
    alice.see("1 asked, 1 given");
    drop(alice);

    // An administrator walks every page: no secret anywhere.
    let mut olivia = Browser::open(&server.url, "operator-crawl");
    olivia.sign_in("olivia@example.com", PASSWORD);
    olivia.see("Hello, Olivia");
    let crawl = olivia.step(json!({
        "do": "crawl",
        "forbidden": [PLANTED, admin, who.human_token, agent_token, token, PASSWORD],
    }));
    let pages = crawl["pages"].as_array().unwrap();
    assert!(pages.len() >= 5, "the crawl saw the console: {crawl}");
    assert!(
        pages.iter().any(|p| p.as_str().unwrap().contains(&mandate)),
        "{crawl}"
    );
    assert_eq!(crawl["leaks"], json!([]), "secrets on pages: {crawl}");
}
