//! Deciding one call: the token's scope, the policy decision point, approvals of the
//! exact arguments, proposals for recommend-only mandates, budgets, and the durable
//! decision record — in that order, failing closed at every step.
//!
//! ```text
//!   token scope ──► decide (approved = false) ──allowed──► spend budget ──► record ──► Allow
//!                        │ remedy approval: an approved, unused approval for these exact
//!                        │   arguments? decide again (approved = true) ──► use it once ──► …
//!                        │   otherwise hold the call ──► Approval
//!                        │ remedy recommend: record a proposal ──► Proposal
//!                        └ otherwise ──► Deny (out-of-scope denials never name the tool)
//! ```

use chrono::{DateTime, Duration, Utc};
use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{
    AgentStatus, Approval, ApprovalStatus, HeldCall, Mandate, MandateStatus, Proposal,
    ProposalStatus, Tool,
};
use mandate_policy::{CallAction, CallRequest, Cause, CompiledSet, Decision, Remedy, tool_name};
use mandate_store::CallKey;
use mandate_types::{ApprovalId, ProposalId};
use serde_json::{Map, Value, json};
use tracing::Instrument as _;

use super::{
    Call, CallError, Caller, Calls, Execution, Target, Verdict, arguments_hash, obj, redact,
};
use crate::Presented;

/// What the policy's decision asks of the call path. Matched exhaustively: a new
/// cause in the policy crate breaks this at compile time.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Allow,
    /// Denied; a human's approval of these exact arguments would lift it.
    Approve,
    /// Denied; recording a proposal for a human to execute is the answer.
    Propose,
    /// Denied; `hidden`: the tool must not be named to the caller.
    Deny {
        hidden: bool,
    },
}

fn next(decision: &Decision, action: CallAction, has_arguments: bool) -> Next {
    let liftable = action == CallAction::CallTool && has_arguments;
    match (decision.cause, decision.remedy) {
        (Cause::Permitted, _) => Next::Allow,
        (Cause::OutOfScope, _) => Next::Deny { hidden: true },
        (Cause::Forbidden, Some(Remedy::Approval)) if liftable => Next::Approve,
        (Cause::Forbidden, Some(Remedy::Recommend)) if liftable => Next::Propose,
        (Cause::Forbidden | Cause::OverBudget | Cause::NotPermitted | Cause::Refused, _) => {
            Next::Deny { hidden: false }
        }
    }
}

/// The `outcome` a decision event records for `verdict`.
fn verdict_outcome(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Allow { .. } => "allow",
        Verdict::Deny { .. } => "deny",
        Verdict::Approval(_) => "approval_required",
        Verdict::Proposal(_) => "proposed",
    }
}

/// The spend a call declares at the tool's `amount_argument` pointer.
fn amount(tool: &Tool, arguments: Option<&Value>) -> Result<u64, String> {
    let Some(pointer) = &tool.amount_argument else {
        return Ok(0);
    };
    arguments
        .and_then(|a| a.pointer(pointer))
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            format!("the call's amount (at `{pointer}`) is missing or not a non-negative integer")
        })
}

impl Calls {
    /// Verifies a task token for its audience and reads its agent and mandate as they
    /// are now. Every failure is `Unauthenticated` except a store failure.
    pub async fn authenticate(&self, presented: &Presented<'_>) -> Result<Caller, CallError> {
        let token = self.inner.tokens.verify_access(presented).await?;
        let (Some(mandate_id), Some(agent_id)) = (token.mandate, token.actor()) else {
            return Err(CallError::Unauthenticated {
                description: Some("the token is not bound to a mandate".into()),
            });
        };
        let store = self.inner.service.store();
        let agent = store
            .agent(token.tenant, agent_id)
            .await?
            .filter(|a| a.status == AgentStatus::Active)
            .ok_or_else(|| CallError::Unauthenticated {
                description: Some("the token's agent is unknown or disabled".into()),
            })?;
        let mandate = store
            .mandate(token.tenant, mandate_id)
            .await?
            .ok_or_else(|| CallError::Unauthenticated {
                description: Some("the token's mandate is unknown".into()),
            })?;
        // A mandate that ended stops its tokens here, before the revocation list has
        // heard of them (the replica that ended it evicted its cached copy at once).
        let now = self.inner.service.clock().now();
        if mandate.status != MandateStatus::Active || now >= mandate.terms.expires_at {
            return Err(CallError::Unauthenticated {
                description: Some("the token's mandate is no longer active".into()),
            });
        }
        Ok(Caller::from_token(&token, agent, mandate))
    }

