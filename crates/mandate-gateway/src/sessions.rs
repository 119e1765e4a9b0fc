//! Client sessions of the session-based revisions (2025-06-18, 2025-11-25). A session's
//! id seals its state (core's `Calls::seal_session`: signed by this replica's key), so
//! every replica can resume it: a replica that does not know an id verifies it and
//! adopts the session into its memory. What lives only here, per replica: the
//! resources a session subscribed to and the requests upstreams sent to the client
//! (elicitation, sampling), both tied to the event stream the client holds open with
//! this replica; a client that reaches another one subscribes again there.
//!
//! A session is bound to the agent and mandate that opened it; a request of another
//! agent or mandate naming it is treated as naming an unknown session. It also keeps
//! the requests upstreams sent to the client (elicitation, sampling) under ids of our
//! own, so the client's answers find their way back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use mandate_mcp::Upstream;

use crate::catalog::Listing;
use mandate_core::calls::{Caller, SessionState};
use mandate_types::{AgentId, MandateId};
use serde_json::Value;
use tokio::sync::Mutex;

/// The most sessions one replica keeps; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;
/// A session unused this long is forgotten here (its sealed id still resumes it).
const IDLE: Duration = Duration::from_secs(30 * 60);
/// A server→client request unanswered this long is forgotten.
const ASK_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub(crate) struct Session {
    pub agent: AgentId,
    pub mandate: MandateId,
    pub version: String,
    pub client_capabilities: Value,
    last_used: Instant,
    /// Resources subscribed to (`resources/subscribe`, allowed): the server's
    /// `/resources` entry, the URI, and who subscribed (the subscription ends with
    /// that token); their updates go to the session's GET stream.
    resources: Vec<Subscribed>,
}

/// A session's resource subscription.
pub(crate) type Subscribed = (Arc<Listing>, String, Arc<Caller>);

/// The most resources one session subscribes to.
const MAX_SUBSCRIBED: usize = 16;

/// Where a client's answer to a relayed request goes.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub upstream: Arc<dyn Upstream>,
    pub upstream_id: Value,
    pub headers: HeaderMap,
    at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Session>,
    asks: HashMap<(String, String), Ask>,
    next_ask: u64,
}

impl Sessions {
    /// Remembers session `id` (sealed by `Calls::seal_session`, here or at another
    /// replica) with its state.
    pub async fn open(&self, id: &str, opened: SessionState) {
        let mut state = self.inner.lock().await;
        let now = Instant::now();
        state
            .sessions
            .retain(|_, s| now.duration_since(s.last_used) < IDLE);
        if state.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = state
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
        {
            state.sessions.remove(&oldest);
        }
        state.sessions.insert(
            id.to_owned(),
            Session {
                agent: opened.agent,
                mandate: opened.mandate,
                version: opened.version,
                client_capabilities: opened.capabilities,
                last_used: now,
                resources: Vec::new(),
            },
        );
    }

    /// The session's revision and client capabilities, if this replica knows it and it
    /// belongs to this agent and mandate (`Gateway::session` also resumes the others).
    pub async fn touch(
        &self,
        id: &str,
        agent: AgentId,
        mandate: MandateId,
    ) -> Option<(String, Value)> {
        let mut state = self.inner.lock().await;
        let session = state.sessions.get_mut(id)?;
        if session.agent != agent || session.mandate != mandate {
            return None;
        }
        if session.last_used.elapsed() >= IDLE {
            state.sessions.remove(id);
            return None;
        }
        session.last_used = Instant::now();
        Some((session.version.clone(), session.client_capabilities.clone()))
    }

