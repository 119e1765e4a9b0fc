//! Policy replay: decides recorded gateway decisions again under a candidate policy
//! set and reports each one whose answer would change. One implementation for
//! `mandate policy replay` (offline, against the store) and the console's replay form.
//!
//! ```text
//!   ledger (decision events since T) ──┐
//!   store (mandate, agent, catalog) ───┼─► CallRequest ─┬─► candidate set ─► recorded ≠ ? ─► report
//!                                      │                └─► current set  (shown beside it)
//! ```
//!
//! How a request is rebuilt from a `decision` event, and where that is an approximation:
//!
//! - **Mandate**: as stored now, with the status it had at the event's time, read from
//!   its timestamps: `active` from `activated_at` until `ended_at`, its end status
//!   (revoked, expired, …) from `ended_at` on, `requested` before activation. Its budget
//!   usage is what it is now less what allowed calls at or after the event spent, so a
//!   call is judged against the budget left when it was made (amounts of calls whose
//!   arguments were not captured count as 0).
//! - **Agent** as stored now; **tool and server** from the catalog by namespaced name.
//! - **Arguments**: the captured ones (`[gateway] capture_arguments`, after redaction)
//!   or none; without them argument constraints are not checked, and the line says so.
//! - **Approval**: a call recorded as allowed on a used approval (`approval_id`) is
//!   replayed as approved; every other call as not approved. Executions of proposals
//!   are not told apart in the ledger and replay as plain calls. A rollback's
//!   compensating call (`rollback_of`) replays as what it was: a rollback, approved by
//!   the person who asked for it.
//! - **DPoP**: bound when the token the event names (`jti`) is a DPoP-bound grant.
//! - **Time**: the event's time; the delegation chain as recorded.
//!
//! Not replayed (counted as skipped, with the reason): `list_tools` events (one summary
//! per listing, not one request), denials decided before any policy ran (outside the
//! token's scope, a malformed amount: no policy can change them), and events whose
//! mandate, agent or tool is no longer in the store.
//!
//! Each replayed request is also decided by the set running now (the store's newest,
//! or `--current DIR` for a server that runs from a directory). When that answer
//! differs from the recorded one, the replay does not reproduce the original decision
//! (policies changed since, or the request could not be rebuilt exactly); the
//! `current` column shows it so a reader can tell a real change from such noise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mandate_audit::{Event, EventKind};
use mandate_domain::{Agent, Mandate, MandateStatus, Principal, Tool, ToolServer, Usage};
use mandate_policy::{CallAction, CallRequest, CompiledSet, Decision, PolicySource};
use mandate_store::{AuditFilter, PageRequest, Store, ToolFilter};
use mandate_types::{AgentId, MandateId, TenantId};
use serde_json::Value;

use crate::{CoreError, Service};

/// The note on a call replayed without its arguments.
pub const NOT_CAPTURED: &str = "arguments not captured: constraints not re-checked";
/// The note on a call some of whose arguments were redacted.
pub const REDACTED: &str = "some arguments were redacted";
/// Most decision events the console replays at once.
pub const CONSOLE_MAX_EVENTS: usize = 10_000;

impl Service {
    /// Replays the caller's tenant's decisions since `since` under `candidate` (compiled
    /// as the server would; [`CoreError::PolicySet`] when it does not), beside the set
    /// running now. The tenant's admins only; at most [`CONSOLE_MAX_EVENTS`] events,
    /// the oldest first ([`ReplayReport::truncated`] says when more were left).
    pub async fn replay_policies(
        &self,
        caller: &Principal,
        candidate: PolicySource,
        since: DateTime<Utc>,
    ) -> Result<ReplayReport, CoreError> {
        let tenant = self.require_admin(caller)?;
        let candidate = CompiledSet::compile(candidate)?;
        let current = self.policies.pdp().current();
        let mut report = ReplayReport::default();
        replay_tenant(
            self.store.clone(),
            tenant,
            since,
            Some(CONSOLE_MAX_EVENTS),
            Sets {
                candidate: &candidate,
                current: &current,
            },
            &mut report,
        )
        .await?;
        Ok(report)
    }
}

