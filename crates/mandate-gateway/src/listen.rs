//! Tool list changes and resource updates: on a session client's (2025-xx) standalone
//! GET stream (tool list changes), and for MCP 2026-07-28 clients on the revision's
//! `subscriptions/listen` stream (which replaces the GET stream).
//!
//! ```text
//!   subscriptions/listen {notifications: {toolsListChanged, resourceSubscriptions}}
//!       ─► authenticated like every request; at most MAX_PER_CALLER streams per agent
//!          and mandate, MAX_LISTENERS per replica
//!       ─► resourceSubscriptions: each URI decided as a read on the server's
//!          `/resources` entry (aggregate.rs `subscribable`); only the allowed kept
//!       ─► SSE: notifications/subscriptions/acknowledged {notifications: what is
//!          honoured}, then what the caller may see, each with
//!          `_meta["io.modelcontextprotocol/subscriptionId"]` = the request's id
//!   GET /mcp[/{server}] in a session ─► the same, no `_meta`: tool list changes and
//!       the resources the session subscribed to (`resources/subscribe`, kept in the
//!       session by aggregate.rs `on_entry` once allowed)
//!   the poller (one task, only while a stream is open), every POLL_INTERVAL:
//!       streams whose client left, whose token was revoked or whose mandate
//!          expired: closed
//!       each subscribed resource read (LIST_TIMEOUT); contents changed since the last
//!          read ─► notifications/resources/updated on that stream
//!       each MCP server of a listening tenant listed (LIST_TIMEOUT, the listing
//!          credential); tool names changed since the last look ─► the tenant's
//!          catalog snapshot forgotten ─► notifications/tools/list_changed to every
//!          stream on /mcp or /mcp/{that server} whose token's scope covers one of
//!          the server's tools, before or after the change; nobody else
//! ```
//!
//! Upstreams are polled rather than followed: the gateway holds no long-lived
//! connection to them (HTTP sessions are shared by every call, stdio servers are
//! spoken to one request at a time), and polling sees the change whether the upstream
//! announces it or not.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::response::Response;
use mandate_core::calls::Caller;
use mandate_domain::ToolServerTransport;
use mandate_mcp::sse;
use mandate_types::{TenantId, ToolServerId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::catalog::Listing;
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
    /// Told tool list changes (a GET stream always; `toolsListChanged` asked for).
    tools: bool,
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

/// The open streams of this replica and what the poller last saw.
#[derive(Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Listener>>,
    polling: AtomicBool,
    next: AtomicU64,
    seen: Mutex<HashMap<ToolServerId, BTreeSet<String>>>,
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
        let asked = params.and_then(|p| p.get("notifications"));
        let tools = asked
            .and_then(|n| n.get("toolsListChanged"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut honoured = serde_json::Map::new();
        if tools {
            honoured.insert("toolsListChanged".into(), Value::Bool(true));
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
        if tools || !resources.is_empty() {
            self.keep_listening(caller, server, (Some(id), None), (tools, resources), tx)?;
        } else {
            // Nothing honoured: the stream stays open, and says nothing more.
            tokio::spawn(async move { tx.closed().await });
        }
        Ok(event_stream(rx))
    }

    /// Opens a session client's standalone GET stream (2025-xx), which carries the
    /// tool list changes it may see.
    pub(crate) fn listen_in_session(
        &self,
        caller: &Arc<Caller>,
        server: Option<&str>,
        session: &str,
    ) -> Result<Response, GatewayError> {
        let (tx, rx) = mpsc::channel(16);
        let session = Some(session.to_owned());
        self.keep_listening(caller, server, (None, session), (true, Vec::new()), tx)?;
        Ok(event_stream(rx))
    }

    fn keep_listening(
        &self,
        caller: &Arc<Caller>,
        server: Option<&str>,
        (subscription, session): (Option<Value>, Option<String>),
        (tools, resources): (bool, Vec<(Arc<Listing>, String)>),
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
            tools,
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

    /// The resources the open streams subscribed to (a GET stream: its session's).
    async fn watched(&self) -> Vec<Watched> {
        let sessions: Vec<String> = match self.listeners.open.lock() {
            Ok(open) => open.iter().filter_map(|l| l.session.clone()).collect(),
            Err(_) => return Vec::new(),
        };
        let mut of_session = HashMap::new();
        for session in sessions {
            let resources = self.sessions.subscribed(&session).await;
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
    /// the last look.
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
        let digest = ring::digest::digest(&ring::digest::SHA256, contents.as_bytes())
            .as_ref()
            .to_vec();
        let before = match self.listeners.read.lock() {
            Ok(mut read) => read.insert((w.listener, w.uri.clone()), digest.clone()),
            Err(_) => return,
        };
        if before.is_some_and(|b| b != digest) {
            let notice = on_stream(
                "notifications/resources/updated",
                json!({"uri": w.uri}),
                w.subscription.as_ref(),
            );
            let _ = w.tx.try_send(frame(&notice));
        }
    }

    /// Tells the streams that may see `server`'s tools (`names`: before and after).
    fn tell(&self, tenant: TenantId, server: &str, names: &BTreeSet<String>) {
        let Ok(open) = self.listeners.open.lock() else {
            return;
        };
        for l in open.iter() {
            let here = l.server.as_deref().is_none_or(|s| s == server);
            let sees = l.caller.scope.as_ref().is_none_or(|scope| {
                names.iter().any(|tool| {
                    let full = format!("{server}.{tool}");
                    scope.iter().any(|e| mandate_domain::scope_covers(e, &full))
                })
            });
            if l.tools && l.caller.mandate.tenant_id == tenant && here && sees {
                let notice = on_stream(
                    "notifications/tools/list_changed",
                    json!({}),
                    l.subscription.as_ref(),
                );
                // A stream that is full or gone misses it (its client lists again).
                let _ = l.tx.try_send(frame(&notice));
            }
        }
    }
}

/// The poller: lists the listening tenants' MCP servers every POLL_INTERVAL until no
/// stream is open.
async fn poll(gateway: Gateway) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
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
        for watched in gateway.watched().await {
            gateway.look_at(watched).await;
        }
        for tenant in tenants {
            let Ok(servers) = gateway.calls.tool_servers(tenant).await else {
                continue;
            };
            for server in servers {
                if matches!(server.transport, ToolServerTransport::Http { .. }) {
                    continue;
                }
                let Ok(headers) = gateway.credentials.listing_headers(&server).await else {
                    continue;
                };
                let Ok((_, tools)) = gateway.list_upstream(&server, &headers, LIST_TIMEOUT).await
                else {
                    continue;
                };
                let now: BTreeSet<String> = tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect();
                let before = match gateway.listeners.seen.lock() {
                    Ok(mut seen) => seen.insert(server.id, now.clone()),
                    Err(_) => continue,
                };
                if let Some(before) = before
                    && before != now
                {
                    gateway.catalog.invalidate(tenant);
                    let names = before.union(&now).cloned().collect();
                    gateway.tell(tenant, &server.name, &names);
                }
            }
        }
    }
}