    /// Subscribes session `id` (of `caller`'s agent and mandate) to `uri` on
    /// `listing`'s server (`listing` `None`: ends the session's subscriptions to
    /// `uri` on `server`, or on any server when that is `None` too); `false` when the
    /// session is unknown or already holds `MAX_SUBSCRIBED`.
    pub async fn subscribe(
        &self,
        id: &str,
        caller: &Arc<Caller>,
        (listing, server): (Option<&Arc<Listing>>, Option<&str>),
        uri: &str,
    ) -> bool {
        let mut state = self.inner.lock().await;
        let Some(session) = state
            .sessions
            .get_mut(id)
            .filter(|s| s.agent == caller.agent.id && s.mandate == caller.mandate.id)
        else {
            return false;
        };
        let server = listing.map(|l| l.server.name.as_str()).or(server);
        session
            .resources
            .retain(|(l, u, _)| !(u == uri && server.is_none_or(|s| l.server.name == s)));
        let Some(listing) = listing else {
            return true;
        };
        if session.resources.len() >= MAX_SUBSCRIBED {
            return false;
        }
        session
            .resources
            .push((listing.clone(), uri.to_owned(), caller.clone()));
        true
    }

    /// The resources session `id` subscribed to (none once it is gone).
    pub async fn subscribed(&self, id: &str) -> Vec<Subscribed> {
        self.inner
            .lock()
            .await
            .sessions
            .get(id)
            .map(|s| s.resources.clone())
            .unwrap_or_default()
    }

    pub async fn close(&self, id: &str, agent: AgentId, mandate: MandateId) -> bool {
        let mut state = self.inner.lock().await;
        match state.sessions.get(id) {
            Some(s) if s.agent == agent && s.mandate == mandate => {
                state.sessions.remove(id);
                state.asks.retain(|(sid, _), _| sid != id);
                true
            }
            _ => false,
        }
    }

    /// Registers a request relayed to the client; returns the id the client sees.
    pub async fn relay(&self, session: &str, ask: (Arc<dyn Upstream>, Value, HeaderMap)) -> Value {
        let mut state = self.inner.lock().await;
        let now = Instant::now();
        state.asks.retain(|_, a| now.duration_since(a.at) < ASK_TTL);
        state.next_ask += 1;
        let id = format!("mandate-ask-{}", state.next_ask);
        let (upstream, upstream_id, headers) = ask;
        state.asks.insert(
            (session.to_owned(), id.clone()),
            Ask {
                upstream,
                upstream_id,
                headers,
                at: now,
            },
        );
        Value::from(id)
    }

    /// Takes the relayed request a client answers.
    pub async fn answered(&self, session: &str, id: &Value) -> Option<Ask> {
        let id = id.as_str()?;
        self.inner
            .lock()
            .await
            .asks
            .remove(&(session.to_owned(), id.to_owned()))
    }
}

impl crate::Gateway {
    /// Session `id` of `caller`: from this replica's memory, or — opened at another
    /// replica, or forgotten here — its sealed state, verified and adopted. `None` when
    /// the id is unknown, forged, expired, or of another agent or mandate.
    pub(crate) async fn session(&self, id: &str, caller: &Caller) -> Option<(String, Value)> {
        let (agent, mandate) = (caller.agent.id, caller.mandate.id);
        if let Some(known) = self.sessions.touch(id, agent, mandate).await {
            return Some(known);
        }
        let sealed = self.calls.open_session(id).await?;
        if sealed.agent != agent || sealed.mandate != mandate {
            return None;
        }
        let known = (sealed.version.clone(), sealed.capabilities.clone());
        self.sessions.open(id, sealed).await;
        Some(known)
    }

    /// Opens a session for `caller` (at `initialize`): its sealed id.
    pub(crate) async fn open_session(
        &self,
        caller: &Caller,
        version: &str,
        capabilities: &Value,
    ) -> Option<String> {
        let state = SessionState::new(caller.agent.id, caller.mandate.id, version, capabilities);
        let id = self
            .calls
            .seal_session(&state, caller.mandate.terms.expires_at)
            .ok()?;
        self.sessions.open(&id, state).await;
        Some(id)
    }
}
