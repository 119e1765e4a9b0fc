#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Three replicas of `mandate serve` on one PostgreSQL database behind HAProxy (Debian's
//! `haproxy`, round robin, no stickiness), under a steady load of token requests,
//! gateway tool calls (plain ones, ones against a call budget, ones held for a person's
//! approval) and AuthZEN evaluations, while faults are injected one after another:
//!
//! 1. one replica is killed with SIGKILL and started again on the same address;
//! 2. PostgreSQL itself restarts (`pg_ctl restart -m fast` on a cluster the test made
//!    for itself with `initdb`, so that no other test loses its database);
//! 3. one replica's database connections fail for a few seconds: it reaches
//!    PostgreSQL through a TCP proxy of the test's own, which closes every open
//!    connection and refuses new ones until the fault ends.
//!
//! Afterwards, and while it runs:
//! - the chain verifies (`mandate audit verify --database-url`), and every token a
//!   client received has its `token.issued` event;
//! - every call the upstream received has an allowed `decision` event with its
//!   arguments' hash: nothing was forwarded without its durable decision;
//! - the budgeted tool was called at most the budget's number of times;
//! - every approval let exactly one call through, and the same call once more is held
//!   again;
//! - every revoked token is refused by every replica (asked directly, not through the
//!   balancer) once the revocation bound has passed;
//! - every error was a clean one: a JSON-RPC refusal or -32603, or 503 with
//!   `Retry-After` — never a 500 or a stack, never a request slower than the store's
//!   configured timeouts, and never a 401 or 403 (every credential of the load is live:
//!   a store that does not answer must not be told as a bad credential); a 502 from the
//!   balancer, or no answer at all, counts as clean only for requests in flight at a
//!   replica when it was killed.
//!
//! It prints what it did and counted: requests and errors by kind, recovery time per
//! fault. CI runs one round of the three faults; `MANDATE_SCALE_ROUNDS=5 cargo test -p
//! mandate --test scale_out -- --nocapture` runs more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate_demo::mcp_server::ToolSet;
use serde_json::{Value, json};

mod common;
#[path = "scale_out/parts.rs"]
mod parts;

use common::free_port;
use common::{JWT_BEARER, Server, jti_of};
use parts::{Balancer, Postgres, Toxic, Upstream};

/// Prints a step of the run with the time since the process started (the output is
/// the test's report; `--nocapture` shows it as it happens).
fn say(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    println!("[{:7.2}s] {what}", start.elapsed().as_secs_f64());
}

/// Calls the budgeted mandate allows.
const BUDGET: u64 = 40;
/// How long after a revocation was acknowledged every replica must refuse the token:
/// the revocation follower's poll (500 ms) behind a lost notification, or — for a
/// replica that cannot reach the database — the 1 s for which its memory may serve an
/// agent or mandate before it must read the store again, and fails.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);
/// Slower than this is a hang: the store's connection timeout (10 s) plus a margin.
const HANG: Duration = Duration::from_secs(15);
/// Quiet time after each fault, under load.
const CALM: Duration = Duration::from_secs(5);
/// Load workers.
const WORKERS: usize = 4;

// ---------------------------------------------------------------------------------------
// What the load saw.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Token,
    Call,
    Budget,
    Held,
    AuthZen,
    Revoke,
    Probe,
    Session,
}

#[derive(Default)]
struct Tally {
    /// (kind, outcome) → count; outcome `ok` or the error's class.
    counts: BTreeMap<(Kind, String), u64>,
    /// What must not happen, with when (seconds into the run).
    bad: Vec<String>,
    /// Calls a client saw succeed: tool and arguments.
    acknowledged: Vec<(String, Value)>,
    /// Tokens a client received.
    issued: Vec<String>,
    /// Tokens whose revocation was acknowledged, and when.
    revoked: Vec<(String, Instant)>,
    /// Approvals that let a call through.
    approvals_used: u64,
}

struct Load {
    start: Instant,
    tally: Mutex<Tally>,
    /// Periods in which a replica was killed: a 502 from the balancer is a request
    /// that was in flight there.
    kills: Mutex<Vec<(Instant, Instant)>>,
    stop: AtomicBool,
    nonce: AtomicU64,
}

impl Load {
    fn nonce(&self) -> String {
        format!("n{}", self.nonce.fetch_add(1, Ordering::Relaxed))
    }

