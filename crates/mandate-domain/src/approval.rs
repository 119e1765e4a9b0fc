//! Held calls: approvals (a human approves one exact call before it runs) and proposals
//! (a recommend-only mandate turns a call into a suggestion a human may execute).
//!
//! ```text
//!   approval:  pending ──approve──► approved ──retry with the same arguments──► used
//!                 │  └──deny──► denied
//!                 └──(expires_at passes)──► expired      (approved ones expire too)
//!
//!   proposal:  recorded ──execute──► executing ──► executed | failed
//!                  └──reject──► rejected
//! ```
//!
//! Both are bound to the tool and the canonical hash of the exact arguments
//! ([`crate::canonical::sha256_hex`]); different arguments are a different call.

use chrono::{DateTime, Utc};
use mandate_types::{AgentId, ApprovalId, HumanId, MandateId, ProposalId, RiskTier, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Used,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Used => "used",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Used,
            ApprovalStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// What was asked for, and by whom: shared by approvals and proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeldCall {
    pub tenant_id: TenantId,
    pub mandate_id: MandateId,
    /// The agent that made the call (the end of the delegation chain).
    pub agent_id: AgentId,
    /// The human the mandate acts for.
    pub human_id: HumanId,
    /// The agents the caller's authority came through, the grantee first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation_chain: Vec<AgentId>,
    /// The namespaced tool name (`server.tool`).
    pub tool: String,
    pub risk_tier: RiskTier,
    /// The arguments as the agent sent them (API views apply the redaction rules).
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// `sha256:` of the canonical encoding of the arguments as sent (before redaction).
    pub arguments_hash: String,
    /// Why the call was held (the policy's reason).
    pub reason: String,
}

/// A call held for a human's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub id: ApprovalId,
    #[serde(flatten)]
    pub call: HeldCall,
    pub status: ApprovalStatus,
    pub created_at: DateTime<Utc>,
    /// After this, a pending approval can no longer be decided and an approved one no
    /// longer lets the call through.
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<DateTime<Utc>>,
}

impl Approval {
    /// The status as of `now`: a pending or approved approval past its expiry is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending | ApprovalStatus::Approved if now >= self.expires_at => {
                ApprovalStatus::Expired
            }
            status => status,
        }
    }
}

/// Where a proposal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Recorded,
    Executing,
    Executed,
    Failed,
    Rejected,
}

impl ProposalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Recorded => "recorded",
            ProposalStatus::Executing => "executing",
            ProposalStatus::Executed => "executed",
            ProposalStatus::Failed => "failed",
            ProposalStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<ProposalStatus> {
        [
            ProposalStatus::Recorded,
            ProposalStatus::Executing,
            ProposalStatus::Executed,
            ProposalStatus::Failed,
            ProposalStatus::Rejected,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// A call a recommend-only mandate recorded instead of running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Proposal {
    pub id: ProposalId,
    #[serde(flatten)]
    pub call: HeldCall,
    pub status: ProposalStatus,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_at: Option<DateTime<Utc>>,
    /// The upstream's result (or error) when a human executed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_expiry_is_read_at_a_time() {
        for s in ["pending", "approved", "denied", "used", "expired"] {
            assert_eq!(ApprovalStatus::parse(s).map(|x| x.as_str()), Some(s));
        }
        for s in ["recorded", "executing", "executed", "failed", "rejected"] {
            assert_eq!(ProposalStatus::parse(s).map(|x| x.as_str()), Some(s));
        }
        assert_eq!(ApprovalStatus::parse("PENDING"), None);
        let now = Utc::now();
        let approval = Approval {
            id: ApprovalId::generate(),
            call: HeldCall {
                tenant_id: TenantId::generate(),
                mandate_id: MandateId::generate(),
                agent_id: AgentId::generate(),
                human_id: HumanId::generate(),
                delegation_chain: Vec::new(),
                tool: "bank.transfer".into(),
                risk_tier: RiskTier::HighImpact,
                arguments: serde_json::json!({"amount": 5}),
                arguments_hash: "sha256:00".into(),
                reason: "high impact".into(),
            },
            status: ApprovalStatus::Approved,
            created_at: now,
            expires_at: now + chrono::Duration::minutes(5),
            decided_by: None,
            decided_at: None,
            comment: None,
            used_at: None,
        };
        assert_eq!(approval.status_at(now), ApprovalStatus::Approved);
        assert_eq!(
            approval.status_at(now + chrono::Duration::minutes(5)),
            ApprovalStatus::Expired
        );
    }
}
