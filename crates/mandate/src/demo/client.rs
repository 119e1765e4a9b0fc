//! How the demo's people and agents talk to Mandate: the admin API with a bearer token,
//! the OAuth token endpoint with `private_key_jwt`, and MCP over Streamable HTTP. Plain
//! HTTP, as any client in any language would.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use base64::Engine as _;
use mandate_jose::{Alg, SigningKey};
use reqwest::Method;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The MCP revision the scripted agents speak (sessions, JSON or SSE answers).
const PROTOCOL_VERSION: &str = "2025-06-18";

/// An HTTP status and the JSON body (`Null` when there was none).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// The Mandate server, as reached over HTTP.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self { http, base })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    async fn form(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// A task token for `agent` under `mandate`, for the MCP gateway
    /// (`client_credentials` + `authorization_details`, `private_key_jwt`).
    pub async fn task_token(&self, agent: &Agent, mandate: &str) -> anyhow::Result<Reply> {
        let assertion = agent.assertion(&self.base)?;
        let details = json!([{"type": "mandate", "mandate_id": mandate}]).to_string();
        let resource = format!("{}/mcp", self.base);
        self.form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
                ("authorization_details", &details),
                ("resource", &resource),
            ],
        )
        .await
    }

    /// `actor` exchanges `subject_token` (RFC 8693) for a token narrowed to `scope`.
    pub async fn exchange(
        &self,
        actor: &Agent,
        subject_token: &str,
        scope: &str,
    ) -> anyhow::Result<Reply> {
        let client = actor.assertion(&self.base)?;
        let actor_token = actor.assertion(&self.base)?;
        self.form(
            "/oauth2/token",
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &client),
                ("subject_token", subject_token),
                ("subject_token_type", ACCESS_TOKEN),
                ("actor_token", &actor_token),
                ("actor_token_type", JWT),
                ("scope", scope),
            ],
        )
        .await
    }
}

/// An agent: its id at Mandate and the private half of the key it registered.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    key: SigningKey,
}

impl Agent {
    /// A fresh Ed25519 key; `id` is filled in once registered.
    pub fn generate(kid: &str) -> anyhow::Result<Self> {
        let key = SigningKey::generate(Alg::EdDSA, kid.to_owned())
            .map_err(|e| anyhow::anyhow!("cannot generate an agent key: {e}"))?;
        Ok(Self {
            id: String::new(),
            key,
        })
    }

    /// The public JWK to register.
    pub fn public_jwk(&self) -> Value {
        self.key.public_jwk().to_public_json()
    }

    /// A one-minute `private_key_jwt` assertion for the token endpoint of `issuer`.
    fn assertion(&self, issuer: &str) -> anyhow::Result<String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = chrono::Utc::now().timestamp();
        let jti = format!(
            "demo-{now}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let claims = json!({
            "iss": self.id, "sub": self.id, "aud": format!("{issuer}/oauth2/token"),
            "iat": now, "exp": now + 60, "jti": jti,
        });
        self.key
            .sign(serde_json::Map::new(), &serde_json::to_vec(&claims)?)
            .map_err(|e| anyhow::anyhow!("cannot sign an assertion: {e}"))
    }
}

/// The claims of a JWT, read without verifying it (to show what a token says; the
/// demo never prints a token itself).
pub fn claims(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// One MCP session with the gateway, as an agent holding `token`.
#[derive(Debug)]
pub struct Mcp {
    http: reqwest::Client,
    url: String,
    token: String,
    session: Option<String>,
    next_id: u64,
}

impl Mcp {
    pub fn new(api: &Api, token: String) -> Self {
        Self {
            http: api.http.clone(),
            url: format!("{}/mcp", api.base),
            token,
            session: None,
            next_id: 1,
        }
    }

    /// `initialize`, then `notifications/initialized`: the session's answer.
    pub async fn initialize(&mut self) -> anyhow::Result<Reply> {
        let reply = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "mandate-demo-agent", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        if reply.status == 200 {
            self.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await?;
        }
        Ok(reply)
    }

    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> anyhow::Result<Reply> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// A JSON-RPC request; the reply's body is the JSON-RPC response.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(&message).await?;
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(session.to_owned());
        }
        let status = response.status().as_u16();
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = response.text().await.unwrap_or_default();
        let body = if is_sse {
            // The answer is the event carrying our id with a result or an error;
            // progress and log notifications may come before it.
            text.lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
                .find(|event| {
                    event.get("id") == Some(&json!(id))
                        && (event.get("result").is_some() || event.get("error").is_some())
                })
                .unwrap_or(Value::Null)
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Ok(Reply { status, body })
    }

    async fn post(&self, message: &Value) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .json(message);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        request.send().await.context("POST /mcp")
    }
}
