use chrono::{DateTime, SubsecRound as _, Utc};
use mandate_domain::canonical;
use mandate_types::{AgentId, HumanId, MandateId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

/// The version of the event encoding. A verifier refuses versions it does not know.
pub const SCHEMA_VERSION: u16 = 1;

/// The `prev_hash` of a tenant's first event.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )+) => {
        /// What happened. Closed: a new kind is a new variant, named here once.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )+
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }
        }

        impl std::str::FromStr for EventKind {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                match s {
                    $($name => Ok(EventKind::$variant),)+
                    _ => Err(UnknownKind(s.chars().take(64).collect())),
                }
            }
        }
    };
}

event_kinds! {
    MandateRequested => "mandate.requested",
    ConsentGranted => "consent.granted",
    ConsentDenied => "consent.denied",
    MandateActivated => "mandate.activated",
    MandateDenied => "mandate.denied",
    MandateCompleted => "mandate.completed",
    MandateRevoked => "mandate.revoked",
    MandateExpired => "mandate.expired",
    TokenIssued => "token.issued",
    TokenExchanged => "token.exchanged",
    TokenRenewed => "token.renewed",
    TokenRevoked => "token.revoked",
    Decision => "decision",
    ToolCalled => "tool.called",
    ApprovalRequested => "approval.requested",
    ApprovalGranted => "approval.granted",
    ApprovalDenied => "approval.denied",
    ApprovalUsed => "approval.used",
    ProposalRecorded => "proposal.recorded",
    ProposalExecuted => "proposal.executed",
    RollbackStep => "rollback.step",
    SecretUsed => "secret.used",
    /// A call waits for its person to connect to the tool server's provider.
    ConnectionRequired => "connection.required",
    ConnectionConnected => "connection.connected",
    ConnectionRevoked => "connection.revoked",
    PolicyChanged => "policy.changed",
    DriftAlert => "drift.alert",
    ReviewFindingMarked => "review.finding_marked",
    HumanCreated => "human.created",
    AgentCreated => "agent.created",
    AgentUpdated => "agent.updated",
    ToolServerCreated => "tool_server.created",
    ToolCreated => "tool.created",
    ToolUpdated => "tool.updated",
    ApiTokenIssued => "api_token.issued",
}

/// The schema lists the names events are stored and shown with (`policy.changed`),
/// built from [`EventKind::ALL`]: a derive would list the Rust variants' names, as the
/// `rename`s reach it through the macro above unseen.
impl utoipa::PartialSchema for EventKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("What happened."))
            .enum_values(Some(EventKind::ALL.iter().map(|k| k.as_str())))
            .into()
    }
}

impl ToSchema for EventKind {}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an audit event type")]
pub struct UnknownKind(pub String);

/// An event as an appender describes it; the ledger gives it its place in the chain.
///
/// `data` must never hold a secret or a bearer token: appenders put references and
/// hashes there (an argument hash, a credential reference), never the values.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub kind: EventKind,
    pub mandate_id: Option<MandateId>,
    pub agent_id: Option<AgentId>,
    pub human_id: Option<HumanId>,
    /// Who acted, outermost first: `admin`, `human:hum_…`, or a delegation chain of agents.
    pub actor: Vec<String>,
    pub data: Map<String, Value>,
}

impl NewEvent {
    pub fn new(tenant_id: TenantId, kind: EventKind, actor: impl Into<String>) -> Self {
        NewEvent {
            tenant_id,
            kind,
            mandate_id: None,
            agent_id: None,
            human_id: None,
            actor: vec![actor.into()],
            data: Map::new(),
        }
    }

    pub fn mandate(mut self, id: MandateId) -> Self {
        self.mandate_id = Some(id);
        self
    }

    pub fn agent(mut self, id: AgentId) -> Self {
        self.agent_id = Some(id);
        self
    }

    pub fn human(mut self, id: HumanId) -> Self {
        self.human_id = Some(id);
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_owned(), value.into());
        self
    }
}

