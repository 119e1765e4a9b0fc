//! What upstreams announce (list changes, resource updates) is consumed by the gateway
//! and told in its own words, only to callers who may see what changed; resource
//! subscriptions on the aggregate endpoint `/mcp`.

use super::asks::modern_call;
use super::notifications::{
    SHORT_TOKENS, STREAM_ENDED, Watching, expiry, listen_to, messages_in, messages_once,
    session_stream, session_stream_subscribed,
};
use super::*;

/// Calls `tool` on `url` as a 2026-07-28 client: its result, which must be no error.
async fn call_ok(url: &str, token: &str, tool: &str, arguments: Value) -> Value {
    let (status, done) = modern_call(url, token, tool, arguments, json!({}), json!({})).await;
    assert_eq!(status, 200, "{tool}: {done}");
    assert_eq!(done["result"]["isError"], false, "{tool}: {done}");
    done["result"].clone()
}

/// Opens a 2025-11-25 session on `url`: its id.
async fn session(url: &str, token: &str) -> String {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A request in session `session`: the whole answer as text (JSON or an event stream).
async fn in_session(url: &str, token: &str, session: &str, method: &str, params: Value) -> String {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The JSON-RPC answer in a text that is JSON or an event stream.
fn answer(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        messages_in(text)
            .into_iter()
            .find(|m| m.get("id").is_some())
            .unwrap_or(Value::Null)
    })
}

/// The messages on a gathered stream with `method`.
fn with_method(seen: &std::sync::Mutex<String>, method: &str) -> Vec<Value> {
    let text = seen.lock().unwrap().clone();
    messages_in(&text)
        .into_iter()
        .filter(|m| m["method"] == method)
        .collect()
}

/// An upstream's announcements, wherever they arrive (its standalone stream, or the
/// event stream of a call in flight), are consumed, never passed on as sent: a tool
/// redefined under the same name (announced on the call's own stream, with params of
/// the upstream's) is told as `notifications/tools/list_changed` in the gateway's
/// words to the listeners who see that tool, the calling session client's stream
/// carries its answer and not the announcement, and the catalog shows the new
/// definition at once; a prompt or resource list change is told to who covers that
/// server's prompts or resources; announcements with hostile params (a huge list
/// change, an update of a URI too long, an unknown method) reach nobody; a caller who
/// sees none of it hears nothing at all.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_announcements_are_told_in_our_words_to_who_may_see() {
    let w = Watching::start(false).await;
    let mcp = format!("{}/mcp", w.server.url);
    let token = w
        .token(json!([{"tool": "fx.echo"}, {"tool": "fx.retitle_echo"},
            {"tool": "fx.announce"}, {"tool": "fx.add_prompt"}, {"tool": "fx.add_resource"},
            {"tool": "fx./prompts"}, {"tool": "fx./resources"}]))
        .await;
    let stranger = w.token(json!([{"tool": "fx.add_tool"}])).await;
    let all = json!({"toolsListChanged": true, "promptsListChanged": true,
        "resourcesListChanged": true});
    let told = listen_to(&mcp, &token, all.clone()).await;
    let not_told = listen_to(&mcp, &stranger, all.clone()).await;
    let on_get = session_stream(&mcp, &token).await;
    let stranger_on_get = session_stream(&mcp, &stranger).await;
    // The poller's first look (the baseline a change is measured against).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let calling = session(&mcp, &token).await;
    let called = in_session(
        &mcp,
        &token,
        &calling,
        "tools/call",
        json!({"name": "fx.retitle_echo", "arguments": {}}),
    )
    .await;
    assert_eq!(
        answer(&called)["result"]["content"][0]["text"],
        "retitled echo",
        "{called}"
    );
    assert!(
        !called.contains("list_changed") && !called.contains("upstream-only"),
        "the upstream's announcement reached the caller as sent: {called}"
    );
    let (heard, _) = messages_once(&told, "notifications/tools/list_changed").await;
    let changes = with_method(&told, "notifications/tools/list_changed");
    assert_eq!(
        changes,
        vec![
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"}}})
        ],
        "{heard}"
    );
    let listed = in_session(&mcp, &token, &calling, "tools/list", json!({})).await;
    let echo = answer(&listed)["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "fx.echo")
        .cloned()
        .unwrap();
    assert_eq!(
        echo["description"], "Echoes its text (retitled)",
        "{listed}"
    );

    for (tool, method) in [
        ("add_prompt", "notifications/prompts/list_changed"),
        ("add_resource", "notifications/resources/list_changed"),
    ] {
        call_ok(&format!("{mcp}/fx"), &token, tool, json!({})).await;
        let (heard, _) = messages_once(&told, method).await;
        assert_eq!(
            with_method(&told, method),
            vec![json!({"jsonrpc": "2.0", "method": method,
                "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"}}})],
            "{heard}"
        );
        let (heard, _) = messages_once(&on_get, method).await;
        assert_eq!(
            with_method(&on_get, method),
            vec![json!({"jsonrpc": "2.0", "method": method, "params": {}})],
            "{heard}"
        );
    }

    let huge = "y".repeat(200_000);
    for (method, params, related) in [
        (
            "notifications/tools/list_changed",
            json!({"huge": huge}),
            false,
        ),
        (
            "notifications/tools/list_changed",
            json!({"huge": huge}),
            true,
        ),
        (
            "notifications/resources/updated",
            json!({"uri": "z".repeat(5000)}),
            false,
        ),
        ("notifications/resources/updated", json!({"uri": 17}), true),
        (
            "notifications/prompts/list_changed",
            json!(["not", "an", "object"]),
            false,
        ),
        (
            "notifications/unheard/of",
            json!({"uri": "test://watched-resource"}),
            false,
        ),
    ] {
        let arguments = json!({"method": method, "params": params, "related": related});
        let done = call_ok(&format!("{mcp}/fx"), &token, "announce", arguments).await;
        assert_eq!(done["content"][0]["text"], "announced", "{method}: {done}");
    }
    // Two polls' time: a list change that changed nothing is told to nobody.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    for stream in [&told, &on_get] {
        let heard = stream.lock().unwrap().clone();
        assert!(
            !heard.contains("yyyy") && !heard.contains("zzzz"),
            "{heard}"
        );
        assert!(!heard.contains("unheard"), "{heard}");
        for method in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
        ] {
            assert_eq!(with_method(stream, method).len(), 1, "{method}: {heard}");
        }
        assert!(!heard.contains("resources/updated"), "{heard}");
    }
    let heard = not_told.lock().unwrap().clone();
    let acknowledged = with_method(&not_told, "notifications/subscriptions/acknowledged");
    assert_eq!(acknowledged[0]["params"]["notifications"], all, "{heard}");
    assert_eq!(heard.matches("data: ").count(), 1, "{heard}");
    let heard = stranger_on_get.lock().unwrap().clone();
    assert!(!heard.contains("data: "), "{heard}");
}

