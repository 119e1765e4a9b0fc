//! Access reviews: per agent, what it holds and what it did with it over the last N
//! days, and the findings a reviewer should look at.
//!
//! ```text
//!   reviewer (admin: every agent of the tenant; a person: the agents they own or
//!   sponsor; an agent: refused)
//!     ─► each agent: its mandates (listed: live ones and those that ended in the
//!        window; in scope: active ones and those that ended in the window)
//!     ─► per mandate: its `decision` and `drift.alert` events since the window's start
//!        (the ledger's mandate index), its approvals asked in the window
//!     ─► the catalog's tool servers with a credential reference the scope reaches,
//!        the vault's secret names
//!     ─► findings: scope entries no allowed call used (`unused_scope`), tools
//!        refused (`denied_attempts`), mandates that raised a drift alert
//!        (`drift_alert`); each with a stable id (agent + kind + subject) and the
//!        reviewer's mark on it, if any
//! ```
//!
//! Marking a finding and revoking from the report are in `act.rs`; the CSV export in
//! `csv.rs`.

mod act;
mod csv;
mod gather;

use chrono::{DateTime, Duration, Utc};
use mandate_domain::{Agent, AgentStatus, MandateStatus, Principal};
use mandate_store::{AgentFilter, FindingMark, PageRequest};
use mandate_types::{AgentId, HumanId, MandateId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{CoreError, Service};

pub use act::{MarkRequest, ReviewRevocation, RevokeRequest, Skipped};
pub use csv::{CSV_COLUMNS, to_csv};

/// The window when none is asked for, in days.
pub const DEFAULT_DAYS: u32 = 30;
/// The longest window, in days.
pub const MAX_DAYS: u32 = 365;
/// How many of the newest denied attempts and drift alerts each agent's report lists.
pub const LATEST: usize = 5;
/// The most agents one report covers (`truncated` beyond).
pub const MAX_AGENTS: usize = 1_000;

/// The window asked for: `days` as given in a query (`None`: [`DEFAULT_DAYS`]).
/// An error says what is wrong in words fit for the caller.
pub fn parse_days(raw: Option<&str>) -> Result<u32, String> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_DAYS);
    };
    let shown: String = raw.chars().take(32).collect();
    match raw.trim().parse::<u32>() {
        Ok(days) if (1..=MAX_DAYS).contains(&days) => Ok(days),
        _ => Err(format!(
            "`days`: `{shown}` is not a whole number of days from 1 to {MAX_DAYS}"
        )),
    }
}

/// A stable finding id: the same agent, kind and subject give the same id in every
/// report, so a reviewer's mark stays with it.
pub fn finding_id(agent: AgentId, kind: FindingKind, subject: &str) -> String {
    let digest = Sha256::digest(format!("{agent}\n{}\n{subject}", kind.as_str()).as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("fnd_{hex}")
}

/// What to review.
#[derive(Debug, Clone, Copy)]
pub struct ReviewQuery {
    /// The window: the last `days` days.
    pub days: u32,
    /// Only this agent.
    pub agent: Option<AgentId>,
}

/// The access review of the agents a reviewer may see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewReport {
    pub generated_at: DateTime<Utc>,
    pub days: u32,
    /// The window's start: `generated_at` minus `days`.
    pub since: DateTime<Utc>,
    pub agents: Vec<AgentReview>,
    /// More agents than one report covers ([`MAX_AGENTS`]); ask per agent.
    pub truncated: bool,
}

/// A person, by name (absent when the record cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PersonRef {
    #[schema(value_type = String)]
    pub id: HumanId,
    pub name: Option<String>,
}

/// One agent's review.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentReview {
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    pub name: String,
    pub status: AgentStatus,
    pub owner: PersonRef,
    pub sponsors: Vec<PersonRef>,
    pub mandates: Vec<MandateSummary>,
    /// The union of the scopes of its mandates that are active or ended in the window.
    pub scope: Vec<String>,
    /// Tools called with an allowed decision in the window, with how often.
    pub tools_used: Vec<ToolUse>,
    /// Scope entries that no allowed call in the window used.
    pub unused_scope: Vec<String>,
    pub denied: DeniedSummary,
    pub drift_alerts: DriftSummary,
    pub approvals: ApprovalCounts,
    /// Credentials the broker injects for tool servers its scope reaches (names only).
    pub credentials: Vec<ReachableCredential>,
    /// The people whose data it touched: the grantor and named data owners of each
    /// mandate under which a call was allowed in the window.
    pub humans_touched: Vec<TouchedHuman>,
    pub findings: Vec<Finding>,
    /// A mandate had more events in the window than one report reads: counts are lower
    /// bounds.
    pub truncated: bool,
}

