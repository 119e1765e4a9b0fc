//! The gateway: where an agent's tool call meets the mandate it acts under.
//!
//! ```text
//!   POST /mcp[/{server}] ─► Host/Origin, size ─► task token (signature, audience, DPoP,
//!        /proxy/{server}/…     revocation) ─► Caller (agent + mandate, read now)
//!                                   │ (mandate_core::calls::Calls::authenticate)
//!                                   ▼
//!   tools/call parsed once (ToolCall) ─► mandate_core::calls::Calls::authorize
//!                                   │ (policy ─► approvals / proposals / budget ─► ledger)
//!                                   │ Allow                    │ Deny / Approval / Proposal
//!                                   ▼                          ▼
//!              credentials injected ─► upstream          JSON-RPC error (-32010)
//!              (HttpUpstream | StdioUpstream)            PDP/ledger failure: -32603
//! ```
//!
//! This crate is transport: MCP over Streamable HTTP (`mcp/`: the transport and its
//! sessions, method routing, aggregation across servers), the HTTP proxy, the
//! upstream connections and the catalog snapshots built from their listings. Every
//! decision, the held calls, the vault and the catalog's entries are use cases of
//! `mandate-core` (`calls`); the gateway holds no store.

#![forbid(unsafe_code)]

mod catalog;
mod edge;
mod error;
mod listen;
mod mcp;
mod proxy;
mod relay;
mod sessions;
mod webhook;

