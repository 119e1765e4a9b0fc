//! The human side of held calls, as use cases: list, approve and deny approvals; list,
//! execute and reject proposals. An administrator of the tenant, or a human who must
//! consent to the call's mandate (its grantor or a named owner), may decide.
//! Arguments leave here with the operator's redaction rules applied.

use mandate_audit::{EventKind, NewEvent};
use std::sync::Arc;

use mandate_domain::{Approval, HeldCall, Mandate, Principal, Proposal};
use mandate_mcp::{Refusal, refusal};
use mandate_policy::CallAction;
use mandate_store::{ApprovalFilter, Page, PageRequest, ProposalFilter, Store, StoreError};
use mandate_types::{ApprovalId, ProposalId};
use serde_json::{Value, json};

use super::{Call, CallError, Caller, Calls, Execution, Listing, Verdict, obj, redact};
use crate::CoreError;

impl Calls {
    fn shown_approval(&self, mut a: Approval) -> Approval {
        a.call.arguments = redact(&a.call.arguments, &self.inner.settings.redact);
        a.status = a.status_at(self.inner.service.clock().now());
        a
    }

    fn shown_proposal(&self, mut p: Proposal) -> Proposal {
        p.call.arguments = redact(&p.call.arguments, &self.inner.settings.redact);
        p
    }

    /// Whether `caller` may decide on calls under `mandate` (and roll them back).
    pub(super) fn may_decide(&self, caller: &Principal, mandate: &Mandate) -> bool {
        match caller {
            Principal::Admin { tenant } => *tenant == mandate.tenant_id,
            Principal::Human { tenant, id } => {
                *tenant == mandate.tenant_id && mandate.terms.required_consenters().contains(id)
            }
            Principal::Agent { .. } => false,
        }
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        self.inner.service.store()
    }

    /// The held calls of a listing that `caller` may see: all of an administrator's;
    /// a human's under the mandates they must consent to.
    async fn seen_by<T>(
        &self,
        caller: &Principal,
        items: Vec<T>,
        call: fn(&T) -> &HeldCall,
    ) -> Result<Vec<T>, CoreError> {
        let Principal::Human { id, .. } = caller else {
            return Ok(items);
        };
        let mut mine = Vec::new();
        for item in items {
            let mandate = self.mandate_of(caller, call(&item).mandate_id).await?;
            if mandate.terms.required_consenters().contains(id) {
                mine.push(item);
            }
        }
        Ok(mine)
    }

    pub(super) async fn mandate_of(
        &self,
        caller: &Principal,
        id: mandate_types::MandateId,
    ) -> Result<Mandate, CoreError> {
        self.store()
            .mandate(caller.tenant(), id)
            .await?
            .ok_or_else(|| CoreError::not_found("mandate", id))
    }

    pub async fn list_approvals(
        &self,
        caller: &Principal,
        filter: ApprovalFilter,
        page: PageRequest,
    ) -> Result<Page<Approval>, CoreError> {
        if matches!(caller, Principal::Agent { .. }) {
            return Err(CoreError::Forbidden("agents cannot list approvals".into()));
        }
        let mut listed = self
            .store()
            .list_approvals(caller.tenant(), &filter, &page)
            .await?;
        listed.items = self
            .seen_by(caller, listed.items, |a| &a.call)
            .await?
            .into_iter()
            .map(|a| self.shown_approval(a))
            .collect();
        Ok(listed)
    }

    pub async fn approval(
        &self,
        caller: &Principal,
        id: ApprovalId,
    ) -> Result<Approval, CoreError> {
        let approval = self
            .store()
            .approval(caller.tenant(), id)
            .await?
            .ok_or_else(|| CoreError::not_found("approval", id))?;
        let mandate = self.mandate_of(caller, approval.call.mandate_id).await?;
        if !self.may_decide(caller, &mandate) {
            return Err(CoreError::not_found("approval", id));
        }
        Ok(self.shown_approval(approval))
    }

