//! The decision requests Mandate asks itself: an agent acting under a mandate on a
//! tool. Built from the domain model into Cedar entities and context that the built-in
//! policies (`cedar/builtin.cedar`) read.
//!
//! Entity ids: agents, humans and mandates by their ids (`agt_…`); tool servers by
//! name; tools by their namespaced name (`server.tool`), which is what scopes and
//! operator policies name.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use chrono::{DateTime, Utc};
use mandate_domain::{Agent, ArgumentConstraint, Mandate, MandateTerms, Tool, ToolServer};
use mandate_types::AgentId;
use serde_json::Value;

use crate::compile::CompiledSet;
use crate::engine::{Audience, Decision, Lookup};

/// What the agent is doing with the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    CallTool,
    ListTools,
    ReadResource,
    GetPrompt,
}

impl CallAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CallAction::CallTool => "call_tool",
            CallAction::ListTools => "list_tools",
            CallAction::ReadResource => "read_resource",
            CallAction::GetPrompt => "get_prompt",
        }
    }
}

/// One decision request for an agent acting under a mandate.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    pub action: CallAction,
    pub agent: &'a Agent,
    pub mandate: &'a Mandate,
    pub tool: &'a Tool,
    pub server: &'a ToolServer,
    /// The call's arguments; `None` when listing (constraints are then not checked).
    pub arguments: Option<&'a Value>,
    /// What the call would spend, in the mandate currency's minor units.
    pub amount: u64,
    /// A human approved this exact call and the approval is unused and unexpired.
    pub approved: bool,
    /// A human is executing a recorded proposal.
    pub executing_proposal: bool,
    /// The agents the caller's authority came through, the mandate's grantee first
    /// (empty for the grantee itself); its length is the delegation depth.
    pub delegation_chain: &'a [AgentId],
    pub dpop_bound: bool,
    pub now: DateTime<Utc>,
}

/// The namespaced name a tool is known by: `{server}.{tool}`.
pub fn tool_name(server: &ToolServer, tool: &Tool) -> String {
    format!("{}.{}", server.name, tool.name)
}

/// Whether a mandate's scope covers a tool, and whether a call's arguments keep to the
/// constraints of a scope entry that covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeMatch {
    pub in_scope: bool,
    pub arguments_in_scope: bool,
}

/// Matches a tool against the scope: an entry names it exactly, or is a pattern
/// ending in `*` that its name starts with. Any covering entry whose constraints all
/// hold admits the arguments; with no arguments (listing), covering is enough.
pub fn match_scope(terms: &MandateTerms, name: &str, arguments: Option<&Value>) -> ScopeMatch {
    let mut result = ScopeMatch {
        in_scope: false,
        arguments_in_scope: false,
    };
    for grant in &terms.scope.tools {
        let covers = match grant.tool.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => grant.tool == name,
        };
        if !covers {
            continue;
        }
        result.in_scope = true;
        let holds = match arguments {
            None => true,
            Some(args) => grant
                .constraints
                .iter()
                .all(|(arg, constraint)| constraint_holds(constraint, args.get(arg))),
        };
        if holds {
            result.arguments_in_scope = true;
            break;
        }
    }
    result
}

/// A missing argument never satisfies a constraint (fail closed).
fn constraint_holds(constraint: &ArgumentConstraint, value: Option<&Value>) -> bool {
    let Some(value) = value else {
        return false;
    };
    if let Some(allowed) = &constraint.one_of
        && !allowed.iter().any(|a| a == value)
    {
        return false;
    }
    if constraint.max.is_some() || constraint.min.is_some() {
        let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
            return false;
        };
        // Compared exactly for integers; as f64 otherwise (any fraction is then beyond
        // an integer bound in the direction it lies).
        let within = |bound: i64, le: bool| match value.as_i64() {
            Some(i) => {
                if le {
                    i <= bound
                } else {
                    i >= bound
                }
            }
            None => {
                if le {
                    n <= bound as f64
                } else {
                    n >= bound as f64
                }
            }
        };
        if let Some(max) = constraint.max
            && !within(max, true)
        {
            return false;
        }
        if let Some(min) = constraint.min
            && !within(min, false)
        {
            return false;
        }
    }
    true
}

