use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use mandate_types::{
    AgentId, ConsentId, DataClass, HumanId, MandateId, MandateMode, RiskTier, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::canonical;

/// The longest a mandate may be granted for. Longer-lived authority is a standing
/// credential by another name.
pub const MAX_MANDATE_TTL: Duration = Duration::days(90);
/// The deepest delegation chain a mandate may allow.
pub const MAX_DELEGATION_DEPTH: u8 = 8;
const MAX_INTENT_CHARS: usize = 2_000;
const MAX_SCOPE_ENTRIES: usize = 256;
const MAX_OWNERS: usize = 64;

/// The terms a human consents to. Immutable once the mandate exists: a consent is bound
/// to their hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MandateTerms {
    /// The grantee.
    pub agent_id: AgentId,
    /// The grantor: the human on whose behalf the agent acts.
    pub human_id: HumanId,
    /// What the task is, in the human's words.
    pub intent: String,
    /// A short label for the purpose, e.g. `travel-booking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub scope: Scope,
    /// The most sensitive data class any tool call may touch.
    pub data_ceiling: DataClass,
    pub mode: MandateMode,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub approval: ApprovalRules,
    /// Other people whose data the task affects; each must consent too.
    #[serde(default)]
    pub owners: BTreeSet<HumanId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    /// How many delegation hops below the grantee are allowed (0: none).
    #[serde(default)]
    pub max_delegation_depth: u8,
}

/// Whether a scope entry covers `name`: it names it exactly, or it is a pattern ending in
/// `*` that `name` starts with. `name` may itself be a pattern (`q*`), which an entry
/// `p*` covers only when `q` starts with `p`, and an exact entry never does. The one
/// rule for mandates' scopes, tokens' scopes and their narrowing.
pub fn scope_covers(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

/// The tools a mandate covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub tools: Vec<ToolGrant>,
}

/// One tool (by name, e.g. `flights.book`, or pattern, e.g. `calendar.*`) with optional
/// constraints on its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolGrant {
    pub tool: String,
    /// Argument name → constraint. Every constraint must hold for a call to be in scope.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, ArgumentConstraint>,
}

/// A restriction on one argument of a tool call. At least one field is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgumentConstraint {
    /// The argument must equal one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub one_of: Option<Vec<Value>>,
    /// The argument must be a number no greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// The argument must be a number no less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
}

/// Limits on how much the agent may do under the mandate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    /// The most the agent may spend, in the currency's minor units (cents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<u64>,
    /// ISO 4217 code of `max_amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Which calls need a human's approval, one by one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRules {
    #[serde(default)]
    pub tiers: BTreeSet<RiskTier>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
}