    /// Approves or denies a pending approval; the agent's retry then passes (once) or
    /// keeps being refused.
    pub async fn decide_approval(
        &self,
        caller: &Principal,
        id: ApprovalId,
        approve: bool,
        comment: Option<String>,
    ) -> Result<Approval, CoreError> {
        if let Some(c) = &comment
            && c.chars().count() > 1000
        {
            return Err(CoreError::invalid(
                "`comment` is longer than 1000 characters",
            ));
        }
        let current = self.approval(caller, id).await?;
        let now = self.inner.service.clock().now();
        let decided = match self
            .store()
            .decide_approval(
                caller.tenant(),
                id,
                approve,
                &caller.label(),
                comment.as_deref(),
                now,
            )
            .await
        {
            Ok(Some(a)) => a,
            Ok(None) => return Err(CoreError::not_found("approval", id)),
            Err(StoreError::VersionConflict) => {
                return Err(CoreError::Conflict(format!(
                    "approval `{id}` is {} and can no longer be decided",
                    current.status.as_str()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let event = NewEvent {
            tenant_id: decided.call.tenant_id,
            kind: if approve {
                EventKind::ApprovalGranted
            } else {
                EventKind::ApprovalDenied
            },
            mandate_id: Some(decided.call.mandate_id),
            agent_id: Some(decided.call.agent_id),
            human_id: match caller {
                Principal::Human { id, .. } => Some(*id),
                _ => Some(decided.call.human_id),
            },
            actor: vec![caller.label()],
            data: obj(json!({
                "approval_id": decided.id,
                "tool": decided.call.tool,
                "arguments_hash": decided.call.arguments_hash,
                "comment_given": decided.comment.is_some(),
            })),
        };
        self.append(event).await?;
        Ok(self.shown_approval(decided))
    }

    pub async fn list_proposals(
        &self,
        caller: &Principal,
        filter: ProposalFilter,
        page: PageRequest,
    ) -> Result<Page<Proposal>, CoreError> {
        if matches!(caller, Principal::Agent { .. }) {
            return Err(CoreError::Forbidden("agents cannot list proposals".into()));
        }
        let mut listed = self
            .store()
            .list_proposals(caller.tenant(), &filter, &page)
            .await?;
        listed.items = self
            .seen_by(caller, listed.items, |p| &p.call)
            .await?
            .into_iter()
            .map(|p| self.shown_proposal(p))
            .collect();
        Ok(listed)
    }

    pub async fn proposal(
        &self,
        caller: &Principal,
        id: ProposalId,
    ) -> Result<Proposal, CoreError> {
        let proposal = self
            .store()
            .proposal(caller.tenant(), id)
            .await?
            .ok_or_else(|| CoreError::not_found("proposal", id))?;
        let mandate = self.mandate_of(caller, proposal.call.mandate_id).await?;
        if !self.may_decide(caller, &mandate) {
            return Err(CoreError::not_found("proposal", id));
        }
        Ok(self.shown_proposal(proposal))
    }

    /// The proposal a caller's retry names (MCP 2026-07-28 clients retry a call that
    /// became a proposal), if it is this caller's — same agent, same mandate — for
    /// this very call: the same tool and the same argument hash. Anything else is
    /// `None`, and the retry is decided afresh.
    pub async fn proposal_retried(
        &self,
        caller: &Caller,
        id: ProposalId,
        call: &Call<'_>,
    ) -> Result<Option<Proposal>, CallError> {
        let Some(proposal) = self.store().proposal(caller.mandate.tenant_id, id).await? else {
            return Ok(None);
        };
        let held = &proposal.call;
        let same = held.agent_id == caller.agent.id
            && held.mandate_id == caller.mandate.id
            && held.tool == mandate_policy::tool_name(call.target.server, call.target.tool)
            && held.arguments_hash == super::arguments_hash(call.arguments);
        Ok(same.then_some(proposal))
    }

    /// Executes a recorded proposal through the same enforcement path as an agent's
    /// call (decided again now, budget spent, decision recorded), once.
    pub async fn execute_proposal(
        &self,
        caller: &Principal,
        id: ProposalId,
        reject: bool,
    ) -> Result<Proposal, CoreError> {
        self.proposal(caller, id).await?;
        let now = self.inner.service.clock().now();
        let started = match self
            .store()
            .start_proposal(caller.tenant(), id, &caller.label(), reject, now)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => return Err(CoreError::not_found("proposal", id)),
            Err(StoreError::VersionConflict) => {
                return Err(CoreError::Conflict(format!(
                    "proposal `{id}` was already executed or rejected"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if reject {
            return Ok(self.shown_proposal(started));
        }
        let (succeeded, outcome) = match self.run_proposal(caller, &started).await {
            Ok(Ok(result)) => (
                !result
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                json!({"result": result}),
            ),
            Ok(Err(error)) => (false, json!({"error": error})),
            Err(e) => (false, json!({"error": {"message": e.to_string()}})),
        };
        self.store()
            .finish_proposal(caller.tenant(), id, succeeded, &outcome)
            .await?;
        let event = NewEvent {
            tenant_id: started.call.tenant_id,
            kind: EventKind::ProposalExecuted,
            mandate_id: Some(started.call.mandate_id),
            agent_id: Some(started.call.agent_id),
            human_id: Some(started.call.human_id),
            actor: vec![caller.label()],
            data: obj(json!({
                "proposal_id": id,
                "tool": started.call.tool,
                "arguments_hash": started.call.arguments_hash,
                "succeeded": succeeded,
            })),
        };
        self.append(event).await?;
        let done = self
            .store()
            .proposal(caller.tenant(), id)
            .await?
            .ok_or_else(|| CoreError::not_found("proposal", id))?;
        Ok(self.shown_proposal(done))
    }

    async fn run_proposal(
        &self,
        caller: &Principal,
        proposal: &Proposal,
    ) -> Result<Result<Value, Value>, CallError> {
        let call = &proposal.call;
        let store = self.inner.service.store();
        let mandate = store
            .mandate(call.tenant_id, call.mandate_id)
            .await?
            .ok_or_else(|| CallError::Invalid("the proposal's mandate no longer exists".into()))?;
        let agent = store
            .agent(call.tenant_id, call.agent_id)
            .await?
            .ok_or_else(|| CallError::Invalid("the proposing agent no longer exists".into()))?;
        let Some(listing) = self.inner.forwarder.find(&mandate, &call.tool).await? else {
            return Ok(Err(refusal(
                Refusal::NotAvailable,
                "the tool is no longer available",
                Value::Null,
            )));
        };
        let executor = Caller::executor(caller, agent, mandate, call.delegation_chain.clone());
        self.execute(
            &executor,
            &listing,
            &call.arguments,
            Execution::Proposal(proposal.id),
        )
        .await
    }

    /// A person's call on an agent's behalf (`execution`): decided through the same
    /// path as an agent's call, then forwarded through the gateway if allowed; a
    /// refusal is answered as the gateway would refuse the agent.
    pub(super) async fn execute(
        &self,
        executor: &Caller,
        listing: &Listing,
        arguments: &Value,
        execution: Execution,
    ) -> Result<Result<Value, Value>, CallError> {
        let verdict = self
            .authorize_execution(
                executor,
                Call {
                    action: CallAction::CallTool,
                    target: listing.target(),
                    arguments,
                },
                execution,
            )
            .await?;
        match verdict {
            Verdict::Allow { .. } => {
                self.inner
                    .forwarder
                    .call_tool(listing, &executor.mandate, arguments)
                    .await
            }
            Verdict::Deny { reason, budget, .. } => Ok(Err(refusal(
                if budget {
                    Refusal::Budget
                } else {
                    Refusal::Denied
                },
                format!("denied at execution: {reason}"),
                json!({"detail": reason}),
            ))),
            Verdict::Approval(_) | Verdict::Proposal(_) => Ok(Err(refusal(
                Refusal::ApprovalRequired,
                "the call still needs an approval",
                Value::Null,
            ))),
        }
    }
}
