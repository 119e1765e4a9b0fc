#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! People's connections to an upstream service, end to end: the real binary with a
//! `[[gateway.connection_provider]]`, oidc-provider (npm, pinned in `tests/oidc`) as the
//! service's authorization server, an MCP upstream of ours that asks that server whose
//! token each call carries, the Python `mcp` client as the agent, and Chromium through
//! the console and the provider's own login and consent screens.
//!
//! Alice's first call is held with the link to connect; she connects in the browser;
//! the retry reaches the upstream with her token (Bob's calls with his); the token is
//! refreshed once it nears expiry; disconnecting removes it (revoked at the provider)
//! and holds the next call again. Hostile: a callback with another person's state, a
//! replayed callback, malformed states. No access or refresh token the provider issued
//! appears in any response, the log, the audit ledger or the database files.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;

use common::assert_nowhere;
use common::browser::Browser;
use common::free_port;
use common::oidc::OidcProvider;
use common::{Actors, Server, admin_token, created, http, mcp_client};

const CLIENT_SECRET: &str = "upstream-client-secret-PLANTED-4c1d9e";
const PASSWORD: &str = "a long console password";
/// Access tokens live 16 s at the provider: refreshed 4 s before they expire (a
/// quarter of their life), so that two calls right after connecting share one, and a
/// wait of one lifetime sees it refreshed.
const ACCESS_TTL: u64 = 16;

/// The configuration naming the provider at `issuer` as `calendar`.
fn provider_config(issuer: &str) -> String {
    format!(
        "[[gateway.connection_provider]]\nname = \"calendar\"\nissuer = \"{issuer}\"\n\
         client_id = \"mandate-gateway\"\nclient_secret = \"calendar-client\"\n\
         scopes = [\"openid\", \"calendar.read\"]\ndangerous_allow_insecure_loopback = true\n"
    )
}

/// oidc-provider as the upstream's authorization server (`upstream.mjs`), Mandate its
/// client, Alice an account; `extra` arguments besides.
fn upstream_provider(port: u16, redirect_uri: &str, extra: &[&str]) -> OidcProvider {
    let port = port.to_string();
    let mut args = vec![
        "--port",
        &port,
        "--redirect-uri",
        redirect_uri,
        "--client-secret",
        CLIENT_SECRET,
        "--account",
        "alice",
    ];
    args.extend_from_slice(extra);
    OidcProvider::start("upstream.mjs", &args)
}

/// Mandate's client secret in the vault and the tool server `cal` that acts as each
/// person at the provider: its id, and what the vault answered.
async fn calendar_server(server: &Server, admin: &str, upstream: &str) -> (String, Value) {
    let stored = common::put_secret(server, admin, "calendar-client", CLIENT_SECRET).await;
    let srv = created(
        server,
        "/v1/tool-servers",
        admin,
        json!({"name": "cal", "transport": {"kind": "mcp_http", "url": upstream},
               "credential_ref": "connection:calendar"}),
    )
    .await;
    (srv, stored)
}

