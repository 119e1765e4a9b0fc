//! OpenID AuthZEN Authorization API 1.0, the protocol-free part: reading requests
//! (with the specification's required fields and types), merging batch defaults,
//! mapping onto Cedar, deciding and searching. HTTP lives in `mandate-server`.
//!
//! Mapping: a subject or resource `{type, id, properties}` is the Cedar entity
//! `type::"id"`; a stored entity of that uid is used with the request's properties
//! overlaid (each replaces the stored attribute of that name). An action `{name}` is
//! `Action::"name"`; its properties reach policies as `context.action_properties`.
//! Request JSON is converted without a schema. Unknown fields are ignored.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use serde_json::{Map, Value};

use crate::compile::CompiledSet;
use crate::engine::{Audience, Decision, Lookup};

/// The most items one `evaluations` request may hold.
pub const MAX_EVALUATIONS: usize = 1_000;
/// The largest page a search returns, and the default.
pub const MAX_PAGE: usize = 1_000;

/// A request the specification calls malformed: HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

/// A subject or resource. `id` is optional only where a search leaves it open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub kind: Option<String>,
    pub id: Option<String>,
    pub properties: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionRef {
    pub name: Option<String>,
    pub properties: Option<Map<String, Value>>,
}

/// One access request, possibly partial (batch defaults, search templates).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessRequest {
    pub subject: Option<Target>,
    pub action: Option<ActionRef>,
    pub resource: Option<Target>,
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// An `evaluations` request: defaults and items, each item merged over the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub defaults: AccessRequest,
    /// `None` when `evaluations` is absent or empty: a single evaluation.
    pub items: Option<Vec<Result<AccessRequest, BadRequest>>>,
    pub semantic: Semantic,
}

/// A search's page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub offset: usize,
    pub limit: usize,
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, BadRequest> {
    value
        .as_object()
        .ok_or_else(|| bad(format!("`{what}` must be a JSON object")))
}

fn string_field(
    map: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<String>, BadRequest> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(bad(format!("`{what}.{key}` must not be empty"))),
        Some(_) => Err(bad(format!("`{what}.{key}` must be a string"))),
    }
}

fn properties(
    map: &Map<String, Value>,
    what: &str,
) -> Result<Option<Map<String, Value>>, BadRequest> {
    match map.get("properties") {
        None => Ok(None),
        Some(Value::Object(p)) => Ok(Some(p.clone())),
        Some(_) => Err(bad(format!("`{what}.properties` must be a JSON object"))),
    }
}

fn parse_target(value: &Value, what: &str) -> Result<Target, BadRequest> {
    let map = object(value, what)?;
    Ok(Target {
        kind: string_field(map, "type", what)?,
        id: string_field(map, "id", what)?,
        properties: properties(map, what)?,
    })
}

fn parse_action(value: &Value) -> Result<ActionRef, BadRequest> {
    let map = object(value, "action")?;
    Ok(ActionRef {
        name: string_field(map, "name", "action")?,
        properties: properties(map, "action")?,
    })
}

/// Reads the four parts where present, checking their JSON types.
fn parse_parts(map: &Map<String, Value>) -> Result<AccessRequest, BadRequest> {
    Ok(AccessRequest {
        subject: map
            .get("subject")
            .map(|v| parse_target(v, "subject"))
            .transpose()?,
        action: map.get("action").map(parse_action).transpose()?,
        resource: map
            .get("resource")
            .map(|v| parse_target(v, "resource"))
            .transpose()?,
        context: match map.get("context") {
            None => None,
            Some(Value::Object(c)) => Some(c.clone()),
            Some(_) => return Err(bad("`context` must be a JSON object")),
        },
    })
}

fn body(value: &Value) -> Result<&Map<String, Value>, BadRequest> {
    value
        .as_object()
        .ok_or_else(|| bad("the request body must be a JSON object"))
}

