//! The entities of Mandate's own call decisions, built once and reused.
//!
//! Building a call's Cedar entities (agent, mandate, tool server, tool and the
//! transitive closure Cedar computes over them) cost more than deciding. They depend
//! only on a few facts of the agent, the mandate and the tool, never on the call's
//! arguments, amount or time, so they are kept per (agent, mandate, tool, server) and
//! reused; only the request context is built per call. A miss assembles the entry
//! from parts built once each (`parts.rs`): the agent, the mandate and the server
//! closed together once, and the tool.
//!
//! Why an entry can never be stale: the entities are built *from* a [`CallFacts`]
//! value and nothing else, and the entry keeps an owned copy of those facts. A lookup
//! compares the request's facts with the entry's field by field; any difference (a
//! new status, other terms, a changed tool tier or agent label, a different scope
//! outcome) is a miss, and the entry is rebuilt and replaced. The ids only choose the
//! slot. So an entry is used only for exactly the inputs it was built from, whatever
//! the ids and versions claim.
//!
//! Bounds: at most [`DEFAULT_CAPACITY`] entries per compiled set (one per id tuple; a
//! changed entity replaces its old entry); when full, an arbitrary entry is evicted.
//! An entry shares the agent's, mandate's and server's entities with the base it was
//! assembled from (`parts.rs`), which stay alive while the entry does; so the worst
//! case, every entry from another evicted base, costs per entry about what an entry
//! of its own cost before (some 17 KiB).
//! The cache belongs to one compiled set, so a policy reload starts empty and the
//! candidate policies kept beside each entry always come from the set that decides.
//! A poisoned lock is treated as a miss: the entities are built for the call and not
//! kept.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, OnceLock, RwLock};

use cedar_policy::{Entities, EntityUid};
use chrono::{DateTime, Utc};
use mandate_domain::{Agent, Mandate, Tool, ToolServer};
use mandate_types::{AgentId, DataClass, HumanId, MandateId, RiskTier, ToolId, ToolServerId};

use crate::index::Bucket;

/// Entries kept per compiled set. What an entry holds of its own (the tool's entity,
/// the entity map, the facts, the uids) costs about 5 KiB of heap as measured with the
/// benchmark's world (massif; Cedar's values are large), so a full cache holds about
/// 85 MiB of its own, plus the bases its entries share (about 9 KiB each, one per
/// agent, mandate and server in use; see `parts.rs`). With the benchmark's 20 000
/// distinct calls over 10 000 mandates everything cached came to about 195 MiB of
/// heap (4 096 self-contained entries of some 17 KiB were about 70 MiB before). Enough
/// for a replica's working set of (agent, mandate, tool) triples, not for every triple
/// there is.
pub(crate) const DEFAULT_CAPACITY: usize = 16_384;

/// What an agent's entity is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentFacts<'a> {
    pub(crate) id: AgentId,
    pub(crate) name: Cow<'a, str>,
    pub(crate) owner: HumanId,
    pub(crate) labels: Cow<'a, BTreeMap<String, String>>,
}

impl<'a> AgentFacts<'a> {
    pub(crate) fn of(agent: &'a Agent) -> Self {
        AgentFacts {
            id: agent.id,
            name: Cow::Borrowed(&agent.name),
            owner: agent.owner,
            labels: Cow::Borrowed(&agent.labels),
        }
    }

    pub(crate) fn into_owned(self) -> AgentFacts<'static> {
        AgentFacts {
            id: self.id,
            name: Cow::Owned(self.name.into_owned()),
            owner: self.owner,
            labels: Cow::Owned(self.labels.into_owned()),
        }
    }
}

/// What a mandate's entity is built from: its status and the terms the policies
/// read (not its usage, which is context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MandateFacts<'a> {
    pub(crate) id: MandateId,
    pub(crate) status: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) human: HumanId,
    pub(crate) grantee: AgentId,
    pub(crate) purpose: Cow<'a, str>,
    pub(crate) not_before: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) data_ceiling: DataClass,
    pub(crate) approval_tiers: Cow<'a, BTreeSet<RiskTier>>,
    pub(crate) approval_tags: Cow<'a, BTreeSet<String>>,
    pub(crate) max_delegation_depth: u8,
    pub(crate) max_calls: Option<u64>,
    pub(crate) max_amount: Option<u64>,
}