/// A recorded event: its content, its place in its tenant's chain, and the hash that
/// binds both to every event before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema: u16,
    pub tenant_id: TenantId,
    /// 1, 2, 3, … per tenant, without gaps.
    pub seq: u64,
    #[serde(serialize_with = "mandate_types::serialize_time")]
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<MandateId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_id: Option<HumanId>,
    pub actor: Vec<String>,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// The `hash` of the previous event of this tenant ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// `sha256:` + hex of SHA-256 over [`Event::canonical_bytes`].
    pub hash: String,
}

/// The end of a tenant's chain: the last sequence number and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl Head {
    /// The head of an empty chain.
    pub fn genesis() -> Head {
        Head {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl Event {
    /// Places `new` after `head`, at time `at` (kept to the microsecond, the precision
    /// the stores keep, so that the hash survives a round trip).
    pub fn chain(head: &Head, new: NewEvent, at: DateTime<Utc>) -> Event {
        let mut event = Event {
            schema: SCHEMA_VERSION,
            tenant_id: new.tenant_id,
            seq: head.seq.saturating_add(1),
            at: at.trunc_subsecs(6),
            kind: new.kind,
            mandate_id: new.mandate_id,
            agent_id: new.agent_id,
            human_id: new.human_id,
            actor: new.actor,
            data: new.data,
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        event.hash = event.computed_hash();
        event
    }

    /// The stable byte form the hash covers: the event as canonical JSON (RFC 8785 for
    /// the values we write: keys sorted, no insignificant whitespace; see
    /// `mandate_domain::canonical`) without its `hash` member.
    ///
    /// Written directly rather than through a `serde_json::Value`: the members' sorted
    /// order is fixed, and a test checks the bytes equal the generic encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        use canonical::{write_object, write_string};
        let mut out = Vec::with_capacity(512);
        let key = |out: &mut Vec<u8>, name: &str| {
            if out.len() > 1 {
                out.push(b',');
            }
            write_string(out, name);
            out.push(b':');
        };
        out.push(b'{');
        key(&mut out, "actor");
        out.push(b'[');
        for (i, a) in self.actor.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(&mut out, a);
        }
        out.push(b']');
        if let Some(id) = self.agent_id {
            key(&mut out, "agent_id");
            write_string(&mut out, &id.encode());
        }
        key(&mut out, "at");
        // An RFC 3339 time needs no escaping: its JSON string is already canonical.
        out.push(b'"');
        out.extend_from_slice(mandate_types::TimeText::new(&self.at).as_bytes());
        out.push(b'"');
        key(&mut out, "data");
        write_object(&mut out, &self.data);
        if let Some(id) = self.human_id {
            key(&mut out, "human_id");
            write_string(&mut out, &id.encode());
        }
        key(&mut out, "kind");
        write_string(&mut out, self.kind.as_str());
        if let Some(id) = self.mandate_id {
            key(&mut out, "mandate_id");
            write_string(&mut out, &id.encode());
        }
        key(&mut out, "prev_hash");
        write_string(&mut out, &self.prev_hash);
        key(&mut out, "schema");
        out.extend_from_slice(self.schema.to_string().as_bytes());
        key(&mut out, "seq");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        key(&mut out, "tenant_id");
        write_string(&mut out, &self.tenant_id.encode());
        out.push(b'}');
        out
    }

    /// [`Event::canonical_bytes`] by the generic route: serialise, drop `hash`, encode.
    pub fn canonical_bytes_generic(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("hash");
        }
        canonical::to_vec(&value)
    }

    /// What `hash` must be.
    pub fn computed_hash(&self) -> String {
        let digest = Sha256::digest(self.canonical_bytes());
        let mut hash = String::with_capacity(7 + 2 * digest.len());
        hash.push_str("sha256:");
        canonical::push_hex(&mut hash, &digest);
        hash
    }

    /// This event as the head of its chain.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}
