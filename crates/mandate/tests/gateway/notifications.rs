//! Change notifications: an upstream's tool list changes and resource updates told on
//! `subscriptions/listen` (2026-07-28) and a session's GET stream, only to callers
//! who may see them.

use super::asks::modern_call;
use super::*;

/// Opens a 2026-07-28 `subscriptions/listen` stream for tool list changes on `url`;
/// what arrives on it is gathered into the returned text.
async fn listen(url: &str, token: &str) -> std::sync::Arc<std::sync::Mutex<String>> {
    listen_to(url, token, json!({"toolsListChanged": true})).await
}

/// `listen` with the notifications filter `filter`.
pub(crate) async fn listen_to(
    url: &str,
    token: &str,
    filter: Value,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(
            &json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen",
            "params": {"notifications": filter,
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .send()
        .await
        .unwrap();
    gathered(response)
}

/// Opens a 2025-11-25 session on `url` and its standalone GET stream; what arrives on
/// it is gathered into the returned text.
pub(crate) async fn session_stream(
    url: &str,
    token: &str,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    session_stream_subscribed(url, token, None).await.0
}

/// `session_stream`, the session first subscribing to `uri` (`resources/subscribe`)
/// when one is given; the subscription's answer.
pub(crate) async fn session_stream_subscribed(
    url: &str,
    token: &str,
    uri: Option<&str>,
) -> (std::sync::Arc<std::sync::Mutex<String>>, Value) {
    let client = reqwest::Client::new();
    let response = client
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
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut subscribed = Value::Null;
    if let Some(uri) = uri {
        subscribed = client
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(
                &json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
                "params": {"uri": uri}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    let stream = client
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    (gathered(stream), subscribed)
}

/// The messages gathered from an event stream once its text holds `awaited` (or after
/// ten seconds), and that text.
pub(crate) async fn messages_once(
    seen: &std::sync::Mutex<String>,
    awaited: &str,
) -> (String, Vec<Value>) {
    let mut heard = String::new();
    for _ in 0..100 {
        heard = seen.lock().unwrap().clone();
        if heard.contains(awaited) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let messages = messages_in(&heard);
    (heard, messages)
}

/// The JSON messages in the `data:` lines of an event stream's text.
pub(crate) fn messages_in(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// What an event stream (status 200) sends, gathered into a text as it arrives.
pub(crate) fn gathered(mut stream: reqwest::Response) -> std::sync::Arc<std::sync::Mutex<String>> {
    assert_eq!(stream.status(), 200);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.chunk().await {
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
        // Not an SSE line: what reads the messages never sees it.
        into.lock().unwrap().push_str(STREAM_ENDED);
    });
    seen
}

/// A config whose task tokens live 30 s.
pub(crate) const SHORT_TOKENS: &str = "[tokens]\nmax_lifetime_seconds = 30\n";

/// A task token's `exp`.
pub(crate) fn expiry(token: &str) -> i64 {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&mandate_jose::b64url_decode(payload).unwrap()).unwrap();
    claims["exp"].as_i64().unwrap()
}

/// Appended to a gathered text once its stream ended.
pub(crate) const STREAM_ENDED: &str = "\n[the stream ended]\n";

/// A server in front of the `--dynamic` fixture (`fx`) and, with `other`, a plain one
/// (`other`); `token(tools)` is a task token of a mandate scoped to `tools`.
pub(crate) struct Watching {
    pub(crate) server: Server,
    admin: String,
    who: common::Actors,
    _fixtures: Vec<Fixture>,
    _dir: tempfile::TempDir,
}

impl Watching {
    pub(crate) async fn start(other: bool) -> Watching {
        Watching::start_with(other, "").await
    }

    /// `start`, the server reading `config` (TOML) as its config file.
    pub(crate) async fn start_with(other: bool, config: &str) -> Watching {
        let mut fixtures = vec![("fx", Fixture::start_with(&["--dynamic"]))];
        if other {
            fixtures.push(("other", Fixture::start()));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mandate.toml");
        std::fs::write(&file, config).unwrap();
        let server = Server::start(dir.path(), &["--config", file.to_str().unwrap()]);
        let admin = admin_token(dir.path());
        for (name, fixture) in &fixtures {
            created(
                &server,
                "/v1/tool-servers",
                &admin,
                json!({"name": name, "transport": {"kind": "mcp_http", "url": fixture.url}}),
            )
            .await;
        }
        let who = common::human_and_agent(&server, &admin).await;
        Watching {
            server,
            admin,
            who,
            _fixtures: fixtures.into_iter().map(|(_, f)| f).collect(),
            _dir: dir,
        }
    }

    /// Replaces the operator's policies with one file of Cedar `text`.
    pub(crate) async fn policies(&self, text: &str) {
        let (status, body) = common::http(
            reqwest::Method::PUT,
            format!("{}/v1/policies", self.server.url),
            &self.admin,
            Some(json!({"policies": [{"name": "operator.cedar", "text": text}]})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Adds the `--dynamic` fixture over stdio as tool server `name`.
    pub(crate) async fn add_stdio(&self, name: &str) {
        let fixture = common::python_dir().join("mcp_fixture_server.py");
        created(
            &self.server,
            "/v1/tool-servers",
            &self.admin,
            json!({"name": name, "transport": {"kind": "mcp_stdio", "command": "python3",
                   "args": [fixture.to_str().unwrap(), "--stdio", "--dynamic"]}}),
        )
        .await;
    }

    pub(crate) async fn token(&self, tools: Value) -> String {
        let mandate = self.mandate(tools).await;
        self.token_of(&mandate).await
    }

    /// A mandate scoped to `tools`, consented.
    pub(crate) async fn mandate(&self, tools: Value) -> String {
        let terms = json!({"intent": "Watch the tools", "scope": {"tools": tools},
            "data_ceiling": "internal", "mode": "execute"});
        common::consented_mandate(&self.server, &self.admin, &self.who, terms).await
    }

    /// A new task token of `mandate` for `/mcp`.
    pub(crate) async fn token_of(&self, mandate: &str) -> String {
        let resource = format!("{}/mcp", self.server.url);
        task_token(
            &self.server,
            &self.who.agent,
            &self.who.key,
            mandate,
            &resource,
        )
        .await
    }
}

/// An upstream whose tools change is noticed (it announces the change on the
/// standalone stream the gateway holds open with it, and the gateway also polls the
/// listening tenants' servers): a 2026-07-28 client listening on that server, for
/// whom the added tool is visible, is told `notifications/tools/list_changed` on its
/// `subscriptions/listen` stream (after the acknowledgement, tagged with the
/// stream's id), a session client on its standalone GET stream; a caller who cannot
/// see that server hears nothing on either, and neither does one who sees other tools
/// of that server but not the one added.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_list_change_reaches_the_listeners_who_may_see_it() {
    let w = Watching::start(true).await;
    let server = &w.server;
    let token = w
        .token(json!([{"tool": "fx.echo"}, {"tool": "fx.add_tool"}, {"tool": "fx.extra"}]))
        .await;
    let stranger = w.token(json!([{"tool": "other.echo"}])).await;
    let bystander = w.token(json!([{"tool": "fx.echo"}])).await;
    let told = listen(&format!("{}/mcp/fx", server.url), &token).await;
    let not_told = listen(&format!("{}/mcp", server.url), &stranger).await;
    let bystander_told = listen(&format!("{}/mcp/fx", server.url), &bystander).await;
    let in_session = session_stream(&format!("{}/mcp", server.url), &token).await;
    let stranger_in_session = session_stream(&format!("{}/mcp", server.url), &stranger).await;
    // Without a session there is no standalone stream.
    let response = reqwest::Client::new()
        .get(format!("{}/mcp", server.url))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // The poller's first look at the servers.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, added) = modern_call(
        &format!("{}/mcp/fx", server.url),
        &token,
        "add_tool",
        json!({}),
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        added["result"]["content"][0]["text"], "added extra",
        "{added}"
    );
    let (heard, messages) = messages_once(&told, "notifications/tools/list_changed").await;
    assert_eq!(
        messages[0]["method"], "notifications/subscriptions/acknowledged",
        "{heard}"
    );
    assert_eq!(
        messages[0]["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "{heard}"
    );
    assert_eq!(
        messages[1]["method"], "notifications/tools/list_changed",
        "{heard}"
    );
    assert_eq!(
        messages[1]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
        "{heard}"
    );
    // The session client's GET stream, the same notification without a subscription.
    let (heard, messages) = messages_once(&in_session, "list_changed").await;
    assert_eq!(
        messages.first(),
        Some(
            &json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {}})
        ),
        "{heard}"
    );
    let stranger_heard = stranger_in_session.lock().unwrap().clone();
    assert!(!stranger_heard.contains("list_changed"), "{stranger_heard}");
    let stranger_heard = not_told.lock().unwrap().clone();
    assert!(stranger_heard.contains("acknowledged"), "{stranger_heard}");
    assert!(
        !stranger_heard.contains("list_changed"),
        "a caller who cannot see the server was told: {stranger_heard}"
    );
    // The tool added is not the bystander's to see: nothing it sees changed.
    let bystander_heard = bystander_told.lock().unwrap().clone();
    assert!(
        bystander_heard.contains("acknowledged"),
        "{bystander_heard}"
    );
    assert!(
        !bystander_heard.contains("list_changed"),
        "told of a tool it may not see: {bystander_heard}"
    );
}

/// A resource a 2026-07-28 client subscribed to on `subscriptions/listen`
/// (`resourceSubscriptions`, honoured only where its mandate lets it read the
/// server's resources) is read by the gateway's poller; when its contents change the
/// stream is told `notifications/resources/updated`. A caller who may not read that
/// server's resources is not honoured the subscription and hears nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_resource_update_reaches_only_who_may_read_it() {
    let w = Watching::start(false).await;
    let server = &w.server;
    let token = w
        .token(json!([{"tool": "fx./resources"}, {"tool": "fx.touch_resource"}]))
        .await;
    let stranger = w.token(json!([{"tool": "fx.echo"}])).await;
    let url = format!("{}/mcp/fx", server.url);
    let filter = json!({"resourceSubscriptions": ["test://watched-resource"]});
    let told = listen_to(&url, &token, filter.clone()).await;
    let not_told = listen_to(&url, &stranger, filter).await;
    // Session clients subscribe with resources/subscribe and hear on their GET stream.
    let watched = "test://watched-resource";
    let (in_session, subscribed) = session_stream_subscribed(&url, &token, Some(watched)).await;
    assert_eq!(subscribed["result"], json!({}), "{subscribed}");
    let (stranger_in_session, refused) =
        session_stream_subscribed(&url, &stranger, Some(watched)).await;
    assert_eq!(refused["error"]["code"], REFUSED, "{refused}");
    // The poller's first read.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, touched) = modern_call(
        &url,
        &token,
        "touch_resource",
        json!({}),
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{touched}");
    let (heard, messages) = messages_once(&told, "notifications/resources/updated").await;
    assert_eq!(
        messages[0]["params"]["notifications"],
        json!({"resourceSubscriptions": ["test://watched-resource"]}),
        "{heard}"
    );
    assert_eq!(
        messages[1]["method"], "notifications/resources/updated",
        "{heard}"
    );
    assert_eq!(
        messages[1]["params"]["uri"], "test://watched-resource",
        "{heard}"
    );
    let stranger_heard = not_told.lock().unwrap().clone();
    let strangers = messages_in(&stranger_heard);
    assert_eq!(strangers.len(), 1, "{stranger_heard}");
    assert_eq!(
        strangers[0]["params"]["notifications"],
        json!({}),
        "{stranger_heard}"
    );
    let (heard, messages) = messages_once(&in_session, "resources/updated").await;
    assert_eq!(
        messages.first(),
        Some(
            &json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": watched}})
        ),
        "{heard}"
    );
    let stranger_heard = stranger_in_session.lock().unwrap().clone();
    assert!(!stranger_heard.contains("updated"), "{stranger_heard}");
}

/// What a caller holds open ends with the token that opened it (Mandate's own tokens
/// get no clock skew past their `exp`), though its mandate runs on: a session's GET
/// stream and a 2026-07-28 `subscriptions/listen` stream opened with a token of 30 s
/// stay open until then and are closed by the gateway within its poll (2 s) after it.
#[tokio::test(flavor = "multi_thread")]
async fn streams_end_when_their_token_expires() {
    let w = Watching::start_with(false, SHORT_TOKENS).await;
    let token = w.token(json!([{"tool": "fx.echo"}])).await;
    let exp = expiry(&token);
    let session = session_stream(&format!("{}/mcp", w.server.url), &token).await;
    let listening = listen(&format!("{}/mcp/fx", w.server.url), &token).await;
    let now = || chrono::Utc::now().timestamp();
    tokio::time::sleep(std::time::Duration::from_secs(
        u64::try_from(exp - now() - 5).unwrap_or(0),
    ))
    .await;
    assert!(
        !session.lock().unwrap().contains(STREAM_ENDED),
        "ended before exp"
    );
    assert!(
        !listening.lock().unwrap().contains(STREAM_ENDED),
        "ended before exp"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ended = [&session, &listening]
            .iter()
            .all(|s| s.lock().unwrap().contains(STREAM_ENDED));
        if ended {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still open 15 s after exp: session {:?}, listening {:?}",
            session.lock().unwrap(),
            listening.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let late = now() - exp;
    assert!(late <= 4, "closed {late} s after exp");
}
