//! A load generator for the token endpoint (used by `bench/token-issuance.sh`).
//!
//! Setup, through the admin API of a running `mandate serve`: one human (with an API
//! token to consent), a tool server with two tools, AGENTS agents each with its own
//! Ed25519 key registered as a public JWK, and one consented mandate per agent.
//!
//! Then CONNECTIONS keep-alive connections drive `POST /oauth2/token` for SECONDS,
//! closed loop (each connection sends its next request when the previous one is
//! answered), cycling through the agents:
//!
//! - default: `client_credentials` with `authorization_details` naming the agent's
//!   mandate, authenticated by a `private_key_jwt` assertion signed per request (fresh
//!   `jti`, so the server records it to refuse replays);
//! - `--exchange`: RFC 8693 token exchange renewing the connection's current token
//!   (the token just issued becomes the next subject token);
//! - `--dpop`: every request carries a fresh DPoP proof (per-connection key), so every
//!   token is DPoP-bound.
//!
//! Every issued token is a grants row and a durable `token.*` audit event on the
//! server. The client signs its assertion (and proof) before the clock starts: the
//! latency is the HTTP round trip. Prints tokens/s, latency percentiles, errors by
//! status and OAuth error code, and the CPU seconds the server (with `--server-pid`)
//! and this generator used. It asserts nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a failure should be loud"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mandate_jose::{Alg, SigningKey};
use serde_json::{Map, Value, json};

mod support;

use support::{
    Api, JWT_BEARER, admin_token, assertion, cpu_by_thread, cpu_seconds, per_call_by_thread,
    quantile_ms,
};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

#[derive(Debug, Parser)]
#[command(about = "Drive /oauth2/token of a running mandate serve")]
struct Args {
    /// Where the server listens, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// The server's public URL (its issuer; assertions and proofs are addressed to it).
    /// Defaults to --url.
    #[arg(long)]
    public_url: Option<String>,
    /// An admin API token (or `@FILE` to read it from a file).
    #[arg(long)]
    admin_token: String,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Send a DPoP proof with every request.
    #[arg(long)]
    dpop: bool,
    /// Renew tokens by token exchange instead of client_credentials.
    #[arg(long)]
    exchange: bool,
    /// The server's pid, to report its CPU time.
    #[arg(long)]
    server_pid: Option<String>,
}

