//! `mandate policy replay`: decides recorded decisions again under a candidate policy
//! set and lists each one whose answer would change. Offline, against the store itself
//! (`--data DIR` or `--database-url URL`), like `mandate audit verify`.
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
//!   are not told apart in the ledger and replay as plain calls.
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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use mandate_audit::{Event, EventKind};
use mandate_core::PolicyAdmin;
use mandate_domain::{Agent, Mandate, MandateStatus, Tool, ToolServer, Usage};
use mandate_policy::{CallAction, CallRequest, CompiledSet, Decision};
use mandate_store::{AuditFilter, PageRequest, Store, ToolFilter};
use mandate_types::{AgentId, MandateId, TenantId};
use serde_json::{Value, json};

use crate::audit_cli::StoreArgs;
use crate::{serve, table};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// RFC 3339 time: replay the decisions recorded at or after it.
    #[arg(long, value_name = "TIME")]
    since: String,
    /// The candidate policy directory (compiled with Mandate's schema and built-ins).
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// The directory the server runs its policies from, when it was started with
    /// `--policies`; by default the store's newest set (the built-ins alone if none).
    #[arg(long, value_name = "DIR")]
    current: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Input the command cannot work with: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Why an event was not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    ListTools,
    BeforePolicy,
    Unreadable,
    MandateGone,
    AgentGone,
    ToolGone,
}

impl Skip {
    fn as_str(self) -> &'static str {
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

const NOT_CAPTURED: &str = "arguments not captured: constraints not re-checked";
const REDACTED: &str = "some arguments were redacted";

/// One replayed decision.
struct Replayed {
    tenant: TenantId,
    seq: u64,
    at: DateTime<Utc>,
    mandate: MandateId,
    agent: AgentId,
    tool: String,
    action: CallAction,
    recorded: bool,
    candidate: Decision,
    current: Decision,
    notes: Vec<&'static str>,
}

#[derive(Default)]
struct Report {
    replayed: usize,
    changed: Vec<Replayed>,
    /// Replayed decisions that the current set answers differently from the record.
    unreproduced: usize,
    skipped: BTreeMap<Skip, usize>,
}

pub async fn run(args: ReplayArgs, json: bool) -> anyhow::Result<()> {
    let since = DateTime::parse_from_rfc3339(&args.since)
        .map_err(|e| {
            BadInput(format!(
                "--since `{}`: not an RFC 3339 time: {e}",
                args.since
            ))
        })?
        .with_timezone(&Utc);
    if !args.store.offline() {
        return Err(BadInput(
            "`policy replay` reads the store directly: give --data DIR or --database-url URL"
                .into(),
        )
        .into());
    }
    if let Some(dir) = args.store.data_dir()
        && !dir.is_dir()
    {
        return Err(BadInput(format!("--data {}: no such directory", dir.display())).into());
    }
    let candidate = compile(&args.policies)?;
    let current = args.current.as_deref().map(compile).transpose()?;
    let config = args.store.config()?;
    let store = serve::open_store(&config).await?;
    let current = match current {
        Some(set) => Arc::new(set),
        None => PolicyAdmin::from_store(store.clone())
            .await?
            .pdp()
            .current(),
    };
    let sets = Sets {
        candidate: &candidate,
        current: &current,
    };
    let mut report = Report::default();
    for (tenant, _) in store.audit_heads().await? {
        let events = decisions(&*store, tenant, since).await?;
        if events.is_empty() {
            continue;
        }
        let mut world = World::load(store.clone(), tenant).await?;
        world.replay(&events, sets, &mut report).await?;
    }
    if json {
        print_json(&report)
    } else {
        print_table(&report)
    }
}

/// A policy directory that must compile; its problems are printed and it is bad input.
fn compile(dir: &Path) -> anyhow::Result<CompiledSet> {
    crate::policy_cli::compile(dir).map_err(|e| BadInput(format!("{e:#}")).into())
}

/// Every decision event of `tenant` at or after `since`, oldest first.
async fn decisions(
    store: &dyn Store,
    tenant: TenantId,
    since: DateTime<Utc>,
) -> anyhow::Result<Vec<Event>> {
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
            return Ok(events);
        };
        after = Some(last.seq);
        events.extend(page);
    }
}

