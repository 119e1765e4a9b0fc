//! The decision requests Mandate asks itself: an agent acting under a mandate on a
//! tool. Built from the domain model into Cedar entities and context that the built-in
//! policies (`cedar/builtin.cedar`) read.
//!
//! Entity ids: agents, humans and mandates by their ids (`agt_…`); tool servers by
//! name; tools by their namespaced name (`server.tool`), which is what scopes and
//! operator policies name.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use chrono::{DateTime, Utc};
use mandate_domain::{Agent, ArgumentConstraint, Mandate, MandateTerms, Tool, ToolServer};
use mandate_types::AgentId;
use serde_json::Value;

use crate::builtin;
use crate::cache::{AgentFacts, CallEntities, CallFacts, MandateFacts, Slot, ToolFacts};
use crate::compile::CompiledSet;
use crate::engine::{Audience, Decision, Lookup};
use crate::index::{Bucket, without_action_scope};

/// What the agent is doing with the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    CallTool,
    ListTools,
    ReadResource,
    GetPrompt,
}

impl CallAction {
    /// Every call action, in the order of [`CallAction::position`].
    const ALL: [CallAction; 4] = [
        CallAction::CallTool,
        CallAction::ListTools,
        CallAction::ReadResource,
        CallAction::GetPrompt,
    ];

    /// The action's place in [`CallAction::ALL`] (and in per-action tables).
    fn position(self) -> usize {
        match self {
            CallAction::CallTool => 0,
            CallAction::ListTools => 1,
            CallAction::ReadResource => 2,
            CallAction::GetPrompt => 3,
        }
    }

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
    /// A person is rolling back an earlier call: this call is its compensation.
    pub rollback: bool,
    /// The agents the caller's authority came through, the mandate's grantee first
    /// (empty for the grantee itself); its length is the delegation depth.
    pub delegation_chain: &'a [AgentId],
    pub dpop_bound: bool,
    pub now: DateTime<Utc>,
}

/// The namespaced name a tool is known by: `{server}.{tool}`.
pub fn tool_name(server: &ToolServer, tool: &Tool) -> String {
    let mut name = String::with_capacity(server.name.len() + 1 + tool.name.len());
    name.push_str(&server.name);
    name.push('.');
    name.push_str(&tool.name);
    name
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
        if !mandate_domain::scope_covers(&grant.tool, name) {
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
    /// The call actions' uids, in [`CallAction::ALL`] order.
    call_actions: Vec<EntityUid>,
}

static TYPES: OnceLock<Result<MandateTypes, String>> = OnceLock::new();

impl MandateTypes {
    fn parse() -> Result<MandateTypes, String> {
        let name = |n: &str| {
            n.parse::<EntityTypeName>()
                .map_err(|e| format!("entity type {n}: {e}"))
        };
        let action = name("Mandate::Action")?;
        let call_actions = CallAction::ALL
            .iter()
            .map(|a| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str())))
            .collect();
        Ok(MandateTypes {
            agent: name("Mandate::Agent")?,
            human: name("Mandate::Human")?,
            mandate: name("Mandate::Mandate")?,
            server: name("Mandate::ToolServer")?,
            tool: name("Mandate::Tool")?,
            action,
            call_actions,
        })
    }

    /// The uid of a call action, parsed once.
    fn call_action(&self, action: CallAction) -> Result<&EntityUid, String> {
        self.call_actions
            .get(action.position())
            .ok_or_else(|| format!("no uid for action {}", action.as_str()))
    }

    pub(crate) fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// A count or amount as Cedar's Long: saturating at its largest value.
pub(crate) fn as_long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(as_long(n))
}

pub(crate) fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

pub(crate) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(string))
}

/// An item's place in its ordered list, as a Long (the largest when absent).
pub(crate) fn rank_of<T: PartialEq>(all: &[T], item: &T) -> i64 {
    let position = all.iter().position(|x| x == item).unwrap_or(usize::MAX);
    i64::try_from(position).unwrap_or(i64::MAX)
}

