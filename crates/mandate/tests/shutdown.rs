#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! `mandate serve` stopped by SIGTERM under gateway load (what Kubernetes, systemd and a
//! container runtime send before they kill).
//!
//! Agents keep 24 calls in flight through the HTTP proxy to an upstream that takes
//! 300 ms to answer, each call on a path of its own. SIGTERM arrives mid-load. Then:
//! every call the upstream received was answered to its agent (finished, not cut), every
//! call that failed never reached the upstream (refused cleanly), some calls in flight
//! at the signal were finished after it, the process exited 0 well within the grace
//! period the deployment files give it (75 s; here: 10 s), and after a restart the
//! ledger verifies and holds the allowing decision of every forwarded call (each
//! durable before its call was forwarded, so none can be lost by the stop).
//!
//! With `shutdown_grace_seconds = 1` and calls the upstream holds for a minute, the
//! process stops anyway about a second after SIGTERM, exit status 0: the calls are cut
//! (their agents see the connection close), the ledger verifies and holds their
//! decisions.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{BIN, Server, admin_token, created, task_token};

/// An upstream that notes each request's path on arrival, then answers after `delay`.
async fn slow_upstream(delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let store = store.clone();
        async move {
            store.lock().unwrap().push(uri.path().to_owned());
            tokio::time::sleep(delay).await;
            axum::Json(json!({"ok": true, "path": uri.path()}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// How one call ended, as its agent saw it.
#[derive(Debug)]
enum Outcome {
    /// An HTTP answer: status, body, and when it came (relative to the start).
    Answered(u16, String, Duration),
    /// No connection: the server no longer accepted (refused before anything happened).
    Refused,
    /// Anything else (a connection cut mid-request, a time-out).
    Broken(String),
}

/// A server whose agent may call the upstream `slow` (answering after `delay`) through
/// the proxy, with `extra` in its configuration file.
struct Setup {
    dir: tempfile::TempDir,
    config: String,
    server: Server,
    admin: String,
    mandate: String,
    token: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn setup(delay: Duration, extra: &str) -> Setup {
    let (upstream, seen) = slow_upstream(delay).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    // Arguments (method, path, query) recorded in each decision: a forwarded call's
    // decision is found by its path.
    std::fs::write(
        &config,
        format!("{extra}\n[gateway]\ncapture_arguments = true\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let server = Server::start(dir.path(), &["--config", &config]);
    let admin = admin_token(dir.path());
    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "slow", "transport": {"kind": "http", "base_url": upstream}}),
    )
    .await;
    let who = common::human_and_agent(&server, &admin).await;
    let mandate = common::consented_mandate(
        &server,
        &admin,
        &who,
        json!({
            "intent": "Call the slow API",
            "scope": {"tools": [{"tool": "slow./http"}]},
            "data_ceiling": "internal",
            "mode": "execute",
        }),
    )
    .await;
    let token = task_token(
        &server,
        &who.agent,
        &who.key,
        &mandate,
        &format!("{}/proxy", server.url),
    )
    .await;
    Setup {
        dir,
        config,
        server,
        admin,
        mandate,
        token,
        seen,
    }
}

/// After the stop: the chain verifies offline, and, on a restarted server, each of
/// `forwarded` has its allowing decision in the ledger. Returns the counts of allowing
/// decisions and `tool.called` events.
fn ledger_holds_every_decision(
    dir: &std::path::Path,
    config: &str,
    admin: &str,
    mandate: &str,
    forwarded: &HashSet<String>,
) -> (usize, usize) {
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--json", "--data"])
        .arg(dir)
        .env_remove("MANDATE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the chain does not verify after SIGTERM:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let server = Server::start(dir, &["--config", config]);
    let (exported, lines, err) = server.cli_text(admin, &["audit", "export", "--mandate", mandate]);
    assert!(exported, "{err}");
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decided: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "decision" && e["data"]["allowed"] == true)
        .map(Value::to_string)
        .collect();
    for path in forwarded {
        let quoted = format!("\"{path}\"");
        assert!(
            decided.iter().any(|d| d.contains(&quoted)),
            "{path} was forwarded without its decision in the ledger"
        );
    }
    let called = events.iter().filter(|e| e["kind"] == "tool.called").count();
    server.stop();
    (decided.len(), called)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_gateway_load_finishes_or_refuses_every_call() {
    let Setup {
        dir,
        config,
        server,
        admin,
        mandate,
        token,
        seen,
    } = setup(Duration::from_millis(300), "").await;

    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let outcomes: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::new(Mutex::new(Vec::new()));
    let stopping = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut agents = Vec::new();
    for _ in 0..24 {
        let (client, token, base) = (client.clone(), token.clone(), server.url.clone());
        let (next, outcomes, stopping) = (next.clone(), outcomes.clone(), stopping.clone());
        agents.push(tokio::spawn(async move {
            loop {
                let path = format!("/call/{}", next.fetch_add(1, Ordering::Relaxed));
                let sent = client
                    .get(format!("{base}/proxy/slow{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.text().await {
                            Ok(body) => Outcome::Answered(status, body, start.elapsed()),
                            Err(e) => Outcome::Broken(format!("{e:?}")),
                        }
                    }
                    Err(e) if e.is_connect() => Outcome::Refused,
                    Err(e) => Outcome::Broken(format!("{e:?}")),
                };
                let answered_ok = matches!(outcome, Outcome::Answered(200, _, _));
                outcomes.lock().unwrap().push((path, outcome));
                // Once the server is going away, an agent stops at its first refusal.
                if stopping.load(Ordering::Relaxed) && !answered_ok {
                    break;
                }
            }
        }));
    }

    // Load for a while, then SIGTERM with calls in flight at the upstream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answered_before = outcomes.lock().unwrap().len();
    assert!(
        answered_before >= 24,
        "the load never got going: {answered_before} calls"
    );
    stopping.store(true, Ordering::Relaxed);
    let signalled = start.elapsed();
    let stop_started = Instant::now();
    // `stop` sends SIGTERM, waits for the exit and asserts it was clean (status 0).
    let log = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let stop_took = stop_started.elapsed();
    for agent in agents {
        tokio::time::timeout(Duration::from_secs(40), agent)
            .await
            .expect("an agent never finished")
            .unwrap();
    }
    assert!(
        stop_took < Duration::from_secs(10),
        "SIGTERM to exit took {stop_took:?}"
    );
    assert!(log.contains("mandate stopped"), "{log}");

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let forwarded: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    let mut finished_after_signal = 0;
    let (mut ok, mut refused, mut other) = (0, 0, 0);
    for (path, outcome) in &outcomes {
        match outcome {
            Outcome::Answered(200, body, at) => {
                ok += 1;
                assert!(body.contains(path.as_str()), "{path}: {body}");
                if *at > signalled {
                    finished_after_signal += 1;
                }
            }
            Outcome::Refused => {
                refused += 1;
                assert!(
                    !forwarded.contains(path),
                    "{path} was refused yet forwarded"
                );
            }
            Outcome::Answered(status, body, _) => {
                other += 1;
                assert!(
                    !forwarded.contains(path),
                    "{path} was forwarded, and its agent got {status}: {body}"
                );
            }
            Outcome::Broken(e) => {
                other += 1;
                assert!(
                    !forwarded.contains(path),
                    "{path} was forwarded, and its agent's call broke: {e}"
                );
            }
        }
    }
    // Every call that reached the upstream came back to its agent.
    let answered: HashSet<&str> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Answered(200, _, _)))
        .map(|(p, _)| p.as_str())
        .collect();
    for path in &forwarded {
        assert!(
            answered.contains(path.as_str()),
            "{path} reached the upstream, but its agent never got the answer"
        );
    }
    assert!(
        finished_after_signal > 0,
        "no call was in flight at SIGTERM (nothing finished after it)"
    );
    println!(
        "{} calls: {ok} answered ({finished_after_signal} after SIGTERM), {refused} refused, \
         {other} refused otherwise; {} forwarded; SIGTERM to exit {stop_took:?}",
        outcomes.len(),
        forwarded.len()
    );

    // The ledger verifies offline, and holds each forwarded call's allowing decision.
    let (decided, called) =
        ledger_holds_every_decision(dir.path(), &config, &admin, &mandate, &forwarded);
    println!(
        "ledger: {decided} allowing decisions, {called} tool.called events, for {} forwarded calls",
        forwarded.len()
    );
    // Outcomes are appended without waiting; the shutdown flushes them before exit.
    assert!(
        called >= forwarded.len(),
        "{called} tool.called events for {} forwarded and answered calls: outcomes lost at shutdown",
        forwarded.len()
    );
}

/// Calls that outlast `shutdown_grace_seconds` are cut, and the process stops anyway,
/// with a clean exit, a sealed ledger and every forwarded call's decision recorded.
#[tokio::test(flavor = "multi_thread")]
async fn calls_past_the_grace_period_are_cut_and_the_process_stops_anyway() {
    let Setup {
        dir,
        config,
        mut server,
        admin,
        mandate,
        token,
        seen,
    } = setup(Duration::from_secs(60), "shutdown_grace_seconds = 1").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut calls = Vec::new();
    for n in 0..4 {
        let request = client
            .get(format!("{}/proxy/slow/stuck/{n}", server.url))
            .bearer_auth(&token);
        calls.push(tokio::spawn(request.send()));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the calls never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = server.drain_log();
    let stop_started = Instant::now();
    let log = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let stop_took = stop_started.elapsed();
    assert!(
        stop_took >= Duration::from_millis(900) && stop_took < Duration::from_secs(6),
        "SIGTERM to exit took {stop_took:?} with a 1 s grace period"
    );
    assert!(log.contains("the grace period is over"), "{log}");
    assert!(log.contains("mandate stopped"), "{log}");
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(
            outcome.is_err(),
            "a call cut at the grace period was answered: {outcome:?}"
        );
    }
    let forwarded: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(forwarded.len(), 4);
    ledger_holds_every_decision(dir.path(), &config, &admin, &mandate, &forwarded);
    println!(
        "4 calls held upstream for 60 s: cut at the 1 s grace period; SIGTERM to exit {stop_took:?}"
    );
}
