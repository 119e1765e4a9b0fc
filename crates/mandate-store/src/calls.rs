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

/// What claiming a rollback step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepClaim {
    /// This run holds the step: it never ran, or its last run failed.
    Claimed,
    /// A run completed it: it must never run again.
    Done,
    /// Another run holds it: running now, or stopped before it finished (in doubt:
    /// whether the compensation reached the upstream is unknown, so it is not repeated).
    Running,
}

/// The state of one rollback step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Running,
    Done,
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<StepState> {
        match s {
            "running" => Some(StepState::Running),
            "done" => Some(StepState::Done),
            "failed" => Some(StepState::Failed),
            _ => None,
        }
    }
}

/// One compensated call's record: the call (its `tool.called` event's sequence
/// number in the tenant's chain), who ran its compensation last, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackStep {
    pub tenant_id: TenantId,
    pub call_seq: u64,
    pub mandate_id: MandateId,
    pub state: StepState,
    pub claimed_by: String,
    pub claimed_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<Value>,
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

    /// Claims the compensation of the call at `call_seq` (of `mandate`) for one run,
    /// in one conditional write: a step never claimed, or whose last run failed, is
    /// [`StepClaim::Claimed`] (now `running`, by `by`); otherwise its state says why not.
    async fn claim_rollback_step(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        call_seq: u64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<StepClaim, StoreError>;

    /// Records how a running step ended (`done` or `failed`).
    /// [`StoreError::VersionConflict`]: it is not running.
    async fn finish_rollback_step(
        &self,
        tenant: TenantId,
        call_seq: u64,
        succeeded: bool,
        outcome: &Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The rollback steps of `mandate`, by the call's sequence number.
    async fn rollback_steps(
        &self,
        tenant: TenantId,
        mandate: MandateId,
    ) -> Result<Vec<RollbackStep>, StoreError>;
}
