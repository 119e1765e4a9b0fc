//! Client sessions of the session-based revisions (2025-06-18, 2025-11-25), in memory
//! per replica: a client that reaches another replica is told its session is unknown
//! (404) and initializes again, as the transport specifies.
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
use mandate_types::{AgentId, MandateId};
use serde_json::Value;
use tokio::sync::Mutex;

/// The most sessions one replica keeps; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;
/// A session unused this long is forgotten.
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
    /// `/resources` entry and the URI; their updates go to the session's GET stream.
    resources: Vec<(Arc<Listing>, String)>,
}

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

/// 128 random bits; without randomness no session is opened.
fn random_session_id() -> Option<String> {
    mandate_token::random_id("mcs_").ok()
}

impl Sessions {
    pub async fn open(
        &self,
        agent: AgentId,
        mandate: MandateId,
        version: &str,
        client_capabilities: Value,
    ) -> Option<String> {
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
        let id = random_session_id()?;
        state.sessions.insert(
            id.clone(),
            Session {
                agent,
                mandate,
                version: version.to_owned(),
                client_capabilities,
                last_used: now,
                resources: Vec::new(),
            },
        );
        Some(id)
    }

    /// The session's revision and client capabilities, if it exists and belongs to
    /// this agent and mandate.
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

    /// Subscribes session `id` (of this agent and mandate) to `uri` on `listing`'s
    /// server, or (`subscribe` false) ends that subscription; `false` when the session
    /// is unknown or already holds `MAX_SUBSCRIBED`.
    pub async fn subscribe(
        &self,
        id: &str,
        (agent, mandate): (AgentId, MandateId),
        listing: &Arc<Listing>,
        uri: &str,
        subscribe: bool,
    ) -> bool {
        let mut state = self.inner.lock().await;
        let Some(session) = state
            .sessions
            .get_mut(id)
            .filter(|s| s.agent == agent && s.mandate == mandate)
        else {
            return false;
        };
        session
            .resources
            .retain(|(l, u)| !(l.tool.id == listing.tool.id && u == uri));
        if !subscribe {
            return true;
        }
        if session.resources.len() >= MAX_SUBSCRIBED {
            return false;
        }
        session.resources.push((listing.clone(), uri.to_owned()));
        true
    }

    /// The resources session `id` subscribed to (none once it is gone).
    pub async fn subscribed(&self, id: &str) -> Vec<(Arc<Listing>, String)> {
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
