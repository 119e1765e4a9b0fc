#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The console on a large data set, in a real browser (Debian's chromium through
//! playwright-core) against the real binary and the demo bank: two dozen agents of
//! three people, each under its own budgeted mandate, make some 1 500 tool calls through
//! the gateway — reads, transfers that spend the budget, transfers held for approval,
//! refused calls that raise drift alerts — a few thousand ledger events in all. Then:
//!
//! - the overview (an administrator's) draws the activity, every agent and mandate by
//!   name, and a burn-down per active mandate, and its numbers are exactly what the
//!   agents did; a person's overview shows their own agents and no one else's;
//! - every console page renders on this data set (a screenshot of each);
//! - a person with the keyboard only reaches the overview, changes the window, opens
//!   the numbers, and follows a mandate, the focus drawn at every stop.
//!
//! Screenshots: `target/tmp/screenshots/overview-*`.

use std::sync::Arc;

use common::browser::Browser;
use common::{Actors, Server, admin_token, created, http, stateless_call as call};
use mandate_demo::bank::Bank;
use reqwest::Method;
use serde_json::json;

mod common;

const PASSWORD: &str = "a long console password";
const AGENTS: usize = 24;
const READS: usize = 60;
const TRANSFERS: usize = 8;
const REFUSED: usize = 2;
/// Agents whose transfers need a person's approval (the first few).
const HELD_AGENTS: usize = 4;
const CENTS: u64 = 125;

struct Agent {
    name: String,
    owner: usize,
    mandate: String,
    intent: String,
    held: bool,
}

