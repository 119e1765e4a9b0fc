//! The Cedar entities of a call's parts, each built once from its own facts and
//! reused by every call that has that part: the agent with the mandate it acts under
//! and the tool server it calls (the base), and the tool.
//!
//! A call's entities (`cache.rs`) are kept per (agent, mandate, tool, server); a
//! working set larger than that cache keeps missing it. A miss then assembles the
//! call's entities from parts built already instead of building them all again: the
//! base (the agent's, the mandate's and the server's entities, with the schema's
//! action entities when those are needed, closed under Cedar's transitive closure
//! once) and the tool's entity, made from its attributes (built once per tool) with
//! the parents of this call: its server, and the mandate when the mandate's scope
//! covers the tool — the one thing about a tool's entity that depends on the mandate.
//! Cedar adds the tool to a copy of the base (`Entities::add_entities`, which repairs
//! the closure for the added entity only; the copy shares the base's entities rather
//! than copying them); the result is the same entity store `Entities::from_entities`
//! makes of all four at once.
//!
//! Why a part can never be stale: as in `cache.rs`, a part is built from its facts
//! alone ([`AgentFacts`], [`MandateFacts`] and the server's name for a base;
//! [`ToolFacts`] for a tool) and keeps an owned copy of them; a lookup compares the
//! call's facts with the part's, and any difference is a miss that rebuilds and
//! replaces the part. The ids only choose the slot. The functions that build a
//! part's entities are the ones that built the whole entry before (`call.rs`), so an
//! assembled entry equals one built from scratch.
//!
//! A base is assembled the same way from the pair of the agent's and the server's
//! entities (closed once per agent and server) and the mandate's entity, so the bases
//! of one agent's mandates on one server share the pair's entities.
//!
//! Bounds: each kind is a [`Bounded`] map of its own capacity (below); when full, an
//! arbitrary part is evicted. As measured with the benchmark's world (massif), a base
//! costs about 9 KiB of heap of its own (Cedar's entities are large: a mandate's has
//! 14 attributes), a pair about 5 KiB, a tool part well under 1 KiB: full maps hold
//! about 36 MiB of bases, 20 MiB of pairs and 4 MiB of tools. Entries of the call
//! cache keep the entities of the base they were assembled from alive after the base
//! is evicted (one base per entry at most; `cache.rs`). Like the call cache, the
//! parts belong to one compiled set. A poisoned lock is a miss.

use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use mandate_types::{AgentId, MandateId, ToolId, ToolServerId};

use crate::cache::{AgentFacts, Bounded, MandateFacts, Slot, ToolFacts};
use crate::call::{MandateTypes, agent_entity, entity, mandate_entity, rank, string, strings};
use crate::compile::CompiledSet;

/// (Agent, server) pairs kept per compiled set.
pub(crate) const PAIR_CAPACITY: usize = 4_096;
/// (Agent, mandate, server) bases kept per compiled set: a replica decides under many
/// more mandates than it has agents or tools.
pub(crate) const BASE_CAPACITY: usize = 4_096;
/// Tools' attributes kept per compiled set.
pub(crate) const TOOL_CAPACITY: usize = 4_096;

/// The agent's, the mandate's and the tool server's entities (and the schema's action
/// entities when a call needs them), closed, and the facts they were built from.
#[derive(Debug)]
pub(crate) struct Base {
    agent_facts: AgentFacts<'static>,
    mandate_facts: MandateFacts<'static>,
    server_name: String,
    pub(crate) agent: EntityUid,
    pub(crate) mandate: EntityUid,
    pub(crate) entities: Entities,
}

/// The agent's and the tool server's entities (and the schema's action entities when
/// a call needs them), closed, and the facts they were built from: what the bases of
/// the agent's mandates on that server share (a base copies it, sharing its entities).
#[derive(Debug)]
pub(crate) struct Pair {
    agent_facts: AgentFacts<'static>,
    server_name: String,
    entities: Entities,
}

/// A tool's uid and attributes, built once, and the facts they were built from.
#[derive(Debug)]
pub(crate) struct ToolPart {
    facts: ToolFacts<'static>,
    uid: EntityUid,
    server: EntityUid,
    attrs: Vec<(String, RestrictedExpression)>,
}