    /// Decides an agent's call and records the decision durably; `Err` means nothing
    /// may be forwarded (the decision or its record could not be made).
    pub async fn authorize(&self, caller: &Caller, call: Call<'_>) -> Result<Verdict, CallError> {
        let span = tracing::info_span!(
            target: crate::trace::TARGET,
            "decision",
            mcp.server = call.target.server.name.as_str(),
            tool.name = call.target.tool.name.as_str(),
            mandate.decision = tracing::field::Empty,
        );
        let verdict = self
            .decide_and_record(caller, call, Execution::Agent)
            .instrument(span.clone())
            .await?;
        span.record("mandate.decision", verdict_outcome(&verdict));
        if let Verdict::Deny { hidden, .. } = &verdict {
            self.count_refusal(caller, *hidden).await;
        }
        Ok(verdict)
    }

    /// Decides a person's call made on an agent's behalf — executing a recorded
    /// proposal, or a rollback's compensation — like [`Calls::authorize`] but with what
    /// that execution lifts (see [`Execution`]); refusals are not the agent's, so they
    /// count for no drift.
    pub(super) async fn authorize_execution(
        &self,
        executor: &Caller,
        call: Call<'_>,
        execution: Execution,
    ) -> Result<Verdict, CallError> {
        self.decide_and_record(executor, call, execution).await
    }

    async fn decide_and_record(
        &self,
        caller: &Caller,
        call: Call<'_>,
        execution: Execution,
    ) -> Result<Verdict, CallError> {
        let Call {
            action,
            target,
            arguments,
        } = call;
        let arguments = Some(arguments);
        let name = tool_name(target.server, target.tool);
        let hash = arguments.map(arguments_hash);
        let now = self.inner.service.clock().now();
        // The spend the call declares (a call refused for a missing or bad amount is
        // refused below, after the scope check).
        let declared = match action {
            CallAction::CallTool => amount(target.tool, arguments),
            _ => Ok(0),
        };
        // The verdict, once its decision event is durable.
        let record = |verdict: Verdict, decision: Option<&Decision>| {
            let mut event = self.decision_event(
                caller,
                action,
                &name,
                hash.as_deref(),
                arguments,
                &verdict,
                decision,
            );
            if let Ok(spent) = &declared
                && *spent > 0
            {
                // What the call spends of the budget (the overview's burn-down).
                event.data.insert("amount".into(), json!(spent));
            }
            if let Execution::Rollback(of) = execution {
                // A rollback decision, on the person's authority, naming the call it undoes.
                event.data.insert("rollback_of".into(), json!(of));
            }
            let span = tracing::info_span!(target: crate::trace::TARGET, "durable_write");
            async move { self.append(event).instrument(span).await.map(|()| verdict) }
        };

        if !caller.scope_covers(&name) {
            return record(
                Verdict::Deny {
                    reason: "outside the token's scope".into(),
                    hidden: true,
                    budget: false,
                },
                None,
            )
            .await;
        }
        let amount = match &declared {
            Ok(amount) => *amount,
            Err(reason) => {
                return record(
                    Verdict::Deny {
                        reason: reason.clone(),
                        hidden: false,
                        budget: false,
                    },
                    None,
                )
                .await;
            }
        };
        let set = self.inner.service.policies().pdp().current();
        let executing = matches!(execution, Execution::Proposal(_));
        let rollback = matches!(execution, Execution::Rollback(_));
        let request = CallRequest {
            action,
            agent: &caller.agent,
            mandate: &caller.mandate,
            tool: target.tool,
            server: target.server,
            arguments,
            amount,
            approved: executing || rollback,
            executing_proposal: executing,
            rollback,
            delegation_chain: &caller.chain,
            dpop_bound: caller.dpop_bound,
            now,
        };
        let mut decision = tracing::info_span!(target: crate::trace::TARGET, "policy_decision")
            .in_scope(|| set.decide_call(&request));
        let mut used_approval = None;
        let mut step = next(&decision, action, hash.is_some());

        if let (Next::Approve, Some(hash)) = (&step, &hash) {
            let key = CallKey {
                tenant: caller.mandate.tenant_id,
                mandate: caller.mandate.id,
                agent: caller.agent.id,
                tool: &name,
                arguments_hash: hash,
            };
            let store = self.inner.service.store();
            let Some(approval) = store.approved_call(&key, now).await? else {
                let held = self
                    .hold(caller, target, &name, hash, arguments, &decision)
                    .await?;
                return record(held, Some(&decision)).await;
            };
            // Re-evaluated now: a mandate revoked since the approval wins.
            let again = set.decide_call(&CallRequest {
                approved: true,
                ..request.clone()
            });
            if again.allowed {
                if store
                    .use_approval(caller.mandate.tenant_id, approval.id, now)
                    .await?
                {
                    used_approval = Some(approval.id);
                    decision = again;
                } else {
                    // A concurrent identical retry used it first: this call is held
                    // anew, exactly as a retry after it would be (one answer to act on,
                    // with the approval to ask for).
                    let held = self
                        .hold(caller, target, &name, hash, arguments, &decision)
                        .await?;
                    return record(held, Some(&decision)).await;
                }
            } else {
                decision = again;
            }
            // What the second decision asks; never a second approval.
            step = match next(&decision, action, true) {
                Next::Approve => Next::Deny { hidden: false },
                other => other,
            };
        }

        if let (Next::Propose, Some(hash)) = (&step, &hash) {
            let proposal = Proposal {
                id: ProposalId::generate(),
                call: self.held_call(caller, target, &name, hash, arguments, &decision),
                status: ProposalStatus::Recorded,
                created_at: now,
                executed_by: None,
                executed_at: None,
                outcome: None,
            };
            self.inner
                .service
                .store()
                .record_proposal(&proposal)
                .await?;
            return record(Verdict::Proposal(Box::new(proposal)), Some(&decision)).await;
        }
        if !decision.allowed {
            return record(
                Verdict::Deny {
                    reason: decision.reason.clone(),
                    hidden: matches!(step, Next::Deny { hidden: true }),
                    // Spent already (the policy saw the usage) or by this call (the
                    // spend below): the client is told the same.
                    budget: decision.cause == Cause::OverBudget,
                },
                Some(&decision),
            )
            .await;
        }

        let budgets = &caller.mandate.terms.budgets;
        let limited = budgets.max_calls.is_some() || budgets.max_amount.is_some();
        if action == CallAction::CallTool && !limited {
            // Nothing to refuse: the use is counted in memory and written in batches,
            // off the call's path (the decision's own durable write is the only one a
            // call waits for).
            self.inner.usage.add(
                self.inner.service.store(),
                caller.mandate.tenant_id,
                caller.mandate.id,
                amount,
            );
        }
        if action == CallAction::CallTool
            && limited
            && self
                .inner
                .service
                .store()
                .spend(
                    caller.mandate.tenant_id,
                    caller.mandate.id,
                    1,
                    amount,
                    budgets,
                )
                .await?
                .is_none()
        {
            return record(
                Verdict::Deny {
                    reason: "the mandate's budget does not cover this call".into(),
                    hidden: false,
                    budget: true,
                },
                Some(&decision),
            )
            .await;
        }
        record(
            Verdict::Allow {
                approval: used_approval,
            },
            Some(&decision),
        )
        .await
    }

