//! A Mandate app on a real SQLite store in a temporary directory, driven in-process.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use http_body_util::BodyExt as _;
use mandate_core::{Bootstrap, Service};
use mandate_server::Metrics;
use mandate_store_sql::SqliteStore;
use mandate_types::FixedClock;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub struct Api {
    pub app: Router,
    pub clock: FixedClock,
    pub service: Service,
    pub admin: String,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts an RFC 9457 problem with this status and type slug; returns its detail.
    #[track_caller]
    pub fn problem(&self, status: u16, slug: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap()),
            Some("application/problem+json"),
            "body: {}",
            self.body
        );
        assert_eq!(
            self.body["type"],
            format!("urn:mandate:problem:{slug}"),
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        let detail = self.body["detail"].as_str().unwrap().to_owned();
        assert!(!detail.is_empty());
        detail
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

impl Api {
    /// Another replica's token service on the same store, issuing as `issuer` (its own
    /// ledger writer, key, revocation list and memory of verified tokens): what one
    /// replica did holds on the other, and a token is checked there in full.
    pub async fn second_token_service(&self, issuer: &str) -> mandate_core::TokenService {
        let store = self.service.store().clone();
        let clock = self.service.clock().clone();
        let (audit_key, _) = mandate_audit::SigningKey::generate().unwrap();
        let ledger = mandate_core::Ledger::start(
            store.clone(),
            clock.clone(),
            Arc::new(audit_key),
            mandate_core::LedgerConfig::default(),
        );
        mandate_core::TokenService::start(
            store,
            clock,
            self.service.policies().clone(),
            ledger,
            mandate_core::TokenConfig::new(issuer, [7; 32]),
            mandate_jose::SigningKey::generate(
                mandate_jose::Alg::EdDSA,
                mandate_token::random_id("k").unwrap(),
            )
            .unwrap(),
        )
        .await
        .unwrap()
    }

    pub async fn new() -> Api {
        Api::build(None).await
    }

    /// With the token service (and the audit ledger it writes to).
    pub async fn with_tokens() -> Api {
        Api::with_tokens_as(|_| {}, |t| t).await
    }

    /// With the token service and the gateway's routes (`/mcp`, RFC 9728 metadata).
    pub async fn with_gateway() -> Api {
        let config = mandate_core::TokenConfig::new(mandate_server::DEFAULT_PUBLIC_URL, [7; 32]);
        Api::build_with(Some((config, Box::new(|t| t))), true).await
    }

    /// With the token service, configured and extended by the caller.
    pub async fn with_tokens_as(
        configure: impl FnOnce(&mut mandate_core::TokenConfig),
        extend: impl FnOnce(mandate_core::TokenService) -> mandate_core::TokenService + 'static,
    ) -> Api {
        let mut config =
            mandate_core::TokenConfig::new(mandate_server::DEFAULT_PUBLIC_URL, [7; 32]);
        configure(&mut config);
        let extend: Box<dyn FnOnce(mandate_core::TokenService) -> mandate_core::TokenService> =
            Box::new(extend);
        Api::build(Some((config, extend))).await
    }

    #[allow(clippy::type_complexity, reason = "test support")]
    async fn build(
        tokens: Option<(
            mandate_core::TokenConfig,
            Box<dyn FnOnce(mandate_core::TokenService) -> mandate_core::TokenService>,
        )>,
    ) -> Api {
        Api::build_with(tokens, false).await
    }

    #[allow(clippy::type_complexity, reason = "test support")]
    async fn build_with(
        tokens: Option<(
            mandate_core::TokenConfig,
            Box<dyn FnOnce(mandate_core::TokenService) -> mandate_core::TokenService>,
        )>,
        with_gateway: bool,
    ) -> Api {
        let mut gateway = None;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn mandate_store::Store> =
            Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let clock = FixedClock::new(start_time());
        let mut service = Service::new(store.clone(), Arc::new(clock.clone()));
        let Bootstrap::Created { admin, .. } = service.bootstrap().await.unwrap() else {
            panic!("a new store bootstraps");
        };
        if let Some((config, extend)) = tokens {
            let (audit_key, _) = mandate_audit::SigningKey::generate().unwrap();
            let ledger = mandate_core::Ledger::start(
                store.clone(),
                Arc::new(clock.clone()),
                Arc::new(audit_key),
                mandate_core::LedgerConfig::default(),
            );
            let key =
                mandate_jose::SigningKey::generate(mandate_jose::Alg::EdDSA, "k1".into()).unwrap();
            let tokens = mandate_core::TokenService::start(
                store,
                Arc::new(clock.clone()),
                service.policies().clone(),
                ledger.clone(),
                config,
                key,
            )
            .await
            .unwrap();
            let tokens = Arc::new(extend(tokens));
            service = service.with_tokens(tokens.clone());
            if with_gateway {
                gateway = Some(
                    mandate_gateway::Gateway::new(
                        service.clone(),
                        ledger,
                        tokens,
                        mandate_gateway::GatewayConfig::new(mandate_server::DEFAULT_PUBLIC_URL),
                        None,
                    )
                    .unwrap(),
                );
            }
        }
        let app = mandate_server::app_with_gateway(
            service.clone(),
            Metrics::new("sqlite"),
            mandate_server::DEFAULT_PUBLIC_URL,
            gateway,
        );
        Api {
            app,
            clock,
            service,
            admin: admin.secret.expose().clone(),
            _dir: dir,
        }
    }

    pub async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "500: {body}");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(body).unwrap())),
            None => request.body(Body::empty()),
        };
        self.raw(request.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }
}

