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

use chrono::Duration;
use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{
    Agent, Approval, ApprovalStatus, HeldCall, Mandate, Proposal, ProposalStatus, Tool, ToolServer,
    canonical,
};
use mandate_policy::{CallAction, CallRequest, Decision, Remedy, tool_name};
use mandate_store::CallKey;
use mandate_token::TaskToken;
use mandate_types::{AgentId, ApprovalId, ProposalId};
use serde_json::{Map, Value, json};

use crate::{Gateway, GatewayError};

/// Who is calling: the agent and its mandate as they are in the store now, and what
/// its task token narrows (absent when a human executes a proposal).
#[derive(Debug, Clone)]
pub struct Caller {
    pub agent: Agent,
    pub mandate: Mandate,
    /// The agents above the caller, the mandate's grantee first.
    pub chain: Vec<AgentId>,
    /// The token's scope; `None`: the mandate's scope alone decides.
    pub scope: Option<Vec<String>>,
    /// The token's `jti`, for the audit record.
    pub jti: Option<String>,
    pub dpop_bound: bool,
    /// Labels for audit records, outermost first.
    pub actor: Vec<String>,
}

impl Caller {
    /// An agent presenting a verified task token.
    pub fn from_token(token: &TaskToken, agent: Agent, mandate: Mandate) -> Caller {
        Caller {
            agent,
            mandate,
            chain: token.delegation_chain(),
            scope: Some(token.scope.clone()),
            jti: Some(token.jti.clone()),
            dpop_bound: token.cnf_jkt.is_some(),
            actor: token.actors.iter().map(|a| format!("agent:{a}")).collect(),
        }
    }

    pub(crate) fn actor(&self) -> Vec<String> {
        self.actor.clone()
    }

    fn scope_covers(&self, name: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| scope_covers(s, name))
    }
}

/// What the call is on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub server: &'a ToolServer,
    pub tool: &'a Tool,
}

/// The answer for one call.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Forward it. `approval` is the approval it used, if one lifted a deny.
    Allow { approval: Option<ApprovalId> },
    /// Refuse it. `hidden`: the tool is outside the caller's authority, and the answer
    /// must not reveal that it exists.
    Deny { reason: String, hidden: bool },
    /// Held until a human approves these exact arguments.
    Approval(Box<Approval>),
    /// Recorded for a human to execute (recommend-only mandate).
    Proposal(Box<Proposal>),
}

/// How a human's execution of a proposal enters the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// An agent's own call.
    Agent,
    /// A human executing a recorded proposal: the recommend-only limit and the need for
    /// approval are lifted (the human's execution approves these exact arguments).
    Proposal(ProposalId),
}

/// The arguments' binding hash: `sha256:` over their canonical encoding.
pub fn arguments_hash(arguments: &Value) -> String {
    format!("sha256:{}", canonical::sha256_hex(arguments))
}