/// A mandate as the review shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MandateSummary {
    #[schema(value_type = String)]
    pub id: MandateId,
    pub status: MandateStatus,
    /// The grantor.
    pub human: PersonRef,
    pub intent: String,
    pub tools: Vec<String>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ToolUse {
    pub tool: String,
    pub calls: u64,
}

/// Refused attempts in the window: how many, and the newest few.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct DeniedSummary {
    pub count: u64,
    pub latest: Vec<DeniedAttempt>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeniedAttempt {
    pub at: DateTime<Utc>,
    /// The `decision` event's sequence number in the ledger.
    pub seq: u64,
    #[schema(value_type = String)]
    pub mandate_id: MandateId,
    pub tool: String,
    pub reason: Option<String>,
    /// Refused because the scope does not cover the tool.
    pub out_of_scope: bool,
}

/// Drift alerts in the window: how many, and the newest few.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct DriftSummary {
    pub count: u64,
    pub latest: Vec<DriftAlertView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DriftAlertView {
    pub at: DateTime<Utc>,
    pub seq: u64,
    #[schema(value_type = String)]
    pub mandate_id: MandateId,
    pub denied: u64,
    pub out_of_scope: u64,
}

/// Approvals asked in the window, by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApprovalCounts {
    pub asked: u64,
    /// Approved (used or not yet).
    pub given: u64,
    pub denied: u64,
    pub pending: u64,
    pub expired: u64,
}

/// A credential the broker would inject for a call of this agent: where, and its name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReachableCredential {
    /// The tool server's name.
    pub server: String,
    /// `secret` (a vault secret) or `postgres-role` (a login role made per mandate).
    pub kind: String,
    /// The secret's or the role's name: never a value.
    pub name: String,
    /// For a vault secret: whether the vault holds it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<bool>,
    /// The scope entries that reach the server.
    pub via: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TouchedHuman {
    #[schema(value_type = String)]
    pub id: HumanId,
    pub name: Option<String>,
    /// Allowed calls in the window under mandates this person is party to.
    pub calls: u64,
}

/// What a reviewer should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A scope entry that no allowed call used in the window (subject: the entry).
    UnusedScope,
    /// Calls of a tool were refused in the window (subject: the tool).
    DeniedAttempts,
    /// A mandate raised a drift alert in the window (subject: the mandate id).
    DriftAlert,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::UnusedScope => "unused_scope",
            FindingKind::DeniedAttempts => "denied_attempts",
            FindingKind::DriftAlert => "drift_alert",
        }
    }
}

/// A finding, with the reviewer's latest mark on it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Finding {
    /// Stable across reports: derived from agent, kind and subject.
    pub id: String,
    pub kind: FindingKind,
    pub subject: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<MarkView>,
}

/// What a reviewer decided about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarkStatus {
    Acknowledged,
    AcceptedRisk,
    Remediated,
}

