//! One agent's review, gathered from the store: its mandates, their events in the
//! window, their approvals, and the catalog's credentials its scope reaches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use mandate_audit::{Event, EventKind};
use mandate_domain::{Agent, ApprovalStatus, Mandate, ToolServer, scope_covers};
use mandate_policy::CallAction;
use mandate_store::{ApprovalFilter, AuditFilter, MandateFilter, PageRequest};
use mandate_types::{HumanId, TenantId};
use serde_json::Value;

use super::{
    AgentReview, ApprovalCounts, DeniedAttempt, DeniedSummary, DriftAlertView, DriftSummary,
    Finding, FindingKind, LATEST, MandateSummary, PersonRef, ReachableCredential, ToolUse,
    TouchedHuman, finding_id,
};
use crate::{CoreError, Service};

/// The most events of one kind read per mandate for one report.
const MAX_EVENTS: usize = 10_000;
/// The most mandates of one agent a report reads.
const MAX_MANDATES: usize = 1_000;
const PAGE: u32 = 500;

/// What every agent's review shares: the window, the catalog's tool servers that carry
/// a credential reference, the vault's secret names, people's names as looked up.
pub(super) struct Context<'s> {
    service: &'s Service,
    tenant: TenantId,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    servers: Vec<ToolServer>,
    secrets: BTreeSet<String>,
    names: HashMap<HumanId, Option<String>>,
}

/// What the events of one agent's mandates add up to.
#[derive(Default)]
struct Activity {
    used: BTreeMap<String, u64>,
    /// Allowed calls per mandate.
    calls: HashMap<mandate_types::MandateId, u64>,
    denied: Vec<DeniedAttempt>,
    drift: Vec<DriftAlertView>,
    approvals: ApprovalCounts,
    truncated: bool,
}

