use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{
    Consent, ConsentChannel, ConsentDecision, LifecycleError, Mandate, MandateEvent, MandateStatus,
    MandateTerms, Principal, TermsHash,
};
use mandate_store::{MandateFilter, Page, PageRequest, StoreError};
use mandate_types::{ConsentId, HumanId, MandateId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::input::check_text;
use crate::{ConsentRequest, CoreError, EndRequest, Service};

/// How often a write that lost a race is retried on fresh data before giving up.
const MAX_ATTEMPTS: usize = 5;

/// A mandate with the answers given to it: everything `GET /v1/mandates/{id}` shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MandateView {
    #[serde(flatten)]
    pub mandate: Mandate,
    /// Every consenter's answer, oldest first.
    pub consents: Vec<Consent>,
    /// Required consenters who have not answered yet.
    pub awaiting: Vec<HumanId>,
}

/// The ways a mandate can end by someone's hand.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Complete,
    Revoke,
}

impl Service {
    /// Asks for a mandate. It starts `requested`; only its consenters can make it active.
    pub async fn request_mandate(
        &self,
        caller: &Principal,
        terms: MandateTerms,
    ) -> Result<MandateView, CoreError> {
        let tenant = caller.tenant();
        match caller {
            Principal::Admin { .. } => {}
            Principal::Agent { id, .. } if *id == terms.agent_id => {}
            Principal::Agent { .. } => {
                return Err(CoreError::Forbidden(
                    "an agent may only request mandates for itself".to_owned(),
                ));
            }
            Principal::Human { id, .. } if *id == terms.human_id => {}
            Principal::Human { .. } => {
                return Err(CoreError::Forbidden(
                    "a human may only grant mandates in their own name".to_owned(),
                ));
            }
        }
        let now = self.clock.now();
        let terms = terms.validated(now)?;
        match self.store.agent(tenant, terms.agent_id).await? {
            Some(agent) if agent.status == mandate_domain::AgentStatus::Active => {}
            Some(_) => {
                return Err(CoreError::invalid(format!(
                    "`agent_id`: agent `{}` is disabled",
                    terms.agent_id
                )));
            }
            None => {
                return Err(CoreError::invalid(format!(
                    "`agent_id`: agent `{}` does not exist",
                    terms.agent_id
                )));
            }
        }
        for (field, human) in std::iter::once(("human_id", terms.human_id))
            .chain(terms.owners.iter().map(|o| ("owners", *o)))
        {
            if self.store.human(tenant, human).await?.is_none() {
                return Err(CoreError::invalid(format!(
                    "`{field}`: human `{human}` does not exist"
                )));
            }
        }
        let mandate = Mandate::request(tenant, terms, caller.label(), now);
        let requested = mandate_event(&mandate, EventKind::MandateRequested, caller.label())
            .with("intent", mandate.terms.intent.clone())
            .with(
                "tools",
                mandate
                    .terms
                    .scope
                    .tools
                    .iter()
                    .map(|g| g.tool.clone())
                    .collect::<Vec<_>>(),
            )
            .with("expires_at", mandate.terms.expires_at.to_rfc3339());
        self.store.create_mandate(&mandate, &[requested]).await?;
        tracing::info!(mandate = %mandate.id, by = %caller.label(), "mandate requested");
        Ok(view(mandate, Vec::new()))
    }

    /// A mandate and its consents, for the admin, its agent, its grantor and its owners.
    pub async fn mandate(
        &self,
        caller: &Principal,
        id: MandateId,
    ) -> Result<MandateView, CoreError> {
        let mandate = self.live(caller, id).await?;
        let consents = self.store.consents(caller.tenant(), id).await?;
        Ok(view(mandate, consents))
    }

    /// Mandates the caller may see: all for an admin, its own for an agent, and for a
    /// human those they granted or must consent to as a named owner.
    pub async fn list_mandates(
        &self,
        caller: &Principal,
        mut filter: MandateFilter,
        page: PageRequest,
    ) -> Result<Page<Mandate>, CoreError> {
        // The caller's own filters narrow what they may see; they never widen it.
        match caller {
            Principal::Admin { .. } => {}
            Principal::Agent { id, .. } => {
                if filter.agent.is_some_and(|asked| asked != *id) {
                    return Ok(Page::empty());
                }
                filter.agent = Some(*id);
            }
            Principal::Human { id, .. } => {
                if filter.consenter.is_some_and(|asked| asked != *id) {
                    return Ok(Page::empty());
                }
                filter.consenter = Some(*id);
            }
        }
        Ok(self
            .store
            .list_mandates(caller.tenant(), &filter, &page)
            .await?)
    }