/// One agent with its key and its consented mandate.
struct Agent {
    id: String,
    key: SigningKey,
    mandate: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let url = args.url.trim_end_matches('/').to_owned();
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| url.clone())
        .trim_end_matches('/')
        .to_owned();
    let admin = admin_token(&args.admin_token);
    let setup_started = Instant::now();
    let agents = Arc::new(setup(&url, &admin, args.agents).await);
    println!(
        "   setup       {} agents with consented mandates in {:.1} s",
        agents.len(),
        setup_started.elapsed().as_secs_f64()
    );

    let endpoint = format!("{url}/oauth2/token");
    let audience = format!("{public}/oauth2/token");
    let jti = Arc::new(AtomicU64::new(0));
    let server_before = args.server_pid.as_deref().map(cpu_seconds);
    let threads_before = args.server_pid.as_deref().map(cpu_by_thread);
    let self_before = cpu_seconds("self");
    let start = Instant::now() + Duration::from_millis(300);
    let duration = Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for index in 0..args.connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let agents = agents.clone();
        let (endpoint, audience, jti) = (endpoint.clone(), audience.clone(), jti.clone());
        let (dpop, exchange) = (args.dpop, args.exchange);
        tasks.push(tokio::spawn(async move {
            let proof_key = SigningKey::generate(Alg::EdDSA, format!("dpop-{index}")).unwrap();
            let proof_key = dpop.then_some(&proof_key);
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut k = index;
            // Exchange: the connection's current token, renewed again and again.
            let mut held: Option<(usize, String)> = None;
            tokio::time::sleep_until(start.into()).await;
            while Instant::now() < start + duration {
                let (agent_index, form) = match (&held, exchange) {
                    (Some((i, subject)), true) => {
                        let agent = &agents[*i];
                        let assertion = assertion(&agent.id, &agent.key, &audience, &jti);
                        (
                            *i,
                            vec![
                                ("grant_type", TOKEN_EXCHANGE.to_owned()),
                                ("client_assertion_type", JWT_BEARER.to_owned()),
                                ("client_assertion", assertion),
                                ("subject_token", subject.clone()),
                                ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
                            ],
                        )
                    }
                    _ => {
                        let i = k % agents.len();
                        k += 1;
                        let agent = &agents[i];
                        let details = json!([{"type": "mandate", "mandate_id": agent.mandate}]);
                        (
                            i,
                            vec![
                                ("grant_type", "client_credentials".to_owned()),
                                ("client_assertion_type", JWT_BEARER.to_owned()),
                                (
                                    "client_assertion",
                                    assertion(&agent.id, &agent.key, &audience, &jti),
                                ),
                                ("authorization_details", details.to_string()),
                            ],
                        )
                    }
                };
                let mut request = client.post(&endpoint).form(&form);
                if let Some(key) = proof_key {
                    request = request.header("DPoP", proof(key, &audience, &jti));
                }
                let sent = Instant::now();
                let reply = request.send().await;
                let outcome = match reply {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        match (status, body["access_token"].as_str()) {
                            (200, Some(token)) => Ok(token.to_owned()),
                            _ => Err(format!(
                                "{status} {}",
                                body["error"].as_str().unwrap_or("(no OAuth error)")
                            )),
                        }
                    }
                    Err(e) => Err(format!(
                        "transport {}",
                        if e.is_timeout() { "timeout" } else { "error" }
                    )),
                };
                let elapsed = sent.elapsed();
                match outcome {
                    Ok(token) => {
                        latencies.push(elapsed);
                        // Exchange mode counts only renewals; the first token seeds it.
                        if exchange {
                            if held.is_none() {
                                latencies.pop();
                            }
                            held = Some((agent_index, token));
                        }
                    }
                    Err(code) => {
                        *errors.entry(code).or_default() += 1;
                        held = None;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        for (code, n) in e {
            *errors.entry(code).or_default() += n;
        }
    }
    latencies.sort();
    let n = latencies.len();
    let q = |p: f64| quantile_ms(&latencies, p);
    let what = match (args.exchange, args.dpop) {
        (false, false) => "client_credentials + authorization_details, private_key_jwt",
        (false, true) => "client_credentials + authorization_details, private_key_jwt, DPoP",
        (true, false) => "token exchange (renewal), private_key_jwt",
        (true, true) => "token exchange (renewal), private_key_jwt, DPoP",
    };
    println!("   grant       {what}");
    println!(
        "   tokens/s    {:.0}   ok {n}   errors {}",
        n as f64 / args.seconds,
        errors.values().sum::<u64>()
    );
    println!(
        "   latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    for (code, count) in &errors {
        println!("   error       {code}: {count}");
    }
    let generator = cpu_seconds("self") - self_before;
    match (args.server_pid.as_deref(), server_before) {
        (Some(pid), Some(before)) => println!(
            "   CPU s       server {:.1}   load generator {generator:.1}",
            cpu_seconds(pid) - before
        ),
        _ => println!("   CPU s       load generator {generator:.1}"),
    }
    if let (Some(pid), Some(before)) = (args.server_pid.as_deref(), threads_before) {
        println!(
            "   by thread   server {}",
            per_call_by_thread(&before, &cpu_by_thread(pid), n, "token")
        );
    }
}

/// A DPoP proof (RFC 9449) for `POST url`.
fn proof(key: &SigningKey, url: &str, jti: &AtomicU64) -> String {
    let now = chrono::Utc::now().timestamp();
    let n = jti.fetch_add(1, Ordering::Relaxed);
    let mut header = Map::new();
    header.insert("typ".into(), json!("dpop+jwt"));
    header.insert("jwk".into(), key.public_jwk().to_public_json());
    let claims = json!({"jti": format!("p-{now}-{n}"), "htm": "POST", "htu": url, "iat": now});
    key.sign(header, &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

/// The human, the catalog, the agents and their consented mandates.
async fn setup(url: &str, admin: &str, count: usize) -> Vec<Agent> {
    let api = Api::new(url);
    let run = chrono::Utc::now().timestamp_millis();
    let human = api.human(admin, run, "token-load").await;
    let server_name = format!("crm{run}");
    let server = api
        .mcp_tool_server(admin, &server_name, "http://127.0.0.1:9/mcp")
        .await;
    let mut tools = Vec::new();
    for (name, hints) in [
        ("read", json!({"readOnlyHint": true})),
        (
            "update",
            json!({"readOnlyHint": false, "destructiveHint": false}),
        ),
    ] {
        api.post(
            "/v1/tools",
            admin,
            json!({"server_id": server, "name": name, "annotations": hints}),
        )
        .await;
        tools.push(format!("{server_name}.{name}"));
    }
    let mut agents = Vec::with_capacity(count);
    for i in 0..count {
        let key = SigningKey::generate(Alg::EdDSA, format!("load-{i}")).unwrap();
        let id = api
            .agent(admin, &format!("load-{run}-{i}"), &human.id, &key)
            .await;
        let mandate = api
            .consented_mandate(
                admin,
                &human,
                &id,
                &tools,
                "Keep the CRM tidy (token load test)",
            )
            .await;
        agents.push(Agent { id, key, mandate });
    }
    agents
}
