//! Calls through the gateway, as use cases: who is calling ([`Calls::authenticate`]),
//! whether the call may go on ([`Calls::authorize`], [`Calls::visible`]), the human side
//! of held calls (approvals, proposals), the vault the credential broker reads, and the
//! catalog entries upstreams' listings create.
//!
//! ```text
//!   gateway (MCP / HTTP transport) ──► Calls::authenticate ─► Caller (agent + mandate)
//!                                  ──► Calls::authorize(&Caller, Call { action, target, arguments })
//!                                          │ token scope ─► policy (mandate-policy) ─►
//!                                          │ approval / proposal / budget (store) ─►
//!                                          ▼ decision durable in the ledger
//!                                       Verdict ──► the gateway forwards or refuses
//! ```
//!
//! The gateway is a port seen from here ([`Forwarder`]): a human executing a proposal
//! goes through the same decision and then asks it to forward the call. Approval
//! notifications and drift alerts leave through [`Notifier`].

mod authorize;
mod called;
mod catalog;
mod connections;
mod drift;
mod exchange;
mod flusher;
mod held;
mod rollback;
mod sessions;
mod step_up;
mod usage;
mod vault;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mandate_domain::{Agent, Approval, Mandate, Tool, ToolServer, canonical};
use mandate_policy::CallAction;
use mandate_store::StoreError;
use mandate_token::{TaskToken, TokenError};
use mandate_types::{AgentId, ApprovalId, ProposalId};
use serde_json::{Map, Value, json};

use crate::{CoreError, Ledger, Service, TokenService};

pub use called::Called;
pub use catalog::{Listing, OFFER_LISTING_TIMEOUT};
pub use connections::{
    ConnectionProvider, ConnectionSettings, ConnectionView, connection_provider,
};
pub use drift::DriftPolicy;
pub use exchange::{ExchangeSettings, OutboundExchange, exchange_of, per_person_credential};
pub use rollback::{Irreversible, RollbackReport, StepReport, StepStatus};
pub use sessions::{SESSION_TYP, SessionState};
pub use vault::{Broker, Credentials, NoCredentials, SecretInput};

/// The call use cases of one replica.
#[derive(Debug, Clone)]
pub struct Calls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: Service,
    ledger: Ledger,
    tokens: Arc<TokenService>,
    settings: CallSettings,
    usage: usage::UsageCounter,
    drift: drift::DriftCounts,
    notifier: Arc<dyn Notifier>,
    forwarder: Arc<dyn Forwarder>,
}

/// How calls are decided and recorded.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// How long a held call waits for a human (never past the mandate's expiry).
    pub approval_ttl: Duration,
    /// Record tool arguments in decision events (after redaction); otherwise only their hash.
    pub capture_arguments: bool,
    /// JSON pointers whose values are replaced by `[redacted]` wherever arguments are
    /// kept (decision events, approvals, proposals).
    pub redact: Vec<String>,
    /// When refused attempts raise a drift alert.
    pub drift: DriftPolicy,
}

/// Where notices for people go (the gateway's signed webhook). Never blocks a call.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// A call is held for a human's approval.
    fn approval_requested(&self, approval: &Approval);
    /// An agent kept trying what its mandate does not allow (`body` is the notice).
    fn drift_alert(&self, body: Value);
}

/// The gateway as seen by a human executing a proposal: the catalog as listed now,
/// and the upstream call.
#[async_trait]
pub trait Forwarder: Send + Sync + std::fmt::Debug {
    /// The tool `name` (`server.tool`) names for `mandate`'s tenant now, if any.
    async fn find(&self, mandate: &Mandate, name: &str) -> Result<Option<Arc<Listing>>, CallError>;
    /// Calls the tool upstream with `arguments`, under `mandate`'s credentials.
    async fn call_tool(
        &self,
        listing: &Listing,
        mandate: &Mandate,
        arguments: &Value,
    ) -> Result<Result<Value, Value>, CallError>;
    /// Lists `server`'s tools upstream now, before any mandate exists (a consent
    /// screen's offer), and catalogues them. Only the upstream's answer is awaited
    /// within `within`; the catalogue writes that follow run to their end.
    async fn catalogue(&self, server: &ToolServer, within: Duration) -> Result<(), CallError>;
}