/// Why a set of terms cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    #[error("`{field}` {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> TermsError {
    TermsError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl MandateTerms {
    /// Checks the terms as a whole against `now`, and normalises them (the grantor is
    /// never also listed as an owner). Parse, don't validate: the use cases only ever
    /// hold terms that passed here.
    pub fn validated(mut self, now: DateTime<Utc>) -> Result<Self, TermsError> {
        let intent = self.intent.trim();
        if intent.is_empty() {
            return Err(invalid("intent", "must not be empty"));
        }
        if intent.chars().count() > MAX_INTENT_CHARS {
            return Err(invalid(
                "intent",
                format!("must be at most {MAX_INTENT_CHARS} characters"),
            ));
        }
        self.intent = intent.to_owned();
        if let Some(purpose) = &self.purpose
            && (purpose.is_empty() || purpose.len() > 64 || !purpose.bytes().all(is_label_byte))
        {
            return Err(invalid(
                "purpose",
                "must be 1 to 64 characters of `a-z A-Z 0-9 . _ -`",
            ));
        }
        if self.scope.tools.is_empty() {
            return Err(invalid("scope.tools", "must name at least one tool"));
        }
        if self.scope.tools.len() > MAX_SCOPE_ENTRIES {
            return Err(invalid(
                "scope.tools",
                format!("must name at most {MAX_SCOPE_ENTRIES} tools"),
            ));
        }
        for (i, grant) in self.scope.tools.iter().enumerate() {
            validate_grant(&format!("scope.tools[{i}]"), grant)?;
        }
        if let Some(currency) = &self.budgets.currency
            && (currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(invalid(
                "budgets.currency",
                "must be a three-letter ISO 4217 code",
            ));
        }
        if self.budgets.max_amount.is_some() != self.budgets.currency.is_some() {
            return Err(invalid(
                "budgets.currency",
                "must be given exactly when `budgets.max_amount` is",
            ));
        }
        for tag in &self.approval.tags {
            if tag.is_empty() || tag.len() > 64 || !tag.bytes().all(is_label_byte) {
                return Err(invalid(
                    "approval.tags",
                    format!("`{}` is not a valid tag", truncate(tag)),
                ));
            }
        }
        self.owners.remove(&self.human_id);
        if self.owners.len() > MAX_OWNERS {
            return Err(invalid(
                "owners",
                format!("must list at most {MAX_OWNERS} humans"),
            ));
        }
        if self.expires_at <= now {
            return Err(invalid("expires_at", "must be in the future"));
        }
        if self.expires_at > now + MAX_MANDATE_TTL {
            return Err(invalid(
                "expires_at",
                format!("must be within {} days", MAX_MANDATE_TTL.num_days()),
            ));
        }
        if let Some(nbf) = self.not_before
            && nbf >= self.expires_at
        {
            return Err(invalid("not_before", "must be before `expires_at`"));
        }
        if self.max_delegation_depth > MAX_DELEGATION_DEPTH {
            return Err(invalid(
                "max_delegation_depth",
                format!("must be at most {MAX_DELEGATION_DEPTH}"),
            ));
        }
        Ok(self)
    }

    /// The canonical hash of these terms: what a consent is bound to.
    pub fn hash(&self) -> TermsHash {
        // Serialising plain data to a `Value` cannot fail; a `Null` would only make the
        // hash useless, never equal to a real consent's hash.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        TermsHash(format!("sha256:{}", canonical::sha256_hex(&value)))
    }

    /// Everyone whose consent makes the mandate active: the grantor and every owner.
    pub fn required_consenters(&self) -> BTreeSet<HumanId> {
        let mut all = self.owners.clone();
        all.insert(self.human_id);
        all
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn validate_grant(field: &str, grant: &ToolGrant) -> Result<(), TermsError> {
    let tool = &grant.tool;
    let ok_chars = tool
        .bytes()
        .all(|b| is_label_byte(b) || matches!(b, b'*' | b'/'));
    if tool.is_empty() || tool.len() > 200 || !ok_chars {
        return Err(invalid(
            format!("{field}.tool"),
            "must be 1 to 200 characters of `a-z A-Z 0-9 . _ - / *`",
        ));
    }
    if tool.matches('*').count() > 1 || (tool.contains('*') && !tool.ends_with('*')) {
        return Err(invalid(
            format!("{field}.tool"),
            "may hold one `*`, at the end (e.g. `calendar.*`)",
        ));
    }
    for (arg, c) in &grant.constraints {
        let at = format!("{field}.constraints.{arg}");
        if c.one_of.is_none() && c.max.is_none() && c.min.is_none() {
            return Err(invalid(at, "must set `one_of`, `max` or `min`"));
        }
        if let Some(values) = &c.one_of
            && (values.is_empty() || values.len() > 1_000)
        {
            return Err(invalid(at, "`one_of` must hold 1 to 1000 values"));
        }
        if let (Some(min), Some(max)) = (c.min, c.max)
            && min > max
        {
            return Err(invalid(at, "`min` must not exceed `max`"));
        }
    }
    Ok(())
}

/// The canonical hash of a mandate's terms, `sha256:` followed by 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct TermsHash(pub String);

impl fmt::Display for TermsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a mandate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MandateStatus {
    Requested,
    Active,
    Completed,
    Revoked,
    Expired,
    Denied,
}

impl MandateStatus {
    pub const ALL: [MandateStatus; 6] = [
        MandateStatus::Requested,
        MandateStatus::Active,
        MandateStatus::Completed,
        MandateStatus::Revoked,
        MandateStatus::Expired,
        MandateStatus::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MandateStatus::Requested => "requested",
            MandateStatus::Active => "active",
            MandateStatus::Completed => "completed",
            MandateStatus::Revoked => "revoked",
            MandateStatus::Expired => "expired",
            MandateStatus::Denied => "denied",
        }
    }

    /// A final status: nothing can happen to the mandate any more.
    pub fn is_final(self) -> bool {
        !matches!(self, MandateStatus::Requested | MandateStatus::Active)
    }
}

impl fmt::Display for MandateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MandateStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MandateStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown mandate status `{}`, expected one of: requested active completed revoked expired denied",
                    truncate(s)
                )
            })
    }
}

/// How much of its budgets a mandate has used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub calls: u64,
    pub amount: u64,
}

/// A human's consent to one task, and everything that happened to it since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Mandate {
    pub id: MandateId,
    pub tenant_id: TenantId,
    pub terms: MandateTerms,
    pub terms_hash: TermsHash,
    pub status: MandateStatus,
    /// Who asked for the mandate (`agent:…`, `human:…` or `admin`).
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended, in the words of whoever ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    /// Optimistic-concurrency version: bumped by every stored change.
    pub version: u64,
}

/// What a consenter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentDecision {
    Granted,
    Denied,
}

/// Through which channel a consent was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChannel {
    Api,
    Console,
    Oauth,
}