pub(crate) fn rank<T: PartialEq>(all: &[T], item: &T) -> RestrictedExpression {
    RestrictedExpression::new_long(rank_of(all, item))
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
pub(crate) fn agent_entity(types: &MandateTypes, agent: &AgentFacts<'_>) -> Result<Entity, String> {
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
pub(crate) fn mandate_entity(
    types: &MandateTypes,
    mandate: &MandateFacts<'_>,
) -> Result<Entity, String> {
    let human = types.uid(&types.human, &mandate.human.to_string());
    let grantee = types.uid(&types.agent, &mandate.grantee.to_string());
    let mut attrs = vec![
        ("status", string(mandate.status)),
        ("mode", string(mandate.mode)),
        ("human", RestrictedExpression::new_entity_uid(human)),
        ("agent", RestrictedExpression::new_entity_uid(grantee)),
        ("purpose", string(&mandate.purpose)),
        ("not_before", seconds(mandate.not_before)),
        ("expires_at", seconds(mandate.expires_at)),
        ("data_ceiling", string(mandate.data_ceiling.as_str())),
        (
            "data_ceiling_rank",
            rank(mandate_types::DataClass::ALL, &mandate.data_ceiling),
        ),
        (
            "approval_tiers",
            strings(mandate.approval_tiers.iter().map(|t| t.as_str())),
        ),
        (
            "approval_tags",
            strings(mandate.approval_tags.iter().map(String::as_str)),
        ),
        (
            "max_delegation_depth",
            long(u64::from(mandate.max_delegation_depth)),
        ),
    ];
    if let Some(max) = mandate.max_calls {
        attrs.push(("max_calls", long(max)));
    }
    if let Some(max) = mandate.max_amount {
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
        let decided = match lookup {
            Lookup::Indexed => self.decide_indexed(call),
            Lookup::Unindexed => self.call_request(call).map(|(request, entry)| {
                self.decide_request(Audience::Mandate, lookup, &request, &entry.entities)
            }),
        };
        decided.unwrap_or_else(|message| {
            Decision::refused(format!("the request cannot be evaluated: {message}"))
        })
    }

    /// The built-ins answered natively (`builtin.rs`) beside Cedar on the operator
    /// policies the index names for this call; Cedar alone on the whole set where the
    /// built-ins cannot be answered natively.
    fn decide_indexed(&self, call: &CallRequest<'_>) -> Result<Decision, String> {
        let scope = match_scope(
            &call.mandate.terms,
            &tool_name(call.server, call.tool),
            call.arguments,
        );
        let holding = if self.native_builtins {
            builtin::holding(call, scope)
        } else {
            None
        };
        let Some(holding) = holding else {
            let (request, entry) = self.call_request(call)?;
            return Ok(if self.native_builtins {
                // Only Cedar's own answer will do (an evaluation error): every policy.
                self.decide_request(
                    Audience::Mandate,
                    Lookup::Unindexed,
                    &request,
                    &entry.entities,
                )
            } else {
                match self.candidates(&entry, call.action) {
                    Some(bucket) => self.decide_buckets(&[&bucket], &request, &entry.entities),
                    None => Decision::refused("the request is incomplete"),
                }
            });
        };
        if self.operator_policy_count() == 0 {
            return Ok(self.decide_beside(holding, None));
        }
        let (entry, types) = self.call_entry(call, scope)?;
        let bucket = self
            .candidates(&entry, call.action)
            .ok_or("no uid for the call's action")?;
        if bucket.is_empty() {
            return Ok(self.decide_beside(holding, None));
        }
        let request = self.request(types, call, scope, &entry)?;
        Ok(self.decide_beside(holding, Some((&bucket, &request, &entry.entities))))
    }

    /// The index's candidates for this entry and action, merged into one bucket once
    /// and kept with the entry (they depend on nothing else).
    fn candidates(&self, entry: &CallEntities, action: CallAction) -> Option<Arc<Bucket>> {
        let slot = entry.candidates.get(action.position())?;
        let action = mandate_types().ok()?.call_action(action).ok()?;
        let merged = slot.get_or_init(|| {
            let buckets =
                self.mandate_index
                    .buckets(&entry.agent, action, &entry.tool, &entry.entities);
            let opened = self.action_entities.is_none();
            self.candidate_cache
                .get_or_merge(&buckets, opened, || self.merge(&buckets))
        });
        Some(merged.clone())
    }

    /// The buckets' policies in one.
    fn merge(&self, buckets: &[&Bucket]) -> Bucket {
        // Built-ins answered natively are not Cedar's to evaluate again. (Whether they
        // are is fixed per set, so the candidate cache's keys stay unambiguous.)
        let keep = |policy: &cedar_policy::Policy| {
            !(self.native_builtins && self.info(policy.id()).is_some_and(|i| i.builtin))
        };
        if self.action_entities.is_some() {
            Bucket::merged(buckets, keep, Clone::clone)
        } else {
            // Mandate's actions form no groups and a call's entities hold no action
            // entities, so the action has no ancestors: every candidate was filed under
            // this very action (or under any action), so its action scope holds for
            // this request. Opened, Cedar skips building and searching the action list
            // on every call; the answer is the same (the unindexed path, which keeps
            // the policies as written, is the reference the tests compare with).
            Bucket::merged(buckets, keep, |policy| self.action_free(policy))
        }
    }

    /// `policy` with its action scope opened, made once per policy of the set.
    fn action_free(&self, policy: &cedar_policy::Policy) -> cedar_policy::Policy {
        if let Ok(done) = self.action_free.read()
            && let Some(p) = done.get(policy.id())
        {
            return p.clone();
        }
        let Some(open) = without_action_scope(policy) else {
            return policy.clone();
        };
        if let Ok(mut done) = self.action_free.write() {
            done.insert(policy.id().clone(), open.clone());
        }
        open
    }

    /// The Cedar request (built per call: only its context changes) and the call's
    /// entities (from the cache, or built and cached).
    fn call_request(
        &self,
        call: &CallRequest<'_>,
    ) -> Result<(cedar_policy::Request, Arc<CallEntities>), String> {
        let scope = match_scope(
            &call.mandate.terms,
            &tool_name(call.server, call.tool),
            call.arguments,
        );
        let (entry, types) = self.call_entry(call, scope)?;
        let request = self.request(types, call, scope, &entry)?;
        Ok((request, entry))
    }

    /// The call's entities, from the cache or built and cached.
    fn call_entry(
        &self,
        call: &CallRequest<'_>,
        scope: ScopeMatch,
    ) -> Result<(Arc<CallEntities>, &'static MandateTypes), String> {
        let tool_facts = ToolFacts::of(call.server, call.tool);
        let facts = CallFacts {
            agent: AgentFacts::of(call.agent),
            mandate: MandateFacts::of(call.mandate),
            tool: tool_facts,
            in_scope: scope.in_scope,
        };
        let slot = Slot {
            agent: call.agent.id,
            mandate: call.mandate.id,
            tool: call.tool.id,
            server: call.server.id,
        };
        let types = mandate_types()?;
        let entry = self
            .call_cache
            .get_or_build(slot, &facts, || self.call_entities(types, &slot, &facts))?;
        Ok((entry, types))
    }

    /// The Cedar request of a call: the entry's uids and the call's context.
    fn request(
        &self,
        types: &MandateTypes,
        call: &CallRequest<'_>,
        scope: ScopeMatch,
        entry: &CallEntities,
    ) -> Result<cedar_policy::Request, String> {
        let usage = &call.mandate.usage;
        let context = Context::from_pairs([
            (
                "mandate".to_owned(),
                RestrictedExpression::new_entity_uid(entry.mandate.clone()),
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
                "rollback".to_owned(),
                RestrictedExpression::new_bool(call.rollback),
            ),
            (
                "reversible".to_owned(),
                RestrictedExpression::new_bool(call.tool.reversible()),
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
        cedar_policy::Request::new(
            entry.agent.clone(),
            types.call_action(call.action)?.clone(),
            entry.tool.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }

    /// Builds a call's entities from its facts alone (so that equal facts always mean
    /// equal entities: see `cache.rs`), assembled from its parts, each built once from
    /// its own facts (`parts.rs`): the same entities as all four built at once.
    fn call_entities(
        &self,
        types: &MandateTypes,
        slot: &Slot,
        facts: &CallFacts<'_>,
    ) -> Result<CallEntities, String> {
        let parts = self
            .parts
            .get(self, types, slot, &facts.agent, &facts.mandate, &facts.tool)?;
        let base = &parts.base;
        let tool = parts.tool.entity(facts.in_scope.then_some(&base.mandate))?;
        let entities = base
            .entities
            .clone()
            .add_entities([tool], None)
            .map_err(|e| e.to_string())?;
        Ok(CallEntities::new(
            facts.clone(),
            entities,
            base.agent.clone(),
            base.mandate.clone(),
            parts.tool.uid().clone(),
        ))
    }
}
