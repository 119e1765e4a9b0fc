use chrono::{DateTime, Utc};
use mandate_types::{AgentId, HumanId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// An isolation boundary. The embedded default has one, named `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A person: grants mandates, consents as a data owner, approves actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Human {
    pub id: HumanId,
    pub tenant_id: TenantId,
    pub display_name: String,
    pub email: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Whether an agent may obtain anything at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Disabled,
}

/// An OIDC identity from a trusted issuer that maps to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FederatedIdentity {
    pub issuer: String,
    pub subject: String,
}

/// How an agent proves who it is. Only public material is ever stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCredentials {
    /// Public JWKs for `private_key_jwt` client authentication.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub jwks: Vec<Value>,
    /// A SPIFFE ID (`spiffe://trust-domain/path`) whose JWT-SVIDs authenticate this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// An OIDC issuer and subject whose ID tokens authenticate this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<FederatedIdentity>,
}

/// A workload identity acting for people. An agent is never a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub name: String,
    /// The human accountable for this agent.
    pub owner: HumanId,
    /// Other people answerable for the agent beside its owner: they see it in access
    /// reviews (`GET /v1/reviews`). Never the owner, no repeats.
    #[serde(default)]
    pub sponsors: Vec<HumanId>,
    pub credentials: AgentCredentials,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub status: AgentStatus,
    pub created_at: DateTime<Utc>,
}

/// Who is calling, once their credential has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// An operator of the tenant: manages agents, humans, tools; may end mandates.
    Admin {
        tenant: TenantId,
    },
    Human {
        tenant: TenantId,
        id: HumanId,
    },
    Agent {
        tenant: TenantId,
        id: AgentId,
    },
}

impl Principal {
    pub fn tenant(&self) -> TenantId {
        match self {
            Principal::Admin { tenant }
            | Principal::Human { tenant, .. }
            | Principal::Agent { tenant, .. } => *tenant,
        }
    }

    /// A stable label for audit records and messages, e.g. `human:hum_…`.
    pub fn label(&self) -> String {
        match self {
            Principal::Admin { .. } => "admin".to_owned(),
            Principal::Human { id, .. } => format!("human:{id}"),
            Principal::Agent { id, .. } => format!("agent:{id}"),
        }
    }
}
