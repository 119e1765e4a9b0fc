#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Outbound token exchange end to end: the real binary with two
//! `[[gateway.token_exchange]]` entries (RFC 8693 token exchange and the RFC 7523 JWT
//! bearer grant) in front of oidc-provider (npm, pinned in `tests/oidc`) as the
//! upstream's authorization server — which verifies each of Mandate's assertions
//! against Mandate's published JWKS, refuses a replayed one, and issues its own access
//! token — and an MCP upstream of ours that asks that server whose token each call
//! carries.
//!
//! Each person's calls reach the upstream with a token issued for that person, that
//! agent and that mandate; a token is obtained once and reused until shortly before it
//! expires; another mandate gets its own; a wrong client secret or a revoked mandate
//! forwards nothing. No token the upstream issued appears in any response, the log or
//! the database files.

use serde_json::{Value, json};

mod common;

use common::free_port;
use common::oidc::{OidcProvider, whoami_upstream};
use common::{Server, admin_token, assert_nowhere, created, http, stateless_call};

const EXCHANGE_SECRET: &str = "exchange-client-secret-PLANTED-77ab1f";
/// Upstream access tokens live 40 s: kept 10 s (until 30 s before they expire).
const ACCESS_TTL: u64 = 40;

fn config(issuer: &str) -> String {
    let mut out = String::new();
    for (name, grant, secret) in [
        ("crm-x", "token_exchange", "exchange-client"),
        ("hr-x", "jwt_bearer", "exchange-client"),
        ("bad-x", "token_exchange", "wrong-client"),
    ] {
        out.push_str(&format!(
            "[[gateway.token_exchange]]\nname = \"{name}\"\ntoken_endpoint = \"{issuer}/token\"\n\
             grant = \"{grant}\"\naudience = \"{issuer}\"\nscopes = [\"calendar.read\"]\n\
             client_id = \"mandate-exchange\"\nclient_secret = \"{secret}\"\n\
             dangerous_allow_insecure_loopback = true\n"
        ));
    }
    out
}

