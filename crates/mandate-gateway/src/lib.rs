//! The gateway: where an agent's tool call meets the mandate it acts under.
//!
//! ```text
//!   POST /mcp[/{server}] ─► Host/Origin, size ─► task token (signature, audience, DPoP,
//!        /proxy/{server}/…     revocation) ─► Caller (agent + mandate, read now)
//!                                   │
//!                                   ▼
//!                       enforce::authorize ─► decision durable in the ledger
//!                                   │ Allow                    │ Deny / Approval / Proposal
//!                                   ▼                          ▼
//!              credentials injected ─► upstream          JSON-RPC error (-32001)
//!              (HttpUpstream | StdioUpstream)            PDP/ledger failure: -32603
//! ```
//!
//! Tools are catalogued from what upstreams list: a tool the catalog does not know is
//! created with the risk tier its annotations imply; the operator may raise or lower it
//! afterwards, and a later change of annotations only ever raises it.

#![forbid(unsafe_code)]

mod catalog;
mod credentials;
mod drift;
mod enforce;
mod error;
mod held;
mod mcp;
mod proxy;
mod relay;
mod sessions;
mod usage;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use mandate_audit::NewEvent;
use mandate_core::{Ledger, Presented, Service, TokenService};
use mandate_domain::Mandate;
use mandate_mcp::Outcome;
use mandate_store::Store;
use serde_json::Value;
use tokio::sync::mpsc;

pub use catalog::{Catalog, HTTP, Listing, PROMPTS, RESOURCES, Snapshot};
pub use credentials::{Broker, Credentials, NoCredentials, SecretInput};
pub use drift::DriftPolicy;
pub use enforce::{Caller, Execution, Target, Verdict, arguments_hash, redact, scope_covers};
pub use error::GatewayError;
pub use webhook::Webhook;

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where clients reach this server (no trailing slash); the MCP resource is
    /// `{public_url}/mcp`, the HTTP proxy's `{public_url}/proxy`.
    pub public_url: String,
    /// How long a held call waits for a human (never past the mandate's expiry).
    pub approval_ttl: Duration,
    /// How long an upstream may take to answer one call.
    pub call_timeout: Duration,
    /// The largest request body accepted from a client.
    pub max_body_bytes: usize,
    /// Calls in flight per upstream; more wait, up to the call timeout.
    pub max_concurrent_per_upstream: usize,
    /// Record tool arguments in decision events (after redaction); otherwise only their hash.
    pub capture_arguments: bool,
    /// JSON pointers whose values are replaced by `[redacted]` wherever arguments are
    /// kept (decision events, approvals, proposals).
    pub redact: Vec<String>,
    /// Origins (scheme://host[:port]) allowed besides the public URL's and loopback.
    pub allowed_origins: Vec<String>,
    /// Notified of every new approval.
    pub webhook: Option<Webhook>,
    /// How long upstream tool lists are cached.
    pub catalog_ttl: Duration,
    /// When refused attempts raise a drift alert.
    pub drift: DriftPolicy,
}

impl GatewayConfig {
    pub fn new(public_url: &str) -> GatewayConfig {
        GatewayConfig {
            public_url: public_url.trim_end_matches('/').to_owned(),
            approval_ttl: Duration::from_secs(15 * 60),
            call_timeout: Duration::from_secs(60),
            max_body_bytes: 1024 * 1024,
            max_concurrent_per_upstream: 64,
            capture_arguments: false,
            redact: Vec::new(),
            allowed_origins: Vec::new(),
            webhook: None,
            catalog_ttl: Duration::from_secs(30),
            drift: DriftPolicy {
                threshold: 0,
                revoke: false,
            },
        }
    }

    pub fn mcp_resource(&self) -> String {
        format!("{}/mcp", self.public_url)
    }

    pub fn proxy_resource(&self) -> String {
        format!("{}/proxy", self.public_url)
    }

    /// RFC 9728 metadata of the MCP resource.
    pub fn resource_metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            self.public_url
        )
    }
}

