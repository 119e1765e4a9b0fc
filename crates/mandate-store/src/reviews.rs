//! Access reviews: what reviewers decided about findings. A finding itself is computed
//! anew for every report (from mandates, the ledger, approvals and the catalog); only
//! a reviewer's mark on it is kept, under the finding's stable id.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_audit::NewEvent;
use mandate_types::{AgentId, TenantId};

use crate::StoreError;

/// A reviewer's mark on one finding (the latest mark of a finding replaces the one
/// before; every mark is also in the ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingMark {
    pub tenant_id: TenantId,
    /// The finding's id: derived from agent, kind and subject, the same in every report.
    pub finding_id: String,
    pub agent_id: AgentId,
    /// The finding's kind (`unused_scope`, `denied_attempts`, `drift_alert`).
    pub kind: String,
    /// What the finding is about (a scope entry, a tool, a mandate id).
    pub subject: String,
    /// `acknowledged`, `accepted_risk` or `remediated`.
    pub status: String,
    pub comment: Option<String>,
    /// Who marked it (`admin`, `human:hum_…`).
    pub marked_by: String,
    pub marked_at: DateTime<Utc>,
}

#[async_trait]
pub trait Reviews: Send + Sync {
    /// Stores `mark` (replacing the finding's earlier mark) and appends `audit` to the
    /// ledger, atomically. The agent must exist in the mark's tenant
    /// ([`StoreError::Missing`]).
    async fn mark_finding(&self, mark: &FindingMark, audit: &[NewEvent]) -> Result<(), StoreError>;

    /// The marks on `agents`' findings (every agent of the tenant when `None`), by
    /// finding id.
    async fn finding_marks(
        &self,
        tenant: TenantId,
        agents: Option<&[AgentId]>,
    ) -> Result<Vec<FindingMark>, StoreError>;
}