impl ToolPart {
    fn new(types: &MandateTypes, facts: &ToolFacts<'_>) -> ToolPart {
        let name = facts.name();
        let server = types.uid(&types.server, &facts.server);
        let attrs = vec![
            ("name".to_owned(), string(&name)),
            (
                "server".to_owned(),
                RestrictedExpression::new_entity_uid(server.clone()),
            ),
            ("risk_tier".to_owned(), string(facts.risk_tier.as_str())),
            (
                "tags".to_owned(),
                strings(facts.tags.iter().map(String::as_str)),
            ),
            ("data_class".to_owned(), string(facts.data_class.as_str())),
            (
                "data_rank".to_owned(),
                rank(mandate_types::DataClass::ALL, &facts.data_class),
            ),
        ];
        ToolPart {
            facts: facts.clone().into_owned(),
            uid: types.uid(&types.tool, &name),
            server,
            attrs,
        }
    }

    pub(crate) fn uid(&self) -> &EntityUid {
        &self.uid
    }

    /// The tool's entity for one call: under its server, and under the mandate
    /// (`in_mandate`) when the mandate's scope covers it.
    pub(crate) fn entity(&self, in_mandate: Option<&EntityUid>) -> Result<Entity, String> {
        let parents = std::iter::once(self.server.clone()).chain(in_mandate.cloned());
        Entity::new_with_tags(self.uid.clone(), self.attrs.iter().cloned(), parents, [])
            .map_err(|e| e.to_string())
    }
}

/// The parts' caches of one compiled set.
#[derive(Debug)]
pub(crate) struct Parts {
    pairs: Bounded<(AgentId, ToolServerId), Pair>,
    bases: Bounded<(AgentId, MandateId, ToolServerId), Base>,
    tools: Bounded<(ToolId, ToolServerId), ToolPart>,
}

impl Default for Parts {
    fn default() -> Self {
        Parts::with_capacities(PAIR_CAPACITY, BASE_CAPACITY, TOOL_CAPACITY)
    }
}

/// A call's parts, each exactly as its facts describe it.
pub(crate) struct CallParts {
    pub(crate) base: Arc<Base>,
    pub(crate) tool: Arc<ToolPart>,
}

impl Parts {
    pub(crate) fn with_capacities(pairs: usize, bases: usize, tools: usize) -> Self {
        Parts {
            pairs: Bounded::with_capacity(pairs),
            bases: Bounded::with_capacity(bases),
            tools: Bounded::with_capacity(tools),
        }
    }

    /// The parts for these facts, each from its cache or built (and kept). `set`
    /// gives the base its action entities, if any.
    pub(crate) fn get(
        &self,
        set: &CompiledSet,
        types: &MandateTypes,
        slot: &Slot,
        agent: &AgentFacts<'_>,
        mandate: &MandateFacts<'_>,
        tool: &ToolFacts<'_>,
    ) -> Result<CallParts, String> {
        let base = self.bases.get_or_build(
            &(slot.agent, slot.mandate, slot.server),
            |base| {
                base.agent_facts == *agent
                    && base.mandate_facts == *mandate
                    && base.server_name == *tool.server
            },
            || {
                let pair = self.pairs.get_or_build(
                    &(slot.agent, slot.server),
                    |pair| pair.agent_facts == *agent && pair.server_name == *tool.server,
                    || {
                        let agent_entity = agent_entity(types, agent)?;
                        let server_entity = entity(
                            types.uid(&types.server, &tool.server),
                            vec![("name", string(&tool.server))],
                            vec![],
                        )?;
                        Ok::<_, String>(Pair {
                            entities: set.with_actions([agent_entity, server_entity])?,
                            agent_facts: agent.clone().into_owned(),
                            server_name: tool.server.clone().into_owned(),
                        })
                    },
                )?;
                let mandate_entity = mandate_entity(types, mandate)?;
                Ok::<_, String>(Base {
                    agent: types.uid(&types.agent, &agent.id.to_string()),
                    mandate: mandate_entity.uid(),
                    entities: pair
                        .entities
                        .clone()
                        .add_entities([mandate_entity], None)
                        .map_err(|e| e.to_string())?,
                    agent_facts: agent.clone().into_owned(),
                    mandate_facts: mandate.clone().into_owned(),
                    server_name: tool.server.clone().into_owned(),
                })
            },
        )?;
        let tool = self.tools.get_or_build(
            &(slot.tool, slot.server),
            |part| part.facts == *tool,
            || Ok::<_, String>(ToolPart::new(types, tool)),
        )?;
        Ok(CallParts { base, tool })
    }

