#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The real binary: `mandate serve` on the embedded store and on PostgreSQL, driven by
//! the CLI and by HTTP, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{BIN, Server, admin_token, http, id};

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_cli_flow_sigterm_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("mandate-data");
    let server = Server::start(&data, &[]);

    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "sqlite");

    // The first start wrote an admin token, readable by this user only, and said where.
    let admin = admin_token(&data);
    assert!(admin.starts_with("mdt_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(data.join("audit-signing-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the data directory is private");
    }
    assert!(server.log.iter().any(|l| l.contains("admin-token")));

    // People and an agent, through the CLI.
    let alice = id(&server.cli(
        &admin,
        &[
            "human",
            "create",
            "--name",
            "Alice",
            "--email",
            "alice@example.com",
        ],
    ));
    let bob = id(&server.cli(
        &admin,
        &[
            "human",
            "create",
            "--name",
            "Bob",
            "--email",
            "bob@example.com",
            "--group",
            "finance",
        ],
    ));
    let agent = id(&server.cli(
        &admin,
        &[
            "agent",
            "create",
            "--name",
            "travel-bot",
            "--owner",
            &alice,
            "--spiffe-id",
            "spiffe://example.org/travel-bot",
        ],
    ));
    let token = |args: &[&str]| {
        server.cli(&admin, args)["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let agent_token = token(&["agent", "token", &agent, "--label", "e2e"]);
    let alice_token = token(&["human", "token", &alice]);
    let bob_token = token(&["human", "token", &bob]);

    // The agent requests a mandate for itself, naming Bob as an affected owner.
    let requested = server.cli(
        &agent_token,
        &[
            "mandate",
            "request",
            "--agent",
            &agent,
            "--human",
            &alice,
            "--intent",
            "Book a flight to Lisbon",
            "--tool",
            "flights.search",
            "--tool",
            "flights.book",
            "--owner",
            &bob,
            "--expires-in",
            "2h",
            "--max-calls",
            "10",
        ],
    );
    let mandate = id(&requested);
    assert_eq!(requested["status"], "requested");
    let get = |token: &str| server.cli(token, &["mandate", "get", &mandate]);
    assert_eq!(get(&admin)["awaiting"].as_array().unwrap().len(), 2);

    // Alice consents: still waiting for Bob. Bob consents: active.
    assert_eq!(
        server.cli(&alice_token, &["mandate", "consent", &mandate])["status"],
        "requested"
    );
    assert_eq!(get(&agent_token)["awaiting"], json!([bob]));
    let (ok, table, _) = server.cli_text(
        &bob_token,
        &["mandate", "consent", &mandate, "--comment", "ok"],
    );
    assert!(ok);
    assert!(table.contains("You are answering these terms"), "{table}");
    assert!(table.contains("Book a flight to Lisbon"));
    let active = get(&bob_token);
    assert_eq!(active["status"], "active");
    assert_eq!(active["consents"].as_array().unwrap().len(), 2);

    // Errors are readable and fail the command.
    let (ok, _, err) = server.cli_text(&agent_token, &["mandate", "revoke", &mandate]);
    assert!(!ok);
    assert!(err.contains("403"), "{err}");
    let (ok, _, err) = server.cli_text("mdt_wrong", &["mandate", "list"]);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");

    // The agent completes it; the listing shows it to Bob as well.
    assert_eq!(
        server.cli(
            &agent_token,
            &["mandate", "complete", &mandate, "--reason", "booked"]
        )["status"],
        "completed"
    );
    let (ok, listing, _) = server.cli_text(&bob_token, &["mandate", "list"]);
    assert!(ok);
    assert!(
        listing.contains(&mandate) && listing.contains("completed"),
        "{listing}"
    );

    // The ledger tells the story and verifies, through the API.
    let (ok, tree, _) = server.cli_text(&admin, &["audit", "trace", &mandate]);
    assert!(ok);
    for kind in [
        "mandate.requested",
        "consent.granted",
        "mandate.activated",
        "mandate.completed",
    ] {
        assert!(tree.contains(kind), "{tree}");
    }
    let (ok, verified, _) = server.cli_text(&admin, &["audit", "verify"]);
    assert!(ok && verified.contains("intact: 5 events"), "{verified}");
    let (ok, lines, _) = server.cli_text(&admin, &["audit", "export", "--mandate", &mandate]);
    assert!(ok);
    assert_eq!(lines.lines().count(), 5);
    for line in lines.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["mandate_id"], mandate.as_str());
    }
    let (ok, _, err) = server.cli_text(&bob_token, &["audit", "verify"]);
    assert!(!ok && err.contains("403"), "{err}");

    // SIGTERM stops it cleanly; no log line ever carried a token.
    let log = server.stop();
    for secret in [&admin, &agent_token, &alice_token, &bob_token] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
    }

    // A restart keeps everything and does not make a new admin token.
    let again = Server::start(&data, &[]);
    assert_eq!(admin_token(&data), admin);
    assert!(!again.log.iter().any(|l| l.contains("first start")));
    let (status, body) = http(
        reqwest::Method::GET,
        format!("{}/v1/mandates/{mandate}", again.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["end_reason"], "booked");
    again.stop();
    // Offline verification of the stopped store: the shutdown sealed it with a checkpoint.
    let report = verified_offline(&data);
    assert!(
        report.contains("intact: 5 events") && !report.contains(" 0 signed checkpoints"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_refused_with_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[log]\nlevel = \"info\"\nfromat = \"json\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.fromat"), "{err}");
    assert!(
        !dir.path().join("admin-token").exists(),
        "nothing starts on a bad config"
    );
}