/// `resources/subscribe` in a session on `/mcp` is decided as `resources/read` there
/// is, and refused as that read is refused (a caller who may not read the server's
/// resources, a URI no server has); `subscriptions/listen` on `/mcp` honours
/// `resourceSubscriptions` the same way. A change of the resource is told once, as
/// `notifications/resources/updated`, to each subscriber.
#[tokio::test(flavor = "multi_thread")]
async fn resources_are_subscribed_to_on_the_aggregate_endpoint() {
    let w = Watching::start(false).await;
    let mcp = format!("{}/mcp", w.server.url);
    let token = w
        .token(json!([{"tool": "fx./resources"}, {"tool": "fx.touch_resource"}]))
        .await;
    let stranger = w.token(json!([{"tool": "fx.echo"}])).await;
    let watched = "test://watched-resource";
    let (on_get, subscribed) = session_stream_subscribed(&mcp, &token, Some(watched)).await;
    assert_eq!(subscribed["result"], json!({}), "{subscribed}");
    let (stranger_on_get, refused) =
        session_stream_subscribed(&mcp, &stranger, Some(watched)).await;
    let strangers = session(&mcp, &stranger).await;
    let read = answer(
        &in_session(
            &mcp,
            &stranger,
            &strangers,
            "resources/read",
            json!({"uri": watched}),
        )
        .await,
    );
    assert!(refused["error"].is_object(), "{refused}");
    assert_eq!(
        refused["error"]["code"], read["error"]["code"],
        "{refused} {read}"
    );
    assert_eq!(
        refused["error"]["data"]["reason"], read["error"]["data"]["reason"],
        "{refused} {read}"
    );
    // A URI no server has: the read's error too.
    let mine = session(&mcp, &token).await;
    let missing = json!({"uri": "test://no-such-resource"});
    let subscribe_missing =
        answer(&in_session(&mcp, &token, &mine, "resources/subscribe", missing.clone()).await);
    let read_missing = answer(&in_session(&mcp, &token, &mine, "resources/read", missing).await);
    assert!(
        subscribe_missing["error"].is_object(),
        "{subscribe_missing}"
    );
    assert_eq!(
        subscribe_missing["error"]["code"], read_missing["error"]["code"],
        "{subscribe_missing} {read_missing}"
    );
    let filter = json!({"resourceSubscriptions": [watched, "test://no-such-resource"]});
    let told = listen_to(&mcp, &token, filter.clone()).await;
    let not_told = listen_to(&mcp, &stranger, filter).await;
    let (heard, messages) = messages_once(&told, "acknowledged").await;
    assert_eq!(
        messages[0]["params"]["notifications"],
        json!({"resourceSubscriptions": [watched]}),
        "{heard}"
    );
    // The poller's first read.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    call_ok(&format!("{mcp}/fx"), &token, "touch_resource", json!({})).await;
    let (heard, _) = messages_once(&on_get, "resources/updated").await;
    assert_eq!(
        with_method(&on_get, "notifications/resources/updated"),
        vec![
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": watched}})
        ],
        "{heard}"
    );
    let (heard, _) = messages_once(&told, "resources/updated").await;
    let updates = with_method(&told, "notifications/resources/updated");
    assert_eq!(updates.len(), 1, "{heard}");
    assert_eq!(updates[0]["params"]["uri"], watched, "{heard}");
    for stream in [&stranger_on_get, &not_told] {
        let heard = stream.lock().unwrap().clone();
        assert!(!heard.contains("updated"), "{heard}");
    }
    // Heard from the upstream and seen by the poller too: told once all the same.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        with_method(&on_get, "notifications/resources/updated").len(),
        1
    );
    assert_eq!(
        with_method(&told, "notifications/resources/updated").len(),
        1
    );
    assert!(!on_get.lock().unwrap().contains(STREAM_ENDED));
}

