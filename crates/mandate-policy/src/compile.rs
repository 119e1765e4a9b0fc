//! Compiling a policy set: Mandate's schema and built-in policies plus an operator's
//! files, parsed, named, validated whole against the combined schema, and indexed.
//! A set that fails anywhere is refused with every problem located.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::RwLock;

use cedar_policy::{
    Effect, Entities, EntityUid, Policy, PolicyId, PolicySet, Schema, SchemaFragment,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::{CandidateCache, EntityCache};
use crate::index::Index;
use crate::parts::Parts;
use crate::source::{PolicySetError, PolicySource, Problem, SourceFile};

/// Mandate's schema, shipped in the binary.
pub const BUILTIN_SCHEMA: &str = include_str!("../cedar/mandate.cedarschema");
/// Mandate's built-in policies: what a mandate means.
pub const BUILTIN_POLICIES: &str = include_str!("../cedar/builtin.cedar");
const BUILTIN_SCHEMA_FILE: &str = "<builtin>/mandate.cedarschema";
const BUILTIN_POLICY_FILE: &str = "<builtin>/builtin.cedar";
/// Built-in policy ids start with this; operators may not use it.
pub const BUILTIN_PREFIX: &str = "mandate.";

/// What lifts a deny, named by a forbid's `@remedy` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// A human's approval of the exact call.
    Approval,
    /// Recording the call as a proposal for a human to execute.
    Recommend,
    /// A (further) human consent.
    Consent,
}

impl FromStr for Remedy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "approval" => Ok(Remedy::Approval),
            "recommend" => Ok(Remedy::Recommend),
            "consent" => Ok(Remedy::Consent),
            _ => Err(()),
        }
    }
}

/// What the decision point knows about one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    pub id: String,
    pub file: String,
    pub effect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<Remedy>,
    pub builtin: bool,
}

impl PolicyInfo {
    pub(crate) fn is_forbid(&self) -> bool {
        self.effect == "forbid"
    }
}

/// A validated, indexed policy set, ready to decide. Immutable: a reload builds a new
/// one and swaps it in whole.
#[derive(Debug)]
pub struct CompiledSet {
    /// `None` only in the empty fallback set.
    pub(crate) schema: Option<Schema>,
    pub(crate) info: HashMap<PolicyId, PolicyInfo>,
    /// Built-in and operator policies: for requests Mandate builds itself.
    pub(crate) mandate_index: Index,
    /// Operator policies only: for AuthZEN callers.
    pub(crate) open_index: Index,
    /// Stored entities and the schema's action entities.
    pub(crate) stored: Entities,
    /// The schema's action entities, when Mandate's actions form groups (the base of a
    /// mandate request's entities); `None` when they do not, so that `action in [..]`
    /// needs no action entities and a request's entities are just its own.
    pub(crate) action_entities: Option<Entities>,
    /// Stored entity ids by type, sorted by id.
    pub(crate) by_type: BTreeMap<String, Vec<EntityUid>>,
    /// Where each action name is first declared in the operator's schema text.
    action_order: HashMap<String, usize>,
    source: PolicySource,
    digest: String,
    operator_policies: usize,
    /// The entities of Mandate's call decisions, built once per (agent, mandate, tool)
    /// content and reused while this set decides (`cache.rs`).
    pub(crate) call_cache: EntityCache,
    /// The entities of the calls' agents, mandates, servers and tools, each built once
    /// per its own facts: what a miss of `call_cache` is assembled from (`parts.rs`).
    pub(crate) parts: Parts,
    /// Merged candidate buckets shared by the call cache's entries.
    pub(crate) candidate_cache: CandidateCache,
    /// Policies with their action scope opened (`index::without_action_scope`), made
    /// on first use; at most one per policy of this set.
    pub(crate) action_free: RwLock<HashMap<PolicyId, Policy>>,
    /// Whether call decisions answer the built-in policies natively (`builtin.rs`):
    /// the set holds exactly the built-ins that module knows, and Mandate's actions
    /// form no groups (so a built-in's action scope means just the actions it names).
    pub(crate) native_builtins: bool,
}

impl CompiledSet {
    /// A set with no policies at all: it permits nothing. Only a fallback.
    pub fn empty() -> Self {
        CompiledSet {
            action_entities: None,
            stored: Entities::empty(),
            schema: None,
            info: HashMap::new(),
            mandate_index: Index::default(),
            open_index: Index::default(),
            by_type: BTreeMap::new(),
            action_order: HashMap::new(),
            source: PolicySource::default(),
            digest: String::new(),
            operator_policies: 0,
            call_cache: EntityCache::default(),
            parts: Parts::default(),
            candidate_cache: CandidateCache::default(),
            action_free: RwLock::default(),
            native_builtins: false,
        }
    }