    fn count(&self, kind: Kind, outcome: &str) {
        *self
            .tally
            .lock()
            .unwrap()
            .counts
            .entry((kind, outcome.to_owned()))
            .or_default() += 1;
    }

    fn bad(&self, kind: Kind, what: String) {
        let at = self.start.elapsed().as_secs_f64();
        self.count(kind, "BAD");
        self.tally
            .lock()
            .unwrap()
            .bad
            .push(format!("{at:.2}s {kind:?}: {what}"));
    }

    /// A request that got no (whole) answer: clean only when it was in flight at a
    /// replica as it was killed (nobody can answer it); a hang never is.
    fn failed(&self, kind: Kind, sent: Instant, e: String) {
        let cut =
            (e.starts_with("no answer") || e.starts_with("body cut")) && !e.contains("timed out");
        if cut && self.in_kill_window(sent) {
            self.count(kind, "no answer (in flight at the killed replica)");
        } else {
            self.bad(kind, e);
        }
    }

    fn in_kill_window(&self, sent: Instant) -> bool {
        self.kills
            .lock()
            .unwrap()
            .iter()
            .any(|(from, to)| sent + Duration::from_secs(1) >= *from && sent <= *to)
    }
}

/// An answer: HTTP status, whether it had `Retry-After`, the body.
struct Answer {
    status: u16,
    retry_after: bool,
    body: Value,
    text: String,
}

/// Sends `request`; `Err` is a failure to get any answer (or one slower than [`HANG`]).
async fn send(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let started = Instant::now();
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let text = response
        .text()
        .await
        .map_err(|e| format!("body cut: {e}"))?;
    if started.elapsed() > HANG {
        return Err(format!("answered {status} after {:?}", started.elapsed()));
    }
    Ok(Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}

/// The class of an error answer when it is a clean one, or why it is not.
fn clean_error(load: &Load, sent: Instant, a: &Answer) -> Result<String, String> {
    if a.text.contains("panicked")
        || a.text.contains("stack backtrace")
        || a.text.contains("RUST_BACKTRACE")
    {
        return Err(format!("{} with a stack: {}", a.status, a.text));
    }
    match a.status {
        // Every credential of the load is live: a 401 or 403 would be a failure told
        // as a refusal (a client would throw its credential away).
        401 | 403 => Err(format!("{} for a live credential: {}", a.status, a.text)),
        503 if a.retry_after => Ok("503".into()),
        502 | 504 if load.in_kill_window(sent) => {
            Ok(format!("{} (in flight at the killed replica)", a.status))
        }
        200 | 400 => {
            // A JSON-RPC error (the gateway) or an OAuth one (the token endpoint).
            if let Some(code) = a.body["error"]["code"].as_i64() {
                return match code {
                    -32603 => Ok("-32603".into()),
                    -32010 => Ok(format!(
                        "-32010 {}",
                        a.body["error"]["data"]["reason"].as_str().unwrap_or("?")
                    )),
                    _ => Err(format!("JSON-RPC error {code}: {}", a.text)),
                };
            }
            Err(format!("{}: {}", a.status, a.text))
        }
        _ => Err(format!(
            "{} (Retry-After: {}): {}",
            a.status, a.retry_after, a.text
        )),
    }
}

/// Records the outcome of one request of `kind`; the successful answer, if any.
fn judge(load: &Load, kind: Kind, sent: Instant, answer: Result<Answer, String>) -> Option<Answer> {
    match answer {
        Err(e) => {
            load.failed(kind, sent, e);
            None
        }
        Ok(a) if a.status == 200 && a.body.get("error").is_none() => {
            load.count(kind, "ok");
            Some(a)
        }
        Ok(a) => {
            match clean_error(load, sent, &a) {
                Ok(class) => load.count(kind, &class),
                Err(why) => load.bad(kind, why),
            }
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// The world.

struct World {
    pg: Postgres,
    db_url: String,
    _balancer: Balancer,
    replicas: Mutex<Vec<Option<Server>>>,
    ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    toxics: Vec<Toxic>,
    public: String,
    admin: String,
    alice_token: String,
    agent: String,
    key: mandate_jose::SigningKey,
    /// plain, budgeted, held-for-approval
    mandates: [String; 3],
    upstream: Arc<Upstream>,
    client: reqwest::Client,
}

impl World {
    fn start_replica(&self, i: usize) {
        let server = start_replica(&self.ports, &self.dirs, &self.toxics, &self.public, i);
        self.replicas.lock().unwrap()[i] = Some(server);
    }

    fn replica_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn assertion(&self) -> String {
        common::assertion(&self.public, &self.agent, &self.key)
    }

    fn token_request(&self, base: &str, mandate: &str) -> reqwest::RequestBuilder {
        let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
        let resource = format!("{}/mcp", self.public);
        self.client.post(format!("{base}/oauth2/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", self.assertion().as_str()),
            ("authorization_details", details.as_str()),
            ("resource", resource.as_str()),
        ])
    }

    fn tool_call(
        &self,
        base: &str,
        token: &str,
        tool: &str,
        arguments: &Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{base}/mcp/ops"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": tool, "arguments": arguments}}))
    }
}