/// `audit load` (what `bench/audit-throughput.sh` runs) counts the lookup index's
/// catch-up in its "appended and indexed" figure, and the events it wrote verify.
#[test]
fn audit_load_reports_events_appended_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    for (store, index) in [("indexed", true), ("plain", false)] {
        let data = dir.path().join(store);
        let mut load = Command::new(BIN);
        load.args([
            "audit",
            "load",
            "--quiet",
            "--events",
            "300",
            "--concurrency",
            "8",
        ])
        .arg("--data")
        .arg(&data);
        if !index {
            load.arg("--no-index");
        }
        let out = load.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("appended 300 durable events"), "{err}");
        assert_eq!(err.contains("appended and indexed"), index, "{err}");
        let report = verified_offline(&data);
        assert!(report.contains("intact: 300 events"), "{report}");
    }
}

/// `mandate audit verify --data DIR` on a stopped store: its report, once it passed.
fn verified_offline(data: &Path) -> String {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    report
}

/// Two replicas on one PostgreSQL database see each other's writes at once.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_postgres_database() {
    let base = std::env::var("MANDATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let db = format!("mandate_e2e_{}", std::process::id());
    let admin_url = base
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/postgres"))
        .unwrap();
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([admin_url.as_str(), "-qtAc", sql])
            .output()
            .expect("psql is installed");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    let url = base
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/{db}"))
        .unwrap();

    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both start at once: migrations and the bootstrap happen exactly once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start(dirs.0.path(), &["--database-url", &url]));
        let b = s.spawn(|| Server::start(dirs.1.path(), &["--database-url", &url]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let tokens: Vec<PathBuf> = [dirs.0.path(), dirs.1.path()]
        .iter()
        .map(|d| d.join("admin-token"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(tokens.len(), 1, "exactly one replica bootstraps");
    let admin = std::fs::read_to_string(&tokens[0])
        .unwrap()
        .trim()
        .to_owned();
    let ready: Value = reqwest::get(format!("{}/readyz", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "postgres");

    // Write on A, read on B — and the other way round.
    let alice = id(&a.cli(
        &admin,
        &[
            "human",
            "create",
            "--name",
            "Alice",
            "--email",
            "alice@example.com",
        ],
    ));
    assert_eq!(
        b.cli(&admin, &["human", "get", &alice])["email"],
        "alice@example.com"
    );
    let agent = id(&b.cli(
        &admin,
        &["agent", "create", "--name", "bot", "--owner", &alice],
    ));
    let alice_token = a.cli(&admin, &["human", "token", &alice])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mandate = id(&a.cli(
        &alice_token,
        &[
            "mandate",
            "request",
            "--agent",
            &agent,
            "--human",
            &alice,
            "--intent",
            "Reconcile invoices",
            "--tool",
            "ledger.*",
        ],
    ));
    assert_eq!(
        b.cli(&alice_token, &["mandate", "consent", &mandate])["status"],
        "active"
    );
    assert_eq!(
        a.cli(&admin, &["mandate", "get", &mandate])["status"],
        "active"
    );

    // Concurrent consents on both replicas: exactly one wins, the other is told so.
    let bob = id(&a.cli(
        &admin,
        &[
            "human",
            "create",
            "--name",
            "Bob",
            "--email",
            "bob@example.com",
        ],
    ));
    let bob_token = b.cli(&admin, &["human", "token", &bob])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let m2 = id(&a.cli(
        &admin,
        &[
            "mandate",
            "request",
            "--agent",
            &agent,
            "--human",
            &alice,
            "--intent",
            "Pay supplier",
            "--tool",
            "payments.send",
            "--owner",
            &bob,
        ],
    ));
    let consent = |url: &str| {
        let url = format!("{url}/v1/mandates/{m2}/consent");
        let token = bob_token.clone();
        async move {
            http(
                reqwest::Method::POST,
                url,
                &token,
                Some(json!({"decision": "granted"})),
            )
            .await
            .0
        }
    };
    let (s1, s2) = tokio::join!(consent(&a.url), consent(&b.url));
    let mut statuses = [s1, s2];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);

    // Policies live in the database: a set put on A is in force on B within seconds.
    let world = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/authzen/records");
    let text = |name: &str| std::fs::read_to_string(world.join(name)).unwrap();
    let set = json!({
        "policies": [{ "name": "policies.cedar", "text": text("policies.cedar") }],
        "schemas": [{ "name": "schema.cedarschema", "text": text("schema.cedarschema") }],
        "entities": { "name": "entities.json", "text": text("entities.json") },
    });
    let read = json!({
        "subject": { "type": "user", "id": "alice" },
        "action": { "name": "read" },
        "resource": { "type": "record", "id": "record-1" },
    });
    let before = eventually(&b, &admin, &read, |_| true).await;
    assert_eq!(
        before["decision"], false,
        "no operator policy yet: {before}"
    );
    let (status, summary) = http(
        reqwest::Method::PUT,
        format!("{}/v1/policies", a.url),
        &admin,
        Some(set),
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    eventually(&b, &admin, &read, |r| r["decision"] == true).await;
    let (_, seen_on_b) = http(
        reqwest::Method::GET,
        format!("{}/v1/policies", b.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(seen_on_b["digest"], summary["digest"]);
    let (_, events) = http(
        reqwest::Method::GET,
        format!("{}/v1/audit?type=policy.changed", b.url),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        events["items"][0]["data"]["digest"], summary["digest"],
        "{events}"
    );

    a.stop();
    b.stop();
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
}

fn copy_world(world: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/authzen")
        .join(world);
    std::fs::create_dir_all(to).unwrap();
    for name in ["policies.cedar", "schema.cedarschema", "entities.json"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// Polls an AuthZEN evaluation until `check` holds (the watcher reloads every second).
async fn eventually(
    server: &Server,
    token: &str,
    body: &Value,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, reply) = http(
            reqwest::Method::POST,
            format!("{}/access/v1/evaluation", server.url),
            token,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        if check(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the decision never changed: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_as_code_hot_reload_api_and_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("policies");
    copy_world("records", &dir);
    let dir_arg = dir.to_str().unwrap();

    // Offline CLI, as a policy repository's CI would run it.
    let out = Command::new(BIN)
        .args(["policy", "validate", dir_arg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/authzen/records/policy-tests.json");
    std::fs::copy(&tests, dir.join("policy-tests.json")).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(dir.join("policy-tests.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 passed, 0 failed"));
    let wrong = dir.join("wrong-tests.json");
    std::fs::write(
        &wrong,
        r#"{"cases":[{"name":"bob writes","request":{"subject":{"type":"user","id":"bob"},"action":{"name":"write"},"resource":{"type":"record","id":"record-1"}},"decision":true}]}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  bob writes"));

    let server = Server::start(&data, &["--policies", dir_arg]);
    let token = admin_token(&data);
    let write = json!({
        "subject": { "type": "user", "id": "alice" },
        "action": { "name": "write" },
        "resource": { "type": "record", "id": "record-1" },
    });
    eventually(&server, &token, &write, |r| r["decision"] == true).await;

    // A broken file is refused; the running set stays.
    std::fs::write(
        dir.join("zz-broken.cedar"),
        "permit (principal, action, resource)\nwhen { principal.role == };\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    eventually(&server, &token, &write, |r| r["decision"] == true).await;
    std::fs::remove_file(dir.join("zz-broken.cedar")).unwrap();

    // A new forbid takes effect without a restart.
    std::fs::write(
        dir.join("zz-freeze.cedar"),
        "@id(\"freeze\") @reason(\"writes are frozen\")\nforbid (principal, action == Action::\"write\", resource);\n",
    )
    .unwrap();
    let denied = eventually(&server, &token, &write, |r| r["decision"] == false).await;
    assert_eq!(denied["context"]["policies"], json!(["freeze"]), "{denied}");
    assert_eq!(denied["context"]["reason"], "writes are frozen");

    // The API replaces the set whole, writing the directory; a bad set is refused whole.
    let (status, source) = http(
        reqwest::Method::GET,
        format!("{}/v1/policies/source", server.url),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let mut without_freeze = source.clone();
    without_freeze["policies"] = json!(
        source["policies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] != "zz-freeze.cedar")
            .collect::<Vec<_>>()
    );
    let mut broken = without_freeze.clone();
    broken["policies"].as_array_mut().unwrap().push(json!({ "name": "x.cedar", "text": "forbid (principal, action, resource)\nwhen { nonsense };" }));
    let (status, problem) = http(
        reqwest::Method::PUT,
        format!("{}/v1/policies", server.url),
        &token,
        Some(broken),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["problems"][0]["file"], "x.cedar", "{problem}");
    assert_eq!(problem["problems"][0]["line"], 2, "{problem}");
    assert!(dir.join("zz-freeze.cedar").exists());
    let (status, summary) = http(
        reqwest::Method::PUT,
        format!("{}/v1/policies", server.url),
        &token,
        Some(without_freeze),
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    assert!(
        !dir.join("zz-freeze.cedar").exists(),
        "the API writes the directory"
    );
    eventually(&server, &token, &write, |r| r["decision"] == true).await;
    server.stop();

    // A directory that does not compile stops the server from starting: running
    // without the operator's forbids would allow what they deny.
    std::fs::write(dir.join("zz-broken.cedar"), "forbid (").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(["--policies", dir_arg])
        .env_remove("MANDATE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("zz-broken.cedar:1:"), "{stderr}");
}
