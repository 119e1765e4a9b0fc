//! How long a revocation at one replica takes to be enforced by another (used by
//! `bench/revocation-propagation.sh`): two `mandate serve` replicas on one PostgreSQL
//! database, which learn of each other's revocations through LISTEN/NOTIFY plus a
//! poll (`TokenService::follow_revocations`).
//!
//! Setup on replica A: a human and an agent with an Ed25519 key. Then, COUNT times:
//!
//! 1. the agent gets a mandate-less task token from A (`client_credentials` without
//!    `authorization_details`: scope `mandates:request`, audience the issuer);
//! 2. B accepts it: `GET /v1/mandates` with `Authorization: Bearer <task token>` → 200
//!    (B checks it in memory: signature, claims, its revocation list);
//! 3. a poller sends that request to B every POLL_MS over a keep-alive connection,
//!    while A revokes the token (`POST /oauth2/revoke` with the admin bearer);
//! 4. the delay is from A's 200 response to the first 401 from B (negative when B
//!    refused before A's answer arrived); also from when the revocation was sent.
//!
//! A pause of a random 0–50 ms between rounds spreads them over the poll's phase.
//! Prints p50/p90/p99/max. It asserts nothing but the setup.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a failure should be loud"
)]

use std::time::{Duration, Instant};

use clap::Parser;
use mandate_jose::{Alg, SigningKey};
use serde_json::{Map, Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Parser)]
#[command(about = "Measure revocation propagation between two mandate replicas")]
struct Args {
    /// Replica A (issues and revokes), e.g. http://127.0.0.1:8081.
    #[arg(long)]
    a: String,
    /// Replica B (polled).
    #[arg(long)]
    b: String,
    /// The replicas' shared public URL (the issuer). Defaults to --a.
    #[arg(long)]
    public_url: Option<String>,
    /// An admin API token (or `@FILE` to read it from a file).
    #[arg(long)]
    admin_token: String,
    /// How many revocations to measure.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Milliseconds between two polls of B.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// Give up on one revocation after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_seconds: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let a = args.a.trim_end_matches('/').to_owned();
    let b = args.b.trim_end_matches('/').to_owned();
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| a.clone())
        .trim_end_matches('/')
        .to_owned();
    let admin = match args.admin_token.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).unwrap().trim().to_owned(),
        None => args.admin_token.clone(),
    };
    let api = reqwest::Client::new();
    let (agent, key) = setup(&api, &a, &admin).await;
    let audience = format!("{public}/oauth2/token");
    let poller = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let poll = Duration::from_millis(args.poll_ms);
    let timeout = Duration::from_secs(args.timeout_seconds);

    let mut from_response = Vec::with_capacity(args.count);
    let mut from_request = Vec::with_capacity(args.count);
    let mut missed = 0usize;
    let mut seed = u64::from(std::process::id());
    for round in 0..args.count {
        let token = task_token(&api, &a, &agent, &key, &audience, round).await;
        // B must accept it first (it may need up to a second to learn A's key).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = probe(&poller, &b, &token).await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica B never accepted A's task token (status {status})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let watcher = {
            let (poller, b, token) = (poller.clone(), b.clone(), token.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    let status = probe(&poller, &b, &token).await;
                    let at = Instant::now();
                    match status {
                        401 => return Some(at),
                        200 => {}
                        other => panic!("replica B answered {other} to a task token"),
                    }
                    if started.elapsed() > timeout {
                        return None;
                    }
                    tokio::time::sleep(poll).await;
                }
            })
        };
        let sent = Instant::now();
        let response = api
            .post(format!("{a}/oauth2/revoke"))
            .bearer_auth(&admin)
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        let answered = Instant::now();
        assert_eq!(response.status(), 200, "revocation at A failed");
        match watcher.await.unwrap() {
            Some(refused) => {
                from_response.push(signed_ms(refused, answered));
                from_request.push(signed_ms(refused, sent));
            }
            None => missed += 1,
        }
        // xorshift: a pause of 0–50 ms.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 51)).await;
    }

    println!(
        "   revocations {}   seen by B {}   not seen within {} s: {missed}",
        args.count,
        from_response.len(),
        args.timeout_seconds
    );
    println!("   B polled every {} ms (keep-alive)", args.poll_ms);
    report("from A's 200 to B's first 401", &mut from_response);
    report("from sending the revocation   ", &mut from_request);
    let early = from_response.iter().filter(|d| **d <= 0.0).count();
    println!("   B refused before A's 200 arrived in {early} rounds");
}

fn report(label: &str, values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let q = |p: f64| {
        values
            .get(((n.saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "   {label}  ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

/// `later − earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier.duration_since(later).as_secs_f64() * 1e3),
    }
}

/// `GET /v1/mandates` with the task token: B's answer's status.
async fn probe(client: &reqwest::Client, b: &str, token: &str) -> u16 {
    let response = client
        .get(format!("{b}/v1/mandates?limit=1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

/// A mandate-less task token from `server` for the agent.
async fn task_token(
    api: &reqwest::Client,
    server: &str,
    agent: &str,
    key: &SigningKey,
    audience: &str,
    round: usize,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": agent, "sub": agent, "aud": audience,
        "iat": now, "exp": now + 60, "jti": format!("r-{now}-{round}"),
    });
    let mut header = Map::new();
    header.insert("typ".into(), json!("JWT"));
    let assertion = key
        .sign(header, &serde_json::to_vec(&claims).unwrap())
        .unwrap();
    let response = api
        .post(format!("{server}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "token request at A: {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A human and an agent with a registered Ed25519 key.
async fn setup(api: &reqwest::Client, url: &str, admin: &str) -> (String, SigningKey) {
    let post = |path: &str, body: Value| {
        let request = api
            .post(format!("{url}{path}"))
            .bearer_auth(admin)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 201, "{body}");
            body
        }
    };
    let run = chrono::Utc::now().timestamp_millis();
    let human = post(
        "/v1/humans",
        json!({"display_name": "Owner", "email": format!("owner-{run}@example.com")}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = SigningKey::generate(Alg::EdDSA, "revoker".into()).unwrap();
    let agent = post(
        "/v1/agents",
        json!({
            "name": format!("revoker-{run}"),
            "owner": human,
            "credentials": {"jwks": [key.public_jwk().to_public_json()]},
        }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (agent, key)
}
