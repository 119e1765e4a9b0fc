#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

//! Compiling policy sets: the built-ins validate, bad sets are refused whole with the
//! file, line and column of every problem, and the running set survives.

use mandate_policy::{
    AccessRequest, ActionRef, CompiledSet, Pdp, PolicySource, SourceFile, Target,
};

fn file(name: &str, text: &str) -> SourceFile {
    SourceFile {
        name: name.into(),
        text: text.into(),
    }
}

const DOC_SCHEMA: &str = r#"
entity User = { role: String };
entity Doc = { owner: User, status: String };
action read, write appliesTo { principal: [User], resource: [Doc] };
"#;

fn docs(policies: &str) -> PolicySource {
    PolicySource {
        policies: vec![file("docs.cedar", policies)],
        schemas: vec![file("docs.cedarschema", DOC_SCHEMA)],
        entities: Some(file(
            "entities.json",
            r#"[{"uid":{"type":"User","id":"alice"},"attrs":{"role":"admin"},"parents":[]},
                {"uid":{"type":"User","id":"bob"},"attrs":{"role":"viewer"},"parents":[]},
                {"uid":{"type":"Doc","id":"d1"},"attrs":{"owner":{"__entity":{"type":"User","id":"bob"}},"status":"open"},"parents":[]}]"#,
        )),
    }
}

fn ask(set: &CompiledSet, user: &str, action: &str, doc: &str) -> bool {
    decide(set, user, action, doc, serde_json::Value::Null).allowed
}

fn decide(
    set: &CompiledSet,
    user: &str,
    action: &str,
    doc: &str,
    context: serde_json::Value,
) -> mandate_policy::Decision {
    let target = |kind: &str, id: &str| Target {
        kind: Some(kind.into()),
        id: Some(id.into()),
        properties: None,
    };
    set.decide_access(&AccessRequest {
        subject: Some(target("User", user)),
        action: Some(ActionRef {
            name: Some(action.into()),
            properties: None,
        }),
        resource: Some(target("Doc", doc)),
        context: context.as_object().cloned(),
    })
}

#[test]
fn the_builtin_set_compiles() {
    let set = CompiledSet::builtin().unwrap();
    assert_eq!(set.operator_policy_count(), 0);
    let ids: Vec<_> = set.policies().iter().map(|p| p.id.clone()).collect();
    assert!(ids.contains(&"mandate.permit".to_string()), "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("mandate.")));
}

#[test]
fn an_operator_set_decides_over_its_own_types() {
    let set = CompiledSet::compile(docs(
        r#"@id("admins-read") permit (principal, action == Action::"read", resource) when { principal.role == "admin" };
           permit (principal, action == Action::"read", resource) when { resource.owner == principal };"#,
    ))
    .unwrap();
    assert!(ask(&set, "alice", "read", "d1"));
    assert!(ask(&set, "bob", "read", "d1"));
    assert!(!ask(&set, "bob", "write", "d1"));
    let ids: Vec<_> = set.policies().iter().map(|p| p.id.clone()).collect();
    assert!(ids.contains(&"admins-read".to_string()));
    assert!(ids.contains(&"docs.cedar#2".to_string()), "{ids:?}");
}

#[test]
fn a_syntax_error_is_located() {
    let err = CompiledSet::compile(docs(
        "permit (principal, action, resource)\nwhen { principal.role == };",
    ))
    .unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.file, "docs.cedar");
    assert_eq!(p.line, Some(2), "{err}");
    assert!(p.column.is_some(), "{err}");
}

#[test]
fn a_type_error_is_located_and_names_the_policy() {
    let err = CompiledSet::compile(docs(
        "// first line\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.rank > 3 };",
    ))
    .unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.file, "docs.cedar", "{err}");
    assert_eq!(p.policy.as_deref(), Some("typo"));
    assert_eq!(p.line, Some(4), "{err}");
    assert!(err.to_string().starts_with("docs.cedar:4:"), "{err}");
}

