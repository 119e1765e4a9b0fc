//! What a forwarded call came to: its `tool.called` event, appended without waiting
//! (the answer has gone to the client; only the decision had to be durable first).

use std::time::Instant;

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{ArgumentSource, Tool};
use mandate_policy::tool_name;
use mandate_types::RiskTier;
use serde_json::{Map, Value, json};

use super::{Caller, Calls, Target, obj};

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy)]
pub enum Called<'a> {
    /// An MCP request naming a tool: the name the client used, the outcome (`ok`,
    /// `error`, `upstream_unavailable`, `failed`) and whether it is an error. For a
    /// reversible tool (one with a compensation), the call's arguments and the
    /// upstream's result, from which its compensation is formed; `None` otherwise.
    Tool {
        called_as: &'a str,
        result: &'static str,
        is_error: bool,
        reversal: Option<(&'a Value, &'a Value)>,
    },
    /// A request through the HTTP proxy, and the upstream's status.
    Http {
        method: &'a str,
        path: &'a str,
        status: u16,
    },
}

impl Calls {
    /// Records what a call on `target` that started at `started` came to.
    pub fn record_called(
        &self,
        caller: &Caller,
        target: Target<'_>,
        called: Called<'_>,
        started: Instant,
    ) {
        let tool = tool_name(target.server, target.tool);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let data = match called {
            Called::Tool {
                called_as,
                result,
                is_error,
                reversal,
            } => {
                let mut data = obj(json!({
                    "tool": tool,
                    "called_as": called_as,
                    "jti": caller.jti,
                    "result": result,
                    "is_error": is_error,
                    "duration_ms": duration_ms,
                }));
                if result == "ok" && !is_error {
                    compensation(
                        &mut data,
                        target.tool,
                        reversal,
                        &self.inner.settings.redact,
                    );
                }
                Value::Object(data)
            }
            Called::Http {
                method,
                path,
                status,
            } => json!({
                "tool": tool,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
            }),
        };
        let mut data = obj(data);
        caller.mark_trace(&mut data);
        self.inner.ledger.append_detached(NewEvent {
            tenant_id: caller.mandate.tenant_id,
            kind: EventKind::ToolCalled,
            mandate_id: Some(caller.mandate.id),
            agent_id: Some(caller.agent.id),
            human_id: Some(caller.mandate.terms.human_id),
            actor: caller.actor.clone(),
            data,
        });
    }
}

/// Writes a successful call's compensation — the exact call that undoes it: server,
/// tool, arguments — into its outcome event, or why it cannot be formed; a tool that
/// is not a read and declares none is marked `irreversible` (a rollback lists both).
/// A compensation that would copy an argument the operator redacts (`redact`) is not
/// recorded: the ledger never holds what redaction keeps out of it.
fn compensation(
    data: &mut Map<String, Value>,
    tool: &Tool,
    reversal: Option<(&Value, &Value)>,
    redact: &[String],
) {
    let Some(declared) = &tool.compensation else {
        if tool.risk_tier != RiskTier::Read {
            data.insert("irreversible".into(), json!(true));
        }
        return;
    };
    let (Some((server, name)), Some((arguments, result))) = (declared.target(), reversal) else {
        data.insert(
            "compensation_error".into(),
            json!("the call's arguments were not kept"),
        );
        return;
    };
    if declared.arguments.values().any(|source| match source {
        ArgumentSource::Argument(p) => redact.iter().any(|r| overlaps(p, r)),
        _ => false,
    }) {
        data.insert(
            "compensation_error".into(),
            json!("the compensation would copy a redacted argument"),
        );
        return;
    }
    match declared.arguments_for(arguments, result) {
        Ok(arguments) => data.insert(
            "compensation".into(),
            json!({"server": server, "tool": name, "arguments": arguments}),
        ),
        Err(e) => data.insert("compensation_error".into(), json!(e)),
    };
}

/// Whether one JSON pointer names the other or something inside it.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    inside(a, b) || inside(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use mandate_types::{DataClass, TenantId, ToolId, ToolServerId};

    fn tool(compensation: Option<Value>, tier: RiskTier) -> Tool {
        Tool {
            id: ToolId::generate(),
            tenant_id: TenantId::generate(),
            server_id: ToolServerId::generate(),
            name: "transfer".into(),
            description: String::new(),
            input_schema: Value::Null,
            annotations: mandate_domain::ToolAnnotations::default(),
            risk_tier: tier,
            tags: Default::default(),
            data_class: DataClass::Internal,
            amount_argument: None,
            compensation: compensation.map(|c| serde_json::from_value(c).unwrap()),
            created_at: Utc::now(),
        }
    }

    fn recorded(tool: &Tool, arguments: Value, redact: &[&str]) -> Map<String, Value> {
        let mut data = Map::new();
        let result = json!({"structuredContent": {"id": "tx-1"}});
        let redact: Vec<String> = redact.iter().map(|r| (*r).to_owned()).collect();
        compensation(&mut data, tool, Some((&arguments, &result)), &redact);
        data
    }

    #[test]
    fn the_compensation_is_the_exact_call_or_why_not() {
        let swap = json!({"tool": "bank.transfer", "arguments": {
            "from": {"argument": "/to"}, "to": {"argument": "/from"},
            "amount_cents": {"argument": "/amount_cents"}, "memo": {"result": "/structuredContent/id"}}});
        let t = tool(Some(swap), RiskTier::HighImpact);
        let args = json!({"from": "a", "to": "b", "amount_cents": 5, "pin": "1234"});
        let data = recorded(&t, args.clone(), &["/pin"]);
        assert_eq!(
            data["compensation"],
            json!({"server": "bank", "tool": "transfer", "arguments":
                {"from": "b", "to": "a", "amount_cents": 5, "memo": "tx-1"}})
        );
        // A pointer into a missing field: recorded as an error, never guessed.
        let data = recorded(&t, json!({"from": "a", "amount_cents": 5}), &[]);
        assert!(data.get("compensation").is_none());
        assert!(
            data["compensation_error"]
                .as_str()
                .unwrap()
                .contains("`/to`")
        );
        // Copying a redacted argument (or what holds it) is refused.
        for redacted in ["/to", "/to/x", ""] {
            let data = recorded(&t, args.clone(), &[redacted]);
            assert!(data.get("compensation").is_none(), "{redacted}");
            assert!(data.contains_key("compensation_error"));
        }
        // Irreversible: marked unless a read.
        let email = tool(None, RiskTier::HighImpact);
        assert_eq!(
            recorded(&email, args.clone(), &[])["irreversible"],
            json!(true)
        );
        let read = tool(None, RiskTier::Read);
        assert!(recorded(&read, args, &[]).is_empty());
    }

    #[test]
    fn pointers_overlap_only_along_their_tokens() {
        assert!(overlaps("/a", "/a"));
        assert!(overlaps("/a", "/a/b"));
        assert!(overlaps("/a/b", "/a"));
        assert!(!overlaps("/a", "/ab"));
        assert!(!overlaps("/a/b", "/a/c"));
    }
}
