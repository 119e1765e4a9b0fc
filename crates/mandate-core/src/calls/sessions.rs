//! MCP client sessions that any replica can resume: the session's state is sealed into
//! its id — a JWS (`typ` [`SESSION_TYP`]) signed by the key of the replica that opened
//! it, which every replica verifies with the keys published in the store, as it does
//! task tokens. So a client behind a load balancer without stickiness keeps its session
//! wherever its next request lands.
//!
//! A session carries no authority: every request brings its own task token, and a
//! session id is honoured only for a token of the agent and mandate that opened it.
//! Its state is what the transport needs to answer: the protocol revision and the
//! capabilities the client declared (only those the gateway acts on, bounded).

use chrono::{DateTime, Utc};
use mandate_types::{AgentId, MandateId};
use serde_json::{Map, Value, json};

use super::{CallError, Calls};

/// The `typ` of a sealed session id: never an access token's (`at+jwt`).
pub const SESSION_TYP: &str = "mcp-session+jwt";
/// The prefix of a sealed session id.
const PREFIX: &str = "mcs_";
/// The longest a session lives, whatever its mandate.
const MAX_LIFETIME_HOURS: i64 = 24;
/// The client capabilities kept: those the gateway acts on.
const KEPT_CAPABILITIES: [&str; 3] = ["elicitation", "sampling", "roots"];
/// A kept capability's JSON larger than this is kept as `{}` (declared, no details).
const MAX_CAPABILITY_BYTES: usize = 512;

/// What a session remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub agent: AgentId,
    pub mandate: MandateId,
    /// The protocol revision agreed at `initialize`.
    pub version: String,
    /// The client's capabilities, as far as the gateway uses them.
    pub capabilities: Value,
}

impl SessionState {
    /// The state of a session opened by `initialize`: the client's capabilities
    /// reduced to those the gateway acts on.
    pub fn new(agent: AgentId, mandate: MandateId, version: &str, capabilities: &Value) -> Self {
        let mut kept = Map::new();
        for name in KEPT_CAPABILITIES {
            if let Some(value) = capabilities.get(name) {
                let small =
                    serde_json::to_vec(value).is_ok_and(|v| v.len() <= MAX_CAPABILITY_BYTES);
                kept.insert(name.into(), if small { value.clone() } else { json!({}) });
            }
        }
        SessionState {
            agent,
            mandate,
            version: version.to_owned(),
            capabilities: Value::Object(kept),
        }
    }
}

impl Calls {
    /// A new session's id: its state sealed with this replica's key, a random id inside
    /// (two sessions never share one), living until `ends` (the mandate's expiry) but
    /// never more than a day.
    pub fn seal_session(
        &self,
        state: &SessionState,
        ends: DateTime<Utc>,
    ) -> Result<String, CallError> {
        let now = self.inner.service.clock().now();
        let expires = ends.min(now + chrono::Duration::hours(MAX_LIFETIME_HOURS));
        let sid = mandate_token::random_id("s").map_err(CallError::from)?;
        let claims = json!({
            "sid": sid,
            "sub": state.agent,
            "mandate_id": state.mandate,
            "ver": state.version,
            "caps": state.capabilities,
            "iat": now.timestamp(),
            "exp": expires.timestamp(),
        });
        let Value::Object(claims) = claims else {
            return Err(CallError::Unavailable(
                "the session cannot be sealed".into(),
            ));
        };
        let sealed = self
            .inner
            .tokens
            .seal(SESSION_TYP, &claims)
            .map_err(CallError::from)?;
        Ok(format!("{PREFIX}{sealed}"))
    }

    /// The state sealed in session id `id` by any replica: `None` unless its signature
    /// (a published key, the algorithm it pins), its `typ` and its expiry hold and its
    /// claims are well formed.
    pub async fn open_session(&self, id: &str) -> Option<SessionState> {
        let sealed = id.strip_prefix(PREFIX)?;
        let claims = self
            .inner
            .tokens
            .verify_typed(sealed, SESSION_TYP)
            .await
            .ok()?;
        let now = self.inner.service.clock().now().timestamp();
        let expires = claims.get("exp")?.as_i64()?;
        if now >= expires {
            return None;
        }
        let capabilities = claims.get("caps")?;
        if !capabilities.is_object() {
            return None;
        }
        Some(SessionState {
            agent: claims.get("sub")?.as_str()?.parse().ok()?,
            mandate: claims.get("mandate_id")?.as_str()?.parse().ok()?,
            version: claims.get("ver")?.as_str()?.to_owned(),
            capabilities: capabilities.clone(),
        })
    }
}