impl AccessRequest {
    /// Checks that the request is complete for an evaluation.
    pub fn complete(&self) -> Result<(), BadRequest> {
        let subject = self
            .subject
            .as_ref()
            .ok_or_else(|| bad("`subject` is required"))?;
        let action = self
            .action
            .as_ref()
            .ok_or_else(|| bad("`action` is required"))?;
        let resource = self
            .resource
            .as_ref()
            .ok_or_else(|| bad("`resource` is required"))?;
        require(subject.kind.as_ref(), "subject.type")?;
        require(subject.id.as_ref(), "subject.id")?;
        require(action.name.as_ref(), "action.name")?;
        require(resource.kind.as_ref(), "resource.type")?;
        require(resource.id.as_ref(), "resource.id")?;
        Ok(())
    }

    /// `item` over `self`, field by field.
    fn merged(&self, item: &AccessRequest) -> AccessRequest {
        fn target(d: &Option<Target>, i: &Option<Target>) -> Option<Target> {
            match (d, i) {
                (None, None) => None,
                (Some(d), None) => Some(d.clone()),
                (None, Some(i)) => Some(i.clone()),
                (Some(d), Some(i)) => Some(Target {
                    kind: i.kind.clone().or_else(|| d.kind.clone()),
                    id: i.id.clone().or_else(|| d.id.clone()),
                    properties: i.properties.clone().or_else(|| d.properties.clone()),
                }),
            }
        }
        let action = match (&self.action, &item.action) {
            (None, None) => None,
            (Some(d), None) => Some(d.clone()),
            (None, Some(i)) => Some(i.clone()),
            (Some(d), Some(i)) => Some(ActionRef {
                name: i.name.clone().or_else(|| d.name.clone()),
                properties: i.properties.clone().or_else(|| d.properties.clone()),
            }),
        };
        AccessRequest {
            subject: target(&self.subject, &item.subject),
            action,
            resource: target(&self.resource, &item.resource),
            context: item.context.clone().or_else(|| self.context.clone()),
        }
    }
}

fn require(value: Option<&String>, field: &str) -> Result<(), BadRequest> {
    value
        .map(|_| ())
        .ok_or_else(|| bad(format!("`{field}` is required")))
}

/// `POST /access/v1/evaluation`.
pub fn parse_evaluation(value: &Value) -> Result<AccessRequest, BadRequest> {
    let request = parse_parts(body(value)?)?;
    request.complete()?;
    Ok(request)
}

/// `POST /access/v1/evaluations`. An item that is malformed or incomplete after merging
/// is an error of that item only.
pub fn parse_evaluations(value: &Value) -> Result<Batch, BadRequest> {
    let map = body(value)?;
    let defaults = parse_parts(map)?;
    let semantic = match map.get("options") {
        None => Semantic::ExecuteAll,
        Some(Value::Object(options)) => match options.get("evaluations_semantic") {
            None => Semantic::ExecuteAll,
            Some(Value::String(s)) => match s.as_str() {
                "execute_all" => Semantic::ExecuteAll,
                "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
                "permit_on_first_permit" => Semantic::PermitOnFirstPermit,
                other => {
                    return Err(bad(format!(
                        "unknown `options.evaluations_semantic` `{other}`; expected execute_all, deny_on_first_deny or permit_on_first_permit"
                    )));
                }
            },
            Some(_) => return Err(bad("`options.evaluations_semantic` must be a string")),
        },
        Some(_) => return Err(bad("`options` must be a JSON object")),
    };
    let items = match map.get("evaluations") {
        None => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => {
            if items.len() > MAX_EVALUATIONS {
                return Err(bad(format!(
                    "`evaluations` holds at most {MAX_EVALUATIONS} items"
                )));
            }
            Some(
                items
                    .iter()
                    .map(|item| {
                        let item = parse_parts(body(item).map_err(|_| {
                            bad("each item of `evaluations` must be a JSON object")
                        })?)?;
                        let merged = defaults.merged(&item);
                        merged.complete()?;
                        Ok(merged)
                    })
                    .collect(),
            )
        }
        Some(_) => return Err(bad("`evaluations` must be an array")),
    };
    if items.is_none() {
        defaults.complete()?;
    }
    Ok(Batch {
        defaults,
        items,
        semantic,
    })
}