    #[cfg(test)]
    fn lens(&self) -> [usize; 3] {
        [self.pairs.len(), self.bases.len(), self.tools.len()]
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeSet;

    use cedar_policy::EvalResult;
    use mandate_types::RiskTier;

    use super::*;
    use crate::call::mandate_types;

    struct Call {
        slot: Slot,
        agent: AgentFacts<'static>,
        mandate: MandateFacts<'static>,
        tool: ToolFacts<'static>,
    }

    fn call(n: usize) -> Call {
        let (slot, facts) = crate::cache::tests::sample(n);
        Call {
            slot,
            agent: facts.agent,
            mandate: facts.mandate,
            tool: facts.tool,
        }
    }

    fn get(set: &CompiledSet, parts: &Parts, c: &Call) -> CallParts {
        let types = mandate_types().unwrap();
        parts
            .get(set, types, &c.slot, &c.agent, &c.mandate, &c.tool)
            .unwrap()
    }

    fn same(a: &CallParts, b: &CallParts) -> [bool; 2] {
        [Arc::ptr_eq(&a.base, &b.base), Arc::ptr_eq(&a.tool, &b.tool)]
    }

    fn attr(entities: &Entities, uid: &EntityUid, name: &str) -> EvalResult {
        entities.get(uid).unwrap().attr(name).unwrap().unwrap()
    }

    fn string(s: &str) -> EvalResult {
        EvalResult::String(s.to_owned())
    }

    #[test]
    fn equal_facts_reuse_every_part() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::default();
        let c = call(1);
        let first = get(&set, &parts, &c);
        let again = get(&set, &parts, &c);
        assert_eq!(same(&first, &again), [true; 2]);
        assert_eq!(parts.lens(), [1, 1, 1]);
    }

    /// The four entities built at once, as before the parts: the reference.
    fn built_at_once(c: &Call, in_scope: bool) -> Entities {
        let types = mandate_types().unwrap();
        let name = c.tool.name();
        let server = types.uid(&types.server, &c.tool.server);
        let mandate = types.uid(&types.mandate, &c.mandate.id.to_string());
        let mut parents = vec![server.clone()];
        if in_scope {
            parents.push(mandate);
        }
        let tool = entity(
            types.uid(&types.tool, &name),
            vec![
                ("name", crate::call::string(&name)),
                (
                    "server",
                    RestrictedExpression::new_entity_uid(server.clone()),
                ),
                ("risk_tier", crate::call::string(c.tool.risk_tier.as_str())),
                (
                    "tags",
                    crate::call::strings(c.tool.tags.iter().map(String::as_str)),
                ),
                (
                    "data_class",
                    crate::call::string(c.tool.data_class.as_str()),
                ),
                (
                    "data_rank",
                    rank(mandate_types::DataClass::ALL, &c.tool.data_class),
                ),
            ],
            parents,
        )
        .unwrap();
        Entities::from_entities(
            [
                agent_entity(types, &c.agent).unwrap(),
                mandate_entity(types, &c.mandate).unwrap(),
                entity(
                    server,
                    vec![("name", crate::call::string(&c.tool.server))],
                    vec![],
                )
                .unwrap(),
                tool,
            ],
            None,
        )
        .unwrap()
    }

