//! Grants: the credentials issued under a mandate, and how delegation chains them.

use chrono::{DateTime, Utc};
use mandate_types::{AgentId, MandateId, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One issued credential (a task token), identified by its `jti`. A delegated grant
/// names its parent; revoking a grant revokes everything delegated from it, and a
/// mandate that ends revokes every grant under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub jti: String,
    pub tenant_id: TenantId,
    /// `None` for a token that may only request mandates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<MandateId>,
    /// Who holds it.
    pub agent_id: AgentId,
    /// The grant it was exchanged from (delegation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_jti: Option<String>,
    /// Hops below the mandate's grantee (0: the grantee's own grant).
    pub depth: u8,
    /// The tools (names or patterns) this grant carries: the mandate's scope or a
    /// subset of its parent's.
    pub scope: Vec<String>,
    /// The DPoP key thumbprint (RFC 7638) the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf_jkt: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Grant {
    /// Whether the grant may be used at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}