impl<'a> MandateFacts<'a> {
    pub(crate) fn of(mandate: &'a Mandate) -> Self {
        let terms = &mandate.terms;
        MandateFacts {
            id: mandate.id,
            status: mandate.status.as_str(),
            mode: terms.mode.as_str(),
            human: terms.human_id,
            grantee: terms.agent_id,
            purpose: Cow::Borrowed(terms.purpose.as_deref().unwrap_or("")),
            not_before: terms.not_before.unwrap_or(mandate.created_at),
            expires_at: terms.expires_at,
            data_ceiling: terms.data_ceiling,
            approval_tiers: Cow::Borrowed(&terms.approval.tiers),
            approval_tags: Cow::Borrowed(&terms.approval.tags),
            max_delegation_depth: terms.max_delegation_depth,
            max_calls: terms.budgets.max_calls,
            max_amount: terms.budgets.max_amount,
        }
    }

    pub(crate) fn into_owned(self) -> MandateFacts<'static> {
        MandateFacts {
            purpose: Cow::Owned(self.purpose.into_owned()),
            approval_tiers: Cow::Owned(self.approval_tiers.into_owned()),
            approval_tags: Cow::Owned(self.approval_tags.into_owned()),
            ..self
        }
    }
}

/// What a tool's and its server's entities are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolFacts<'a> {
    pub(crate) server: Cow<'a, str>,
    pub(crate) tool: Cow<'a, str>,
    pub(crate) risk_tier: RiskTier,
    pub(crate) tags: Cow<'a, BTreeSet<String>>,
    pub(crate) data_class: DataClass,
}

impl<'a> ToolFacts<'a> {
    pub(crate) fn of(server: &'a ToolServer, tool: &'a Tool) -> Self {
        ToolFacts {
            server: Cow::Borrowed(&server.name),
            tool: Cow::Borrowed(&tool.name),
            risk_tier: tool.risk_tier,
            tags: Cow::Borrowed(&tool.tags),
            data_class: tool.data_class,
        }
    }

    /// The namespaced name: `{server}.{tool}`.
    pub(crate) fn name(&self) -> String {
        format!("{}.{}", self.server, self.tool)
    }

    pub(crate) fn into_owned(self) -> ToolFacts<'static> {
        ToolFacts {
            server: Cow::Owned(self.server.into_owned()),
            tool: Cow::Owned(self.tool.into_owned()),
            tags: Cow::Owned(self.tags.into_owned()),
            ..self
        }
    }
}

/// Everything a call's entities are built from. The builder reads nothing else, so
/// equal facts mean equal entities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallFacts<'a> {
    pub(crate) agent: AgentFacts<'a>,
    pub(crate) mandate: MandateFacts<'a>,
    pub(crate) tool: ToolFacts<'a>,
    /// The mandate's scope covers the tool: the tool is then `in` the mandate.
    pub(crate) in_scope: bool,
}

impl CallFacts<'_> {
    fn into_owned(self) -> CallFacts<'static> {
        CallFacts {
            agent: self.agent.into_owned(),
            mandate: self.mandate.into_owned(),
            tool: self.tool.into_owned(),
            in_scope: self.in_scope,
        }
    }
}

/// Which slot an entry lives in. Only a hint: the facts decide whether it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub(crate) agent: AgentId,
    pub(crate) mandate: MandateId,
    pub(crate) tool: ToolId,
    pub(crate) server: ToolServerId,
}

/// A call's entities and what a decision needs beside them, ready to share.
#[derive(Debug)]
pub(crate) struct CallEntities {
    facts: CallFacts<'static>,
    pub(crate) entities: Entities,
    pub(crate) agent: EntityUid,
    pub(crate) mandate: EntityUid,
    pub(crate) tool: EntityUid,
    /// Per call action (in `CallAction` order), the index's candidate buckets for
    /// these entities merged into one, filled on first use. The buckets depend only
    /// on the principal, action and resource and their ancestors, all fixed here. The
    /// merged sets are shared between entries (`CandidateCache`).
    pub(crate) candidates: [OnceLock<Arc<Bucket>>; 4],
}

impl CallEntities {
    pub(crate) fn new(
        facts: CallFacts<'_>,
        entities: Entities,
        agent: EntityUid,
        mandate: EntityUid,
        tool: EntityUid,
    ) -> Self {
        CallEntities {
            facts: facts.into_owned(),
            entities,
            agent,
            mandate,
            tool,
            candidates: Default::default(),
        }
    }
}

/// Whether the policies' action scopes were opened, and the buckets' addresses.
type MergeKey = (bool, Vec<usize>);

