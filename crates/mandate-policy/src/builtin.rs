//! The built-in policies (`cedar/builtin.cedar`) answered for a call without running
//! Cedar over them: which of them hold for this call.
//!
//! Cedar's evaluator spends most of a call decision on per-policy work (building each
//! policy's condition, partial evaluation, its response), and the built-ins are a
//! dozen policies that every call meets. Their text stays their definition: the
//! unindexed path ([`crate::Lookup::Unindexed`]) evaluates exactly that text in Cedar,
//! every test of `tests/mandate_decisions.rs` decides both ways and compares, and
//! `tests/builtin_equivalence.rs` compares them on generated calls that reach every
//! policy on both sides of each of its boundaries. A change to `builtin.cedar` that is
//! not made here too fails those tests.
//!
//! What this answers is what Cedar would: the policies that hold (permits and forbids),
//! for a request whose principal is an agent, whose resource is a tool and whose action
//! is one of the four call actions, with entities and context built from the same
//! facts (`call.rs`). Where Cedar would report an evaluation error (the amount budget's
//! sum overflowing a Long) this answers nothing, and the caller has Cedar decide the
//! whole set. Operator policies are always Cedar's.
//!
//! The token service's requests (`exchange_token`, `delegate`) meet fewer built-ins
//! (the holder, status, window and delegation depth); they are answered here when the
//! set has no operator policies, and by Cedar on the whole set otherwise.

use std::sync::OnceLock;

use cedar_policy::PolicyId;
use chrono::{DateTime, Utc};
use mandate_types::{AgentId, DataClass};

use crate::cache::MandateFacts;
use crate::call::{CallAction, CallRequest, ScopeMatch, as_long, rank_of};
use crate::grant::GrantRequest;

/// The built-in policies that hold for one call.
#[derive(Debug, Default)]
pub(crate) struct Holding {
    pub(crate) permits: Vec<PolicyId>,
    pub(crate) forbids: Vec<PolicyId>,
}

/// The built-in policies' ids, as written in `builtin.cedar`.
struct Ids {
    permit: PolicyId,
    holder: PolicyId,
    status: PolicyId,
    window: PolicyId,
    scope: PolicyId,
    arguments: PolicyId,
    data_ceiling: PolicyId,
    budget_calls: PolicyId,
    budget_amount: PolicyId,
    delegation_depth: PolicyId,
    recommend: PolicyId,
    approval_tier: PolicyId,
    approval_tag: PolicyId,
}

impl Ids {
    fn get() -> &'static Ids {
        static IDS: OnceLock<Ids> = OnceLock::new();
        IDS.get_or_init(|| Ids {
            permit: PolicyId::new("mandate.permit"),
            holder: PolicyId::new("mandate.holder"),
            status: PolicyId::new("mandate.status"),
            window: PolicyId::new("mandate.window"),
            scope: PolicyId::new("mandate.scope"),
            arguments: PolicyId::new("mandate.arguments"),
            data_ceiling: PolicyId::new("mandate.data_ceiling"),
            budget_calls: PolicyId::new("mandate.budget.calls"),
            budget_amount: PolicyId::new("mandate.budget.amount"),
            delegation_depth: PolicyId::new("mandate.delegation_depth"),
            recommend: PolicyId::new("mandate.recommend"),
            approval_tier: PolicyId::new("mandate.approval.tier"),
            approval_tag: PolicyId::new("mandate.approval.tag"),
        })
    }

    /// Every id, to check a compiled set holds exactly these built-ins.
    fn all(&self) -> [&PolicyId; 13] {
        [
            &self.permit,
            &self.holder,
            &self.status,
            &self.window,
            &self.scope,
            &self.arguments,
            &self.data_ceiling,
            &self.budget_calls,
            &self.budget_amount,
            &self.delegation_depth,
            &self.recommend,
            &self.approval_tier,
            &self.approval_tag,
        ]
    }
}

