#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The credential broker end to end: a secret stored through the API is injected into
//! upstream requests (here through `/proxy/{server}/…`) and appears nowhere else — not
//! in any API response, not in the server's log at debug level, not in the audit
//! ledger, not in the database file (it is sealed). A `postgres-role:` credential makes
//! a login role per mandate on the local PostgreSQL, valid until the mandate expires,
//! and drops it when the mandate is revoked.

use base64::Engine as _;
use serde_json::json;

mod common;

use common::{Server, admin_token, created, http, task_token};

const PLANTED: &str = "sk-live-PLANTED-7f3a9c1e5b2d";
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn psql(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([ADMIN_URL, "-qtAc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_injected_and_appear_nowhere_else_and_roles_live_with_their_mandate() {
    let (upstream, seen) = common::capture().await;
    let auth = |seen: &std::sync::Mutex<Vec<common::Captured>>| {
        let seen = seen.lock().unwrap();
        let last = seen.last().unwrap();
        last.headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let group = format!("mt_group_{}", std::process::id());
    psql(&format!(
        "DROP ROLE IF EXISTS {group}; CREATE ROLE {group} NOLOGIN"
    ));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!("[gateway]\npostgres_roles_url = \"{ADMIN_URL}\"\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    // A proxy from the environment is not where injected credentials go: requests
    // through `/proxy` go to the registered address only.
    let (trap, trapped) = common::capture().await;
    let server = Server::start_with_broker_env(
        &data,
        &config,
        &[
            ("HTTP_PROXY", &trap),
            ("http_proxy", &trap),
            ("HTTPS_PROXY", &trap),
            ("ALL_PROXY", &trap),
            ("NO_PROXY", ""),
        ],
    );
    let admin = admin_token(&data);
    let mut responses = Vec::new();

    // The secret goes in; what comes back is its name and key id only.
    let stored = common::put_secret(&server, &admin, "api-key", PLANTED).await;
    assert_eq!(stored["key_id"], "k1");
    responses.push(stored);
    let (status, bad) = http(
        reqwest::Method::PUT,
        format!("{}/v1/secrets/bad", server.url),
        &admin,
        Some(json!({"value": "a\r\nX-Injected: 1", "inject": {"kind": "bearer"}})),
    )
    .await;
    assert_eq!(
        status, 422,
        "a secret that cannot be a header value is refused: {bad}"
    );

    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "api", "transport": {"kind": "http", "base_url": upstream},
               "credential_ref": "secret:api-key"}),
    )
    .await;
    created(
        &server,
        "/v1/tool-servers",
        &admin,
        json!({"name": "db", "transport": {"kind": "http", "base_url": upstream},
               "credential_ref": format!("postgres-role:{group}")}),
    )
    .await;
    let who = common::human_and_agent(&server, &admin).await;
    let (agent, signing, human_token) = (&who.agent, &who.key, &who.human_token);
    let expires = chrono::Utc::now() + chrono::Duration::hours(2);
    let mandate = common::consented_mandate(
        &server,
        &admin,
        &who,
        json!({"intent": "call the API",
               "scope": {"tools": [{"tool": "api./http"}, {"tool": "db./http"}]},
               "data_ceiling": "internal", "mode": "execute",
               "expires_at": expires.to_rfc3339()}),
    )
    .await;
    let token = task_token(
        &server,
        agent,
        signing,
        &mandate,
        &format!("{}/proxy", server.url),
    )
    .await;

    // Injected upstream, instead of the agent's own credential.
    let (status, body) = http(
        reqwest::Method::GET,
        format!("{}/proxy/api/v1/things?x=1", server.url),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    responses.push(body);
    assert_eq!(auth(&seen), format!("Bearer {PLANTED}"));

    // A dynamic credential: a login role for this mandate.
    let (status, body) = http(
        reqwest::Method::POST,
        format!("{}/proxy/db/query", server.url),
        &token,
        Some(json!({"sql": "select 1"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        trapped.lock().unwrap().is_empty(),
        "a request with injected credentials went through the environment's proxy"
    );
    let basic = auth(&seen);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let (role, password) = decoded.split_once(':').unwrap();
    assert!(!password.is_empty());
    let until = psql(&format!(
        "SELECT floor(extract(epoch from rolvaliduntil))::bigint FROM pg_roles WHERE rolname = '{role}'"
    ));
    assert_eq!(
        until.parse::<i64>().unwrap(),
        expires.timestamp(),
        "VALID UNTIL the mandate's expiry"
    );
    let member = psql(&format!(
        "SELECT pg_has_role('{role}', '{group}', 'member')"
    ));
    assert_eq!(member, "t");

    // Revoking the mandate drops the role (the sweeper runs every 5 s).
    let (status, body) = http(
        reqwest::Method::POST,
        format!("{}/v1/mandates/{mandate}/revoke", server.url),
        human_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while psql(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
    )) != "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the role outlived its mandate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    psql(&format!("DROP ROLE IF EXISTS {group}"));

    // Nowhere else: API responses, the audit ledger, the log, the database file.
    let (_, listing) = http(
        reqwest::Method::GET,
        format!("{}/v1/secrets", server.url),
        &admin,
        None,
    )
    .await;
    responses.push(listing);
    let (_, audit) = http(
        reqwest::Method::GET,
        format!("{}/v1/audit?limit=500", server.url),
        &admin,
        None,
    )
    .await;
    assert!(audit["items"].as_array().unwrap().len() > 5);
    responses.push(audit);
    for response in &responses {
        assert!(
            !response.to_string().contains(password),
            "a response carries the role password"
        );
    }
    let log = server.stop();
    assert!(!log.contains(password), "the log carries the role password");
    common::assert_nowhere(&[PLANTED], &responses, &log, &data);
}
