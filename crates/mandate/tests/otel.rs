#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! OpenTelemetry traces end to end: the real binary with `[tracing]` on, exporting to
//! an OTLP/HTTP receiver on loopback (Python, opentelemetry-proto), in front of the
//! Python MCP fixture upstream (which logs the trace headers and `_meta` it receives),
//! called by the Python `mcp` client with a client `traceparent`. And with tracing off:
//! a valid client context passes through to the upstream and into the ledger; a hostile
//! one is dropped.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{Fixture, OtlpReceiver, Server, admin_token, created, http, task_token};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

struct World {
    server: Server,
    admin: String,
    who: common::Actors,
    mandate: String,
    trace_log: std::path::PathBuf,
    _fixture: Fixture,
    _dir: tempfile::TempDir,
}

/// A server reading `config`, the fixture registered as `fx` (its trace log kept), and a
/// consented mandate for `fx.echo`.
async fn world(config: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let trace_log = dir.path().join("upstream-trace.jsonl");
    let fixture = Fixture::start_with(&["--trace-log", trace_log.to_str().unwrap()]);
    let file = dir.path().join("mandate.toml");
    std::fs::write(&file, config).unwrap();
    let server = Server::start_with_env(
        dir.path(),
        &["--config", file.to_str().unwrap()],
        // Export every 200 ms instead of every 5 s (the SDK's batch processor).
        &[("OTEL_BSP_SCHEDULE_DELAY", "200")],
    );
    let admin = admin_token(dir.path());
    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "fx", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    let who = common::human_and_agent(&server, &admin).await;
    let mandate = common::consented_mandate(
        &server,
        &admin,
        &who,
        json!({
            "intent": "Echo",
            "scope": {"tools": [{"tool": "fx.echo"}]},
            "data_ceiling": "internal",
            "mode": "execute",
        }),
    )
    .await;
    World {
        server,
        admin,
        who,
        mandate,
        trace_log,
        _fixture: fixture,
        _dir: dir,
    }
}

