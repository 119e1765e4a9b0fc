//! Deciding: candidates from the index, Cedar on each, one combined answer.
//!
//! Cedar skips a policy whose evaluation fails. Here a failing `forbid` counts as
//! satisfied — it might have denied — so an evaluation error can only ever deny.

use std::collections::BTreeSet;

use cedar_policy::{Authorizer, Decision as CedarDecision, Entities, PolicyId, Request};
use serde::Serialize;

use crate::builtin::Holding;
use crate::compile::{CompiledSet, PolicyInfo, Remedy};
use crate::index::{Bucket, Index};

/// Whether to consult the index (always, in production) or evaluate every policy (the
/// reference the index is tested against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Indexed,
    Unindexed,
}

/// Which policies apply: Mandate's own requests see built-in and operator policies;
/// AuthZEN callers see operator policies only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    Mandate,
    Open,
}

/// The built-in forbid that holds when the tool is outside the mandate's scope.
const SCOPE_POLICY: &str = "mandate.scope";
/// The built-in forbids of a spent budget.
const BUDGET_POLICIES: [&str; 2] = ["mandate.budget.calls", "mandate.budget.amount"];

/// Why a decision came out as it did, as far as a caller must act on it: what to tell
/// the agent, and whether the tool may even be named. Exhaustive, so a caller matches
/// every case instead of reading policy ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A permit holds and no forbid holds (or fails to evaluate).
    Permitted,
    /// Denied, and among the determining policies is the mandate's scope: the tool is
    /// not in the mandate, so the caller should not learn that it exists.
    OutOfScope,
    /// Denied by forbids (holding, or failing to evaluate) other than the scope.
    Forbidden,
    /// Denied, and every determining forbid is one of the mandate's budgets (calls or
    /// amount) holding: the call would be allowed but for what is already spent.
    OverBudget,
    /// Denied because no permit holds (and no forbid does).
    NotPermitted,
    /// Denied before any policy ran: the request could not be put to Cedar.
    Refused,
}

/// An answer and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The policies that determined the answer: the permits that allowed it, or the
    /// forbids (satisfied or failing) that denied it. Empty when nothing permitted it.
    pub policies: Vec<String>,
    /// For people: why.
    pub reason: String,
    /// What would lift this deny, when something would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
    /// Policies that failed to evaluate, with Cedar's message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Why, typed. Not serialized: the wire formats stay as they are.
    #[serde(skip)]
    pub cause: Cause,
}

impl Decision {
    /// A deny reached before any policy ran (a request that cannot be evaluated).
    pub fn refused(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            policies: Vec::new(),
            reason: reason.into(),
            remedy: None,
            errors: Vec::new(),
            cause: Cause::Refused,
        }
    }

    /// The tool must be hidden from the caller: the denial is (also) because the tool
    /// is outside the mandate's scope.
    pub fn hides_tool(&self) -> bool {
        self.cause == Cause::OutOfScope
    }
}

#[derive(Default)]
struct Outcome {
    permits: BTreeSet<PolicyId>,
    forbids: BTreeSet<PolicyId>,
    failed_forbids: BTreeSet<PolicyId>,
    errors: Vec<String>,
}

impl CompiledSet {
    pub(crate) fn decide_request(
        &self,
        audience: Audience,
        lookup: Lookup,
        request: &Request,
        entities: &Entities,
    ) -> Decision {
        let index: &Index = match audience {
            Audience::Mandate => &self.mandate_index,
            Audience::Open => &self.open_index,
        };
        let (Some(principal), Some(action), Some(resource)) =
            (request.principal(), request.action(), request.resource())
        else {
            return Decision::refused("the request is incomplete");
        };
        match lookup {
            Lookup::Indexed => {
                // The candidate buckets merged once and kept (as policies written: the
                // request's entities may hold action groups), so Cedar runs once.
                let buckets = index.buckets(principal, action, resource, entities);
                let merged = self.candidate_cache.get_or_merge(&buckets, false, || {
                    Bucket::merged(&buckets, |_| true, Clone::clone)
                });
                self.decide_buckets(&[&merged], request, entities)
            }
            Lookup::Unindexed => self.decide_buckets(&[index.everything()], request, entities),
        }
    }

    /// Decides over the policies of these buckets (each a candidate set, all of them
    /// together every policy that could apply).
    pub(crate) fn decide_buckets(
        &self,
        buckets: &[&Bucket],
        request: &Request,
        entities: &Entities,
    ) -> Decision {
        let mut outcome = Outcome::default();
        for bucket in buckets {
            self.evaluate(&mut outcome, bucket, request, entities);
        }
        if self.liftable(&outcome) {
            for bucket in buckets {
                self.lift(&mut outcome, bucket, request, entities);
            }
        }
        self.conclude(outcome)
    }

    /// Decides with the built-in policies that hold already known (`builtin.rs`) and
    /// Cedar on the other candidates, if any: the same answer as Cedar on all of them
    /// at once (a forbid holding anywhere denies; the permits are the union).
    pub(crate) fn decide_beside(
        &self,
        known: Holding,
        cedar: Option<(&Bucket, &Request, &Entities)>,
    ) -> Decision {
        let mut outcome = Outcome::default();
        // Cedar names the permits that hold only where no forbid holds; which permits
        // hold beneath a forbid matters only to a remedy, asked below all the same.
        outcome.permits.extend(known.permits);
        outcome.forbids.extend(known.forbids);
        if let Some((bucket, request, entities)) = cedar {
            self.evaluate(&mut outcome, bucket, request, entities);
            if self.liftable(&outcome) {
                self.lift(&mut outcome, bucket, request, entities);
            }
        }
        self.conclude(outcome)
    }

