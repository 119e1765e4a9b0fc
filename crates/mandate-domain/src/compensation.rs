//! How a call is undone: the operator declares, per tool, the tool that compensates it
//! and where each of the compensating call's arguments comes from — the original
//! call's arguments or result (JSON pointers, RFC 6901), or a fixed value. A tool with
//! no declaration is irreversible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// At most this many arguments in a compensating call.
pub const MAX_COMPENSATION_ARGUMENTS: usize = 64;
/// The longest JSON pointer accepted anywhere in the catalog.
pub const MAX_POINTER_LEN: usize = 256;
/// The largest fixed value (its JSON text), in bytes.
const MAX_FIXED_VALUE: usize = 4096;

/// The tool that undoes a tool's call, and how its arguments are formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Compensation {
    /// The compensating tool, `server.tool` as the gateway names it (the tool itself
    /// is allowed: a transfer is undone by a transfer the other way).
    pub tool: String,
    /// Each argument of the compensating call, by name, and where its value comes from.
    pub arguments: BTreeMap<String, ArgumentSource>,
}

/// Where one argument of a compensating call comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArgumentSource {
    /// The original call's argument at this JSON pointer (`{"argument": "/to"}`).
    Argument(String),
    /// The original call's result at this JSON pointer (`{"result": "/structuredContent/id"}`).
    Result(String),
    /// A fixed value (`{"value": "refund"}`).
    Value(Value),
}