/// One consenter's recorded answer, bound to the hash of the terms they saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Consent {
    pub id: ConsentId,
    pub tenant_id: TenantId,
    pub mandate_id: MandateId,
    pub human_id: HumanId,
    pub decision: ConsentDecision,
    pub terms_hash: TermsHash,
    pub channel: ConsentChannel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// Something that may change a mandate's status.
#[derive(Debug, Clone, Copy)]
pub enum MandateEvent<'a> {
    /// A consenter answered; `prior` are the answers recorded before this one.
    Consent {
        consent: &'a Consent,
        prior: &'a [Consent],
    },
    Complete {
        reason: Option<&'a str>,
    },
    Revoke {
        reason: Option<&'a str>,
    },
    /// The expiry time has passed.
    Expire,
}

impl MandateEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            MandateEvent::Consent { .. } => "consent",
            MandateEvent::Complete { .. } => "complete",
            MandateEvent::Revoke { .. } => "revoke",
            MandateEvent::Expire => "expire",
        }
    }
}

/// A change the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot {event} a mandate that is {from}")]
    Illegal {
        from: MandateStatus,
        event: &'static str,
    },
    #[error("the consent is for terms `{consented}`, but the mandate's terms are `{current}`")]
    TermsChanged {
        consented: TermsHash,
        current: TermsHash,
    },
    #[error("human `{0}` is neither the grantor nor a named owner of this mandate")]
    NotAConsenter(HumanId),
    #[error("human `{0}` has already answered this mandate")]
    AlreadyAnswered(HumanId),
    #[error("the mandate does not expire until {0}")]
    NotDue(DateTime<Utc>),
}

impl Mandate {
    /// A new mandate in status `requested`.
    pub fn request(
        tenant_id: TenantId,
        terms: MandateTerms,
        requested_by: String,
        now: DateTime<Utc>,
    ) -> Self {
        Mandate {
            id: MandateId::generate(),
            tenant_id,
            terms_hash: terms.hash(),
            terms,
            status: MandateStatus::Requested,
            requested_by,
            created_at: now,
            updated_at: now,
            activated_at: None,
            ended_at: None,
            end_reason: None,
            usage: Usage::default(),
            version: 0,
        }
    }

    /// Applies `event` at `now`. The only place a mandate's status changes; on error the
    /// mandate is left exactly as it was.
    pub fn apply(
        &mut self,
        event: MandateEvent<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        use MandateStatus::*;
        let illegal = || LifecycleError::Illegal {
            from: self.status,
            event: event.name(),
        };
        let next = match (self.status, event) {
            (Requested, MandateEvent::Consent { consent, prior }) => {
                self.check_consent(consent, prior)?;
                match consent.decision {
                    ConsentDecision::Denied => Denied,
                    ConsentDecision::Granted => {
                        let granted: BTreeSet<HumanId> = prior
                            .iter()
                            .chain(std::iter::once(consent))
                            .filter(|c| {
                                c.decision == ConsentDecision::Granted
                                    && c.terms_hash == self.terms_hash
                            })
                            .map(|c| c.human_id)
                            .collect();
                        if self.terms.required_consenters().is_subset(&granted) {
                            Active
                        } else {
                            Requested
                        }
                    }
                }
            }
            (Active, MandateEvent::Complete { .. }) => Completed,
            (Active, MandateEvent::Revoke { .. }) => Revoked,
            (Requested | Active, MandateEvent::Expire) => {
                if now < self.terms.expires_at {
                    return Err(LifecycleError::NotDue(self.terms.expires_at));
                }
                Expired
            }
            _ => return Err(illegal()),
        };
        if next == Active && self.status != Active {
            self.activated_at = Some(now);
        }
        if next.is_final() {
            self.ended_at = Some(now);
            self.end_reason = match event {
                MandateEvent::Complete { reason } | MandateEvent::Revoke { reason } => {
                    reason.map(str::to_owned)
                }
                MandateEvent::Expire => Some("expired".to_owned()),
                MandateEvent::Consent { .. } => Some("consent denied".to_owned()),
            };
        }
        self.status = next;
        self.updated_at = now;
        Ok(())
    }

    /// Whether the expiry time has passed while the mandate was still live.
    pub fn is_due_to_expire(&self, now: DateTime<Utc>) -> bool {
        !self.status.is_final() && now >= self.terms.expires_at
    }

    fn check_consent(&self, consent: &Consent, prior: &[Consent]) -> Result<(), LifecycleError> {
        if consent.terms_hash != self.terms_hash || self.terms.hash() != self.terms_hash {
            return Err(LifecycleError::TermsChanged {
                consented: consent.terms_hash.clone(),
                current: self.terms.hash(),
            });
        }
        if !self.terms.required_consenters().contains(&consent.human_id) {
            return Err(LifecycleError::NotAConsenter(consent.human_id));
        }
        if prior.iter().any(|c| c.human_id == consent.human_id) {
            return Err(LifecycleError::AlreadyAnswered(consent.human_id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
