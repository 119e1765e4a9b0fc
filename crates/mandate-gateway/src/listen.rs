//! List changes and resource updates: on a session client's (2025-xx) standalone GET
//! stream, and for MCP 2026-07-28 clients on the revision's `subscriptions/listen`
//! stream (which replaces the GET stream). Always in the gateway's own words (an
//! upstream's params never reach a client), and only to a caller who may see what
//! changed.
//!
//! ```text
//!   subscriptions/listen {notifications: {toolsListChanged, promptsListChanged,
//!                         resourcesListChanged, resourceSubscriptions}}
//!       ─► authenticated like every request; at most MAX_PER_CALLER streams per agent
//!          and mandate, MAX_LISTENERS per replica
//!       ─► resourceSubscriptions: each URI decided as a read (aggregate.rs
//!          `subscribable`: on `/mcp/{server}` that server's `/resources` entry, on
//!          `/mcp` as `resources/read` finds it); only the allowed kept
//!       ─► SSE: notifications/subscriptions/acknowledged {notifications: what is
//!          honoured}, then what the caller may see, each with
//!          `_meta["io.modelcontextprotocol/subscriptionId"]` = the request's id
//!   GET /mcp[/{server}] in a session ─► the same, no `_meta`: every list change and
//!       the resources the session subscribed to (`resources/subscribe`, kept in the
//!       session by aggregate.rs once allowed; each ends with the token that made it)
//!   the poller (one task, only while a stream is open):
//!     every POLL_INTERVAL
//!       streams whose client left, whose token was revoked or expired or whose
//!          mandate expired: closed
//!       each subscribed resource read (LIST_TIMEOUT); contents changed since the last
//!          read, and the caller may still read it (Calls::may_read, nothing
//!          recorded) ─► notifications/resources/updated on that stream
//!       each MCP server of a listening tenant: its standalone stream kept open
//!          (Upstream::follow), its tools listed and compared with the last look
//!     at once, what an upstream announces (catalog.rs `Notice`)
//!       tools/list_changed ─► that server's tools listed and compared
//!       prompts | resources/list_changed ─► told to the streams that asked for it
//!          whose mandate sees the server's `/prompts` | `/resources` entry
//!       resources/updated {uri} ─► the streams subscribed to it on that server read
//!          it now (as above)
//!       missed announcements (lagged) ─► everything of that server looked at
//!     tools compared: a tool added, removed or redefined ─► the tenant's catalog
//!       snapshot forgotten ─► notifications/tools/list_changed to every stream on
//!       /mcp or /mcp/{that server} for which one of those tools is visible
//!       (Calls::sees_any: scope and policies, nothing recorded); nobody else
//! ```
//!
//! Upstreams are polled as well as followed: a server that offers no standalone
//! stream, or announces nothing, is still seen to change. The first look after a
//! stream opens only records; a change is measured against it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::response::Response;
use mandate_core::calls::{Caller, Target};
use mandate_domain::{ToolServer, ToolServerTransport};
use mandate_mcp::{Announcement, ListKind, sse};
use mandate_types::{TenantId, ToolServerId};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::catalog::{Listing, Notice, PROMPTS, RESOURCES};
use crate::relay::event_stream;
use crate::{Gateway, GatewayError};

/// How often upstreams are listed while a stream is open.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long one upstream may take to list its tools for the poller.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_PER_CALLER: usize = 4;
const MAX_LISTENERS: usize = 1024;
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

struct Listener {
    id: u64,
    caller: Arc<Caller>,
    /// The list changes it is told (a GET stream: all; `subscriptions/listen`: those
    /// it asked for).
    lists: Lists,
    /// Resources it subscribed to and may read: the server's `/resources` entry, URI.
    resources: Vec<(Arc<Listing>, String)>,
    /// `Some` on `/mcp/{server}`.
    server: Option<String>,
    /// The `subscriptions/listen` request's id; `None` on a session's GET stream.
    subscription: Option<Value>,
    /// The session of a GET stream, whose resource subscriptions it carries.
    session: Option<String>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

/// Which list changes a stream is told.
#[derive(Debug, Clone, Copy, Default)]
struct Lists {
    tools: bool,
    prompts: bool,
    resources: bool,
}

impl Lists {
    const ALL: Lists = Lists {
        tools: true,
        prompts: true,
        resources: true,
    };

