//! A load generator for the MCP gateway (used by `bench/gateway-overhead.sh`): the same
//! `tools/call` sent straight to an upstream and then through the gateway, in one run.
//!
//! The upstream is the demo bank (`mandate-demo`), served by a child process of this
//! generator (this binary with `--serve-upstream`) on 127.0.0.1, so its CPU time is
//! counted apart. Setup, through the admin API of a running `mandate serve`: a tool
//! server `bank` pointing at the upstream, a human with an API token, an agent with an
//! Ed25519 key, a consented mandate with scope `[bank.get_balance]` and no budgets,
//! and a task token for the resource `{server}/mcp`.
//!
//! Then two phases, each CONNECTIONS keep-alive connections, closed loop (a
//! connection sends its next request when the previous one is answered), WARMUP
//! seconds not counted and SECONDS counted:
//!
//! - direct: `tools/call get_balance {"account":"alice-checking"}` POSTed to the
//!   upstream's `/mcp`, in a session each connection opened with `initialize`;
//! - gateway: the same call POSTed to `{server}/mcp/bank` with the task token, in a
//!   gateway session each connection opened the same way.
//!
//! Between the two, unless `--no-proxy`, a third phase sends the same call through a
//! plain HTTP forwarder (this binary with `--serve-proxy`, its own process): the same
//! server and client libraries as the gateway (axum/hyper in, a pooled reqwest client
//! out), nothing else — no token, no policy, no ledger. Its CPU per call is what the
//! two HTTP legs of any proxy cost on this machine, so what the gateway adds beyond a
//! proxy reads directly from the same run.
//!
//! A call counts when it answers 200 with a JSON-RPC result that is not `isError`.
//! Prints calls/s and latency percentiles of each phase, the CPU seconds the server,
//! the upstream and this generator used in each, then what the gateway adds (p50,
//! p99, throughput ratio) next to the targets of PRODUCT.md §11. With `--fsync-dir`
//! the latency of one small write + fdatasync there is measured first, since the p50
//! target is stated beyond the one group-commit fsync of the durable decision.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a failure should be loud"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mandate_jose::{Alg, SigningKey};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

mod support;

use support::{Api, admin_token, cpu_by_thread, cpu_seconds, per_call_by_thread, quantile_ms};

/// The legacy (session) revision both ends speak.
const PROTOCOL_VERSION: &str = "2025-06-18";
const SESSION: &str = "mcp-session-id";
/// The call measured, by both paths.
const TOOL: &str = "get_balance";
const ACCOUNT: &str = "alice-checking";

/// PRODUCT.md §11, beyond the fsync of the durable decision.
const TARGET_ADDED_P50_MS: f64 = 0.25;
/// The reference machine's group-commit fsync, used when none is measured.
const NOMINAL_FSYNC_MS: f64 = 0.25;
const TARGET_ADDED_P99_MS: f64 = 2.0;
const TARGET_RATIO: f64 = 0.60;

#[derive(Debug, Parser)]
#[command(about = "tools/call direct to an upstream vs. through the mandate gateway")]
struct Args {
    /// Where the server listens, e.g. http://127.0.0.1:8080 (also its public URL).
    #[arg(long, required_unless_present_any = ["serve_upstream", "serve_proxy"])]
    url: Option<String>,
    /// An admin API token (or `@FILE` to read it from a file).
    #[arg(long, required_unless_present_any = ["serve_upstream", "serve_proxy"])]
    admin_token: Option<String>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// The server's pid, to report its CPU time.
    #[arg(long)]
    server_pid: Option<String>,
    /// A directory on the store's disk: the fsync latency there is measured first.
    #[arg(long)]
    fsync_dir: Option<String>,
    /// Only serve the demo bank over MCP on 127.0.0.1 (prints `LISTENING url`).
    #[arg(long)]
    serve_upstream: bool,
    /// Only forward `POST /mcp` to this upstream MCP URL, as a plain proxy on
    /// 127.0.0.1 (prints `LISTENING url`).
    #[arg(long)]
    serve_proxy: Option<String>,
    /// Skip the plain-proxy phase.
    #[arg(long)]
    no_proxy: bool,
}

/// Where one phase sends its calls.
#[derive(Clone)]
struct Target {
    endpoint: String,
    bearer: Option<String>,
}

