//! What each tenant's upstreams offer, and the connections to them.
//!
//! Tools are catalogued from what upstreams list (the entries themselves are core's:
//! `Calls::ensure_listed`).
//!
//! A snapshot per tenant maps namespaced names (`server.tool`) to the catalog entry
//! (risk tier, data class — what policy reads) and the upstream's own definition (what
//! clients are shown). Snapshots are rebuilt when older than `catalog_ttl`; an upstream
//! that cannot be listed (tried twice) contributes nothing until it can, and a snapshot
//! that lacks one is rebuilt after [`INCOMPLETE_TTL`] instead, so a blip in an upstream
//! does not hide its tools for the whole TTL.
//!
//! Nobody waits on a slow upstream more than once:
//! - a tenant's upstreams are listed at once, so a build waits for the slowest, not for
//!   the sum;
//! - a snapshot past its TTL whose catalog has not changed is still answered while one
//!   rebuild runs behind it (one per tenant at a time), for [`STALE_AT_MOST`] past its
//!   TTL at most; a build is waited for only when there is no snapshot, when the
//!   catalog changed (an operator's change is seen on the next request) or when an
//!   upstream announced a tool list change;
//! - a build someone waits for gives an upstream whose last listing failed
//!   [`RETRY_WAIT`] (not the call timeout); a rebuild behind the answer gives it the
//!   whole call timeout.
//!
//! What an upstream announces (list changes, resource updates) is heard here, for as
//! long as its connection lives: a tool list change forgets the tenant's snapshot at
//! once, and every announcement is passed on ([`Catalog::heard`]) to the streams of
//! this replica (`listen.rs`), which decide who is told.
//!
//! Resources and prompts are authorised per server, through catalog entries named
//! [`RESOURCES`] and [`PROMPTS`] (`files./resources`); plain HTTP servers through
//! [`HTTP`] with the method and path as arguments.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use mandate_core::calls::Listing;
use mandate_core::calls::per_person_credential;
use mandate_domain::{Mandate, ToolServer, ToolServerTransport};
use mandate_mcp::{
    Announcement, HttpUpstream, Limits, ListKind, StdioOptions, StdioUpstream, Upstream,
};
use mandate_types::{RiskTier, TenantId, ToolServerId};
use serde_json::Value;
use tokio::sync::{Semaphore, broadcast};

use crate::{Gateway, GatewayConfig, GatewayError};

/// The catalog entry that authorises reading a server's resources.
pub const RESOURCES: &str = "/resources";
/// The catalog entry that authorises a server's prompts.
pub const PROMPTS: &str = "/prompts";
/// The catalog entry that authorises requests to a plain HTTP API.
pub const HTTP: &str = "/http";

/// A tenant's catalog as of `at`.
#[derive(Debug)]
pub struct Snapshot {
    at: Instant,
    /// False when an upstream could not be listed: the snapshot is kept for
    /// [`INCOMPLETE_TTL`] at most.
    complete: bool,
    /// The store's catalog generation it was built at: a change made since rebuilds it.
    generation: u64,
    pub servers: BTreeMap<String, ToolServer>,
    /// By namespaced name.
    pub tools: BTreeMap<String, Arc<Listing>>,
    /// Each MCP server's `initialize` result (capabilities), when it could be reached.
    pub info: BTreeMap<String, Value>,
}

impl Snapshot {
    pub fn listing(&self, name: &str) -> Option<&Arc<Listing>> {
        self.tools.get(name)
    }

    /// The entry that authorises `entry` (`/resources`, …) on `server`.
    pub fn special(&self, server: &str, entry: &str) -> Option<&Arc<Listing>> {
        self.tools.get(&format!("{server}.{entry}"))
    }
}

#[derive(Debug)]
struct Connection {
    transport: ToolServerTransport,
    upstream: Arc<dyn Upstream>,
    permits: Arc<Semaphore>,
}

type Snapshots = Arc<RwLock<HashMap<TenantId, Arc<Snapshot>>>>;

