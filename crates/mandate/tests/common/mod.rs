//! The real binary, spawned for a test: `mandate serve` on a temporary data directory,
//! its log, SIGTERM, the CLI against it, and plain HTTP calls.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod oidc;

pub const BIN: &str = env!("CARGO_BIN_EXE_mandate");

/// A loopback port for a process the test starts later, chosen so that nothing else
/// takes it in between: below the kernel's ephemeral range (where every `bind(…:0)`
/// listener and every outgoing connection's local port come from — a port taken from
/// there and released could be handed to one of those before its process binds it),
/// never twice in this process, and free when checked.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (from, to) = (10_000u16, ephemeral_low);
    assert!(to > from + 1_000, "the ephemeral range starts at {to}");
    let mut given = GIVEN.lock().unwrap();
    // Where to start looking differs per call and per process (test binaries run side
    // by side), then a stride walks the range.
    let mut start = std::collections::hash_map::RandomState::new().build_hasher();
    start.write_u32(std::process::id());
    let start = start.finish();
    let span = u64::from(to - from);
    for i in 0..span {
        let port = from + u16::try_from(start.wrapping_add(i.wrapping_mul(7_919)) % span).unwrap();
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port between {from} and {to}");
}

/// A running `mandate serve`, killed if the test fails before stopping it.
pub struct Server {
    child: Child,
    pub url: String,
    stderr: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data, extra, &[])
    }

    /// Starts with these environment variables set (`MANDATE_DATABASE_URL` and
    /// `MANDATE_PUBLIC_URL` are otherwise cleared, so the caller's shell never leaks in).
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_on("127.0.0.1:0", data, extra, env)
    }

    /// With the credential broker on (master key `k1`) and the log at debug level (what
    /// the secret-scanning tests read), reading the configuration file `config`.
    pub fn start_with_broker(data: &Path, config: &Path) -> Server {
        Server::start_with_broker_env(data, config, &[])
    }

    /// `start_with_broker` with these environment variables set too.
    pub fn start_with_broker_env(data: &Path, config: &Path, env: &[(&str, &str)]) -> Server {
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        let master = format!("k1:{key}");
        let mut all = vec![
            ("MANDATE_MASTER_KEY", master.as_str()),
            ("MANDATE_LOG", "debug"),
        ];
        all.extend_from_slice(env);
        Server::start_with_env(data, &["--config", config.to_str().unwrap()], &all)
    }

    /// `start_with_env` on a given address (a replica restarted where a load balancer
    /// expects it).
    pub fn start_on(listen: &str, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .env_remove("MANDATE_DATABASE_URL")
            .env_remove("MANDATE_PUBLIC_URL")
            .env("MANDATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let (tx, rx) = mpsc::channel();
        // Owned by a `Server` at once: killed and reaped on every path, panics included.
        let mut server = Server {
            child: command.spawn().unwrap(),
            url: String::new(),
            stderr: rx,
            log: Vec::new(),
        };
        let stderr = server.child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.stderr.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        server.url = rest.split_whitespace().next().unwrap().to_owned();
                    }
                    server.log.push(line);
                }
                Err(_) => panic!("mandate serve did not start:\n{}", server.log.join("\n")),
            }
        }
        server
    }

    /// What the server wrote to stderr since the last call (or since it started).
    pub fn drain_log(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }

    /// Sends SIGTERM and waits for a clean exit; returns everything it wrote to stderr.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "mandate serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.log.push(line);
        }
        let log = self.log.join("\n");
        assert!(exit.success(), "exit {exit:?}:\n{log}");
        log
    }

    /// SIGKILL: the process dies wherever it is, as in a crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The CLI against this server, as `token`; returns its parsed `--json` output.
    pub fn cli(&self, token: &str, args: &[&str]) -> Value {
        let out = Command::new(BIN)
            .args(args)
            .arg("--json")
            .env("MANDATE_URL", &self.url)
            .env("MANDATE_TOKEN", token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mandate {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The CLI's table output (no `--json`), and whether it succeeded.
    pub fn cli_text(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("MANDATE_URL", &self.url)
            .env("MANDATE_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

pub async fn http(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `http` for a path on `server` that must answer 201: the new object's id.
pub async fn created(server: &Server, path: &str, token: &str, body: Value) -> String {
    let (status, reply) = http(
        reqwest::Method::POST,
        format!("{}{path}", server.url),
        token,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "POST {path}: {reply}");
    id(&reply)
}

/// The `jti` claim of a JWS compact token (read without verifying: the test's own).
pub fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A `private_key_jwt` assertion by `agent` for the token endpoint of `issuer`.
pub fn assertion(issuer: &str, agent: &str, key: &mandate_jose::SigningKey) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let now = chrono::Utc::now().timestamp();
    let jti = format!(
        "{now}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let claims = serde_json::json!({
        "iss": agent, "sub": agent, "aud": format!("{issuer}/oauth2/token"),
        "iat": now, "exp": now + 60, "jti": jti,
    });
    key.sign(
        serde_json::Map::new(),
        &serde_json::to_vec(&claims).unwrap(),
    )
    .unwrap()
}

/// A bearer task token for `agent` under `mandate`, for `resource`.
pub async fn task_token(
    server: &Server,
    agent: &str,
    key: &mandate_jose::SigningKey,
    mandate: &str,
    resource: &str,
) -> String {
    let assertion = assertion(&server.url, agent, key);
    let details = serde_json::json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
        ("authorization_details", details.as_str()),
        ("resource", resource),
    ];
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/token", server.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "token request: {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A bearer task token for the actors' agent under `mandate`, for the server's `/mcp`.
pub async fn mcp_token(server: &Server, who: &Actors, mandate: &str) -> String {
    let resource = format!("{}/mcp", server.url);
    task_token(server, &who.agent, &who.key, mandate, &resource).await
}

/// The Python test scripts' directory.
pub fn python_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The MCP fixture upstream (`tests/python/mcp_fixture_server.py`) on a free port.
pub struct Fixture {
    child: Child,
    pub url: String,
}

impl Fixture {
    pub fn start() -> Fixture {
        Fixture::start_with(&[])
    }

    /// With more arguments for `mcp_fixture_server.py` (`--trace-log PATH`, `--dynamic`).
    pub fn start_with(extra: &[&str]) -> Fixture {
        let (child, url) = listening(
            Command::new("python3")
                .arg(python_dir().join("mcp_fixture_server.py"))
                .args(["--port", "0"])
                .args(extra)
                .stderr(Stdio::null()),
            "the MCP fixture",
        );
        Fixture { child, url }
    }
}

/// Spawns a Python helper that prints `LISTENING URL` once it serves: it and its URL.
fn listening(command: &mut Command, what: &str) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (see .ci/run)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("LISTENING ") {
                    break url.trim().to_owned();
                }
            }
            _ => panic!(
                "{what} did not start; install its packages: pip install -r crates/mandate/tests/python/requirements.txt"
            ),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the Python `mcp` client with `steps` against `url`: one JSON value per step.
pub fn mcp_client(url: &str, token: Option<&str>, steps: &Value) -> Vec<Value> {
    let mut command = Command::new("python3");
    command.arg(python_dir().join("mcp_client.py")).arg(url);
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let mut child = command
        .args(["--script", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(steps.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.is_empty(),
        "mcp_client.py printed nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

/// The OTLP/HTTP receiver (`tests/python/otlp_receiver.py`, opentelemetry-proto) on a
/// free port: what it decoded, one JSON value per span or log record.
pub struct OtlpReceiver {
    child: Child,
    pub url: String,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OtlpReceiver {
    /// `extra`: `--refuse-logs STATUS` or `--reject-logs N`.
    pub fn start(extra: &[&str]) -> OtlpReceiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let (child, url) = listening(
            Command::new("python3")
                .arg(python_dir().join("otlp_receiver.py"))
                .arg("--out")
                .arg(&out)
                .args(extra),
            "the OTLP receiver",
        );
        OtlpReceiver {
            child,
            url,
            out,
            _dir: dir,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request a [`capture`] server received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

/// An HTTP server on loopback that answers `{"ok": true}` to anything and remembers
/// what it was sent (an upstream, a webhook receiver).
pub async fn capture() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Captured>>>) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Captured>>> = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(Captured {
                    path: uri.to_string(),
                    headers,
                    body,
                });
                axum::Json(serde_json::json!({"ok": true}))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Asserts that none of `planted` appears in `responses`, the server's `log`, or any
/// file of its data directory `data` (a SQLite database and its WAL: sealed, never in
/// clear).
pub fn assert_nowhere(planted: &[&str], responses: &[Value], log: &str, data: &Path) {
    for response in responses {
        let text = response.to_string();
        for p in planted {
            assert!(!text.contains(p), "a response carries a secret: {text}");
        }
    }
    for p in planted {
        assert!(!log.contains(p), "the log carries a secret");
    }
    for entry in std::fs::read_dir(data).unwrap() {
        let file = entry.unwrap().path();
        if !file.is_file() {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        for p in planted {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "{} holds a secret in clear",
                file.display()
            );
        }
    }
}

/// Seals `value` in the vault as secret `name` (as a bearer credential): the answer,
/// which names it and its key id only.
pub async fn put_secret(server: &Server, admin: &str, name: &str, value: &str) -> Value {
    let (status, stored) = http(
        reqwest::Method::PUT,
        format!("{}/v1/secrets/{name}", server.url),
        admin,
        Some(serde_json::json!({"value": value, "inject": {"kind": "bearer"}})),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    stored
}

/// A fresh database on the test PostgreSQL server, dropped when done.
pub struct Database {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl Database {
    /// `prefix` names it (with this process's id).
    pub fn create(prefix: &str) -> Database {
        let base = std::env::var("MANDATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let (server, _) = base.rsplit_once('/').unwrap();
        let name = format!("{prefix}_{}", std::process::id());
        let db = Database {
            admin_url: format!("{server}/postgres"),
            url: format!("{server}/{name}"),
            name,
        };
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    /// Runs SQL in this database.
    pub fn psql_in(&self, sql: &str) {
        let out = Command::new("psql")
            .args([self.url.as_str(), "-qtAc", sql])
            .output()
            .expect("psql is installed");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL as the server's administrator, on the server's `postgres` database.
    pub fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([self.admin_url.as_str(), "-qtAc", sql])
            .output()
            .expect("psql is installed");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin_url.as_str(),
                "-qtAc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A human with an API token, and an agent they own with a registered Ed25519 key.
pub struct Actors {
    pub human: String,
    pub human_token: String,
    pub agent: String,
    pub key: mandate_jose::SigningKey,
}

pub async fn human_and_agent(server: &Server, admin: &str) -> Actors {
    person_and_agent(server, admin, "Alice", "alice@example.com", "helper").await
}

/// [`human_and_agent`] for a person of this name and email, and an agent of this name.
pub async fn person_and_agent(
    server: &Server,
    admin: &str,
    display_name: &str,
    email: &str,
    agent_name: &str,
) -> Actors {
    let human = created(
        server,
        "/v1/humans",
        admin,
        serde_json::json!({"display_name": display_name, "email": email}),
    )
    .await;
    let (status, token) = http(
        reqwest::Method::POST,
        format!("{}/v1/humans/{human}/tokens", server.url),
        admin,
        Some(serde_json::json!({"label": "test"})),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let key = mandate_jose::SigningKey::generate(mandate_jose::Alg::EdDSA, "k1".into()).unwrap();
    let agent = created(
        server,
        "/v1/agents",
        admin,
        serde_json::json!({
            "name": agent_name,
            "owner": human,
            "credentials": {"jwks": [key.public_jwk().to_public_json()]},
        }),
    )
    .await;
    Actors {
        human,
        human_token: token["token"].as_str().unwrap().to_owned(),
        agent,
        key,
    }
}

/// A mandate of the actors' agent for their human on `terms` (agent, human and a
/// one-hour expiry filled in unless given), consented by the human: its id.
pub async fn consented_mandate(
    server: &Server,
    admin: &str,
    who: &Actors,
    mut terms: Value,
) -> String {
    terms["agent_id"] = serde_json::json!(who.agent);
    terms["human_id"] = serde_json::json!(who.human);
    if terms.get("expires_at").is_none() {
        terms["expires_at"] =
            serde_json::json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    }
    let id = created(server, "/v1/mandates", admin, terms).await;
    let (status, body) = http(
        reqwest::Method::POST,
        format!("{}/v1/mandates/{id}/consent", server.url),
        &who.human_token,
        Some(serde_json::json!({"decision": "granted"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    id
}

/// Sets a console password with the CLI (`mandate human password`), the password on
/// standard input.
pub fn set_password(server: &Server, token: &str, human: &str, password: &str) {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(["human", "password", human])
        .env("MANDATE_URL", &server.url)
        .env("MANDATE_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mandate human password: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `tools/call` through the gateway at `base` (MCP 2026-07-28, stateless): the
/// JSON-RPC answer.
pub async fn stateless_call(base: &str, token: &str, name: &str, arguments: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name)
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": name,
                "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            }}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}