#[derive(Clone, Copy)]
struct Sets<'a> {
    candidate: &'a CompiledSet,
    current: &'a CompiledSet,
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
            approved: allowed && data.contains_key("approval_id"),
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
    async fn load(store: Arc<dyn Store>, tenant: TenantId) -> anyhow::Result<World> {
        let mut servers = HashMap::new();
        let mut after = None;
        loop {
            let page = PageRequest::new(after, Some(PageRequest::MAX_LIMIT))?;
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
            let page = PageRequest::new(after, Some(PageRequest::MAX_LIMIT))?;
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
        report: &mut Report,
    ) -> anyhow::Result<()> {
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
    ) -> anyhow::Result<Result<Replayed, Skip>> {
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

    async fn mandate(&mut self, id: MandateId) -> anyhow::Result<Option<Mandate>> {
        if let Some(known) = self.mandates.get(&id) {
            return Ok(known.clone());
        }
        let found = self.store.mandate(self.tenant, id).await?;
        self.mandates.insert(id, found.clone());
        Ok(found)
    }

    async fn agent(&mut self, id: AgentId) -> anyhow::Result<Option<Agent>> {
        if let Some(known) = self.agents.get(&id) {
            return Ok(known.clone());
        }
        let found = self.store.agent(self.tenant, id).await?;
        self.agents.insert(id, found.clone());
        Ok(found)
    }

    async fn dpop_bound(&mut self, jti: &str) -> anyhow::Result<bool> {
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

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

fn summary(report: &Report) -> String {
    let to_deny = report.changed.iter().filter(|r| r.recorded).count();
    let to_allow = report.changed.len() - to_deny;
    let skipped: usize = report.skipped.values().sum();
    let why: Vec<String> = report
        .skipped
        .iter()
        .map(|(skip, n)| format!("{n} {}", skip.as_str()))
        .collect();
    let mut line = format!(
        "replayed {} decisions: {} would change ({to_deny} allow→deny, {to_allow} deny→allow), {skipped} skipped",
        report.replayed,
        report.changed.len(),
    );
    if !why.is_empty() {
        line.push_str(&format!(" ({})", why.join(", ")));
    }
    line
}

fn reason(r: &Replayed) -> String {
    let mut out = r.candidate.reason.clone();
    if !r.candidate.policies.is_empty() {
        out.push_str(&format!(" [{}]", r.candidate.policies.join(", ")));
    }
    for note in &r.notes {
        out.push_str(&format!("; {note}"));
    }
    out
}

fn print_table(report: &Report) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = report
        .changed
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                r.mandate.to_string(),
                r.agent.to_string(),
                r.tool.clone(),
                format!("{} → {}", verdict(r.recorded), verdict(r.candidate.allowed)),
                verdict(r.current.allowed).to_owned(),
                reason(r),
            ]
        })
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        out = table::render(
            &[
                "seq",
                "time",
                "mandate",
                "agent",
                "tool",
                "recorded → candidate",
                "current",
                "reason",
            ],
            &rows,
        );
    }
    out.push_str(&summary(report));
    out.push('\n');
    if report.unreproduced > 0 {
        out.push_str(&format!(
            "note: the current policy set answers {} replayed decision(s) differently from the record: policies changed since, or those requests cannot be rebuilt exactly\n",
            report.unreproduced
        ));
    }
    Ok(table::emit(&out)?)
}

fn print_json(report: &Report) -> anyhow::Result<()> {
    let mut out = String::new();
    for r in &report.changed {
        let line = json!({
            "tenant": r.tenant,
            "seq": r.seq,
            "at": r.at,
            "mandate": r.mandate,
            "agent": r.agent,
            "tool": r.tool,
            "action": r.action.as_str(),
            "recorded": verdict(r.recorded),
            "candidate": verdict(r.candidate.allowed),
            "current": verdict(r.current.allowed),
            "policies": r.candidate.policies,
            "reason": r.candidate.reason,
            "notes": r.notes,
        });
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    let to_deny = report.changed.iter().filter(|r| r.recorded).count();
    let skipped: BTreeMap<&str, usize> = report
        .skipped
        .iter()
        .map(|(skip, n)| (skip.as_str(), *n))
        .collect();
    let summary = json!({"summary": {
        "replayed": report.replayed,
        "changed": report.changed.len(),
        "allow_to_deny": to_deny,
        "deny_to_allow": report.changed.len() - to_deny,
        "skipped": skipped,
        "current_differs": report.unreproduced,
    }});
    out.push_str(&serde_json::to_string(&summary)?);
    out.push('\n');
    Ok(table::emit(&out)?)
}

#[cfg(test)]
mod tests {
    use mandate_audit::{Head, NewEvent};

    use super::*;

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
    }
}