/// A stdio upstream's announcements are read from its output whenever it writes them:
/// a prompt list change (which no poll would see) reaches the listener who covers that
/// server's prompts.
#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_upstreams_announcement_is_heard() {
    let w = Watching::start(false).await;
    w.add_stdio("local").await;
    let mcp = format!("{}/mcp", w.server.url);
    let token = w
        .token(json!([{"tool": "local./prompts"}, {"tool": "local.add_prompt"}]))
        .await;
    let stranger = w.token(json!([{"tool": "local.add_prompt"}])).await;
    let filter = json!({"promptsListChanged": true});
    let told = listen_to(&format!("{mcp}/local"), &token, filter.clone()).await;
    let not_told = listen_to(&mcp, &stranger, filter).await;
    // A 2026-07-28 client's call: its envelope in `_meta` stays with the gateway (the
    // Python SDK's stdio server refuses a request that carries another revision's).
    let done = call_ok(&mcp, &token, "local.add_prompt", json!({})).await;
    assert_eq!(done["content"][0]["text"], "added extra_prompt", "{done}");
    let (heard, _) = messages_once(&told, "prompts/list_changed").await;
    assert_eq!(
        with_method(&told, "notifications/prompts/list_changed").len(),
        1,
        "{heard}"
    );
    let heard = not_told.lock().unwrap().clone();
    assert!(!heard.contains("list_changed"), "{heard}");
}

/// A session's resource subscription lasts as long as the token that made it (tokens
/// of 30 s here), not as long as the session: once it expired, a GET stream opened
/// with a later token of the same mandate hears nothing of the resource until that
/// token subscribes again.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_subscription_ends_with_the_token_that_made_it() {
    let w = Watching::start_with(false, SHORT_TOKENS).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let mandate = w
        .mandate(json!([{"tool": "fx./resources"}, {"tool": "fx.touch_resource"}]))
        .await;
    let first = w.token_of(&mandate).await;
    let opened = session(&url, &first).await;
    let watched = json!({"uri": "test://watched-resource"});
    let subscribed = in_session(
        &url,
        &first,
        &opened,
        "resources/subscribe",
        watched.clone(),
    )
    .await;
    assert_eq!(answer(&subscribed)["result"], json!({}), "{subscribed}");
    let now = || chrono::Utc::now().timestamp();
    // Past the first token's expiry, a second one (issued 20 s after it) opens the
    // session's GET stream.
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    let second = w.token_of(&mandate).await;
    assert!(expiry(&second) > expiry(&first) + 10);
    tokio::time::sleep(std::time::Duration::from_secs(
        u64::try_from(expiry(&first) - now() + 1).unwrap_or(0),
    ))
    .await;
    let stream = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&second)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &opened)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    let on_get = super::notifications::gathered(stream);
    let touch = json!({"name": "touch_resource", "arguments": {}});
    // The poller's first read would record; the upstream's announcement too.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    in_session(&url, &second, &opened, "tools/call", touch.clone()).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let heard = on_get.lock().unwrap().clone();
    assert!(!heard.contains("resources/updated"), "{heard}");
    // Subscribed again with the token in hand: told.
    let subscribed = in_session(&url, &second, &opened, "resources/subscribe", watched).await;
    assert_eq!(answer(&subscribed)["result"], json!({}), "{subscribed}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    in_session(&url, &second, &opened, "tools/call", touch).await;
    let (heard, _) = messages_once(&on_get, "resources/updated").await;
    assert_eq!(
        with_method(&on_get, "notifications/resources/updated").len(),
        1,
        "{heard}"
    );
}

