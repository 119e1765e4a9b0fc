//! What the load generators in this directory share (`token_load`, `gateway_load`):
//! the admin API calls that set up a human with a token, agents with Ed25519 keys and
//! consented mandates; client assertions and task tokens; latency percentiles; the CPU
//! time of a process from `/proc`.
//!
//! Not an example itself: Cargo only discovers `examples/*.rs` and
//! `examples/*/main.rs`, and each generator includes this file with `mod support;`.

#![allow(dead_code, reason = "each generator uses a subset")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_jose::SigningKey;
use serde_json::{Map, Value, json};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An admin API token given as itself or as `@FILE`.
pub fn admin_token(arg: &str) -> String {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).unwrap().trim().to_owned(),
        None => arg.to_owned(),
    }
}

/// A running server's API, called with whichever bearer token a step needs.
pub struct Api {
    client: reqwest::Client,
    pub url: String,
}

/// A human and the API token they consent with.
pub struct Human {
    pub id: String,
    pub token: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            client: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// `POST path` as `token`; the answer must be 200 or 201.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status == 200 || status == 201,
            "POST {path}: {status}: {body}"
        );
        body
    }

    /// A new human (unique per `run`) with an API token.
    pub async fn human(&self, admin: &str, run: i64, label: &str) -> Human {
        let id = self
            .post(
                "/v1/humans",
                admin,
                json!({"display_name": "Load Owner", "email": format!("owner-{run}@example.com")}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let token = self
            .post(
                &format!("/v1/humans/{id}/tokens"),
                admin,
                json!({"label": label}),
            )
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        Human { id, token }
    }

    /// A tool server reached over MCP Streamable HTTP at `url`; its id.
    pub async fn mcp_tool_server(&self, admin: &str, name: &str, url: &str) -> String {
        self.post(
            "/v1/tool-servers",
            admin,
            json!({"name": name, "transport": {"kind": "mcp_http", "url": url}}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// An agent owned by `owner`, authenticating with `key` (its public JWK registered).
    pub async fn agent(&self, admin: &str, name: &str, owner: &str, key: &SigningKey) -> String {
        self.post(
            "/v1/agents",
            admin,
            json!({
                "name": name,
                "owner": owner,
                "credentials": {"jwks": [key.public_jwk().to_public_json()]},
            }),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A mandate for `agent` over `tools` (no budgets), granted by `human`; it must
    /// come out active.
    pub async fn consented_mandate(
        &self,
        admin: &str,
        human: &Human,
        agent: &str,
        tools: &[String],
        intent: &str,
    ) -> String {
        let expires = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
        let scope: Vec<Value> = tools.iter().map(|t| json!({"tool": t})).collect();
        let mandate = self
            .post(
                "/v1/mandates",
                admin,
                json!({
                    "agent_id": agent,
                    "human_id": human.id,
                    "intent": intent,
                    "scope": {"tools": scope},
                    "data_ceiling": "internal",
                    "mode": "execute",
                    "expires_at": expires,
                }),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let consented = self
            .post(
                &format!("/v1/mandates/{mandate}/consent"),
                &human.token,
                json!({"decision": "granted"}),
            )
            .await;
        assert_eq!(consented["status"], "active", "{consented}");
        mandate
    }

    /// A bearer task token for `agent` under `mandate`, for `resource`.
    pub async fn task_token(
        &self,
        agent: &str,
        key: &SigningKey,
        mandate: &str,
        resource: &str,
        jti: &AtomicU64,
    ) -> String {
        let assertion = assertion(agent, key, &format!("{}/oauth2/token", self.url), jti);
        let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
        let response = self
            .client
            .post(format!("{}/oauth2/token", self.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.as_str()),
                ("authorization_details", details.as_str()),
                ("resource", resource),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "token request: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// A `private_key_jwt` client assertion (RFC 7523) by `agent` with a fresh `jti`.
pub fn assertion(agent: &str, key: &SigningKey, audience: &str, jti: &AtomicU64) -> String {
    let now = chrono::Utc::now().timestamp();
    let n = jti.fetch_add(1, Ordering::Relaxed);
    let claims = json!({
        "iss": agent, "sub": agent, "aud": audience,
        "iat": now, "exp": now + 60, "jti": format!("a-{now}-{n}"),
    });
    let mut header = Map::new();
    header.insert("typ".into(), json!("JWT"));
    key.sign(header, &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

/// The `p` quantile (0..=1) of sorted latencies, in milliseconds (NaN when empty).
pub fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// User + system CPU seconds of process `pid` (or `self`) so far; 0 if unreadable.
pub fn cpu_seconds(pid: &str) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The server's CPU seconds so far by kind of thread, from each thread's name: its async
/// runtime's workers, its SQLite connections' threads (sqlx runs each connection on one;
/// the ledger's writes run on the writer's), and the rest (blocking pool, timers). Empty
/// if unreadable.
pub fn cpu_by_thread(pid: &str) -> BTreeMap<&'static str, f64> {
    let mut by_kind = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_kind;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let kind = if name.starts_with("tokio-rt") {
            "async workers"
        } else if name.starts_with("sqlx-sqlite") {
            "SQLite threads"
        } else {
            "other threads"
        };
        *by_kind.entry(kind).or_default() += stat_cpu_seconds(&path.join("stat").to_string_lossy());
    }
    by_kind
}

/// `after - before` per kind of thread, as `kind N µs/{unit}` for `calls` of them.
pub fn per_call_by_thread(
    before: &BTreeMap<&'static str, f64>,
    after: &BTreeMap<&'static str, f64>,
    calls: usize,
    unit: &str,
) -> String {
    after
        .iter()
        .map(|(kind, cpu)| {
            let spent = cpu - before.get(kind).copied().unwrap_or(0.0);
            format!("{kind} {:.0} µs/{unit}", spent / calls.max(1) as f64 * 1e6)
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