/// Merged candidate buckets by the buckets they merge (their addresses in the
/// compiled set's index, which is immutable while the set lives): many entries share
/// one (with the built-ins alone, one per action), so a merged set is built once, not
/// once per entry. Bounded like the entity cache.
#[derive(Debug)]
pub(crate) struct CandidateCache {
    merged: RwLock<HashMap<MergeKey, Arc<Bucket>>>,
    capacity: usize,
}

impl Default for CandidateCache {
    fn default() -> Self {
        CandidateCache {
            merged: RwLock::new(HashMap::new()),
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl CandidateCache {
    /// `opened` says whether `merge` opens action scopes: a set merged one way is
    /// never served for the other.
    pub(crate) fn get_or_merge(
        &self,
        buckets: &[&Bucket],
        opened: bool,
        merge: impl FnOnce() -> Bucket,
    ) -> Arc<Bucket> {
        let key = (
            opened,
            buckets
                .iter()
                .map(|b| std::ptr::from_ref::<Bucket>(b) as usize)
                .collect::<Vec<usize>>(),
        );
        if let Ok(merged) = self.merged.read()
            && let Some(bucket) = merged.get(&key)
        {
            return bucket.clone();
        }
        let bucket = Arc::new(merge());
        if let Ok(mut merged) = self.merged.write() {
            if merged.len() >= self.capacity
                && let Some(victim) = merged.keys().next().cloned()
            {
                merged.remove(&victim);
            }
            merged.insert(key, bucket.clone());
        }
        bucket
    }
}

/// A bounded, shared map of built values. The key only chooses the slot: a value is
/// handed out only when the caller's `fits` accepts it (its facts equal the
/// request's), otherwise it is rebuilt and replaces the old one. At most `capacity`
/// values are kept; when full, an arbitrary one is evicted (the iteration order of a
/// randomly seeded map is as good as random eviction, and costs no bookkeeping on
/// hits). A poisoned lock is a miss: the value is built for the caller and not kept.
pub(crate) struct Bounded<K, V> {
    entries: RwLock<HashMap<K, Arc<V>>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V> std::fmt::Debug for Bounded<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V> Bounded<K, V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Bounded {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    /// The value in `key`'s slot when `fits` accepts it; otherwise one built with
    /// `build` (outside the lock; two callers missing at once may both build, and the
    /// later simply replaces the earlier) and kept in that slot.
    pub(crate) fn get_or_build<E>(
        &self,
        key: &K,
        fits: impl Fn(&V) -> bool,
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Ok(entries) = self.entries.read()
            && let Some(value) = entries.get(key)
            && fits(value)
        {
            return Ok(value.clone());
        }
        let value = Arc::new(build()?);
        if self.capacity == 0 {
            return Ok(value);
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.capacity
                && !entries.contains_key(key)
                && let Some(victim) = entries.keys().next().cloned()
            {
                entries.remove(&victim);
            }
            entries.insert(key.clone(), value.clone());
        }
        Ok(value)
    }
}

/// The bounded, shared map of call entities.
pub(crate) struct EntityCache {
    entries: Bounded<Slot, CallEntities>,
}

impl std::fmt::Debug for EntityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityCache")
            .field("entries", &self.entries)
            .finish()
    }
}

impl Default for EntityCache {
    fn default() -> Self {
        EntityCache::with_capacity(DEFAULT_CAPACITY)
    }
}

impl EntityCache {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        EntityCache {
            entries: Bounded::with_capacity(capacity),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry for exactly these facts, built with `build` when there is none (or
    /// only one for other facts). `build` runs outside the lock; two callers missing
    /// at once may both build, and the later simply replaces the earlier.
    pub(crate) fn get_or_build(
        &self,
        slot: Slot,
        facts: &CallFacts<'_>,
        build: impl FnOnce() -> Result<CallEntities, String>,
    ) -> Result<Arc<CallEntities>, String> {
        self.entries
            .get_or_build(&slot, |entry| entry.facts == *facts, build)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call's slot and facts for tests: the `n`th agent (labelled `env=prod`), a
    /// mandate of its own, and tool `t{n}` of server `s{n}`, in the mandate's scope.
    pub(crate) fn sample(n: usize) -> (Slot, CallFacts<'static>) {
        let agent = AgentId::generate();
        let mandate = MandateId::generate();
        let now = Utc::now();
        let facts = CallFacts {
            agent: AgentFacts {
                id: agent,
                name: Cow::Owned(format!("agent {n}")),
                owner: HumanId::generate(),
                labels: Cow::Owned(BTreeMap::from([("env".to_owned(), "prod".to_owned())])),
            },
            mandate: MandateFacts {
                id: mandate,
                status: "active",
                mode: "execute",
                human: HumanId::generate(),
                grantee: agent,
                purpose: Cow::Borrowed(""),
                not_before: now,
                expires_at: now,
                data_ceiling: DataClass::Public,
                approval_tiers: Cow::Owned(BTreeSet::new()),
                approval_tags: Cow::Owned(BTreeSet::new()),
                max_delegation_depth: 0,
                max_calls: None,
                max_amount: None,
            },
            tool: ToolFacts {
                server: Cow::Owned(format!("s{n}")),
                tool: Cow::Owned(format!("t{n}")),
                risk_tier: RiskTier::Read,
                tags: Cow::Owned(BTreeSet::new()),
                data_class: DataClass::Public,
            },
            in_scope: true,
        };
        let slot = Slot {
            agent,
            mandate,
            tool: ToolId::generate(),
            server: ToolServerId::generate(),
        };
        (slot, facts)
    }

    fn facts(n: u8) -> (Slot, CallFacts<'static>) {
        sample(usize::from(n))
    }

    fn build(facts: &CallFacts<'_>) -> Result<CallEntities, String> {
        let uid: EntityUid = r#"Mandate::Agent::"a""#.parse().map_err(|_| "uid")?;
        Ok(CallEntities::new(
            facts.clone(),
            Entities::empty(),
            uid.clone(),
            uid.clone(),
            uid,
        ))
    }

    #[test]
    fn stays_within_its_capacity_and_rebuilds_for_other_facts() {
        let cache = EntityCache::with_capacity(3);
        let mut builds = 0;
        for n in 0..10 {
            let (slot, facts) = facts(n);
            cache
                .get_or_build(slot, &facts, || {
                    builds += 1;
                    build(&facts)
                })
                .unwrap();
            assert!(cache.len() <= 3);
        }
        assert_eq!(builds, 10);

        let (slot, facts) = facts(0);
        let first = cache.get_or_build(slot, &facts, || build(&facts)).unwrap();
        let again = cache
            .get_or_build(slot, &facts, || Err("must not build".into()))
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));

        let mut other = facts.clone();
        other.mandate.status = "revoked";
        let rebuilt = cache.get_or_build(slot, &other, || build(&other)).unwrap();
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        assert_eq!(rebuilt.facts, other);
        assert!(cache.len() <= 3);
    }

    #[test]
    fn without_capacity_nothing_is_kept() {
        let cache = EntityCache::with_capacity(0);
        let (slot, facts) = facts(1);
        cache.get_or_build(slot, &facts, || build(&facts)).unwrap();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_poisoned_lock_is_a_miss_not_a_panic() {
        let map: Bounded<u8, u8> = Bounded::with_capacity(4);
        map.get_or_build(&1, |_| true, || Ok::<_, ()>(1)).unwrap();
        let poisoner = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = map.entries.write();
                panic!("poisoning the lock on purpose");
            })
            .join()
        });
        assert!(poisoner.is_err());
        assert!(map.entries.is_poisoned());
        let mut builds = 0;
        for _ in 0..3 {
            let value = map
                .get_or_build(
                    &1,
                    |_| true,
                    || {
                        builds += 1;
                        Ok::<_, ()>(2)
                    },
                )
                .unwrap();
            assert_eq!(*value, 2);
        }
        assert_eq!(builds, 3);
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn a_slot_holds_the_value_for_the_latest_facts_only() {
        let map: Bounded<u8, (u8, u32)> = Bounded::with_capacity(2);
        let fits = |facts: u8| move |v: &(u8, u32)| v.0 == facts;
        let first = map
            .get_or_build(&1, fits(10), || Ok::<_, ()>((10, 1)))
            .unwrap();
        let other = map
            .get_or_build(&1, fits(11), || Ok::<_, ()>((11, 2)))
            .unwrap();
        assert_eq!((*first, *other), ((10, 1), (11, 2)));
        // The old facts are gone from the slot: asking for them again rebuilds.
        let again = map
            .get_or_build(&1, fits(10), || Ok::<_, ()>((10, 3)))
            .unwrap();
        assert_eq!(*again, (10, 3));
        assert_eq!(map.len(), 1);
        // Full: a new slot evicts one, and the count stays at the capacity.
        for key in 2..10 {
            map.get_or_build(&key, fits(key), || Ok::<_, ()>((key, 0)))
                .unwrap();
            assert!(map.len() <= 2);
        }
        assert_eq!(map.len(), 2);
    }
}
