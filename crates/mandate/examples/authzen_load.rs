//! A load generator for the AuthZEN evaluation endpoint (used by
//! `bench/authzen-load.sh`): N keep-alive connections, closed loop (each connection
//! sends its next request when the previous one is answered) or open loop at a fixed
//! total rate, where latency is measured from each request's scheduled send time.
//!
//! authzen_load URL TOKEN SECONDS CONNECTIONS RATE [SERVER_PID]   (RATE 0: closed loop)
//!
//! Prints decisions/s, latency percentiles, and the CPU seconds the server (when its
//! pid is given) and this generator used. It asserts nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a failure should be loud"
)]

use std::time::{Duration, Instant};

use serde_json::json;

const RICK: &str = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const MORTY: &str = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const SUMMER: &str = "CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const JERRY: &str = "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs";
const TODO: &str = "7240d0db-8ff0-41ec-98b2-34a096273b92";

fn bodies() -> Vec<String> {
    let req = |subject: &str, action: &str, kind: &str, id: &str, owner: Option<&str>| {
        let mut resource = json!({ "type": kind, "id": id });
        if let Some(owner) = owner {
            resource["properties"] = json!({ "ownerID": owner });
        }
        json!({ "subject": { "type": "user", "id": subject }, "action": { "name": action }, "resource": resource })
            .to_string()
    };
    vec![
        req(RICK, "can_read_user", "user", MORTY, None),
        req(MORTY, "can_read_todos", "todo", TODO, None),
        req(
            MORTY,
            "can_update_todo",
            "todo",
            TODO,
            Some("morty@the-citadel.com"),
        ),
        req(
            JERRY,
            "can_delete_todo",
            "todo",
            TODO,
            Some("rick@the-citadel.com"),
        ),
        req(
            RICK,
            "can_delete_todo",
            "todo",
            TODO,
            Some("morty@the-citadel.com"),
        ),
        req(SUMMER, "can_create_todo", "todo", TODO, None),
        req(JERRY, "can_create_todo", "todo", TODO, None),
    ]
}

fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, seconds, connections, rate, rest @ ..] = args.as_slice() else {
        panic!("usage: authzen_load URL TOKEN SECONDS CONNECTIONS RATE [SERVER_PID]");
    };
    let seconds: f64 = seconds.parse().unwrap();
    let connections: usize = connections.parse().unwrap();
    let rate: f64 = rate.parse().unwrap();
    let server = rest.first().cloned();
    let endpoint = format!("{}/access/v1/evaluation", url.trim_end_matches('/'));
    let bodies = bodies();

    let server_before = server.as_deref().map(cpu_seconds);
    let self_before = cpu_seconds("self");
    let start = Instant::now() + Duration::from_millis(200);
    let duration = Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for index in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let (endpoint, token, bodies) = (endpoint.clone(), token.clone(), bodies.clone());
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            tokio::time::sleep_until(start.into()).await;
            let offset = interval.map(|i| i.mul_f64(index as f64 / connections as f64));
            let mut k = 0u32;
            loop {
                let sent = match (interval, offset) {
                    (Some(interval), Some(offset)) => {
                        let due = start + offset + interval * k;
                        if due >= start + duration {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    _ => {
                        let now = Instant::now();
                        if now >= start + duration {
                            break;
                        }
                        now
                    }
                };
                let body = bodies[(index + k as usize) % bodies.len()].clone();
                let reply = client
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = match reply {
                    Ok(r) if r.status() == 200 => r
                        .bytes()
                        .await
                        .is_ok_and(|b| b.windows(10).any(|w| w == b"\"decision\"")),
                    _ => false,
                };
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
                k += 1;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let n = latencies.len();
    let q = |p: f64| {
        latencies
            .get(((n.saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "   decisions/s {:.0}   ok {n}   errors {errors}",
        n as f64 / seconds
    );
    println!(
        "   latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    let generator = cpu_seconds("self") - self_before;
    match (server.as_deref(), server_before) {
        (Some(pid), Some(before)) => println!(
            "   CPU s       server {:.1}   load generator {generator:.1}",
            cpu_seconds(pid) - before
        ),
        _ => println!("   CPU s       load generator {generator:.1}"),
    }
}