    /// Mandate's own schema and policies, with no operator policies.
    pub fn builtin() -> Result<Self, PolicySetError> {
        Self::compile(PolicySource::default())
    }

    /// Compiles a whole set or refuses it with every problem found.
    pub fn compile(source: PolicySource) -> Result<Self, PolicySetError> {
        source.check_limits()?;
        let mut problems = Vec::new();

        let schema = compile_schema(&source.schemas, &mut problems);

        let mut files: HashMap<PolicyId, (String, String)> = HashMap::new();
        let mut info = HashMap::new();
        let mut builtin = Vec::new();
        let builtin_file = SourceFile {
            name: BUILTIN_POLICY_FILE.to_owned(),
            text: BUILTIN_POLICIES.to_owned(),
        };
        parse_file(
            &builtin_file,
            true,
            &mut builtin,
            &mut info,
            &mut files,
            &mut problems,
        );
        let mut operator = Vec::new();
        for file in &source.policies {
            parse_file(
                file,
                false,
                &mut operator,
                &mut info,
                &mut files,
                &mut problems,
            );
        }
        let Some(schema) = schema else {
            return Err(PolicySetError { problems });
        };
        if !problems.is_empty() {
            return Err(PolicySetError { problems });
        }

        let mut all = PolicySet::new();
        for policy in builtin.iter().chain(&operator) {
            if let Err(e) = all.add(policy.clone()) {
                problems.push(policy_problem(&files, policy.id(), e.to_string(), None));
            }
        }
        let validator = Validator::new(schema.clone());
        let result = validator.validate(&all, ValidationMode::Strict);
        for error in result.validation_errors() {
            let offset = first_offset(error);
            problems.push(policy_problem(
                &files,
                error.policy_id(),
                error.to_string(),
                offset,
            ));
        }
        if !problems.is_empty() {
            return Err(PolicySetError { problems });
        }

        let action_entities = schema.action_entities().map_err(|e| {
            PolicySetError::one(Problem::in_file(BUILTIN_SCHEMA_FILE, e.to_string()))
        })?;
        let (stored, by_type) = match &source.entities {
            None => (action_entities.clone(), BTreeMap::new()),
            Some(file) => load_entities(file, &schema, &action_entities)?,
        };

        let mandate_index = Index::build(builtin.iter().chain(&operator), &info);
        let open_index = Index::build(operator.iter(), &info);
        let digest = digest_of(&source);
        let action_order = declared_actions(source.schemas.iter().map(|f| f.text.as_str()));
        let action_entities = mandate_action_groups(&action_entities).then_some(action_entities);
        let native_builtins = action_entities.is_none()
            && crate::builtin::answers_for(builtin.iter().map(Policy::id));
        Ok(CompiledSet {
            action_order,
            schema: Some(schema),
            info,
            mandate_index,
            open_index,
            stored,
            action_entities,
            by_type,
            operator_policies: operator.len(),
            source,
            digest,
            call_cache: EntityCache::default(),
            parts: Parts::default(),
            candidate_cache: CandidateCache::default(),
            action_free: RwLock::default(),
            native_builtins,
        })
    }

    /// The operator's files this set was compiled from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// `sha256:` over the operator's files: names a set across replicas and restarts.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether call decisions answer the built-in policies natively (`builtin.rs`)
    /// beside Cedar on the operator policies; otherwise Cedar evaluates them too.
    pub fn answers_builtins_natively(&self) -> bool {
        self.native_builtins
    }

    pub fn operator_policy_count(&self) -> usize {
        self.operator_policies
    }

    /// Every policy, built-in first, then by id.
    pub fn policies(&self) -> Vec<&PolicyInfo> {
        let mut all: Vec<_> = self.info.values().collect();
        all.sort_by(|a, b| (!a.builtin, &a.id).cmp(&(!b.builtin, &b.id)));
        all
    }

    pub(crate) fn info(&self, id: &PolicyId) -> Option<&PolicyInfo> {
        self.info.get(id)
    }