impl MarkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkStatus::Acknowledged => "acknowledged",
            MarkStatus::AcceptedRisk => "accepted_risk",
            MarkStatus::Remediated => "remediated",
        }
    }

    pub fn parse(s: &str) -> Option<MarkStatus> {
        [
            MarkStatus::Acknowledged,
            MarkStatus::AcceptedRisk,
            MarkStatus::Remediated,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MarkView {
    pub status: MarkStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `admin` or `human:hum_…`.
    pub marked_by: String,
    pub marked_at: DateTime<Utc>,
}

impl MarkView {
    fn of(mark: &FindingMark) -> Option<MarkView> {
        Some(MarkView {
            status: MarkStatus::parse(&mark.status)?,
            comment: mark.comment.clone(),
            marked_by: mark.marked_by.clone(),
            marked_at: mark.marked_at,
        })
    }
}

impl Service {
    /// The access review of the agents `caller` may review: every agent of the tenant
    /// for an admin, those a person owns or sponsors. Agents may not review.
    pub async fn review(
        &self,
        caller: &Principal,
        query: ReviewQuery,
    ) -> Result<ReviewReport, CoreError> {
        if !(1..=MAX_DAYS).contains(&query.days) {
            return Err(CoreError::invalid(format!(
                "`days` must be from 1 to {MAX_DAYS}"
            )));
        }
        let (agents, truncated) = self.reviewed_agents(caller, query.agent).await?;
        let now = self.clock.now();
        let since = now - Duration::days(i64::from(query.days));
        let ids: Vec<AgentId> = agents.iter().map(|a| a.id).collect();
        let marks = self
            .store
            .finding_marks(caller.tenant(), Some(&ids))
            .await?;
        let mut context = gather::Context::load(self, caller.tenant(), now, since).await?;
        let mut reviews = Vec::with_capacity(agents.len());
        for agent in &agents {
            let mut review = context.agent(agent).await?;
            for finding in &mut review.findings {
                finding.mark = marks
                    .iter()
                    .find(|m| m.finding_id == finding.id)
                    .and_then(MarkView::of);
            }
            reviews.push(review);
        }
        Ok(ReviewReport {
            generated_at: now,
            days: query.days,
            since,
            agents: reviews,
            truncated,
        })
    }

    /// The agents `caller` reviews (one when `only` is given), and whether there were
    /// more than a report covers.
    async fn reviewed_agents(
        &self,
        caller: &Principal,
        only: Option<AgentId>,
    ) -> Result<(Vec<Agent>, bool), CoreError> {
        let filter = match caller {
            Principal::Admin { .. } => AgentFilter::default(),
            Principal::Human { id, .. } => AgentFilter {
                accountable: Some(*id),
                ..AgentFilter::default()
            },
            Principal::Agent { .. } => {
                return Err(CoreError::Forbidden(
                    "agents may not read access reviews".to_owned(),
                ));
            }
        };
        if let Some(id) = only {
            return Ok((vec![self.agent(caller, id).await?], false));
        }
        let mut agents = Vec::new();
        let mut page = PageRequest::first(500);
        loop {
            let found = self
                .store
                .list_agents(caller.tenant(), &filter, &page)
                .await?;
            agents.extend(found.items);
            if agents.len() > MAX_AGENTS {
                agents.truncate(MAX_AGENTS);
                return Ok((agents, true));
            }
            match found.next {
                Some(next) => page = PageRequest::new(Some(next.0), Some(500))?,
                None => return Ok((agents, false)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_bounded_whole_numbers() {
        assert_eq!(parse_days(None), Ok(DEFAULT_DAYS));
        assert_eq!(parse_days(Some("7")), Ok(7));
        assert_eq!(parse_days(Some("365")), Ok(365));
        for bad in ["0", "366", "-1", "1.5", "", "abc", "99999999999999999999"] {
            let e = parse_days(Some(bad)).unwrap_err();
            assert!(e.contains("from 1 to 365"), "{bad}: {e}");
        }
        // A long hostile value is cut in the message.
        let e = parse_days(Some(&"9".repeat(500))).unwrap_err();
        assert!(e.len() < 120, "{e}");
    }

    #[test]
    fn finding_ids_are_stable_and_distinct() {
        let agent = AgentId::generate();
        let a = finding_id(agent, FindingKind::UnusedScope, "bank.transfer");
        assert_eq!(
            a,
            finding_id(agent, FindingKind::UnusedScope, "bank.transfer")
        );
        assert!(a.starts_with("fnd_") && a.len() == 28, "{a}");
        assert_ne!(
            a,
            finding_id(agent, FindingKind::DeniedAttempts, "bank.transfer")
        );
        assert_ne!(
            a,
            finding_id(agent, FindingKind::UnusedScope, "bank.get_balance")
        );
        assert_ne!(
            a,
            finding_id(
                AgentId::generate(),
                FindingKind::UnusedScope,
                "bank.transfer"
            )
        );
    }

    #[test]
    fn mark_statuses_round_trip() {
        for s in ["acknowledged", "accepted_risk", "remediated"] {
            assert_eq!(MarkStatus::parse(s).map(MarkStatus::as_str), Some(s));
        }
        assert_eq!(MarkStatus::parse("ignored"), None);
    }
}