use mandate_core::trace::TraceContext;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use mandate_core::calls::{
    Broker, CallError, CallSettings, Calls, Credentials, DriftPolicy, Forwarder, NoCredentials,
};
use mandate_core::{Ledger, Service, TokenService};
use mandate_domain::{Mandate, ToolServer};
use mandate_mcp::Outcome;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use catalog::{Catalog, HTTP, Listing, PROMPTS, RESOURCES, Snapshot};
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

    /// RFC 9728 metadata of the MCP resource, or of one server's (`/mcp/{server}`:
    /// the well-known path inserted before the resource's path, §3.1). The server's
    /// name comes from the request's path and goes into a challenge header: a name that
    /// is not plain (letters, digits, `.`, `_`, `-`) is no server's, and gets the
    /// metadata of `/mcp` instead of reaching the header.
    pub fn resource_metadata_url(&self, server: Option<&str>) -> String {
        match server.filter(|s| mandate_types::is_plain_name(s)) {
            Some(server) => format!(
                "{}/.well-known/oauth-protected-resource/mcp/{server}",
                self.public_url
            ),
            None => format!(
                "{}/.well-known/oauth-protected-resource/mcp",
                self.public_url
            ),
        }
    }

    /// RFC 9728 metadata of the HTTP proxy resource.
    pub fn proxy_metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/proxy",
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
    calls: Calls,
    config: GatewayConfig,
    catalog: Catalog,
    sessions: sessions::Sessions,
    /// Upstream calls waiting on a 2026-07-28 client's answer (`mcp/asked.rs`).
    asks: mcp::asked::Asks,
    /// Open `subscriptions/listen` streams and the poller's last look (`listen.rs`).
    listeners: listen::Listeners,
    /// The revocation list a parked call or an open stream looks at.
    tokens: Arc<TokenService>,
    clock: Arc<dyn mandate_types::Clock>,
    credentials: Arc<dyn Credentials>,
    broker: Option<Arc<Broker>>,
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
    ) -> Result<Gateway, GatewayError> {
        let credentials: Arc<dyn Credentials> = match &broker {
            Some(b) => b.clone(),
            None => Arc::new(NoCredentials),
        };
        // Upstreams behind `/proxy` get the credentials the vault injects: only to the
        // registered address, so no redirect and no proxy from the environment
        // (`HTTP_PROXY` and friends). Webhook notices carry no credential (their body
        // is signed) and may need an egress proxy: theirs is the environment's.
        let client = |no_proxy: bool| {
            let builder = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none());
            if no_proxy {
                builder.no_proxy()
            } else {
                builder
            }
            .build()
            // Never a default client in its place: that one follows redirects.
            .map_err(|e| {
                GatewayError::Unavailable(format!("the upstream HTTP client cannot be built: {e}"))
            })
        };
        let http = client(true)?;
        let webhook_http = client(false)?;
        let settings = CallSettings {
            approval_ttl: config.approval_ttl,
            capture_arguments: config.capture_arguments,
            redact: config.redact.clone(),
            drift: config.drift,
        };
        let clock = service.clock().clone();
        let notifier = Arc::new(webhook::Notices {
            webhook: config.webhook.clone(),
            public_url: config.public_url.clone(),
            clock: service.clock().clone(),
            http: webhook_http,
        });
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| Inner {
            // The core executes proposals through this gateway; it holds it weakly, so
            // the two do not keep each other alive.
            calls: Calls::new(
                service,
                ledger,
                tokens.clone(),
                settings,
                notifier,
                Arc::new(Upstreams(me.clone())),
            ),
            public_host: reqwest::Url::parse(&config.public_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned)),
            catalog: Catalog::new(config.clone()),
            config,
            sessions: sessions::Sessions::default(),
            clock,
            asks: mcp::asked::Asks::default(),
            listeners: listen::Listeners::default(),
            tokens,
            credentials,
            broker,
            http,
        });
        Ok(Gateway { inner })
    }

    /// Whether what `caller` holds open (a parked call, a stream) must end: its token
    /// is on the revocation list (revoked, or its mandate ended), its token expired, or
    /// its mandate's expiry passed.
    pub(crate) fn caller_ended(&self, caller: &mandate_core::calls::Caller) -> bool {
        let now = self.clock.now();
        caller
            .jti
            .as_deref()
            .is_some_and(|jti| self.tokens.is_revoked(jti))
            || caller.token_expired(now)
            || now >= caller.mandate.terms.expires_at
    }

    /// The gateway's HTTP routes: `/mcp`, `/mcp/{server}`, `/proxy/{server}/…` and the
    /// protected-resource metadata documents.
    pub fn router(&self) -> axum::Router {
        mcp::routes(self.clone()).merge(proxy::routes(self.clone()))
    }

    /// The use cases of calls (decisions, held calls, the vault) this gateway serves.
    pub fn calls(&self) -> &Calls {
        &self.calls
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

    /// Calls an upstream under the gateway's limits (concurrency, timeout) with the
    /// server's credential for `mandate`.
    pub async fn call_upstream(
        &self,
        listing: &Listing,
        mandate: &Mandate,
        method: &str,
        mut params: Option<Value>,
        events: Option<mpsc::Sender<Value>>,
        trace: Option<&TraceContext>,
    ) -> Result<Outcome, GatewayError> {
        let connected = self.catalog.connect(&listing.server).await?;
        let mut headers = self.credentials.headers(&listing.server, mandate).await?;
        // The trace goes on in the HTTP headers and (MCP, SEP-414) in `params._meta`,
        // where a client's own value is replaced, never passed on as sent.
        if let Some(trace) = trace {
            trace.insert_into(&mut headers);
        }
        if let Some(params) = params.as_mut() {
            TraceContext::replace_in_meta(trace, params);
        }
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

/// The gateway as the core sees it when a human executes a proposal.
#[derive(Debug)]
struct Upstreams(Weak<Inner>);

impl Upstreams {
    fn gateway(&self) -> Result<Gateway, CallError> {
        self.0
            .upgrade()
            .map(|inner| Gateway { inner })
            .ok_or_else(|| CallError::Unavailable("the gateway is shutting down".into()))
    }
}

#[async_trait]
impl Forwarder for Upstreams {
    async fn find(&self, mandate: &Mandate, name: &str) -> Result<Option<Arc<Listing>>, CallError> {
        let snapshot = self.gateway()?.snapshot(mandate).await?;
        Ok(snapshot.listing(name).cloned())
    }

    async fn call_tool(
        &self,
        listing: &Listing,
        mandate: &Mandate,
        arguments: &Value,
    ) -> Result<Outcome, CallError> {
        let params = json!({"name": listing.tool.name, "arguments": arguments});
        Ok(self
            .gateway()?
            .call_upstream(listing, mandate, "tools/call", Some(params), None, None)
            .await?)
    }

    async fn catalogue(&self, server: &ToolServer, within: Duration) -> Result<(), CallError> {
        Ok(self.gateway()?.catalogue_server(server, within).await?)
    }
}
