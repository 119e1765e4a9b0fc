#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Rollback end to end: the real binary in front of the demo bank (served in-process,
//! so its balances can be read). An agent's transfers under a mandate are undone
//! newest first through the gateway; a compensation that fails (insufficient funds)
//! stops the rollback, and running it again continues without repeating a step; every
//! step is in the ledger, chained to the call it undoes. Who may roll back, what
//! cannot be rolled back, and concurrent rollbacks of one call.

mod common;

use std::sync::Arc;

use common::{Actors, Server, admin_token, created, http};
use mandate_demo::bank::Bank;
use reqwest::Method;
use serde_json::{Value, json};

struct World {
    server: Server,
    admin: String,
    who: Actors,
    bank: Arc<Bank>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bank_url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let bank = Arc::new(Bank::new());
        tokio::spawn(mandate_demo::serve(
            listener,
            bank.clone(),
            std::future::pending(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &[]);
        let admin = admin_token(dir.path());
        let bank_server = created(
            &server,
            "/v1/tool-servers",
            &admin,
            json!({"name": "bank", "transport": {"kind": "mcp_http", "url": bank_url}}),
        )
        .await;
        created(
            &server,
            "/v1/tools",
            &admin,
            json!({
                "server_id": bank_server,
                "name": "transfer",
                "annotations": {"readOnlyHint": false, "destructiveHint": true, "openWorldHint": false},
                "amount_argument": "/amount_cents",
                "compensation": mandate_demo::bank::transfer_compensation(),
            }),
        )
        .await;
        let who = common::human_and_agent(&server, &admin).await;
        World {
            server,
            admin,
            who,
            bank,
            _dir: dir,
        }
    }

    async fn mandate(&self, tools: &[&str]) -> String {
        self.mandate_with_budget(tools, 1_000_000).await
    }

    async fn mandate_with_budget(&self, tools: &[&str], max_amount: u64) -> String {
        let tools: Vec<Value> = tools.iter().map(|t| json!({"tool": t})).collect();
        common::consented_mandate(
            &self.server,
            &self.admin,
            &self.who,
            json!({
                "intent": "move money around for the rollback test",
                "scope": {"tools": tools},
                "data_ceiling": "internal",
                "mode": "execute",
                "budgets": {"max_calls": 100, "max_amount": max_amount, "currency": "USD"},
            }),
        )
        .await
    }

    async fn token(&self, mandate: &str) -> String {
        common::mcp_token(&self.server, &self.who, mandate).await
    }

    /// A `tools/call` through the gateway (MCP 2026-07-28, stateless): the JSON-RPC answer.
    async fn call(&self, token: &str, name: &str, arguments: Value) -> Value {
        common::stateless_call(&self.server.url, token, name, arguments).await
    }

    async fn transfer(&self, token: &str, from: &str, to: &str, cents: i64) {
        let answer = self
            .call(
                token,
                "bank.transfer",
                json!({"from": from, "to": to, "amount_cents": cents}),
            )
            .await;
        assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    }

    async fn rollback(&self, token: &str, mandate: &str, body: Option<Value>) -> (u16, Value) {
        http(
            Method::POST,
            format!("{}/v1/mandates/{mandate}/rollback", self.server.url),
            token,
            body,
        )
        .await
    }

    /// The mandate's events of one type, oldest first.
    async fn events(&self, mandate: &str, kind: &str) -> Vec<Value> {
        let (status, page) = http(
            Method::GET,
            format!(
                "{}/v1/audit?mandate={mandate}&type={kind}&limit=500",
                self.server.url
            ),
            &self.admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().unwrap().clone()
    }

    /// The mandate's `tool.called` events once there are `n` (outcomes are appended
    /// without waiting for the ledger): at most 5 s.
    async fn called(&self, mandate: &str, n: usize) -> Vec<Value> {
        let started = std::time::Instant::now();
        loop {
            let called = self.events(mandate, "tool.called").await;
            if called.len() >= n || started.elapsed().as_secs() >= 5 {
                assert_eq!(called.len(), n, "{called:?}");
                return called;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn count(&self, from: &str, to: &str, cents: i64) -> usize {
        self.bank
            .transfers()
            .iter()
            .filter(|t| t.from == from && t.to == to && t.amount_cents == cents)
            .count()
    }

    fn balance(&self, account: &str) -> i64 {
        self.bank.balance(account).unwrap()
    }
}

fn statuses(report: &Value) -> Vec<(u64, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["call_seq"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Three transfers and an email under one mandate; another mandate drains the
/// account the middle transfer credited. The rollback undoes the newest transfer,
/// fails on the middle one (insufficient funds) and stops; once the money is back,
/// running it again continues with the middle and the oldest, never repeating the
/// first. Every step's events (the rollback decision and `rollback.step`) name the
/// original call's event, which carries the compensation; the chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_multi_step_rollback_stops_at_a_failure_and_resumes_without_repeating() {
    let w = World::start().await;
    let m = w.mandate(&["bank.transfer", "bank.send_email"]).await;
    let token = w.token(&m).await;
    let before: std::collections::BTreeMap<String, i64> = w.bank.balances();

    w.transfer(&token, "alice-checking", "bob-checking", 1_000)
        .await;
    w.transfer(&token, "alice-checking", "carol-checking", 2_000)
        .await;
    let email = w
        .call(
            &token,
            "bank.send_email",
            json!({"to": "accountant@example.com", "subject": "hi", "body": "numbers"}),
        )
        .await;
    assert_eq!(email["result"]["isError"], json!(false), "{email}");
    w.transfer(&token, "alice-checking", "bob-checking", 3_000)
        .await;

    // Carol spends what the middle transfer gave her, under another mandate.
    let other = w.mandate(&["bank.transfer"]).await;
    let other_token = w.token(&other).await;
    w.transfer(&other_token, "carol-checking", "bob-checking", 2_400)
        .await;
    assert_eq!(w.balance("carol-checking"), 100);

    // Each transfer's outcome carries its compensation; the email is irreversible.
    let called = w.called(&m, 4).await;
    let transfers: Vec<&Value> = called
        .iter()
        .filter(|e| e["data"]["tool"] == "bank.transfer")
        .collect();
    assert_eq!(
        transfers[0]["data"]["compensation"],
        json!({"server": "bank", "tool": "transfer", "arguments": {
            "from": "bob-checking", "to": "alice-checking", "amount_cents": 1_000, "memo": "tx-0001"
        }})
    );
    let seqs: Vec<u64> = transfers
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let email_event = called
        .iter()
        .find(|e| e["data"]["tool"] == "bank.send_email")
        .unwrap();
    assert_eq!(email_event["data"]["irreversible"], json!(true));
    assert!(email_event["data"].get("compensation").is_none());

    // First run: the newest is undone, the middle fails, the oldest is not run.
    let (status, first) = w.rollback(&w.who.human_token, &m, None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["complete"], json!(false), "{first}");
    assert_eq!(
        statuses(&first),
        vec![
            (seqs[2], "done".into()),
            (seqs[1], "failed".into()),
            (seqs[0], "not_run".into())
        ],
        "{first}"
    );
    assert!(
        first["steps"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("insufficient funds"),
        "{first}"
    );
    assert_eq!(
        first["irreversible"][0]["call_seq"], email_event["seq"],
        "{first}"
    );
    assert_eq!(w.count("bob-checking", "alice-checking", 3_000), 1);
    assert_eq!(w.count("carol-checking", "alice-checking", 2_000), 0);
    assert_eq!(w.count("bob-checking", "alice-checking", 1_000), 0);

    // The money comes back to Carol; the second run continues where the first stopped.
    w.transfer(&other_token, "bob-checking", "carol-checking", 2_400)
        .await;
    // This time by the CLI (`mandate rollback`, exit 0 once complete).
    let second =
        tokio::task::block_in_place(|| w.server.cli(&w.who.human_token, &["rollback", &m]));
    assert_eq!(second["complete"], json!(true), "{second}");
    assert_eq!(
        statuses(&second),
        vec![
            (seqs[2], "already_done".into()),
            (seqs[1], "done".into()),
            (seqs[0], "done".into())
        ]
    );
    assert_eq!(
        w.count("bob-checking", "alice-checking", 3_000),
        1,
        "repeated"
    );
    assert_eq!(w.count("carol-checking", "alice-checking", 2_000), 1);
    assert_eq!(w.count("bob-checking", "alice-checking", 1_000), 1);
    // Every account as it was (the email moved no money).
    assert_eq!(w.bank.balances(), before);

    // A third run repeats nothing (the CLI's table says so).
    let n = w.bank.transfers().len();
    let (ok, table, err) =
        tokio::task::block_in_place(|| w.server.cli_text(&w.who.human_token, &["rollback", &m]));
    assert!(ok, "{table}\n{err}");
    assert_eq!(table.matches("already_done").count(), 3, "{table}");
    assert!(table.contains("rollback complete"), "{table}");
    assert!(
        table.contains("bank.send_email"),
        "the irreversible email: {table}"
    );
    assert_eq!(w.bank.transfers().len(), n);

    // The ledger: four steps (one failed), each chained to the call it undoes.
    let by_seq = |seq: u64| called.iter().find(|e| e["seq"] == seq).unwrap();
    let steps = w.events(&m, "rollback.step").await;
    let seen: Vec<(u64, bool)> = steps
        .iter()
        .map(|e| {
            (
                e["data"]["call_seq"].as_u64().unwrap(),
                e["data"]["succeeded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (seqs[2], true),
            (seqs[1], false),
            (seqs[1], true),
            (seqs[0], true)
        ]
    );
    for step in &steps {
        let original = by_seq(step["data"]["call_seq"].as_u64().unwrap());
        assert_eq!(step["data"]["call_hash"], original["hash"]);
        assert!(step["seq"].as_u64() > original["seq"].as_u64());
        assert_eq!(step["actor"], json!([format!("human:{}", w.who.human)]));
        assert_eq!(step["data"]["tool"], "bank.transfer");
    }
    // Each compensating call was decided as a rollback on Alice's authority.
    let rollback_decisions: Vec<Value> = w
        .events(&m, "decision")
        .await
        .into_iter()
        .filter(|e| e["data"].get("rollback_of").is_some())
        .collect();
    assert_eq!(rollback_decisions.len(), 4, "{rollback_decisions:?}");
    for d in &rollback_decisions {
        assert_eq!(d["data"]["allowed"], json!(true), "{d}");
        assert_eq!(d["actor"][0], json!(format!("human:{}", w.who.human)));
        assert!(seqs.contains(&d["data"]["rollback_of"].as_u64().unwrap()));
    }
    let (status, verified) = http(
        Method::GET,
        format!("{}/v1/audit/verify", w.server.url),
        &w.admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["result"], json!("intact"), "{verified}");
}

/// Who may roll back and what: a stranger and the agent get 404, a denied call and a
/// call of another mandate cannot be rolled back, hostile bodies are refused; an
/// admin may; concurrent rollbacks of one call run its compensation once.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_party_rolls_back_only_forwarded_calls_and_each_step_runs_once() {
    let w = World::start().await;
    let m = w.mandate(&["bank.transfer"]).await;
    let token = w.token(&m).await;
    w.transfer(&token, "alice-checking", "bob-checking", 500)
        .await;
    // Out of scope: denied, never forwarded.
    let denied = w
        .call(
            &token,
            "bank.delete_files",
            json!({"paths": ["/shared/handbook.md"]}),
        )
        .await;
    assert!(denied.get("error").is_some(), "{denied}");
    let other = w.mandate(&["bank.transfer"]).await;
    let other_token = w.token(&other).await;
    w.transfer(&other_token, "alice-savings", "bob-checking", 700)
        .await;

    // A stranger (another person with an API token) is told the mandate does not exist.
    let stranger = created(
        &w.server,
        "/v1/humans",
        &w.admin,
        json!({"display_name": "Mallory", "email": "mallory@example.com"}),
    )
    .await;
    let (status, issued) = http(
        Method::POST,
        format!("{}/v1/humans/{stranger}/tokens", w.server.url),
        &w.admin,
        Some(json!({"label": "test"})),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let stranger_token = issued["token"].as_str().unwrap();
    let (status, body) = w.rollback(stranger_token, &m, None).await;
    assert_eq!(status, 404, "{body}");
    // The agent's task token is no API credential.
    let (status, _) = w.rollback(&token, &m, None).await;
    assert_eq!(status, 401);
    assert_eq!(w.count("bob-checking", "alice-checking", 500), 0);

    // Not a forwarded call of this mandate: the denied call's decision, another
    // mandate's call, an event that does not exist.
    let decisions = w.events(&m, "decision").await;
    let denied_seq = decisions
        .iter()
        .find(|e| e["data"]["allowed"] == json!(false))
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let other_call = w.called(&other, 1).await[0]["seq"].as_u64().unwrap();
    for seq in [denied_seq, other_call, 999_999, 0] {
        let (status, body) = w
            .rollback(&w.who.human_token, &m, Some(json!({"call": seq})))
            .await;
        assert_eq!(status, 422, "{seq}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("not a call forwarded"),
            "{body}"
        );
    }
    for body in [
        json!({"call": -1}),
        json!({"call": "1"}),
        json!({"call": 1, "everything": true}),
        json!({"call": 1.5}),
    ] {
        let (status, answer) = w.rollback(&w.who.human_token, &m, Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {answer}");
    }
    assert_eq!(w.count("bob-checking", "alice-savings", 700), 0);

    // Concurrent rollbacks of the one call (Alice's and the admin's): it runs once.
    let call = w.called(&m, 1).await[0]["seq"].as_u64().unwrap();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..8 {
        let url = format!("{}/v1/mandates/{m}/rollback", w.server.url);
        let token = if i % 2 == 0 {
            w.who.human_token.clone()
        } else {
            w.admin.clone()
        };
        runs.spawn(
            async move { http(Method::POST, url, &token, Some(json!({"call": call}))).await },
        );
    }
    let mut done = 0;
    while let Some(run) = runs.join_next().await {
        let (status, report) = run.unwrap();
        assert_eq!(status, 200, "{report}");
        let status = report["steps"][0]["status"].as_str().unwrap().to_owned();
        assert!(
            ["done", "already_done", "in_progress"].contains(&status.as_str()),
            "{report}"
        );
        done += usize::from(status == "done");
    }
    assert_eq!(done, 1);
    assert_eq!(w.count("bob-checking", "alice-checking", 500), 1);
    let steps = w.events(&m, "rollback.step").await;
    assert_eq!(steps.len(), 1, "{steps:?}");
}

/// The catalog refuses a compensation naming a tool it does not know, malformed
/// pointers and unknown fields, with problem+json naming the field; `null` declares
/// a tool irreversible again.
#[tokio::test(flavor = "multi_thread")]
async fn compensations_are_validated_strictly() {
    let w = World::start().await;
    let (status, tools) = http(
        Method::GET,
        format!("{}/v1/tools", w.server.url),
        &w.admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{tools}");
    let transfer = tools["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "transfer")
        .unwrap();
    assert_eq!(
        transfer["compensation"],
        mandate_demo::bank::transfer_compensation()
    );
    let id = transfer["id"].as_str().unwrap();
    let patch = |body: Value| {
        let url = format!("{}/v1/tools/{id}", w.server.url);
        let admin = w.admin.clone();
        async move {
            let response = reqwest::Client::new()
                .patch(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, response.json::<Value>().await.unwrap())
        }
    };
    let cases = [
        (
            json!({"tool": "bank.refund", "arguments": {}}),
            "not in the catalog",
        ),
        (
            json!({"tool": "nowhere.refund", "arguments": {}}),
            "not in the catalog",
        ),
        (json!({"tool": "refund", "arguments": {}}), "server.tool"),
        (
            json!({"tool": "bank.transfer", "arguments": {"from": {"argument": "to"}}}),
            "JSON pointer",
        ),
        (
            json!({"tool": "bank.transfer", "arguments": {"from": {"argument": "/a~9"}}}),
            "JSON pointer",
        ),
        (
            json!({"tool": "bank.transfer", "arguments": {"from": {"result": format!("/{}", "x".repeat(300))}}}),
            "JSON pointer",
        ),
        (
            json!({"tool": "bank.transfer", "arguments": {"x": {"value": "y".repeat(5_000)}}}),
            "at most",
        ),
    ];
    for (compensation, expect) in cases {
        let (status, kind, body) = patch(json!({"compensation": compensation})).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(kind.as_deref(), Some("application/problem+json"));
        assert!(
            body["detail"].as_str().unwrap().contains(expect),
            "{expect}: {body}"
        );
    }
    for hostile in [
        json!({"compensation": {"tool": "bank.transfer", "arguments": {}, "extra": 1}}),
        json!({"compensation": {"tool": "bank.transfer", "arguments": {"a": {"header": "/x"}}}}),
        json!({"compensation": "bank.transfer"}),
    ] {
        let (status, _, body) = patch(hostile.clone()).await;
        assert_eq!(status, 422, "{hostile}: {body}");
    }
    // Unchanged by all of that; then declared irreversible.
    let (status, _, body) = patch(json!({"description": "moves money"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["compensation"],
        mandate_demo::bank::transfer_compensation()
    );
    let (status, _, body) = patch(json!({"compensation": null})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("compensation").is_none(), "{body}");
}

/// A compensating call is decided like any call: it spends the mandate's budget (one
/// that does not cover it stops the rollback, recorded as a refused rollback decision;
/// the CLI exits non-zero and says so), and under a revoked mandate it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn compensations_meet_budgets_and_fail_closed_like_any_call() {
    let w = World::start().await;
    let m = w.mandate_with_budget(&["bank.transfer"], 1_500).await;
    let token = w.token(&m).await;
    w.transfer(&token, "alice-checking", "bob-checking", 1_000)
        .await;
    w.called(&m, 1).await;
    let (ok, table, _) =
        tokio::task::block_in_place(|| w.server.cli_text(&w.who.human_token, &["rollback", &m]));
    assert!(!ok, "an incomplete rollback exits non-zero: {table}");
    assert!(
        table.contains("failed") && table.contains("rollback stopped"),
        "{table}"
    );
    assert_eq!(w.count("bob-checking", "alice-checking", 1_000), 0);
    let refused: Vec<Value> = w
        .events(&m, "decision")
        .await
        .into_iter()
        .filter(|e| e["data"].get("rollback_of").is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["data"]["allowed"], json!(false));
    assert!(
        refused[0]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("budget"),
        "{refused:?}"
    );

    // Revoked: its calls are refused, the compensation too (fail closed).
    let (status, body) = http(
        Method::POST,
        format!("{}/v1/mandates/{m}/revoke", w.server.url),
        &w.who.human_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, report) = w.rollback(&w.who.human_token, &m, None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["complete"], json!(false), "{report}");
    assert_eq!(report["steps"][0]["status"], "failed", "{report}");
    assert_eq!(w.count("bob-checking", "alice-checking", 1_000), 0);
}

/// A minimal browser for the console: cookies kept by name, no redirects followed.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: std::collections::BTreeMap::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> (u16, String, String) {
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = request
            .header("cookie", jar.join("; "))
            .send()
            .await
            .unwrap();
        for set in response.headers().get_all("set-cookie") {
            let (pair, _) = set.to_str().unwrap().split_once(';').unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location, response.text().await.unwrap())
    }

    async fn get(&mut self, path: &str) -> String {
        let request = self.client.get(format!("{}{path}", self.base));
        let (status, _, page) = self.send(request).await;
        assert_eq!(status, 200, "{path}: {page}");
        page
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let request = self.client.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    fn hidden(page: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = page.find(&marker).unwrap() + marker.len();
        page[at..at + page[at..].find('"').unwrap()].to_owned()
    }
}

/// The console's "Roll back" button on the mandate page: shown once a reversible call
/// was made, it runs the rollback on the signed-in person's authority (refused
/// without the session's CSRF token), and the timeline shows the step.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_rolls_a_mandate_back_from_its_page() {
    let w = World::start().await;
    let m = w.mandate(&["bank.transfer"]).await;
    let (status, _) = http(
        Method::PUT,
        format!("{}/v1/humans/{}/password", w.server.url, w.who.human),
        &w.admin,
        Some(json!({"password": "a long console password"})),
    )
    .await;
    assert_eq!(status, 204);
    let mut alice = Browser::new(&w.server.url);
    let login = alice.get("/ui/login?next=/ui/").await;
    let csrf = Browser::hidden(&login, "csrf");
    let (status, _, page) = alice
        .post(
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("next", "/ui/"),
                ("email", "alice@example.com"),
                ("password", "a long console password"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    let path = format!("/ui/mandates/{m}");
    assert!(
        !alice.get(&path).await.contains("Roll back"),
        "nothing to undo yet"
    );

    let token = w.token(&m).await;
    w.transfer(&token, "alice-checking", "bob-checking", 700)
        .await;
    w.called(&m, 1).await;
    let page = alice.get(&path).await;
    assert!(page.contains("Roll back"), "{page}");
    let csrf = Browser::hidden(&page, "csrf");
    let (status, _, _) = alice
        .post(&format!("{path}/rollback"), &[("csrf", "forged")])
        .await;
    assert_eq!(status, 403);
    assert_eq!(w.count("bob-checking", "alice-checking", 700), 0);
    let (status, location, page) = alice
        .post(&format!("{path}/rollback"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "{page}");
    assert!(location.ends_with("?done=rolled_back"), "{location}");
    assert_eq!(w.count("bob-checking", "alice-checking", 700), 1);
    let page = alice.get(&location).await;
    assert!(page.contains("Rolled back"), "{page}");
    assert!(page.contains("rollback.step"), "the timeline: {page}");
}
