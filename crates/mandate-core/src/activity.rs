//! Activity over time, for the console's overview: calls let through, denials,
//! approvals asked and drift alerts per time bucket — in all, per agent and per
//! mandate — and the budget burn-down of each active mandate with a budget.
//!
//! ```text
//!   viewer (admin: the whole tenant; a person: the mandates they consent to; an agent:
//!   refused)
//!     ─► `decision`, `approval.requested`, `drift.alert` events since the window's start
//!        (admin: the tenant's, by kind; a person: each of their mandates', by mandate)
//!     ─► counted into buckets: a `call_tool` decision `allow` is a call, `deny` a
//!        denial (listings, resources and prompts are not counted)
//!     ─► per active mandate with a budget: its allowed calls since activation, summed
//!        into the used calls and amount over time (the amount each decision event
//!        records), ending at the mandate's usage as stored
//! ```
//!
//! Reads are bounded (events per kind, mandates, series); a bound reached is reported as
//! `truncated`, never silently dropped.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use mandate_audit::{Event, EventKind};
use mandate_domain::{Mandate, MandateStatus, Principal};
use mandate_store::{AuditFilter, MandateFilter, PageRequest};
use mandate_types::{AgentId, MandateId, TenantId};
use serde_json::Value;

use crate::{CoreError, Service};

/// The windows offered, in days.
pub const WINDOWS: [u32; 3] = [1, 7, 30];
/// The most events of one kind read for one overview.
const MAX_EVENTS: usize = 50_000;
/// The most mandates a person's overview reads, and the most burn-downs drawn.
const MAX_MANDATES: usize = 200;
const MAX_BURNS: usize = 24;
/// The most agents and mandates given their own series (the busiest first).
pub const MAX_SERIES: usize = 40;
const PAGE: u32 = 1_000;

/// What happened in one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tool calls let through.
    pub calls: u64,
    pub denials: u64,
    /// Approvals asked.
    pub approvals: u64,
    pub drift_alerts: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.calls += other.calls;
        self.denials += other.denials;
        self.approvals += other.approvals;
        self.drift_alerts += other.drift_alerts;
    }

    pub fn total(&self) -> u64 {
        self.calls + self.denials + self.approvals + self.drift_alerts
    }
}

/// Whose series it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Agent(AgentId),
    Mandate(MandateId),
}

/// One agent's or one mandate's counts per bucket.
#[derive(Debug, Clone)]
pub struct Series {
    pub subject: Subject,
    /// The agent's name, or the mandate's intent, where the store has it.
    pub label: Option<String>,
    pub buckets: Vec<Counts>,
    pub sum: Counts,
}

/// One point of a burn-down: what the mandate had used by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    pub at: DateTime<Utc>,
    pub calls: u64,
    pub amount: u64,
}

/// An active mandate's budget over its life so far.
#[derive(Debug, Clone)]
pub struct BurnDown {
    pub mandate: MandateId,
    pub intent: String,
    pub agent: AgentId,
    pub started: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub max_calls: Option<u64>,
    pub max_amount: Option<u64>,
    pub currency: Option<String>,
    /// Oldest first; the last point is the usage as stored now.
    pub points: Vec<Used>,
    /// More allowed calls than were read: the curve's shape is cut short, its end is
    /// still the stored usage.
    pub truncated: bool,
}

/// The overview of one window.
#[derive(Debug, Clone)]
pub struct Activity {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket: Duration,
    /// Every bucket's start, oldest first.
    pub starts: Vec<DateTime<Utc>>,
    pub total: Vec<Counts>,
    pub sum: Counts,
    /// The busiest agents first (at most [`MAX_SERIES`]).
    pub agents: Vec<Series>,
    pub mandates: Vec<Series>,
    pub burn_downs: Vec<BurnDown>,
    /// A bound was reached: some events, series or mandates are not shown.
    pub truncated: bool,
}

/// The window asked for: `days` as given in a query (`None`: 7). An error says what
/// is wrong in words fit for the caller.
pub fn parse_window(raw: Option<&str>) -> Result<u32, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(7);
    };
    match raw.parse::<u32>() {
        Ok(days) if WINDOWS.contains(&days) => Ok(days),
        _ => Err(format!(
            "`days` must be one of {}",
            WINDOWS.map(|d| d.to_string()).join(", ")
        )),
    }
}

/// The bucket for a window of `days`: hours for a day, six hours for a week, days
/// beyond.
fn bucket_of(days: u32) -> Duration {
    match days {
        0 | 1 => Duration::hours(1),
        2..=7 => Duration::hours(6),
        _ => Duration::days(1),
    }
}

