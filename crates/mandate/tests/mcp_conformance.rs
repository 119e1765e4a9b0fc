#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The MCP conformance runner (`@modelcontextprotocol/conformance` 0.1.13, pinned in
//! `tests/node`) against our fixture upstream, directly and through the gateway with
//! an allow-all mandate (scope `conformance.*`): every scenario that passes directly
//! must pass through the gateway. Then an operator `forbid` on one tool: that tool's
//! scenario fails with -32010 while the others still pass.
//!
//! The runner cannot send an `Authorization` header, so `run_conformance.py` puts a
//! loopback shim in front of the gateway that adds the task token (see its header).
//! Needs `pip install -r tests/python/requirements.txt` and
//! `npm ci --prefix crates/mandate/tests/node` (done by `.ci/run`).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

mod common;

use common::{Fixture, Server, admin_token, created, http, mcp_client, python_dir, task_token};

fn run_conformance(url: &str, token: Option<&str>, scenarios: Option<&str>) -> Value {
    let mut command = Command::new("python3");
    command
        .arg(python_dir().join("run_conformance.py"))
        .arg(url);
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(s) = scenarios {
        command.args(["--scenarios", s]);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "run_conformance.py failed (is the runner installed? npm ci --prefix crates/mandate/tests/node): {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}"))
}

fn names(summary: &Value, key: &str) -> BTreeSet<String> {
    summary[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_scenarios_pass_through_the_gateway_as_they_do_directly() {
    let fixture = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin = admin_token(dir.path());
    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "conformance", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    let who = common::human_and_agent(&server, &admin).await;
    let (agent, key) = (who.agent.clone(), &who.key);
    let mandate = common::consented_mandate(
        &server,
        &admin,
        &who,
        json!({
            "intent": "Run the MCP conformance scenarios",
            "scope": {"tools": [{"tool": "conformance.*"}]},
            "data_ceiling": "restricted", "mode": "execute",
        }),
    )
    .await;
    let resource = format!("{}/mcp", server.url);
    let gateway_url = format!("{}/mcp/conformance", server.url);

    let direct = run_conformance(&fixture.url, None, None);
    let token = task_token(&server, &agent, key, &mandate, &resource).await;
    let through = run_conformance(&gateway_url, Some(&token), None);
    let (d_pass, g_pass) = (names(&direct, "passed"), names(&through, "passed"));
    let mut report = format!(
        "mcp conformance: direct {} passed, {} failed; through the gateway {} passed, {} failed\n",
        d_pass.len(),
        names(&direct, "failed").len(),
        g_pass.len(),
        names(&through, "failed").len()
    );
    print!("{report}");
    let lost: Vec<_> = d_pass.difference(&g_pass).collect();
    assert!(
        lost.is_empty(),
        "passed directly but not through the gateway: {lost:?}\n{}",
        through["errors"]
    );
    assert!(d_pass.len() >= 25, "the fixture itself regressed: {direct}");

    // A deny rule: one tool forbidden by operator policy.
    let (status, body) = http(
        reqwest::Method::PUT,
        format!("{}/v1/policies", server.url),
        &admin,
        Some(json!({"policies": [{"name": "deny.cedar", "text":
            "@id(\"deny-simple-text\")\n@reason(\"test_simple_text is switched off\")\nforbid (principal, action == Mandate::Action::\"call_tool\", resource == Mandate::Tool::\"conformance.test_simple_text\");\n"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = task_token(&server, &agent, key, &mandate, &resource).await;
    let steps = mcp_client(
        &gateway_url,
        Some(&token),
        &json!([{"op": "call_tool", "name": "test_simple_text", "arguments": {}}]),
    );
    assert_eq!(steps[0]["error"]["code"], -32010, "{}", steps[0]);
    let sample = "tools-call-simple-text,tools-call-image,tools-call-embedded-resource,tools-list,resources-read-text,prompts-get-simple";
    let denied = run_conformance(&gateway_url, Some(&token), Some(sample));
    let (passed, failed) = (names(&denied, "passed"), names(&denied, "failed"));
    let line = format!(
        "mcp conformance with a deny rule on test_simple_text: {} passed, {} failed ({:?})\n",
        passed.len(),
        failed.len(),
        failed
    );
    print!("{line}");
    report.push_str(&line);
    // For .ci/run, which prints it rather than running this test twice.
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-conformance.txt"),
        &report,
    );
    assert_eq!(
        failed,
        BTreeSet::from(["tools-call-simple-text".to_owned()]),
        "{}",
        denied["errors"]
    );
}