/// People and an agent, each with an API token.
pub struct World {
    pub api: Api,
    pub alice: String,
    pub alice_token: String,
    pub bob: String,
    pub bob_token: String,
    pub carol_token: String,
    pub agent: String,
    pub agent_token: String,
    pub other_agent: String,
}

impl World {
    pub async fn new() -> World {
        let api = Api::new().await;
        let mut humans = Vec::new();
        for (name, email) in [
            ("Alice", "alice@example.com"),
            ("Bob", "bob@example.com"),
            ("Carol", "carol@example.com"),
        ] {
            let human = api
                .post(
                    "/v1/humans",
                    &api.admin,
                    &json!({"display_name": name, "email": email}),
                )
                .await;
            let id = human.ok(201)["id"].as_str().unwrap().to_owned();
            let token = api
                .post(
                    &format!("/v1/humans/{id}/tokens"),
                    &api.admin,
                    &json!({"label": "test"}),
                )
                .await;
            humans.push((id, token.ok(201)["token"].as_str().unwrap().to_owned()));
        }
        let [(alice, alice_token), (bob, bob_token), (_, carol_token)] =
            <[_; 3]>::try_from(humans).ok().unwrap();
        let mut agents = Vec::new();
        for name in ["travel-bot", "other-bot"] {
            let agent = api
                .post(
                    "/v1/agents",
                    &api.admin,
                    &json!({"name": name, "owner": alice}),
                )
                .await;
            agents.push(agent.ok(201)["id"].as_str().unwrap().to_owned());
        }
        let agent = agents[0].clone();
        let agent_token = api
            .post(
                &format!("/v1/agents/{agent}/tokens"),
                &api.admin,
                &json!({"label": "test"}),
            )
            .await
            .ok(201)["token"]
            .as_str()
            .unwrap()
            .to_owned();
        World {
            api,
            alice,
            alice_token,
            bob,
            bob_token,
            carol_token,
            agent,
            agent_token,
            other_agent: agents[1].clone(),
        }
    }

    /// Terms for the agent acting for Alice, affecting Bob's data; valid for an hour.
    pub fn terms(&self) -> Value {
        json!({
            "agent_id": self.agent,
            "human_id": self.alice,
            "intent": "Book a flight to Lisbon for the offsite",
            "purpose": "travel-booking",
            "scope": {"tools": [
                {"tool": "flights.search"},
                {"tool": "flights.book", "constraints": {"amount": {"max": 50000}}}
            ]},
            "data_ceiling": "confidential",
            "mode": "execute",
            "budgets": {"max_calls": 20, "max_amount": 50000, "currency": "EUR"},
            "approval": {"tiers": ["high_impact"]},
            "owners": [self.bob],
            "expires_at": (start_time() + Duration::hours(1)).to_rfc3339(),
        })
    }

    /// A mandate the agent requested for itself, still `requested`.
    pub async fn requested(&self) -> String {
        let reply = self
            .api
            .post("/v1/mandates", &self.agent_token, &self.terms())
            .await;
        assert_eq!(reply.ok(201)["status"], "requested");
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// A mandate both Alice and Bob granted.
    pub async fn active(&self) -> String {
        let id = self.requested().await;
        for token in [&self.alice_token, &self.bob_token] {
            self.api
                .post(
                    &format!("/v1/mandates/{id}/consent"),
                    token,
                    &json!({"decision": "granted"}),
                )
                .await
                .ok(200);
        }
        assert_eq!(self.mandate(&id).await["status"], "active");
        id
    }

    pub async fn mandate(&self, id: &str) -> Value {
        self.api
            .get(&format!("/v1/mandates/{id}"), &self.api.admin)
            .await
            .ok(200)
            .clone()
    }
}