    /// The actions an AuthZEN action search considers: declared in the schema outside
    /// Mandate's own namespace and applicable to these types, in declaration order.
    pub(crate) fn actions_for(&self, principal: &str, resource: &str) -> Vec<EntityUid> {
        let types = (
            cedar_policy::EntityTypeName::from_str(principal),
            cedar_policy::EntityTypeName::from_str(resource),
        );
        let mut actions: Vec<EntityUid> = match (types, &self.schema) {
            ((Ok(p), Ok(r)), Some(schema)) => schema
                .actions_for_principal_and_resource(&p, &r)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        actions.retain(|a| !a.type_name().to_string().starts_with("Mandate::"));
        actions.sort_by_key(|a| {
            let name = a.id().unescaped().to_owned();
            (
                self.action_order.get(&name).copied().unwrap_or(usize::MAX),
                name,
            )
        });
        actions.dedup();
        actions
    }
}

fn compile_schema(fragments: &[SourceFile], problems: &mut Vec<Problem>) -> Option<Schema> {
    let mut parsed = Vec::new();
    let builtin = SourceFile {
        name: BUILTIN_SCHEMA_FILE.to_owned(),
        text: BUILTIN_SCHEMA.to_owned(),
    };
    for file in std::iter::once(&builtin).chain(fragments) {
        match SchemaFragment::from_cedarschema_str(&file.text) {
            Ok((fragment, _warnings)) => parsed.push(fragment),
            Err(e) => problems.push(located(&file.name, &file.text, &e)),
        }
    }
    if !problems.is_empty() {
        return None;
    }
    let Err(error) = Schema::from_schema_fragments(parsed.iter().cloned()) else {
        return Schema::from_schema_fragments(parsed).ok();
    };
    // Blame the first fragment that fails beside the built-in schema alone; fragments
    // that only fail together are reported against the set.
    let builtin_fragment = parsed.first().cloned();
    for (file, fragment) in fragments.iter().zip(parsed.iter().skip(1)) {
        let pair = builtin_fragment.iter().cloned().chain([fragment.clone()]);
        if let Err(e) = Schema::from_schema_fragments(pair) {
            problems.push(located(&file.name, &file.text, &e));
            return None;
        }
    }
    problems.push(Problem::in_file("<schema>", full_message(&error)));
    None
}

fn parse_file(
    file: &SourceFile,
    builtin: bool,
    out: &mut Vec<Policy>,
    info: &mut HashMap<PolicyId, PolicyInfo>,
    files: &mut HashMap<PolicyId, (String, String)>,
    problems: &mut Vec<Problem>,
) {
    let set = match PolicySet::from_str(&file.text) {
        Ok(set) => set,
        Err(errors) => {
            for error in errors.iter() {
                problems.push(located(&file.name, &file.text, error));
            }
            return;
        }
    };
    if set.templates().next().is_some() {
        problems.push(Problem::in_file(
            &file.name,
            "policy templates are not supported; write static policies",
        ));
        return;
    }
    // The parser names policies `policy0`, `policy1`, … in file order.
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    for (n, policy) in policies.into_iter().enumerate() {
        let id = match policy.annotation("id") {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!("{}#{}", file.name, n + 1),
        };
        let pid = PolicyId::new(&id);
        let problem = |message: String| Problem {
            policy: Some(id.clone()),
            ..Problem::in_file(&file.name, message)
        };
        if !builtin && id.starts_with(BUILTIN_PREFIX) {
            problems.push(problem(format!(
                "policy ids starting with `{BUILTIN_PREFIX}` are reserved for Mandate's built-in policies"
            )));
            continue;
        }
        if let Some(other) = files.get(&pid) {
            problems.push(problem(format!("the id is also used in {}", other.0)));
            continue;
        }
        let remedy = match policy.annotation("remedy") {
            None => None,
            Some(text) => match text.parse::<Remedy>() {
                Ok(remedy) if policy.effect() == Effect::Forbid => Some(remedy),
                Ok(_) => {
                    problems.push(problem("only a `forbid` can carry @remedy".into()));
                    continue;
                }
                Err(()) => {
                    problems.push(problem(format!(
                        "unknown @remedy(\"{text}\"); expected approval, recommend or consent"
                    )));
                    continue;
                }
            },
        };
        info.insert(
            pid.clone(),
            PolicyInfo {
                id: id.clone(),
                file: file.name.clone(),
                effect: match policy.effect() {
                    Effect::Permit => "permit",
                    Effect::Forbid => "forbid",
                },
                reason: policy.annotation("reason").map(str::to_owned),
                remedy,
                builtin,
            },
        );
        files.insert(pid.clone(), (file.name.clone(), file.text.clone()));
        out.push(policy.new_id(pid));
    }
}

fn load_entities(
    file: &SourceFile,
    schema: &Schema,
    actions: &Entities,
) -> Result<(Entities, BTreeMap<String, Vec<EntityUid>>), PolicySetError> {
    let fail = |message: String| PolicySetError::one(Problem::in_file(&file.name, message));
    let json: serde_json::Value =
        serde_json::from_str(&file.text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let order: Vec<EntityUid> = match &json {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|item| item.get("uid"))
            .filter_map(|uid| EntityUid::from_json(uid.clone()).ok())
            .collect(),
        _ => return Err(fail("must be a JSON array of entities".into())),
    };
    let parsed =
        Entities::from_json_value(json, Some(schema)).map_err(|e| fail(full_message(&e)))?;
    let mut seen = HashSet::new();
    let mut by_type: BTreeMap<String, Vec<EntityUid>> = BTreeMap::new();
    for uid in order {
        if seen.insert(uid.clone()) {
            by_type
                .entry(uid.type_name().to_string())
                .or_default()
                .push(uid);
        }
    }
    for uids in by_type.values_mut() {
        uids.sort_by(|a, b| a.id().unescaped().cmp(b.id().unescaped()));
    }
    let stored = parsed
        .add_entities(
            actions.iter().filter(|a| !seen.contains(&a.uid())).cloned(),
            None,
        )
        .map_err(|e| fail(full_message(&e)))?;
    Ok((stored, by_type))
}

/// Action names in the order the schema texts declare them (Cedar's schema keeps no
/// order): the names after each `action` keyword, outside comments and strings.
fn declared_actions<'a>(texts: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut order = HashMap::new();
    for text in texts {
        let tokens = schema_tokens(text);
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            i += 1;
            if token != "action" {
                continue;
            }
            while let Some(name) = tokens.get(i) {
                let name = match name.strip_prefix('"') {
                    Some(quoted) => quoted.to_owned(),
                    None if name.chars().all(|c| c.is_alphanumeric() || c == '_') => name.clone(),
                    None => break,
                };
                if name == "appliesTo" || name == "in" {
                    break;
                }
                let next = order.len();
                order.entry(name).or_insert(next);
                i += 1;
                if tokens.get(i).map(String::as_str) != Some(",") {
                    break;
                }
                i += 1;
            }
        }
    }
    order
}