/// Whether `ids` are exactly the built-in policies this module answers for.
pub(crate) fn answers_for<'a>(ids: impl Iterator<Item = &'a PolicyId>) -> bool {
    let mut ids: Vec<&PolicyId> = ids.collect();
    let mut known: Vec<&PolicyId> = Ids::get().all().to_vec();
    ids.sort_unstable();
    known.sort_unstable();
    ids == known
}

/// The built-ins every action meets: the holder, the status and the window; and the
/// delegation depth where `bounded` (the actions that policy names).
fn mandate_limits(
    id: &Ids,
    mandate: &MandateFacts<'_>,
    agent: &AgentId,
    chain: &[AgentId],
    now: &DateTime<Utc>,
    bounded: bool,
    forbids: &mut Vec<PolicyId>,
) {
    let now = now.timestamp();
    let depth = as_long(u64::try_from(chain.len()).unwrap_or(u64::MAX));
    let mut forbid = |holds: bool, policy: &PolicyId| {
        if holds {
            forbids.push(policy.clone());
        }
    };
    forbid(
        mandate.grantee != *agent && !chain.contains(&mandate.grantee),
        &id.holder,
    );
    forbid(mandate.status != "active", &id.status);
    forbid(
        now < mandate.not_before.timestamp() || now >= mandate.expires_at.timestamp(),
        &id.window,
    );
    forbid(
        bounded && depth > as_long(u64::from(mandate.max_delegation_depth)),
        &id.delegation_depth,
    );
}

/// The built-ins that hold for a token-service request: `exchange_token` on the
/// mandate, or `delegate` to an agent, with `chain` the delegation the request would
/// create. The call limits name neither action.
pub(crate) fn grant_holding(grant: &GrantRequest<'_>, chain: &[AgentId]) -> Holding {
    let id = Ids::get();
    let mut forbids = Vec::new();
    mandate_limits(
        id,
        &MandateFacts::of(grant.mandate),
        &grant.agent.id,
        chain,
        &grant.now,
        true,
        &mut forbids,
    );
    Holding {
        permits: vec![id.permit.clone()],
        forbids,
    }
}

/// The built-ins that hold for `call` (whose scope match is `scope`), or `None` where
/// Cedar's answer would carry an evaluation error.
pub(crate) fn holding(call: &CallRequest<'_>, scope: ScopeMatch) -> Option<Holding> {
    let id = Ids::get();
    let mandate = MandateFacts::of(call.mandate);
    let tool = call.tool;
    // Every built-in names one of these actions or all of them; `call_tool` alone
    // carries the limits on a call's content.
    let calling = call.action == CallAction::CallTool;
    let usage = &call.mandate.usage;

    let mut forbids = Vec::new();
    mandate_limits(
        id,
        &mandate,
        &call.agent.id,
        call.delegation_chain,
        &call.now,
        calling,
        &mut forbids,
    );
    let mut forbid = |holds: bool, policy: &PolicyId| {
        if holds {
            forbids.push(policy.clone());
        }
    };
    forbid(!scope.in_scope, &id.scope);
    forbid(calling && !scope.arguments_in_scope, &id.arguments);
    forbid(
        rank_of(DataClass::ALL, &tool.data_class) > rank_of(DataClass::ALL, &mandate.data_ceiling),
        &id.data_ceiling,
    );
    forbid(
        calling
            && mandate
                .max_calls
                .is_some_and(|max| as_long(usage.calls) >= as_long(max)),
        &id.budget_calls,
    );
    if calling && let Some(max) = mandate.max_amount {
        // Cedar's Long addition errs on overflow: that answer is Cedar's to give.
        let total = as_long(usage.amount).checked_add(as_long(call.amount))?;
        forbid(total > as_long(max), &id.budget_amount);
    }
    forbid(
        calling && mandate.mode == "recommend" && !call.executing_proposal,
        &id.recommend,
    );
    forbid(
        calling && mandate.approval_tiers.contains(&tool.risk_tier) && !call.approved,
        &id.approval_tier,
    );
    forbid(
        calling && !mandate.approval_tags.is_disjoint(&tool.tags) && !call.approved,
        &id.approval_tag,
    );
    Some(Holding {
        permits: vec![id.permit.clone()],
        forbids,
    })
}