/// A person with a console password, an API token and an agent with a key.
async fn person(server: &Server, admin: &str, name: &str) -> Actors {
    let email = format!("{name}@example.com");
    let human = created(
        server,
        "/v1/humans",
        admin,
        json!({"display_name": name, "email": email}),
    )
    .await;
    let (status, token) = http(
        reqwest::Method::POST,
        format!("{}/v1/humans/{human}/tokens", server.url),
        admin,
        Some(json!({"label": "test"})),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    common::set_password(server, admin, &human, PASSWORD);
    let key = mandate_jose::SigningKey::generate(mandate_jose::Alg::EdDSA, "k1".into()).unwrap();
    let agent = created(
        server,
        "/v1/agents",
        admin,
        json!({"name": format!("{name}-helper"), "owner": human,
               "credentials": {"jwks": [key.public_jwk().to_public_json()]}}),
    )
    .await;
    Actors {
        human,
        human_token: token["token"].as_str().unwrap().to_owned(),
        agent,
        key,
    }
}

/// One `cal.whoami` call with the Python `mcp` client: its result or error.
async fn whoami(server: &Server, who: &Actors, mandate: &str) -> Value {
    let token = common::mcp_token(server, who, mandate).await;
    whoami_at(&server.url, token).await
}

/// One `cal.whoami` call at `base` with `token`.
async fn whoami_at(base: &str, token: String) -> Value {
    let url = format!("{base}/mcp");
    let steps = json!([{"op": "call_tool", "name": "cal.whoami", "arguments": {}}]);
    tokio::task::spawn_blocking(move || mcp_client(&url, Some(&token), &steps))
        .await
        .unwrap()
        .remove(0)
}

fn text_of(outcome: &Value) -> &str {
    outcome["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a text result: {outcome}"))
}

/// A console session over plain HTTP (cookies by hand, redirects not followed).
struct Console {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Console {
    async fn sign_in(server: &Server, email: &str) -> Console {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = http
            .get(format!("{}/ui/login", server.url))
            .send()
            .await
            .unwrap();
        let login_cookie = cookies(&page);
        let html = page.text().await.unwrap();
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned();
        let signed = http
            .post(format!("{}/ui/login", server.url))
            .header("cookie", login_cookie)
            .header("origin", &server.url)
            .form(&[
                ("csrf", csrf.as_str()),
                ("next", "/ui/"),
                ("email", email),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 303, "signed in");
        Console {
            http,
            base: server.url.clone(),
            cookie: cookies(&signed),
        }
    }

    /// Status and `Location` of a GET.
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status().as_u16(), location)
    }
}

