//! The decision requests of the token service: may an agent obtain a token under a
//! mandate (`exchange_token`, resource: the mandate), and may it hand its authority on
//! to another agent (`delegate`, resource: the receiving agent).
//!
//! The context is the schema's `GrantContext`: the mandate, the time, and the
//! delegation the request would create (depth and the chain of agents above the
//! principal). Renewal asks again: a token is never refreshed blindly.

use cedar_policy::{Context, RestrictedExpression};
use chrono::{DateTime, Utc};
use mandate_domain::{Agent, Mandate};
use mandate_types::AgentId;

use crate::builtin;
use crate::cache::{AgentFacts, MandateFacts};
use crate::call::{agent_entity, delegation, mandate_entity, mandate_types, seconds};
use crate::compile::CompiledSet;
use crate::engine::{Audience, Decision, Lookup};

/// What is being asked.
#[derive(Debug, Clone, Copy)]
pub enum GrantAction<'a> {
    /// The principal obtains (or renews) a token under the mandate.
    ExchangeToken,
    /// The principal hands a subset of its authority to this agent.
    Delegate { to: &'a Agent },
}

/// One token-service decision request.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    pub action: GrantAction<'a>,
    /// The agent asking: the one obtaining the token, or the one delegating.
    pub agent: &'a Agent,
    pub mandate: &'a Mandate,
    /// The agents above `agent` in the delegation chain, the grantee first. For
    /// `Delegate`, the chain of the delegating agent (the receiver's chain is this
    /// plus `agent`, and its depth is what the mandate bounds).
    pub delegation_chain: &'a [AgentId],
    pub now: DateTime<Utc>,
}

impl CompiledSet {
    /// Decides a token-service request with the built-in and operator policies.
    /// Anything that cannot be put to Cedar denies.
    pub fn decide_grant(&self, grant: &GrantRequest<'_>) -> Decision {
        self.decide_grant_with(grant, Lookup::Indexed)
    }

    /// As [`CompiledSet::decide_grant`]; `Unindexed` has Cedar evaluate every policy
    /// (the reference the native built-ins are tested against).
    pub fn decide_grant_with(&self, grant: &GrantRequest<'_>, lookup: Lookup) -> Decision {
        if lookup == Lookup::Indexed && self.native_builtins && self.operator_policy_count() == 0 {
            return self.decide_beside(builtin::grant_holding(grant, &grant_chain(grant)), None);
        }
        match self.grant_request(grant) {
            Ok((request, entities)) => {
                self.decide_request(Audience::Mandate, lookup, &request, &entities)
            }
            Err(message) => {
                Decision::refused(format!("the request cannot be evaluated: {message}"))
            }
        }
    }

    fn grant_request(
        &self,
        grant: &GrantRequest<'_>,
    ) -> Result<(cedar_policy::Request, cedar_policy::Entities), String> {
        let types = mandate_types()?;
        let principal = types.uid(&types.agent, &grant.agent.id.to_string());
        let mandate = types.uid(&types.mandate, &grant.mandate.id.to_string());
        let mut entities = vec![
            agent_entity(types, &AgentFacts::of(grant.agent))?,
            mandate_entity(types, &MandateFacts::of(grant.mandate))?,
        ];
        let chain = grant_chain(grant);
        let (action, resource) = match grant.action {
            GrantAction::ExchangeToken => ("exchange_token", mandate.clone()),
            GrantAction::Delegate { to } => {
                if to.id != grant.agent.id {
                    entities.push(agent_entity(types, &AgentFacts::of(to))?);
                }
                ("delegate", types.uid(&types.agent, &to.id.to_string()))
            }
        };
        let entities = self.with_actions(entities)?;
        let context = Context::from_pairs([
            (
                "mandate".to_owned(),
                RestrictedExpression::new_entity_uid(mandate),
            ),
            ("now".to_owned(), seconds(grant.now)),
            ("delegation".to_owned(), delegation(types, &chain)?),
        ])
        .map_err(|e| e.to_string())?;
        let action = types.uid(&types.action, action);
        let request = cedar_policy::Request::new(principal, action, resource, context, None)
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// The delegation the request would create: the chain above the agent, and for a
/// delegation the delegating agent too.
fn grant_chain(grant: &GrantRequest<'_>) -> Vec<AgentId> {
    let mut chain = grant.delegation_chain.to_vec();
    if let GrantAction::Delegate { .. } = grant.action {
        chain.push(grant.agent.id);
    }
    chain
}