/// How one event counts, if it counts at all.
fn counted(e: &Event) -> Option<Counts> {
    let mut c = Counts::default();
    match e.kind {
        EventKind::Decision => {
            if e.data.get("action").and_then(Value::as_str) != Some("call_tool") {
                return None;
            }
            match e.data.get("outcome").and_then(Value::as_str) {
                Some("allow") => c.calls = 1,
                Some("deny") => c.denials = 1,
                _ => return None,
            }
        }
        EventKind::ApprovalRequested => c.approvals = 1,
        EventKind::DriftAlert => c.drift_alerts = 1,
        _ => return None,
    }
    Some(c)
}

/// Counts events into buckets, in all and per agent and mandate. Pure: the tests feed
/// it events directly.
pub fn tally(
    events: &[Event],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket: Duration,
) -> (Vec<DateTime<Utc>>, Vec<Counts>, Vec<Series>, Vec<Series>) {
    let step = bucket.num_seconds().max(1);
    let span = (until - since).num_seconds().max(1);
    let n = usize::try_from((span + step - 1) / step)
        .unwrap_or(1)
        .max(1);
    let starts: Vec<_> = (0..n)
        .map(|i| since + Duration::seconds(step * i64::try_from(i).unwrap_or(0)))
        .collect();
    let mut total = vec![Counts::default(); n];
    let mut per: HashMap<Subject, Vec<Counts>> = HashMap::new();
    for e in events {
        if e.at < since || e.at >= until {
            continue;
        }
        let Some(c) = counted(e) else { continue };
        let i = usize::try_from((e.at - since).num_seconds() / step)
            .unwrap_or(0)
            .min(n - 1);
        let subjects = [
            e.agent_id.map(Subject::Agent),
            e.mandate_id.map(Subject::Mandate),
        ];
        if let Some(b) = total.get_mut(i) {
            b.add(&c);
        }
        for subject in subjects.into_iter().flatten() {
            let buckets = per
                .entry(subject)
                .or_insert_with(|| vec![Counts::default(); n]);
            if let Some(b) = buckets.get_mut(i) {
                b.add(&c);
            }
        }
    }
    let mut agents = Vec::new();
    let mut mandates = Vec::new();
    for (subject, buckets) in per {
        let mut sum = Counts::default();
        buckets.iter().for_each(|b| sum.add(b));
        let series = Series {
            subject,
            label: None,
            buckets,
            sum,
        };
        match subject {
            Subject::Agent(_) => agents.push(series),
            Subject::Mandate(_) => mandates.push(series),
        }
    }
    for list in [&mut agents, &mut mandates] {
        // The busiest first; ties in a stable order.
        list.sort_by(|a, b| {
            b.sum
                .total()
                .cmp(&a.sum.total())
                .then_with(|| subject_key(&a.subject).cmp(&subject_key(&b.subject)))
        });
    }
    (starts, total, agents, mandates)
}

/// `at` rounded down to a multiple of `bucket` since the Unix epoch.
fn floor_to(at: DateTime<Utc>, bucket: Duration) -> DateTime<Utc> {
    let step = bucket.num_seconds().max(1);
    let secs = at.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(step), 0).unwrap_or(at)
}

fn subject_key(s: &Subject) -> String {
    match s {
        Subject::Agent(id) => id.to_string(),
        Subject::Mandate(id) => id.to_string(),
    }
}

/// A mandate's used budget over time from its allowed calls (oldest first), ending at
/// its usage as stored.
pub fn burn_points(m: &Mandate, decisions: &[Event], now: DateTime<Utc>) -> Vec<Used> {
    let started = m.activated_at.unwrap_or(m.created_at);
    let mut points = vec![Used {
        at: started,
        calls: 0,
        amount: 0,
    }];
    let (mut calls, mut amount) = (0u64, 0u64);
    for e in decisions {
        if e.kind != EventKind::Decision
            || e.data.get("action").and_then(Value::as_str) != Some("call_tool")
            || e.data.get("outcome").and_then(Value::as_str) != Some("allow")
        {
            continue;
        }
        calls += 1;
        amount = amount.saturating_add(e.data.get("amount").and_then(Value::as_u64).unwrap_or(0));
        points.push(Used {
            at: e.at.max(started),
            calls,
            amount,
        });
    }
    points.push(Used {
        at: now.max(started),
        calls: m.usage.calls,
        amount: m.usage.amount,
    });
    points
}

