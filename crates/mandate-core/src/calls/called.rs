//! What a forwarded call came to: its `tool.called` event, appended without waiting
//! (the answer has gone to the client; only the decision had to be durable first).

use std::time::Instant;

use mandate_audit::{EventKind, NewEvent};
use mandate_policy::tool_name;
use serde_json::json;

use super::{Caller, Calls, Target, obj};

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy)]
pub enum Called<'a> {
    /// An MCP request naming a tool: the name the client used, the outcome (`ok`,
    /// `error`, `upstream_unavailable`, `failed`) and whether it is an error.
    Tool {
        called_as: &'a str,
        result: &'static str,
        is_error: bool,
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
            } => json!({
                "tool": tool,
                "called_as": called_as,
                "jti": caller.jti,
                "result": result,
                "is_error": is_error,
                "duration_ms": duration_ms,
            }),
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