/// The two sets every replayed request is decided by.
#[derive(Debug, Clone, Copy)]
pub struct Sets<'a> {
    pub candidate: &'a CompiledSet,
    pub current: &'a CompiledSet,
}

/// Replays `tenant`'s decisions at or after `since` (at most `max` events) into
/// `report`.
pub async fn replay_tenant(
    store: Arc<dyn Store>,
    tenant: TenantId,
    since: DateTime<Utc>,
    max: Option<usize>,
    sets: Sets<'_>,
    report: &mut ReplayReport,
) -> Result<(), CoreError> {
    let (events, truncated) = decisions(&*store, tenant, since, max).await?;
    report.truncated |= truncated;
    if events.is_empty() {
        return Ok(());
    }
    let mut world = World::load(store, tenant).await?;
    world.replay(&events, sets, report).await
}

/// Why an event was not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    ListTools,
    BeforePolicy,
    Unreadable,
    MandateGone,
    AgentGone,
    ToolGone,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::ListTools => "list_tools summaries",
            Skip::BeforePolicy => "denied before any policy ran",
            Skip::Unreadable => "not a decision this version can read",
            Skip::MandateGone => "mandate no longer stored",
            Skip::AgentGone => "agent no longer stored",
            Skip::ToolGone => "tool no longer in the catalog",
        }
    }
}

/// One replayed decision.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub tenant: TenantId,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub mandate: MandateId,
    pub agent: AgentId,
    pub tool: String,
    pub action: CallAction,
    pub recorded: bool,
    pub candidate: Decision,
    pub current: Decision,
    pub notes: Vec<&'static str>,
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub replayed: usize,
    pub changed: Vec<Replayed>,
    /// Replayed decisions that the current set answers differently from the record.
    pub unreproduced: usize,
    pub skipped: BTreeMap<Skip, usize>,
    /// More decisions were recorded than were replayed (the limit was reached).
    pub truncated: bool,
}

/// Every decision event of `tenant` at or after `since`, oldest first.
async fn decisions(
    store: &dyn Store,
    tenant: TenantId,
    since: DateTime<Utc>,
    max: Option<usize>,
) -> Result<(Vec<Event>, bool), CoreError> {
    let filter = AuditFilter {
        kind: Some(EventKind::Decision),
        since: Some(since),
        ..AuditFilter::default()
    };
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = store.audit_events(tenant, &filter, after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok((events, false));
        };
        after = Some(last.seq);
        events.extend(page);
        if let Some(max) = max
            && events.len() > max
        {
            events.truncate(max);
            return Ok((events, true));
        }
    }
}

/// A tenant's entities as stored now, read once each.
struct World {
    store: Arc<dyn Store>,
    tenant: TenantId,
    /// By namespaced name.
    catalog: HashMap<String, (ToolServer, Tool)>,
    mandates: HashMap<MandateId, Option<Mandate>>,
    agents: HashMap<AgentId, Option<Agent>>,
    dpop: HashMap<String, bool>,
}

/// What a recorded decision event says, parsed once.
struct Recorded<'e> {
    event: &'e Event,
    action: CallAction,
    tool: &'e str,
    allowed: bool,
    arguments: Option<&'e Value>,
    approved: bool,
    /// A rollback's compensating call (the decision names the call it undoes).
    rollback: bool,
    chain: Vec<AgentId>,
}