/// What one phase measured.
struct Phase {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    seconds: f64,
    cpu_server: Option<f64>,
    /// The server's CPU per call by kind of thread.
    server_threads: Option<String>,
    cpu_upstream: f64,
    cpu_generator: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.serve_upstream || args.serve_proxy.is_some() {
        // A child of the generator: it ends with the generator, however that ends
        // (kill_on_drop does not run when the generator is killed).
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    if args.serve_upstream {
        return serve_upstream().await;
    }
    if let Some(upstream) = &args.serve_proxy {
        return serve_proxy(upstream.clone()).await;
    }
    let url = args.url.clone().unwrap().trim_end_matches('/').to_owned();
    let admin = admin_token(args.admin_token.as_deref().unwrap());

    let fsync_ms = args
        .fsync_dir
        .as_deref()
        .map(|dir| fsync_p50_ms(Path::new(dir)));

    let (mut upstream, upstream_pid, upstream_url) = child(&["--serve-upstream"]).await;
    let proxy = if args.no_proxy {
        None
    } else {
        Some(child(&["--serve-proxy", &upstream_url]).await)
    };

    let setup_started = Instant::now();
    let token = setup(&url, &admin, &upstream_url).await;
    println!(
        "   setup       tool server `bank` at {upstream_url}, agent, mandate [bank.{TOOL}], task token in {:.1} s",
        setup_started.elapsed().as_secs_f64()
    );

    let direct = Target {
        endpoint: upstream_url,
        bearer: None,
    };
    let gateway = Target {
        endpoint: format!("{url}/mcp/bank"),
        bearer: Some(token),
    };
    let proxied = proxy.as_ref().map(|(_, _, url)| Target {
        endpoint: url.clone(),
        bearer: None,
    });
    // Fail loudly before measuring if any path does not answer the call.
    for target in [Some(&direct), proxied.as_ref(), Some(&gateway)]
        .into_iter()
        .flatten()
    {
        let client = reqwest::Client::new();
        let session = initialize(&client, target).await;
        call(&client, target, session.as_deref(), 0)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", target.endpoint));
    }

    let pids = Pids {
        server: args.server_pid.clone(),
        upstream: upstream_pid,
    };
    let direct = run(&direct, &args, &pids).await;
    report("direct", &direct, "server");
    let proxied = match (&proxied, &proxy) {
        (Some(target), Some((_, pid, _))) => {
            let pids = Pids {
                server: Some(pid.clone()),
                upstream: pids.upstream.clone(),
            };
            let phase = run(target, &args, &pids).await;
            report("proxy", &phase, "proxy");
            Some(phase)
        }
        _ => None,
    };
    let gateway = run(&gateway, &args, &pids).await;
    report("gateway", &gateway, "server");
    compare(&direct, &gateway, fsync_ms);
    if let Some(proxied) = &proxied {
        beside_proxy(&direct, proxied, &gateway);
    }

    upstream.kill().await.unwrap();
    if let Some((mut proxy, _, _)) = proxy {
        proxy.kill().await.unwrap();
    }
}

/// This binary again with `args`, until it prints `LISTENING url`: the child, its pid
/// and the URL.
async fn child(args: &[&str]) -> (tokio::process::Child, String, String) {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{args:?} exited"));
        if let Some(url) = line.strip_prefix("LISTENING ") {
            break url.trim().to_owned();
        }
    };
    (child, pid, url)
}

/// A plain proxy: `POST /mcp` forwarded to `upstream` with the headers MCP needs, the
/// answer returned as it came. No authentication, no decision, no record.
async fn serve_proxy(upstream: String) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};

    const FORWARDED: [&str; 4] = ["content-type", "accept", SESSION, "mcp-protocol-version"];
    async fn forward(
        State(to): State<Arc<(reqwest::Client, String)>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let (client, upstream) = &*to;
        let mut request = client.post(upstream).body(body);
        for name in FORWARDED {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        let Ok(answer) = request.send().await else {
            return StatusCode::BAD_GATEWAY.into_response();
        };
        let status = answer.status();
        let mut back = HeaderMap::new();
        for name in ["content-type", SESSION] {
            if let Some(value) = answer.headers().get(name) {
                back.insert(name, value.clone());
            }
        }
        match answer.bytes().await {
            Ok(body) => (status, back, body).into_response(),
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        }
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    println!("LISTENING http://{address}/mcp");
    std::io::stdout().flush().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(forward))
        .with_state(Arc::new((client, upstream)));
    axum::serve(listener, app).await.unwrap();
}

/// The demo bank over MCP, until killed.
async fn serve_upstream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    println!("LISTENING http://{address}/mcp");
    std::io::stdout().flush().unwrap();
    let bank = Arc::new(mandate_demo::bank::Bank::new());
    mandate_demo::serve(listener, bank, std::future::pending())
        .await
        .unwrap();
}