/// One agent's work: reads, transfers (alternating directions, so no account runs
/// dry), and calls it may not make.
async fn work(url: String, token: String, held: bool, i: usize) {
    for n in 0..READS {
        let answer = call(
            &url,
            &token,
            "bank.get_balance",
            json!({"account": "alice-checking"}),
        )
        .await;
        assert_eq!(
            answer["result"]["isError"],
            json!(false),
            "read {n}: {answer}"
        );
    }
    for n in 0..TRANSFERS {
        let (from, to) = if n % 2 == 0 {
            ("alice-checking", "bob-checking")
        } else {
            ("bob-checking", "alice-checking")
        };
        let answer = call(
            &url,
            &token,
            "bank.transfer",
            json!({"from": from, "to": to, "amount_cents": CENTS, "memo": format!("a{i}-t{n}")}),
        )
        .await;
        if held {
            assert!(
                answer["result"]["isError"] != json!(false)
                    || answer["result"]["resultType"] == json!("input_required"),
                "a held transfer did not go through: {answer}"
            );
        } else {
            assert_eq!(
                answer["result"]["isError"],
                json!(false),
                "transfer {n}: {answer}"
            );
        }
    }
    for _ in 0..REFUSED {
        let answer = call(
            &url,
            &token,
            "bank.delete_files",
            json!({"path": "/home/alice"}),
        )
        .await;
        assert!(
            answer.get("error").is_some() || answer["result"]["isError"] == json!(true),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_and_every_page_on_a_large_data_set_with_the_keyboard_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(mandate_demo::serve(
        listener,
        Arc::new(Bank::new()),
        std::future::pending(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mandate.toml");
    std::fs::write(&file, format!("[gateway]\ndrift_threshold = {REFUSED}\n")).unwrap();
    let server = Server::start(dir.path(), &["--config", file.to_str().unwrap()]);
    let admin = admin_token(dir.path());
    let bank = created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "bank", "transport": {"kind": "mcp_http", "url": bank_url}}),
    )
    .await;
    for (name, read_only, amount) in [
        ("get_balance", true, false),
        ("transfer", false, true),
        ("delete_files", false, false),
    ] {
        let mut tool = json!({
            "server_id": bank,
            "name": name,
            "annotations": {"readOnlyHint": read_only, "destructiveHint": !read_only, "openWorldHint": false},
        });
        if amount {
            tool["amount_argument"] = json!("/amount_cents");
        }
        created(&server, "/v1/tools", &admin, tool).await;
    }

    // Three people, each owning eight agents; an operator who reviews them all.
    let people = ["Alice Archer", "Bruno Baker", "Chen Cooper"];
    let mut humans = Vec::new();
    for (n, name) in people.iter().enumerate() {
        let id = created(
            &server,
            "/v1/humans",
            &admin,
            json!({"display_name": name, "email": format!("p{n}@example.com")}),
        )
        .await;
        let (status, token) = http(
            Method::POST,
            format!("{}/v1/humans/{id}/tokens", server.url),
            &admin,
            Some(json!({"label": "test"})),
        )
        .await;
        assert_eq!(status, 201, "{token}");
        common::set_password(&server, &admin, &id, PASSWORD);
        humans.push((id, token["token"].as_str().unwrap().to_owned()));
    }
    let operator = created(
        &server,
        "/v1/humans",
        &admin,
        json!({"display_name": "Olivia Operator", "email": "olivia@example.com", "groups": ["mandate-admins"]}),
    )
    .await;
    common::set_password(&server, &admin, &operator, PASSWORD);

    let mut agents = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..AGENTS {
        let owner = i % people.len();
        let first_name = people[owner].split(' ').next().unwrap().to_lowercase();
        let name = format!("books-{i:02}-{first_name}");
        let key =
            mandate_jose::SigningKey::generate(mandate_jose::Alg::EdDSA, "k1".into()).unwrap();
        let agent = created(
            &server,
            "/v1/agents",
            &admin,
            json!({"name": name, "owner": humans[owner].0, "credentials": {"jwks": [key.public_jwk().to_public_json()]}}),
        )
        .await;
        let who = Actors {
            human: humans[owner].0.clone(),
            human_token: humans[owner].1.clone(),
            agent,
            key,
        };
        let held = i < HELD_AGENTS;
        let intent = format!("Bookkeeping task {i:02}");
        let mut terms = json!({
            "intent": intent,
            "scope": {"tools": [{"tool": "bank.get_balance"}, {"tool": "bank.transfer"}]},
            "data_ceiling": "internal",
            "mode": "execute",
            "budgets": {"max_calls": 500, "max_amount": 50_000, "currency": "USD"},
        });
        if held {
            terms["approval"] = json!({"tiers": ["high_impact"]});
        }
        let mandate = common::consented_mandate(&server, &admin, &who, terms).await;
        let token = common::mcp_token(&server, &who, &mandate).await;
        jobs.push(tokio::spawn(work(server.url.clone(), token, held, i)));
        agents.push(Agent {
            name,
            owner,
            mandate,
            intent,
            held,
        });
        // At most a few agents at once: the machine is shared with the rest of the suite.
        if jobs.len() == 6 {
            for job in jobs.drain(..) {
                job.await.unwrap();
            }
        }
    }
    for job in jobs {
        job.await.unwrap();
    }

    // What the agents did, counted from the ledger by the API, to compare with the page.
    let held = agents.iter().filter(|a| a.held).count();
    let calls = AGENTS * READS + (AGENTS - held) * TRANSFERS;
    let denials = AGENTS * REFUSED;
    let (status, verified) = http(
        Method::GET,
        format!("{}/v1/audit/verify", server.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["result"], json!("intact"), "{verified}");
    let events = verified["events"].as_u64().unwrap();
    assert!(events >= 3_000, "a large data set: {events} events");

    let mut b = Browser::open_patient(
        &server.url,
        "overview-admin",
        std::time::Duration::from_secs(60),
    );
    b.sign_in("olivia@example.com", PASSWORD);
    b.goto("/ui/overview");
    b.see("By agent");
    let text = b.text();
    assert!(
        text.contains(&format!("{calls} calls, {denials} denials")),
        "{text}"
    );
    // Each held transfer asked once; each agent's refusals raised one drift alert.
    assert!(
        text.contains(&format!(
            "{} approvals asked, {AGENTS} drift alerts.",
            held * TRANSFERS
        )),
        "{text}"
    );
    for a in &agents {
        assert!(text.contains(&a.name), "{} is named: {text}", a.name);
        assert!(text.contains(&a.intent), "{} is named: {text}", a.intent);
    }
    // Pictures: the activity, a calls and a denials line per agent and per mandate, a
    // burn-down per active mandate (each has a budget).
    assert_eq!(b.count("svg.chart:not(.burn)"), 1);
    assert_eq!(b.count("svg.spark"), (2 * 2 * AGENTS) as u64);
    assert_eq!(b.count("svg.burn"), AGENTS as u64);
    assert_eq!(
        b.count("svg[role=img][aria-label]"),
        (1 + 4 * AGENTS + AGENTS) as u64
    );
    // The budgets in their unit: an agent that moved 8 × $1.25 has $490.00 of $500.00.
    assert!(text.contains("10.00 USD"), "{text}");
    assert!(text.contains("490.00 USD"), "{text}");
    for days in [1, 30] {
        b.goto(&format!("/ui/overview?days={days}"));
        b.see("By mandate");
    }
    // A window that is not offered is refused in words, and the page still draws.
    b.goto("/ui/overview?days=2%3Cb%3E");
    b.see("`days` must be one of 1, 7, 30");

    // Every page, on this data set.
    let mandate = &agents[HELD_AGENTS].mandate;
    for (path, see) in [
        ("/ui/", "Hello, Olivia Operator"),
        ("/ui/approvals?status=pending", "approval(s)"),
        ("/ui/mandates", "Bookkeeping task"),
        (&format!("/ui/mandates/{mandate}") as &str, "Timeline"),
        ("/ui/reviews", "Access reviews"),
        ("/ui/agents", "books-00-alice"),
        ("/ui/tools", "Tool servers and tools"),
        ("/ui/policies", "The running set"),
        ("/ui/audit", "Audit log"),
    ] {
        b.goto(path);
        b.see(see);
    }
    // Names, not ids, where people read: the mandates list names its agents; the audit
    // log names who acted.
    b.goto("/ui/mandates");
    let text = b.text();
    assert!(text.contains("books-23-chen"), "{text}");
    b.goto("/ui/audit");
    let text = b.text();
    assert!(
        text.contains("books-"),
        "the audit log names agents: {text}"
    );
    drop(b);

    // A person's overview: their agents, no one else's.
    let mut p = Browser::open(&server.url, "overview-person");
    p.sign_in("p1@example.com", PASSWORD);
    p.goto("/ui/overview");
    p.see("The mandates you consent to");
    let text = p.text();
    for a in &agents {
        assert_eq!(text.contains(&a.name), a.owner == 1, "{}: {text}", a.name);
    }
    let mine = agents.iter().filter(|a| a.owner == 1).count();
    assert_eq!(p.count("svg.burn"), mine as u64);
    drop(p);

    // The keyboard only, from the first page after signing in.
    let mut k = Browser::open_patient(
        &server.url,
        "overview-keyboard",
        std::time::Duration::from_secs(60),
    );
    k.sign_in("olivia@example.com", PASSWORD);
    k.goto("/ui/");
    k.tab_to("Skip to content", 3);
    k.tab_to("Overview", 5);
    k.press("Enter");
    assert!(k.url().ends_with("/ui/overview"), "{}", k.url());
    k.tab_to("Last 30 days", 20);
    k.press("Enter");
    assert!(k.url().ends_with("/ui/overview?days=30"), "{}", k.url());
    k.tab_to("The numbers, by period", 30);
    k.press("Enter");
    assert_eq!(k.count("details[open]"), 1);
    let first = &agents[0];
    k.tab_to(&first.intent, 200);
    k.press("Enter");
    assert!(
        k.url()
            .ends_with(&format!("/ui/mandates/{}", first.mandate)),
        "{}",
        k.url()
    );
    k.see(&first.name);
}