/// How often one upstream's announcements are heard at most.
const HEARD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Upstream connections and per-tenant snapshots.
#[derive(Debug)]
pub struct Catalog {
    config: GatewayConfig,
    connections: Mutex<HashMap<ToolServerId, Arc<Connection>>>,
    snapshots: Snapshots,
    refreshing: Refreshing,
    /// MCP servers whose last listing failed.
    failing: Mutex<HashSet<ToolServerId>>,
    heard: broadcast::Sender<Notice>,
}

/// What an upstream announced: `what` is `None` when announcements were missed (the
/// reader lagged): anything may have changed.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub server: ToolServerId,
    pub tenant: TenantId,
    pub what: Option<Announcement>,
}

/// A tenant's snapshot as the cache holds it.
enum Cached {
    /// Within its TTL, at the catalog's current generation.
    Current(Arc<Snapshot>),
    /// Past its TTL (but not past [`STALE_AT_MOST`] beyond it), the catalog unchanged:
    /// answered while a rebuild runs behind it.
    Expired(Arc<Snapshot>),
    /// None, too old, or built before a change to the catalog: build and wait.
    Missing,
}

/// Tenants whose snapshot is being rebuilt behind the answers; one rebuild each.
type Refreshing = Arc<Mutex<HashSet<TenantId>>>;

/// A tenant's place in [`Refreshing`], given back when the rebuild ends, however it
/// ends.
struct RefreshGuard {
    refreshing: Refreshing,
    tenant: TenantId,
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        self.refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.tenant);
    }
}

/// An upstream with its concurrency limit.
#[derive(Debug, Clone)]
pub struct Connected {
    pub upstream: Arc<dyn Upstream>,
    pub permits: Arc<Semaphore>,
}

impl Catalog {
    pub(crate) fn new(config: GatewayConfig) -> Catalog {
        Catalog {
            config,
            connections: Mutex::new(HashMap::new()),
            snapshots: Snapshots::default(),
            refreshing: Refreshing::default(),
            failing: Mutex::new(HashSet::new()),
            heard: broadcast::channel(256).0,
        }
    }

    /// What upstreams announce from now on.
    pub(crate) fn heard(&self) -> broadcast::Receiver<Notice> {
        self.heard.subscribe()
    }

    /// Hears `upstream`'s announcements for as long as it lives: a tool list change
    /// forgets the tenant's snapshot (the next request lists the upstreams again), and
    /// each is passed on. What arrives together is taken as one burst, repeats
    /// dropped, and an upstream is heard at most once per [`HEARD_AT_MOST_EVERY`]: a
    /// flood of announcements costs one rebuild and one look, not one each.
    fn hear(&self, server: &ToolServer, upstream: &Arc<dyn Upstream>) {
        use broadcast::error::{RecvError, TryRecvError};
        let mut announcements = upstream.announcements();
        let (heard, snapshots) = (self.heard.clone(), self.snapshots.clone());
        let (id, tenant) = (server.id, server.tenant_id);
        tokio::spawn(async move {
            loop {
                let mut burst = match announcements.recv().await {
                    Ok(a) => vec![Some(a)],
                    Err(RecvError::Lagged(_)) => vec![None],
                    Err(RecvError::Closed) => return,
                };
                loop {
                    let next = match announcements.try_recv() {
                        Ok(a) => Some(a),
                        Err(TryRecvError::Lagged(_)) => None,
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    };
                    if !burst.contains(&next) {
                        burst.push(next);
                    }
                }
                let tools = Some(Announcement::ListChanged(ListKind::Tools));
                if burst.iter().any(|what| what.is_none() || *what == tools) {
                    forget(&snapshots, tenant);
                }
                for what in burst {
                    let _ = heard.send(Notice {
                        server: id,
                        tenant,
                        what,
                    });
                }
                tokio::time::sleep(HEARD_AT_MOST_EVERY).await;
            }
        });
    }