impl World {
    /// One `fx.echo` call through `/mcp/fx` by the Python `mcp` client, sending
    /// `headers` on each of its requests.
    async fn call_echo(&self, headers: &[String]) -> Value {
        let resource = format!("{}/mcp", self.server.url);
        let token = task_token(
            &self.server,
            &self.who.agent,
            &self.who.key,
            &self.mandate,
            &resource,
        )
        .await;
        let mut command = std::process::Command::new("python3");
        command
            .arg(common::python_dir().join("mcp_client.py"))
            .arg(format!("{}/mcp/fx", self.server.url))
            .args(["--header", &format!("Authorization: Bearer {token}")]);
        for header in headers {
            command.args(["--header", header]);
        }
        let steps = json!([{"op": "call_tool", "name": "echo", "arguments": {"text": "traced"}}]);
        let mut child = command
            .args(["--script", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(steps.to_string().as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .next_back()
            .unwrap_or_else(|| panic!("no output: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(line.get("result").is_some(), "the call failed: {line}");
        line
    }

    /// What the upstream received for `tools/call`.
    fn upstream_calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.trace_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["body"]["method"] == "tools/call")
            .collect()
    }

    /// The ledger's events of `kind` (newest last).
    async fn events(&self, kind: &str) -> Vec<Value> {
        let (status, page) = http(
            reqwest::Method::GET,
            format!("{}/v1/audit?type={kind}&limit=500", self.server.url),
            &self.admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().unwrap().clone()
    }

    /// `events(kind)` once the `tool.called` outcome (appended without waiting) is in.
    async fn events_eventually(&self, kind: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(kind).await;
            if events.len() >= count || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The spans received so far.
fn spans(receiver: &OtlpReceiver) -> Vec<Value> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r["signal"] == "span")
        .collect()
}

/// Waits until `done` holds for the spans received (or fails, listing them).
async fn spans_until(
    receiver: &OtlpReceiver,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = spans(receiver);
        if done(&spans) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not received; spans: {}",
            serde_json::to_string_pretty(&spans).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn named<'a>(spans: &'a [Value], name: &str, trace: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["name"] == name && s["trace_id"] == trace)
        .collect()
}

/// The one span called `name` in `trace` whose parent is `parent`.
fn child<'a>(spans: &'a [Value], name: &str, parent: &Value) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["name"] == name
                && s["trace_id"] == parent["trace_id"]
                && s["parent_span_id"] == parent["span_id"]
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{name}` under `{}` expected; spans: {}",
        parent["name"],
        serde_json::to_string_pretty(spans).unwrap()
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_continues_the_clients_trace_through_the_gateway_to_the_upstream() {
    let receiver = OtlpReceiver::start(&[]);
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("otel-api-key");
    std::fs::write(&key_file, "key-from-a-file\n").unwrap();
    let w = world(&format!(
        "[tracing]\nenabled = true\nendpoint = \"{}/v1/traces\"\nsampling_ratio = 1.0\n\
         service_name = \"mandate-test\"\nheader_files = {{ \"x-api-key\" = \"{}\" }}\n",
        receiver.url,
        key_file.display()
    ))
    .await;

    w.call_echo(&[
        format!("traceparent: {}", client_traceparent()),
        "tracestate: vendor=opaque".to_owned(),
    ])
    .await;

    // (a) The call's spans, in the client's trace, parented as they happened.
    let spans = spans_until(&receiver, "the tool call's spans", |spans| {
        spans.iter().any(|s| {
            s["name"] == "mcp_request"
                && s["trace_id"] == CLIENT_TRACE
                && s["attributes"]["mcp.method"] == "tools/call"
        }) && spans
            .iter()
            .any(|s| s["name"] == "upstream_call" && s["trace_id"] == CLIENT_TRACE)
    })
    .await;
    let root = named(&spans, "mcp_request", CLIENT_TRACE)
        .into_iter()
        .find(|s| s["attributes"]["mcp.method"] == "tools/call")
        .unwrap();
    assert_eq!(
        root["parent_span_id"], CLIENT_SPAN,
        "the root continues the client's span"
    );
    assert_eq!(root["resource"]["service.name"], "mandate-test");
    assert_eq!(
        root["headers"]["x-api-key"], "key-from-a-file",
        "the configured header"
    );
    assert_eq!(root["attributes"]["mandate.id"], w.mandate.as_str());
    assert_eq!(root["attributes"]["agent.id"], w.who.agent.as_str());
    child(&spans, "authentication", root);
    let decision = child(&spans, "decision", root);
    assert_eq!(decision["attributes"]["tool.name"], "echo");
    assert_eq!(decision["attributes"]["mandate.decision"], "allow");
    child(&spans, "policy_decision", decision);
    child(&spans, "durable_write", decision);
    let upstream = child(&spans, "upstream_call", root);
    assert_eq!(upstream["attributes"]["tool.name"], "echo");
    child(&spans, "response", root);
    // No secret in any span: not the task token, not the arguments, not the API key.
    let all = serde_json::to_string(&spans).unwrap();
    assert!(!all.contains("traced"), "a tool argument reached a span");
    assert!(!all.contains("eyJ"), "a token reached a span");

    // (b) The upstream received our span as the parent, in the client's trace, in the
    // HTTP headers and in the request's `_meta` alike.
    let calls = w.upstream_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let ours = format!(
        "00-{CLIENT_TRACE}-{}-01",
        upstream["span_id"].as_str().unwrap()
    );
    assert_eq!(calls[0]["headers"]["traceparent"], ours.as_str());
    assert_eq!(calls[0]["headers"]["tracestate"], "vendor=opaque");
    assert_eq!(
        calls[0]["body"]["params"]["_meta"]["traceparent"],
        ours.as_str()
    );

    // (c) The ledger's decision and outcome carry the same trace id.
    let decisions = w.events("decision").await;
    let call = decisions
        .iter()
        .find(|e| e["data"]["action"] == "call_tool")
        .unwrap();
    assert_eq!(call["data"]["trace_id"], CLIENT_TRACE, "{call}");
    let called = w.events_eventually("tool.called", 1).await;
    assert_eq!(called[0]["data"]["trace_id"], CLIENT_TRACE, "{}", called[0]);

    // A token request: its own trace (no client context), its steps as children.
    let token_spans = spans_until(&receiver, "the token request's spans", |spans| {
        spans.iter().any(|s| s["name"] == "token_request")
            && spans.iter().any(|s| s["name"] == "signing")
    })
    .await;
    let token = token_spans
        .iter()
        .find(|s| s["name"] == "token_request")
        .unwrap();
    assert_eq!(token["parent_span_id"], "");
    assert_eq!(
        token["attributes"]["oauth.grant_type"],
        "client_credentials"
    );
    for step in ["assertion_check", "decision", "durable_write", "signing"] {
        let found = token_spans.iter().any(|s| {
            s["name"] == step
                && s["trace_id"] == token["trace_id"]
                && !s["parent_span_id"].as_str().unwrap().is_empty()
        });
        assert!(found, "no `{step}` in the token request's trace");
    }
    let signing = child(&token_spans, "signing", token);
    assert_eq!(signing["trace_id"], token["trace_id"]);

    // An AuthZEN evaluation continuing a client's trace.
    let authzen_trace = "0af7651916cd43dd8448eb211c80319c";
    let response = reqwest::Client::new()
        .post(format!("{}/access/v1/evaluation", w.server.url))
        .bearer_auth(&w.admin)
        .header(
            "traceparent",
            format!("00-{authzen_trace}-b7ad6b7169203331-01"),
        )
        .json(&json!({
            "subject": {"type": "User", "id": "alice"},
            "action": {"name": "read"},
            "resource": {"type": "Doc", "id": "d1"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = spans_until(&receiver, "the AuthZEN evaluation's spans", |spans| {
        spans
            .iter()
            .any(|s| s["name"] == "authzen_evaluation" && s["trace_id"] == authzen_trace)
            && spans
                .iter()
                .any(|s| s["name"] == "decision" && s["trace_id"] == authzen_trace)
    })
    .await;
    let evaluation = named(&spans, "authzen_evaluation", authzen_trace)[0];
    assert_eq!(evaluation["parent_span_id"], "b7ad6b7169203331");
    child(&spans, "decision", evaluation);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tracing_off_a_valid_client_context_passes_through_and_a_hostile_one_is_dropped() {
    let w = world("").await;

    // Valid: passed on unchanged (we are not a participant), and recorded.
    w.call_echo(&[format!("traceparent: {}", client_traceparent())])
        .await;
    let calls = w.upstream_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["headers"]["traceparent"], client_traceparent());
    assert_eq!(
        calls[0]["body"]["params"]["_meta"]["traceparent"],
        client_traceparent()
    );
    let decisions = w.events("decision").await;
    let first = decisions
        .iter()
        .find(|e| e["data"]["action"] == "call_tool")
        .unwrap();
    assert_eq!(first["data"]["trace_id"], CLIENT_TRACE);

    // Hostile: wrong case, a version we do not speak, all zeros, an injected header.
    for hostile in [
        client_traceparent().to_uppercase(),
        format!("01-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01, x-injected=1"),
    ] {
        let before = w.upstream_calls().len();
        w.call_echo(&[format!("traceparent: {hostile}")]).await;
        let calls = w.upstream_calls();
        assert_eq!(calls.len(), before + 1);
        let last = calls.last().unwrap();
        assert!(
            last["headers"].get("traceparent").is_none(),
            "{hostile}: passed on as {}",
            last["headers"]
        );
        assert!(
            last["body"]["params"]
                .get("_meta")
                .and_then(|m| m.get("traceparent"))
                .is_none(),
            "{hostile}: passed on in _meta"
        );
    }
    let decisions = w.events("decision").await;
    let calls: Vec<&Value> = decisions
        .iter()
        .filter(|e| e["data"]["action"] == "call_tool")
        .collect();
    assert_eq!(calls.len(), 5);
    assert_eq!(
        calls
            .iter()
            .filter(|e| e["data"].get("trace_id").is_some())
            .count(),
        1,
        "only the valid context is recorded"
    );

    // A context only in the request's `_meta` (read after the token check when tracing
    // is off): passed on and recorded just the same.
    let meta_trace = "5bd66ef5095369c7b0d1f8f4bd33716a";
    let meta_parent = format!("00-{meta_trace}-{CLIENT_SPAN}-01");
    let resource = format!("{}/mcp", w.server.url);
    let token = task_token(&w.server, &w.who.agent, &w.who.key, &w.mandate, &resource).await;
    let response = reqwest::Client::new()
        .post(format!("{}/mcp/fx", w.server.url))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "meta"},
                       "_meta": {"traceparent": meta_parent}},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let last = w.upstream_calls().last().cloned().unwrap();
    assert_eq!(last["body"]["params"]["_meta"]["traceparent"], meta_parent);
    let decisions = w.events("decision").await;
    assert!(
        decisions
            .iter()
            .any(|e| e["data"]["action"] == "call_tool" && e["data"]["trace_id"] == meta_trace),
        "the _meta context is recorded"
    );
}