    /// Records and counts a call on a tool that is not in the catalog at all (refused
    /// exactly like one out of scope).
    pub async fn refuse_unknown(&self, caller: &Caller, name: &str) -> Result<(), CallError> {
        let verdict = Verdict::Deny {
            reason: "no such tool".into(),
            hidden: true,
            budget: false,
        };
        let event = self.decision_event(
            caller,
            CallAction::CallTool,
            name,
            None,
            None,
            &verdict,
            None,
        );
        self.append(event).await?;
        self.count_refusal(caller, true).await;
        Ok(())
    }

    fn held_call(
        &self,
        caller: &Caller,
        target: Target<'_>,
        name: &str,
        hash: &str,
        arguments: Option<&Value>,
        decision: &Decision,
    ) -> HeldCall {
        HeldCall {
            tenant_id: caller.mandate.tenant_id,
            mandate_id: caller.mandate.id,
            agent_id: caller.agent.id,
            human_id: caller.mandate.terms.human_id,
            delegation_chain: caller.chain.clone(),
            tool: name.to_owned(),
            risk_tier: target.tool.risk_tier,
            arguments: arguments.cloned().unwrap_or(Value::Null),
            arguments_hash: hash.to_owned(),
            reason: decision.reason.clone(),
        }
    }

    async fn hold(
        &self,
        caller: &Caller,
        target: Target<'_>,
        name: &str,
        hash: &str,
        arguments: Option<&Value>,
        decision: &Decision,
    ) -> Result<Verdict, CallError> {
        let now = self.inner.service.clock().now();
        let ttl =
            Duration::from_std(self.inner.settings.approval_ttl).unwrap_or(Duration::minutes(15));
        let approval = Approval {
            id: ApprovalId::generate(),
            call: self.held_call(caller, target, name, hash, arguments, decision),
            status: ApprovalStatus::Pending,
            created_at: now,
            expires_at: (now + ttl).min(caller.mandate.terms.expires_at),
            decided_by: None,
            decided_at: None,
            comment: None,
            used_at: None,
        };
        let held = self
            .inner
            .service
            .store()
            .hold_for_approval(&approval, now)
            .await?;
        if held.id == approval.id {
            let event = NewEvent {
                tenant_id: caller.mandate.tenant_id,
                kind: EventKind::ApprovalRequested,
                mandate_id: Some(caller.mandate.id),
                agent_id: Some(caller.agent.id),
                human_id: Some(caller.mandate.terms.human_id),
                actor: caller.actor.clone(),
                data: obj(json!({
                    "approval_id": held.id,
                    "tool": name,
                    "arguments_hash": hash,
                    "risk_tier": held.call.risk_tier,
                    "expires_at": held.expires_at,
                })),
            };
            self.append(event).await?;
            self.inner.notifier.approval_requested(&held);
        }
        Ok(Verdict::Approval(Box::new(held)))
    }