    /// The connection to an MCP server, made (or remade, when its transport changed).
    pub async fn connect(&self, server: &ToolServer) -> Result<Connected, GatewayError> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = connections.get(&server.id)
            && c.transport == server.transport
        {
            return Ok(Connected {
                upstream: c.upstream.clone(),
                permits: c.permits.clone(),
            });
        }
        let upstream: Arc<dyn Upstream> = match &server.transport {
            ToolServerTransport::McpHttp { url } => {
                Arc::new(HttpUpstream::new(&server.name, url, Limits::default())?)
            }
            ToolServerTransport::McpStdio { command, args } => Arc::new(StdioUpstream::spawn(
                &server.name,
                StdioOptions {
                    command: command.clone(),
                    args: args.clone(),
                    env: Vec::new(),
                    limits: Limits::default(),
                    max_backoff: std::time::Duration::from_secs(30),
                },
            )),
            ToolServerTransport::Http { .. } => {
                return Err(GatewayError::Invalid(format!(
                    "tool server `{}` is a plain HTTP API; reach it at /proxy/{}/",
                    server.name, server.name
                )));
            }
        };
        let connection = Arc::new(Connection {
            transport: server.transport.clone(),
            upstream,
            permits: Arc::new(Semaphore::new(self.config.max_concurrent_per_upstream)),
        });
        connections.insert(server.id, connection.clone());
        self.hear(server, &connection.upstream);
        Ok(Connected {
            upstream: connection.upstream.clone(),
            permits: connection.permits.clone(),
        })
    }

    /// Forgets a tenant's snapshot (after the operator changed the catalog).
    pub fn invalidate(&self, tenant: TenantId) {
        forget(&self.snapshots, tenant);
    }

    /// The tenant's snapshot, and whether it may be answered with (see [`Cached`]);
    /// the catalog is at `generation` now.
    fn cached(&self, tenant: TenantId, generation: u64) -> Cached {
        let snapshots = self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(s) = snapshots
            .get(&tenant)
            .filter(|s| s.generation == generation)
        else {
            return Cached::Missing;
        };
        let ttl = if s.complete {
            self.config.catalog_ttl
        } else {
            self.config.catalog_ttl.min(INCOMPLETE_TTL)
        };
        let age = s.at.elapsed();
        if age < ttl {
            Cached::Current(s.clone())
        } else if age < ttl.saturating_add(self.stale_at_most()) {
            Cached::Expired(s.clone())
        } else {
            Cached::Missing
        }
    }

    /// How long past its TTL a snapshot is answered with while it is rebuilt:
    /// [`STALE_AT_MOST`], or twice the call timeout (a rebuild's listings may take
    /// one) when that is longer.
    fn stale_at_most(&self) -> Duration {
        STALE_AT_MOST.max(self.config.call_timeout.saturating_mul(2))
    }

    /// Keeps `snapshot` unless the one kept meanwhile is newer (built later, or at a
    /// later generation): a rebuild behind the answers may end after a build that
    /// someone waited for.
    fn keep(&self, tenant: TenantId, snapshot: Arc<Snapshot>) {
        let mut snapshots = self
            .snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let newer_kept = snapshots
            .get(&tenant)
            .is_some_and(|s| s.generation > snapshot.generation || s.at > snapshot.at);
        if !newer_kept {
            snapshots.insert(tenant, snapshot);
        }
    }

    /// The tenant's place for a rebuild behind the answers; `None` while one runs.
    fn refresh(&self, tenant: TenantId) -> Option<RefreshGuard> {
        let fresh = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant);
        fresh.then(|| RefreshGuard {
            refreshing: self.refreshing.clone(),
            tenant,
        })
    }

    /// Whether `server`'s last listing failed.
    fn failing(&self, server: ToolServerId) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&server)
    }

    /// Remembers how `server`'s listing went.
    fn listed(&self, server: ToolServerId, ok: bool) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if ok {
            failing.remove(&server);
        } else {
            failing.insert(server);
        }
    }
}

/// How long a snapshot that lacks an upstream it could not list is used: the next
/// request after it tries that upstream again.
pub const INCOMPLETE_TTL: Duration = Duration::from_secs(1);

/// How long past its TTL a snapshot is still answered with while it is rebuilt behind
/// the answers, at least (twice the call timeout when that is longer). Past that (a
/// rebuild that keeps failing, a store that is down), the next request builds one and
/// waits for it.
pub const STALE_AT_MOST: Duration = Duration::from_secs(120);

