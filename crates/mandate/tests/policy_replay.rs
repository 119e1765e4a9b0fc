#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! `mandate policy replay` end to end: real calls through the gateway (the real binary
//! in front of the Python MCP fixture) are recorded; with the server stopped, the
//! replay reads the store and decides them again under a candidate set that forbids
//! one tool. Exactly that tool's allowed calls are listed, as allow → deny; the rest
//! are unchanged; bad input exits 2.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

mod common;

use common::{BIN, Fixture, Server, admin_token, created, mcp_client, task_token};

const FORBID_ECHO: &str = "@id(\"no-echo\")\n@reason(\"echo is switched off\")\nforbid (principal, action == Mandate::Action::\"call_tool\", resource == Mandate::Tool::\"fx.echo\");\n";

fn replay(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["policy", "replay", "--data"])
        .arg(data)
        .args(args)
        .env_remove("MANDATE_DATABASE_URL")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Records a few allowed and denied calls; returns the time before the first.
async fn record_calls(server: &Server, dir: &Path, fixture: &Fixture) -> String {
    let admin = admin_token(dir);
    created(
        server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "fx", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    let who = common::human_and_agent(server, &admin).await;
    let (agent, key) = (&who.agent, &who.key);
    let mandate = common::consented_mandate(
        server,
        &admin,
        &who,
        json!({
            "intent": "Answer with the fixture's tools",
            "scope": {"tools": [
                {"tool": "fx.echo"},
                {"tool": "fx./resources"},
                {"tool": "fx.delete_everything"},
            ]},
            "data_ceiling": "internal",
            "mode": "execute",
            "approval": {"tiers": ["high_impact"]},
            "budgets": {"max_calls": 50},
        }),
    )
    .await;
    let token = task_token(server, agent, key, &mandate, &format!("{}/mcp", server.url)).await;

    let since = chrono::Utc::now().to_rfc3339();
    let steps = mcp_client(
        &format!("{}/mcp/fx", server.url),
        Some(&token),
        &json!([
            {"op": "list_tools"},
            {"op": "call_tool", "name": "echo", "arguments": {"text": "one"}},
            {"op": "read_resource", "uri": "test://static-text"},
            {"op": "call_tool", "name": "echo", "arguments": {"text": "two"}},
            {"op": "call_tool", "name": "delete_everything", "arguments": {"confirm": true}},
            {"op": "call_tool", "name": "test_image_content", "arguments": {}},
        ]),
    );
    assert_eq!(
        steps[1]["result"]["content"][0]["text"], "one",
        "{}",
        steps[1]
    );
    assert!(steps[2]["result"].is_object(), "{}", steps[2]);
    assert_eq!(
        steps[3]["result"]["content"][0]["text"], "two",
        "{}",
        steps[3]
    );
    assert!(
        steps[4]["error"].is_object(),
        "held for approval: {}",
        steps[4]
    );
    assert_eq!(
        steps[5]["error"]["code"], -32010,
        "out of scope: {}",
        steps[5]
    );
    since
}

#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_forbid_lists_exactly_the_calls_it_would_deny() {
    let fixture = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let since = record_calls(&server, dir.path(), &fixture).await;
    server.stop();

    let candidate = tempfile::tempdir().unwrap();
    std::fs::write(candidate.path().join("no-echo.cedar"), FORBID_ECHO).unwrap();
    let cand = candidate.path().to_str().unwrap();

    // JSON lines: one per changed decision, then the summary.
    let out = replay(
        dir.path(),
        &["--since", &since, "--policies", cand, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, changed) = lines.split_last().unwrap();
    assert_eq!(changed.len(), 2, "{lines:#?}");
    for line in changed {
        assert_eq!(line["tool"], "fx.echo", "{line}");
        assert_eq!(line["action"], "call_tool");
        assert_eq!(line["recorded"], "allow");
        assert_eq!(line["candidate"], "deny");
        assert_eq!(
            line["current"], "allow",
            "the running set reproduces the record"
        );
        assert!(
            line["policies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "no-echo"),
            "{line}"
        );
        assert_eq!(line["reason"], "echo is switched off", "{line}");
        assert_eq!(
            line["notes"],
            json!(["arguments not captured: constraints not re-checked"])
        );
    }
    assert!(changed[0]["seq"].as_u64() < changed[1]["seq"].as_u64());
    let summary = &summary["summary"];
    // echo ×2 and the resource read allowed, delete_everything held for approval: four
    // replayed; the listing and the call outside the token's scope are skipped.
    assert_eq!(summary["replayed"], 4, "{summary}");
    assert_eq!(summary["changed"], 2);
    assert_eq!(summary["allow_to_deny"], 2);
    assert_eq!(summary["deny_to_allow"], 0);
    assert_eq!(summary["current_differs"], 0, "{summary}");
    assert_eq!(summary["skipped"]["list_tools summaries"], 1, "{summary}");
    assert_eq!(summary["skipped"]["denied before any policy ran"], 1);

    // The table says the same.
    let out = replay(dir.path(), &["--since", &since, "--policies", cand]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    println!("{table}");
    assert_eq!(table.matches("allow → deny").count(), 2, "{table}");
    assert_eq!(table.matches("fx.echo").count(), 2, "{table}");
    assert!(!table.contains("fx./resources"), "{table}");
    assert!(table.contains("arguments not captured"), "{table}");
    assert!(
        table.contains("replayed 4 decisions: 2 would change (2 allow→deny, 0 deny→allow), 2 skipped (1 list_tools summaries, 1 denied before any policy ran)"),
        "{table}"
    );

    // An empty candidate (the built-ins alone) changes nothing.
    let empty = tempfile::tempdir().unwrap();
    let out = replay(
        dir.path(),
        &[
            "--since",
            &since,
            "--policies",
            empty.path().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("replayed 4 decisions: 0 would change"),
        "{}",
        text(&out.stdout)
    );

    // After every recorded decision: nothing to replay.
    let later = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let out = replay(dir.path(), &["--since", &later, "--policies", cand]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("replayed 0 decisions: 0 would change"),
        "{}",
        text(&out.stdout)
    );

    // Bad input exits 2 and says why.
    let out = replay(dir.path(), &["--since", "yesterday", "--policies", cand]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("RFC 3339"),
        "{}",
        text(&out.stderr)
    );

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("broken.cedar"), "forbid (").unwrap();
    let out = replay(
        dir.path(),
        &[
            "--since",
            &since,
            "--policies",
            broken.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("broken.cedar"),
        "the problems are printed: {}",
        text(&out.stderr)
    );

    let missing = dir.path().join("no-such-policies");
    let out = replay(
        dir.path(),
        &["--since", &since, "--policies", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = replay(
        &dir.path().join("no-such-data"),
        &["--since", &since, "--policies", cand],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
