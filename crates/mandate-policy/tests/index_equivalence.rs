#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

//! The index never changes a decision: generated policy sets (every kind of scope
//! constraint, action groups, entity hierarchies, conditions that hold, fail or error)
//! and generated requests, decided indexed and unindexed, must agree exactly —
//! decision, determining policies, reason, remedy and errors.

use mandate_policy::{
    AccessRequest, ActionRef, CompiledSet, Lookup, PolicySource, SourceFile, Target,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SCHEMA: &str = r#"
entity Group;
entity User in [Group] = { level: Long };
entity Folder;
entity Doc in [Folder] = { level: Long, name: String };
type Ctx = { n: Long };
action all;
action read, write in [all] appliesTo { principal: [User], resource: [Doc], context: Ctx };
action admin appliesTo { principal: [User], resource: [Doc], context: Ctx };
"#;

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_owned()),
        (0..4u8).prop_map(|i| format!("principal == User::\"u{i}\"")),
        (0..3u8).prop_map(|i| format!("principal in Group::\"g{i}\"")),
        Just("principal is User".to_owned()),
        (0..3u8).prop_map(|i| format!("principal is User in Group::\"g{i}\"")),
    ]
}

fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_owned()),
        Just("action == Action::\"read\"".to_owned()),
        Just("action == Action::\"admin\"".to_owned()),
        Just("action in [Action::\"read\", Action::\"write\"]".to_owned()),
        Just("action in Action::\"all\"".to_owned()),
        Just("action in [Action::\"all\", Action::\"admin\"]".to_owned()),
    ]
}

fn resource() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("resource".to_owned()),
        (0..4u8).prop_map(|i| format!("resource == Doc::\"d{i}\"")),
        (0..3u8).prop_map(|i| format!("resource in Folder::\"f{i}\"")),
        Just("resource is Doc".to_owned()),
        (0..3u8).prop_map(|i| format!("resource is Doc in Folder::\"f{i}\"")),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0..6i64).prop_map(|k| format!(" when {{ context has n && context.n > {k} }}")),
        (0..4i64).prop_map(|k| format!(" when {{ resource has level && resource.level <= {k} }}")),
        (0..4i64)
            .prop_map(|k| format!(" unless {{ principal has level && principal.level >= {k} }}")),
        // Overflows (an evaluation error) whenever n > 1.
        Just(" when { context has n && context.n * 4611686018427387904 > 1 }".to_owned()),
        // Pinned by the resource's name (the index files these by name) …
        (0..3u8).prop_map(|i| format!(" when {{ resource.name == \"n{i}\" }}")),
        (0..3u8).prop_map(|i| format!(" when {{ \"n{i}\" == resource.name && context has n && context.n * 4611686018427387904 > 1 }}")),
        // … and not pinned: the name test is not what Cedar evaluates first.
        (0..3u8).prop_map(|i| format!(" unless {{ resource.name == \"n{i}\" }}")),
        (0..3u8).prop_map(|i| format!(" when {{ context has n && context.n * 4611686018427387904 > 1 && resource.name == \"n{i}\" }}")),
    ]
}

fn policy() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        principal(),
        action(),
        resource(),
        condition(),
        prop::option::of(0..3u8),
    )
        .prop_map(|(permit, p, a, r, c, remedy)| {
            let effect = if permit { "permit" } else { "forbid" };
            // `resource.name` typechecks only for actions on documents.
            let a =
                if c.contains("resource.name") && !a.contains("\"read\"") && !a.contains("\"all\"")
                {
                    "action in Action::\"all\"".to_owned()
                } else {
                    a
                };
            let annotation = match (permit, remedy) {
                (false, Some(0)) => "@remedy(\"approval\") ",
                (false, Some(1)) => "@remedy(\"recommend\") ",
                _ => "",
            };
            format!("{annotation}{effect} ({p}, {a}, {r}){c};")
        })
}

fn entities(user_groups: &[u8], doc_folders: &[u8], levels: &[i64]) -> String {
    let mut all = Vec::new();
    for g in 0..3 {
        all.push(json!({ "uid": { "type": "Group", "id": format!("g{g}") }, "attrs": {}, "parents": [] }));
        all.push(json!({ "uid": { "type": "Folder", "id": format!("f{g}") }, "attrs": {}, "parents": [] }));
    }
    for (i, g) in user_groups.iter().enumerate() {
        let parents: Vec<Value> = (0..3u8)
            .filter(|b| g & (1 << b) != 0)
            .map(|b| json!({ "type": "Group", "id": format!("g{b}") }))
            .collect();
        let level = levels.get(i).copied().unwrap_or(0);
        all.push(json!({ "uid": { "type": "User", "id": format!("u{i}") }, "attrs": { "level": level }, "parents": parents }));
    }
    for (i, f) in doc_folders.iter().enumerate() {
        let parents: Vec<Value> = (0..3u8)
            .filter(|b| f & (1 << b) != 0)
            .map(|b| json!({ "type": "Folder", "id": format!("f{b}") }))
            .collect();
        let level = levels.get(i + 4).copied().unwrap_or(0);
        let name = format!("n{}", i % 3);
        all.push(json!({ "uid": { "type": "Doc", "id": format!("d{i}") }, "attrs": { "level": level, "name": name }, "parents": parents }));
    }
    Value::Array(all).to_string()
}

fn target(kind: &str, id: String) -> Target {
    Target {
        kind: Some(kind.into()),
        id: Some(id),
        properties: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn indexing_never_changes_a_decision(
        policies in prop::collection::vec(policy(), 1..40),
        user_groups in prop::collection::vec(0..8u8, 4),
        doc_folders in prop::collection::vec(0..8u8, 4),
        levels in prop::collection::vec(0..4i64, 8),
        requests in prop::collection::vec((0..5u8, 0..3u8, 0..5u8, 0..4i64), 12),
    ) {
        let source = PolicySource {
            policies: vec![SourceFile { name: "gen.cedar".into(), text: policies.join("\n") }],
            schemas: vec![SourceFile { name: "gen.cedarschema".into(), text: SCHEMA.into() }],
            entities: Some(SourceFile { name: "entities.json".into(), text: entities(&user_groups, &doc_folders, &levels) }),
        };
        let set = CompiledSet::compile(source).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (user, action, doc, n) in requests {
            let mut context = Map::new();
            context.insert("n".into(), json!(n));
            // u4 / d4 are not stored: no parents, no attributes.
            let request = AccessRequest {
                subject: Some(target("User", format!("u{user}"))),
                action: Some(ActionRef { name: Some(["read", "write", "admin"][usize::from(action)].into()), properties: None }),
                resource: Some(target("Doc", format!("d{doc}"))),
                context: Some(context),
            };
            let indexed = set.decide_access_with(&request, Lookup::Indexed);
            let unindexed = set.decide_access_with(&request, Lookup::Unindexed);
            prop_assert_eq!(indexed, unindexed);
        }
    }
}
