//! Step-up authorization (MCP "scope challenge"): whether a call refused as outside the
//! caller's scope may instead tell the client which scope a new consent needs.
//!
//! The default stays: a tool outside the mandate is indistinguishable from an unknown
//! one. Only a server the operator switched to `step_up` answers otherwise, and only for
//! a tool the person could add — one the operator's policies would let this agent see
//! under a mandate that granted it. A tool those policies forbid stays hidden.

use mandate_domain::ToolGrant;
use mandate_policy::tool_name;

use super::authorize::listable;
use super::{Caller, Calls, Target, scope_covers};

impl Calls {
    /// The scope a new consent needs to cover `target` (the caller's scope plus the
    /// tool), or `None` when the refusal must stay "not available": step-up is off for
    /// the server, the tool is in scope already (refused for another reason), or the
    /// policies would not show it to this agent even if the person granted it.
    pub fn step_up_scope(&self, caller: &Caller, target: Target<'_>) -> Option<Vec<String>> {
        if !target.server.step_up {
            return None;
        }
        let name = tool_name(target.server, target.tool);
        let granted: Vec<String> = caller
            .mandate
            .terms
            .scope
            .tools
            .iter()
            .map(|g| g.tool.clone())
            .collect();
        let in_mandate = scope_covers(&granted, &name);
        if in_mandate && caller.scope_covers(&name) {
            return None;
        }
        // Decided as a listing would be, under the mandate the person would grant.
        let mut widened = caller.mandate.clone();
        if !in_mandate {
            widened.terms.scope.tools.push(ToolGrant {
                tool: name.clone(),
                constraints: Default::default(),
            });
        }
        let set = self.inner.service.policies().pdp().current();
        let now = self.inner.service.clock().now();
        if !listable(&set, caller, &widened, target, now) {
            return None;
        }
        let mut scope = caller.scope.clone().unwrap_or(granted);
        if !scope_covers(&scope, &name) {
            scope.push(name);
        }
        Some(scope)
    }
}

impl Calls {
    /// Whether the caller may see `target` now (its token's scope and the policies,
    /// decided as a listing would be, nothing recorded): a call held before it is
    /// decided (for the person's connection) must not reveal a tool the caller could
    /// not list.
    pub fn may_see(&self, caller: &Caller, target: Target<'_>) -> bool {
        let name = tool_name(target.server, target.tool);
        let set = self.inner.service.policies().pdp().current();
        let now = self.inner.service.clock().now();
        caller.scope_covers(&name) && listable(&set, caller, &caller.mandate, target, now)
    }
}