/// Why a call could not be decided or made. Every case means nothing was forwarded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No valid task token for this resource.
    #[error("a valid task token for this resource is required")]
    Unauthenticated { description: Option<String> },
    /// A dependency of the decision (store, ledger) failed.
    #[error("{0}")]
    Unavailable(String),
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The upstream could not answer (reported by a [`Forwarder`]).
    #[error("{0}")]
    Upstream(String),
}

impl From<StoreError> for CallError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed on the gateway path; failing closed");
        CallError::Unavailable("the gateway cannot decide right now; nothing was forwarded".into())
    }
}

impl From<TokenError> for CallError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Unavailable(m) => CallError::Unavailable(m),
            other => CallError::Unauthenticated {
                description: Some(other.description()),
            },
        }
    }
}

impl From<CallError> for CoreError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unauthenticated { .. } => CoreError::Unauthenticated,
            CallError::Unavailable(m) | CallError::Upstream(m) => CoreError::Unavailable(m),
            CallError::Invalid(m) => CoreError::invalid(m),
        }
    }
}

/// Who is calling: the agent and its mandate as they are now, and what its task token
/// narrows (absent when a human executes a proposal).
#[derive(Debug, Clone)]
pub struct Caller {
    pub agent: Agent,
    pub mandate: Mandate,
    /// The agents above the caller, the mandate's grantee first.
    pub chain: Vec<AgentId>,
    /// The token's scope; `None`: the mandate's scope alone decides.
    pub scope: Option<Vec<String>>,
    /// The token's `jti`, for the audit record.
    pub jti: Option<String>,
    /// The token's `exp` (Unix seconds): what the caller holds open (a stream, a parked
    /// call) ends with it. `None` for a person acting without a token.
    pub token_expires_at: Option<i64>,
    pub dpop_bound: bool,
    /// Labels for audit records, outermost first.
    pub actor: Vec<String>,
    /// The trace this request belongs to (see [`crate::trace::begin`]): its trace id
    /// goes into the `decision` and `tool.called` events.
    pub trace: Option<crate::trace::TraceContext>,
}

impl Caller {
    /// Writes the request's trace id (32 hex digits) into an event's data, if it has one.
    pub(crate) fn mark_trace(&self, data: &mut Map<String, Value>) {
        if let Some(trace) = &self.trace {
            data.insert("trace_id".into(), json!(trace.parent.trace_id_hex()));
        }
    }

    /// A person (`by`) acting under `mandate` on behalf of `agent`, reached through
    /// `chain`: no token narrows the mandate's scope; the audit names the person first.
    pub(crate) fn executor(
        by: &mandate_domain::Principal,
        agent: Agent,
        mandate: Mandate,
        chain: Vec<AgentId>,
    ) -> Caller {
        let mut actor = vec![by.label()];
        actor.extend(chain.iter().map(|a| format!("agent:{a}")));
        actor.push(format!("agent:{}", agent.id));
        Caller {
            agent,
            mandate,
            chain,
            scope: None,
            jti: None,
            token_expires_at: None,
            dpop_bound: false,
            actor,
            trace: None,
        }
    }

    /// An agent presenting a verified task token.
    pub fn from_token(token: &TaskToken, agent: Agent, mandate: Mandate) -> Caller {
        Caller {
            agent,
            mandate,
            chain: token.delegation_chain(),
            scope: Some(token.scope.clone()),
            jti: Some(token.jti.clone()),
            token_expires_at: Some(token.expires_at),
            dpop_bound: token.cnf_jkt.is_some(),
            actor: token.actors.iter().map(|a| format!("agent:{a}")).collect(),
            trace: None,
        }
    }

    /// Whether the token this caller presented has expired at `now` (our own tokens
    /// get no clock skew past their `exp`).
    pub fn token_expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.token_expires_at
            .is_some_and(|exp| now.timestamp() >= exp)
    }

    fn scope_covers(&self, name: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| scope_covers(s, name))
    }
}

/// What the call is on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub server: &'a ToolServer,
    pub tool: &'a Tool,
}

