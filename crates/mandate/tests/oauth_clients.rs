#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Independent OAuth clients against the real binary: `mandate serve` on a temporary
//! data directory, set up through the admin API, then driven by
//! `tests/python/oauth_clients.py` (authlib + PyJWT: private_key_jwt, DPoP, token
//! exchange, JWKS verification, replay and scope refusals, revocation).
//!
//! The Python packages are a test dependency: when they are missing the test fails
//! and says how to install them (CI installs them in `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod common;

use common::Server;
const INSTALL: &str = "pip install -r crates/mandate/tests/python/requirements.txt";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/oauth_clients.py")
}

/// Fails (never skips) when python3 or the client packages are not installed.
fn require_python_packages() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import authlib, joserfc, jwt, cryptography, requests; jwt.PyJWKClient",
        ])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for this test ({e}); then run `{INSTALL}`"));
    assert!(
        out.status.success(),
        "the Python packages of the OAuth client test are missing: run `{INSTALL}`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn post(server: &Server, path: &str, token: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_oauth_clients_get_exchange_verify_and_revoke_tokens() {
    require_python_packages();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");

    // The agents' keys are made in Python; only their public halves come back.
    let out = Command::new("python3")
        .arg(script())
        .arg("keygen")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(jwks["a"].get("d").is_none() && jwks["b"].get("d").is_none());

    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let admin = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();

    // A human, and two agents she is accountable for, each with its public JWK.
    let alice = id(&post(
        &server,
        "/v1/humans",
        &admin,
        json!({"display_name": "Alice", "email": "alice@example.com"}),
    )
    .await);
    let mut agents = Vec::new();
    for (name, jwk) in [("planner", &jwks["a"]), ("researcher", &jwks["b"])] {
        let agent = post(
            &server,
            "/v1/agents",
            &admin,
            json!({"name": name, "owner": alice, "credentials": {"jwks": [jwk]}}),
        )
        .await;
        assert_eq!(
            agent["credentials"]["jwks"][0]["kid"], jwk["kid"],
            "{agent}"
        );
        agents.push(id(&agent));
    }
    let (agent_a, agent_b) = (agents[0].clone(), agents[1].clone());

    // A tool server with two tools: the mandate's scope.
    let crm = id(&post(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "crm", "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9/mcp"}}),
    )
    .await);
    for (tool, annotations) in [
        ("read", json!({"readOnlyHint": true})),
        (
            "update",
            json!({"readOnlyHint": false, "destructiveHint": false}),
        ),
    ] {
        post(
            &server,
            "/v1/tools",
            &admin,
            json!({"server_id": crm, "name": tool, "annotations": annotations}),
        )
        .await;
    }
    let scope = ["crm.read", "crm.update"];

    // Agent A asks for a mandate with its API token; Alice consents to the exact terms.
    let token = |path: String| {
        let admin = admin.clone();
        let server = &server;
        async move {
            post(server, &path, &admin, json!({"label": "oauth-clients"})).await["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let agent_token = token(format!("/v1/agents/{agent_a}/tokens")).await;
    let alice_token = token(format!("/v1/humans/{alice}/tokens")).await;
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let requested = post(
        &server,
        "/v1/mandates",
        &agent_token,
        json!({
            "agent_id": agent_a,
            "human_id": alice,
            "intent": "Tidy the CRM contacts, with a research helper",
            "purpose": "crm-hygiene",
            "scope": {"tools": scope.iter().map(|t| json!({"tool": t})).collect::<Vec<_>>()},
            "data_ceiling": "internal",
            "mode": "execute",
            "expires_at": expires.to_rfc3339(),
            "max_delegation_depth": 1,
        }),
    )
    .await;
    assert_eq!(requested["status"], "requested", "{requested}");
    let mandate = id(&requested);
    let active = post(
        &server,
        &format!("/v1/mandates/{mandate}/consent"),
        &alice_token,
        json!({"decision": "granted", "terms_hash": requested["terms_hash"]}),
    )
    .await;
    assert_eq!(active["status"], "active", "{active}");

    // The independent clients take it from here.
    let out = tokio::task::spawn_blocking({
        let (url, admin, keys) = (server.url.clone(), admin.clone(), keys.clone());
        let scope = scope.join(" ");
        move || {
            Command::new("python3")
                .arg(script())
                .arg("run")
                .args([
                    "--url",
                    &url,
                    "--admin-token",
                    &admin,
                    "--mandate",
                    &mandate,
                ])
                .args([
                    "--agent-a",
                    &agent_a,
                    "--agent-b",
                    &agent_b,
                    "--scope",
                    &scope,
                ])
                .arg("--keys")
                .arg(&keys)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "oauth_clients.py failed ({}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        out.status,
        server.drain_log()
    );
    assert!(stdout.contains("all OAuth client steps passed"), "{stdout}");
}
