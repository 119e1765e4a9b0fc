//! What the gateway keeps about calls: budgets spent, calls held for approval, and
//! proposals. Every change that must happen once (a unit of budget, an approval's use,
//! a proposal's execution) is one conditional write, so concurrent callers cannot both
//! win.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_domain::{Approval, ApprovalStatus, Budgets, Proposal, ProposalStatus, Usage};
use mandate_types::{AgentId, ApprovalId, MandateId, ProposalId, TenantId};
use serde_json::Value;

use crate::{Page, PageRequest, StoreError};

/// Which approvals to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    pub status: Option<ApprovalStatus>,
    pub mandate: Option<MandateId>,
}

/// Which proposals to list.
#[derive(Debug, Clone, Default)]
pub struct ProposalFilter {
    pub status: Option<ProposalStatus>,
    pub mandate: Option<MandateId>,
}

/// One exact call: the key approvals are bound to.
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub tenant: TenantId,
    pub mandate: MandateId,
    pub agent: AgentId,
    pub tool: &'a str,
    pub arguments_hash: &'a str,
}

/// A mandate's refused attempts, summed across replicas (drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriftTotals {
    pub denied: u64,
    pub out_of_scope: u64,
}

#[async_trait]
pub trait Calls: Send + Sync {
    /// Adds refused attempts counted by one replica to a mandate's drift totals. When
    /// the totals reach `threshold` and no alert was claimed yet, claims it (one
    /// conditional write: once across replicas) and returns the totals; otherwise
    /// `None`.
    async fn add_drift(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        add: DriftTotals,
        threshold: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<DriftTotals>, StoreError>;

    /// Spends `calls` and `amount` of a mandate's budgets if both stay within `limits`;
    /// returns the usage after spending, or `None` (nothing spent) when either would
    /// be exceeded.
    async fn spend(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        calls: u64,
        amount: u64,
        limits: &Budgets,
    ) -> Result<Option<Usage>, StoreError>;

    /// Records `approval` (pending) unless a live one (pending, or approved and not
    /// used, and unexpired at `now`) exists for the same call; returns whichever holds.
    async fn hold_for_approval(
        &self,
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<Approval, StoreError>;

    async fn approval(
        &self,
        tenant: TenantId,
        id: ApprovalId,
    ) -> Result<Option<Approval>, StoreError>;

    async fn list_approvals(
        &self,
        tenant: TenantId,
        filter: &ApprovalFilter,
        page: &PageRequest,
    ) -> Result<Page<Approval>, StoreError>;

    /// Approves or denies a pending, unexpired approval. `Ok(None)`: no such approval;
    /// [`StoreError::VersionConflict`]: it is no longer pending.
    async fn decide_approval(
        &self,
        tenant: TenantId,
        id: ApprovalId,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Approval>, StoreError>;

    /// The approved, unused, unexpired approval for exactly this call, if any.
    async fn approved_call(
        &self,
        key: &CallKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Approval>, StoreError>;

    /// Marks an approved, unexpired approval used; `false` when it is not (any more).
    async fn use_approval(
        &self,
        tenant: TenantId,
        id: ApprovalId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    async fn record_proposal(&self, proposal: &Proposal) -> Result<(), StoreError>;

    async fn proposal(
        &self,
        tenant: TenantId,
        id: ProposalId,
    ) -> Result<Option<Proposal>, StoreError>;

    async fn list_proposals(
        &self,
        tenant: TenantId,
        filter: &ProposalFilter,
        page: &PageRequest,
    ) -> Result<Page<Proposal>, StoreError>;

    /// Moves a recorded proposal to `executing` (or `rejected` when `reject`), once.
    /// `Ok(None)`: no such proposal; [`StoreError::VersionConflict`]: not recorded any more.
    async fn start_proposal(
        &self,
        tenant: TenantId,
        id: ProposalId,
        by: &str,
        reject: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Proposal>, StoreError>;

    /// Records how an executing proposal ended.
    async fn finish_proposal(
        &self,
        tenant: TenantId,
        id: ProposalId,
        succeeded: bool,
        outcome: &Value,
    ) -> Result<(), StoreError>;
}
