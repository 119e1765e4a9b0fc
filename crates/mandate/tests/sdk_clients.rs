#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The two MCP SDKs people build clients with, each through a whole working day against
//! the real binary, with their own OAuth client providers: the Python `mcp` package
//! (`tests/python/mcp_oauth_flow.py`, its 2026-07-28 client) and the TypeScript SDK
//! `@modelcontextprotocol/sdk` (`tests/typescript/mcp_oauth_flow.mjs`). Each discovers
//! the authorization server, registers, sends its person to `/oauth2/authorize` — Alice
//! signs in and grants in Chromium — redeems the code and calls a tool; its 30-second
//! access token expires and the SDK refreshes it with no browser; a high-impact call is
//! held, the SDK shows the approval page, Alice approves it in the console and the call
//! completes; Alice revokes the mandate in the console, the SDK's refresh is refused
//! (`invalid_grant`) and it is sent back to its person. Every line the clients print is
//! echoed (`cargo test --test sdk_clients -- --nocapture`). Screenshots:
//! `target/tmp/screenshots/sdk-python/`, `sdk-typescript/`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::browser::Browser;
use common::{BIN, Fixture, Server, admin_token, created, http};

const PASSWORD: &str = "a long console password";
/// Tokens live 30 s (the least `tokens.max_lifetime_seconds` allows): the flow waits
/// for one to expire, twice for the Python client.
const CONFIG: &str = "[tokens]\nmax_lifetime_seconds = 30\n";
/// Bound on any one wait for a client's next line (two token lifetimes and a loaded CI).
const LINE_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound on each browser step: these flows run beside the whole suite on two cores (the
/// driver's 15 s default was seen exceeded by a first page load there).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

struct World {
    server: Server,
    admin: String,
    _fixture: Fixture,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let fixture = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = Server::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let admin = admin_token(dir.path());
    let fx = created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "fx", "transport": {"kind": "mcp_http", "url": fixture.url}}),
    )
    .await;
    for (name, tier) in [("echo", "read"), ("delete_everything", "high_impact")] {
        created(
            &server,
            "/v1/tools",
            &admin,
            json!({"server_id": fx, "name": name, "risk_tier": tier}),
        )
        .await;
    }
    let alice = created(
        &server,
        "/v1/humans",
        &admin,
        json!({"display_name": "Alice", "email": "alice@example.com"}),
    )
    .await;
    let mut child = Command::new(BIN)
        .args(["human", "password", &alice])
        .env("MANDATE_URL", &server.url)
        .env("MANDATE_TOKEN", &admin)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    World {
        server,
        admin,
        _fixture: fixture,
        _dir: dir,
    }
}

