#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Access reviews end to end: the real binary in front of the demo bank (served
//! in-process). An agent whose mandate covers five tools calls two of them and tries
//! three it may not (one out of scope, one not in the catalog with a formula for a
//! name, one read it was never given); the review reports exactly the unused scope and
//! the denied attempts, the drift alert they raise, the credential its scope reaches,
//! the person whose data it touched. A finding marked stays marked and is in the
//! ledger; the CSV export parses, has one row per finding and no formula cell; hostile
//! input is refused with a clear 4xx; a person reviews only the agents they own or
//! sponsor; revoking from the review ends the mandate. The CLI reads the same review.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{Actors, Server, admin_token, created, http};
use mandate_demo::bank::Bank;
use reqwest::Method;
use serde_json::{Value, json};

/// A tool name that a spreadsheet would run as a formula.
const FORMULA_TOOL: &str = "=HYPERLINK(\"http://evil.example/\",\"x\")";

struct World {
    server: Server,
    admin: String,
    who: Actors,
    _bank: Arc<Bank>,
    _dir: tempfile::TempDir,
    /// Dropped after the server (fields drop in order).
    _db: Option<common::Database>,
}

impl World {
    /// On the embedded SQLite store.
    async fn start() -> World {
        World::start_on(None).await
    }

    /// On PostgreSQL (a fresh database of its own) when `db` names one.
    async fn start_on(db: Option<common::Database>) -> World {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bank_url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let bank = Arc::new(Bank::new());
        tokio::spawn(mandate_demo::serve(
            listener,
            bank.clone(),
            std::future::pending(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mandate.toml");
        std::fs::write(&file, "[gateway]\ndrift_threshold = 3\n").unwrap();
        let mut flags = vec!["--config".to_owned(), file.to_str().unwrap().to_owned()];
        if let Some(db) = &db {
            flags.extend(["--database-url".to_owned(), db.url.clone()]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::start(dir.path(), &flags);
        let admin = admin_token(dir.path());
        let bank_server = created(
            &server,
            "/v1/tool-servers",
            &admin,
            json!({"name": "bank", "transport": {"kind": "mcp_http", "url": bank_url}}),
        )
        .await;
        for (name, read_only) in [
            ("get_balance", true),
            ("transfer", false),
            ("list_files", true),
            ("send_email", false),
            ("delete_files", false),
        ] {
            created(
                &server,
                "/v1/tools",
                &admin,
                json!({
                    "server_id": bank_server,
                    "name": name,
                    "annotations": {"readOnlyHint": read_only, "destructiveHint": !read_only, "openWorldHint": false},
                }),
            )
            .await;
        }
        // A server whose calls the broker would give a vault secret: never called here.
        let crm = created(
            &server,
            "/v1/tool-servers",
            &admin,
            json!({
                "name": "crm",
                "transport": {"kind": "mcp_http", "url": "http://127.0.0.1:9/mcp"},
                "credential_ref": "secret:crm-token",
            }),
        )
        .await;
        created(
            &server,
            "/v1/tools",
            &admin,
            json!({"server_id": crm, "name": "lookup", "annotations": {"readOnlyHint": true}}),
        )
        .await;
        let who = common::human_and_agent(&server, &admin).await;
        World {
            server,
            admin,
            who,
            _bank: bank,
            _dir: dir,
            _db: db,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        http(Method::GET, self.url(path), token, None).await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        http(Method::POST, self.url(path), token, Some(body)).await
    }

    /// A `tools/call` through the gateway (MCP 2026-07-28, stateless): the JSON-RPC answer.
    async fn call(&self, token: &str, name: &str, arguments: Value) -> Value {
        common::stateless_call(&self.server.url, token, name, arguments).await
    }

    /// The review as `token` sees it (`query` without the leading `?`).
    async fn review(&self, token: &str, query: &str) -> Value {
        let (status, body) = self.get(token, &format!("/v1/reviews?{query}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The raw answer of a review request with these headers.
    async fn raw(&self, token: &str, query: &str, accept: Option<&str>) -> (u16, String, String) {
        let mut request = reqwest::Client::new()
            .get(self.url(&format!("/v1/reviews?{query}")))
            .bearer_auth(token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, response.text().await.unwrap())
    }

    /// A person with an API token: (id, token).
    async fn person(&self, name: &str) -> (String, String) {
        let id = created(
            &self.server,
            "/v1/humans",
            &self.admin,
            json!({"display_name": name, "email": format!("{}@example.com", name.to_lowercase())}),
        )
        .await;
        let (status, token) = self
            .post(
                &self.admin,
                &format!("/v1/humans/{id}/tokens"),
                json!({"label": "t"}),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        (id, token["token"].as_str().unwrap().to_owned())
    }
}

/// The agent named `name` in a review.
fn agent<'r>(review: &'r Value, name: &str) -> &'r Value {
    review["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name} in {review}"))
}

fn names(review: &Value) -> BTreeSet<String> {
    review["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The findings of an agent's review as (kind, subject), and their ids.
fn findings(agent: &Value) -> Vec<(String, String, String)> {
    agent["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// RFC 4180: rows of cells (quoted cells may hold commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => {
                assert!(cell.is_empty(), "a quote inside an unquoted cell: {text}");
                quoted = true;
            }
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("a bare LF ends a row: {text}"),
            (false, c) => cell.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut cell));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(
        !quoted && cell.is_empty() && row.is_empty(),
        "unterminated: {text}"
    );
    rows
}

#[tokio::test]
async fn the_review_reports_unused_scope_and_denied_attempts_exactly() {
    reports_exactly(World::start().await).await;
}

#[tokio::test]
async fn the_review_reports_exactly_on_postgresql_too() {
    let db = common::Database::create("mandate_reviews");
    reports_exactly(World::start_on(Some(db)).await).await;
}

/// The scenario of the module's documentation, on whichever store `w` runs.
async fn reports_exactly(w: World) {
    let scope = [
        "bank.get_balance",
        "bank.transfer",
        "bank.list_files",
        "bank.send_email",
        "crm.lookup",
    ];
    let mandate = common::consented_mandate(
        &w.server,
        &w.admin,
        &w.who,
        json!({
            "intent": "pay the rent for the review test",
            "scope": {"tools": scope.iter().map(|t| json!({"tool": t})).collect::<Vec<_>>()},
            "data_ceiling": "internal",
            "mode": "execute",
            "budgets": {"max_calls": 100, "max_amount": 1_000_000, "currency": "USD"},
        }),
    )
    .await;
    let token = common::mcp_token(&w.server, &w.who, &mandate).await;

    // Before any call: everything in scope is unused, nothing denied.
    let before = w.review(&w.admin, "").await;
    let helper = agent(&before, "helper");
    assert_eq!(strings(&helper["unused_scope"]).len(), 5, "{helper}");
    assert_eq!(helper["denied"]["count"], 0);

    // Two tools used (three allowed calls), three attempts refused.
    for _ in 0..2 {
        let answer = w
            .call(
                &token,
                "bank.get_balance",
                json!({"account": "alice-checking"}),
            )
            .await;
        assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    }
    let answer = w
        .call(
            &token,
            "bank.transfer",
            json!({"from": "alice-checking", "to": "alice-savings", "amount_cents": 100}),
        )
        .await;
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    for (name, arguments) in [
        (
            "bank.delete_files",
            json!({"paths": ["/home/alice/todo.txt"]}),
        ),
        ("bank.read_file", json!({"path": "/home/alice/todo.txt"})),
        (FORMULA_TOOL, json!({})),
    ] {
        let answer = w.call(&token, name, arguments).await;
        assert!(
            answer.get("error").is_some(),
            "{name} was not refused: {answer}"
        );
    }

    // The drift alert (threshold 3) is written within a second of the third refusal.
    let started = std::time::Instant::now();
    let review = loop {
        let review = w.review(&w.admin, "days=7").await;
        if agent(&review, "helper")["drift_alerts"]["count"] == 1 || started.elapsed().as_secs() > 5
        {
            break review;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(review["days"], 7);
    let helper = agent(&review, "helper");
    assert_eq!(helper["owner"]["name"], "Alice");
    assert_eq!(helper["mandates"].as_array().unwrap().len(), 1);
    assert_eq!(helper["mandates"][0]["id"], mandate.as_str());
    assert_eq!(helper["mandates"][0]["status"], "active");
    let mut in_scope: Vec<&str> = scope.to_vec();
    in_scope.sort_unstable();
    assert_eq!(strings(&helper["scope"]), in_scope);
    assert_eq!(
        helper["tools_used"],
        json!([
            {"tool": "bank.get_balance", "calls": 2},
            {"tool": "bank.transfer", "calls": 1},
        ])
    );
    assert_eq!(
        strings(&helper["unused_scope"]),
        ["bank.list_files", "bank.send_email", "crm.lookup"]
    );
    assert_eq!(helper["denied"]["count"], 3, "{helper}");
    let latest: BTreeSet<String> = helper["denied"]["latest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tool"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        latest,
        BTreeSet::from([
            "bank.delete_files".to_owned(),
            "bank.read_file".to_owned(),
            FORMULA_TOOL.to_owned(),
        ])
    );
    assert!(
        helper["denied"]["latest"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["out_of_scope"] == true && d["mandate_id"] == mandate.as_str())
    );
    assert_eq!(helper["drift_alerts"]["count"], 1, "{helper}");
    assert_eq!(
        helper["drift_alerts"]["latest"][0]["mandate_id"],
        mandate.as_str()
    );
    assert_eq!(
        helper["approvals"],
        json!({"asked": 0, "given": 0, "denied": 0, "pending": 0, "expired": 0})
    );
    assert_eq!(
        helper["credentials"],
        json!([{"server": "crm", "kind": "secret", "name": "crm-token", "stored": false, "via": ["crm.lookup"]}])
    );
    assert_eq!(helper["humans_touched"].as_array().unwrap().len(), 1);
    assert_eq!(helper["humans_touched"][0]["name"], "Alice");
    assert_eq!(helper["humans_touched"][0]["calls"], 3);
    let mut found: Vec<(String, String)> = findings(helper)
        .into_iter()
        .map(|(k, s, _)| (k, s))
        .collect();
    found.sort();
    let mut expected: Vec<(String, String)> = [
        ("denied_attempts", "bank.delete_files"),
        ("denied_attempts", "bank.read_file"),
        ("denied_attempts", FORMULA_TOOL),
        ("drift_alert", mandate.as_str()),
        ("unused_scope", "bank.list_files"),
        ("unused_scope", "bank.send_email"),
        ("unused_scope", "crm.lookup"),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
    .collect();
    expected.sort();
    assert_eq!(found, expected);
    // Finding ids are the same in the next report.
    let again = w.review(&w.admin, "days=7").await;
    assert_eq!(findings(agent(&again, "helper")), findings(helper));

    // Marking a finding: kept in later reports, in the ledger.
    let unused_email = findings(helper)
        .into_iter()
        .find(|(_, s, _)| s == "bank.send_email")
        .unwrap()
        .2;
    let (status, mark) = w
        .post(
            &w.who.human_token,
            &format!("/v1/reviews/findings/{unused_email}"),
            json!({"status": "accepted_risk", "comment": "=cmd|' /C calc'!A0 keeps email for later", "days": 7}),
        )
        .await;
    assert_eq!(status, 200, "{mark}");
    assert_eq!(mark["status"], "accepted_risk");
    assert_eq!(mark["marked_by"], format!("human:{}", w.who.human));
    let later = w.review(&w.admin, "").await;
    let marked = agent(&later, "helper")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == unused_email.as_str())
        .unwrap()
        .clone();
    assert_eq!(marked["mark"]["status"], "accepted_risk", "{marked}");
    assert_eq!(
        marked["mark"]["comment"],
        "=cmd|' /C calc'!A0 keeps email for later"
    );
    let (status, audit) = w
        .get(&w.admin, "/v1/audit?type=review.finding_marked")
        .await;
    assert_eq!(status, 200, "{audit}");
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["data"]["finding_id"], unused_email.as_str());
    assert_eq!(events[0]["data"]["status"], "accepted_risk");
    assert_eq!(events[0]["data"]["subject"], "bank.send_email");
    assert_eq!(events[0]["agent_id"], w.who.agent.as_str());
    assert_eq!(
        events[0]["actor"],
        json!([format!("human:{}", w.who.human)])
    );
    // Marked again: the latest mark wins, both are in the ledger.
    let (status, _) = w
        .post(
            &w.admin,
            &format!("/v1/reviews/findings/{unused_email}"),
            json!({"status": "remediated"}),
        )
        .await;
    assert_eq!(status, 200);
    let later = w.review(&w.admin, "").await;
    let helper_later = agent(&later, "helper");
    let mark = &helper_later["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == unused_email.as_str())
        .unwrap()["mark"];
    assert_eq!(mark["status"], "remediated");
    assert!(mark.get("comment").is_none(), "{mark}");
    let (_, audit) = w
        .get(&w.admin, "/v1/audit?type=review.finding_marked")
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2);

    // CSV: one row per finding, every cell safe for a spreadsheet.
    for (query, accept) in [("format=csv", None), ("", Some("text/csv"))] {
        let (status, kind, text) = w.raw(&w.admin, query, accept).await;
        assert_eq!(status, 200, "{text}");
        assert!(kind.starts_with("text/csv"), "{kind}");
        let rows = parse_csv(&text);
        let header = &rows[0];
        assert_eq!(header[0], "agent_id");
        assert!(rows.iter().all(|r| r.len() == header.len()), "{rows:?}");
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let helper_rows: Vec<&Vec<String>> = rows[1..]
            .iter()
            .filter(|r| r[col("agent_name")] == "helper")
            .collect();
        assert_eq!(helper_rows.len(), 7, "{text}");
        let ids: BTreeSet<&str> = helper_rows
            .iter()
            .map(|r| r[col("finding_id")].as_str())
            .collect();
        let expected_ids: BTreeSet<String> = findings(helper_later)
            .into_iter()
            .map(|(_, _, id)| id)
            .collect();
        assert_eq!(ids, expected_ids.iter().map(String::as_str).collect());
        for row in &rows {
            for cell in row {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@']),
                    "formula cell {cell:?} in {text}"
                );
            }
        }
        let formula = helper_rows
            .iter()
            .find(|r| {
                r[col("finding_kind")] == "denied_attempts"
                    && r[col("finding_subject")].contains("HYPERLINK")
            })
            .unwrap();
        assert_eq!(formula[col("finding_subject")], format!("'{FORMULA_TOOL}"));
        let email = helper_rows
            .iter()
            .find(|r| r[col("finding_subject")] == "bank.send_email")
            .unwrap();
        assert_eq!(email[col("mark_status")], "remediated");
    }
    // An earlier comment's formula, marked again with it: neutralised too.
    let (status, _) = w
        .post(
            &w.admin,
            &format!("/v1/reviews/findings/{unused_email}"),
            json!({"status": "acknowledged", "comment": "@SUM(A1:A9)"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, text) = w.raw(&w.admin, "format=csv", None).await;
    assert!(text.contains(",'@SUM(A1:A9)\r\n"), "{text}");

    // The CLI reads the same review, as JSON, a table and CSV.
    let cli = w.server.cli(&w.admin, &["review", "--days", "7"]);
    assert_eq!(
        strings(&agent(&cli, "helper")["unused_scope"]),
        ["bank.list_files", "bank.send_email", "crm.lookup"]
    );
    let (ok, table, err) = w.server.cli_text(&w.admin, &["review"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("helper") && table.contains("unused_scope"),
        "{table}"
    );
    let (ok, csv, err) = w.server.cli_text(&w.admin, &["review", "--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(parse_csv(&csv).len(), 8, "{csv}");
    let drift = findings(helper_later)
        .into_iter()
        .find(|(k, _, _)| k == "drift_alert")
        .unwrap()
        .2;
    let (ok, out, err) = w.server.cli_text(
        &w.admin,
        &[
            "review",
            "mark",
            &drift,
            "--status",
            "acknowledged",
            "--comment",
            "seen",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("acknowledged"), "{out}");
    let later = w.review(&w.admin, "").await;
    assert!(
        agent(&later, "helper")["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == drift.as_str() && f["mark"]["status"] == "acknowledged")
    );

    // Revoking from the review: the mandate ends as any revocation does.
    let (status, done) = w
        .post(
            &w.who.human_token,
            &format!("/v1/reviews/agents/{}/revoke", w.who.agent),
            json!({"reason": "unused email scope"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["revoked"], json!([mandate]));
    assert_eq!(done["agent_disabled"], false);
    let (_, m) = w.get(&w.admin, &format!("/v1/mandates/{mandate}")).await;
    assert_eq!(m["status"], "revoked");
    assert_eq!(m["end_reason"], "unused email scope");
    // A person may not disable the agent; an admin may.
    let (status, body) = w
        .post(
            &w.who.human_token,
            &format!("/v1/reviews/agents/{}/revoke", w.who.agent),
            json!({"disable_agent": true}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, done) = w
        .post(
            &w.admin,
            &format!("/v1/reviews/agents/{}/revoke", w.who.agent),
            json!({"disable_agent": true}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["revoked"], json!([]));
    assert_eq!(done["agent_disabled"], true);
    let review = w.review(&w.admin, "").await;
    let helper = agent(&review, "helper");
    assert_eq!(helper["status"], "disabled");
    assert_eq!(helper["mandates"][0]["status"], "revoked");
    let (_, audit) = w.get(&w.admin, "/v1/audit?type=agent.updated").await;
    assert_eq!(audit["items"][0]["data"]["via"], "access_review");
}

#[tokio::test]
async fn hostile_input_is_refused_clearly() {
    let w = World::start().await;
    for days in ["0", "366", "-1", "abc", "1.5", "99999999999999999999999"] {
        let (status, body) = w.get(&w.admin, &format!("/v1/reviews?days={days}")).await;
        assert_eq!(status, 400, "days={days}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("from 1 to 365"),
            "{body}"
        );
    }
    let (status, body) = w.get(&w.admin, "/v1/reviews?format=xlsx").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`json` or `csv`"),
        "{body}"
    );
    let (status, body) = w.get(&w.admin, "/v1/reviews?agent=nope").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = w.get(&w.admin, "/v1/reviews?color=red").await;
    assert_eq!(status, 400);
    let (status, kind, _) = w.raw(&w.admin, "format=json", Some("text/csv")).await;
    assert_eq!((status, kind.as_str()), (200, "application/json"));

    // Unknown finding ids, a bad status, a bad window.
    let (status, body) = w
        .post(
            &w.admin,
            "/v1/reviews/findings/fnd_000000000000000000000000",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("finding"),
        "{body}"
    );
    let long = "x".repeat(5_000);
    let (status, body) = w
        .post(
            &w.admin,
            &format!("/v1/reviews/findings/{long}"),
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().len() < 300, "{body}");
    let (status, _) = w
        .post(
            &w.admin,
            "/v1/reviews/findings/fnd_0",
            json!({"status": "ignored"}),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = w
        .post(
            &w.admin,
            "/v1/reviews/findings/fnd_0",
            json!({"status": "acknowledged", "days": 0}),
        )
        .await;
    assert_eq!(status, 400);
    // Revoking for an unknown agent, or another agent's mandate.
    let (status, _) = w
        .post(&w.admin, "/v1/reviews/agents/nope/revoke", json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .post(
            &w.admin,
            &format!(
                "/v1/reviews/agents/{}/revoke",
                "agt_01970000000070008000000000000000"
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_person_reviews_only_the_agents_they_own_or_sponsor() {
    let w = World::start().await;
    let (bob, bob_token) = w.person("Bob").await;
    let (carol, carol_token) = w.person("Carol").await;
    let bobs = created(
        &w.server,
        "/v1/agents",
        &w.admin,
        json!({"name": "bob-bot", "owner": bob, "sponsors": [carol]}),
    )
    .await;
    // An admin reviews every agent; Alice her own; Carol the one she sponsors.
    assert_eq!(
        names(&w.review(&w.admin, "").await),
        BTreeSet::from(["helper".to_owned(), "bob-bot".to_owned()])
    );
    assert_eq!(
        names(&w.review(&w.who.human_token, "").await),
        BTreeSet::from(["helper".to_owned()])
    );
    let carols = w.review(&carol_token, "").await;
    assert_eq!(names(&carols), BTreeSet::from(["bob-bot".to_owned()]));
    assert_eq!(agent(&carols, "bob-bot")["sponsors"][0]["name"], "Carol");
    assert_eq!(agent(&carols, "bob-bot")["owner"]["name"], "Bob");
    // Another person's agent is not found, by id or through a finding.
    let (status, _) = w
        .get(&w.who.human_token, &format!("/v1/reviews?agent={bobs}"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .post(
            &w.who.human_token,
            &format!("/v1/reviews/agents/{bobs}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    // Sponsors change with the agent: Alice sponsors bob-bot, Carol no longer does.
    let (status, agent_now) = http(
        Method::PATCH,
        w.url(&format!("/v1/agents/{bobs}")),
        &w.admin,
        Some(json!({"sponsors": [w.who.human]})),
    )
    .await;
    assert_eq!(status, 200, "{agent_now}");
    assert!(names(&w.review(&carol_token, "").await).is_empty());
    assert_eq!(
        names(&w.review(&w.who.human_token, "").await),
        BTreeSet::from(["helper".to_owned(), "bob-bot".to_owned()])
    );
    // Hostile sponsors: the owner, twice, unknown.
    for sponsors in [
        json!([bob]),
        json!([carol, carol]),
        json!(["hum_01970000000070008000000000000000"]),
    ] {
        let (status, body) = http(
            Method::PATCH,
            w.url(&format!("/v1/agents/{bobs}")),
            &w.admin,
            Some(json!({"sponsors": sponsors})),
        )
        .await;
        assert_eq!(status, 422, "{sponsors}: {body}");
    }
    // The CLI sets sponsors on create and replaces them on an agent.
    let made = w.server.cli(
        &w.admin,
        &[
            "agent",
            "create",
            "--name",
            "carol-bot",
            "--owner",
            &carol,
            "--sponsor",
            &bob,
        ],
    );
    assert_eq!(made["sponsors"], json!([bob]));
    let carol_bot = made["id"].as_str().unwrap().to_owned();
    assert!(names(&w.review(&bob_token, "").await).contains("carol-bot"));
    let changed = w.server.cli(&w.admin, &["agent", "sponsors", &carol_bot]);
    assert_eq!(changed["sponsors"], json!([]));
    assert!(!names(&w.review(&bob_token, "").await).contains("carol-bot"));

    // Bob's own review; an agent may not read reviews.
    assert_eq!(
        names(&w.review(&bob_token, "").await),
        BTreeSet::from(["bob-bot".to_owned()])
    );
    let (status, token) = w
        .post(
            &w.admin,
            &format!("/v1/agents/{}/tokens", w.who.agent),
            json!({"label": "t"}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let (status, _) = w.get(token["token"].as_str().unwrap(), "/v1/reviews").await;
    assert_eq!(status, 403);
}