impl Service {
    /// The overview of the last `days` days as `viewer` may see it.
    pub async fn activity(&self, viewer: &Principal, days: u32) -> Result<Activity, CoreError> {
        if matches!(viewer, Principal::Agent { .. }) {
            return Err(CoreError::Forbidden(
                "the overview is for people: an agent sees its mandates through the API".to_owned(),
            ));
        }
        let until = self.clock().now();
        let bucket = bucket_of(days);
        // Buckets start on whole hours (and whole days, UTC), so the axis reads round.
        let since = floor_to(until - Duration::days(i64::from(days)), bucket);
        let tenant = viewer.tenant();
        let kinds = [
            EventKind::Decision,
            EventKind::ApprovalRequested,
            EventKind::DriftAlert,
        ];
        let mut truncated = false;
        let mut events = Vec::new();
        let mine = match viewer {
            Principal::Admin { .. } => {
                for kind in kinds {
                    let filter = AuditFilter {
                        kind: Some(kind),
                        since: Some(since),
                        ..AuditFilter::default()
                    };
                    truncated |= self.read_events(tenant, &filter, &mut events).await?;
                }
                None
            }
            _ => {
                let mandates = self.viewers_mandates(viewer, &mut truncated).await?;
                for m in mandates
                    .iter()
                    .filter(|m| !m.status.is_final() || m.ended_at.unwrap_or(m.updated_at) >= since)
                {
                    for kind in kinds {
                        let filter = AuditFilter {
                            mandate: Some(m.id),
                            kind: Some(kind),
                            since: Some(since),
                            ..AuditFilter::default()
                        };
                        truncated |= self.read_events(tenant, &filter, &mut events).await?;
                    }
                }
                Some(mandates)
            }
        };
        let (starts, total, mut agents, mut mandates) = tally(&events, since, until, bucket);
        drop(events);
        truncated |= agents.len() > MAX_SERIES || mandates.len() > MAX_SERIES;
        agents.truncate(MAX_SERIES);
        mandates.truncate(MAX_SERIES);
        for s in &mut agents {
            if let Subject::Agent(id) = s.subject {
                s.label = self.agent_name(tenant, id).await;
            }
        }
        let mut known: HashMap<MandateId, Mandate> = mine
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        for s in &mut mandates {
            if let Subject::Mandate(id) = s.subject {
                if !known.contains_key(&id)
                    && let Some(m) = self.store.mandate(tenant, id).await?
                {
                    known.insert(id, m);
                }
                s.label = known.get(&id).map(|m| m.terms.intent.clone());
            }
        }
        let mut sum = Counts::default();
        total.iter().for_each(|b| sum.add(b));
        let burn_downs = self.burn_downs(viewer, until, &mut truncated).await?;
        Ok(Activity {
            since,
            until,
            bucket,
            starts,
            total,
            sum,
            agents,
            mandates,
            burn_downs,
            truncated,
        })
    }

    /// Events matching `filter` appended to `into` (at most [`MAX_EVENTS`] of one
    /// filter): whether there were more.
    async fn read_events(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        into: &mut Vec<Event>,
    ) -> Result<bool, CoreError> {
        let mut read = 0usize;
        let mut after = None;
        loop {
            let page = self.store.audit_events(tenant, filter, after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|e| e.seq);
            read += page.len();
            into.extend(page);
            if !full {
                return Ok(false);
            }
            if read >= MAX_EVENTS {
                return Ok(true);
            }
        }
    }

    /// The mandates a person consents to (at most [`MAX_MANDATES`]).
    async fn viewers_mandates(
        &self,
        viewer: &Principal,
        truncated: &mut bool,
    ) -> Result<Vec<Mandate>, CoreError> {
        self.mandates_where(viewer, MandateFilter::default(), MAX_MANDATES, truncated)
            .await
    }