    #[test]
    fn assembled_entities_equal_the_four_built_at_once() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::default();
        let mut c = call(1);
        c.tool.tags = Cow::Owned(BTreeSet::from(["pii".to_owned(), "crm".to_owned()]));
        c.mandate.approval_tags = Cow::Owned(BTreeSet::from(["payments".to_owned()]));
        for in_scope in [true, false, true] {
            let got = get(&set, &parts, &c);
            let assembled = got
                .base
                .entities
                .clone()
                .add_entities(
                    [got.tool
                        .entity(in_scope.then_some(&got.base.mandate))
                        .unwrap()],
                    None,
                )
                .unwrap();
            let reference = built_at_once(&c, in_scope);
            assert_eq!(assembled.iter().count(), reference.iter().count());
            for entity in reference.iter() {
                let uid = entity.uid();
                let other = assembled.get(&uid).unwrap();
                assert!(other.deep_eq(entity), "{uid} differs");
                let ancestors = |e: &Entities| {
                    e.ancestors(&uid)
                        .map(|a| a.cloned().collect::<std::collections::HashSet<_>>())
                };
                assert_eq!(ancestors(&assembled), ancestors(&reference));
            }
        }
    }

    #[test]
    fn mandates_of_one_agent_on_one_server_share_their_pair() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::default();
        let first = call(1);
        let mut second = call(2);
        second.slot.agent = first.slot.agent;
        second.slot.server = first.slot.server;
        second.agent = first.agent.clone();
        second.mandate.grantee = first.agent.id;
        second.tool.server = first.tool.server.clone();
        let a = get(&set, &parts, &first);
        let b = get(&set, &parts, &second);
        assert_eq!(parts.lens(), [1, 2, 2]);
        assert!(!Arc::ptr_eq(&a.base, &b.base));
        assert_eq!(a.base.agent, b.base.agent);
        assert_ne!(a.base.mandate, b.base.mandate);
        // Each base holds its own mandate and not the other's.
        assert!(a.base.entities.get(&b.base.mandate).is_none());
        assert_eq!(
            attr(&b.base.entities, &b.base.agent, "name"),
            string("agent 1")
        );
    }

    #[test]
    fn a_changed_fact_rebuilds_only_its_own_part_with_the_new_answer() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::default();
        let mut c = call(1);
        let first = get(&set, &parts, &c);

        c.agent.name = Cow::Owned("renamed agent".into());
        let agent = get(&set, &parts, &c);
        assert_eq!(same(&first, &agent), [false, true]);
        let base = &agent.base;
        assert_eq!(
            attr(&base.entities, &base.agent, "name"),
            string("renamed agent")
        );

        c.mandate.status = "revoked";
        let mandate = get(&set, &parts, &c);
        assert_eq!(same(&agent, &mandate), [false, true]);
        let base = &mandate.base;
        assert_eq!(
            attr(&base.entities, &base.mandate, "status"),
            string("revoked")
        );
        assert_eq!(
            attr(&base.entities, &base.agent, "name"),
            string("renamed agent")
        );

        c.tool.risk_tier = RiskTier::HighImpact;
        let tool = get(&set, &parts, &c);
        assert_eq!(same(&mandate, &tool), [true, false]);
        let entity = tool.tool.entity(None).unwrap();
        assert_eq!(
            entity.attr("risk_tier").unwrap().unwrap(),
            string("high_impact")
        );

        // A renamed server: a new base (with the server's entity), and the tool
        // (named after its server, and under it) is rebuilt too.
        c.tool.server = Cow::Owned("renamed".into());
        let server = get(&set, &parts, &c);
        assert_eq!(same(&tool, &server), [false, false]);
        let renamed = server.tool.entity(None).unwrap();
        let server_uid = renamed.attr("server").unwrap().unwrap();
        let EvalResult::EntityUid(server_uid) = server_uid else {
            panic!("a tool's server is an entity");
        };
        assert_eq!(
            attr(&server.base.entities, &server_uid, "name"),
            string("renamed")
        );
        assert_eq!(
            server
                .tool
                .entity(None)
                .unwrap()
                .attr("name")
                .unwrap()
                .unwrap(),
            string(&format!("renamed.{}", c.tool.tool))
        );
        assert_eq!(parts.lens(), [1, 1, 1]);
    }

    #[test]
    fn a_tool_is_in_the_mandate_only_when_asked() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::default();
        let c = call(1);
        let got = get(&set, &parts, &c);
        let EvalResult::EntityUid(server) = got
            .tool
            .entity(None)
            .unwrap()
            .attr("server")
            .unwrap()
            .unwrap()
        else {
            panic!("a tool's server is an entity");
        };
        for in_scope in [false, true] {
            let tool = got
                .tool
                .entity(in_scope.then_some(&got.base.mandate))
                .unwrap();
            let entities = got
                .base
                .entities
                .clone()
                .add_entities([tool], None)
                .unwrap();
            assert!(entities.is_ancestor_of(&server, got.tool.uid()));
            assert_eq!(
                entities.is_ancestor_of(&got.base.mandate, got.tool.uid()),
                in_scope
            );
            assert!(!entities.is_ancestor_of(&got.base.mandate, &got.base.agent));
        }
    }

    #[test]
    fn each_kind_stays_within_its_capacity_and_evicts() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::with_capacities(2, 3, 2);
        let calls: Vec<Call> = (0..10).map(call).collect();
        for c in &calls {
            let got = get(&set, &parts, c);
            let [pairs, bases, tools] = parts.lens();
            assert!(pairs <= 2 && bases <= 3 && tools <= 2);
            // The part just built is kept (another evicted when full).
            assert_eq!(same(&got, &get(&set, &parts, c)), [true; 2]);
        }
        assert_eq!(parts.lens(), [2, 3, 2]);
        // The first call's parts were evicted: built again, for its own facts.
        let again = get(&set, &parts, &calls[0]);
        assert_eq!(again.base.server_name, calls[0].tool.server);
        assert_eq!(again.base.mandate_facts, calls[0].mandate);
        assert_eq!(again.tool.facts, calls[0].tool);
    }

    #[test]
    fn without_capacity_nothing_is_kept() {
        let set = CompiledSet::builtin().unwrap();
        let parts = Parts::with_capacities(0, 0, 0);
        let c = call(1);
        let first = get(&set, &parts, &c);
        assert_eq!(same(&first, &get(&set, &parts, &c)), [false; 2]);
        assert_eq!(parts.lens(), [0; 3]);
    }
}
