//! What an upstream asks during a call (elicitation, sampling) reaching an MCP
//! 2026-07-28 client as `input_required`, answered by the client's retry.

use super::*;

/// A stateless (MCP 2026-07-28) `tools/call`, sent as its revision wants it: the
/// headers, and `_meta` with the revision and the client's capabilities; `extra` is
/// merged into the params (a retry's `requestState` and `inputResponses`).
pub(crate) async fn modern_call(
    url: &str,
    token: &str,
    name: &str,
    arguments: Value,
    capabilities: Value,
    extra: Value,
) -> (u16, Value) {
    let mut params = json!({
        "name": name,
        "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        },
    });
    for (key, value) in extra.as_object().unwrap() {
        params[key] = value.clone();
    }
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What an upstream asks during a call (elicitation, sampling) reaches a 2026-07-28
/// client as `input_required` (its request under our key, our request state); the
/// retry with the answer continues the same upstream call, whose result depends on the
/// answer. Only the token that made the call can answer, once; unknown states and
/// oversized answers are refused without spending the round; a client that did not
/// declare the capability is never asked; a mandate revoked between the rounds
/// refuses the retry and the gateway abandons the upstream call.
#[tokio::test(flavor = "multi_thread")]
async fn what_an_upstream_asks_reaches_a_2026_07_28_client_as_input_required() {
    let w = world().await;
    let terms = json!({
        "intent": "Ask the person through the fixture",
        "scope": {"tools": [{"tool": "fx.test_elicitation"}, {"tool": "fx.test_sampling"}]},
        "data_ceiling": "internal",
        "mode": "execute",
    });
    let mandate = w.mandate(terms.clone()).await;
    let token = w.token(&mandate).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let form = json!({"elicitation": {}});
    let ask = |token: String, capabilities: Value| {
        let url = url.clone();
        async move {
            modern_call(
                &url,
                &token,
                "test_elicitation",
                json!({"message": "Who are you?"}),
                capabilities,
                json!({}),
            )
            .await
        }
    };
    let retry = |token: String, state: Value, answer: Value| {
        let url = url.clone();
        async move {
            modern_call(
                &url,
                &token,
                "test_elicitation",
                json!({"message": "Who are you?"}),
                json!({"elicitation": {}}),
                json!({"requestState": state, "inputResponses": {"mandate/input": answer}}),
            )
            .await
        }
    };
    let (status, asked) = ask(token.clone(), form.clone()).await;
    assert_eq!(status, 200, "{asked}");
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked}");
    let request = &result["inputRequests"]["mandate/input"];
    assert_eq!(request["method"], "elicitation/create", "{asked}");
    assert_eq!(request["params"]["message"], "Who are you?", "{asked}");
    let state = result["requestState"].clone();
    assert!(
        state.as_str().unwrap().starts_with("mandate:ask:"),
        "{asked}"
    );
    let accept =
        json!({"action": "accept", "content": {"username": "alice", "email": "alice@example.com"}});

    // Hostile retries, none of which answers (or spends) the round: another token of
    // the same mandate, another mandate's token, a state never issued, an oversized
    // answer.
    let unknown = |body: &Value| {
        assert_eq!(body["error"]["code"], -32602, "{body}");
        assert!(body.get("result").is_none(), "{body}");
    };
    let other_token = w.token(&mandate).await;
    let (_, body) = retry(other_token, state.clone(), accept.clone()).await;
    unknown(&body);
    let other_mandate = w.mandate(terms.clone()).await;
    let other_mandates_token = w.token(&other_mandate).await;
    let (_, body) = retry(other_mandates_token, state.clone(), accept.clone()).await;
    unknown(&body);
    let (_, body) = retry(
        token.clone(),
        json!("mandate:ask:AAAAAAAAAAAAAAAAAAAAAA"),
        accept.clone(),
    )
    .await;
    unknown(&body);
    let huge =
        json!({"action": "accept", "content": {"username": "a".repeat(300 * 1024), "email": "x"}});
    let (_, body) = retry(token.clone(), state.clone(), huge).await;
    unknown(&body);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger"),
        "{body}"
    );

    // The caller's own answer: the same upstream call goes on, and its result is
    // made of the answer.
    let (status, done) = retry(token.clone(), state.clone(), accept.clone()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("action=accept") && text.contains("alice@example.com"),
        "{done}"
    );
    // Answered once.
    let (_, body) = retry(token.clone(), state.clone(), accept.clone()).await;
    unknown(&body);

    // Sampling, the same way.
    let (_, asked) = modern_call(
        &url,
        &token,
        "test_sampling",
        json!({"prompt": "What is six times seven?"}),
        json!({"sampling": {}}),
        json!({}),
    )
    .await;
    let request = &asked["result"]["inputRequests"]["mandate/input"];
    assert_eq!(request["method"], "sampling/createMessage", "{asked}");
    let sampled = json!({"role": "assistant", "content": {"type": "text", "text": "forty-two"},
        "model": "test-model", "stopReason": "endTurn"});
    let (_, done) = modern_call(
        &url,
        &token,
        "test_sampling",
        json!({"prompt": "What is six times seven?"}),
        json!({"sampling": {}}),
        json!({"requestState": asked["result"]["requestState"], "inputResponses": {"mandate/input": sampled}}),
    )
    .await;
    assert_eq!(
        done["result"]["content"][0]["text"], "LLM response: forty-two",
        "{done}"
    );

    // The Python `mcp` package's own 2026-07-28 client, given an elicitation
    // callback, meets the same thing and answers it; its SDK's retry returns the
    // upstream's result made of that answer.
    let lines = w.modern_client(
        &token,
        &[
            "--tool",
            "test_elicitation",
            "--arguments",
            r#"{"message": "Your name?"}"#,
            "--answer",
            r#"{"username": "bob", "email": "bob@example.com"}"#,
        ],
    );
    assert_eq!(lines[1]["message"], "Your name?", "{lines:?}");
    let text = lines.last().unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("action=accept") && text.contains("bob@example.com"),
        "{lines:?}"
    );

    // A client that declared no elicitation is never asked: the upstream hears the
    // refusal and the call ends without a round trip.
    let (_, body) = ask(token.clone(), json!({})).await;
    assert_ne!(body["result"]["resultType"], "input_required", "{body}");

    // Revoked between the rounds: the retry is refused and the gateway abandons the
    // upstream call (its outcome recorded as an error, not left waiting).
    let (_, asked) = ask(token.clone(), form.clone()).await;
    let state = asked["result"]["requestState"].clone();
    assert!(state.is_string(), "{asked}");
    w.revoke(&mandate).await;
    let (status, body) = retry(token.clone(), state, accept).await;
    assert_eq!(status, 401, "{body}");
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let (_, found) = http(
            reqwest::Method::GET,
            format!(
                "{}/v1/audit?mandate={mandate}&type=tool.called&limit=50",
                w.server.url
            ),
            &w.admin,
            None,
        )
        .await;
        outcomes = found["items"].as_array().cloned().unwrap_or_default();
        // Elicitation answered (raw and by the SDK), sampling, the undeclared one, and
        // the abandoned one.
        if outcomes.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    let abandoned = outcomes
        .iter()
        .filter(|e| e["data"]["is_error"] == json!(true))
        .count();
    assert!(
        abandoned >= 2,
        "the undeclared and the abandoned call failed: {outcomes:?}"
    );
}