    async fn mandates_where(
        &self,
        viewer: &Principal,
        filter: MandateFilter,
        most: usize,
        truncated: &mut bool,
    ) -> Result<Vec<Mandate>, CoreError> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(200);
        loop {
            let found = self.list_mandates(viewer, filter.clone(), page).await?;
            out.extend(found.items);
            if out.len() >= most {
                *truncated |= out.len() > most || found.next.is_some();
                out.truncate(most);
                return Ok(out);
            }
            match found.next {
                Some(next) => page = PageRequest::new(Some(next.0), Some(200))?,
                None => return Ok(out),
            }
        }
    }

    /// The burn-down of each active mandate the viewer sees that has a budget.
    async fn burn_downs(
        &self,
        viewer: &Principal,
        now: DateTime<Utc>,
        truncated: &mut bool,
    ) -> Result<Vec<BurnDown>, CoreError> {
        let filter = MandateFilter {
            status: Some(MandateStatus::Active),
            ..MandateFilter::default()
        };
        let mut active = self
            .mandates_where(viewer, filter, MAX_MANDATES, truncated)
            .await?;
        active.retain(|m| {
            m.terms.budgets.max_calls.is_some() || m.terms.budgets.max_amount.is_some()
        });
        // The nearest to running out first.
        active.sort_by(|a, b| {
            share_left(b)
                .partial_cmp(&share_left(a))
                .unwrap_or(std::cmp::Ordering::Equal)
                .reverse()
                .then_with(|| a.id.to_string().cmp(&b.id.to_string()))
        });
        *truncated |= active.len() > MAX_BURNS;
        active.truncate(MAX_BURNS);
        let mut out = Vec::new();
        for m in active {
            let filter = AuditFilter {
                mandate: Some(m.id),
                kind: Some(EventKind::Decision),
                since: m.activated_at,
                ..AuditFilter::default()
            };
            let mut decisions = Vec::new();
            let cut = self
                .read_events(m.tenant_id, &filter, &mut decisions)
                .await?;
            let points = burn_points(&m, &decisions, now);
            out.push(BurnDown {
                mandate: m.id,
                intent: m.terms.intent.clone(),
                agent: m.terms.agent_id,
                started: m.activated_at.unwrap_or(m.created_at),
                expires: m.terms.expires_at,
                max_calls: m.terms.budgets.max_calls,
                max_amount: m.terms.budgets.max_amount,
                currency: m.terms.budgets.currency.clone(),
                points,
                truncated: cut,
            });
        }
        Ok(out)
    }
}