/// Whether a token's scope (tool names or `prefix*` patterns) covers `name`.
pub fn scope_covers(scope: &[String], name: &str) -> bool {
    scope
        .iter()
        .any(|entry| mandate_domain::scope_covers(entry, name))
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

/// A copy of `arguments` with the values at `pointers` replaced by `"[redacted]"`.
pub fn redact(arguments: &Value, pointers: &[String]) -> Value {
    let mut copy = arguments.clone();
    for pointer in pointers {
        if let Some(slot) = copy.pointer_mut(pointer) {
            *slot = json!("[redacted]");
        }
    }
    copy
}

impl Gateway {
    /// Decides one call and records the decision durably; `Err` means nothing may be
    /// forwarded (the decision or its record could not be made).
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: CallAction,
        target: Target<'_>,
        arguments: Option<&Value>,
        execution: Execution,
    ) -> Result<Verdict, GatewayError> {
        let verdict = self
            .decide_and_record(caller, action, target, arguments, execution)
            .await?;
        if let Verdict::Deny { hidden, .. } = &verdict
            && execution == Execution::Agent
        {
            self.count_refusal(caller, *hidden).await;
        }
        Ok(verdict)
    }

    async fn decide_and_record(
        &self,
        caller: &Caller,
        action: CallAction,
        target: Target<'_>,
        arguments: Option<&Value>,
        execution: Execution,
    ) -> Result<Verdict, GatewayError> {
        let name = tool_name(target.server, target.tool);
        let hash = arguments.map(arguments_hash);
        let now = self.service.clock().now();
        let record = |verdict: &Verdict, decision: Option<&Decision>| {
            self.decision_event(
                caller,
                action,
                &name,
                hash.as_deref(),
                arguments,
                verdict,
                decision,
            )
        };

        if !caller.scope_covers(&name) {
            let verdict = Verdict::Deny {
                reason: "outside the token's scope".into(),
                hidden: true,
            };
            self.append(record(&verdict, None)).await?;
            return Ok(verdict);
        }
        let amount = match action {
            CallAction::CallTool => match amount(target.tool, arguments) {
                Ok(amount) => amount,
                Err(reason) => {
                    let verdict = Verdict::Deny {
                        reason,
                        hidden: false,
                    };
                    self.append(record(&verdict, None)).await?;
                    return Ok(verdict);
                }
            },
            _ => 0,
        };
        let set = self.service.policies().pdp().current();
        let executing = matches!(execution, Execution::Proposal(_));
        let request = CallRequest {
            action,
            agent: &caller.agent,
            mandate: &caller.mandate,
            tool: target.tool,
            server: target.server,
            arguments,
            amount,
            approved: executing,
            executing_proposal: executing,
            delegation_chain: &caller.chain,
            dpop_bound: caller.dpop_bound,
            now,
        };
        let mut decision = set.decide_call(&request);
        let mut used_approval = None;

        if !decision.allowed
            && decision.remedy == Some(Remedy::Approval)
            && action == CallAction::CallTool
            && let Some(hash) = &hash
        {
            let key = CallKey {
                tenant: caller.mandate.tenant_id,
                mandate: caller.mandate.id,
                agent: caller.agent.id,
                tool: &name,
                arguments_hash: hash,
            };
            match self.store().approved_call(&key, now).await? {
                Some(approval) => {
                    // Re-evaluated now: a mandate revoked since the approval wins.
                    let again = set.decide_call(&CallRequest {
                        approved: true,
                        ..request.clone()
                    });
                    if again.allowed {
                        if self
                            .store()
                            .use_approval(caller.mandate.tenant_id, approval.id, now)
                            .await?
                        {
                            used_approval = Some(approval.id);
                            decision = again;
                        } else {
                            decision =
                                Decision::refused("the approval for this call was already used");
                        }
                    } else {
                        decision = again;
                    }
                }
                None => {
                    let verdict = self
                        .hold(caller, target, &name, hash, arguments, &decision)
                        .await?;
                    self.append(record(&verdict, Some(&decision))).await?;
                    return Ok(verdict);
                }
            }
        }

        if !decision.allowed
            && decision.remedy == Some(Remedy::Recommend)
            && action == CallAction::CallTool
            && let Some(hash) = &hash
        {
            let proposal = Proposal {
                id: ProposalId::generate(),
                call: self.held_call(caller, target, &name, hash, arguments, &decision),
                status: ProposalStatus::Recorded,
                created_at: now,
                executed_by: None,
                executed_at: None,
                outcome: None,
            };
            self.store().record_proposal(&proposal).await?;
            let verdict = Verdict::Proposal(Box::new(proposal));
            self.append(record(&verdict, Some(&decision))).await?;
            return Ok(verdict);
        }

        if !decision.allowed {
            let hidden = decision.hides_tool();
            let verdict = Verdict::Deny {
                reason: decision.reason.clone(),
                hidden,
            };
            self.append(record(&verdict, Some(&decision))).await?;
            return Ok(verdict);
        }

        let budgets = &caller.mandate.terms.budgets;
        let limited = budgets.max_calls.is_some() || budgets.max_amount.is_some();
        if action == CallAction::CallTool && !limited {
            // Nothing to refuse: the use is counted in memory and written in batches,
            // off the call's path (the decision's own durable write is the only one a
            // call waits for).
            self.usage
                .add(self, caller.mandate.tenant_id, caller.mandate.id, amount);
        }
        if action == CallAction::CallTool
            && limited
            && self
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
            let verdict = Verdict::Deny {
                reason: "the mandate's budget does not cover this call".into(),
                hidden: false,
            };
            self.append(record(&verdict, Some(&decision))).await?;
            return Ok(verdict);
        }
        let verdict = Verdict::Allow {
            approval: used_approval,
        };
        self.append(record(&verdict, Some(&decision))).await?;
        Ok(verdict)
    }

    /// Records and counts a call on a tool that is not in the catalog at all (refused
    /// exactly like one out of scope).
    pub async fn refuse_unknown(&self, caller: &Caller, name: &str) -> Result<(), GatewayError> {
        let verdict = Verdict::Deny {
            reason: "no such tool".into(),
            hidden: true,
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
    ) -> Result<Verdict, GatewayError> {
        let now = self.service.clock().now();
        let ttl = Duration::from_std(self.config.approval_ttl).unwrap_or(Duration::minutes(15));
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
        let held = self.store().hold_for_approval(&approval, now).await?;
        if held.id == approval.id {
            let event = NewEvent {
                tenant_id: caller.mandate.tenant_id,
                kind: EventKind::ApprovalRequested,
                mandate_id: Some(caller.mandate.id),
                agent_id: Some(caller.agent.id),
                human_id: Some(caller.mandate.terms.human_id),
                actor: caller.actor(),
                data: obj(json!({
                    "approval_id": held.id,
                    "tool": name,
                    "arguments_hash": hash,
                    "risk_tier": held.call.risk_tier,
                    "expires_at": held.expires_at,
                })),
            };
            self.append(event).await?;
            self.notify_approval(&held);
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
        if self.config.capture_arguments
            && let Some(arguments) = arguments
        {
            data.insert("arguments".into(), redact(arguments, &self.config.redact));
        }
        let (allowed, outcome) = match verdict {
            Verdict::Allow { approval } => {
                if let Some(id) = approval {
                    data.insert("approval_id".into(), json!(id));
                }
                (true, "allow")
            }
            Verdict::Deny { reason, hidden } => {
                data.insert("reason".into(), json!(reason));
                if *hidden {
                    data.insert("out_of_scope".into(), json!(true));
                }
                (false, "deny")
            }
            Verdict::Approval(a) => {
                data.insert("approval_id".into(), json!(a.id));
                (false, "approval_required")
            }
            Verdict::Proposal(p) => {
                data.insert("proposal_id".into(), json!(p.id));
                (false, "proposed")
            }
        };
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
        NewEvent {
            tenant_id: caller.mandate.tenant_id,
            kind: EventKind::Decision,
            mandate_id: Some(caller.mandate.id),
            agent_id: Some(caller.agent.id),
            human_id: Some(caller.mandate.terms.human_id),
            actor: caller.actor(),
            data,
        }
    }

    /// Decides which of `tools` the caller may see, recording one event for the listing.
    pub async fn visible<'a>(
        &self,
        caller: &Caller,
        tools: impl IntoIterator<Item = Target<'a>>,
    ) -> Result<Vec<Target<'a>>, GatewayError> {
        let now = self.service.clock().now();
        let set = self.service.policies().pdp().current();
        let mut shown = Vec::new();
        let mut hidden = 0usize;
        for target in tools {
            let name = tool_name(target.server, target.tool);
            let allowed = caller.scope_covers(&name)
                && set
                    .decide_call(&CallRequest {
                        action: CallAction::ListTools,
                        agent: &caller.agent,
                        mandate: &caller.mandate,
                        tool: target.tool,
                        server: target.server,
                        arguments: None,
                        amount: 0,
                        approved: false,
                        executing_proposal: false,
                        delegation_chain: &caller.chain,
                        dpop_bound: caller.dpop_bound,
                        now,
                    })
                    .allowed;
            if allowed {
                shown.push(target);
            } else {
                hidden += 1;
            }
        }
        let event = NewEvent {
            tenant_id: caller.mandate.tenant_id,
            kind: EventKind::Decision,
            mandate_id: Some(caller.mandate.id),
            agent_id: Some(caller.agent.id),
            human_id: Some(caller.mandate.terms.human_id),
            actor: caller.actor(),
            data: obj(json!({
                "action": CallAction::ListTools.as_str(),
                "jti": caller.jti,
                "shown": shown.len(),
                "hidden": hidden,
                "allowed": true,
                "outcome": "list",
            })),
        };
        self.append(event).await?;
        Ok(shown)
    }
}

pub(crate) fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_redaction_and_hashes() {
        let scope = vec!["bank.get_balance".to_owned(), "files.*".to_owned()];
        assert!(scope_covers(&scope, "bank.get_balance"));
        assert!(scope_covers(&scope, "files.delete_files"));
        assert!(!scope_covers(&scope, "bank.transfer"));
        assert!(!scope_covers(&[], "bank.transfer"));

        let args = json!({"to": "bob", "card": {"number": "4111", "cvc": "123"}, "n": 1});
        let red = redact(&args, &["/card/number".into(), "/missing".into()]);
        assert_eq!(red["card"]["number"], "[redacted]");
        assert_eq!(red["card"]["cvc"], "123");
        assert_eq!(args["card"]["number"], "4111", "the original is untouched");

        // The hash binds the exact arguments, independent of key order.
        let a = arguments_hash(&json!({"a": 1, "b": [1, 2]}));
        let b = arguments_hash(&json!({"b": [1, 2], "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, arguments_hash(&json!({"a": 1, "b": [2, 1]})));
        assert!(a.starts_with("sha256:"));
    }
}