/// How long a build someone waits for waits on an upstream whose last listing failed.
pub const RETRY_WAIT: Duration = Duration::from_secs(2);

fn forget(snapshots: &Snapshots, tenant: TenantId) {
    snapshots
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&tenant);
}

/// Files a catalogued entry under its namespaced name (`server.tool`).
fn keep(
    into: &mut BTreeMap<String, Arc<Listing>>,
    server: &ToolServer,
    tool: mandate_domain::Tool,
    definition: Value,
) {
    into.insert(
        format!("{}.{}", server.name, tool.name),
        Arc::new(Listing {
            server: server.clone(),
            tool,
            definition,
        }),
    );
}

fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Gateway {
    /// The caller's tenant's catalog: the one kept while it is current; past its TTL
    /// the one kept still, while it is rebuilt behind the answer; otherwise built from
    /// the upstreams (see the module's notes).
    pub async fn snapshot(&self, mandate: &Mandate) -> Result<Arc<Snapshot>, GatewayError> {
        // Read before the upstreams are listed: a change made while they are is not
        // lost (at worst the next request builds once more).
        let generation = self.calls.catalog_generation();
        match self.catalog.cached(mandate.tenant_id, generation) {
            Cached::Current(s) => Ok(s),
            Cached::Expired(s) => {
                self.rebuild_behind(mandate, generation);
                Ok(s)
            }
            Cached::Missing => self.build_snapshot(mandate, generation, true).await,
        }
    }

    /// Rebuilds the tenant's snapshot in a task of its own, unless one already is.
    fn rebuild_behind(&self, mandate: &Mandate, generation: u64) {
        let Some(guard) = self.catalog.refresh(mandate.tenant_id) else {
            return;
        };
        let (gateway, mandate) = (self.clone(), mandate.clone());
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = gateway.build_snapshot(&mandate, generation, false).await {
                tracing::warn!(error = %e, "cannot rebuild a tenant's catalog; the previous one is used a while longer");
            }
        });
    }

    /// Builds the tenant's snapshot at `generation` and keeps it. `waited`: someone
    /// waits for it (see [`RETRY_WAIT`]).
    async fn build_snapshot(
        &self,
        mandate: &Mandate,
        generation: u64,
        waited: bool,
    ) -> Result<Arc<Snapshot>, GatewayError> {
        let tenant = mandate.tenant_id;
        let mut snapshot = Snapshot {
            at: Instant::now(),
            complete: true,
            generation,
            servers: BTreeMap::new(),
            tools: BTreeMap::new(),
            info: BTreeMap::new(),
        };
        let servers = self.calls.tool_servers(tenant).await?;
        // Every MCP server is listed at once; what they listed is catalogued in order.
        let listings: Vec<_> = servers
            .iter()
            .map(|server| {
                if let ToolServerTransport::Http { .. } = server.transport {
                    return None;
                }
                let (gateway, server, mandate) = (self.clone(), server.clone(), mandate.clone());
                Some(tokio::spawn(async move {
                    gateway.list_for_snapshot(&server, &mandate, waited).await
                }))
            })
            .collect();
        for (server, listing) in servers.into_iter().zip(listings) {
            let known = self.calls.catalogued(&server).await?;
            let Some(listing) = listing else {
                let tool = self
                    .calls
                    .ensure_listed(&server, &known, HTTP, &Value::Null, Some(RiskTier::Write))
                    .await?;
                keep(&mut snapshot.tools, &server, tool, Value::Null);
                snapshot.servers.insert(server.name.clone(), server);
                continue;
            };
            let listed = listing.await.unwrap_or_else(|e| {
                Err(GatewayError::Unavailable(format!(
                    "listing an upstream ended abnormally: {e}"
                )))
            });
            match listed {
                Ok((info, definitions)) => {
                    self.catalogue_listed(&server, &known, definitions, &info, &mut snapshot.tools)
                        .await?;
                    snapshot.info.insert(server.name.clone(), info);
                }
                Err(e) => {
                    snapshot.complete = false;
                    tracing::warn!(server = %server.name, error = %e, "cannot list an upstream's tools; its tools are unavailable until it answers");
                }
            }
            snapshot.servers.insert(server.name.clone(), server);
        }
        let snapshot = Arc::new(snapshot);
        self.catalog.keep(tenant, snapshot.clone());
        Ok(snapshot)
    }

    /// Lists `server` before any mandate exists and catalogues what it lists (the
    /// consent screen's offer). Only the upstream's answer is awaited within `within`;
    /// no lock or store connection is held meanwhile, and the catalogue writes run
    /// after it.
    pub(crate) async fn catalogue_server(
        &self,
        server: &ToolServer,
        within: Duration,
    ) -> Result<(), GatewayError> {
        let headers = self.credentials.listing_headers(server).await?;
        let (info, definitions) = self.list_upstream(server, &headers, within).await?;
        let known = self.calls.catalogued(server).await?;
        let mut tools = BTreeMap::new();
        self.catalogue_listed(server, &known, definitions, &info, &mut tools)
            .await
    }

    /// Catalogues what an MCP server listed (its tools, and the `/resources` and
    /// `/prompts` entries its capabilities call for) into `into`, by namespaced name.
    pub(crate) async fn catalogue_listed(
        &self,
        server: &ToolServer,
        known: &HashMap<String, mandate_domain::Tool>,
        definitions: Vec<Value>,
        info: &Value,
        into: &mut BTreeMap<String, Arc<Listing>>,
    ) -> Result<(), GatewayError> {
        for (entry, capability) in [(RESOURCES, "resources"), (PROMPTS, "prompts")] {
            if info
                .get("capabilities")
                .and_then(|c| c.get(capability))
                .is_some()
            {
                let tool = self
                    .calls
                    .ensure_listed(server, known, entry, &Value::Null, Some(RiskTier::Read))
                    .await?;
                keep(into, server, tool, Value::Null);
            }
        }
        for definition in definitions {
            let Some(name) = definition.get("name").and_then(Value::as_str) else {
                continue;
            };
            if !valid_tool_name(name) {
                tracing::warn!(server = %server.name, "upstream listed a tool with an unusable name; skipped");
                continue;
            }
            let tool = self
                .calls
                .ensure_listed(server, known, name, &definition, None)
                .await?;
            keep(into, server, tool, definition);
        }
        Ok(())
    }

    /// Lists an upstream for a snapshot, with the headers its listing carries, and once
    /// more at once when the first attempt failed before the deadline: a pooled
    /// connection the upstream closed just as it was reused fails a request that a new
    /// connection answers. Listing reads only, so asking again is safe; a listing that
    /// ran out of time is not tried again. The deadline is the call timeout, or
    /// [`RETRY_WAIT`] when someone waits (`waited`) and the server's last listing failed.
    async fn list_for_snapshot(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
        waited: bool,
    ) -> Result<(Value, Vec<Value>), GatewayError> {
        // A server called as each person is listed without anyone's token: the
        // snapshot is shared by the whole tenant.
        let headers = if per_person_credential(server) {
            self.credentials.listing_headers(server).await
        } else {
            self.credentials.headers(server, mandate).await
        }?;
        let mut deadline = self.config.call_timeout;
        if waited && self.catalog.failing(server.id) {
            deadline = deadline.min(RETRY_WAIT);
        }
        let started = Instant::now();
        let listed = match self.list_upstream(server, &headers, deadline).await {
            Err(e) if started.elapsed() < deadline => {
                tracing::debug!(server = %server.name, error = %e, "listing an upstream failed; asking once more");
                let left = deadline.saturating_sub(started.elapsed());
                self.list_upstream(server, &headers, left).await
            }
            listed => listed,
        };
        self.catalog.listed(server.id, listed.is_ok());
        listed
    }

    /// An upstream's `initialize` result and its tools (all pages, at most 50), within
    /// `deadline`.
    pub(crate) async fn list_upstream(
        &self,
        server: &ToolServer,
        headers: &mandate_mcp::ExtraHeaders,
        deadline: Duration,
    ) -> Result<(Value, Vec<Value>), GatewayError> {
        let connected = self.catalog.connect(server).await?;
        let work = async {
            let info = connected.upstream.server_info(headers).await?;
            let mut tools = Vec::new();
            if info
                .get("capabilities")
                .and_then(|c| c.get("tools"))
                .is_none()
            {
                return Ok::<_, GatewayError>((info, tools));
            }
            let mut cursor: Option<Value> = None;
            for _ in 0..50 {
                let params = cursor.take().map(|c| serde_json::json!({"cursor": c}));
                let result = connected
                    .upstream
                    .request("tools/list", params, headers, None)
                    .await?
                    .map_err(|e| {
                        GatewayError::Upstream(mandate_mcp::UpstreamError::Protocol(format!(
                            "upstream `{}` refused tools/list: {e}",
                            server.name
                        )))
                    })?;
                if let Some(list) = result.get("tools").and_then(Value::as_array) {
                    tools.extend(list.iter().cloned());
                }
                match result.get("nextCursor") {
                    Some(c) if !c.is_null() => cursor = Some(c.clone()),
                    _ => break,
                }
            }
            Ok((info, tools))
        };
        tokio::time::timeout(deadline, work).await.map_err(|_| {
            GatewayError::Upstream(mandate_mcp::UpstreamError::Unavailable(format!(
                "upstream `{}` did not list its tools in time",
                server.name
            )))
        })?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails loudly")]

    use async_trait::async_trait;
    use mandate_mcp::{ExtraHeaders, Outcome, UpstreamError};
    use tokio::sync::mpsc;

    use super::*;

    /// An upstream that only announces.
    #[derive(Debug)]
    struct Announcing(broadcast::Sender<Announcement>);

    #[async_trait]
    impl Upstream for Announcing {
        async fn request(
            &self,
            _: &str,
            _: Option<Value>,
            _: &ExtraHeaders,
            _: Option<mpsc::Sender<Value>>,
        ) -> Result<Outcome, UpstreamError> {
            Err(UpstreamError::Unavailable("no".into()))
        }
        async fn notify(
            &self,
            _: &str,
            _: Option<Value>,
            _: &ExtraHeaders,
        ) -> Result<(), UpstreamError> {
            Ok(())
        }
        async fn respond(
            &self,
            _: Value,
            _: Outcome,
            _: &ExtraHeaders,
        ) -> Result<(), UpstreamError> {
            Ok(())
        }
        async fn server_info(&self, _: &ExtraHeaders) -> Result<Value, UpstreamError> {
            Ok(Value::Null)
        }
        fn announcements(&self) -> broadcast::Receiver<Announcement> {
            self.0.subscribe()
        }
    }

    /// A flood of announcements is heard as one burst, repeats dropped: the tenant's
    /// snapshot forgotten, each distinct announcement passed on once.
    #[tokio::test]
    async fn a_flood_of_announcements_is_heard_once() {
        let catalog = Catalog::new(GatewayConfig::new("http://127.0.0.1"));
        let server = ToolServer {
            id: ToolServerId::generate(),
            tenant_id: TenantId::generate(),
            name: "s".into(),
            transport: ToolServerTransport::McpHttp {
                url: "http://127.0.0.1/mcp".into(),
            },
            credential_ref: None,
            step_up: false,
            created_at: Default::default(),
        };
        let (tx, _) = broadcast::channel(1024);
        let upstream: Arc<dyn Upstream> = Arc::new(Announcing(tx.clone()));
        let mut heard = catalog.heard();
        catalog.hear(&server, &upstream);
        let updated = Announcement::ResourceUpdated {
            uri: "test://a".into(),
        };
        for _ in 0..30 {
            tx.send(Announcement::ListChanged(ListKind::Tools)).unwrap();
            tx.send(updated.clone()).unwrap();
        }
        let mut got = Vec::new();
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), heard.recv()).await {
            assert_eq!((n.server, n.tenant), (server.id, server.tenant_id));
            got.push(n.what);
        }
        // The first one may be heard on its own before the rest arrive.
        assert!(got.len() <= 4, "{got:?}");
        let tools = Some(Announcement::ListChanged(ListKind::Tools));
        assert!(
            got.contains(&tools) && got.contains(&Some(updated)),
            "{got:?}"
        );
    }
}