/// Mandate's entity type names, parsed once (Cedar's parser is not cheap).
pub(crate) struct MandateTypes {
    pub(crate) agent: EntityTypeName,
    pub(crate) human: EntityTypeName,
    pub(crate) mandate: EntityTypeName,
    pub(crate) server: EntityTypeName,
    pub(crate) tool: EntityTypeName,
    pub(crate) action: EntityTypeName,
}

static TYPES: OnceLock<Result<MandateTypes, String>> = OnceLock::new();

impl MandateTypes {
    fn parse() -> Result<MandateTypes, String> {
        let name = |n: &str| {
            n.parse::<EntityTypeName>()
                .map_err(|e| format!("entity type {n}: {e}"))
        };
        Ok(MandateTypes {
            agent: name("Mandate::Agent")?,
            human: name("Mandate::Human")?,
            mandate: name("Mandate::Mandate")?,
            server: name("Mandate::ToolServer")?,
            tool: name("Mandate::Tool")?,
            action: name("Mandate::Action")?,
        })
    }

    pub(crate) fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

pub(crate) fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(crate) fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

pub(crate) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(string))
}

pub(crate) fn rank<T: PartialEq>(all: &[T], item: &T) -> RestrictedExpression {
    let position = all.iter().position(|x| x == item).unwrap_or(usize::MAX);
    RestrictedExpression::new_long(i64::try_from(position).unwrap_or(i64::MAX))
}

pub(crate) fn seconds(t: DateTime<Utc>) -> RestrictedExpression {
    RestrictedExpression::new_long(t.timestamp())
}

pub(crate) fn entity(
    uid: EntityUid,
    attrs: Vec<(&str, RestrictedExpression)>,
    parents: Vec<EntityUid>,
) -> Result<Entity, String> {
    let attrs: HashMap<String, RestrictedExpression> =
        attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let parents: HashSet<EntityUid> = parents.into_iter().collect();
    Entity::new(uid, attrs, parents).map_err(|e| e.to_string())
}

pub(crate) fn mandate_types() -> Result<&'static MandateTypes, String> {
    TYPES
        .get_or_init(MandateTypes::parse)
        .as_ref()
        .map_err(Clone::clone)
}

pub(crate) fn record(
    pairs: Vec<(&str, RestrictedExpression)>,
) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| e.to_string())
}

/// The `delegation` context record: depth and the chain of agents above the caller.
pub(crate) fn delegation(
    types: &MandateTypes,
    chain: &[AgentId],
) -> Result<RestrictedExpression, String> {
    let depth = u64::try_from(chain.len()).unwrap_or(u64::MAX);
    record(vec![
        ("depth", long(depth)),
        (
            "chain",
            RestrictedExpression::new_set(chain.iter().map(|a| {
                RestrictedExpression::new_entity_uid(types.uid(&types.agent, &a.to_string()))
            })),
        ),
    ])
}

/// An agent as a Cedar entity.
pub(crate) fn agent_entity(types: &MandateTypes, agent: &Agent) -> Result<Entity, String> {
    let labels: Vec<String> = agent
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    entity(
        types.uid(&types.agent, &agent.id.to_string()),
        vec![
            ("name", string(&agent.name)),
            (
                "owner",
                RestrictedExpression::new_entity_uid(
                    types.uid(&types.human, &agent.owner.to_string()),
                ),
            ),
            ("labels", strings(labels.iter().map(String::as_str))),
        ],
        vec![],
    )
}

/// A mandate as a Cedar entity: its status and terms.
pub(crate) fn mandate_entity(types: &MandateTypes, mandate: &Mandate) -> Result<Entity, String> {
    let terms = &mandate.terms;
    let human = types.uid(&types.human, &terms.human_id.to_string());
    let grantee = types.uid(&types.agent, &terms.agent_id.to_string());
    let mut attrs = vec![
        ("status", string(mandate.status.as_str())),
        ("mode", string(terms.mode.as_str())),
        ("human", RestrictedExpression::new_entity_uid(human)),
        ("agent", RestrictedExpression::new_entity_uid(grantee)),
        ("purpose", string(terms.purpose.as_deref().unwrap_or(""))),
        (
            "not_before",
            seconds(terms.not_before.unwrap_or(mandate.created_at)),
        ),
        ("expires_at", seconds(terms.expires_at)),
        ("data_ceiling", string(terms.data_ceiling.as_str())),
        (
            "data_ceiling_rank",
            rank(mandate_types::DataClass::ALL, &terms.data_ceiling),
        ),
        (
            "approval_tiers",
            strings(terms.approval.tiers.iter().map(|t| t.as_str())),
        ),
        (
            "approval_tags",
            strings(terms.approval.tags.iter().map(String::as_str)),
        ),
        (
            "max_delegation_depth",
            long(u64::from(terms.max_delegation_depth)),
        ),
    ];
    if let Some(max) = terms.budgets.max_calls {
        attrs.push(("max_calls", long(max)));
    }
    if let Some(max) = terms.budgets.max_amount {
        attrs.push(("max_amount", long(max)));
    }
    entity(
        types.uid(&types.mandate, &mandate.id.to_string()),
        attrs,
        vec![],
    )
}

