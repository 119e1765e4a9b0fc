//! What the gateway does for the people who run it, end to end: a signed webhook for
//! each new approval, drift alerts that can revoke a mandate, and a ledger that cannot
//! be written stopping every call until it can.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn new_approvals_fire_a_signed_webhook() {
    let (receiver, seen) = common::capture().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "a-webhook-secret-of-some-length").unwrap();
    let w = world_with(&format!(
        "[gateway]\nwebhook_url = \"{receiver}/hook\"\nwebhook_secret_file = \"{}\"\ncapture_arguments = true\nredact = [\"/secret\"]\n",
        secret_file.display()
    ))
    .await;
    let mandate = w
        .mandate(json!({
            "intent": "Delete carefully",
            "scope": {"tools": [{"tool": "fx.delete_everything"}]},
            "data_ceiling": "internal",
            "mode": "execute",
            "approval": {"tiers": ["high_impact"]},
        }))
        .await;
    let token = w.token(&mandate).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let reply = rpc(
        &url,
        &token,
        "tools/call",
        json!({"name": "delete_everything", "arguments": {"secret": "hunter2", "n": 1}}),
    )
    .await;
    let approval = reply["error"]["data"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let hook = loop {
        if let Some(c) = seen.lock().unwrap().first().cloned() {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no webhook");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(hook.path, "/hook");
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["type"], "approval.requested");
    assert_eq!(body["approval_id"], approval.as_str());
    assert!(
        !hook.body.contains("hunter2"),
        "the webhook carries no arguments"
    );
    // Mandate-Signature: t=<unix>,v1=<hex HMAC-SHA256 over "t.body">.
    let signature = hook
        .headers
        .get("mandate-signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"a-webhook-secret-of-some-length");
    let expected = ring::hmac::sign(&key, format!("{t}.{}", hook.body).as_bytes());
    let hex: String = expected
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, format!("v1={hex}"));

    // A client that offers URL elicitation is asked to open the approval page (-32042).
    let client = reqwest::Client::new();
    let init = client
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "clientInfo": {"name": "t", "version": "1"},
            "capabilities": {"elicitation": {"url": {}, "form": {}}}}}),
        )
        .send()
        .await
        .unwrap();
    let session = init
        .headers()
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let asked: Value = client
        .post(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "delete_everything", "arguments": {"secret": "hunter2", "n": 1}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asked["error"]["code"], -32042, "{asked}");
    let elicitation = &asked["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert_eq!(
        elicitation["elicitationId"],
        approval.as_str(),
        "the same call reuses its approval"
    );
    assert!(elicitation["url"].as_str().unwrap().ends_with(&approval));

    // Arguments captured in decision events, with the redaction applied; and the
    // approval shows them redacted too.
    let (_, audit) = http(
        reqwest::Method::GET,
        format!("{}/v1/audit?mandate={mandate}&type=decision", w.server.url),
        &w.admin,
        None,
    )
    .await;
    let text = audit.to_string();
    assert!(
        text.contains("[redacted]") && !text.contains("hunter2"),
        "{text}"
    );
    let (_, shown) = w
        .as_alice(
            reqwest::Method::GET,
            &format!("/v1/approvals/{approval}"),
            None,
        )
        .await;
    assert_eq!(shown["arguments"], json!({"secret": "[redacted]", "n": 1}));
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_refusals_raise_a_drift_alert_and_can_revoke_the_mandate() {
    let w = world_with("[gateway]\ndrift_threshold = 3\ndrift_revoke = true\n").await;
    let mandate = w
        .mandate(json!({
            "intent": "Only echo",
            "scope": {"tools": [{"tool": "fx.echo"}]},
            "data_ceiling": "internal",
            "mode": "execute",
        }))
        .await;
    let token = w.token(&mandate).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let ok = rpc(
        &url,
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "fine"}}),
    )
    .await;
    assert_eq!(ok["result"]["content"][0]["text"], "fine");
    for name in ["delete_everything", "test_image_content", "no_such_tool"] {
        let reply = rpc(
            &url,
            &token,
            "tools/call",
            json!({"name": name, "arguments": {}}),
        )
        .await;
        assert_eq!(reply["error"]["code"], REFUSED, "{reply}");
    }
    // Counts reach the store within a second; the alert is raised there, once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alerts = loop {
        let (_, alerts) = http(
            reqwest::Method::GET,
            format!(
                "{}/v1/audit?mandate={mandate}&type=drift.alert",
                w.server.url
            ),
            &w.admin,
            None,
        )
        .await;
        if alerts["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break alerts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drift alert: {alerts}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");
    let alert = &alerts["items"][0];
    assert_eq!(alert["data"]["out_of_scope"], 3, "{alerts}");
    assert_eq!(alert["data"]["action"], "revoke");
    // The replica that raised the alert revokes right after recording it.
    loop {
        let (_, view) = http(
            reqwest::Method::GET,
            format!("{}/v1/mandates/{mandate}", w.server.url),
            &w.admin,
            None,
        )
        .await;
        let status = view["mandate"]["status"]
            .as_str()
            .or_else(|| view["status"].as_str())
            .unwrap()
            .to_owned();
        if status == "revoked" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not revoked: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The ledger exported to an OpenTelemetry collector (the SDK's OTLP/HTTP protobuf
    // logs), decoded by opentelemetry-proto: one record per event, with its fields.
    let collector = common::OtlpReceiver::start(&[]);
    let export = |url: &str| {
        std::process::Command::new(common::BIN)
            .args(["audit", "export", "--otlp", &format!("{url}/v1/logs")])
            .env("MANDATE_URL", &w.server.url)
            .env("MANDATE_TOKEN", &w.admin)
            .output()
            .unwrap()
    };
    let out = export(&collector.url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, all) = http(
        reqwest::Method::GET,
        format!("{}/v1/audit?limit=500", w.server.url),
        &w.admin,
        None,
    )
    .await;
    let events = all["items"].as_array().unwrap();
    let records = collector.received();
    assert!(
        records.len() >= events.len(),
        "{} records for {} events",
        records.len(),
        events.len()
    );
    for event in events {
        let seq = event["seq"].as_i64().unwrap();
        let record = records
            .iter()
            .find(|r| {
                r["attributes"]["mandate.event.seq"].as_str() == Some(&seq.to_string())
                    || r["attributes"]["mandate.event.seq"].as_i64() == Some(seq)
            })
            .unwrap_or_else(|| panic!("event {seq} not exported"));
        assert_eq!(record["scope"], "mandate.audit");
        assert_eq!(record["resource"]["service.name"], "mandate");
        assert_eq!(record["body"], event["kind"]);
        assert_eq!(record["event_name"], event["kind"]);
        assert_eq!(record["attributes"]["mandate.event.kind"], event["kind"]);
        assert_eq!(record["attributes"]["mandate.event.hash"], event["hash"]);
        assert_eq!(
            record["attributes"]["mandate.event.prev_hash"],
            event["prev_hash"]
        );
        assert_eq!(
            record["attributes"]["mandate.tenant_id"],
            event["tenant_id"]
        );
        assert_ne!(record["time_unix_nano"], 0, "{record}");
        let data: Value =
            serde_json::from_str(record["attributes"]["mandate.event.data"].as_str().unwrap())
                .unwrap();
        assert_eq!(data, event["data"]);
    }
    assert!(records.iter().any(|r| r["body"] == "drift.alert"));

    // A collector that refuses (an error status, or a success rejecting records): the
    // export fails and says so; nothing is dropped silently.
    for refusal in [&["--refuse-logs", "400"][..], &["--reject-logs", "1"][..]] {
        let refusing = common::OtlpReceiver::start(refusal);
        let out = export(&refusing.url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{refusal:?}: the export claimed success"
        );
        assert!(
            stderr.contains("refused the batch"),
            "{refusal:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_that_cannot_be_written_stops_every_call_and_the_gateway_recovers() {
    let db = common::Database::create("mandate_gateway_fail");
    let (upstream, seen) = common::capture().await;
    let w = world_with(&format!("database_url = \"{}\"\n", db.url)).await;
    created(
        &w.server,
        "/v1/tool-servers",
        &w.admin,
        json!({"name": "api", "transport": {"kind": "http", "base_url": upstream}}),
    )
    .await;
    let mandate = w
        .mandate(json!({
            "intent": "Echo and call the API",
            "scope": {"tools": [{"tool": "fx.echo"}, {"tool": "api./http"}]},
            "data_ceiling": "internal",
            "mode": "execute",
        }))
        .await;
    let mcp_token = w.token(&mandate).await;
    let proxy_token = task_token(
        &w.server,
        &w.who.agent,
        &w.who.key,
        &mandate,
        &format!("{}/proxy", w.server.url),
    )
    .await;
    let url = format!("{}/mcp/fx", w.server.url);
    let echo = json!({"name": "echo", "arguments": {"text": "up"}});
    let reply = rpc(&url, &mcp_token, "tools/call", echo.clone()).await;
    assert_eq!(reply["result"]["content"][0]["text"], "up", "{reply}");
    let proxied = || async {
        http(
            reqwest::Method::GET,
            format!("{}/proxy/api/x", w.server.url),
            &proxy_token,
            None,
        )
        .await
        .0
    };
    assert_eq!(proxied().await, 200);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The ledger cannot be written: nothing is forwarded, and the agent is told so.
    db.psql_in("ALTER TABLE audit_events RENAME TO audit_events_away");
    let reply = rpc(&url, &mcp_token, "tools/call", echo.clone()).await;
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    assert_eq!(proxied().await, 503);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a call was forwarded without its decision on record"
    );

    // The store comes back: so does the gateway, by itself.
    db.psql_in("ALTER TABLE audit_events_away RENAME TO audit_events");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let reply = rpc(&url, &mcp_token, "tools/call", echo.clone()).await;
        if reply["result"]["content"][0]["text"] == "up" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {reply}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(proxied().await, 200);
}