/// The smallest share of a budget left (1.0: untouched).
fn share_left(m: &Mandate) -> f64 {
    let b = &m.terms.budgets;
    let left = |used: u64, max: Option<u64>| {
        max.map_or(1.0, |max| {
            if max == 0 {
                0.0
            } else {
                #[allow(clippy::cast_precision_loss, reason = "a sort key")]
                let share = 1.0 - (used.min(max) as f64 / max as f64);
                share
            }
        })
    };
    left(m.usage.calls, b.max_calls).min(left(m.usage.amount, b.max_amount))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn event(kind: EventKind, at: DateTime<Utc>, agent: AgentId, data: Value) -> Event {
        let mandate = MandateId::generate();
        Event {
            schema: 1,
            seq: 1,
            tenant_id: TenantId::generate(),
            at,
            kind,
            mandate_id: Some(mandate),
            agent_id: Some(agent),
            human_id: None,
            actor: vec![],
            data: data.as_object().cloned().unwrap_or_default(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn decisions_count_by_outcome_and_only_for_tool_calls() {
        let since = Utc::now() - Duration::hours(3);
        let until = since + Duration::hours(3);
        let (a, b) = (AgentId::generate(), AgentId::generate());
        let call = |o: &str| json!({"action": "call_tool", "outcome": o});
        let events = vec![
            event(EventKind::Decision, since, a, call("allow")),
            event(
                EventKind::Decision,
                since + Duration::minutes(61),
                a,
                call("allow"),
            ),
            event(
                EventKind::Decision,
                since + Duration::minutes(61),
                a,
                call("deny"),
            ),
            event(
                EventKind::Decision,
                since + Duration::minutes(62),
                b,
                call("deny"),
            ),
            // Held or proposed: counted by their own events, not as calls.
            event(EventKind::Decision, since, b, call("approval_required")),
            event(EventKind::ApprovalRequested, since, b, json!({})),
            // A listing is not a call.
            event(
                EventKind::Decision,
                since,
                a,
                json!({"action": "list_tools", "outcome": "list"}),
            ),
            event(
                EventKind::DriftAlert,
                until - Duration::seconds(1),
                b,
                json!({}),
            ),
            // Outside the window.
            event(EventKind::Decision, until, a, call("allow")),
            event(
                EventKind::Decision,
                since - Duration::seconds(1),
                a,
                call("allow"),
            ),
            // Not counted at all.
            event(EventKind::TokenIssued, since, a, json!({})),
        ];
        let (starts, total, agents, mandates) = tally(&events, since, until, Duration::hours(1));
        assert_eq!(starts.len(), 3);
        assert_eq!(
            total[0],
            Counts {
                calls: 1,
                denials: 0,
                approvals: 1,
                drift_alerts: 0
            }
        );
        assert_eq!(
            total[1],
            Counts {
                calls: 1,
                denials: 2,
                approvals: 0,
                drift_alerts: 0
            }
        );
        assert_eq!(
            total[2],
            Counts {
                calls: 0,
                denials: 0,
                approvals: 0,
                drift_alerts: 1
            }
        );
        assert_eq!(agents.len(), 2);
        // The busiest first: b has a denial, an approval and a drift alert (3), a has
        // two calls and a denial (3): a tie, broken by id.
        let sums: u64 = agents.iter().map(|s| s.sum.total()).sum();
        assert_eq!(sums, 6);
        let of_a = agents
            .iter()
            .find(|s| s.subject == Subject::Agent(a))
            .unwrap();
        assert_eq!(
            of_a.sum,
            Counts {
                calls: 2,
                denials: 1,
                approvals: 0,
                drift_alerts: 0
            }
        );
        // Each event names its own mandate here: one series per counted event.
        assert_eq!(mandates.len(), 6);
    }

    #[test]
    fn a_burn_down_climbs_with_allowed_calls_and_ends_at_the_stored_usage() {
        let started = Utc::now() - Duration::hours(2);
        let agent = AgentId::generate();
        let terms: mandate_domain::MandateTerms = serde_json::from_value(json!({
            "agent_id": agent,
            "human_id": mandate_types::HumanId::generate(),
            "intent": "pay rent",
            "scope": {"tools": [{"tool": "bank.transfer"}]},
            "data_ceiling": "internal",
            "mode": "execute",
            "budgets": {"max_calls": 10, "max_amount": 100000, "currency": "USD"},
            "expires_at": (started + Duration::hours(4)).to_rfc3339(),
        }))
        .unwrap();
        let mut m: Mandate = serde_json::from_value(json!({
            "id": MandateId::generate(),
            "tenant_id": TenantId::generate(),
            "terms": terms,
            "terms_hash": "sha256:00",
            "status": "active",
            "requested_by": "admin",
            "created_at": (started - Duration::minutes(5)).to_rfc3339(),
            "updated_at": started.to_rfc3339(),
            "activated_at": started.to_rfc3339(),
            "usage": {"calls": 3, "amount": 30000},
            "version": 4,
        }))
        .unwrap();
        let call =
            |o: &str, amount: u64| json!({"action": "call_tool", "outcome": o, "amount": amount});
        let decisions = vec![
            event(
                EventKind::Decision,
                started + Duration::minutes(1),
                agent,
                call("allow", 10_000),
            ),
            event(
                EventKind::Decision,
                started + Duration::minutes(2),
                agent,
                call("deny", 90_000),
            ),
            event(
                EventKind::Decision,
                started + Duration::minutes(3),
                agent,
                call("allow", 5_000),
            ),
            // Recorded before amounts were: counts as a call of no amount.
            event(
                EventKind::Decision,
                started + Duration::minutes(4),
                agent,
                json!({"action": "call_tool", "outcome": "allow"}),
            ),
        ];
        let now = Utc::now();
        let points = burn_points(&m, &decisions, now);
        let used: Vec<(u64, u64)> = points.iter().map(|p| (p.calls, p.amount)).collect();
        assert_eq!(
            used,
            vec![(0, 0), (1, 10_000), (2, 15_000), (3, 15_000), (3, 30_000)]
        );
        assert_eq!(points[0].at, started);
        assert_eq!(points.last().unwrap().at, now);
        m.usage.calls = 0;
        m.activated_at = None;
        let points = burn_points(&m, &[], now);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].at, m.created_at);
    }

    #[test]
    fn buckets_start_on_round_times() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T13:02:14.5Z")
            .unwrap()
            .to_utc();
        let hour = floor_to(at, Duration::hours(1));
        assert_eq!(hour.to_rfc3339(), "2026-12-05T13:00:00+00:00");
        assert_eq!(
            floor_to(at, Duration::hours(6)).to_rfc3339(),
            "2026-12-05T12:00:00+00:00"
        );
        assert_eq!(
            floor_to(at, Duration::days(1)).to_rfc3339(),
            "2026-12-05T00:00:00+00:00"
        );
        // A window from a rounded start to now: the last bucket holds now.
        let (starts, ..) = tally(&[], hour - Duration::days(1), at, Duration::hours(1));
        assert_eq!(starts.len(), 25);
        assert_eq!(*starts.last().unwrap(), hour);
    }

    #[test]
    fn windows_are_the_offered_ones() {
        assert_eq!(parse_window(None), Ok(7));
        assert_eq!(parse_window(Some(" 30 ")), Ok(30));
        for bad in ["0", "2", "-1", "7d", "99999999999", "<b>"] {
            let err = parse_window(Some(bad)).unwrap_err();
            assert!(err.contains("1, 7, 30"), "{err}");
            assert!(!err.contains('<'), "{err}");
        }
    }
}