    /// Cedar on one bucket, its answer added to `outcome`.
    fn evaluate(
        &self,
        outcome: &mut Outcome,
        bucket: &Bucket,
        request: &Request,
        entities: &Entities,
    ) {
        let response = Authorizer::new().is_authorized(request, &bucket.all, entities);
        let holding = response.diagnostics().reason().cloned();
        if response.decision() == CedarDecision::Allow {
            outcome.permits.extend(holding);
        } else {
            outcome.forbids.extend(holding);
        }
        for error in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
            if self.info(e.policy_id()).is_some_and(PolicyInfo::is_forbid) {
                outcome.failed_forbids.insert(e.policy_id().clone());
            }
            outcome
                .errors
                .push(format!("{}: {}", e.policy_id(), e.inner()));
        }
    }

    /// Only a remedy needs to know whether a permit holds beneath the forbids (a
    /// bucket whose forbid held reports only that).
    fn liftable(&self, outcome: &Outcome) -> bool {
        !outcome.forbids.is_empty()
            && outcome.failed_forbids.is_empty()
            && self.remedy_of(&outcome.forbids).is_some()
    }

    /// Adds the bucket's permits that hold, forbids aside.
    fn lift(&self, outcome: &mut Outcome, bucket: &Bucket, request: &Request, entities: &Entities) {
        if !bucket.has_permits() {
            return;
        }
        let permits = Authorizer::new().is_authorized(request, &bucket.permits, entities);
        if permits.decision() == CedarDecision::Allow {
            outcome
                .permits
                .extend(permits.diagnostics().reason().cloned());
        }
    }

    fn conclude(&self, outcome: Outcome) -> Decision {
        let Outcome {
            permits,
            forbids,
            failed_forbids,
            mut errors,
        } = outcome;
        errors.sort();
        errors.dedup();
        if forbids.is_empty() && failed_forbids.is_empty() {
            if permits.is_empty() {
                return Decision {
                    errors,
                    cause: Cause::NotPermitted,
                    ..Decision::refused("no policy permits this request")
                };
            }
            let reason = self.reasons(&permits, "permitted by");
            return Decision {
                allowed: true,
                policies: permits.iter().map(ToString::to_string).collect(),
                reason,
                remedy: None,
                errors,
                cause: Cause::Permitted,
            };
        }
        let mut reason = self.reasons(&forbids, "forbidden by");
        if !failed_forbids.is_empty() {
            let failed: Vec<String> = failed_forbids.iter().map(ToString::to_string).collect();
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(&format!(
                "policy {} could not be evaluated, and a forbid that cannot be evaluated denies",
                failed.join(", ")
            ));
        }
        let remedy = if failed_forbids.is_empty() && !permits.is_empty() {
            self.remedy_of(&forbids)
        } else {
            None
        };
        let policies: Vec<String> = forbids
            .iter()
            .chain(&failed_forbids)
            .map(ToString::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let cause = if policies.iter().any(|p| p == SCOPE_POLICY) {
            Cause::OutOfScope
        } else if failed_forbids.is_empty()
            && !policies.is_empty()
            && policies
                .iter()
                .all(|p| BUDGET_POLICIES.contains(&p.as_str()))
        {
            Cause::OverBudget
        } else {
            Cause::Forbidden
        };
        Decision {
            allowed: false,
            policies,
            reason,
            remedy,
            errors,
            cause,
        }
    }

    /// The `@reason` of each policy, or "<verb> policy <id>" when it has none.
    fn reasons(&self, ids: &BTreeSet<PolicyId>, verb: &str) -> String {
        let mut seen = BTreeSet::new();
        let mut parts = Vec::new();
        for id in ids {
            let text = match self.info(id).and_then(|i| i.reason.clone()) {
                Some(reason) => reason,
                None => format!("{verb} policy {id}"),
            };
            if seen.insert(text.clone()) {
                parts.push(text);
            }
        }
        parts.join("; ")
    }

    /// A deny is liftable only when every forbid that holds names a remedy and the
    /// remedies agree: approvals alone → approval; a proposal (which a human executes)
    /// also settles an approval → recommend; consent alone → consent.
    fn remedy_of(&self, forbids: &BTreeSet<PolicyId>) -> Option<Remedy> {
        let mut remedies = BTreeSet::new();
        for id in forbids {
            let remedy = self.info(id)?.remedy?;
            remedies.insert(remedy as u8);
        }
        let has = |r: Remedy| remedies.contains(&(r as u8));
        let only = |allowed: &[Remedy]| {
            remedies
                .iter()
                .all(|r| allowed.iter().any(|a| *a as u8 == *r))
        };
        if has(Remedy::Recommend) && only(&[Remedy::Recommend, Remedy::Approval]) {
            Some(Remedy::Recommend)
        } else if has(Remedy::Approval) && only(&[Remedy::Approval]) {
            Some(Remedy::Approval)
        } else if has(Remedy::Consent) && only(&[Remedy::Consent]) {
            Some(Remedy::Consent)
        } else {
            None
        }
    }
}