/// A real MCP client (Python `mcp`, a 2025-11-25 session on `/mcp`, its SDK's own
/// standalone GET stream) subscribes to a resource on the aggregate endpoint and is
/// told of its update and of a tool added that it may see; a client whose mandate
/// does not cover the server's resources is refused the subscription as a read.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_mcp_client_hears_of_its_subscriptions_and_tools() {
    let w = Watching::start(false).await;
    let mcp = format!("{}/mcp", w.server.url);
    let token = w
        .token(
            json!([{"tool": "fx./resources"}, {"tool": "fx.touch_resource"},
            {"tool": "fx.add_tool"}, {"tool": "fx.extra"}]),
        )
        .await;
    let stranger = w.token(json!([{"tool": "fx.echo"}])).await;
    let watched = "test://watched-resource";
    let steps = json!([
        {"op": "subscribe_resource", "uri": watched},
        {"op": "sleep", "seconds": 3},
        {"op": "call_tool", "name": "fx.touch_resource"},
        {"op": "wait_notification", "method": "notifications/resources/updated"},
        {"op": "call_tool", "name": "fx.add_tool"},
        {"op": "wait_notification", "method": "notifications/tools/list_changed"},
        {"op": "list_tools"},
    ]);
    let (mcp_url, client_token) = (mcp.clone(), token.clone());
    let out = tokio::task::spawn_blocking(move || {
        common::mcp_client(&mcp_url, Some(&client_token), &steps)
    })
    .await
    .unwrap();
    let all = serde_json::to_string_pretty(&out).unwrap();
    assert_eq!(out[0]["result"], json!({}), "{all}");
    assert_eq!(out[3]["result"]["params"]["uri"], watched, "{all}");
    assert_eq!(
        out[5]["result"]["method"], "notifications/tools/list_changed",
        "{all}"
    );
    let names: Vec<&str> = out[6]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"fx.extra"), "{all}");
    let refused = tokio::task::spawn_blocking(move || {
        common::mcp_client(
            &mcp,
            Some(&stranger),
            &json!([{"op": "subscribe_resource", "uri": watched}]),
        )
    })
    .await
    .unwrap();
    assert_eq!(refused[0]["error"]["code"], REFUSED, "{refused:?}");
    assert_eq!(
        refused[0]["error"]["data"]["reason"], "not_available",
        "{refused:?}"
    );
}

/// A resource's update is told only while its subscriber may still read it: once an
/// operator policy forbids reading the server's resources, a change that would have
/// been told (and was, before) reaches neither the session's GET stream nor the
/// `subscriptions/listen` stream.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_is_told_only_while_the_subscriber_may_still_read() {
    let w = Watching::start(false).await;
    let url = format!("{}/mcp/fx", w.server.url);
    let token = w
        .token(json!([{"tool": "fx./resources"}, {"tool": "fx.touch_resource"}]))
        .await;
    let watched = "test://watched-resource";
    let (on_get, subscribed) = session_stream_subscribed(&url, &token, Some(watched)).await;
    assert_eq!(subscribed["result"], json!({}), "{subscribed}");
    let told = listen_to(&url, &token, json!({"resourceSubscriptions": [watched]})).await;
    let touch = || call_ok(&url, &token, "touch_resource", json!({}));
    // The poller's first read, then a change told to both.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    touch().await;
    for stream in [&on_get, &told] {
        let (heard, _) = messages_once(stream, "resources/updated").await;
        assert_eq!(
            with_method(stream, "notifications/resources/updated").len(),
            1,
            "{heard}"
        );
    }
    w.policies(
        "@id(\"no-reading\")\nforbid (principal, action == Mandate::Action::\"read_resource\", resource == Mandate::Tool::\"fx./resources\");\n",
    )
    .await;
    touch().await;
    // The announcement, and a poll after it.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    for stream in [&on_get, &told] {
        let heard = stream.lock().unwrap().clone();
        assert_eq!(
            with_method(stream, "notifications/resources/updated").len(),
            1,
            "told after reading was forbidden: {heard}"
        );
    }
}
