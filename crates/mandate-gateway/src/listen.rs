//! `notifications/tools/list_changed` for MCP 2026-07-28 clients, over the revision's
//! `subscriptions/listen` stream (which replaces the standalone GET stream).
//!
//! ```text
//!   subscriptions/listen {notifications: {toolsListChanged: true, …}}
//!       ─► authenticated like every request; at most MAX_PER_CALLER streams per agent
//!          and mandate, MAX_LISTENERS per replica
//!       ─► SSE: notifications/subscriptions/acknowledged {notifications: what is
//!          honoured — toolsListChanged alone}, then each list_changed the caller may
//!          see, `_meta["io.modelcontextprotocol/subscriptionId"]` = the request's id
//!   the poller (one task, only while a stream is open): every POLL_INTERVAL, each MCP
//!   server of a listening tenant is listed (LIST_TIMEOUT each, the listing
//!   credential); a server whose tool names changed since the last look ─► the
//!   tenant's catalog snapshot forgotten (the next request rebuilds it) ─► told to
//!   every stream on /mcp or on /mcp/{that server} whose token's scope covers one of
//!   the server's tools, before or after the change; nobody else hears of it
//!   a stream whose client left, or whose token was revoked (its mandate ended): closed
//! ```
//!
//! Upstreams are polled rather than followed: the gateway holds no long-lived
//! connection to them (HTTP sessions are shared by every call, stdio servers are
//! spoken to one request at a time), and polling sees the change whether the upstream
//! announces it or not.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
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
    caller: Arc<Caller>,
    /// `Some` on `/mcp/{server}`.
    server: Option<String>,
    /// The `subscriptions/listen` request's id; `None` on a session's GET stream.
    subscription: Option<Value>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

/// The open streams of this replica and what the poller last saw.
#[derive(Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Listener>>,
    polling: AtomicBool,
    seen: Mutex<HashMap<ToolServerId, BTreeSet<String>>>,
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
    ) -> Result<Response, GatewayError> {
        let asked = params.and_then(|p| p.get("notifications"));
        let tools = asked
            .and_then(|n| n.get("toolsListChanged"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let honoured = if tools {
            json!({"toolsListChanged": true})
        } else {
            json!({})
        };
        let (tx, rx) = mpsc::channel(16);
        let ack = on_stream(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": honoured}),
            Some(&id),
        );
        if tx.try_send(frame(&ack)).is_err() {
            return Err(refused("the stream could not be opened"));
        }
        if tools {
            self.keep_listening(caller, server, Some(id), tx)?;
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
    ) -> Result<Response, GatewayError> {
        let (tx, rx) = mpsc::channel(16);
        self.keep_listening(caller, server, None, tx)?;
        Ok(event_stream(rx))
    }

    fn keep_listening(
        &self,
        caller: &Arc<Caller>,
        server: Option<&str>,
        subscription: Option<Value>,
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
            caller: caller.clone(),
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
    /// whose token was revoked.
    fn listening_tenants(&self) -> Option<BTreeSet<TenantId>> {
        let mut open = self.listeners.open.lock().ok()?;
        open.retain(|l| {
            !l.tx.is_closed()
                && !l
                    .caller
                    .jti
                    .as_deref()
                    .is_some_and(|jti| self.tokens.is_revoked(jti))
        });
        Some(open.iter().map(|l| l.caller.mandate.tenant_id).collect())
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
            if l.caller.mandate.tenant_id == tenant && here && sees {
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