/// The answer for one call.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Forward it. `approval` is the approval it used, if one lifted a deny.
    Allow { approval: Option<ApprovalId> },
    /// Refuse it. `hidden`: the tool is outside the caller's authority, and the answer
    /// must not reveal that it exists; `budget`: the policy allowed it, the mandate's
    /// budget does not cover it.
    Deny {
        reason: String,
        hidden: bool,
        budget: bool,
    },
    /// Held until a human approves these exact arguments.
    Approval(Box<Approval>),
    /// Recorded for a human to execute (recommend-only mandate).
    Proposal(Box<mandate_domain::Proposal>),
}

/// One call to decide: an action on a catalog entry, with the arguments the decision
/// binds (an approval approves exactly these; their hash is recorded).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub action: CallAction,
    pub target: Target<'a>,
    pub arguments: &'a Value,
}

/// How a human's execution of a proposal enters the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Execution {
    /// An agent's own call.
    Agent,
    /// A human executing a recorded proposal: the recommend-only limit and the need for
    /// approval are lifted (the human's execution approves these exact arguments).
    Proposal(ProposalId),
    /// A person rolling back the call recorded at this sequence number: the call is its
    /// compensation, approved by that person (`context.approved`, `context.rollback`);
    /// everything else is decided as for any call.
    Rollback(u64),
}

/// A `tools/call` request, parsed once where it arrives: the name the client used
/// and the params, whose `arguments` is an object (absent: `{}`). Everything else in
/// the params (`_meta`, progress tokens) goes upstream as it came.
#[derive(Debug)]
pub struct ToolCall {
    name: String,
    params: Map<String, Value>,
    /// `{}`, for a call that named no arguments (an empty map does not allocate).
    none: Value,
}

impl ToolCall {
    /// Parses `tools/call` params.
    pub fn parse(params: Option<Value>) -> Result<ToolCall, CallError> {
        let params = match params {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(CallError::Invalid("tools/call needs a `name`".into())),
        };
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(CallError::Invalid("tools/call needs a `name`".into()));
        };
        let name = name.to_owned();
        if params.get("arguments").is_some_and(|a| !a.is_object()) {
            return Err(CallError::Invalid("`arguments` must be an object".into()));
        }
        Ok(ToolCall {
            name,
            params,
            none: Value::Object(Map::new()),
        })
    }

    /// The name the client called the tool by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments: always an object.
    pub fn arguments(&self) -> &Value {
        self.params.get("arguments").unwrap_or(&self.none)
    }

    /// The name the client used, and the params to forward with the tool named as the
    /// upstream knows it; the arguments go on exactly as decided (moved, not copied).
    pub fn into_parts(mut self, upstream_name: &str) -> (String, Value) {
        self.params.insert("name".into(), json!(upstream_name));
        (self.name, Value::Object(self.params))
    }
}

/// The arguments' binding hash: `sha256:` over their canonical encoding.
pub fn arguments_hash(arguments: &Value) -> String {
    format!("sha256:{}", canonical::sha256_hex(arguments))
}

/// Whether a token's scope (tool names or `prefix*` patterns) covers `name`.
fn scope_covers(scope: &[String], name: &str) -> bool {
    scope
        .iter()
        .any(|entry| mandate_domain::scope_covers(entry, name))
}

/// A copy of `arguments` with the values at `pointers` replaced by `"[redacted]"`.
fn redact(arguments: &Value, pointers: &[String]) -> Value {
    let mut copy = arguments.clone();
    for pointer in pointers {
        if let Some(slot) = copy.pointer_mut(pointer) {
            *slot = json!("[redacted]");
        }
    }
    copy
}

/// The fields of a JSON object (anything else: none).
fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Calls {
    pub fn new(
        service: Service,
        ledger: Ledger,
        tokens: Arc<TokenService>,
        settings: CallSettings,
        notifier: Arc<dyn Notifier>,
        forwarder: Arc<dyn Forwarder>,
    ) -> Calls {
        Calls {
            inner: Arc::new(Inner {
                service,
                ledger,
                tokens,
                settings,
                usage: usage::UsageCounter::default(),
                drift: drift::DriftCounts::default(),
                notifier,
                forwarder,
            }),
        }
    }

    /// Appends an event and waits until it is durable.
    async fn append(&self, event: mandate_audit::NewEvent) -> Result<(), CallError> {
        self.inner
            .ledger
            .append(event)
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %e, "audit ledger refused a gateway event; failing closed");
                CallError::Unavailable("the decision could not be recorded".into())
            })
    }
}

#[cfg(test)]
mod tests;