impl<'e> Recorded<'e> {
    fn parse(event: &'e Event) -> Result<Self, Skip> {
        let data = &event.data;
        let action = match data.get("action").and_then(Value::as_str) {
            Some("call_tool") => CallAction::CallTool,
            Some("read_resource") => CallAction::ReadResource,
            Some("get_prompt") => CallAction::GetPrompt,
            Some("list_tools") => return Err(Skip::ListTools),
            _ => return Err(Skip::Unreadable),
        };
        let allowed = data
            .get("allowed")
            .and_then(Value::as_bool)
            .ok_or(Skip::Unreadable)?;
        // The gateway records `policies` whenever the policy set was asked; a denial
        // without them was reached before (token scope, amount) and no policy changes it.
        if !allowed && !data.contains_key("policies") {
            return Err(Skip::BeforePolicy);
        }
        let tool = data
            .get("tool")
            .and_then(Value::as_str)
            .ok_or(Skip::Unreadable)?;
        let chain = match data.get("delegation_chain") {
            None => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_str().and_then(|s| s.parse::<AgentId>().ok()))
                .collect::<Option<Vec<_>>>()
                .ok_or(Skip::Unreadable)?,
            Some(_) => return Err(Skip::Unreadable),
        };
        Ok(Recorded {
            event,
            action,
            tool,
            allowed,
            arguments: data.get("arguments"),
            approved: (allowed && data.contains_key("approval_id"))
                || data.contains_key("rollback_of"),
            rollback: data.contains_key("rollback_of"),
            chain,
        })
    }

    /// The mandate and agent the event names.
    fn principals(&self) -> Result<(MandateId, AgentId), Skip> {
        match (self.event.mandate_id, self.event.agent_id) {
            (Some(m), Some(a)) => Ok((m, a)),
            _ => Err(Skip::Unreadable),
        }
    }
}

impl World {
    async fn load(store: Arc<dyn Store>, tenant: TenantId) -> Result<World, CoreError> {
        let mut servers = HashMap::new();
        let mut after = None;
        loop {
            let page = PageRequest::new(after, Some(PageRequest::MAX_LIMIT))
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            let got = store.list_tool_servers(tenant, &page).await?;
            servers.extend(got.items.into_iter().map(|s| (s.id, s)));
            match got.next {
                Some(cursor) => after = Some(cursor.0),
                None => break,
            }
        }
        let mut catalog = HashMap::new();
        let mut after = None;
        loop {
            let page = PageRequest::new(after, Some(PageRequest::MAX_LIMIT))
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            let got = store
                .list_tools(tenant, &ToolFilter::default(), &page)
                .await?;
            for tool in got.items {
                if let Some(server) = servers.get(&tool.server_id) {
                    let name = mandate_policy::tool_name(server, &tool);
                    catalog.insert(name, (server.clone(), tool));
                }
            }
            match got.next {
                Some(cursor) => after = Some(cursor.0),
                None => break,
            }
        }
        Ok(World {
            store,
            tenant,
            catalog,
            mandates: HashMap::new(),
            agents: HashMap::new(),
            dpop: HashMap::new(),
        })
    }

    async fn replay(
        &mut self,
        events: &[Event],
        sets: Sets<'_>,
        report: &mut ReplayReport,
    ) -> Result<(), CoreError> {
        let parsed: Vec<Result<Recorded<'_>, Skip>> = events.iter().map(Recorded::parse).collect();
        let spent = self.spent_from(&parsed);
        for (recorded, spent) in parsed.iter().zip(spent) {
            let outcome = match recorded {
                Ok(recorded) => self.replay_one(recorded, spent, sets).await?,
                Err(skip) => Err(*skip),
            };
            match outcome {
                Ok(replayed) => {
                    report.replayed += 1;
                    if replayed.current.allowed != replayed.recorded {
                        report.unreproduced += 1;
                    }
                    if replayed.candidate.allowed != replayed.recorded {
                        report.changed.push(replayed);
                    }
                }
                Err(skip) => *report.skipped.entry(skip).or_default() += 1,
            }
        }
        Ok(())
    }