#[test]
fn unknown_types_and_actions_are_refused() {
    let err = CompiledSet::compile(docs(
        r#"permit (principal == Admin::"x", action, resource);"#,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("Admin"), "{err}");
    let err = CompiledSet::compile(docs(
        r#"permit (principal, action == Action::"delete", resource);"#,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("delete"), "{err}");
}

#[test]
fn reserved_ids_duplicates_templates_and_bad_remedies_are_refused() {
    for (text, needle) in [
        (
            r#"@id("mandate.permit") permit (principal, action, resource);"#,
            "reserved",
        ),
        (
            r#"@id("a") permit (principal, action, resource); @id("a") forbid (principal, action, resource);"#,
            "also used",
        ),
        (
            r#"permit (principal == ?principal, action, resource);"#,
            "templates",
        ),
        (
            r#"@remedy("pray") forbid (principal, action, resource);"#,
            "unknown @remedy",
        ),
        (
            r#"@remedy("approval") permit (principal, action, resource);"#,
            "only a `forbid`",
        ),
    ] {
        let err = CompiledSet::compile(docs(text)).unwrap_err();
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn bad_schemas_and_entities_are_located() {
    let mut source = docs("");
    source.schemas[0].text = "entity User = {\n role: Strin };".into();
    let err = CompiledSet::compile(source).unwrap_err();
    assert_eq!(err.problems[0].file, "docs.cedarschema", "{err}");

    let mut source = docs("");
    source.entities = Some(file(
        "entities.json",
        r#"[{"uid":{"type":"User","id":"x"},"attrs":{"role":7},"parents":[]}]"#,
    ));
    let err = CompiledSet::compile(source).unwrap_err();
    assert_eq!(err.problems[0].file, "entities.json", "{err}");

    let mut source = docs("");
    source.entities = Some(file("entities.json", "{ not json"));
    assert!(CompiledSet::compile(source).is_err());
}

#[test]
fn a_bad_set_never_replaces_the_running_one() {
    let pdp = Pdp::new(
        CompiledSet::compile(docs(
            r#"permit (principal, action == Action::"read", resource);"#,
        ))
        .unwrap(),
    );
    let before = pdp.current().digest().to_owned();
    assert!(
        pdp.replace(docs("permit (principal, action, resource"))
            .is_err()
    );
    assert_eq!(pdp.current().digest(), before);
    assert!(ask(&pdp.current(), "bob", "read", "d1"));
    pdp.replace(docs(r#"forbid (principal, action, resource);"#))
        .unwrap();
    assert_ne!(pdp.current().digest(), before);
    assert!(!ask(&pdp.current(), "bob", "read", "d1"));
}

fn ask_with(set: &CompiledSet, user: &str, context: serde_json::Value) -> mandate_policy::Decision {
    decide(set, user, "read", "d1", context)
}

#[test]
fn an_invalid_context_denies() {
    let set = CompiledSet::compile(docs(
        r#"permit (principal, action == Action::"read", resource);"#,
    ))
    .unwrap();
    assert!(ask_with(&set, "bob", serde_json::json!({ "ok": 1 })).allowed);
    for bad in [
        serde_json::json!({ "ratio": 1.5 }),
        serde_json::json!({ "nothing": null }),
        serde_json::json!({ "list": [1, 2.5] }),
    ] {
        let d = ask_with(&set, "bob", bad.clone());
        assert!(!d.allowed, "{bad}: {d:?}");
        assert!(d.reason.contains("context"), "{bad}: {d:?}");
    }
}

#[test]
fn a_missing_entity_denies() {
    // `mallory` is not stored: she has no role, so the permit cannot hold, and the
    // forbid that reads her attribute without `has` fails — which denies too.
    let set = CompiledSet::compile(docs(
        r#"@id("admins") permit (principal, action == Action::"read", resource) when { principal.role == "admin" };
           @id("viewers-out") forbid (principal, action == Action::"read", resource) when { principal.role == "viewer" };"#,
    ))
    .unwrap();
    assert!(ask(&set, "alice", "read", "d1"));
    let d = ask_with(&set, "mallory", serde_json::json!({}));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.policies, ["viewers-out"], "{d:?}");
    assert!(!d.errors.is_empty());
}

#[test]
fn a_type_no_policy_can_name_denies() {
    let set = CompiledSet::compile(docs(r#"permit (principal, action, resource);"#)).unwrap();
    let d = set.decide_access(&AccessRequest {
        subject: Some(Target {
            kind: Some("not a type!".into()),
            id: Some("x".into()),
            properties: None,
        }),
        action: Some(ActionRef {
            name: Some("read".into()),
            properties: None,
        }),
        resource: Some(Target {
            kind: Some("Doc".into()),
            id: Some("d1".into()),
            properties: None,
        }),
        context: None,
    });
    assert!(!d.allowed);
    assert!(d.reason.contains("subject.type"), "{d:?}");
}
