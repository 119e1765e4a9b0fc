//! Held calls for MCP 2026-07-28 clients, at the gateway with hand-built stateless
//! requests: a call held for approval answers `input_required` with the approval page
//! (URL-mode elicitation); the retry carrying the answer is decided again — through
//! once after the person approved, never twice; a declined answer, a client without
//! URL elicitation and an older revision get today's refusal.

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};

use crate::oauth_authorize::{Browser, PUBLIC, Setup, query_of};
use crate::oauth_offer::{add_server, bank, grant_in};
use crate::support::{Api, Reply};

const REVISION: &str = "2026-07-28";
/// The gateway's one refusal code (README: gateway refusals).
const REFUSED: i64 = -32010;
const INPUT_KEY: &str = "mandate/decision";
const ARGS: &str = r#"{"from": "alice-checking", "to": "bob-checking", "amount_cents": 500}"#;

/// Alice grants `bank.transfer`, each call needing her approval: the access token.
async fn token(s: &Setup) -> String {
    token_in(s, "execute").await
}

/// Alice grants `bank.transfer` in `mode` (`execute`: each call needing her approval).
async fn token_in(s: &Setup, mode: &str) -> String {
    let mut b = Browser::new(&s.api);
    b.sign_in("alice@example.com").await;
    let resource = format!("{PUBLIC}/mcp");
    let (_, page) = b
        .get(&s.authorize_url(&[("resource", Some(&resource))]))
        .await;
    let to = grant_in(&mut b, &page, "bank.transfer", mode).await;
    let code = query_of(&to)["code"].clone();
    let issued = s.redeem_code_for(&code, &resource).await;
    issued.ok(200)["access_token"].as_str().unwrap().to_owned()
}

/// `tools/call bank.transfer` as a stateless client of `revision`; `url` says whether
/// it declares URL elicitation; `extra` is merged into the params.
async fn call(api: &Api, token: &str, revision: &str, url: bool, extra: Value) -> Reply {
    let capabilities = if url {
        json!({"elicitation": {"url": {}}})
    } else {
        json!({})
    };
    let mut params = json!({
        "name": "bank.transfer",
        "arguments": serde_json::from_str::<Value>(ARGS).unwrap(),
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": revision,
            "io.modelcontextprotocol/clientInfo": {"name": "hand-built", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        },
    });
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params});
    api.raw(
        Request::builder()
            .method(Method::POST)
            .uri("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", revision)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "bank.transfer")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

/// The approval page an `input_required` result asks the client to show, and the
/// state to echo.
fn asked(reply: &Reply) -> (String, Value) {
    asked_about(reply, "approvals/apr_")
}

/// The page (`{kind}/{prefix}…`) an `input_required` result asks the client to
/// show, and the state to echo.
fn asked_about(reply: &Reply, page: &str) -> (String, Value) {
    let result = &reply.body["result"];
    assert_eq!(result["resultType"], "input_required", "{}", reply.body);
    let request = &result["inputRequests"][INPUT_KEY];
    assert_eq!(request["method"], "elicitation/create", "{}", reply.body);
    assert_eq!(request["params"]["mode"], "url", "{}", reply.body);
    let url = request["params"]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{PUBLIC}/ui/{page}")), "{url}");
    (url, result["requestState"].clone())
}

fn answer(state: &Value, action: &str) -> Value {
    json!({"requestState": state, "inputResponses": {INPUT_KEY: {"action": action}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_asks_for_input_and_the_retry_is_decided_again() {
    let s = Setup::on(Api::with_gateway().await).await;
    add_server(&s.api, "bank", &bank().await).await;
    let token = token(&s).await;

    // Held: the result asks the client to show the approval page.
    let first = call(&s.api, &token, REVISION, true, json!({})).await;
    let (url, state) = asked(&first);
    let approval = url.rsplit('/').next().unwrap().to_owned();

    // Retried before the person decided: asked again, for the same approval.
    let again = call(&s.api, &token, REVISION, true, answer(&state, "accept")).await;
    assert_eq!(asked(&again).0, url);

    // A client that declines is told as before (no new round trip).
    let declined = call(&s.api, &token, REVISION, true, answer(&state, "decline")).await;
    assert_eq!(
        declined.body["error"]["data"]["approval_id"], approval,
        "{}",
        declined.body
    );
    // With the refusal code every revision knows (-32042 is 2025-11-25's only).
    assert_eq!(declined.body["error"]["code"], REFUSED, "{}", declined.body);

    // Alice approves; the retry goes through, once.
    s.api
        .post(
            &format!("/v1/approvals/{approval}/approve"),
            &s.api.admin,
            &json!({}),
        )
        .await
        .ok(200);
    let through = call(&s.api, &token, REVISION, true, answer(&state, "accept")).await;
    let result = &through.body["result"];
    assert!(result.get("content").is_some(), "{}", through.body);
    // The upstream (an older revision) sent no resultType; this client's revision
    // requires one.
    assert_eq!(result["resultType"], "complete", "{}", through.body);
    assert_ne!(result["isError"], true, "{}", through.body);
    // The approval is used: the same state now asks for a new one.
    let after = call(&s.api, &token, REVISION, true, answer(&state, "accept")).await;
    assert_ne!(asked(&after).0, url, "an approval lets a call through once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_url_elicitation_or_on_older_revisions_the_refusal_stays() {
    let s = Setup::on(Api::with_gateway().await).await;
    add_server(&s.api, "bank", &bank().await).await;
    let token = token(&s).await;
    // 2026-07-28 without URL elicitation: the refusal, naming the approval page.
    let plain = call(&s.api, &token, REVISION, false, json!({})).await;
    assert_eq!(plain.body["error"]["code"], REFUSED, "{}", plain.body);
    assert!(
        plain.body["error"]["data"]["approval_url"].is_string(),
        "{}",
        plain.body
    );
    // An older revision: today's answer, even with a state that looks like ours.
    let forged = json!({"requestState": "mandate:approval:apr_x"});
    let older = call(&s.api, &token, "2025-06-18", true, forged).await;
    assert_eq!(older.body["error"]["code"], REFUSED, "{}", older.body);
    assert!(older.body.get("result").is_none(), "{}", older.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_asked_about_once_and_its_retry_returns_what_the_person_did() {
    let s = Setup::on(Api::with_gateway().await).await;
    add_server(&s.api, "bank", &bank().await).await;
    let token = token_in(&s, "recommend").await;
    let proposals = || async {
        s.api.get("/v1/proposals", &s.api.admin).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .clone()
    };

    // Recorded as a proposal: the client is asked to show its page.
    let first = call(&s.api, &token, REVISION, true, json!({})).await;
    let (url, state) = asked_about(&first, "proposals/prp_");
    let proposal = url.rsplit('/').next().unwrap().to_owned();
    // Retried before anyone executed it: asked again, and no second proposal.
    let again = call(&s.api, &token, REVISION, true, answer(&state, "accept")).await;
    assert_eq!(asked_about(&again, "proposals/prp_").0, url);
    assert_eq!(proposals().await.len(), 1);

    // Alice executes it; the retry returns the upstream's result, still one proposal.
    s.api
        .post(
            &format!("/v1/proposals/{proposal}/execute"),
            &s.api.admin,
            &json!({}),
        )
        .await
        .ok(200);
    let done = call(&s.api, &token, REVISION, true, answer(&state, "accept")).await;
    let result = &done.body["result"];
    assert!(result.get("content").is_some(), "{}", done.body);
    assert_ne!(result["resultType"], "input_required", "{}", done.body);
    let listed = proposals().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "executed", "{listed:?}");
}
