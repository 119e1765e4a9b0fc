//! What a reviewer does from a report: mark a finding (kept in the store and in the
//! ledger, one transaction), and revoke — an agent's mandates through the mandate
//! lifecycle's own use case, the agent disabled through the directory's (admins only).

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{AgentStatus, MandateStatus, Principal};
use mandate_store::{FindingMark, MandateFilter, PageRequest};
use mandate_types::{AgentId, MandateId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{DEFAULT_DAYS, FindingKind, MarkStatus, MarkView, ReviewQuery};
use crate::input::check_text;
use crate::{AgentUpdate, CoreError, EndRequest, Service};

/// The longest comment on a mark, in bytes.
const MAX_COMMENT: usize = 1_000;
/// Why mandates revoked from a review end, unless the reviewer says otherwise.
const DEFAULT_REASON: &str = "revoked from an access review";

/// A reviewer's decision on a finding.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    pub status: MarkStatus,
    #[serde(default)]
    pub comment: Option<String>,
    /// The window of the report the finding is in (default 30): a finding is marked
    /// only while a report shows it.
    #[serde(default)]
    pub days: Option<u32>,
}

/// What to revoke from a report: one mandate of the agent, or (absent) every active
/// one; and, for an admin, the agent itself.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub mandate_id: Option<MandateId>,
    /// Also disable the agent (admins only): it can obtain nothing, its tokens are refused.
    #[serde(default)]
    pub disable_agent: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a revocation from a report did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewRevocation {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    #[schema(value_type = Vec<String>)]
    pub revoked: Vec<MandateId>,
    /// Mandates left as they were, and why.
    pub skipped: Vec<Skipped>,
    pub agent_disabled: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Skipped {
    #[schema(value_type = String)]
    pub mandate_id: MandateId,
    pub reason: String,
}

impl Service {
    /// Marks a finding of a report the caller may read (at the window `days`): stored
    /// under the finding's id, replacing an earlier mark, with a
    /// `review.finding_marked` event in the same transaction. An id that no such
    /// report shows is not found.
    pub async fn mark_finding(
        &self,
        caller: &Principal,
        finding: &str,
        request: MarkRequest,
    ) -> Result<MarkView, CoreError> {
        let comment = request
            .comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if let Some(c) = &comment {
            check_text("comment", c, MAX_COMMENT)?;
        }
        let days = request.days.unwrap_or(DEFAULT_DAYS);
        let report = self
            .review(caller, ReviewQuery { days, agent: None })
            .await?;
        let found = report.agents.iter().find_map(|a| {
            a.findings
                .iter()
                .find(|f| f.id == finding)
                .map(|f| (a.agent_id, f.clone()))
        });
        let Some((agent, found)) = found else {
            let shown: String = finding.chars().take(64).collect();
            return Err(CoreError::not_found("finding", shown));
        };
        let now = self.clock.now();
        let mark = FindingMark {
            tenant_id: caller.tenant(),
            finding_id: found.id.clone(),
            agent_id: agent,
            kind: found.kind.as_str().to_owned(),
            subject: found.subject.clone(),
            status: request.status.as_str().to_owned(),
            comment: comment.clone(),
            marked_by: caller.label(),
            marked_at: now,
        };
        let mut event = NewEvent::new(
            caller.tenant(),
            EventKind::ReviewFindingMarked,
            caller.label(),
        )
        .agent(agent)
        .with("finding_id", found.id.as_str())
        .with("kind", found.kind.as_str())
        .with("subject", found.subject.as_str())
        .with("status", request.status.as_str());
        if let Principal::Human { id, .. } = caller {
            event = event.human(*id);
        }
        if found.kind == FindingKind::DriftAlert
            && let Ok(mandate) = found.subject.parse::<MandateId>()
        {
            event = event.mandate(mandate);
        }
        if let Some(c) = &comment {
            event = event.with("comment", c.as_str());
        }
        self.store.mark_finding(&mark, &[event]).await?;
        tracing::info!(finding = %found.id, by = %caller.label(), status = request.status.as_str(), "finding marked");
        Ok(MarkView {
            status: request.status,
            comment,
            marked_by: mark.marked_by,
            marked_at: now,
        })
    }

    /// Revokes from a report: `mandate_id` (which must be the agent's), or every
    /// active mandate of the agent the caller may revoke (the others are listed as
    /// skipped), each through [`Service::revoke`] and audited as any revocation; then,
    /// when asked, disables the agent (admins only, checked before anything changes),
    /// recorded as `agent.updated`.
    pub async fn revoke_from_review(
        &self,
        caller: &Principal,
        agent: AgentId,
        request: RevokeRequest,
    ) -> Result<ReviewRevocation, CoreError> {
        if matches!(caller, Principal::Agent { .. }) {
            return Err(CoreError::Forbidden(
                "agents may not act on access reviews".to_owned(),
            ));
        }
        if request.disable_agent {
            self.require_admin(caller)?;
        }
        let reason = request
            .reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| DEFAULT_REASON.to_owned());
        check_text("reason", &reason, 1_000)?;
        let agent = self.agent(caller, agent).await?;
        let targets = match request.mandate_id {
            Some(id) => {
                let view = self.mandate(caller, id).await?;
                if view.mandate.terms.agent_id != agent.id {
                    return Err(CoreError::not_found("mandate", id));
                }
                vec![id]
            }
            None => self.active_mandates(caller.tenant(), agent.id).await?,
        };
        let mut revoked = Vec::new();
        let mut skipped = Vec::new();
        let only_one = request.mandate_id.is_some();
        for id in targets {
            let end = EndRequest {
                reason: Some(reason.clone()),
            };
            match self.revoke(caller, id, end).await {
                Ok(_) => revoked.push(id),
                Err(e) if only_one => return Err(e),
                Err(CoreError::Forbidden(_) | CoreError::NotFound { .. }) => {
                    skipped.push(Skipped {
                        mandate_id: id,
                        reason: "only its grantor, a named owner or an administrator may revoke it"
                            .to_owned(),
                    });
                }
                Err(e @ (CoreError::Lifecycle(_) | CoreError::Expired(_))) => {
                    skipped.push(Skipped {
                        mandate_id: id,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let mut agent_disabled = false;
        if request.disable_agent && agent.status != AgentStatus::Disabled {
            let update = AgentUpdate {
                status: Some(AgentStatus::Disabled),
                ..AgentUpdate::default()
            };
            self.update_agent(caller, agent.id, update).await?;
            let event = NewEvent::new(caller.tenant(), EventKind::AgentUpdated, caller.label())
                .agent(agent.id)
                .with("status", json!("disabled"))
                .with("reason", reason.as_str())
                .with("via", "access_review");
            self.store.append_events(&[event], self.clock.now()).await?;
            agent_disabled = true;
        }
        Ok(ReviewRevocation {
            agent_id: agent.id,
            revoked,
            skipped,
            agent_disabled,
        })
    }

    /// The agent's active mandates (whether the caller may revoke each is
    /// [`Service::revoke`]'s to say).
    async fn active_mandates(
        &self,
        tenant: mandate_types::TenantId,
        agent: AgentId,
    ) -> Result<Vec<MandateId>, CoreError> {
        let filter = MandateFilter {
            agent: Some(agent),
            status: Some(MandateStatus::Active),
            ..MandateFilter::default()
        };
        let mut ids = Vec::new();
        let mut page = PageRequest::first(500);
        loop {
            let found = self.store.list_mandates(tenant, &filter, &page).await?;
            ids.extend(found.items.iter().map(|m| m.id));
            match found.next {
                Some(next) if ids.len() < 10_000 => {
                    page = PageRequest::new(Some(next.0), Some(500))?;
                }
                _ => return Ok(ids),
            }
        }
    }
}