/// What a search leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    Subject,
    Resource,
    Action,
}

/// A search request: the open part carries a type (subject and resource searches) and
/// any id given for it is ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub kind: SearchKind,
    pub template: AccessRequest,
    pub page: PageRequest,
}

pub fn parse_search(kind: SearchKind, value: &Value) -> Result<Search, BadRequest> {
    let map = body(value)?;
    let mut template = parse_parts(map)?;
    let subject = template
        .subject
        .as_mut()
        .ok_or_else(|| bad("`subject` is required"))?;
    require(subject.kind.as_ref(), "subject.type")?;
    let resource = template
        .resource
        .as_mut()
        .ok_or_else(|| bad("`resource` is required"))?;
    require(resource.kind.as_ref(), "resource.type")?;
    match kind {
        SearchKind::Subject => {
            if let Some(s) = template.subject.as_mut() {
                s.id = None;
            }
            let resource = template.resource.as_ref();
            require(resource.and_then(|r| r.id.as_ref()), "resource.id")?;
            let action = template
                .action
                .as_ref()
                .ok_or_else(|| bad("`action` is required"))?;
            require(action.name.as_ref(), "action.name")?;
        }
        SearchKind::Resource => {
            if let Some(r) = template.resource.as_mut() {
                r.id = None;
            }
            let subject = template.subject.as_ref();
            require(subject.and_then(|s| s.id.as_ref()), "subject.id")?;
            let action = template
                .action
                .as_ref()
                .ok_or_else(|| bad("`action` is required"))?;
            require(action.name.as_ref(), "action.name")?;
        }
        SearchKind::Action => {
            template.action = None;
            let subject = template.subject.as_ref();
            require(subject.and_then(|s| s.id.as_ref()), "subject.id")?;
            let resource = template.resource.as_ref();
            require(resource.and_then(|r| r.id.as_ref()), "resource.id")?;
        }
    }
    let page = match map.get("page") {
        None => PageRequest {
            offset: 0,
            limit: MAX_PAGE,
        },
        Some(Value::Object(page)) => {
            let limit = match page.get("limit") {
                None => MAX_PAGE,
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
                    _ => return Err(bad("`page.limit` must be a positive integer")),
                },
            };
            let offset = match page.get("token") {
                None => 0,
                Some(Value::String(t)) if t.is_empty() => 0,
                Some(Value::String(t)) => decode_token(t)?,
                Some(_) => return Err(bad("`page.token` must be a string")),
            };
            PageRequest { offset, limit }
        }
        Some(_) => return Err(bad("`page` must be a JSON object")),
    };
    Ok(Search {
        kind,
        template,
        page,
    })
}

/// The Cedar entity a subject or resource names.
fn uid_of(target: &Target, what: &str) -> Result<EntityUid, String> {
    let kind = target.kind.as_deref().unwrap_or_default();
    let ty: EntityTypeName = kind
        .parse()
        .map_err(|_| format!("`{what}.type` `{kind}` is not a type any policy can name"))?;
    Ok(EntityUid::from_type_name_and_id(
        ty,
        EntityId::new(target.id.as_deref().unwrap_or_default()),
    ))
}

/// Page tokens are opaque to callers; here they are the next offset.
fn encode_token(offset: usize) -> String {
    format!("o{offset}")
}

fn decode_token(token: &str) -> Result<usize, BadRequest> {
    token
        .strip_prefix('o')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("`page.token` is not a token this server issued"))
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub results: Vec<Value>,
    /// Empty on the last page.
    pub next_token: String,
    pub total: usize,
}

impl CompiledSet {
    /// Decides one complete AuthZEN request over the operator's policies. A request that
    /// cannot be put to Cedar (a type that is no Cedar name, properties or context that
    /// are no Cedar values) is denied with the reason.
    pub fn decide_access(&self, request: &AccessRequest) -> Decision {
        self.decide_access_with(request, Lookup::Indexed)
    }