    /// Records a consenter's answer. The mandate becomes active once every required
    /// consenter granted the same terms, and denied as soon as one refuses.
    pub async fn consent(
        &self,
        caller: &Principal,
        id: MandateId,
        request: ConsentRequest,
        channel: ConsentChannel,
    ) -> Result<MandateView, CoreError> {
        let Principal::Human { id: me, .. } = caller else {
            return Err(CoreError::Forbidden(
                "only a human (the grantor or a named owner) can consent".to_owned(),
            ));
        };
        if let Some(comment) = &request.comment {
            check_text("comment", comment, 1_000)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let mandate = self.live(caller, id).await?;
            if mandate.status == MandateStatus::Expired {
                return Err(CoreError::Expired(id.to_string()));
            }
            if let Some(shown) = &request.terms_hash
                && *shown != mandate.terms_hash.0
            {
                return Err(LifecycleError::TermsChanged {
                    consented: TermsHash(shown.chars().take(80).collect()),
                    current: mandate.terms_hash.clone(),
                }
                .into());
            }
            if !mandate.terms.required_consenters().contains(me) {
                return Err(CoreError::Forbidden(format!(
                    "human `{me}` is neither the grantor nor a named owner of this mandate"
                )));
            }
            let prior = self.store.consents(caller.tenant(), id).await?;
            let now = self.clock.now();
            let consent = Consent {
                id: ConsentId::generate(),
                tenant_id: caller.tenant(),
                mandate_id: id,
                human_id: *me,
                decision: request.decision,
                terms_hash: mandate.terms_hash.clone(),
                channel,
                comment: request.comment.clone(),
                decided_at: now,
            };
            let mut next = mandate.clone();
            next.apply(
                MandateEvent::Consent {
                    consent: &consent,
                    prior: &prior,
                },
                now,
            )?;
            next.version += 1;
            let answered = match consent.decision {
                ConsentDecision::Granted => EventKind::ConsentGranted,
                ConsentDecision::Denied => EventKind::ConsentDenied,
            };
            let mut audit = vec![
                mandate_event(&next, answered, caller.label())
                    .human(*me)
                    .with("consent_id", consent.id.to_string())
                    .with("channel", channel_name(channel)),
            ];
            if next.status != mandate.status {
                let kind = match next.status {
                    MandateStatus::Active => EventKind::MandateActivated,
                    _ => EventKind::MandateDenied,
                };
                audit.push(mandate_event(&next, kind, caller.label()));
            }
            match self.store.record_consent(&consent, &next, &audit).await {
                Ok(()) => {
                    tracing::info!(mandate = %id, human = %me, decision = ?consent.decision, status = %next.status, "consent recorded");
                    let mut consents = prior;
                    consents.push(consent);
                    return Ok(view(next, consents));
                }
                Err(StoreError::VersionConflict) => continue,
                Err(StoreError::Conflict { .. }) => {
                    return Err(LifecycleError::AlreadyAnswered(*me).into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Conflict(
            "the mandate kept changing; retry".to_owned(),
        ))
    }

    /// Ends an active mandate because its task is done: its agent, its grantor, or an admin.
    pub async fn complete(
        &self,
        caller: &Principal,
        id: MandateId,
        request: EndRequest,
    ) -> Result<MandateView, CoreError> {
        self.end(caller, id, request, Ending::Complete).await
    }

    /// Withdraws an active mandate: its grantor, a named owner, or an admin.
    pub async fn revoke(
        &self,
        caller: &Principal,
        id: MandateId,
        request: EndRequest,
    ) -> Result<MandateView, CoreError> {
        self.end(caller, id, request, Ending::Revoke).await
    }

    async fn end(
        &self,
        caller: &Principal,
        id: MandateId,
        request: EndRequest,
        ending: Ending,
    ) -> Result<MandateView, CoreError> {
        if let Some(reason) = &request.reason {
            check_text("reason", reason, 1_000)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let mandate = self.live(caller, id).await?;
            if mandate.status == MandateStatus::Expired {
                return Err(CoreError::Expired(id.to_string()));
            }
            let allowed = match (ending, caller) {
                (_, Principal::Admin { .. }) => true,
                (Ending::Complete, Principal::Agent { id: me, .. }) => {
                    mandate.terms.agent_id == *me
                }
                (Ending::Complete, Principal::Human { id: me, .. }) => {
                    mandate.terms.human_id == *me
                }
                (Ending::Revoke, Principal::Human { id: me, .. }) => {
                    mandate.terms.required_consenters().contains(me)
                }
                (Ending::Revoke, Principal::Agent { .. }) => false,
            };
            if !allowed {
                let who = match ending {
                    Ending::Complete => "its agent, its grantor or an administrator",
                    Ending::Revoke => "its grantor, a named owner or an administrator",
                };
                let verb = match ending {
                    Ending::Complete => "complete",
                    Ending::Revoke => "revoke",
                };
                return Err(CoreError::Forbidden(format!(
                    "only {who} may {verb} this mandate"
                )));
            }
            let now = self.clock.now();
            let mut next = mandate.clone();
            let reason = request.reason.as_deref();
            let event = match ending {
                Ending::Complete => MandateEvent::Complete { reason },
                Ending::Revoke => MandateEvent::Revoke { reason },
            };
            next.apply(event, now)?;
            next.version += 1;
            let kind = match ending {
                Ending::Complete => EventKind::MandateCompleted,
                Ending::Revoke => EventKind::MandateRevoked,
            };
            let mut ended = mandate_event(&next, kind, caller.label());
            if let Some(reason) = reason {
                ended = ended.with("reason", reason);
            }
            match self.store.update_mandate(&next, &[ended]).await {
                Ok(()) => {
                    tracing::info!(mandate = %id, by = %caller.label(), status = %next.status, "mandate ended");
                    let consents = self.store.consents(caller.tenant(), id).await?;
                    return Ok(view(next, consents));
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Conflict(
            "the mandate kept changing; retry".to_owned(),
        ))
    }

    /// Marks every live mandate whose expiry has passed as expired (up to `limit` of
    /// them); returns how many changed. Run periodically by the server.
    pub async fn expire_due(&self, limit: u32) -> Result<usize, CoreError> {
        let now = self.clock.now();
        let mut expired = 0;
        for mandate in self.store.mandates_due_to_expire(now, limit).await? {
            if self.store_expiry(mandate, now).await?.is_some() {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Loads a mandate the caller may see, settling a passed expiry first so that what
    /// is returned is never a live mandate past its time.
    async fn live(&self, caller: &Principal, id: MandateId) -> Result<Mandate, CoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let mandate = self
                .store
                .mandate(caller.tenant(), id)
                .await?
                .filter(|m| visible_to(m, caller))
                .ok_or_else(|| CoreError::not_found("mandate", id))?;
            let now = self.clock.now();
            if !mandate.is_due_to_expire(now) {
                return Ok(mandate);
            }
            if let Some(expired) = self.store_expiry(mandate, now).await? {
                return Ok(expired);
            }
        }
        Err(CoreError::Conflict(
            "the mandate kept changing; retry".to_owned(),
        ))
    }

    /// Stores the expiry of `mandate`; `None` if it changed concurrently.
    async fn store_expiry(
        &self,
        mut mandate: Mandate,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Mandate>, CoreError> {
        mandate.apply(MandateEvent::Expire, now)?;
        mandate.version += 1;
        let expired = mandate_event(&mandate, EventKind::MandateExpired, "system");
        match self.store.update_mandate(&mandate, &[expired]).await {
            Ok(()) => {
                tracing::info!(mandate = %mandate.id, "mandate expired");
                Ok(Some(mandate))
            }
            Err(StoreError::VersionConflict) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// An event about `mandate`, naming its agent and grantor, the terms it is bound to and
/// the status it has after the change.
pub(crate) fn mandate_event(
    mandate: &Mandate,
    kind: EventKind,
    actor: impl Into<String>,
) -> NewEvent {
    NewEvent::new(mandate.tenant_id, kind, actor)
        .mandate(mandate.id)
        .agent(mandate.terms.agent_id)
        .human(mandate.terms.human_id)
        .with("terms_hash", mandate.terms_hash.0.clone())
        .with("status", mandate.status.as_str())
}

fn channel_name(channel: ConsentChannel) -> &'static str {
    match channel {
        ConsentChannel::Api => "api",
        ConsentChannel::Console => "console",
        ConsentChannel::Oauth => "oauth",
    }
}

pub(crate) fn visible_to(mandate: &Mandate, caller: &Principal) -> bool {
    match caller {
        Principal::Admin { .. } => true,
        Principal::Agent { id, .. } => mandate.terms.agent_id == *id,
        Principal::Human { id, .. } => mandate.terms.required_consenters().contains(id),
    }
}

fn view(mandate: Mandate, consents: Vec<Consent>) -> MandateView {
    let awaiting = if mandate.status == MandateStatus::Requested {
        mandate
            .terms
            .required_consenters()
            .into_iter()
            .filter(|h| !consents.iter().any(|c| c.human_id == *h))
            .collect()
    } else {
        Vec::new()
    };
    MandateView {
        mandate,
        consents,
        awaiting,
    }
}