/// The tool server, the human, the agent, its consented mandate and a task token.
async fn setup(url: &str, admin: &str, upstream: &str) -> String {
    let api = Api::new(url);
    let run = chrono::Utc::now().timestamp_millis();
    api.mcp_tool_server(admin, "bank", upstream).await;
    let human = api.human(admin, run, "gateway-load").await;
    let key = SigningKey::generate(Alg::EdDSA, "gateway-load".into()).unwrap();
    let agent = api
        .agent(admin, &format!("gateway-load-{run}"), &human.id, &key)
        .await;
    let mandate = api
        .consented_mandate(
            admin,
            &human,
            &agent,
            &[format!("bank.{TOOL}")],
            "Read balances (gateway load test)",
        )
        .await;
    let jti = std::sync::atomic::AtomicU64::new(0);
    api.task_token(&agent, &key, &mandate, &format!("{url}/mcp"), &jti)
        .await
}

struct Pids {
    server: Option<String>,
    upstream: String,
}

/// One phase: every connection initializes, then calls in a closed loop; calls sent
/// in the measured window count.
async fn run(target: &Target, args: &Args, pids: &Pids) -> Phase {
    let begin = Instant::now() + Duration::from_millis(300);
    let measured_from = begin + Duration::from_secs_f64(args.warmup);
    let until = measured_from + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for index in 0..args.connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let session = initialize(&client, &target).await;
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut id = (index as u64) << 32;
            tokio::time::sleep_until(begin.into()).await;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                id += 1;
                let outcome = call(&client, &target, session.as_deref(), id).await;
                if sent < measured_from {
                    continue;
                }
                match outcome {
                    Ok(()) => latencies.push(sent.elapsed()),
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep_until(measured_from.into()).await;
    let server_before = pids.server.as_deref().map(cpu_seconds);
    let threads_before = pids.server.as_deref().map(cpu_by_thread);
    let upstream_before = cpu_seconds(&pids.upstream);
    let self_before = cpu_seconds("self");
    tokio::time::sleep_until(until.into()).await;
    let cpu_server = pids
        .server
        .as_deref()
        .zip(server_before)
        .map(|(pid, before)| cpu_seconds(pid) - before);
    let threads_after = pids.server.as_deref().map(cpu_by_thread);
    let cpu_upstream = cpu_seconds(&pids.upstream) - upstream_before;
    let cpu_generator = cpu_seconds("self") - self_before;
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
    let server_threads = threads_before
        .zip(threads_after)
        .map(|(before, after)| per_call_by_thread(&before, &after, latencies.len(), "call"));
    Phase {
        latencies,
        errors,
        seconds: args.seconds,
        cpu_server,
        server_threads,
        cpu_upstream,
        cpu_generator,
    }
}

fn post(
    client: &reqwest::Client,
    target: &Target,
    session: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(&target.endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(token) = &target.bearer {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request
            .header(SESSION, session)
            .header("mcp-protocol-version", PROTOCOL_VERSION);
    }
    request
}

/// `initialize` and `notifications/initialized`: the session id, if one was given.
async fn initialize(client: &reqwest::Client, target: &Target) -> Option<String> {
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "gateway_load", "version": "0"},
        },
    });
    let response = post(client, target, None)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get(SESSION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    assert!(
        status == 200 && reply.get("result").is_some(),
        "initialize at {}: {status} {reply}",
        target.endpoint
    );
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = post(client, target, session.as_deref())
        .body(initialized.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "{}", target.endpoint);
    session
}

/// One `tools/call`; `Err` names what went wrong (status, JSON-RPC code or tool error).
async fn call(
    client: &reqwest::Client,
    target: &Target,
    session: Option<&str>,
    id: u64,
) -> Result<(), String> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{TOOL}","arguments":{{"account":"{ACCOUNT}"}}}}}}"#
    );
    let response = post(client, target, session)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "transport {}",
                if e.is_timeout() { "timeout" } else { "error" }
            )
        })?;
    let status = response.status().as_u16();
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = response
        .bytes()
        .await
        .map_err(|_| "body error".to_owned())?;
    if status != 200 || !json {
        return Err(format!(
            "HTTP {status}{}",
            if json { "" } else { " (not JSON)" }
        ));
    }
    let reply: Value = serde_json::from_slice(&bytes).map_err(|_| "bad JSON".to_owned())?;
    if let Some(code) = reply["error"]["code"].as_i64() {
        return Err(format!("JSON-RPC {code} {}", reply["error"]["message"]));
    }
    if reply["result"]["isError"] == json!(true) || reply["result"].is_null() {
        return Err(format!("tool error {}", reply["result"]));
    }
    Ok(())
}