impl<'s> Context<'s> {
    pub(super) async fn load(
        service: &'s Service,
        tenant: TenantId,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<Context<'s>, CoreError> {
        let store = service.store();
        let mut servers = Vec::new();
        let mut page = PageRequest::first(PAGE);
        loop {
            let found = store.list_tool_servers(tenant, &page).await?;
            servers.extend(
                found
                    .items
                    .into_iter()
                    .filter(|s| s.credential_ref.is_some()),
            );
            match found.next {
                Some(next) => page = PageRequest::new(Some(next.0), Some(PAGE))?,
                None => break,
            }
        }
        let secrets = if servers.is_empty() {
            BTreeSet::new()
        } else {
            store
                .list_secrets(tenant)
                .await?
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        Ok(Context {
            service,
            tenant,
            now,
            since,
            servers,
            secrets,
            names: HashMap::new(),
        })
    }

    async fn person(&mut self, id: HumanId) -> PersonRef {
        if let Some(name) = self.names.get(&id) {
            return PersonRef {
                id,
                name: name.clone(),
            };
        }
        let name = self.service.human_name(self.tenant, id).await;
        self.names.insert(id, name.clone());
        PersonRef { id, name }
    }

    /// Whether a mandate belongs in the review: live, or ended within the window.
    fn in_window(&self, m: &Mandate) -> bool {
        !m.status.is_final() || m.ended_at.unwrap_or(m.updated_at) >= self.since
    }

    pub(super) async fn agent(&mut self, agent: &Agent) -> Result<AgentReview, CoreError> {
        let mandates = self.mandates(agent).await?;
        let mut activity = Activity::default();
        for m in &mandates {
            self.read_events(m, &mut activity).await?;
            self.read_approvals(m, &mut activity).await?;
        }
        // In scope: what the agent could do during the window (not a request no one
        // granted yet, nor one that was denied).
        let scope: BTreeSet<String> = mandates
            .iter()
            .filter(|m| m.activated_at.is_some())
            .flat_map(|m| m.terms.scope.tools.iter().map(|g| g.tool.clone()))
            .collect();
        let unused: Vec<String> = scope
            .iter()
            .filter(|entry| !activity.used.keys().any(|tool| scope_covers(entry, tool)))
            .cloned()
            .collect();
        let mut touched: BTreeMap<HumanId, u64> = BTreeMap::new();
        for m in &mandates {
            let Some(calls) = activity.calls.get(&m.id).copied() else {
                continue;
            };
            for human in m.terms.required_consenters() {
                *touched.entry(human).or_default() += calls;
            }
        }
        let findings = findings(agent, &unused, &activity);
        activity.denied.sort_by_key(|d| std::cmp::Reverse(d.seq));
        activity.drift.sort_by_key(|d| std::cmp::Reverse(d.seq));
        let denied = DeniedSummary {
            count: u64::try_from(activity.denied.len()).unwrap_or(u64::MAX),
            latest: activity.denied.iter().take(LATEST).cloned().collect(),
        };
        let drift = DriftSummary {
            count: u64::try_from(activity.drift.len()).unwrap_or(u64::MAX),
            latest: activity.drift.iter().take(LATEST).cloned().collect(),
        };
        let credentials = self.credentials(&scope);
        let owner = self.person(agent.owner).await;
        let mut sponsors = Vec::with_capacity(agent.sponsors.len());
        for id in &agent.sponsors {
            sponsors.push(self.person(*id).await);
        }
        let mut summaries = Vec::with_capacity(mandates.len());
        for m in &mandates {
            summaries.push(MandateSummary {
                id: m.id,
                status: m.status,
                human: self.person(m.terms.human_id).await,
                intent: m.terms.intent.clone(),
                tools: m.terms.scope.tools.iter().map(|g| g.tool.clone()).collect(),
                expires_at: m.terms.expires_at,
                ended_at: m.ended_at,
            });
        }
        let mut humans_touched = Vec::with_capacity(touched.len());
        for (id, calls) in touched {
            let person = self.person(id).await;
            humans_touched.push(TouchedHuman {
                id,
                name: person.name,
                calls,
            });
        }
        Ok(AgentReview {
            agent_id: agent.id,
            name: agent.name.clone(),
            status: agent.status,
            owner,
            sponsors,
            mandates: summaries,
            scope: scope.into_iter().collect(),
            tools_used: activity
                .used
                .iter()
                .map(|(tool, calls)| ToolUse {
                    tool: tool.clone(),
                    calls: *calls,
                })
                .collect(),
            unused_scope: unused,
            denied,
            drift_alerts: drift,
            approvals: activity.approvals,
            credentials,
            humans_touched,
            findings,
            truncated: activity.truncated,
        })
    }

    /// The agent's mandates that belong in the review, oldest first.
    async fn mandates(&self, agent: &Agent) -> Result<Vec<Mandate>, CoreError> {
        let filter = MandateFilter {
            agent: Some(agent.id),
            ..MandateFilter::default()
        };
        let mut mandates = Vec::new();
        let mut page = PageRequest::first(PAGE);
        loop {
            let found = self
                .service
                .store()
                .list_mandates(self.tenant, &filter, &page)
                .await?;
            mandates.extend(found.items.into_iter().filter(|m| self.in_window(m)));
            match found.next {
                Some(next) if mandates.len() < MAX_MANDATES => {
                    page = PageRequest::new(Some(next.0), Some(PAGE))?;
                }
                _ => break,
            }
        }
        mandates.truncate(MAX_MANDATES);
        Ok(mandates)
    }

    /// The mandate's events of `kind` in the window, oldest first (at most
    /// [`MAX_EVENTS`]; the second value says whether there were more).
    async fn events(&self, m: &Mandate, kind: EventKind) -> Result<(Vec<Event>, bool), CoreError> {
        let filter = AuditFilter {
            mandate: Some(m.id),
            kind: Some(kind),
            since: Some(self.since),
            ..AuditFilter::default()
        };
        let mut events = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .service
                .store()
                .audit_events(self.tenant, &filter, after, PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|e| e.seq);
            events.extend(page);
            if events.len() >= MAX_EVENTS {
                let more = events.len() > MAX_EVENTS || full;
                events.truncate(MAX_EVENTS);
                return Ok((events, more));
            }
            if !full {
                return Ok((events, false));
            }
        }
    }