impl World {
    async fn get(&self, path: &str) -> Value {
        let (status, body) = http(
            reqwest::Method::GET,
            format!("{}{path}", self.server.url),
            &self.admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The one active mandate (the client's, granted by Alice).
    async fn active_mandate(&self) -> String {
        let listed = self.get("/v1/mandates?status=active").await;
        let items = listed["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{listed}");
        items[0]["id"].as_str().unwrap().to_owned()
    }
}

/// Alice, in the browser the client sent her to: signs in and grants the fixture's echo
/// and its high-impact tool (approval per high-impact call is the screen's default).
fn consent(browser: &mut Browser, url: &str) {
    browser.goto(url);
    browser.see("Sign in");
    browser.fill("Email", "alice@example.com");
    browser.fill("Password", PASSWORD);
    browser.click("button", "Sign in");
    browser.see("fx.delete_everything");
    let text = browser.text();
    let offered: std::collections::BTreeSet<&str> = text
        .split(char::is_whitespace)
        .filter(|w| w.starts_with("fx."))
        .collect();
    for tool in offered
        .into_iter()
        .filter(|t| !["fx.echo", "fx.delete_everything"].contains(t))
    {
        browser.step(json!({"do": "uncheck", "label": tool}));
    }
    browser.fill("Intent", "Echo and clean up through the fixture");
    browser.fill("Call budget", "20");
    browser.step(json!({"do": "submit", "name": "Grant", "shot": "submit Grant"}));
    browser.see("Authorization complete");
}

/// Runs a client script to its end, playing the person whenever it asks: its lines.
async fn run_flow(w: &World, mut command: Command, shots: &str) -> Vec<Value> {
    let mut child: Child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut browser: Option<Browser> = None;
    let mut lines: Vec<Value> = Vec::new();
    loop {
        let line = match rx.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "{shots}: no line for {LINE_TIMEOUT:?}; so far:\n{lines:#?}\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
        };
        println!("{shots}: {line}");
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let mut answer = None;
        if let Some(url) = value["authorize"].as_str()
            && browser.is_none()
        {
            let mut b = Browser::open_patient(&w.server.url, shots, STEP_TIMEOUT);
            consent(&mut b, url);
            browser = Some(b);
        } else if let Some(url) = value["asked"].as_str() {
            let b = browser.as_mut().expect("asked before authorizing");
            b.goto(url);
            b.see("fx.delete_everything");
            b.see("\"confirm\": true");
            b.click("button", "Approve");
            b.see("Approved.");
            answer = Some(json!({"approved": true}));
        } else if value["waiting_for"] == "revocation" {
            let mandate = w.active_mandate().await;
            let b = browser.as_mut().expect("revocation before authorizing");
            b.goto(&format!("/ui/mandates/{mandate}"));
            b.fill("Reason (optional)", "the working day is over");
            b.click("button", "Revoke");
            b.see("Revoked.");
            answer = Some(json!({"revoked": true}));
        }
        if let Some(answer) = answer {
            writeln!(stdin, "{answer}").unwrap();
            stdin.flush().unwrap();
        }
        lines.push(value);
    }
    drop(browser);
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap_or_default();
    assert!(status.success(), "{shots} failed: {lines:#?}\n{stderr}");
    lines
}

/// The index of the first line matching `pred` at or after `from`.
#[track_caller]
fn find(lines: &[Value], from: usize, what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, l)| pred(l))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no {what} after line {from}: {lines:#?}"))
}

fn token_request(line: &Value, grant: &str) -> bool {
    line["http"] == "POST" && line["path"] == "/oauth2/token" && line["grant_type"] == grant
}

/// What both clients must have done, in this order.
async fn check_the_day(w: &World, lines: &[Value]) {
    let base = &w.server.url;
    let authorize: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i]["authorize"].is_string())
        .collect();
    assert_eq!(authorize.len(), 2, "asked for its person twice: {lines:#?}");

    // Discovery and registration, then the person.
    let prm = find(lines, 0, "protected resource metadata", |l| {
        l["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/.well-known/oauth-protected-resource"))
            && l["status"] == 200
    });
    let asm = find(lines, prm, "authorization server metadata", |l| {
        l["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/.well-known/oauth-authorization-server"))
            && l["status"] == 200
    });
    let registered = find(lines, asm, "registration", |l| {
        l["path"] == "/oauth2/register" && l["status"] == 201
    });
    assert!(registered < authorize[0], "{lines:#?}");
    let url = lines[authorize[0]]["authorize"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{base}/oauth2/authorize?")),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("resource="), "{url}");
    let callback = find(lines, authorize[0], "callback", |l| {
        l["callback"].is_object()
    });
    assert_eq!(lines[callback]["callback"]["iss"], json!(base), "RFC 9207");

    // Tokens, then the tools granted and a call.
    let code = find(lines, callback, "code exchange", |l| {
        token_request(l, "authorization_code")
    });
    assert_eq!(lines[code]["status"], 200, "{lines:#?}");
    let first = find(lines, code, "tokens", |l| l["tokens_saved"].is_object());
    let first = &lines[first]["tokens_saved"];
    assert!(first["refresh"].is_string(), "a refresh token: {first}");
    assert_eq!(first["expires_in"], 30, "{first}");
    let listed = find(lines, code, "tools/list", |l| l["op"] == "list_tools");
    let mut names: Vec<&str> = lines[listed]["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{lines:#?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["delete_everything", "echo"], "what Alice granted");
    let echoed = find(lines, listed, "echo", |l| l["name"] == "echo");
    assert_eq!(lines[echoed]["result"]["isError"], false, "{lines:#?}");
    assert!(
        lines[echoed].to_string().contains("through the"),
        "{lines:#?}"
    );

    // The token expires; the SDK refreshes it, no browser, and the call passes. The
    // refresh comes during the wait when the SDK holds the standalone GET stream (the
    // gateway closes it when its token expires; reopened with that token, it is
    // answered 401 and the SDK refreshes), or after it, on the call's 401.
    let waited = find(lines, echoed, "the wait", |l| l["waited"].is_number());
    let refresh = find(lines, echoed, "refresh", |l| {
        token_request(l, "refresh_token")
    });
    assert_eq!(lines[refresh]["status"], 200, "{lines:#?}");
    let renewed = find(lines, refresh, "refreshed tokens", |l| {
        l["tokens_saved"].is_object()
    });
    let renewed = &lines[renewed]["tokens_saved"];
    assert_ne!(renewed["access"], first["access"], "a new access token");
    assert_ne!(
        renewed["refresh"], first["refresh"],
        "a rotated refresh token"
    );
    let after = find(
        lines,
        refresh.max(waited),
        "the call after the refresh",
        |l| l["name"] == "echo",
    );
    assert_eq!(lines[after]["result"]["isError"], false, "{lines:#?}");
    assert!(lines[after].to_string().contains("after the refresh"));
    assert_eq!(
        lines[after]["asked_for_person"], 1,
        "no browser for a refresh"
    );
    assert!(after < authorize[1], "{lines:#?}");

    // The held call: the approval page, approved in the console, then the result.
    let asked = find(lines, after, "the approval page", |l| {
        l["asked"].is_string()
    });
    let page = lines[asked]["asked"].as_str().unwrap();
    assert!(
        page.starts_with(&format!("{base}/ui/approvals/apr_")),
        "{page}"
    );
    assert_eq!(lines[asked]["mode"], "url", "{lines:#?}");
    let done = find(lines, asked, "the held call's result", |l| {
        l["name"] == "delete_everything" && l["result"].is_object()
    });
    assert_eq!(lines[done]["result"]["isError"], false, "{lines:#?}");
    let approval = page.rsplit('/').next().unwrap();
    let seen = w.get(&format!("/v1/approvals/{approval}")).await;
    assert_eq!(seen["status"], "used", "{seen}");

    // Revoked: the refresh is refused and the client is sent back to its person.
    let revoked = find(lines, done, "the revocation", |l| {
        l["waiting_for"] == "revocation"
    });
    let refused = find(lines, revoked, "the refused refresh", |l| {
        token_request(l, "refresh_token")
    });
    assert_eq!(lines[refused]["status"], 400, "{lines:#?}");
    assert_eq!(lines[refused]["error"], "invalid_grant", "{lines:#?}");
    assert!(
        refused < authorize[1],
        "refused, then sent back: {lines:#?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["sent_back_to_authorization"], true, "{last}");
    assert!(last["result"].is_null(), "no call after revocation: {last}");
    // Every refresh before the revocation passed (the SDK may refresh again when the
    // renewed token's stream ends too); none after it.
    let mut refreshed = 0;
    for (i, line) in lines.iter().enumerate() {
        if token_request(line, "refresh_token") {
            let passed = line["status"] == 200;
            assert_eq!(passed, i < revoked, "refresh at line {i}: {lines:#?}");
            refreshed += usize::from(passed);
        }
    }

    // The server's side: a renewal in the ledger per refresh, the mandate revoked by Alice.
    let listed = w.get("/v1/mandates?status=revoked").await;
    let mandate = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let renewals = w
        .get(&format!("/v1/audit?mandate={mandate}&type=token.renewed"))
        .await;
    assert_eq!(
        renewals["items"].as_array().unwrap().len(),
        refreshed,
        "one renewal per refresh that passed: {renewals}"
    );
}

fn typescript_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/typescript")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_works_a_whole_day() {
    let w = world().await;
    let mut command = Command::new("python3");
    command
        .arg(common::python_dir().join("mcp_oauth_flow.py"))
        .arg(format!("{}/mcp/fx", w.server.url));
    let lines = run_flow(&w, command, "sdk-python").await;
    check_the_day(&w, &lines).await;
    // The 2026-07-28 client was asked through input_required: no JSON-RPC error at all.
    assert!(
        !lines.iter().any(|l| l["error"]["code"].is_number()),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_works_a_whole_day() {
    let dir = typescript_dir();
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").is_dir(),
        "the TypeScript SDK is not installed: run `npm ci --prefix crates/mandate/tests/typescript` (.ci/run does)"
    );
    let w = world().await;
    let mut command = Command::new("node");
    command
        .arg(dir.join("mcp_oauth_flow.mjs"))
        .arg(format!("{}/mcp/fx", w.server.url));
    let lines = run_flow(&w, command, "sdk-typescript").await;
    check_the_day(&w, &lines).await;
    // The SDK registered as its examples do (client_secret_post) and was registered public.
    let registered = lines
        .iter()
        .find(|l| l["registered"].is_object())
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(
        registered["registered"]["token_endpoint_auth_method"],
        "none"
    );
    assert_eq!(registered["registered"]["secret"], false);
    // A 2025-11-25 client: the held call came as URL elicitation (-32042).
    let held = lines
        .iter()
        .find(|l| l["name"] == "delete_everything" && l["error"].is_object())
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(held["error"]["code"], -32042, "{held}");
    // (The SDK's UrlElicitationRequiredError keeps only `data.elicitations`; the rest of
    // `data`, `reason: approval_required` among it, does not reach the application.)
    assert_eq!(
        held["error"]["type"], "UrlElicitationRequiredError",
        "{held}"
    );
}