fn cookies(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok()?.split(';').next().map(str::to_owned))
        .filter(|c| !c.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

fn state_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// Through the console's connect link (a path of `server`, or a URL) and the
/// provider's development screens.
fn connect_in_browser(server: &Server, email: &str, login: &str, connect_path: &str) {
    let mut browser = Browser::open(&server.url, &format!("connections-{login}"));
    browser.sign_in(email, PASSWORD);
    browser.goto(connect_path);
    browser.step(json!({"do": "fill", "placeholder": "Enter any login", "value": login}));
    browser.step(json!({"do": "fill", "placeholder": "and password", "value": "whatever"}));
    browser.click("button", "Sign-in");
    browser.click("button", "Continue");
    browser.see("Connected.");
    browser.see("calendar.read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn people_connect_their_accounts_and_calls_carry_their_own_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, provider_config(&issuer)).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with_broker(&data, &config);
    let token_log = dir.path().join("issued-tokens");
    let redirect_uri = format!("{}/ui/connections/callback", server.url);
    let _provider = upstream_provider(
        port,
        &redirect_uri,
        &[
            "--access-ttl",
            &ACCESS_TTL.to_string(),
            "--token-log",
            token_log.to_str().unwrap(),
            "--account",
            "bob",
        ],
    );
    let (upstream, seen) = common::oidc::whoami_upstream(issuer.clone()).await;
    let admin = admin_token(&data);
    let mut responses = Vec::new();

    let (srv, stored) = calendar_server(&server, &admin, &upstream).await;
    responses.push(stored);
    let connect_path = format!("/ui/connections/{srv}/connect");
    let alice = person(&server, &admin, "alice").await;
    let bob = person(&server, &admin, "bob").await;
    let terms = json!({"intent": "read my calendar", "scope": {"tools": [{"tool": "cal.whoami"}]},
                       "data_ceiling": "internal", "mode": "execute"});
    let alice_mandate = common::consented_mandate(&server, &admin, &alice, terms.clone()).await;
    let bob_mandate = common::consented_mandate(&server, &admin, &bob, terms).await;

    // Held: no connection yet. The answer names the link; nothing reached the upstream.
    let held = whoami(&server, &alice, &alice_mandate).await;
    assert_eq!(
        held["error"]["data"]["reason"], "connection_required",
        "{held}"
    );
    assert_eq!(
        held["error"]["data"]["connect_url"],
        format!("{}{connect_path}", server.url),
        "{held}"
    );
    responses.push(held);
    assert!(seen.lock().unwrap().is_empty());

    // Hostile callbacks, over HTTP with the console's cookie.
    let alice_console = Console::sign_in(&server, "alice@example.com").await;
    let bob_console = Console::sign_in(&server, "bob@example.com").await;
    let (status, to_provider) = bob_console.get(&connect_path).await;
    assert_eq!(status, 303);
    assert!(
        to_provider.starts_with(&format!("{issuer}/auth?")),
        "{to_provider}"
    );
    assert!(to_provider.contains("code_challenge_method=S256"));
    let bobs_state = state_of(&to_provider);
    // Another person's state: refused, and nothing is connected.
    let (status, _) = alice_console
        .get(&format!(
            "/ui/connections/callback?code=stolen&state={bobs_state}"
        ))
        .await;
    assert_eq!(status, 403, "another person's state is refused");
    // … and left for its person: Bob's own callback still takes it (the provider then
    // refuses the made-up code), once.
    let (status, _) = bob_console
        .get(&format!(
            "/ui/connections/callback?code=made-up&state={bobs_state}"
        ))
        .await;
    assert_eq!(status, 400, "Bob's state was still his to use");
    let (status, _) = bob_console
        .get(&format!(
            "/ui/connections/callback?code=made-up&state={bobs_state}"
        ))
        .await;
    assert_eq!(status, 403, "and only once");
    for bad in ["", "x", "%00", &"A".repeat(200), "../../etc"] {
        let (status, _) = alice_console
            .get(&format!("/ui/connections/callback?code=c&state={bad}"))
            .await;
        assert_eq!(status, 403, "state {bad:?}");
    }
    // Replayed: the state is used by its first callback (here with a code the provider
    // refuses), then refused.
    let (_, to_provider) = alice_console.get(&connect_path).await;
    let callback = format!(
        "/ui/connections/callback?code=not-a-code&state={}",
        state_of(&to_provider)
    );
    let (first, _) = alice_console.get(&callback).await;
    assert_eq!(first, 400, "the provider refused the code");
    let (again, _) = alice_console.get(&callback).await;
    assert_eq!(again, 403, "a replayed callback is refused");
    // An unknown server, or one that takes no connection.
    let (status, _) = alice_console
        .get("/ui/connections/srv_00000000000000000000000000/connect")
        .await;
    assert_eq!(status, 404);

    // Alice connects in the browser; her retry passes with her own token.
    connect_in_browser(&server, "alice@example.com", "alice", &connect_path);
    let first = whoami(&server, &alice, &alice_mandate).await;
    assert_eq!(text_of(&first), "alice", "{first}");
    let again = whoami(&server, &alice, &alice_mandate).await;
    assert_eq!(text_of(&again), "alice");
    let tokens_seen = seen.lock().unwrap().clone();
    assert_eq!(tokens_seen.len(), 2);
    assert!(tokens_seen[0].starts_with("Bearer "));
    assert_eq!(tokens_seen[0], tokens_seen[1], "a fresh token is reused");
    responses.push(first);

    // Bob, with the SDK's MCP 2026-07-28 client: his call answers input_required with
    // the connect link; he connects in the browser; the SDK's retry passes with his
    // own token.
    let token = common::mcp_token(&server, &bob, &bob_mandate).await;
    let connected = dir.path().join("bob-connected");
    let mut modern = Command::new("python3")
        .arg(common::python_dir().join("mcp_modern_client.py"))
        .arg(format!("{}/mcp", server.url))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--tool", "cal.whoami", "--arguments", "{}"])
        .args(["--wait-for", connected.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read as they come (this blocks one of the runtime's workers; the upstream runs
    // on another).
    let mut lines = BufReader::new(modern.stdout.take().unwrap()).lines();
    let asked: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        asked["asked"],
        format!("{}{connect_path}", server.url),
        "{asked}"
    );
    assert_eq!(asked["mode"], "url");
    connect_in_browser(&server, "bob@example.com", "bob", &connect_path);
    std::fs::write(&connected, b"").unwrap();
    let bobs: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = modern.wait();
    assert_eq!(text_of(&bobs), "bob", "{bobs}");
    assert_ne!(seen.lock().unwrap().last().unwrap(), &tokens_seen[0]);

    // Refreshed: past the refresh point the access token is renewed with the refresh
    // token, and the upstream accepts the new one. (Real time: the provider's clock.)
    tokio::time::sleep(std::time::Duration::from_secs(ACCESS_TTL)).await;
    let refreshed = whoami(&server, &alice, &alice_mandate).await;
    assert_eq!(text_of(&refreshed), "alice", "{refreshed}");
    let last = seen.lock().unwrap().last().unwrap().clone();
    assert_ne!(last, tokens_seen[0], "the token was refreshed");

    // Alice sees her connection (no token) and disconnects in the browser.
    let (status, listing) = {
        let r = alice_console
            .http
            .get(format!("{}/ui/connections", server.url))
            .header("cookie", &alice_console.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(listing.contains("cal") && listing.contains("calendar.read"));
    responses.push(Value::String(listing));
    let mut browser = Browser::open(&server.url, "connections-alice-revoke");
    browser.sign_in("alice@example.com", PASSWORD);
    browser.goto("/ui/connections");
    browser.click("button", "Disconnect");
    browser.see("Disconnected.");
    drop(browser);
    // Revoked at the provider too (RFC 7009): the last token no longer works there.
    let at_provider = reqwest::Client::new()
        .get(format!("{issuer}/test/whoami"))
        .header("authorization", &last)
        .send()
        .await
        .unwrap();
    assert_eq!(at_provider.status(), 401, "revoked at the provider");
    // The next call is held again; Bob's connection is untouched.
    let held = whoami(&server, &alice, &alice_mandate).await;
    assert_eq!(held["error"]["data"]["reason"], "connection_required");
    assert_eq!(text_of(&whoami(&server, &bob, &bob_mandate).await), "bob");

    // Bob's refresh token revoked at the provider behind Mandate's back: once his access
    // token needs refreshing, the call fails closed and the connection is removed; his
    // next call is held for him to connect again.
    let issued = std::fs::read_to_string(&token_log).unwrap();
    let bobs_refresh = issued
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("refresh_token bob "))
        .unwrap()
        .to_owned();
    let revoked = reqwest::Client::new()
        .post(format!("{issuer}/token/revocation"))
        .basic_auth("mandate-gateway", Some(CLIENT_SECRET))
        .form(&[
            ("token", bobs_refresh.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    tokio::time::sleep(std::time::Duration::from_secs(ACCESS_TTL)).await;
    let failed = whoami(&server, &bob, &bob_mandate).await;
    assert!(failed["error"]["code"].is_number(), "{failed}");
    assert_ne!(failed["error"]["data"]["reason"], "connection_required");
    let held = whoami(&server, &bob, &bob_mandate).await;
    assert_eq!(
        held["error"]["data"]["reason"], "connection_required",
        "{held}"
    );
    responses.push(failed);

    // Audited, without token material.
    let (_, audit) = http(
        reqwest::Method::GET,
        format!("{}/v1/audit?limit=500", server.url),
        &admin,
        None,
    )
    .await;
    let kinds: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "connection.required",
        "connection.connected",
        "connection.revoked",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let reasons: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "connection.revoked")
        .filter_map(|e| e["data"]["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"disconnected by the person"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"the provider refused the refresh token"),
        "{reasons:?}"
    );
    responses.push(audit);

    // Secret scanning: no token the provider issued, nor the client secret, anywhere.
    let issued: Vec<String> = std::fs::read_to_string(&token_log)
        .unwrap()
        .lines()
        .filter_map(|l| l.rsplit(' ').next().map(str::to_owned))
        .collect();
    assert!(
        issued.len() >= 5,
        "access and refresh tokens issued: {}",
        issued.len()
    );
    assert!(
        issued.iter().any(|t| last.ends_with(t.as_str())),
        "the token log names what the upstream saw"
    );
    let mut planted: Vec<&str> = issued.iter().map(String::as_str).collect();
    planted.push(CLIENT_SECRET);
    let log = server.stop();
    assert_nowhere(&planted, &responses, &log, &data);
}

/// Two replicas on one PostgreSQL database, the public URL (the console's origin and
/// the provider's redirect) being B's: a connection started at A is finished at B (the
/// state is in the store), calls at either replica carry it, and a disconnect at B
/// holds the very next call at A (nothing is cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_is_made_used_and_revoked_across_replicas() {
    let db = common::Database::create("mandate_connections_replicas");
    let dir = tempfile::tempdir().unwrap();
    let (port, b_port) = (free_port(), free_port());
    let (issuer, public) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{b_port}"),
    );
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, provider_config(&issuer)).unwrap();
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [3u8; 32]);
    let flags = [
        "--config",
        config.to_str().unwrap(),
        "--database-url",
        db.url.as_str(),
    ];
    let master = format!("k1:{key}");
    let env = [
        ("MANDATE_PUBLIC_URL", public.as_str()),
        ("MANDATE_MASTER_KEY", master.as_str()),
    ];
    let a = Server::start_with_env(&dir.path().join("a"), &flags, &env);
    let b = Server::start_on(
        &format!("127.0.0.1:{b_port}"),
        &dir.path().join("b"),
        &flags,
        &env,
    );
    let redirect_uri = format!("{public}/ui/connections/callback");
    let _provider = upstream_provider(port, &redirect_uri, &[]);
    let (upstream, _seen) = common::oidc::whoami_upstream(issuer).await;
    let admin = admin_token(&dir.path().join("a"));
    let (srv, _) = calendar_server(&a, &admin, &upstream).await;
    let alice = person(&a, &admin, "alice").await;
    let terms = json!({"intent": "read my calendar", "scope": {"tools": [{"tool": "cal.whoami"}]},
                       "data_ceiling": "internal", "mode": "execute"});
    let mandate = common::consented_mandate(&a, &admin, &alice, terms).await;
    let token = common::task_token(
        &b,
        &alice.agent,
        &alice.key,
        &mandate,
        &format!("{public}/mcp"),
    )
    .await;

    let held = whoami_at(&b.url, token.clone()).await;
    assert_eq!(
        held["error"]["data"]["reason"], "connection_required",
        "{held}"
    );
    // Signed in at B (the console's origin); the connection started at A; the provider
    // sends the browser back to B, which finishes it.
    connect_in_browser(
        &b,
        "alice@example.com",
        "alice",
        &format!("{}/ui/connections/{srv}/connect", a.url),
    );
    for replica in [&a, &b] {
        let answer = whoami_at(&replica.url, token.clone()).await;
        assert_eq!(text_of(&answer), "alice", "{answer}");
    }
    let mut browser = Browser::open(&b.url, "connections-replicas-revoke");
    browser.sign_in("alice@example.com", PASSWORD);
    browser.goto("/ui/connections");
    browser.click("button", "Disconnect");
    browser.see("Disconnected.");
    drop(browser);
    let held = whoami_at(&a.url, token).await;
    assert_eq!(
        held["error"]["data"]["reason"], "connection_required",
        "{held}"
    );
    drop((a, b));
}
