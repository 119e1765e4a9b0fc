//! The index: policies bucketed by what their scope pins down, so that a request
//! evaluates only the policies that could apply to it.
//!
//! Each policy lands in the buckets named by its (principal, action, resource) scope:
//! `== E` and `in E` under the entity `E`, `is T` under the type `T`, `is T in E`
//! under `E` (Cedar still checks the type), no constraint under "any"; an action list
//! puts the policy under each action. A request looks up every bucket its entities
//! could match: "any", its own type, its own id and each ancestor's id — so a policy
//! that could be satisfied is always a candidate.
//!
//! Conditions pin too: a policy whose first condition starts with `resource.name ==
//! "x"` (a tool's name) is filed under that name when its scope leaves the resource
//! open. Being first, that test is what Cedar evaluates first: when it is false the
//! policy neither holds nor errs, so skipping it changes nothing. A request whose
//! resource has no string `name` (where that test would err) looks in every name
//! bucket. Cedar then evaluates the candidates
//! exactly as it would the whole set. `tests/index_equivalence.rs` checks that with
//! generated policy sets and requests.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, EvalResult, Policy, PolicyId, PolicySet,
    PrincipalConstraint, ResourceConstraint,
};

use crate::compile::PolicyInfo;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Any,
    Type(EntityTypeName),
    Entity(EntityUid),
    /// The resource's `name` attribute (resource dimension only).
    Name(String),
}

/// The policies of one bucket: all of them, for the one evaluation a bucket needs, and
/// the permits alone, which tell whether a permit holds even when a forbid also holds
/// (only a remedy needs that).
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub(crate) all: PolicySet,
    pub(crate) permits: PolicySet,
    permit_count: usize,
}

impl Bucket {
    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub(crate) fn has_permits(&self) -> bool {
        self.permit_count > 0
    }

    /// The policies of several buckets in one, each once, those `keep` keeps, and each
    /// through `rewrite` (an equivalent policy for the requests these buckets serve):
    /// deciding with it is deciding with each in turn and combining (a forbid that
    /// holds in any denies; the permits that hold are the union), in one evaluation
    /// instead of one per bucket.
    pub(crate) fn merged(
        buckets: &[&Bucket],
        keep: impl Fn(&Policy) -> bool,
        rewrite: impl Fn(&Policy) -> Policy,
    ) -> Bucket {
        let mut merged = Bucket::default();
        for bucket in buckets {
            for policy in bucket.all.policies() {
                if merged.all.policy(policy.id()).is_some() || !keep(policy) {
                    // Filed under several keys: once is enough.
                    continue;
                }
                let policy = rewrite(policy);
                let permit = bucket.permits.policy(policy.id()).is_some();
                if permit && merged.permits.add(policy.clone()).is_ok() {
                    merged.permit_count += 1;
                }
                // Ids are unique and checked above: this cannot fail.
                let _ = merged.all.add(policy);
            }
        }
        merged
    }
}

/// The policy with its action scope left open (`action`), same id, annotations and
/// conditions; `None` when it is open already or cannot be rewritten.
pub(crate) fn without_action_scope(policy: &Policy) -> Option<Policy> {
    if matches!(policy.action_constraint(), ActionConstraint::Any) {
        return None;
    }
    let mut json = policy.to_json().ok()?;
    *json.get_mut("action")? = serde_json::json!({ "op": "All" });
    Policy::from_json(Some(policy.id().clone()), json).ok()
}

/// The index's tables hash with foldhash (already in the build through hashbrown)
/// instead of SipHash: a request's lookups hash about two dozen keys, each an entity
/// uid of several strings, and SipHash made that a measurable part of a decision.
/// Its seed is random per process, the tables hold only the keys of the operator's
/// own policies (a request only looks keys up, never adds one), and the hash decides
/// only where a key is looked for, never whether two keys are equal.
type KeyMap<V> = HashMap<Key, V, foldhash::fast::RandomState>;
type ByResource = KeyMap<Bucket>;
type ByPrincipal = KeyMap<ByResource>;

#[derive(Debug, Default)]
pub(crate) struct Index {
    by_action: KeyMap<ByPrincipal>,
    /// The unindexed view: every policy in one bucket (tests and `--no-index` runs).
    all: Bucket,
}

