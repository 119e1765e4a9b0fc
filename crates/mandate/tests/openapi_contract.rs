#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The HTTP API fuzzed from its own contract: schemathesis (PyPI, pinned in
//! `tests/python/requirements.txt`) generates requests from the served OpenAPI
//! document — the admin API, the OAuth endpoints, AuthZEN — and checks every answer:
//! no 5xx, a documented status, the documented content type, a body that matches the
//! documented schema. Once with an admin token, once with an agent's task token. The
//! server runs with the credential broker on (a broker that is off answers 503 by
//! design, documented).
//!
//! CI runs a bounded number of examples with a fixed seed; run more with
//! `MANDATE_CONTRACT_EXAMPLES=50 MANDATE_CONTRACT_SECONDS=600 cargo test -p mandate
//! --test openapi_contract -- --nocapture`.

use std::process::Command;

use base64::Engine as _;

mod common;

use common::{Server, admin_token};

fn env_or(name: &str, default: u64) -> String {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default)
        .to_string()
}

/// One schemathesis run against `server` with `token`: its report, and whether it
/// passed.
fn schemathesis(server: &Server, token: &str, dir: &std::path::Path) -> (bool, String) {
    let out = Command::new("schemathesis")
        .current_dir(dir)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &env_or("MANDATE_CONTRACT_EXAMPLES", 3)])
        .args(["--max-time", &env_or("MANDATE_CONTRACT_SECONDS", 45)])
        .args(["--seed", "7", "--workers", "1", "--no-color"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--suppress-health-check", "filter_too_much,too_slow"])
        .output()
        .expect("schemathesis is installed: pip install -r crates/mandate/tests/python/requirements.txt (.ci/test does)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_as_its_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let mut server = Server::start_with_env(
        &dir.path().join("data"),
        &[],
        &[("MANDATE_MASTER_KEY", &format!("k1:{key}"))],
    );
    let admin = admin_token(&dir.path().join("data"));
    let who = common::human_and_agent(&server, &admin).await;
    // A mandate-less task token: what an agent uses at the admin API.
    let assertion = common::assertion(&server.url, &who.agent, &who.key);
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", common::JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    let agent_token = body["access_token"].as_str().unwrap().to_owned();

    let mut failed = Vec::new();
    for (who, token) in [("admin", admin.as_str()), ("agent", agent_token.as_str())] {
        let (passed, report) = schemathesis(&server, token, dir.path());
        let summary = report.split("SUMMARY").nth(1).unwrap_or(&report).to_owned();
        println!("--- schemathesis as {who}:{summary}");
        if !passed {
            failed.push(format!("as {who}:\n{report}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert!(
        !server.drain_log().contains("panicked"),
        "the server panicked"
    );
}