    #[allow(clippy::too_many_arguments, reason = "one record of one decision")]
    fn decision_event(
        &self,
        caller: &Caller,
        action: CallAction,
        name: &str,
        hash: Option<&str>,
        arguments: Option<&Value>,
        verdict: &Verdict,
        decision: Option<&Decision>,
    ) -> NewEvent {
        let mut data = Map::new();
        data.insert("action".into(), json!(action.as_str()));
        data.insert("tool".into(), json!(name));
        if let Some(jti) = &caller.jti {
            data.insert("jti".into(), json!(jti));
        }
        if let Some(hash) = hash {
            data.insert("arguments_hash".into(), json!(hash));
        }
        if self.inner.settings.capture_arguments
            && let Some(arguments) = arguments
        {
            data.insert(
                "arguments".into(),
                redact(arguments, &self.inner.settings.redact),
            );
        }
        let allowed = matches!(verdict, Verdict::Allow { .. });
        let outcome = verdict_outcome(verdict);
        match verdict {
            Verdict::Allow { approval } => {
                if let Some(id) = approval {
                    data.insert("approval_id".into(), json!(id));
                }
            }
            Verdict::Deny { reason, hidden, .. } => {
                data.insert("reason".into(), json!(reason));
                if *hidden {
                    data.insert("out_of_scope".into(), json!(true));
                }
            }
            Verdict::Approval(a) => {
                data.insert("approval_id".into(), json!(a.id));
            }
            Verdict::Proposal(p) => {
                data.insert("proposal_id".into(), json!(p.id));
            }
        }
        data.insert("allowed".into(), json!(allowed));
        data.insert("outcome".into(), json!(outcome));
        if let Some(decision) = decision {
            data.insert("policies".into(), json!(decision.policies));
            if !matches!(verdict, Verdict::Deny { .. }) {
                data.insert("reason".into(), json!(decision.reason));
            }
        }
        if !caller.chain.is_empty() {
            data.insert("delegation_chain".into(), json!(caller.chain));
        }
        caller.mark_trace(&mut data);
        NewEvent {
            tenant_id: caller.mandate.tenant_id,
            kind: EventKind::Decision,
            mandate_id: Some(caller.mandate.id),
            agent_id: Some(caller.agent.id),
            human_id: Some(caller.mandate.terms.human_id),
            actor: caller.actor.clone(),
            data,
        }
    }

    /// Decides which of `tools` the caller may see, recording one event for the listing.
    pub async fn visible<'a>(
        &self,
        caller: &Caller,
        tools: impl IntoIterator<Item = Target<'a>>,
    ) -> Result<Vec<Target<'a>>, CallError> {
        let now = self.inner.service.clock().now();
        let set = self.inner.service.policies().pdp().current();
        let mut shown = Vec::new();
        let mut hidden = 0usize;
        for target in tools {
            let name = tool_name(target.server, target.tool);
            let allowed =
                caller.scope_covers(&name) && listable(&set, caller, &caller.mandate, target, now);
            if allowed {
                shown.push(target);
            } else {
                hidden += 1;
            }
        }
        let mut data = obj(json!({
            "action": CallAction::ListTools.as_str(),
            "jti": caller.jti,
            "shown": shown.len(),
            "hidden": hidden,
            "allowed": true,
            "outcome": "list",
        }));
        caller.mark_trace(&mut data);
        let event = NewEvent {
            tenant_id: caller.mandate.tenant_id,
            kind: EventKind::Decision,
            mandate_id: Some(caller.mandate.id),
            agent_id: Some(caller.agent.id),
            human_id: Some(caller.mandate.terms.human_id),
            actor: caller.actor.clone(),
            data,
        };
        self.append(event).await?;
        Ok(shown)
    }
}

