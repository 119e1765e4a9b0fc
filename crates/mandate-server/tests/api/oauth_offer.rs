//! The consent screen's offer for tool servers no agent has called yet: the upstream is
//! listed first (a real MCP server, the demo bank, over Streamable HTTP), its tools
//! offered with their tiers; an upstream that does not answer leaves the catalog as it
//! is, says so, and never holds the page or the Grant that follows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use mandate_core::calls::OFFER_LISTING_TIMEOUT;
use serde_json::json;
use tokio::net::TcpListener;

use crate::oauth_authorize::{Browser, PUBLIC, REDIRECT, Setup, hidden, location, query_of};
use crate::support::Api;

/// Longer than any wait the consent screen may take: past it, the test fails instead
/// of blocking (the hang this guards against left the Grant waiting forever).
const NEVER: Duration = Duration::from_secs(30);

/// The demo bank, served on a loopback port for as long as the test runs: its URL.
pub(crate) async fn bank() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let bank = Arc::new(mandate_demo::bank::Bank::new());
    tokio::spawn(mandate_demo::serve(listener, bank, std::future::pending()));
    url
}

/// A port that accepts connections (the kernel's backlog) and never answers: an
/// upstream that is up but stuck. The listener lives as long as the test.
async fn stuck() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    (listener, url)
}

pub(crate) async fn add_server(api: &Api, name: &str, url: &str) -> String {
    api.post(
        "/v1/tool-servers",
        &api.admin,
        &json!({"name": name, "transport": {"kind": "mcp_http", "url": url}}),
    )
    .await
    .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The consent page's row for `tool`: from its name to the end of its row.
fn row<'a>(page: &'a str, tool: &str) -> &'a str {
    let at = page
        .find(&format!("value=\"{tool}\""))
        .unwrap_or_else(|| panic!("{tool} is not offered: {page}"));
    let rest = &page[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

/// Grant `tool` on the page shown (high-impact calls need approval); the redirect back
/// to the client, bounded by [`NEVER`].
async fn grant(b: &mut Browser<'_>, page: &str, tool: &str) -> String {
    grant_in(b, page, tool, "execute").await
}

/// [`grant`], the mandate in `mode`.
pub(crate) async fn grant_in(b: &mut Browser<'_>, page: &str, tool: &str, mode: &str) -> String {
    let csrf = hidden(page, "csrf");
    let request = hidden(page, "request");
    let fields = [
        ("csrf", csrf.as_str()),
        ("request", request.as_str()),
        ("decision", "grant"),
        ("intent", "Look at my balance"),
        ("tool", tool),
        ("lifetime", "60"),
        ("max_calls", "10"),
        ("mode", mode),
        ("approve", "high_impact"),
        ("data_ceiling", "internal"),
    ];
    let (r, _) = tokio::time::timeout(NEVER, b.post("/oauth2/authorize", &fields))
        .await
        .expect("the Grant answered (it hung before)");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{:?}", r.body);
    location(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_no_agent_called_offers_its_upstream_tools_with_tiers() {
    let s = Setup::on(Api::with_gateway().await).await;
    add_server(&s.api, "bank", &bank().await).await;
    let mut b = Browser::new(&s.api);
    b.sign_in("alice@example.com").await;
    let resource = format!("{PUBLIC}/mcp/bank");
    let (r, page) = tokio::time::timeout(
        NEVER,
        b.get(&s.authorize_url(&[("resource", Some(&resource))])),
    )
    .await
    .expect("the consent screen answered");
    // Nothing was catalogued for `bank` before: the offer came from the upstream.
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(
        row(&page, "bank.get_balance").contains("badge read"),
        "{page}"
    );
    assert!(
        row(&page, "bank.delete_files").contains("badge high_impact"),
        "{page}"
    );
    // No compensation declared: the person is told a call cannot be undone (a read
    // has nothing to undo).
    assert!(
        row(&page, "bank.delete_files").contains("cannot be undone"),
        "{page}"
    );
    assert!(!row(&page, "bank.get_balance").contains("undone"), "{page}");
    assert!(page.contains("bank.transfer"), "{page}");
    assert!(!page.contains("fx.echo"), "another server's tools: {page}");
    assert!(!page.contains("Not reachable"), "{page}");
    // The catalog now holds them, tiers as the consent screen showed.
    let tools = s.api.get("/v1/tools", &s.api.admin).await;
    let listed = tools.ok(200)["items"].as_array().unwrap().clone();
    let balance = listed
        .iter()
        .find(|t| t["name"] == "get_balance")
        .expect("get_balance catalogued");
    assert_eq!(balance["risk_tier"], "read");
    // The Grant completes, and the code is the client's.
    let to = grant(&mut b, &page, "bank.get_balance").await;
    assert!(to.starts_with(REDIRECT), "{to}");
    assert!(query_of(&to).contains_key("code"), "{to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_degrades_to_the_catalog_within_the_timeout() {
    let s = Setup::on(Api::with_gateway().await).await;
    add_server(&s.api, "bank", &bank().await).await;
    let (_held, url) = stuck().await;
    let slow = add_server(&s.api, "slow", &url).await;
    s.api
        .post(
            "/v1/tools",
            &s.api.admin,
            &json!({"server_id": slow, "name": "lookup", "risk_tier": "read"}),
        )
        .await
        .ok(201);
    let mut b = Browser::new(&s.api);
    b.sign_in("alice@example.com").await;
    // Every server: `bank` answers, `slow` accepts and never answers, `fx` refuses.
    let started = Instant::now();
    let (r, page) = tokio::time::timeout(
        NEVER,
        b.get(&s.authorize_url(&[("resource", Some(&format!("{PUBLIC}/mcp")))])),
    )
    .await
    .expect("the consent screen answered");
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(
        took < OFFER_LISTING_TIMEOUT + Duration::from_secs(5),
        "the page took {took:?}"
    );
    // What answered is offered; what did not is offered as catalogued, and named.
    assert!(
        row(&page, "bank.get_balance").contains("badge read"),
        "{page}"
    );
    assert!(row(&page, "slow.lookup").contains("badge read"), "{page}");
    assert!(
        row(&page, "fx.wipe").contains("badge high_impact"),
        "{page}"
    );
    let note = &page[page.find("id=\"unlisted\"").expect("a visible note")..];
    let note = &note[..note.find("</p>").unwrap()];
    assert!(note.contains("<code>fx</code>"), "{note}");
    assert!(note.contains("<code>slow</code>"), "{note}");
    assert!(!note.contains("bank"), "{note}");
    // The Grant after a listing that was cut short completes.
    let to = grant(&mut b, &page, "slow.lookup").await;
    assert!(to.starts_with(REDIRECT), "{to}");
    assert!(query_of(&to).contains_key("code"), "{to}");
    // And a second screen for the stuck server alone is bounded the same way.
    let started = Instant::now();
    let (r, page) = tokio::time::timeout(
        NEVER,
        b.get(&s.authorize_url(&[("resource", Some(&format!("{PUBLIC}/mcp/slow")))])),
    )
    .await
    .expect("the consent screen answered");
    assert_eq!(r.status, StatusCode::OK, "{page}");
    assert!(started.elapsed() < OFFER_LISTING_TIMEOUT + Duration::from_secs(5));
    assert!(page.contains("slow.lookup"), "{page}");
}