async fn exchanges(issuer: &str) -> u64 {
    let answer: Value = reqwest::get(format!("{issuer}/test/exchanges"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["exchanges"].as_u64().unwrap()
}

/// What the upstream learnt of the token a call carried (its structured content), or
/// the call's whole answer when it did not go through.
async fn whoami(server: &Server, token: &str, tool: &str) -> Result<Value, Value> {
    let answer = stateless_call(&server.url, token, tool, json!({})).await;
    match answer["result"]["structuredContent"].as_object() {
        Some(who) if answer["result"]["isError"] != json!(true) => Ok(Value::Object(who.clone())),
        _ => Err(answer),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_carry_tokens_the_upstream_issued_for_their_person_agent_and_mandate() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let file = dir.path().join("mandate.toml");
    std::fs::write(&file, config(&issuer)).unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with_broker(&data, &file);
    let token_log = dir.path().join("issued-tokens");
    let _provider = OidcProvider::start(
        "upstream.mjs",
        &[
            "--port",
            &port.to_string(),
            "--redirect-uri",
            "http://127.0.0.1:9/unused",
            "--client-secret",
            "unused-connection-secret",
            "--access-ttl",
            &ACCESS_TTL.to_string(),
            "--token-log",
            token_log.to_str().unwrap(),
            "--mandate-issuer",
            &server.url,
            "--exchange-client-secret",
            EXCHANGE_SECRET,
        ],
    );
    let (upstream, seen) = whoami_upstream(issuer.clone()).await;
    let admin = admin_token(&data);
    let mut responses = Vec::new();
    responses.push(common::put_secret(&server, &admin, "exchange-client", EXCHANGE_SECRET).await);
    responses.push(common::put_secret(&server, &admin, "wrong-client", "not-the-secret").await);
    for (name, exchange) in [("crm", "crm-x"), ("hr", "hr-x"), ("bad", "bad-x")] {
        let id = created(
            &server,
            "/v1/tool-servers",
            &admin,
            json!({"name": name, "transport": {"kind": "mcp_http", "url": upstream},
                   "credential_ref": format!("exchange:{exchange}")}),
        )
        .await;
        created(
            &server,
            "/v1/tools",
            &admin,
            json!({"server_id": id, "name": "whoami", "annotations": {"readOnlyHint": true}}),
        )
        .await;
    }
    let alice = common::person_and_agent(
        &server,
        &admin,
        "Alice",
        "alice@example.com",
        "alice-helper",
    )
    .await;
    let bob =
        common::person_and_agent(&server, &admin, "Bob", "bob@example.com", "bob-helper").await;
    let terms = json!({"intent": "read my records",
        "scope": {"tools": [{"tool": "crm.whoami"}, {"tool": "hr.whoami"}, {"tool": "bad.whoami"}]},
        "data_ceiling": "internal", "mode": "execute"});
    let alice_mandate = common::consented_mandate(&server, &admin, &alice, terms.clone()).await;
    let bob_mandate = common::consented_mandate(&server, &admin, &bob, terms.clone()).await;
    let alice_token = common::mcp_token(&server, &alice, &alice_mandate).await;
    let bob_token = common::mcp_token(&server, &bob, &bob_mandate).await;

    // RFC 8693: the person as subject, the agent as actor, the mandate named.
    let who = whoami(&server, &alice_token, "crm.whoami").await.unwrap();
    assert_eq!(who["sub"], json!(alice.human), "{who}");
    assert_eq!(who["agent"], json!(alice.agent), "{who}");
    assert_eq!(who["mandate_id"], json!(alice_mandate), "{who}");
    assert_eq!(who["grant"], "token_exchange", "{who}");
    responses.push(who);
    let who = whoami(&server, &bob_token, "crm.whoami").await.unwrap();
    assert_eq!(
        (&who["sub"], &who["mandate_id"]),
        (&json!(bob.human), &json!(bob_mandate)),
        "{who}"
    );
    assert_eq!(exchanges(&issuer).await, 2);
    // Kept: the same mandate's next calls ask nothing more.
    for _ in 0..3 {
        let who = whoami(&server, &alice_token, "crm.whoami").await.unwrap();
        assert_eq!(who["sub"], json!(alice.human));
    }
    assert_eq!(exchanges(&issuer).await, 2);

    // RFC 7523: one assertion naming the person, with the agent and the mandate.
    let who = whoami(&server, &alice_token, "hr.whoami").await.unwrap();
    assert_eq!(who["grant"], "jwt_bearer", "{who}");
    assert_eq!(
        (&who["sub"], &who["agent"], &who["mandate_id"]),
        (
            &json!(alice.human),
            &json!(alice.agent),
            &json!(alice_mandate)
        ),
        "{who}"
    );
    assert_eq!(exchanges(&issuer).await, 3);

    // Another mandate of the same person gets its own token.
    let second = common::consented_mandate(&server, &admin, &alice, terms.clone()).await;
    let second_token = common::mcp_token(&server, &alice, &second).await;
    let who = whoami(&server, &second_token, "crm.whoami").await.unwrap();
    assert_eq!(who["mandate_id"], json!(second), "{who}");
    assert_eq!(exchanges(&issuer).await, 4);

    // A wrong client secret: the exchange is refused, nothing reaches the upstream.
    let before = seen.lock().unwrap().len();
    let refused = whoami(&server, &alice_token, "bad.whoami")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("nothing was forwarded"),
        "{refused}"
    );
    assert_eq!(seen.lock().unwrap().len(), before);
    responses.push(refused);

    // Past the keeping time, a new token is obtained (10 s: 40 s lifetime − 30 s).
    tokio::time::sleep(std::time::Duration::from_secs(ACCESS_TTL - 30 + 1)).await;
    let who = whoami(&server, &alice_token, "crm.whoami").await.unwrap();
    assert_eq!(who["sub"], json!(alice.human));
    assert_eq!(exchanges(&issuer).await, 5);

    // A revoked mandate forwards nothing more.
    let (status, body) = http(
        reqwest::Method::POST,
        format!("{}/v1/mandates/{alice_mandate}/revoke", server.url),
        &alice.human_token,
        Some(json!({"reason": "done"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let before = seen.lock().unwrap().len();
    let answer = reqwest::Client::new()
        .post(format!("{}/mcp", server.url))
        .bearer_auth(&alice_token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "crm.whoami", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(seen.lock().unwrap().len(), before);

    // Every token the upstream issued: never in a response, the log or the files.
    let issued: Vec<String> = std::fs::read_to_string(&token_log)
        .unwrap()
        .lines()
        // `KIND ACCOUNT TOKEN`
        .filter_map(|l| l.split(' ').nth(2).map(str::to_owned))
        .collect();
    assert_eq!(issued.len(), 5, "{issued:?}");
    let mut planted: Vec<&str> = issued.iter().map(String::as_str).collect();
    planted.push(EXCHANGE_SECRET);
    let log = server.drain_log();
    assert_nowhere(&planted, &responses, &log, &data);
    // The upstream saw each of them (as a bearer token), so the test looked for the
    // right strings.
    let carried = seen.lock().unwrap().join("\n");
    assert!(
        issued.iter().all(|t| carried.contains(t.as_str())),
        "{carried}"
    );
}