impl Calls {
    /// Whether `caller` would see one of `targets` in a tool list now: decided as
    /// [`Calls::visible`] decides (scope, then policies) but recording nothing. Who is
    /// told that a server's tools changed: only a caller for whom one of the changed
    /// tools is visible.
    pub fn sees_any<'a>(
        &self,
        caller: &Caller,
        targets: impl IntoIterator<Item = Target<'a>>,
    ) -> bool {
        let now = self.inner.service.clock().now();
        let set = self.inner.service.policies().pdp().current();
        targets.into_iter().any(|target| {
            caller.scope_covers(&tool_name(target.server, target.tool))
                && listable(&set, caller, &caller.mandate, target, now)
        })
    }

    /// Whether `caller` may read `uri` through `entry` (a server's `/resources` entry)
    /// now: the decision `resources/read` gets, but recorded nowhere and spending
    /// nothing. A resource's update is told only to a subscriber who may still read it;
    /// anything but a plain permit (a remedy, a budget) is no.
    pub fn may_read(&self, caller: &Caller, entry: Target<'_>, uri: &str) -> bool {
        if !caller.scope_covers(&tool_name(entry.server, entry.tool)) {
            return false;
        }
        let set = self.inner.service.policies().pdp().current();
        let arguments = json!({"method": "resources/read", "target": uri});
        let now = self.inner.service.clock().now();
        let asked = (CallAction::ReadResource, Some(&arguments));
        permitted(&set, caller, &caller.mandate, entry, asked, now)
    }
}

/// Whether the policies let `caller` see `target` in a listing under `mandate` (the
/// caller's own, or one that would also grant the tool).
pub(super) fn listable(
    set: &CompiledSet,
    caller: &Caller,
    mandate: &Mandate,
    target: Target<'_>,
    now: DateTime<Utc>,
) -> bool {
    permitted(
        set,
        caller,
        mandate,
        target,
        (CallAction::ListTools, None),
        now,
    )
}

/// Whether the policies plainly permit `action` (with `arguments`) on `target` under
/// `mandate`: nothing approved, executed or rolled back, nothing spent.
fn permitted(
    set: &CompiledSet,
    caller: &Caller,
    mandate: &Mandate,
    target: Target<'_>,
    (action, arguments): (CallAction, Option<&Value>),
    now: DateTime<Utc>,
) -> bool {
    set.decide_call(&CallRequest {
        action,
        agent: &caller.agent,
        mandate,
        tool: target.tool,
        server: target.server,
        arguments,
        amount: 0,
        approved: false,
        executing_proposal: false,
        rollback: false,
        delegation_chain: &caller.chain,
        dpop_bound: caller.dpop_bound,
        now,
    })
    .allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(cause: Cause, remedy: Option<Remedy>) -> Decision {
        Decision {
            allowed: cause == Cause::Permitted,
            cause,
            remedy,
            ..Decision::refused("test")
        }
    }

    #[test]
    fn every_cause_leads_to_one_step() {
        let call = CallAction::CallTool;
        let cases = [
            (Cause::Permitted, None, Next::Allow),
            (Cause::OutOfScope, None, Next::Deny { hidden: true }),
            (Cause::Forbidden, None, Next::Deny { hidden: false }),
            (Cause::OverBudget, None, Next::Deny { hidden: false }),
            (Cause::Forbidden, Some(Remedy::Approval), Next::Approve),
            (Cause::Forbidden, Some(Remedy::Recommend), Next::Propose),
            (
                Cause::Forbidden,
                Some(Remedy::Consent),
                Next::Deny { hidden: false },
            ),
            (Cause::NotPermitted, None, Next::Deny { hidden: false }),
            (Cause::Refused, None, Next::Deny { hidden: false }),
        ];
        for (cause, remedy, step) in cases {
            assert_eq!(
                next(&decision(cause, remedy), call, true),
                step,
                "{cause:?} {remedy:?}"
            );
        }
        // An out-of-scope tool is never held or proposed, whatever the remedy says.
        assert_eq!(
            next(
                &decision(Cause::OutOfScope, Some(Remedy::Approval)),
                call,
                true
            ),
            Next::Deny { hidden: true }
        );
        // Only a tool call with arguments is held or proposed.
        for remedy in [Remedy::Approval, Remedy::Recommend] {
            let d = decision(Cause::Forbidden, Some(remedy));
            assert_eq!(next(&d, call, false), Next::Deny { hidden: false });
            assert_eq!(
                next(&d, CallAction::ReadResource, true),
                Next::Deny { hidden: false }
            );
        }
    }
}
