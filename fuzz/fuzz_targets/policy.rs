//! An operator's policy files as Mandate loads them (`mandate serve --policies DIR`,
//! `PUT /v1/policies`, `mandate policy check`): a `.cedar` file, optionally with a
//! `.cedarschema` fragment, compiled by the production compiler with Mandate's own
//! schema and policies (parse, per-file problems, strict validation, the policy index).
//! Refused with problems or compiled, never a panic.
//!
//! Input: `policies NUL schema` (the schema fragment optional).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_policy::{CompiledSet, PolicySource, SourceFile};

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(2, |b| *b == 0);
    let Some(Ok(policies)) = fields.next().map(std::str::from_utf8) else {
        return;
    };
    let schema = fields.next().and_then(|s| std::str::from_utf8(s).ok());
    let source = PolicySource {
        policies: vec![SourceFile {
            name: "policies.cedar".into(),
            text: policies.into(),
        }],
        schemas: schema
            .map(|text| SourceFile {
                name: "schema.cedarschema".into(),
                text: text.into(),
            })
            .into_iter()
            .collect(),
        entities: None,
    };
    let _ = CompiledSet::compile(source);
});