    /// For each event, what allowed calls of its mandate spent from it on (itself
    /// included): subtracted from today's usage, the usage the call was judged against.
    fn spent_from(&self, parsed: &[Result<Recorded<'_>, Skip>]) -> Vec<Usage> {
        let mut running: HashMap<MandateId, Usage> = HashMap::new();
        let mut out = vec![Usage::default(); parsed.len()];
        for (slot, recorded) in out.iter_mut().zip(parsed).rev() {
            let Ok(recorded) = recorded else { continue };
            let Ok((mandate, _)) = recorded.principals() else {
                continue;
            };
            let total = running.entry(mandate).or_default();
            if recorded.allowed && recorded.action == CallAction::CallTool {
                total.calls = total.calls.saturating_add(1);
                total.amount = total.amount.saturating_add(self.amount(recorded));
            }
            *slot = *total;
        }
        out
    }

    /// What the call spends, when its arguments were captured (0 otherwise).
    fn amount(&self, recorded: &Recorded<'_>) -> u64 {
        let Some((_, tool)) = self.catalog.get(recorded.tool) else {
            return 0;
        };
        match (&tool.amount_argument, recorded.arguments) {
            (Some(pointer), Some(args)) => {
                args.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
            }
            _ => 0,
        }
    }

    async fn replay_one(
        &mut self,
        recorded: &Recorded<'_>,
        spent: Usage,
        sets: Sets<'_>,
    ) -> Result<Result<Replayed, Skip>, CoreError> {
        let (mandate_id, agent_id) = match recorded.principals() {
            Ok(ids) => ids,
            Err(skip) => return Ok(Err(skip)),
        };
        let Some(mut mandate) = self.mandate(mandate_id).await? else {
            return Ok(Err(Skip::MandateGone));
        };
        let Some(agent) = self.agent(agent_id).await? else {
            return Ok(Err(Skip::AgentGone));
        };
        let Some((server, tool)) = self.catalog.get(recorded.tool).cloned() else {
            return Ok(Err(Skip::ToolGone));
        };
        let at = recorded.event.at;
        mandate.status = status_at(&mandate, at);
        mandate.usage = Usage {
            calls: mandate.usage.calls.saturating_sub(spent.calls),
            amount: mandate.usage.amount.saturating_sub(spent.amount),
        };
        let dpop_bound = match recorded.event.data.get("jti").and_then(Value::as_str) {
            Some(jti) => self.dpop_bound(jti).await?,
            None => false,
        };
        let amount = match recorded.action {
            CallAction::CallTool => self.amount(recorded),
            _ => 0,
        };
        let request = CallRequest {
            action: recorded.action,
            agent: &agent,
            mandate: &mandate,
            tool: &tool,
            server: &server,
            arguments: recorded.arguments,
            amount,
            approved: recorded.approved,
            executing_proposal: false,
            rollback: recorded.rollback,
            delegation_chain: &recorded.chain,
            dpop_bound,
            now: at,
        };
        let mut notes = Vec::new();
        match recorded.arguments {
            None if recorded.action == CallAction::CallTool => notes.push(NOT_CAPTURED),
            Some(args) if has_redacted(args) => notes.push(REDACTED),
            _ => {}
        }
        Ok(Ok(Replayed {
            tenant: self.tenant,
            seq: recorded.event.seq,
            at,
            mandate: mandate_id,
            agent: agent_id,
            tool: recorded.tool.to_owned(),
            action: recorded.action,
            recorded: recorded.allowed,
            candidate: sets.candidate.decide_call(&request),
            current: sets.current.decide_call(&request),
            notes,
        }))
    }

    async fn mandate(&mut self, id: MandateId) -> Result<Option<Mandate>, CoreError> {
        if let Some(known) = self.mandates.get(&id) {
            return Ok(known.clone());
        }
        let found = self.store.mandate(self.tenant, id).await?;
        self.mandates.insert(id, found.clone());
        Ok(found)
    }

    async fn agent(&mut self, id: AgentId) -> Result<Option<Agent>, CoreError> {
        if let Some(known) = self.agents.get(&id) {
            return Ok(known.clone());
        }
        let found = self.store.agent(self.tenant, id).await?;
        self.agents.insert(id, found.clone());
        Ok(found)
    }

    async fn dpop_bound(&mut self, jti: &str) -> Result<bool, CoreError> {
        if let Some(known) = self.dpop.get(jti) {
            return Ok(*known);
        }
        let bound = self
            .store
            .grant(self.tenant, jti)
            .await?
            .is_some_and(|g| g.cnf_jkt.is_some());
        self.dpop.insert(jti.to_owned(), bound);
        Ok(bound)
    }
}

/// The mandate's status at `at`, from its timestamps (see the module docs).
fn status_at(mandate: &Mandate, at: DateTime<Utc>) -> MandateStatus {
    match (mandate.activated_at, mandate.ended_at) {
        (_, Some(ended)) if at >= ended => mandate.status,
        (Some(activated), _) if at >= activated => MandateStatus::Active,
        _ => MandateStatus::Requested,
    }
}

fn has_redacted(value: &Value) -> bool {
    match value {
        Value::String(s) => s == "[redacted]",
        Value::Array(items) => items.iter().any(has_redacted),
        Value::Object(map) => map.values().any(has_redacted),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use mandate_audit::{Head, NewEvent};

    use super::*;
    use serde_json::json;

    fn event(data: Value) -> Event {
        let mut new = NewEvent::new(TenantId::generate(), EventKind::Decision, "agent:x")
            .mandate(MandateId::generate())
            .agent(AgentId::generate());
        if let Value::Object(map) = data {
            new.data = map;
        }
        Event::chain(&Head::genesis(), new, Utc::now())
    }

    #[test]
    fn what_is_replayed_and_what_is_skipped() {
        let skip = |data: Value| Recorded::parse(&event(data)).err();
        assert_eq!(
            skip(json!({"action": "list_tools", "allowed": true})),
            Some(Skip::ListTools)
        );
        assert_eq!(
            skip(
                json!({"action": "call_tool", "tool": "fx.a", "allowed": false, "reason": "outside the token's scope"})
            ),
            Some(Skip::BeforePolicy)
        );
        assert_eq!(
            skip(json!({"action": "call_tool", "tool": "fx.a"})),
            Some(Skip::Unreadable)
        );
        assert_eq!(
            skip(
                json!({"action": "call_tool", "tool": "fx.a", "allowed": true, "policies": [], "delegation_chain": ["nope"]})
            ),
            Some(Skip::Unreadable)
        );
        let e = event(json!({
            "action": "call_tool", "tool": "fx.a", "allowed": true, "policies": [],
            "approval_id": "apr_1", "arguments": {"card": "[redacted]"},
        }));
        let recorded = Recorded::parse(&e)
            .ok()
            .unwrap_or_else(|| panic!("replayable"));
        assert!(recorded.approved, "allowed on a used approval");
        assert!(recorded.arguments.is_some_and(has_redacted));
        let denied = event(
            json!({"action": "get_prompt", "tool": "fx./prompts", "allowed": false, "policies": ["p"]}),
        );
        let recorded = Recorded::parse(&denied)
            .ok()
            .unwrap_or_else(|| panic!("replayable"));
        assert_eq!(recorded.action, CallAction::GetPrompt);
        assert!(!recorded.approved);
        assert!(!recorded.rollback);
        // A rollback's compensating call replays as one, approved by its person, even
        // when the policy refused it.
        let compensation = event(json!({
            "action": "call_tool", "tool": "fx.a", "allowed": false, "policies": ["p"],
            "rollback_of": 12,
        }));
        let recorded = Recorded::parse(&compensation)
            .ok()
            .unwrap_or_else(|| panic!("replayable"));
        assert!(recorded.rollback && recorded.approved);
    }
}