    /// What a `subscriptions/listen` filter asks for (anything but `true`: no).
    fn asked(filter: Option<&Value>) -> Lists {
        let asked = |key| {
            filter
                .and_then(|n| n.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Lists {
            tools: asked("toolsListChanged"),
            prompts: asked("promptsListChanged"),
            resources: asked("resourcesListChanged"),
        }
    }

    fn any(self) -> bool {
        self.tools || self.prompts || self.resources
    }

    fn of(self, kind: ListKind) -> bool {
        match kind {
            ListKind::Tools => self.tools,
            ListKind::Prompts => self.prompts,
            ListKind::Resources => self.resources,
        }
    }
}

/// The open streams of this replica and what the poller last saw.
#[derive(Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Listener>>,
    polling: AtomicBool,
    next: AtomicU64,
    /// Each server's tools at the last look: name → SHA-256 of its definition.
    seen: Mutex<HashMap<ToolServerId, BTreeMap<String, Vec<u8>>>>,
    /// The SHA-256 of each subscribed resource's contents at the last look, by
    /// listener and URI.
    read: Mutex<HashMap<(u64, String), Vec<u8>>>,
}

/// A resource a stream subscribed to, as the poller reads it.
struct Watched {
    listener: u64,
    caller: Arc<Caller>,
    listing: Arc<Listing>,
    uri: String,
    subscription: Option<Value>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").finish_non_exhaustive()
    }
}

fn frame(message: &Value) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(sse::encode_message(&message.to_string())))
}

