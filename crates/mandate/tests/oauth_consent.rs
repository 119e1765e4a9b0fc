#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! A standard MCP client authorizes itself against the real binary (Flow A): the Python
//! `mcp` package's OAuth client discovers the gateway's RFC 9728 metadata and our RFC
//! 8414 metadata, registers (RFC 7591), and sends its person to `/oauth2/authorize`
//! (PKCE S256, resource indicator). In a real browser the person signs in and fills the
//! consent screen — the mandate: intent, tools, limits — and grants. The client then
//! redeems the code and calls a tool through the gateway; a tool the person did not
//! grant is refused. The mandate is active with an `oauth` consent, audited.
//! Screenshots: `target/tmp/screenshots/oauth-consent/`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;

use common::browser::Browser;
use common::{Fixture, Server, admin_token, created, http, python_dir};

const PASSWORD: &str = "a long console password";

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_client_is_authorized_through_the_consent_screen() {
    let fixture = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin = admin_token(dir.path());
    let fx = created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "fx", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    // The operator's catalog: offered with its tiers beside what the upstream lists.
    for (name, tier) in [("echo", "read"), ("delete_everything", "high_impact")] {
        created(
            &server,
            "/v1/tools",
            &admin,
            json!({"server_id": fx, "name": name, "risk_tier": tier}),
        )
        .await;
    }
    let alice = created(
        &server,
        "/v1/humans",
        &admin,
        json!({"display_name": "Alice", "email": "alice@example.com"}),
    )
    .await;
    common::set_password(&server, &admin, &alice, PASSWORD);

    // The MCP client, run to the point where it needs its person.
    let mut client = Command::new("python3")
        .arg(python_dir().join("mcp_oauth_client.py"))
        .arg(format!("{}/mcp/fx", server.url))
        .args(["--script", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let steps = json!([
            {"op": "list_tools"},
            {"op": "call_tool", "name": "echo", "arguments": {"text": "through oauth"}},
            {"op": "call_tool", "name": "delete_everything", "arguments": {}},
        ]);
        let mut stdin = client.stdin.take().unwrap();
        stdin.write_all(steps.to_string().as_bytes()).unwrap();
    }
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let first = lines.next().expect("the client printed nothing").unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    let url = first["authorize"]
        .as_str()
        .unwrap_or_else(|| panic!("expected the authorization URL, got {first}"))
        .to_owned();
    assert!(
        url.starts_with(&format!("{}/oauth2/authorize?", server.url)),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("resource="), "{url}");

    // The person, in a browser: sign in, then the consent screen is the mandate.
    let mut alice_browser = Browser::open(&server.url, "oauth-consent");
    alice_browser.goto(&url);
    alice_browser.see("Sign in");
    alice_browser.fill("Email", "alice@example.com");
    alice_browser.fill("Password", PASSWORD);
    alice_browser.click("button", "Sign in");
    alice_browser.see("Authorize Fixture Agent");
    alice_browser.see("fx.delete_everything");
    alice_browser.see("high_impact");
    // The screen listed the fixture upstream itself (no agent had called it): its own
    // tools are offered beside the operator's. Alice grants the harmless tool only.
    let text = alice_browser.text();
    let offered: std::collections::BTreeSet<&str> = text
        .split(char::is_whitespace)
        .filter(|w| w.starts_with("fx."))
        .collect();
    assert!(
        offered.contains("fx.test_simple_text"),
        "the upstream's tools are offered: {text}"
    );
    for tool in offered.into_iter().filter(|t| *t != "fx.echo") {
        alice_browser.step(json!({"do": "uncheck", "label": tool}));
    }
    alice_browser.fill("Intent", "Echo a test phrase through the fixture");
    alice_browser.fill("Call budget", "5");
    // The page is long now: a click on Grant was seen to focus it and send nothing
    // (no request reached the server), so the form is submitted through its button.
    alice_browser.step(json!({"do": "submit", "name": "Grant", "shot": "submit Grant"}));
    alice_browser.see("Authorization complete");
    drop(alice_browser);

    // The client finishes: token exchange, then its calls through the gateway.
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let status = client.wait().unwrap();
    let stderr = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut s).unwrap();
        s
    };
    assert!(status.success(), "the client failed: {rest:?}\n{stderr}");
    assert_eq!(rest[0]["authorized"], true, "{rest:?}");
    assert_eq!(rest[0]["scope"], "fx.echo", "{rest:?}");
    let listed: Vec<&str> = rest[1]["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{rest:?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["echo"], "only the granted tool is listed");
    let echoed = &rest[2]["result"];
    assert_eq!(echoed["isError"], json!(false), "{rest:?}");
    assert!(echoed.to_string().contains("through oauth"), "{rest:?}");
    assert_eq!(
        rest[3]["error"]["code"],
        json!(-32010),
        "a tool not granted is refused: {rest:?}"
    );

    // The mandate: requested by the client's agent for Alice, consented through oauth.
    let (status, mandates) = http(
        reqwest::Method::GET,
        format!("{}/v1/mandates?status=active", server.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{mandates}");
    let items = mandates["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{mandates}");
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let (_, view) = http(
        reqwest::Method::GET,
        format!("{}/v1/mandates/{id}", server.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(view["status"], "active", "{view}");
    let terms = &view["terms"];
    assert_eq!(terms["human_id"], json!(alice), "{view}");
    assert_eq!(terms["intent"], "Echo a test phrase through the fixture");
    assert_eq!(
        terms["scope"]["tools"],
        json!([{"tool": "fx.echo"}]),
        "{view}"
    );
    assert_eq!(terms["budgets"]["max_calls"], 5, "{view}");
    assert_eq!(terms["approval"]["tiers"], json!(["high_impact"]), "{view}");
    assert_eq!(view["consents"][0]["channel"], "oauth", "{view}");
    assert_eq!(view["consents"][0]["decision"], "granted", "{view}");
    let agent = terms["agent_id"].as_str().unwrap();
    let (_, agent_view) = http(
        reqwest::Method::GET,
        format!("{}/v1/agents/{agent}", server.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(agent_view["owner"], json!(alice), "{agent_view}");
    assert_eq!(
        agent_view["labels"]["oauth.client_name"], "Fixture Agent",
        "{agent_view}"
    );
    for kind in [
        "mandate.requested",
        "consent.granted",
        "mandate.activated",
        "token.issued",
    ] {
        let (_, found) = http(
            reqwest::Method::GET,
            format!("{}/v1/audit?mandate={id}&type={kind}", server.url),
            &admin,
            None,
        )
        .await;
        assert!(
            !found["items"].as_array().unwrap().is_empty(),
            "no {kind} event"
        );
    }
    let (_, consent_event) = http(
        reqwest::Method::GET,
        format!("{}/v1/audit?mandate={id}&type=consent.granted", server.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(consent_event["items"][0]["data"]["channel"], "oauth");
    let log = server.stop();
    assert!(
        !log.contains("mac_"),
        "an authorization code reached the log"
    );
}
