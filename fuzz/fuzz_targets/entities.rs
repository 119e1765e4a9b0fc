//! An operator's `entities.json` as Mandate loads it beside the policy files: Cedar's
//! entity JSON, checked by the production compiler against the schema of one of the
//! example worlds of `examples/authzen/` (or Mandate's own schema alone). Refused with
//! problems or loaded, never a panic.
//!
//! Input: `world, entities.json`; world 0-3: todo, gateway, records, search; else none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_policy::{CompiledSet, PolicySource, SourceFile};

const WORLDS: [(&str, &str); 4] = [
    (
        include_str!("../../examples/authzen/todo/policies.cedar"),
        include_str!("../../examples/authzen/todo/schema.cedarschema"),
    ),
    (
        include_str!("../../examples/authzen/gateway/policies.cedar"),
        include_str!("../../examples/authzen/gateway/schema.cedarschema"),
    ),
    (
        include_str!("../../examples/authzen/records/policies.cedar"),
        include_str!("../../examples/authzen/records/schema.cedarschema"),
    ),
    (
        include_str!("../../examples/authzen/search/policies.cedar"),
        include_str!("../../examples/authzen/search/schema.cedarschema"),
    ),
];

fuzz_target!(|data: &[u8]| {
    let Some((&world, entities)) = data.split_first() else {
        return;
    };
    let Ok(entities) = std::str::from_utf8(entities) else {
        return;
    };
    let file = |name: &str, text: &str| SourceFile {
        name: name.into(),
        text: text.into(),
    };
    let mut source = PolicySource {
        entities: Some(file("entities.json", entities)),
        ..PolicySource::default()
    };
    if let Some((policies, schema)) = WORLDS.get(usize::from(world)) {
        source.policies.push(file("policies.cedar", policies));
        source.schemas.push(file("schema.cedarschema", schema));
    }
    let _ = CompiledSet::compile(source);
});