    pub fn decide_access_with(&self, request: &AccessRequest, lookup: Lookup) -> Decision {
        match self.access_request(request) {
            Ok((request, entities)) => {
                self.decide_request(Audience::Open, lookup, &request, &entities)
            }
            Err(reason) => Decision::refused(reason),
        }
    }

    /// The Cedar request, and the entities to decide over: the stored ones as they are
    /// unless the request overlays properties (only then are they copied).
    fn access_request(
        &self,
        r: &AccessRequest,
    ) -> Result<(cedar_policy::Request, Cow<'_, Entities>), String> {
        let (Some(subject), Some(action), Some(resource)) = (&r.subject, &r.action, &r.resource)
        else {
            return Err("the request is incomplete".into());
        };
        let p_uid = uid_of(subject, "subject")?;
        let r_uid = uid_of(resource, "resource")?;
        let mut overlays = Vec::new();
        if p_uid == r_uid {
            // One entity in both roles: the resource's properties over the subject's.
            let mut merged = subject.properties.clone();
            if let Some(props) = &resource.properties {
                merged
                    .get_or_insert_with(Default::default)
                    .extend(props.clone());
            }
            overlays.extend(self.overlay(&p_uid, merged.as_ref(), "resource")?);
        } else {
            overlays.extend(self.overlay(&p_uid, subject.properties.as_ref(), "subject")?);
            overlays.extend(self.overlay(&r_uid, resource.properties.as_ref(), "resource")?);
        }
        let name = action.name.as_deref().unwrap_or_default();
        let action_uid = EntityUid::from_type_name_and_id(
            "Action".parse().map_err(|e| format!("{e}"))?,
            EntityId::new(name),
        );
        let mut context = r.context.clone().unwrap_or_default();
        if let Some(props) = action.properties.as_ref().filter(|p| !p.is_empty()) {
            context.insert("action_properties".into(), Value::Object(props.clone()));
        }
        let context = match plain_record(&context).map(Context::from_pairs) {
            Some(Ok(context)) => context,
            _ => Context::from_json_value(Value::Object(context), None)
                .map_err(|e| format!("the context is not valid: {e}"))?,
        };
        let entities = if overlays.is_empty() {
            Cow::Borrowed(&self.stored)
        } else {
            Cow::Owned(
                self.stored
                    .clone()
                    .upsert_entities(overlays, None)
                    .map_err(|e| format!("the entities are not valid: {e}"))?,
            )
        };
        let request = cedar_policy::Request::new(p_uid, action_uid, r_uid, context, None)
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The stored entity with `properties` overlaid (each replaces the stored attribute
    /// of that name), or a new one with just them; `None` without properties (an entity
    /// that is not stored then simply has no attributes and no parents).
    fn overlay(
        &self,
        uid: &EntityUid,
        properties: Option<&Map<String, Value>>,
        what: &str,
    ) -> Result<Option<Entity>, String> {
        let Some(props) = properties else {
            return Ok(None);
        };
        let invalid = |e: &dyn std::fmt::Display| format!("`{what}.properties` are not valid: {e}");
        // Plain JSON (no `__entity` / `__extn` escapes, integers only) is made into
        // Cedar values directly; anything else is read by Cedar's own JSON parser.
        let given: HashMap<String, RestrictedExpression> = match plain_record(props) {
            Some(given) => given.into_iter().collect(),
            None => {
                let parsed = Entity::from_json_value(
                    serde_json::json!({
                        "uid": { "type": uid.type_name().to_string(), "id": uid.id().unescaped() },
                        "attrs": props,
                        "parents": [],
                    }),
                    None,
                )
                .map_err(|e| invalid(&e))?;
                parsed.into_inner().1
            }
        };
        let (attrs, parents) = match self.stored.get(uid) {
            None => (given, HashSet::new()),
            Some(stored) if stored.tags().next().is_some() => {
                // Tags travel only through JSON: the whole entity goes that way.
                return self
                    .overlay_by_json(stored, props)
                    .map(Some)
                    .map_err(|e| invalid(&e));
            }
            Some(stored) => {
                // The stored attributes (values already, never parsed again) with the
                // request's over them; the stored parents.
                let (_, mut attrs, parents) = stored.clone().into_inner();
                attrs.extend(given);
                (attrs, parents)
            }
        };
        Entity::new(uid.clone(), attrs, parents)
            .map(Some)
            .map_err(|e| invalid(&e))
    }

    /// `stored` with `props` overlaid, through its JSON form: what an entity with tags
    /// takes (and what the faster path above is tested against).
    fn overlay_by_json(
        &self,
        stored: &Entity,
        props: &Map<String, Value>,
    ) -> Result<Entity, String> {
        let mut json = stored.to_json_value().map_err(|e| e.to_string())?;
        if let Some(attrs) = json.get_mut("attrs").and_then(Value::as_object_mut) {
            for (k, v) in props {
                attrs.insert(k.clone(), v.clone());
            }
        }
        Entity::from_json_value(json, None).map_err(|e| e.to_string())
    }

    /// Runs a batch, honouring its semantic (a short-circuit truncates the results).
    /// Each item is a decision or that item's error.
    pub fn decide_batch(&self, batch: &Batch) -> Vec<Result<Decision, BadRequest>> {
        let Some(items) = &batch.items else {
            return vec![Ok(self.decide_access(&batch.defaults))];
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let result = item
                .as_ref()
                .map(|r| self.decide_access(r))
                .map_err(Clone::clone);
            let allowed = matches!(&result, Ok(d) if d.allowed);
            out.push(result);
            let stop = match batch.semantic {
                Semantic::ExecuteAll => false,
                Semantic::DenyOnFirstDeny => !allowed,
                Semantic::PermitOnFirstPermit => allowed,
            };
            if stop {
                break;
            }
        }
        out
    }

    /// Evaluates every candidate the search leaves open and pages the allowed ones.
    /// Subjects and resources: the stored entities of the requested type, by id.
    /// Actions: the schema's actions that apply to the subject's and resource's types,
    /// in the order the operator's schema declares them.
    pub fn search(&self, search: &Search) -> SearchPage {
        let mut allowed = Vec::new();
        let template = &search.template;
        match search.kind {
            SearchKind::Subject | SearchKind::Resource => {
                let open = match search.kind {
                    SearchKind::Subject => template.subject.as_ref(),
                    _ => template.resource.as_ref(),
                };
                let kind = open.and_then(|t| t.kind.clone()).unwrap_or_default();
                for uid in self
                    .by_type
                    .get(&kind)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let id = uid.id().unescaped().to_owned();
                    let mut request = template.clone();
                    let slot = match search.kind {
                        SearchKind::Subject => &mut request.subject,
                        _ => &mut request.resource,
                    };
                    if let Some(target) = slot.as_mut() {
                        target.id = Some(id.clone());
                        // The properties of a search template describe the fixed side only.
                        target.properties = None;
                    }
                    if self.decide_access(&request).allowed {
                        allowed.push(serde_json::json!({ "type": kind, "id": id }));
                    }
                }
            }
            SearchKind::Action => {
                let kind_of = |t: &Option<Target>| {
                    t.as_ref().and_then(|t| t.kind.clone()).unwrap_or_default()
                };
                let actions =
                    self.actions_for(&kind_of(&template.subject), &kind_of(&template.resource));
                for action in actions {
                    let name = action.id().unescaped().to_owned();
                    let mut request = template.clone();
                    request.action = Some(ActionRef {
                        name: Some(name.clone()),
                        properties: None,
                    });
                    if self.decide_access(&request).allowed {
                        allowed.push(serde_json::json!({ "name": name }));
                    }
                }
            }
        }
        let total = allowed.len();
        let start = search.page.offset.min(total);
        let end = start.saturating_add(search.page.limit).min(total);
        let results = allowed
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let next_token = if end < total {
            encode_token(end)
        } else {
            String::new()
        };
        SearchPage {
            results,
            next_token,
            total,
        }
    }
}

/// A JSON object's members as Cedar values, built directly, when every value is plain
/// JSON that Cedar's JSON parser (without a schema) reads one way only: booleans,
/// strings, 64-bit integers, arrays (sets) and objects (records) of them. `None` for
/// anything else — a member whose name starts with `__` (Cedar's `__entity` / `__extn`
/// escapes), `null`, a number that is not a 64-bit integer — which the caller hands
/// to Cedar's own parser, so that its rules and its errors stay the only ones. (The
/// parser tries the escapes on every object, building an error for each miss: a few
/// per cent of an AuthZEN evaluation.)
fn plain_record(members: &Map<String, Value>) -> Option<Vec<(String, RestrictedExpression)>> {
    members
        .iter()
        .map(|(name, value)| {
            if name.starts_with("__") {
                None
            } else {
                plain_value(value).map(|v| (name.clone(), v))
            }
        })
        .collect()
}

/// One value of [`plain_record`]. The nesting is bounded by serde_json's recursion
/// limit (128) on what it parsed.
fn plain_value(value: &Value) -> Option<RestrictedExpression> {
    match value {
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(items) => items
            .iter()
            .map(plain_value)
            .collect::<Option<Vec<_>>>()
            .map(RestrictedExpression::new_set),
        Value::Object(members) => {
            plain_record(members).and_then(|fields| RestrictedExpression::new_record(fields).ok())
        }
        Value::Null => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::source::{PolicySource, SourceFile};

    fn records() -> CompiledSet {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/authzen/records"
        );
        let read = |name: &str| SourceFile {
            name: name.to_owned(),
            text: std::fs::read_to_string(format!("{dir}/{name}")).unwrap(),
        };
        CompiledSet::compile(PolicySource {
            policies: vec![read("policies.cedar")],
            schemas: vec![read("schema.cedarschema")],
            entities: Some(read("entities.json")),
        })
        .unwrap()
    }

    /// What an entity means to a decision: its attributes and, once put beside the
    /// stored entities, its ancestors.
    fn meaning(set: &CompiledSet, entity: &Entity) -> (Vec<(String, String)>, BTreeSet<String>) {
        let uid = entity.uid();
        let mut attrs: Vec<(String, String)> = entity
            .clone()
            .into_inner()
            .1
            .keys()
            .map(|k| (k.clone(), format!("{:?}", entity.attr(k))))
            .collect();
        attrs.sort();
        let entities = set
            .stored
            .clone()
            .upsert_entities([entity.clone()], None)
            .unwrap();
        let ancestors = entities
            .ancestors(&uid)
            .unwrap()
            .map(ToString::to_string)
            .collect();
        (attrs, ancestors)
    }

    #[test]
    fn overlaying_properties_means_what_the_json_round_trip_meant() {
        let set = records();
        let properties = [
            json!({}),
            json!({ "role": "admin" }),
            json!({ "status": "archived", "extra": 3 }),
            json!({ "owner": { "__entity": { "type": "user", "id": "bob" } } }),
            json!({ "owner": { "type": "user", "id": "bob" } }),
            json!({ "tags": ["a", "b"], "nested": { "x": true, "y": [1, 2] } }),
            json!({ "ip": { "__extn": { "fn": "ip", "arg": "10.0.0.1" } } }),
        ];
        let mut compared = 0;
        for uid in set.stored.iter().map(Entity::uid) {
            let Some(stored) = set.stored.get(&uid) else {
                continue;
            };
            for props in &properties {
                let props = props.as_object().unwrap();
                let fast = set.overlay(&uid, Some(props), "subject").unwrap().unwrap();
                let slow = set.overlay_by_json(stored, props).unwrap();
                assert_eq!(
                    meaning(&set, &fast),
                    meaning(&set, &slow),
                    "{uid} with {props:?}"
                );
                compared += 1;
            }
        }
        assert!(compared >= 30, "{compared}");
        // Bad properties are refused either way.
        let alice: EntityUid = r#"user::"alice""#.parse().unwrap();
        let bad = json!({ "n": 1.5 });
        assert!(set.overlay(&alice, bad.as_object(), "subject").is_err());
        let stored = set.stored.get(&alice).unwrap();
        assert!(
            set.overlay_by_json(stored, bad.as_object().unwrap())
                .is_err()
        );
    }

    /// An entity of `attrs` read by Cedar's JSON parser, as Cedar writes it back.
    fn by_cedar(attrs: &Value) -> Result<Value, String> {
        Entity::from_json_value(
            json!({ "uid": { "type": "t", "id": "x" }, "attrs": attrs, "parents": [] }),
            None,
        )
        .map_err(|e| e.to_string())
        .and_then(|e| e.to_json_value().map_err(|e| e.to_string()))
    }

    /// The same entity with its attributes built by [`plain_record`], if it took them.
    fn by_us(attrs: &Value) -> Option<Value> {
        let fields = plain_record(attrs.as_object()?)?;
        let uid: EntityUid = r#"t::"x""#.parse().unwrap();
        let entity = Entity::new(uid, fields.into_iter().collect(), HashSet::new()).unwrap();
        Some(entity.to_json_value().unwrap())
    }

    fn plain_value_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            Just(Value::Null),
            "[a-z_\\u{e9}\"\\\\]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("(__)?[a-z_]{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// What `plain_record` builds is what Cedar's JSON parser would have read, and
        /// it leaves to that parser exactly what it could read otherwise or refuse.
        #[test]
        fn plain_values_mean_what_cedar_s_json_meant(
            attrs in proptest::collection::btree_map("(__)?[a-z]{0,4}", plain_value_strategy(), 0..5)
        ) {
            let attrs = Value::Object(attrs.into_iter().collect());
            let cedar = by_cedar(&attrs);
            match by_us(&attrs) {
                Some(ours) => proptest::prop_assert_eq!(Ok(ours), cedar),
                // Left to Cedar only for an escape, a null or a number that is not
                // a 64-bit integer somewhere inside.
                None => proptest::prop_assert!(needs_cedar(&attrs), "{attrs}"),
            }
        }
    }

    /// Whether a value holds what `plain_record` must leave to Cedar's parser.
    fn needs_cedar(value: &Value) -> bool {
        match value {
            Value::Null => true,
            Value::Number(n) => n.as_i64().is_none(),
            Value::Bool(_) | Value::String(_) => false,
            Value::Array(items) => items.iter().any(needs_cedar),
            Value::Object(m) => m.iter().any(|(k, v)| k.starts_with("__") || needs_cedar(v)),
        }
    }

    #[test]
    fn plain_values_and_what_is_left_to_cedar() {
        for (attrs, plain) in [
            (
                json!({ "a": true, "b": "x", "c": i64::MIN, "d": i64::MAX }),
                true,
            ),
            (
                json!({ "s": [1, "two", [false]], "r": { "k": { "deep": [] } } }),
                true,
            ),
            (json!({ "e": {} , "u": "\u{0}é\"" }), true),
            (json!({ "big": u64::MAX }), false),
            (json!({ "f": 1.5 }), false),
            (json!({ "n": null }), false),
            (
                json!({ "o": { "__entity": { "type": "t", "id": "y" } } }),
                false,
            ),
            (
                json!({ "o": { "__extn": { "fn": "ip", "arg": "10.0.0.1" } } }),
                false,
            ),
            (json!({ "__entity": { "type": "t", "id": "y" } }), false),
            (json!({ "deep": [[[{ "x": [{ "__extn": 1 }] }]]] }), false),
        ] {
            let ours = by_us(&attrs);
            assert_eq!(ours.is_some(), plain, "{attrs}");
            if let Some(ours) = ours {
                assert_eq!(Ok(ours), by_cedar(&attrs), "{attrs}");
            }
        }
        // A context too: the same values, the same request meaning.
        let context = json!({ "a": 1, "b": ["x"], "c": { "d": true } });
        let pairs = plain_record(context.as_object().unwrap()).unwrap();
        let ours = Context::from_pairs(pairs).unwrap();
        let cedar = Context::from_json_value(context, None).unwrap();
        assert_eq!(format!("{ours:?}"), format!("{cedar:?}"));
    }
}