/// A notification on the stream opened by request `subscription` (2026-07-28), or on
/// a session's GET stream (`None`).
fn on_stream(method: &str, params: Value, subscription: Option<&Value>) -> Value {
    let mut params = params;
    if let (Some(map), Some(id)) = (params.as_object_mut(), subscription) {
        map.insert("_meta".into(), json!({SUBSCRIPTION_ID: id}));
    }
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

fn refused(why: &str) -> GatewayError {
    GatewayError::Unavailable(why.to_owned())
}

impl Gateway {
    /// Opens a `subscriptions/listen` stream; `Err` with the JSON-RPC error when the
    /// bounds are reached.
    pub(crate) fn listen(
        &self,
        caller: &Arc<Caller>,
        server: Option<&str>,
        id: Value,
        params: Option<&Value>,
        resources: Vec<(Arc<Listing>, String)>,
    ) -> Result<Response, GatewayError> {
        let lists = Lists::asked(params.and_then(|p| p.get("notifications")));
        let mut honoured = serde_json::Map::new();
        for (asked, key) in [
            (lists.tools, "toolsListChanged"),
            (lists.prompts, "promptsListChanged"),
            (lists.resources, "resourcesListChanged"),
        ] {
            if asked {
                honoured.insert(key.into(), Value::Bool(true));
            }
        }
        if !resources.is_empty() {
            let uris = resources.iter().map(|(_, uri)| Value::from(uri.as_str()));
            honoured.insert("resourceSubscriptions".into(), uris.collect());
        }
        let (tx, rx) = mpsc::channel(16);
        let ack = on_stream(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": honoured}),
            Some(&id),
        );
        if tx.try_send(frame(&ack)).is_err() {
            return Err(refused("the stream could not be opened"));
        }
        if lists.any() || !resources.is_empty() {
            self.keep_listening(caller, server, (Some(id), None), (lists, resources), tx)?;
        } else {
            // Nothing honoured: the stream stays open, and says nothing more.
            tokio::spawn(async move { tx.closed().await });
        }
        Ok(event_stream(rx))
    }

    /// Opens a session client's standalone GET stream (2025-xx), which carries the
    /// list changes it may see and the updates of the resources its session
    /// subscribed to.
    pub(crate) fn listen_in_session(
        &self,
        caller: &Arc<Caller>,
        server: Option<&str>,
        session: &str,
    ) -> Result<Response, GatewayError> {
        let (tx, rx) = mpsc::channel(16);
        let session = Some(session.to_owned());
        self.keep_listening(
            caller,
            server,
            (None, session),
            (Lists::ALL, Vec::new()),
            tx,
        )?;
        Ok(event_stream(rx))
    }

    fn keep_listening(
        &self,
        caller: &Arc<Caller>,
        server: Option<&str>,
        (subscription, session): (Option<Value>, Option<String>),
        (lists, resources): (Lists, Vec<(Arc<Listing>, String)>),
        tx: mpsc::Sender<Result<Bytes, Infallible>>,
    ) -> Result<(), GatewayError> {
        let mut open = self
            .listeners
            .open
            .lock()
            .map_err(|_| refused("the stream could not be opened"))?;
        open.retain(|l| !l.tx.is_closed());
        let mine = open
            .iter()
            .filter(|l| {
                l.caller.agent.id == caller.agent.id && l.caller.mandate.id == caller.mandate.id
            })
            .count();
        if mine >= MAX_PER_CALLER || open.len() >= MAX_LISTENERS {
            return Err(refused("too many notification streams"));
        }
        open.push(Listener {
            id: self.listeners.next.fetch_add(1, Ordering::Relaxed),
            caller: caller.clone(),
            lists,
            resources,
            session,
            server: server.map(str::to_owned),
            subscription,
            tx,
        });
        drop(open);
        if !self.listeners.polling.swap(true, Ordering::SeqCst) {
            tokio::spawn(poll(self.clone()));
        }
        Ok(())
    }

    /// The tenants with an open stream, after closing those whose client left or
    /// whose token was revoked or mandate expired.
    fn listening_tenants(&self) -> Option<BTreeSet<TenantId>> {
        let mut open = self.listeners.open.lock().ok()?;
        open.retain(|l| !l.tx.is_closed() && !self.caller_ended(&l.caller));
        if let Ok(mut read) = self.listeners.read.lock() {
            read.retain(|(id, _), _| open.iter().any(|l| l.id == *id));
        }
        Some(open.iter().map(|l| l.caller.mandate.tenant_id).collect())
    }

    /// The resources the open streams subscribed to (a GET stream: its session's,
    /// while the token that subscribed is good).
    async fn watched(&self) -> Vec<Watched> {
        let sessions: Vec<String> = match self.listeners.open.lock() {
            Ok(open) => open.iter().filter_map(|l| l.session.clone()).collect(),
            Err(_) => return Vec::new(),
        };
        let mut of_session = HashMap::new();
        for session in sessions {
            let resources: Vec<(Arc<Listing>, String)> = self
                .sessions
                .subscribed(&session)
                .await
                .into_iter()
                .filter(|(_, _, subscriber)| !self.caller_ended(subscriber))
                .map(|(listing, uri, _)| (listing, uri))
                .collect();
            of_session.insert(session, resources);
        }
        let Ok(open) = self.listeners.open.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for l in open.iter() {
            let in_session = l.session.as_ref().and_then(|s| of_session.get(s));
            for (listing, uri) in l.resources.iter().chain(in_session.into_iter().flatten()) {
                out.push(Watched {
                    listener: l.id,
                    caller: l.caller.clone(),
                    listing: listing.clone(),
                    uri: uri.clone(),
                    subscription: l.subscription.clone(),
                    tx: l.tx.clone(),
                });
            }
        }
        out
    }

    /// Reads a subscribed resource; tells its stream when the contents changed since
    /// the last look and its caller may still read it.
    async fn look_at(&self, w: Watched) {
        let read = self.call_upstream(
            &w.listing,
            &w.caller.mandate,
            "resources/read",
            Some(json!({"uri": w.uri})),
            None,
            None,
        );
        let Ok(Ok(Ok(result))) = tokio::time::timeout(LIST_TIMEOUT, read).await else {
            return;
        };
        let contents = result
            .get("contents")
            .map(Value::to_string)
            .unwrap_or_default();
        let digest = sha256(&contents);
        let before = match self.listeners.read.lock() {
            Ok(mut read) => read.insert((w.listener, w.uri.clone()), digest.clone()),
            Err(_) => return,
        };
        if before.is_some_and(|b| b != digest)
            && self.calls.may_read(&w.caller, w.listing.target(), &w.uri)
        {
            let notice = on_stream(
                "notifications/resources/updated",
                json!({"uri": w.uri}),
                w.subscription.as_ref(),
            );
            let _ = w.tx.try_send(frame(&notice));
        }
    }

    /// Lists `server`'s tools and compares them with the last look (the first look
    /// only records): a tool added, removed or redefined forgets the tenant's
    /// snapshot and is told to the streams for which one of those tools is visible.
    async fn look_at_tools(&self, tenant: TenantId, server: &ToolServer) {
        let Ok(headers) = self.credentials.listing_headers(server).await else {
            return;
        };
        let Ok((info, tools)) = self.list_upstream(server, &headers, LIST_TIMEOUT).await else {
            return;
        };
        let now: BTreeMap<String, Vec<u8>> = tools
            .iter()
            .filter_map(|t| {
                let name = t.get("name").and_then(Value::as_str)?;
                Some((name.to_owned(), sha256(&t.to_string())))
            })
            .collect();
        let before = match self.listeners.seen.lock() {
            Ok(mut seen) => seen.insert(server.id, now.clone()),
            Err(_) => return,
        };
        let Some(before) = before else {
            return;
        };
        let changed: BTreeSet<&String> = before
            .keys()
            .chain(now.keys())
            .filter(|name| before.get(*name) != now.get(*name))
            .collect();
        if changed.is_empty() {
            return;
        }
        self.catalog.invalidate(tenant);
        // The changed tools' catalog entries: the added ones catalogued now, the
        // removed ones as they were. A tool without one (its name unusable) is
        // nobody's to see. Unknown entries: nobody is told (fail closed).
        let Ok(known) = self.calls.catalogued(server).await else {
            return;
        };
        let mut listed = BTreeMap::new();
        if self
            .catalogue_listed(server, &known, tools, &info, &mut listed)
            .await
            .is_err()
        {
            return;
        }
        let entries: Vec<mandate_domain::Tool> = changed
            .iter()
            .filter_map(|name| {
                listed
                    .get(&format!("{}.{name}", server.name))
                    .map(|l| l.tool.clone())
                    .or_else(|| known.get(*name).cloned())
            })
            .collect();
        self.tell(tenant, server, ListKind::Tools, &entries);
    }

    /// A prompt or resource list change on `server`: told to the streams that asked
    /// for it and whose mandate covers that server's prompts (`/prompts`) or
    /// resources (`/resources`).
    async fn list_changed(&self, tenant: TenantId, server: &ToolServer, kind: ListKind) {
        let entry = match kind {
            ListKind::Prompts => PROMPTS,
            ListKind::Resources => RESOURCES,
            ListKind::Tools => return self.look_at_tools(tenant, server).await,
        };
        let Ok(known) = self.calls.catalogued(server).await else {
            return;
        };
        if let Some(entry) = known.get(entry) {
            self.tell(tenant, server, kind, std::slice::from_ref(entry));
        }
    }

    /// Tells `kind`'s list change on `server` to the streams of `tenant` on `/mcp` or
    /// `/mcp/{server}` that asked for it and for which one of `entries` is visible.
    fn tell(
        &self,
        tenant: TenantId,
        server: &ToolServer,
        kind: ListKind,
        entries: &[mandate_domain::Tool],
    ) {
        let Ok(open) = self.listeners.open.lock() else {
            return;
        };
        let method = match kind {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources => "notifications/resources/list_changed",
        };
        for l in open.iter() {
            let here = l.server.as_deref().is_none_or(|s| s == server.name);
            if !(l.lists.of(kind) && l.caller.mandate.tenant_id == tenant && here) {
                continue;
            }
            let targets = entries.iter().map(|tool| Target { server, tool });
            if self.calls.sees_any(&l.caller, targets) {
                let notice = on_stream(method, json!({}), l.subscription.as_ref());
                // A stream that is full or gone misses it (its client lists again).
                let _ = l.tx.try_send(frame(&notice));
            }
        }
    }

    /// What `server` announced (`None`: announcements were missed), for the streams
    /// of a listening `tenant`.
    async fn heard(&self, tenant: TenantId, server: ToolServerId, what: Option<Announcement>) {
        let Ok(servers) = self.calls.tool_servers(tenant).await else {
            return;
        };
        let Some(server) = servers.into_iter().find(|s| s.id == server) else {
            return;
        };
        match what {
            Some(Announcement::ListChanged(kind)) => self.list_changed(tenant, &server, kind).await,
            Some(Announcement::ResourceUpdated { uri }) => {
                for w in self.watched().await {
                    if w.listing.server.id == server.id && w.uri == uri {
                        self.look_at(w).await;
                    }
                }
            }
            None => {
                for w in self.watched().await {
                    if w.listing.server.id == server.id {
                        self.look_at(w).await;
                    }
                }
                self.look_at_tools(tenant, &server).await;
            }
        }
    }

    /// One look at everything the listening `tenants` may be told of: the subscribed
    /// resources, and each MCP server's tools (its announcement stream kept open).
    async fn look_at_all(&self, tenants: &BTreeSet<TenantId>) {
        for watched in self.watched().await {
            self.look_at(watched).await;
        }
        for tenant in tenants {
            let Ok(servers) = self.calls.tool_servers(*tenant).await else {
                continue;
            };
            for server in servers {
                if matches!(server.transport, ToolServerTransport::Http { .. }) {
                    continue;
                }
                if let (Ok(connected), Ok(headers)) = (
                    self.catalog.connect(&server).await,
                    self.credentials.listing_headers(&server).await,
                ) {
                    let until = tokio::time::Instant::now() + 3 * POLL_INTERVAL;
                    let follow = connected.upstream.follow(&headers, until);
                    let _ = tokio::time::timeout(LIST_TIMEOUT, follow).await;
                }
                self.look_at_tools(*tenant, &server).await;
            }
        }
    }
}

fn sha256(text: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
}

/// The poller: while a stream is open, looks at the listening tenants' servers every
/// POLL_INTERVAL, and acts at once on what their upstreams announce.
async fn poll(gateway: Gateway) {
    let mut heard = gateway.catalog.heard();
    let start = tokio::time::Instant::now() + POLL_INTERVAL;
    let mut ticks = tokio::time::interval_at(start, POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let notice = tokio::select! {
            _ = ticks.tick() => None,
            notice = heard.recv() => Some(notice),
        };
        let tenants = gateway.listening_tenants().unwrap_or_default();
        if tenants.is_empty() {
            gateway.listeners.polling.store(false, Ordering::SeqCst);
            // A stream opened meanwhile restarts no poller of its own: go on for it.
            if gateway.listening_tenants().unwrap_or_default().is_empty()
                || gateway.listeners.polling.swap(true, Ordering::SeqCst)
            {
                return;
            }
            continue;
        }
        match notice {
            None | Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                gateway.look_at_all(&tenants).await;
            }
            Some(Ok(Notice {
                server,
                tenant,
                what,
            })) if tenants.contains(&tenant) => gateway.heard(tenant, server, what).await,
            Some(_) => {}
        }
    }
}