/// Whether `pointer` is a JSON pointer (RFC 6901) naming something inside a document:
/// `/`-separated tokens, `~` only as `~0` or `~1`, no control characters, bounded.
pub fn is_json_pointer(pointer: &str) -> bool {
    if pointer.len() > MAX_POINTER_LEN || !pointer.starts_with('/') {
        return false;
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c.is_control() {
            return false;
        }
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

impl Compensation {
    /// The compensating tool's server and tool names (`bank`, `transfer`).
    pub fn target(&self) -> Option<(&str, &str)> {
        self.tool
            .split_once('.')
            .filter(|(server, tool)| !server.is_empty() && !tool.is_empty())
    }

    /// Checks the declaration's form (not whether the tool exists); the error names
    /// the offending field.
    pub fn check(&self) -> Result<(), String> {
        if self.tool.len() > 129 || self.target().is_none() {
            return Err("`compensation.tool` must name a tool as `server.tool`".into());
        }
        if self.arguments.len() > MAX_COMPENSATION_ARGUMENTS {
            return Err(format!(
                "`compensation.arguments` may hold at most {MAX_COMPENSATION_ARGUMENTS} arguments"
            ));
        }
        for (name, source) in &self.arguments {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(
                    "`compensation.arguments`: a name must be 1 to 128 characters, no control characters"
                        .into(),
                );
            }
            match source {
                ArgumentSource::Argument(p) | ArgumentSource::Result(p) => {
                    if !is_json_pointer(p) {
                        return Err(format!(
                            "`compensation.arguments.{name}` must be a JSON pointer such as `/amount`"
                        ));
                    }
                }
                ArgumentSource::Value(v) => {
                    if v.to_string().len() > MAX_FIXED_VALUE {
                        return Err(format!(
                            "`compensation.arguments.{name}`: a fixed value may be at most {MAX_FIXED_VALUE} bytes"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The compensating call's arguments for a call made with `arguments` that
    /// answered `result`. Every source must be there: a pointer into a missing field
    /// is an error, never a guess.
    pub fn arguments_for(&self, arguments: &Value, result: &Value) -> Result<Value, String> {
        let mut out = Map::new();
        for (name, source) in &self.arguments {
            let value = match source {
                ArgumentSource::Argument(p) => arguments
                    .pointer(p)
                    .ok_or_else(|| format!("the call has no argument at `{p}` (for `{name}`)"))?,
                ArgumentSource::Result(p) => result.pointer(p).ok_or_else(|| {
                    format!("the call's result has nothing at `{p}` (for `{name}`)")
                })?,
                ArgumentSource::Value(v) => v,
            };
            out.insert(name.clone(), value.clone());
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn swap() -> Compensation {
        serde_json::from_value(json!({
            "tool": "bank.transfer",
            "arguments": {
                "from": {"argument": "/to"},
                "to": {"argument": "/from"},
                "amount_cents": {"argument": "/amount_cents"},
                "memo": {"value": "rollback"},
                "of": {"result": "/structuredContent/id"},
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_transfer_is_undone_by_the_transfer_back() {
        let c = swap();
        c.check().unwrap();
        assert_eq!(c.target(), Some(("bank", "transfer")));
        let args = json!({"from": "a", "to": "b", "amount_cents": 250, "extra": 1});
        let result = json!({"structuredContent": {"id": "tx-0001"}});
        assert_eq!(
            c.arguments_for(&args, &result).unwrap(),
            json!({"from": "b", "to": "a", "amount_cents": 250, "memo": "rollback", "of": "tx-0001"})
        );
    }

    #[test]
    fn missing_fields_are_errors_not_guesses() {
        let c = swap();
        let result = json!({"structuredContent": {"id": "tx"}});
        let err = c
            .arguments_for(&json!({"from": "a", "amount_cents": 1}), &result)
            .unwrap_err();
        assert!(err.contains("`/to`"), "{err}");
        let err = c
            .arguments_for(
                &json!({"from": "a", "to": "b", "amount_cents": 1}),
                &json!({}),
            )
            .unwrap_err();
        assert!(err.contains("result"), "{err}");
        // Not an object at all.
        assert!(c.arguments_for(&json!("x"), &result).is_err());
    }

    #[test]
    fn hostile_declarations_are_refused() {
        let bad_pointers = [
            "",
            "amount",
            "/a~2",
            "/a~",
            "/a\u{0}b",
            "/a\nb",
            &"/x".repeat(200),
        ];
        for p in bad_pointers {
            let mut c = swap();
            c.arguments
                .insert("x".into(), ArgumentSource::Argument(p.to_owned()));
            assert!(c.check().is_err(), "{p:?} accepted");
            let mut c = swap();
            c.arguments
                .insert("x".into(), ArgumentSource::Result(p.to_owned()));
            assert!(c.check().is_err(), "{p:?} accepted in a result");
        }
        for tool in [
            "transfer",
            ".transfer",
            "bank.",
            "",
            &format!("a.{}", "b".repeat(200)),
        ] {
            let mut c = swap();
            c.tool = tool.to_owned();
            assert!(c.check().is_err(), "{tool:?} accepted");
        }
        let mut c = swap();
        for i in 0..=MAX_COMPENSATION_ARGUMENTS {
            c.arguments
                .insert(format!("a{i}"), ArgumentSource::Value(json!(i)));
        }
        assert!(c.check().is_err(), "too many arguments accepted");
        let mut c = swap();
        c.arguments
            .insert("big".into(), ArgumentSource::Value(json!("x".repeat(5000))));
        assert!(c.check().is_err(), "a huge value accepted");
        let mut c = swap();
        c.arguments
            .insert(String::new(), ArgumentSource::Value(json!(1)));
        assert!(c.check().is_err(), "an empty name accepted");
        // Unknown fields and unknown sources are refused when parsed.
        for doc in [
            json!({"tool": "a.b", "arguments": {}, "extra": 1}),
            json!({"tool": "a.b", "arguments": {"x": {"header": "/a"}}}),
            json!({"tool": "a.b", "arguments": {"x": {"argument": "/a", "result": "/b"}}}),
            json!({"tool": "a.b"}),
        ] {
            assert!(
                serde_json::from_value::<Compensation>(doc.clone()).is_err(),
                "{doc} parsed"
            );
        }
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        for ok in ["/a", "/a/0", "/a~0b", "/a~1b", "/", "/ü"] {
            assert!(is_json_pointer(ok), "{ok}");
        }
    }
}