    async fn read_events(&self, m: &Mandate, activity: &mut Activity) -> Result<(), CoreError> {
        let (decisions, more) = self.events(m, EventKind::Decision).await?;
        activity.truncated |= more;
        for e in &decisions {
            let text = |k: &str| e.data.get(k).and_then(Value::as_str);
            // Listings are not uses; a person's rollback step is not the agent's call.
            if text("action") == Some(CallAction::ListTools.as_str())
                || e.data.contains_key("rollback_of")
            {
                continue;
            }
            let Some(tool) = text("tool") else { continue };
            if e.data.get("allowed").and_then(Value::as_bool) == Some(true) {
                *activity.used.entry(tool.to_owned()).or_default() += 1;
                *activity.calls.entry(m.id).or_default() += 1;
            } else if e.data.get("allowed").and_then(Value::as_bool) == Some(false)
                // Held for approval or recorded as a proposal is not a refusal.
                && text("outcome").is_none_or(|o| o == "deny")
            {
                activity.denied.push(DeniedAttempt {
                    at: e.at,
                    seq: e.seq,
                    mandate_id: m.id,
                    tool: tool.to_owned(),
                    reason: text("reason").map(str::to_owned),
                    out_of_scope: e.data.get("out_of_scope").and_then(Value::as_bool) == Some(true),
                });
            }
        }
        let (alerts, more) = self.events(m, EventKind::DriftAlert).await?;
        activity.truncated |= more;
        for e in &alerts {
            let count = |k: &str| e.data.get(k).and_then(Value::as_u64).unwrap_or(0);
            activity.drift.push(DriftAlertView {
                at: e.at,
                seq: e.seq,
                mandate_id: m.id,
                denied: count("denied"),
                out_of_scope: count("out_of_scope"),
            });
        }
        Ok(())
    }

    async fn read_approvals(&self, m: &Mandate, activity: &mut Activity) -> Result<(), CoreError> {
        let filter = ApprovalFilter {
            mandate: Some(m.id),
            ..ApprovalFilter::default()
        };
        let mut page = PageRequest::first(PAGE);
        let mut read = 0usize;
        loop {
            let found = self
                .service
                .store()
                .list_approvals(self.tenant, &filter, &page)
                .await?;
            read += found.items.len();
            let counts = &mut activity.approvals;
            for a in found.items.iter().filter(|a| a.created_at >= self.since) {
                counts.asked += 1;
                match a.status_at(self.now) {
                    ApprovalStatus::Approved | ApprovalStatus::Used => counts.given += 1,
                    ApprovalStatus::Denied => counts.denied += 1,
                    ApprovalStatus::Pending => counts.pending += 1,
                    ApprovalStatus::Expired => counts.expired += 1,
                }
            }
            match found.next {
                Some(next) if read < MAX_EVENTS => {
                    page = PageRequest::new(Some(next.0), Some(PAGE))?;
                }
                Some(_) => {
                    activity.truncated = true;
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }

    /// The credentials of tool servers `scope` reaches: a server is reached when an
    /// entry names one of its tools (`server.tool`) or is a pattern covering its names.
    fn credentials(&self, scope: &BTreeSet<String>) -> Vec<ReachableCredential> {
        let mut out = Vec::new();
        for server in &self.servers {
            let Some(reference) = server.credential_ref.as_deref() else {
                continue;
            };
            let prefix = format!("{}.", server.name);
            let via: Vec<String> = scope
                .iter()
                .filter(|entry| {
                    entry.starts_with(&prefix)
                        || entry
                            .strip_suffix('*')
                            .is_some_and(|p| prefix.starts_with(p))
                })
                .cloned()
                .collect();
            if via.is_empty() {
                continue;
            }
            let (kind, name) = reference.split_once(':').unwrap_or(("other", reference));
            out.push(ReachableCredential {
                server: server.name.clone(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                stored: (kind == "secret").then(|| self.secrets.contains(name)),
                via,
            });
        }
        out
    }
}

/// The findings of one agent, by kind then subject.
fn findings(agent: &Agent, unused: &[String], activity: &Activity) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |kind: FindingKind, subject: String, detail: String| {
        out.push(Finding {
            id: finding_id(agent.id, kind, &subject),
            kind,
            subject,
            detail,
            mark: None,
        });
    };
    for entry in unused {
        push(
            FindingKind::UnusedScope,
            entry.clone(),
            format!("`{entry}` is in scope but no allowed call used it in the window"),
        );
    }
    let mut denied: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &activity.denied {
        *denied.entry(d.tool.as_str()).or_default() += 1;
    }
    for (tool, n) in denied {
        let times = if n == 1 { "time" } else { "times" };
        push(
            FindingKind::DeniedAttempts,
            tool.to_owned(),
            format!("calls of `{tool}` were refused {n} {times} in the window"),
        );
    }
    let mut alerted: BTreeMap<String, u64> = BTreeMap::new();
    for a in &activity.drift {
        *alerted.entry(a.mandate_id.to_string()).or_default() += 1;
    }
    for (mandate, n) in alerted {
        let times = if n == 1 { "alert" } else { "alerts" };
        push(
            FindingKind::DriftAlert,
            mandate.clone(),
            format!("mandate {mandate} raised {n} drift {times} in the window"),
        );
    }
    out
}