fn report(name: &str, phase: &Phase, server_label: &str) {
    let q = |p: f64| quantile_ms(&phase.latencies, p);
    let n = phase.latencies.len();
    println!(
        "   {name:<8}    calls/s {:.0}   ok {n}   errors {}",
        n as f64 / phase.seconds,
        phase.errors.values().sum::<u64>()
    );
    println!(
        "               latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    let per_call = |cpu: f64| cpu / n.max(1) as f64 * 1e6;
    let server = phase.cpu_server.map_or(String::new(), |cpu| {
        format!("{server_label} {cpu:.2} ({:.0} µs/call)   ", per_call(cpu))
    });
    println!(
        "               CPU s       {server}upstream {:.2} ({:.0} µs/call)   generator {:.2} ({:.0} µs/call)",
        phase.cpu_upstream,
        per_call(phase.cpu_upstream),
        phase.cpu_generator,
        per_call(phase.cpu_generator),
    );
    if let Some(threads) = &phase.server_threads
        && phase.cpu_server.is_some_and(|cpu| cpu > 0.05)
    {
        println!("               {server_label} by thread: {threads}");
    }
    for (error, count) in &phase.errors {
        println!("               error       {error}: {count}");
    }
}

/// What the gateway adds, against PRODUCT.md §11.
fn compare(direct: &Phase, gateway: &Phase, fsync_ms: Option<f64>) {
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let p = |phase: &Phase, q: f64| quantile_ms(&phase.latencies, q);
    let added_p50 = p(gateway, 0.5) - p(direct, 0.5);
    let added_p99 = p(gateway, 0.99) - p(direct, 0.99);
    let (fsync, fsync_source) = match fsync_ms {
        Some(ms) => (ms, "measured here"),
        None => (NOMINAL_FSYNC_MS, "nominal"),
    };
    let p50_target = TARGET_ADDED_P50_MS + fsync;
    let ratio = gateway.latencies.len() as f64
        / gateway.seconds
        / (direct.latencies.len() as f64 / direct.seconds);
    println!(
        "   added p50   {added_p50:+.3} ms   target ≤ {TARGET_ADDED_P50_MS:.2} + fsync {fsync:.3} ({fsync_source}) = {p50_target:.3} ms: {}",
        verdict(added_p50 <= p50_target)
    );
    println!(
        "   added p99   {added_p99:+.3} ms   target ≤ {TARGET_ADDED_P99_MS:.1} ms: {}   (gateway p99 {:.3} ms)",
        verdict(added_p99 <= TARGET_ADDED_P99_MS),
        p(gateway, 0.99)
    );
    println!(
        "   throughput  gateway/direct {ratio:.2}   target ≥ {TARGET_RATIO:.2}: {}",
        verdict(ratio >= TARGET_RATIO)
    );
}

/// The gateway beside the plain proxy of the same run: what two HTTP legs cost here,
/// and what the gateway adds to them.
fn beside_proxy(direct: &Phase, proxied: &Phase, gateway: &Phase) {
    let rate = |phase: &Phase| phase.latencies.len() as f64 / phase.seconds;
    let per_call = |phase: &Phase| {
        phase
            .cpu_server
            .map(|cpu| cpu / phase.latencies.len().max(1) as f64 * 1e6)
    };
    let (Some(proxy_cpu), Some(gateway_cpu)) = (per_call(proxied), per_call(gateway)) else {
        return;
    };
    println!(
        "   plain proxy proxy/direct {:.2}, {proxy_cpu:.0} µs/call   gateway/proxy {:.2}, gateway CPU beyond the proxy's {:+.0} µs/call",
        rate(proxied) / rate(direct),
        rate(gateway) / rate(proxied),
        gateway_cpu - proxy_cpu
    );
}

/// The median of 200 small appends + fdatasync in `dir`, in milliseconds.
fn fsync_p50_ms(dir: &Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = [7u8; 4096];
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        samples.push(started.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path).unwrap();
    samples.sort();
    let p50 = quantile_ms(&samples, 0.5);
    println!(
        "   fsync       4 KiB append + fdatasync in the data directory: p50 {p50:.3} ms  p99 {:.3} ms",
        quantile_ms(&samples, 0.99)
    );
    p50
}