/// The gateway of one replica.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
/// The gateway's state, behind [`Gateway`]'s `Arc`.
pub struct Inner {
    service: Service,
    ledger: Ledger,
    tokens: Arc<TokenService>,
    config: GatewayConfig,
    catalog: Catalog,
    sessions: sessions::Sessions,
    credentials: Arc<dyn Credentials>,
    broker: Option<Arc<Broker>>,
    drift: drift::DriftCounts,
    usage: usage::UsageCounter,
    http: reqwest::Client,
    /// The public URL's host, parsed once (the DNS-rebinding check reads it per request).
    public_host: Option<String>,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Gateway {
    pub fn new(
        service: Service,
        ledger: Ledger,
        tokens: Arc<TokenService>,
        config: GatewayConfig,
        broker: Option<Arc<Broker>>,
    ) -> Gateway {
        let credentials: Arc<dyn Credentials> = match &broker {
            Some(b) => b.clone(),
            None => Arc::new(NoCredentials),
        };
        let catalog = Catalog::new(service.store().clone(), config.clone());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Gateway {
            inner: Arc::new(Inner {
                public_host: reqwest::Url::parse(&config.public_url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned)),
                service,
                ledger,
                tokens,
                config,
                catalog,
                sessions: sessions::Sessions::default(),
                credentials,
                broker,
                drift: drift::DriftCounts::default(),
                usage: usage::UsageCounter::default(),
                http,
            }),
        }
    }

    /// The gateway's HTTP routes: `/mcp`, `/mcp/{server}`, `/proxy/{server}/…` and the
    /// protected-resource metadata documents.
    pub fn router(&self) -> axum::Router {
        mcp::routes(self.clone()).merge(proxy::routes(self.clone()))
    }

    /// The credential broker, when a master key is configured.
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.as_ref()
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.service.store()
    }

    /// Appends an event and waits until it is durable.
    pub(crate) async fn append(&self, event: NewEvent) -> Result<(), GatewayError> {
        self.ledger.append(event).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit ledger refused a gateway event; failing closed");
            GatewayError::Unavailable("the decision could not be recorded".into())
        })
    }

    /// Appends an event without waiting (outcomes recorded after the call returned).
    pub(crate) fn append_later(&self, event: NewEvent) {
        self.ledger.append_detached(event);
    }

    /// Verifies a task token for `audience` and reads its agent and mandate as they
    /// are now. Every failure is `Unauthenticated` except a store failure.
    pub async fn authenticate(&self, presented: &Presented<'_>) -> Result<Caller, GatewayError> {
        let token = self
            .tokens
            .verify_access(presented)
            .await
            .map_err(GatewayError::from_token)?;
        let (Some(mandate_id), Some(agent_id)) = (token.mandate, token.actor()) else {
            return Err(GatewayError::Unauthenticated {
                description: Some("the token is not bound to a mandate".into()),
            });
        };
        let store = self.store();
        let agent = store
            .agent(token.tenant, agent_id)
            .await?
            .filter(|a| a.status == mandate_domain::AgentStatus::Active)
            .ok_or_else(|| GatewayError::Unauthenticated {
                description: Some("the token's agent is unknown or disabled".into()),
            })?;
        let mandate = store
            .mandate(token.tenant, mandate_id)
            .await?
            .ok_or_else(|| GatewayError::Unauthenticated {
                description: Some("the token's mandate is unknown".into()),
            })?;
        // A mandate that ended stops its tokens here, before the revocation list has
        // heard of them (the replica that ended it evicted its cached copy at once).
        let now = self.service.clock().now();
        if mandate.status != mandate_domain::MandateStatus::Active
            || now >= mandate.terms.expires_at
        {
            return Err(GatewayError::Unauthenticated {
                description: Some("the token's mandate is no longer active".into()),
            });
        }
        Ok(Caller::from_token(&token, agent, mandate))
    }

    /// Calls an upstream under the gateway's limits (concurrency, timeout) with the
    /// server's credential for `mandate`.
    pub async fn call_upstream(
        &self,
        listing: &Listing,
        mandate: &Mandate,
        method: &str,
        params: Option<Value>,
        events: Option<mpsc::Sender<Value>>,
    ) -> Result<Outcome, GatewayError> {
        let connected = self.catalog.connect(&listing.server).await?;
        let headers = self.credentials.headers(&listing.server, mandate).await?;
        let timeout = self.config.call_timeout;
        let server = listing.server.name.clone();
        let work = async {
            let _permit =
                connected.permits.acquire().await.map_err(|_| {
                    GatewayError::Unavailable("the gateway is shutting down".into())
                })?;
            Ok::<_, GatewayError>(
                connected
                    .upstream
                    .request(method, params, &headers, events)
                    .await?,
            )
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            GatewayError::Upstream(mandate_mcp::UpstreamError::Unavailable(format!(
                "upstream `{server}` did not answer within {} s",
                timeout.as_secs()
            )))
        })?
    }
}
