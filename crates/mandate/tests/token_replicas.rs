#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The token service across two replicas of the real binary on one PostgreSQL
//! database: a token issued by one is accepted by the other (the signing keys are
//! published in the store), and a revocation — of the token itself, or by ending its
//! mandate — at one is enforced by the other; a DPoP proof accepted by one is refused
//! by the other; an MCP session opened at one is resumed by the other. Functional only: the bounds are
//! generous; `bench/revocation-propagation.sh` measures the delay.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mandate_jose::{Alg, SigningKey};
use serde_json::{Map, Value, json};

mod common;

use common::Server;
/// Both replicas' public URL: one issuer, whichever replica signs.
const PUBLIC_URL: &str = "http://mandate.replicas.test";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long a replica may take to enforce another's revocation here (the target is
/// far lower; this only proves that it happens).
const GENEROUS: Duration = Duration::from_secs(5);

/// An admin-API call: (status, JSON body).
async fn api(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An admin-API POST with a JSON body.
async fn post(server: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    api(
        reqwest::Method::POST,
        format!("{}{path}", server.url),
        token,
        Some(body),
    )
    .await
}

/// A form POST to an OAuth endpoint, with an optional admin bearer: (status, JSON body).
async fn oauth(url: String, bearer: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).form(form);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn created(reply: (u16, Value)) -> String {
    assert_eq!(reply.0, 201, "{}", reply.1);
    reply.1["id"].as_str().unwrap().to_owned()
}

/// A `private_key_jwt` assertion for `agent`, with a fresh `jti`.
fn assertion(agent: &str, key: &SigningKey) -> String {
    let now = chrono::Utc::now().timestamp();
    let jti = format!("{now}-{}", uuid_like());
    let claims = json!({
        "iss": agent, "sub": agent, "aud": format!("{PUBLIC_URL}/oauth2/token"),
        "iat": now, "exp": now + 60, "jti": jti,
    });
    key.sign(Map::new(), &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A task token from `server`: mandate-less, or bound to `mandate` (for the admin API).
async fn task_token(
    server: &Server,
    agent: &str,
    key: &SigningKey,
    mandate: Option<&str>,
) -> Value {
    task_token_for(server, agent, key, mandate, PUBLIC_URL).await
}

/// A task token from `server`: mandate-less, or bound to `mandate` for `resource`.
async fn task_token_for(
    server: &Server,
    agent: &str,
    key: &SigningKey,
    mandate: Option<&str>,
    resource: &str,
) -> Value {
    let assertion = assertion(agent, key);
    let details = mandate.map(|m| json!([{"type": "mandate", "mandate_id": m}]).to_string());
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    if let Some(d) = &details {
        // Addressed to the admin API (the issuer), so that a replica's answer there
        // shows how it reads the token: 403 while live (a token for tools), 401 once
        // on its revocation list.
        form.push(("authorization_details", d.as_str()));
        form.push(("resource", resource));
    }
    let (status, body) = oauth(format!("{}/oauth2/token", server.url), None, &form).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn introspect(server: &Server, admin: &str, token: &str) -> Value {
    let (status, body) = oauth(
        format!("{}/oauth2/introspect", server.url),
        Some(admin),
        &[("token", token)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET /v1/mandates` with a task token: the status.
async fn list_with(server: &Server, token: &str) -> u16 {
    api(
        reqwest::Method::GET,
        format!("{}/v1/mandates", server.url),
        token,
        None,
    )
    .await
    .0
}

/// Waits (up to [`GENEROUS`]) until `check` holds, polling every 20 ms.
async fn within_generous_bound<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + GENEROUS;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {GENEROUS:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_revocations_cross_replicas() {
    let db = common::Database::create("mandate_tokens");
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            Server::start_with_env(
                dirs.0.path(),
                &["--database-url", &db.url],
                &[("MANDATE_PUBLIC_URL", PUBLIC_URL)],
            )
        });
        let b = s.spawn(|| {
            Server::start_with_env(
                dirs.1.path(),
                &["--database-url", &db.url],
                &[("MANDATE_PUBLIC_URL", PUBLIC_URL)],
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let tokens: Vec<PathBuf> = [dirs.0.path(), dirs.1.path()]
        .iter()
        .map(|d| d.join("admin-token"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(tokens.len(), 1, "exactly one replica bootstraps");
    let admin = std::fs::read_to_string(&tokens[0])
        .unwrap()
        .trim()
        .to_owned();

    // Both replicas publish their own signing key: each serves both.
    let (_, jwks) = api(
        reqwest::Method::GET,
        format!("{}/oauth2/jwks", b.url),
        &admin,
        None,
    )
    .await;
    let kids = |jwks: &Value| {
        let mut k: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    };
    // A replica that started first learns the other's key by re-reading the store
    // (every 10 s), without waiting for a token signed with it.
    let mut jwks = jwks;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, jwks_a) = api(
            reqwest::Method::GET,
            format!("{}/oauth2/jwks", a.url),
            &admin,
            None,
        )
        .await;
        if kids(&jwks_a).len() == 2 && kids(&jwks_a) == kids(&jwks) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica A never listed B's key: {jwks_a}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        jwks = api(
            reqwest::Method::GET,
            format!("{}/oauth2/jwks", b.url),
            &admin,
            None,
        )
        .await
        .1;
    }

    // A human, an agent with a registered key, a consented mandate — set up on A.
    let alice = created(
        post(
            &a,
            "/v1/humans",
            &admin,
            json!({"display_name": "Alice", "email": "alice@example.com"}),
        )
        .await,
    );
    let (status, alice_token) = post(
        &a,
        &format!("/v1/humans/{alice}/tokens"),
        &admin,
        json!({"label": "test"}),
    )
    .await;
    assert_eq!(status, 201, "{alice_token}");
    let alice_token = alice_token["token"].as_str().unwrap().to_owned();
    let key = SigningKey::generate(Alg::EdDSA, "bot-key-1".into()).unwrap();
    let agent = created(
        post(
            &a,
            "/v1/agents",
            &admin,
            json!({
                "name": "crm-bot",
                "owner": alice,
                "credentials": {"jwks": [key.public_jwk().to_public_json()]},
            }),
        )
        .await,
    );
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mandate = created(
        post(
            &a,
            "/v1/mandates",
            &admin,
            json!({
                "agent_id": agent,
                "human_id": alice,
                "intent": "Tidy the CRM",
                "scope": {"tools": [{"tool": "crm.read"}, {"tool": "crm.update"}]},
                "data_ceiling": "internal",
                "mode": "execute",
                "expires_at": expires,
            }),
        )
        .await,
    );
    let (status, consented) = post(
        &b,
        &format!("/v1/mandates/{mandate}/consent"),
        &alice_token,
        json!({"decision": "granted"}),
    )
    .await;
    assert_eq!(status, 200, "{consented}");
    assert_eq!(consented["status"], "active");

    // 1. A mandate-less task token issued by A is accepted by B (B learns A's key from
    //    the store), at the admin API and by introspection.
    let issued = task_token(&a, &agent, &key, None).await;
    let token = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(issued["scope"], "mandates:request", "{issued}");
    within_generous_bound("B accepts A's task token at the admin API", || async {
        list_with(&b, &token).await == 200
    })
    .await;
    let seen = introspect(&b, &admin, &token).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["iss"], PUBLIC_URL, "{seen}");

    // 2. Revoked at A: B refuses it (its in-memory list, fed by NOTIFY or the poll).
    let (status, body) = oauth(
        format!("{}/oauth2/revoke", a.url),
        Some(&admin),
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    within_generous_bound("B refuses a token revoked at A", || async {
        list_with(&b, &token).await == 401
    })
    .await;
    assert_eq!(introspect(&b, &admin, &token).await["active"], false);
    // And the other way round: issued by B, revoked at B, refused by A.
    let other = task_token(&b, &agent, &key, None).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    within_generous_bound("A accepts B's task token", || async {
        list_with(&a, &other).await == 200
    })
    .await;
    let (status, _) = oauth(
        format!("{}/oauth2/revoke", b.url),
        Some(&admin),
        &[("token", other.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    within_generous_bound("A refuses a token revoked at B", || async {
        list_with(&a, &other).await == 401
    })
    .await;

    // 3. A mandate-bound token issued by A: active at B; completing the mandate at A
    //    ends it everywhere (introspection on B: inactive), and exchanging it at B is
    //    refused.
    let bound = task_token(&a, &agent, &key, Some(&mandate)).await;
    let bound = bound["access_token"].as_str().unwrap().to_owned();
    let seen = introspect(&b, &admin, &bound).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["mandate"], mandate.as_str(), "{seen}");
    assert_eq!(
        list_with(&b, &bound).await,
        403,
        "a mandate-bound token is for tools, not the admin API"
    );
    let (status, ended) = post(
        &a,
        &format!("/v1/mandates/{mandate}/complete"),
        &admin,
        json!({"reason": "done"}),
    )
    .await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "completed");
    within_generous_bound(
        "B reports the token of a completed mandate inactive",
        || async { introspect(&b, &admin, &bound).await["active"] == false },
    )
    .await;
    let renewal = assertion(&agent, &key);
    let (status, refused) = oauth(
        format!("{}/oauth2/token", b.url),
        None,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", renewal.as_str()),
            ("subject_token", bound.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    // B's in-memory list knows too (the mandate's grants were revoked with it).
    within_generous_bound(
        "B's revocation list holds the completed mandate's token",
        || async {
            // The admin API refuses it as revoked (401) rather than as the wrong kind (403).
            list_with(&b, &bound).await == 401
        },
    )
    .await;

    // 4. A DPoP proof is used once across the replicas: accepted at A, the same proof
    //    (with a fresh client assertion) is refused at B, whose memory never saw it —
    //    the proof's use is claimed in the store with the grant it came with.
    let dpop = SigningKey::generate(Alg::EdDSA, "dpop-1".into()).unwrap();
    let proof = dpop_proof(&dpop);
    let (status, issued) = token_with_proof(&a, &agent, &key, &proof).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["token_type"], "DPoP", "{issued}");
    for (replica, which) in [(&b, "B"), (&a, "A")] {
        let (status, refused) = token_with_proof(replica, &agent, &key, &proof).await;
        assert_eq!(status, 400, "{which} accepted a used DPoP proof: {refused}");
        assert_eq!(refused["error"], "invalid_dpop_proof", "{which}: {refused}");
    }
    // A fresh proof by the same key is fine at B.
    let (status, issued) = token_with_proof(&b, &agent, &key, &dpop_proof(&dpop)).await;
    assert_eq!(status, 200, "{issued}");

    // 5. An MCP session (2025-06-18, sessions) opened at A is resumed at B, which never
    //    saw it: its id seals its state, signed by A's published key. A tampered id,
    //    or the id with a token of another mandate, is an unknown session at either.
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut mandates = Vec::new();
    for intent in ["Read the CRM", "Read it again"] {
        let mandate = created(
            post(
                &a,
                "/v1/mandates",
                &admin,
                json!({"agent_id": agent, "human_id": alice, "intent": intent,
                       "scope": {"tools": [{"tool": "crm.read"}]}, "data_ceiling": "internal",
                       "mode": "execute", "expires_at": expires}),
            )
            .await,
        );
        let (status, body) = post(
            &a,
            &format!("/v1/mandates/{mandate}/consent"),
            &alice_token,
            json!({"decision": "granted"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        mandates.push(mandate);
    }
    let token = mcp_token(&a, &agent, &key, &mandates[0]).await;
    let other = mcp_token(&a, &agent, &key, &mandates[1]).await;
    let (status, session, opened) = mcp(
        &a,
        &token,
        None,
        "initialize",
        json!({
        "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "replicas-test", "version": "1"}}),
    )
    .await;
    assert_eq!(status, 200, "{opened}");
    let session = session.expect("initialize opens a session");
    assert!(
        session.starts_with("mcs_") && session.is_ascii(),
        "{session}"
    );
    for (replica, which) in [(&b, "B"), (&a, "A")] {
        let (status, _, listed) =
            mcp(replica, &token, Some(&session), "tools/list", json!({})).await;
        assert_eq!(status, 200, "{which} did not resume the session: {listed}");
        assert!(listed["result"]["tools"].is_array(), "{which}: {listed}");
    }
    let mut tampered = session.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (replica, which) in [(&b, "B"), (&a, "A")] {
        let (status, _, refused) =
            mcp(replica, &token, Some(&tampered), "tools/list", json!({})).await;
        assert_eq!(
            status, 404,
            "{which} accepted a tampered session id: {refused}"
        );
        let (status, _, refused) =
            mcp(replica, &other, Some(&session), "tools/list", json!({})).await;
        assert_eq!(
            status, 404,
            "{which} let another mandate's token use the session: {refused}"
        );
    }

    drop((a, b));
    drop(db);
}

/// A task token from `server` for the MCP endpoint, under `mandate`.
async fn mcp_token(server: &Server, agent: &str, key: &SigningKey, mandate: &str) -> String {
    let resource = format!("{PUBLIC_URL}/mcp");
    task_token_for(server, agent, key, Some(mandate), &resource).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A JSON-RPC request to `server`'s `/mcp` (revision 2025-06-18), in `session` if
/// given: (status, the session id it answered with, the body).
async fn mcp(
    server: &Server,
    token: &str,
    session: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/mcp", server.url))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let opened = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, opened, response.json().await.unwrap_or(Value::Null))
}

/// A DPoP proof (RFC 9449) by `key` for a POST to the replicas' token endpoint.
fn dpop_proof(key: &SigningKey) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), json!("dpop+jwt"));
    header.insert("jwk".into(), key.public_jwk().to_public_json());
    let claims = json!({
        "jti": uuid_like(), "htm": "POST", "htu": format!("{PUBLIC_URL}/oauth2/token"),
        "iat": chrono::Utc::now().timestamp(),
    });
    key.sign(header, &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

/// A mandate-less task token from `server`, asked for with `proof` in `DPoP`.
async fn token_with_proof(
    server: &Server,
    agent: &str,
    key: &SigningKey,
    proof: &str,
) -> (u16, Value) {
    let assertion = assertion(agent, key);
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/token", server.url))
        .header("DPoP", proof)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