fn start_replica(
    ports: &[u16],
    dirs: &[tempfile::TempDir],
    toxics: &[Toxic],
    public: &str,
    i: usize,
) -> Server {
    let db = format!("postgres://postgres@127.0.0.1:{}/mandate", toxics[i].port);
    Server::start_on(
        &format!("127.0.0.1:{}", ports[i]),
        dirs[i].path(),
        &["--database-url", &db],
        // HAProxy (`option forwardfor`) is the one proxy in front, on loopback.
        &[
            ("MANDATE_PUBLIC_URL", public),
            ("MANDATE_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
}

async fn setup() -> World {
    say("starting PostgreSQL (initdb, a cluster of this test's own)");
    let pg = Postgres::start();
    let admin_url = pg.url("postgres");
    let created = Command::new("psql")
        .args([admin_url.as_str(), "-qtAc", "CREATE DATABASE mandate"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut toxics = Vec::new();
    for _ in 0..3 {
        toxics.push(Toxic::start(pg.port).await);
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let balancer = Balancer::start(free_port(), &ports);
    say("starting three replicas behind HAProxy");
    let public = balancer.url.clone();
    // The first replica bootstraps the store (and writes the admin token); then the others.
    let first = start_replica(&ports, &dirs, &toxics, &public, 0);
    let (second, third) = std::thread::scope(|s| {
        let a = s.spawn(|| start_replica(&ports, &dirs, &toxics, &public, 1));
        let b = s.spawn(|| start_replica(&ports, &dirs, &toxics, &public, 2));
        (a.join().unwrap(), b.join().unwrap())
    });
    let admin = common::admin_token(dirs[0].path());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Through the balancer from here on; wait until it sees every replica.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 6 {
        assert!(
            Instant::now() < deadline,
            "the balancer never served the replicas"
        );
        match client.get(format!("{public}/healthz")).send().await {
            Ok(r) if r.status().is_success() => seen += 1,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    say("replicas serving through the balancer; registering the upstream, people, mandates");
    let upstream = Arc::new(Upstream::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let toolset: Arc<dyn ToolSet> = upstream.clone();
    tokio::spawn(mandate_demo::serve(
        listener,
        toolset,
        std::future::pending(),
    ));

    let post = |path: &str, token: &str, body: Value| {
        let (url, token, path) = (public.clone(), token.to_owned(), path.to_owned());
        async move {
            common::http(
                reqwest::Method::POST,
                format!("{url}{path}"),
                &token,
                Some(body),
            )
            .await
        }
    };
    let (status, body) = post(
        "/v1/tool-servers",
        &admin,
        json!({"name": "ops", "transport": {"kind": "mcp_http", "url": upstream_url}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, alice) = post(
        "/v1/humans",
        &admin,
        json!({"display_name": "Alice", "email": "alice@example.com"}),
    )
    .await;
    assert_eq!(status, 201, "{alice}");
    let alice = alice["id"].as_str().unwrap().to_owned();
    let (status, token) = post(
        &format!("/v1/humans/{alice}/tokens"),
        &admin,
        json!({"label": "approver"}),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let alice_token = token["token"].as_str().unwrap().to_owned();
    let key = mandate_jose::SigningKey::generate(mandate_jose::Alg::EdDSA, "k1".into()).unwrap();
    let (status, agent) = post(
        "/v1/agents",
        &admin,
        json!({"name": "ops-bot", "owner": alice, "credentials": {"jwks": [key.public_jwk().to_public_json()]}}),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap().to_owned();
    let expires = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let mut mandates = Vec::new();
    for (tool, extra) in [
        ("ops.note", json!({})),
        ("ops.spend", json!({"budgets": {"max_calls": BUDGET}})),
        ("ops.wire", json!({"approval": {"tiers": ["high_impact"]}})),
    ] {
        let mut terms = json!({
            "agent_id": agent, "human_id": alice, "intent": format!("Use {tool} under load"),
            "scope": {"tools": [{"tool": tool}]}, "data_ceiling": "internal",
            "mode": "execute", "expires_at": expires,
        });
        terms
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, m) = post("/v1/mandates", &admin, terms).await;
        assert_eq!(status, 201, "{m}");
        let id = m["id"].as_str().unwrap().to_owned();
        let (status, body) = post(
            &format!("/v1/mandates/{id}/consent"),
            &alice_token,
            json!({"decision": "granted"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        mandates.push(id);
    }
    // An operator policy set for the AuthZEN evaluations (kept in the store: every
    // replica picks it up).
    let (status, body) = common::http(
        reqwest::Method::PUT,
        format!("{public}/v1/policies"),
        &admin,
        Some(json!({
            "policies": [{"name": "docs.cedar", "text": "permit(principal == User::\"alice\", action == Action::\"read\", resource);"}],
            "schemas": [{"name": "docs.cedarschema", "text": "entity User; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };"}],
        })),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    // Every replica has the set before the load starts (they re-read it within a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in &ports {
        loop {
            let (status, answer) = common::http(
                reqwest::Method::POST,
                format!("http://127.0.0.1:{port}/access/v1/evaluation"),
                &admin,
                Some(
                    json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "read"},
                            "resource": {"type": "Doc", "id": "d1"}}),
                ),
            )
            .await;
            if status == 200 && answer["decision"] == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {port} never used the policy set: {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    World {
        db_url: pg.url("mandate"),
        pg,
        _balancer: balancer,
        replicas: Mutex::new(vec![Some(first), Some(second), Some(third)]),
        ports,
        dirs,
        toxics,
        public,
        admin,
        alice_token,
        agent,
        key,
        mandates: mandates.try_into().unwrap(),
        upstream,
        client,
    }
}

// ---------------------------------------------------------------------------------------
// The load.

async fn token(w: &World, load: &Load, base: &str, mandate: &str, kind: Kind) -> Option<String> {
    let sent = Instant::now();
    let answer = judge(load, kind, sent, send(w.token_request(base, mandate)).await)?;
    let token = answer.body["access_token"].as_str()?.to_owned();
    load.tally.lock().unwrap().issued.push(token.clone());
    Some(token)
}

/// One tool call with a fresh nonce: whether it passed, and the answer.
async fn call(
    w: &World,
    load: &Load,
    base: &str,
    token: &str,
    tool: &str,
    kind: Kind,
) -> (bool, Option<Answer>) {
    let arguments = json!({"nonce": load.nonce()});
    call_with(w, load, base, token, tool, &arguments, kind).await
}

async fn call_with(
    w: &World,
    load: &Load,
    base: &str,
    token: &str,
    tool: &str,
    arguments: &Value,
    kind: Kind,
) -> (bool, Option<Answer>) {
    let sent = Instant::now();
    let answer = match send(w.tool_call(base, token, tool, arguments)).await {
        Err(e) => {
            load.failed(kind, sent, e);
            return (false, None);
        }
        Ok(a) => a,
    };
    if answer.status == 200 && answer.body["result"].is_object() {
        load.count(kind, "ok");
        load.tally
            .lock()
            .unwrap()
            .acknowledged
            .push((format!("ops.{tool}"), arguments.clone()));
        return (true, Some(answer));
    }
    match clean_error(load, sent, &answer) {
        Ok(class) => load.count(kind, &class),
        Err(why) => load.bad(kind, why),
    }
    (false, Some(answer))
}

async fn authzen(w: &World, load: &Load, alice: bool) {
    let who = if alice { "alice" } else { "bob" };
    let request = w
        .client
        .post(format!("{}/access/v1/evaluation", w.public))
        .bearer_auth(&w.admin)
        .json(
            &json!({"subject": {"type": "User", "id": who}, "action": {"name": "read"},
                      "resource": {"type": "Doc", "id": "d1"}}),
        );
    let sent = Instant::now();
    if let Some(a) = judge(load, Kind::AuthZen, sent, send(request).await)
        && a.body["decision"] != json!(alice)
    {
        load.bad(Kind::AuthZen, format!("{who} read d1: {}", a.text));
    }
}

/// Held for approval, approved by Alice, passes once; the same call again is held anew.
async fn held(w: &World, load: &Load, token: &str) {
    let base = w.public.as_str();
    let arguments = json!({"nonce": load.nonce()});
    let (passed, answer) = call_with(w, load, base, token, "wire", &arguments, Kind::Held).await;
    if passed {
        load.bad(
            Kind::Held,
            format!("a high-impact call passed without approval: {arguments}"),
        );
        return;
    }
    let Some(approval) = answer.and_then(|a| {
        a.body["error"]["data"]["approval_id"]
            .as_str()
            .map(str::to_owned)
    }) else {
        return;
    };
    let request = w
        .client
        .post(format!("{base}/v1/approvals/{approval}/approve"))
        .bearer_auth(&w.alice_token)
        .json(&json!({"comment": "under load"}));
    let sent = Instant::now();
    if judge(load, Kind::Held, sent, send(request).await).is_none() {
        return;
    }
    let (passed, _) = call_with(w, load, base, token, "wire", &arguments, Kind::Held).await;
    if !passed {
        return;
    }
    load.tally.lock().unwrap().approvals_used += 1;
    let (again, _) = call_with(w, load, base, token, "wire", &arguments, Kind::Held).await;
    if again {
        load.bad(
            Kind::Held,
            format!("approval {approval} let a second call through"),
        );
    }
}

/// A fresh token, used once, revoked at the balancer.
async fn revoke(w: &World, load: &Load) {
    let base = w.public.as_str();
    let Some(token) = token(w, load, base, &w.mandates[0], Kind::Token).await else {
        return;
    };
    call(w, load, base, &token, "note", Kind::Call).await;
    let request = w
        .client
        .post(format!("{base}/oauth2/revoke"))
        .bearer_auth(&w.admin)
        .form(&[("token", token.as_str())]);
    let sent = Instant::now();
    if judge(load, Kind::Revoke, sent, send(request).await).is_some() {
        load.tally
            .lock()
            .unwrap()
            .revoked
            .push((token, Instant::now()));
    }
}

async fn worker(w: Arc<World>, load: Arc<Load>, n: usize) {
    let base = w.public.clone();
    let mut cycle = n;
    let mut plain: Option<String> = None;
    let mut budget: Option<String> = None;
    let mut held_token: Option<String> = None;
    while !load.stop.load(Ordering::Relaxed) {
        cycle += 1;
        if let Some(t) = token(&w, &load, &base, &w.mandates[0], Kind::Token).await {
            plain = Some(t);
        }
        if cycle.is_multiple_of(4) || budget.is_none() {
            budget = token(&w, &load, &base, &w.mandates[1], Kind::Token)
                .await
                .or(budget);
            held_token = token(&w, &load, &base, &w.mandates[2], Kind::Token)
                .await
                .or(held_token);
        }
        if let Some(t) = &plain {
            for _ in 0..3 {
                call(&w, &load, &base, t, "note", Kind::Call).await;
            }
        }
        if let Some(t) = &budget {
            call(&w, &load, &base, t, "spend", Kind::Budget).await;
        }
        authzen(&w, &load, cycle.is_multiple_of(2)).await;
        if cycle.is_multiple_of(3)
            && let Some(t) = &held_token
        {
            held(&w, &load, t).await;
        }
        if cycle.is_multiple_of(5) {
            revoke(&w, &load).await;
        }
    }
}

/// A 2025-06-18 client with a session, through the balancer: every request may land
/// on another replica, which resumes the session from its sealed id.
async fn session_worker(w: Arc<World>, load: Arc<Load>) {
    let base = w.public.clone();
    let mut session: Option<String> = None;
    let mut token: Option<String> = None;
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        if n.is_multiple_of(20) || token.is_none() {
            token = self::token(&w, &load, &base, &w.mandates[0], Kind::Session)
                .await
                .or(token);
        }
        n += 1;
        let Some(t) = &token else { continue };
        let (method, params) = match &session {
            None => (
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "scale-out", "version": "1"}}),
            ),
            Some(_) => (
                "tools/call",
                json!({"name": "note", "arguments": {"nonce": load.nonce()}}),
            ),
        };
        let mut request = w
            .client
            .post(format!("{base}/mcp/ops"))
            .bearer_auth(t)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "id": n, "method": method, "params": params}));
        if let Some(id) = &session {
            request = request.header("mcp-session-id", id);
        }
        let sent = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                load.failed(Kind::Session, sent, format!("no answer: {e}"));
                continue;
            }
        };
        let opened = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status().as_u16();
        if status == 404 && session.is_some() {
            load.bad(
                Kind::Session,
                "a replica did not resume the session (404)".into(),
            );
            session = None;
            continue;
        }
        let retry_after = response.headers().contains_key("retry-after");
        let text = response.text().await.unwrap_or_default();
        let answer = Ok(Answer {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        });
        if sent.elapsed() > HANG {
            load.bad(
                Kind::Session,
                format!("answered {status} after {:?}", sent.elapsed()),
            );
        } else if judge(&load, Kind::Session, sent, answer).is_some() {
            if session.is_none() {
                session = opened;
            } else {
                let arguments = params["arguments"].clone();
                load.tally
                    .lock()
                    .unwrap()
                    .acknowledged
                    .push(("ops.note".into(), arguments));
            }
        }
    }
}

/// Every revoked token, once its bound has passed, refused by every replica asked
/// directly (a replica that is down does not answer, which is fine).
async fn check_revocations(w: &World, load: &Load, checked: &mut HashSet<String>, all: bool) {
    let due: Vec<String> = load
        .tally
        .lock()
        .unwrap()
        .revoked
        .iter()
        .filter(|(t, at)| (all || !checked.contains(t)) && at.elapsed() >= REVOCATION_BOUND)
        .map(|(t, _)| t.clone())
        .collect();
    for token in due {
        for i in 0..3 {
            let request = w
                .client
                .post(format!("{}/mcp/ops", w.replica_url(i)))
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}));
            if let Ok(a) = send(request).await
                && a.status == 200
                && a.body["result"].is_object()
            {
                load.bad(
                    Kind::Revoke,
                    format!(
                        "replica {i} accepted a token revoked {REVOCATION_BOUND:?}+ ago: {}",
                        a.text
                    ),
                );
            }
        }
        checked.insert(token);
    }
}

/// How long until a tool call through replica `i` (asked directly) passes again.
async fn recovery(w: &World, load: &Load, i: usize, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let base = w.replica_url(i);
        if let Some(t) = token(w, load, &base, &w.mandates[0], Kind::Probe).await
            && call(w, load, &base, &t, "note", Kind::Probe).await.0
        {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "replica {i} did not recover within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_behind_haproxy_survive_kills_database_restarts_and_cut_connections() {
    let rounds: u32 = std::env::var("MANDATE_SCALE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let w = Arc::new(setup().await);
    registrations_are_limited_across_replicas(&w).await;
    let load = Arc::new(Load {
        start: Instant::now(),
        tally: Mutex::new(Tally::default()),
        kills: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        nonce: AtomicU64::new(0),
    });
    let mut workers: Vec<_> = (0..WORKERS)
        .map(|n| tokio::spawn(worker(w.clone(), load.clone(), n)))
        .collect();
    workers.push(tokio::spawn(session_worker(w.clone(), load.clone())));
    let checker = {
        let (w, load) = (w.clone(), load.clone());
        tokio::spawn(async move {
            let mut checked = HashSet::new();
            while !load.stop.load(Ordering::Relaxed) {
                check_revocations(&w, &load, &mut checked, false).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let mut recoveries: Vec<(String, Duration)> = Vec::new();
    say(&format!(
        "load running: {WORKERS} workers and a session client"
    ));
    tokio::time::sleep(CALM).await;
    for round in 0..rounds {
        // 1. SIGKILL a replica, start it again on its address.
        let victim = (round as usize % 3).max(1);
        say(&format!("round {round}: SIGKILL replica {victim}"));
        let killed_at = Instant::now();
        load.kills
            .lock()
            .unwrap()
            .push((killed_at, killed_at + Duration::from_secs(2)));
        if let Some(server) = w.replicas.lock().unwrap()[victim].take() {
            server.kill();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = Instant::now();
        {
            let w = w.clone();
            tokio::task::spawn_blocking(move || w.start_replica(victim))
                .await
                .unwrap();
        }
        say(&format!("round {round}: replica {victim} started again"));
        let took = recovery(&w, &load, victim, restarted).await;
        say(&format!(
            "round {round}: replica {victim} serving after {took:.2?}"
        ));
        recoveries.push((
            format!("round {round}: replica {victim} killed, restarted: serving again"),
            took,
        ));
        tokio::time::sleep(CALM).await;

        // 2. PostgreSQL restarts.
        say(&format!("round {round}: restarting PostgreSQL"));
        let restarted = Instant::now();
        {
            let w = w.clone();
            tokio::task::spawn_blocking(move || w.pg.restart())
                .await
                .unwrap();
        }
        let back = Instant::now();
        say(&format!("round {round}: PostgreSQL back"));
        let mut slowest = Duration::ZERO;
        for i in 0..3 {
            slowest = slowest.max(recovery(&w, &load, i, back).await);
        }
        recoveries.push((
            format!(
                "round {round}: PostgreSQL restarted (down for {:?}): every replica serving again",
                back.duration_since(restarted)
            ),
            slowest,
        ));
        tokio::time::sleep(CALM).await;

        // 3. One replica's database connections fail for 4 s.
        let victim = 2 - (round as usize % 2);
        say(&format!(
            "round {round}: cutting replica {victim}'s database connections for 4 s"
        ));
        w.toxics[victim].set_cut(true);
        tokio::time::sleep(Duration::from_secs(4)).await;
        w.toxics[victim].set_cut(false);
        let healed = Instant::now();
        let took = recovery(&w, &load, victim, healed).await;
        recoveries.push((
            format!("round {round}: replica {victim}'s database cut for 4 s: serving again"),
            took,
        ));
        tokio::time::sleep(CALM).await;
    }
    say("stopping the load");
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    checker.await.unwrap();
    let ran = load.start.elapsed();
    // Every revocation, after its bound, once more on every replica.
    tokio::time::sleep(REVOCATION_BOUND).await;
    let mut checked = HashSet::new();
    check_revocations(&w, &load, &mut checked, true).await;

    // What the ledger holds.
    let verify = Command::new(common::BIN)
        .args(["audit", "verify", "--json", "--database-url", &w.db_url])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(
        verify.status.success(),
        "the chain does not verify: {report}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let events = ledger(&w.db_url);
    let issued: HashSet<&str> = events
        .iter()
        .filter(|(kind, _)| kind == "token.issued")
        .filter_map(|(_, data)| data["jti"].as_str())
        .collect();
    let allowed: HashMap<&str, u64> = events
        .iter()
        .filter(|(kind, data)| kind == "decision" && data["allowed"] == true)
        .filter_map(|(_, data)| data["arguments_hash"].as_str())
        .fold(HashMap::new(), |mut m, h| {
            *m.entry(h).or_default() += 1;
            m
        });

    let tally = load.tally.lock().unwrap();
    let received = w.upstream.received.lock().unwrap().clone();
    let mut problems = tally.bad.clone();
    for token in &tally.issued {
        let jti = jti_of(token);
        if !issued.contains(jti.as_str()) {
            problems.push(format!(
                "token {jti} was issued but its token.issued event is missing"
            ));
        }
    }
    for (tool, arguments) in tally.acknowledged.iter().map(|(t, a)| (t.as_str(), a)) {
        if !received
            .iter()
            .any(|(t, a)| format!("ops.{t}") == tool && a == arguments)
        {
            problems.push(format!(
                "{tool} {arguments} was answered but the upstream never saw it"
            ));
        }
    }
    let mut per_call: HashMap<(String, String), u64> = HashMap::new();
    for (tool, arguments) in &received {
        let hash = mandate_core::calls::arguments_hash(arguments);
        if !allowed.contains_key(hash.as_str()) {
            problems.push(format!(
                "{tool} {arguments} was forwarded without an allowed decision event"
            ));
        }
        *per_call
            .entry((tool.clone(), arguments["nonce"].to_string()))
            .or_default() += 1;
    }
    for ((tool, nonce), n) in &per_call {
        if *n > 1 {
            problems.push(format!(
                "{tool} with nonce {nonce} reached the upstream {n} times"
            ));
        }
    }
    let spent = received.iter().filter(|(t, _)| t == "spend").count() as u64;
    if spent > BUDGET {
        problems.push(format!(
            "the budget of {BUDGET} calls was exceeded: {spent}"
        ));
    }
    let wired = received.iter().filter(|(t, _)| t == "wire").count() as u64;
    if wired < tally.approvals_used {
        problems.push(format!(
            "{} approved calls passed but the upstream saw {wired}",
            tally.approvals_used
        ));
    }

    println!(
        "scale-out: 3 replicas behind HAProxy, one PostgreSQL; {rounds} round(s) of faults; load ran {ran:.1?}"
    );
    for ((kind, outcome), n) in &tally.counts {
        println!("  {kind:?} {outcome}: {n}");
    }
    println!(
        "  tokens received {}, calls acknowledged {}, forwarded {}, budgeted calls forwarded {spent} of {BUDGET}, approvals used {}, revocations {}, audit events {}",
        tally.issued.len(),
        tally.acknowledged.len(),
        received.len(),
        tally.approvals_used,
        tally.revoked.len(),
        events.len()
    );
    for (what, took) in &recoveries {
        println!("  recovery: {what} after {took:.2?}");
    }
    println!("  chain: {}", report.trim());
    let calls_ok = tally
        .counts
        .get(&(Kind::Call, "ok".to_owned()))
        .copied()
        .unwrap_or(0);
    let spend_ok = tally
        .counts
        .get(&(Kind::Budget, "ok".to_owned()))
        .copied()
        .unwrap_or(0);
    assert!(
        calls_ok > 0 && spend_ok > 0 && tally.approvals_used > 0 && !tally.revoked.is_empty(),
        "the load did too little to judge"
    );
    assert!(
        spend_ok <= BUDGET,
        "{spend_ok} budgeted calls passed, more than {BUDGET}"
    );
    drop(tally);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        replica_logs(&w)
    );
}

/// Dynamic client registrations through the balancer (round robin: each replica sees
/// a third of them) are counted once for all replicas: 20 per minute per client
/// address, then 429. The address is the one HAProxy reports in `X-Forwarded-For`:
/// a client naming another address before it (here the client shares the proxy's
/// loopback address, so what it writes is the first untrusted hop) is counted apart.
async fn registrations_are_limited_across_replicas(w: &World) {
    say("registrations: 25 through the balancer from one address");
    let register = |forwarded: Option<&'static str>| {
        let mut request = w
            .client
            .post(format!("{}/oauth2/register", w.public))
            .json(&json!({"redirect_uris": ["http://127.0.0.1:9/callback"]}));
        if let Some(address) = forwarded {
            request = request.header("x-forwarded-for", address);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(register(None).await);
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    println!("  registrations: {created} created, {limited} refused (429) of 25");
    assert_eq!((created, limited), (20, 5), "{statuses:?}");
    assert_eq!(register(Some("198.51.100.7")).await, 201);
}

/// Every audit event: its kind and its `data`.
fn ledger(url: &str) -> Vec<(String, Value)> {
    let out = Command::new("psql")
        .args([
            url,
            "-qtAc",
            "SELECT kind || ' ' || doc FROM audit_events ORDER BY tenant_id, seq",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (kind, doc) = line.split_once(' ')?;
            let doc: Value = serde_json::from_str(doc).ok()?;
            Some((kind.to_owned(), doc["data"].clone()))
        })
        .collect()
}

/// What the running replicas logged (warnings and errors), for a failure's message.
fn replica_logs(w: &World) -> String {
    let mut replicas = w.replicas.lock().unwrap();
    replicas
        .iter_mut()
        .enumerate()
        .map(|(i, r)| {
            let log = r.as_mut().map(Server::drain_log).unwrap_or_default();
            let mut worst: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let skip = worst.len().saturating_sub(40);
            worst.drain(..skip);
            format!(
                "--- replica {i}, its last warnings and errors\n{}",
                worst.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
