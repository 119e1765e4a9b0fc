//! oidc-provider (npm, pinned in `tests/oidc`) on loopback, for the tests that need a
//! real authorization server: the console's sign-in (`provider.mjs`) and an upstream
//! service's (`upstream.mjs`).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A script of `tests/oidc` serving on 127.0.0.1, killed when dropped.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    // Kept open: the provider writes nothing more, but a closed pipe would kill it.
    _stdout: BufReader<ChildStdout>,
}

impl OidcProvider {
    /// Runs `script` with `args` until it prints `{"issuer": …}`.
    pub fn start(script: &str, args: &[&str]) -> OidcProvider {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci --prefix crates/mandate/tests/oidc` (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("oidc-provider did not start ({e}): {line:?}"));
        OidcProvider {
            child,
            issuer: started["issuer"].as_str().unwrap().to_owned(),
            _stdout: stdout,
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MCP upstream of ours (Streamable HTTP, JSON answers): `tools/list` is open,
/// `tools/call whoami` asks the provider whose bearer token the call carries and
/// answers that person's `sub` (and, as structured content, all the provider says
/// of the token; a call without a valid token is refused). Every
/// `Authorization` it was sent is kept.
pub async fn whoami_upstream(issuer: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let (kept, issuer) = (kept.clone(), issuer.clone());
                async move {
                    use axum::response::IntoResponse as _;
                    let Some(id) = body.get("id").cloned() else {
                        return axum::http::StatusCode::ACCEPTED.into_response();
                    };
                    let result = match body["method"].as_str().unwrap_or_default() {
                        "initialize" => json!({
                            "protocolVersion": body["params"]["protocolVersion"],
                            "capabilities": {"tools": {}},
                            "serverInfo": {"name": "calendar", "version": "1"},
                        }),
                        "tools/list" => json!({"tools": [{
                            "name": "whoami", "description": "whose calendar this is",
                            "inputSchema": {"type": "object"},
                            "annotations": {"readOnlyHint": true},
                        }]}),
                        "tools/call" => {
                            let auth = headers
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            kept.lock().unwrap().push(auth.clone());
                            let who = reqwest::Client::new()
                                .get(format!("{issuer}/test/whoami"))
                                .header("authorization", auth)
                                .send()
                                .await
                                .unwrap();
                            if who.status() == 200 {
                                let who: Value = who.json().await.unwrap();
                                json!({"content": [{"type": "text", "text": who["sub"]}], "structuredContent": who})
                            } else {
                                json!({"isError": true, "content": [{"type": "text", "text": "no valid token"}]})
                            }
                        }
                        _ => json!({}),
                    };
                    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
                        .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}