impl Index {
    pub(crate) fn build<'a>(
        policies: impl Iterator<Item = &'a Policy>,
        info: &HashMap<PolicyId, PolicyInfo>,
    ) -> Index {
        let mut index = Index::default();
        for policy in policies {
            let forbid = info.get(policy.id()).is_some_and(PolicyInfo::is_forbid);
            add(&mut index.all, policy, forbid);
            let principal = principal_key(policy.principal_constraint());
            let resource = match resource_key(policy.resource_constraint()) {
                open @ (Key::Any | Key::Type(_)) => name_pin(policy).map_or(open, Key::Name),
                pinned => pinned,
            };
            for action in action_keys(policy.action_constraint()) {
                let bucket = index
                    .by_action
                    .entry(action)
                    .or_default()
                    .entry(principal.clone())
                    .or_default()
                    .entry(resource.clone())
                    .or_default();
                add(bucket, policy, forbid);
            }
        }
        index
    }

    /// The buckets whose policies could apply to a request, each once.
    pub(crate) fn buckets<'a>(
        &'a self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
        entities: &Entities,
    ) -> Vec<&'a Bucket> {
        let principals = keys_of(principal, entities);
        let actions = keys_of(action, entities);
        let mut resources = keys_of(resource, entities);
        let name = resource_name(resource, entities);
        if let Some(name) = &name {
            resources.push(Key::Name(name.clone()));
        }
        let mut found = Vec::new();
        for a in &actions {
            let Some(by_principal) = self.by_action.get(a) else {
                continue;
            };
            for p in &principals {
                let Some(by_resource) = by_principal.get(p) else {
                    continue;
                };
                for r in &resources {
                    if let Some(bucket) = by_resource.get(r) {
                        found.push(bucket);
                    }
                }
                if name.is_none() {
                    // `resource.name` would err here: every name-pinned policy applies.
                    found.extend(
                        by_resource
                            .iter()
                            .filter(|(k, _)| matches!(k, Key::Name(_)))
                            .map(|(_, bucket)| bucket),
                    );
                }
            }
        }
        found
    }

    pub(crate) fn everything(&self) -> &Bucket {
        &self.all
    }
}

fn add(bucket: &mut Bucket, policy: &Policy, forbid: bool) {
    // Ids are unique within a compiled set: a policy already here is simply skipped.
    if bucket.all.add(policy.clone()).is_err() {
        return;
    }
    if !forbid && bucket.permits.add(policy.clone()).is_ok() {
        bucket.permit_count += 1;
    }
}

/// Any, the entity's type, the entity, and each of its ancestors.
fn keys_of(uid: &EntityUid, entities: &Entities) -> Vec<Key> {
    let mut keys = vec![
        Key::Any,
        Key::Type(uid.type_name().clone()),
        Key::Entity(uid.clone()),
    ];
    if let Some(ancestors) = entities.ancestors(uid) {
        let mut seen = HashSet::new();
        for ancestor in ancestors {
            if seen.insert(ancestor) {
                keys.push(Key::Entity(ancestor.clone()));
            }
        }
    }
    keys
}

/// The resource's `name` attribute when it is a string.
fn resource_name(resource: &EntityUid, entities: &Entities) -> Option<String> {
    match entities.get(resource)?.attr("name")? {
        Ok(EvalResult::String(name)) => Some(name),
        _ => None,
    }
}

/// `"x"` when the policy's first condition is `when` and its leftmost conjunct is
/// `resource.name == "x"` (either way round).
fn name_pin(policy: &Policy) -> Option<String> {
    let json = policy.to_json().ok()?;
    let first = json.get("conditions")?.as_array()?.first()?;
    if first.get("kind")?.as_str()? != "when" {
        return None;
    }
    let mut body = first.get("body")?;
    while let Some(and) = body.get("&&") {
        body = and.get("left")?;
    }
    let eq = body.get("==")?;
    let (left, right) = (eq.get("left")?, eq.get("right")?);
    let is_resource_name = |e: &serde_json::Value| {
        e.get(".").is_some_and(|dot| {
            dot.get("attr").and_then(|a| a.as_str()) == Some("name")
                && dot
                    .get("left")
                    .and_then(|l| l.get("Var"))
                    .and_then(|v| v.as_str())
                    == Some("resource")
        })
    };
    let literal =
        |e: &serde_json::Value| e.get("Value").and_then(|v| v.as_str()).map(str::to_owned);
    if is_resource_name(left) {
        literal(right)
    } else if is_resource_name(right) {
        literal(left)
    } else {
        None
    }
}

fn principal_key(constraint: PrincipalConstraint) -> Key {
    match constraint {
        PrincipalConstraint::Any => Key::Any,
        PrincipalConstraint::Is(t) => Key::Type(t),
        PrincipalConstraint::Eq(e)
        | PrincipalConstraint::In(e)
        | PrincipalConstraint::IsIn(_, e) => Key::Entity(e),
    }
}

fn resource_key(constraint: ResourceConstraint) -> Key {
    match constraint {
        ResourceConstraint::Any => Key::Any,
        ResourceConstraint::Is(t) => Key::Type(t),
        ResourceConstraint::Eq(e) | ResourceConstraint::In(e) | ResourceConstraint::IsIn(_, e) => {
            Key::Entity(e)
        }
    }
}

fn action_keys(constraint: ActionConstraint) -> Vec<Key> {
    match constraint {
        ActionConstraint::Any => vec![Key::Any],
        ActionConstraint::Eq(a) => vec![Key::Entity(a)],
        ActionConstraint::In(list) => {
            let mut keys: Vec<Key> = list.into_iter().map(Key::Entity).collect();
            keys.dedup();
            keys
        }
    }
}