impl CompiledSet {
    /// The request's entities plus the schema's action entities (when validated).
    pub(crate) fn with_actions(
        &self,
        entities: impl IntoIterator<Item = Entity>,
    ) -> Result<cedar_policy::Entities, String> {
        match &self.action_entities {
            Some(actions) => actions.clone().add_entities(entities, None),
            None => cedar_policy::Entities::from_entities(entities, None),
        }
        .map_err(|e| e.to_string())
    }
}

impl CompiledSet {
    /// Decides an agent's action on a tool under a mandate: built-in and operator
    /// policies. Anything that cannot be put to Cedar denies.
    pub fn decide_call(&self, call: &CallRequest<'_>) -> Decision {
        self.decide_call_with(call, Lookup::Indexed)
    }

    pub fn decide_call_with(&self, call: &CallRequest<'_>, lookup: Lookup) -> Decision {
        match self.call_request(call) {
            Ok((request, entities)) => {
                self.decide_request(Audience::Mandate, lookup, &request, &entities)
            }
            Err(message) => {
                Decision::refused(format!("the request cannot be evaluated: {message}"))
            }
        }
    }

    fn call_request(
        &self,
        call: &CallRequest<'_>,
    ) -> Result<(cedar_policy::Request, cedar_policy::Entities), String> {
        let terms = &call.mandate.terms;
        let name = tool_name(call.server, call.tool);
        let scope = match_scope(terms, &name, call.arguments);

        let types = mandate_types()?;
        let agent = types.uid(&types.agent, &call.agent.id.to_string());
        let mandate = types.uid(&types.mandate, &call.mandate.id.to_string());
        let server = types.uid(&types.server, &call.server.name);
        let tool = types.uid(&types.tool, &name);
        let action = types.uid(&types.action, call.action.as_str());

        let mut tool_parents = vec![server.clone()];
        if scope.in_scope {
            tool_parents.push(mandate.clone());
        }
        let entities = [
            agent_entity(types, call.agent)?,
            mandate_entity(types, call.mandate)?,
            entity(
                server.clone(),
                vec![("name", string(&call.server.name))],
                vec![],
            )?,
            entity(
                tool.clone(),
                vec![
                    ("name", string(&name)),
                    ("server", RestrictedExpression::new_entity_uid(server)),
                    ("risk_tier", string(call.tool.risk_tier.as_str())),
                    ("tags", strings(call.tool.tags.iter().map(String::as_str))),
                    ("data_class", string(call.tool.data_class.as_str())),
                    (
                        "data_rank",
                        rank(mandate_types::DataClass::ALL, &call.tool.data_class),
                    ),
                ],
                tool_parents,
            )?,
        ];
        let entities = self.with_actions(entities)?;
        let usage = &call.mandate.usage;
        let context = Context::from_pairs([
            (
                "mandate".to_owned(),
                RestrictedExpression::new_entity_uid(mandate),
            ),
            ("now".to_owned(), seconds(call.now)),
            (
                "arguments_in_scope".to_owned(),
                RestrictedExpression::new_bool(scope.arguments_in_scope),
            ),
            ("amount".to_owned(), long(call.amount)),
            (
                "budget".to_owned(),
                record(vec![
                    ("calls_used", long(usage.calls)),
                    ("amount_used", long(usage.amount)),
                ])?,
            ),
            (
                "approved".to_owned(),
                RestrictedExpression::new_bool(call.approved),
            ),
            (
                "executing_proposal".to_owned(),
                RestrictedExpression::new_bool(call.executing_proposal),
            ),
            (
                "delegation".to_owned(),
                delegation(types, call.delegation_chain)?,
            ),
            (
                "dpop_bound".to_owned(),
                RestrictedExpression::new_bool(call.dpop_bound),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let request = cedar_policy::Request::new(agent, action, tool, context, None)
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}