/// Identifiers, `"strings"` (kept with their opening quote) and single punctuation.
fn schema_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if c == '"' {
            let mut s = String::from('"');
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            s.push(escaped);
                        }
                    }
                    '"' => break,
                    c => s.push(c),
                }
            }
            tokens.push(s);
        } else if c.is_alphanumeric() || c == '_' {
            let mut s = String::from(c);
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' {
                    s.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(s);
        } else {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// Whether any of Mandate's own actions is in a group or is one.
fn mandate_action_groups(actions: &Entities) -> bool {
    actions.iter().any(|action| {
        let uid = action.uid();
        let ours = uid.type_name().to_string().starts_with("Mandate::");
        let grouped = actions
            .ancestors(&uid)
            .is_some_and(|mut a| a.next().is_some())
            || actions
                .iter()
                .any(|other| actions.is_ancestor_of(&uid, &other.uid()));
        ours && grouped
    })
}

fn digest_of(source: &PolicySource) -> String {
    let mut hasher = Sha256::new();
    let files = source
        .schemas
        .iter()
        .chain(&source.policies)
        .chain(source.entities.as_ref());
    for file in files {
        for part in [file.name.as_bytes(), file.text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn first_offset(diagnostic: &dyn Diagnostic) -> Option<usize> {
    diagnostic.labels()?.next().map(|label| label.offset())
}

/// A diagnostic's message with its causes and help, on one line.
pub(crate) fn full_message(diagnostic: &dyn Diagnostic) -> String {
    let mut message = diagnostic.to_string();
    let mut source = std::error::Error::source(diagnostic);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    message
}

fn located(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> Problem {
    let problem = Problem::in_file(file, full_message(diagnostic));
    match first_offset(diagnostic) {
        Some(offset) => problem.at(text, offset),
        None => problem,
    }
}

fn policy_problem(
    files: &HashMap<PolicyId, (String, String)>,
    id: &PolicyId,
    message: String,
    offset: Option<usize>,
) -> Problem {
    let (file, text) = files
        .get(id)
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .unwrap_or(("<set>", ""));
    let problem = Problem {
        policy: Some(id.to_string()),
        ..Problem::in_file(file, message)
    };
    match offset {
        Some(offset) => problem.at(text, offset),
        None => problem,
    }
}
