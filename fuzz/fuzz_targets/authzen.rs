//! An AuthZEN request body (OpenID AuthZEN Authorization API 1.0) from an API caller:
//! read as the server reads it (`serde_json`, what axum's `Json` uses), parsed by the
//! production request parsers, then decided against the example Cedar worlds of
//! `examples/authzen/`, compiled once. Never a panic; and a decision does not depend on
//! whether the policy index was used (indexed and unindexed lookups agree).
//!
//! Input: `selector, body`. selector bits 0-2: evaluation, evaluations, search/subject,
//! search/resource, search/action; bits 3-4: the world (todo, gateway, records, search).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_policy::{
    CompiledSet, Lookup, PolicySource, SearchKind, SourceFile, parse_evaluation, parse_evaluations,
    parse_search,
};
use serde_json::Value;

macro_rules! world {
    ($name:literal) => {
        (
            include_str!(concat!("../../examples/authzen/", $name, "/policies.cedar")),
            include_str!(concat!(
                "../../examples/authzen/",
                $name,
                "/schema.cedarschema"
            )),
            include_str!(concat!("../../examples/authzen/", $name, "/entities.json")),
        )
    };
}

fn worlds() -> &'static [CompiledSet] {
    static WORLDS: OnceLock<Vec<CompiledSet>> = OnceLock::new();
    WORLDS.get_or_init(|| {
        [
            world!("todo"),
            world!("gateway"),
            world!("records"),
            world!("search"),
        ]
        .into_iter()
        .map(|(policies, schema, entities)| {
            let file = |name: &str, text: &str| SourceFile {
                name: name.into(),
                text: text.into(),
            };
            let source = PolicySource {
                policies: vec![file("policies.cedar", policies)],
                schemas: vec![file("schema.cedarschema", schema)],
                entities: Some(file("entities.json", entities)),
            };
            match CompiledSet::compile(source) {
                Ok(set) => set,
                Err(e) => panic!("an example world does not compile: {e}"),
            }
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let worlds = worlds();
    let Some(set) = worlds.get(usize::from(selector >> 3) % worlds.len()) else {
        return;
    };
    match selector & 7 {
        0 => {
            if let Ok(request) = parse_evaluation(&body) {
                let indexed = set.decide_access_with(&request, Lookup::Indexed);
                let unindexed = set.decide_access_with(&request, Lookup::Unindexed);
                assert_eq!(
                    indexed.allowed, unindexed.allowed,
                    "the index changed a decision"
                );
            }
        }
        1 => {
            if let Ok(batch) = parse_evaluations(&body) {
                let _ = set.decide_batch(&batch);
            }
        }
        k => {
            let kind = match k {
                2 => SearchKind::Subject,
                3 => SearchKind::Resource,
                _ => SearchKind::Action,
            };
            if let Ok(search) = parse_search(kind, &body) {
                let _ = set.search(&search);
            }
        }
    }
});
