//! The `refresh_token` grant (RFC 6749 §6) of public clients: every refresh is a fresh
//! decision, tokens rotate and are used once (RFC 9700 §4.14.2), and a refresh token
//! obtained with DPoP is bound to that key (RFC 9449 §5).
//!
//! ```text
//! authorization_code ─► access token A0 — its grant is the family's root — and R1
//! refresh_token R1   ─► R1 read (by SHA-256): unknown                        (invalid_grant)
//!                       used before ─► the family (A0's grant tree) revoked, token.revoked
//!                                                                            (invalid_grant)
//!                       expired, another client, no proof by its DPoP key    (invalid_grant,
//!                                                                             R1 untouched)
//!                    ─► agent active, mandate live, decide_grant(exchange_token) now
//!                    ─► one commit in the ledger's batch: R1 spent (Entry::once: exactly
//!                       one use wins), grant A1 under A0 (refused when A0 was revoked —
//!                       the family ended — or the mandate is no longer live), R2 stored
//!                       (Entry::issue), token.renewed
//! ```
//!
//! A refresh token expires with its mandate; a mandate's end revokes A0 with every
//! grant under the mandate, and RFC 7009 revocation of a refresh token (or of A0)
//! revokes A0's tree: both are store writes, so every replica refuses the family next.

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{AgentStatus, Mandate, MandateStatus};
use mandate_store::{Entry, OnceKind, OnceRecord, RevokeTree, SpentOnce, UsedAssertion};
use mandate_token::{TokenError, random_id};
use mandate_types::{AgentId, HumanId, MandateId, TenantId};
use serde::{Deserialize, Serialize};

use super::code::{authorized_resource, public_client};
use super::issue::{DpopRequired, OnceWrites, Parent, narrow};
use super::{TokenService, unavailable};
use crate::oauth::sha256_hex;
use crate::{TokenRequest, TokenResponse};

/// RFC 6749 grant type.
pub const REFRESH_TOKEN: &str = "refresh_token";

/// What every refresh token starts with (its rest: 256 random bits).
pub(crate) const REFRESH_PREFIX: &str = "mrt_";

/// What a refresh that found its token used says (the handler then revokes the family).
pub(super) const USED: &str = "the refresh token was used before or has expired";

/// What a refresh token is bound to (stored under the token's SHA-256, never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefreshGrant {
    pub client_id: String,
    /// The jti of the family's first access token: its grant tree is the family.
    pub family: String,
    pub mandate_id: MandateId,
    pub human_id: HumanId,
    pub agent_id: AgentId,
    /// The resource authorized (RFC 8707).
    pub resource: String,
    /// The scope granted at authorization; a refresh may only narrow it.
    pub scope: Vec<String>,
    /// The DPoP key's thumbprint when the client used DPoP.
    pub jkt: Option<String>,
}

impl TokenService {
    /// A new refresh token for `grant`, living until its mandate ends: the token to
    /// hand out and the record the commit stores.
    pub(super) fn new_refresh_token(
        &self,
        tenant: TenantId,
        grant: &RefreshGrant,
        mandate: &Mandate,
    ) -> Result<(String, OnceRecord), TokenError> {
        // Two 128-bit ids: 256 random bits.
        let token = format!("{}{}", random_id(REFRESH_PREFIX)?, random_id("")?);
        let record = OnceRecord {
            kind: OnceKind::RefreshToken,
            key_hash: sha256_hex(&token),
            tenant_id: tenant,
            data: serde_json::to_string(grant).map_err(unavailable)?,
            expires_at: mandate.terms.expires_at,
            used_at: None,
        };
        Ok((token, record))
    }

    /// Reads a presented refresh token's record and what it is bound to.
    pub(super) async fn refresh_record(
        &self,
        token: &str,
    ) -> Result<Option<(OnceRecord, RefreshGrant)>, TokenError> {
        if !token.starts_with(REFRESH_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        let Some(record) = self
            .store
            .once(OnceKind::RefreshToken, &sha256_hex(token))
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let grant: RefreshGrant = serde_json::from_str(&record.data).map_err(unavailable)?;
        Ok(Some((record, grant)))
    }

    pub(crate) async fn refresh(&self, req: &TokenRequest) -> Result<TokenResponse, TokenError> {
        let client_id = public_client(req, "refresh tokens")?;
        let presented = req
            .refresh_token
            .as_deref()
            .ok_or_else(|| TokenError::InvalidRequest("`refresh_token` is missing".into()))?;
        let unknown = || TokenError::InvalidGrant("the refresh token is unknown".into());
        let (record, grant) = self.refresh_record(presented).await?.ok_or_else(unknown)?;
        let now = self.clock.now();
        if record.used_at.is_some() {
            return Err(self.reused(&record, &grant).await);
        }
        if record.expires_at <= now {
            return Err(TokenError::InvalidGrant(
                "the refresh token has expired with its mandate".into(),
            ));
        }
        // Refusals that leave the token as it is: its holder may still use it.
        if grant.client_id != client_id {
            tracing::warn!(mandate = %grant.mandate_id, "a refresh token was presented by another client");
            return Err(TokenError::InvalidGrant(
                "the refresh token was issued to another client".into(),
            ));
        }
        // A family obtained with DPoP stays bound to its key (checked below); one
        // obtained without a proof was allowed to (the client did not register
        // `dpop_bound_access_tokens`), so its refreshes need none either.
        let mut used = Vec::new();
        let jkt = self.token_endpoint_dpop(req, DpopRequired::ByClient(false), &mut used)?;
        if let Some(bound) = &grant.jkt
            && jkt.as_ref() != Some(bound)
        {
            return Err(TokenError::InvalidGrant(
                "the refresh token is bound to a DPoP key: send a proof signed by that key".into(),
            ));
        }
        authorized_resource(req, &grant.resource, "refresh tokens")?;
        let spent = SpentOnce {
            kind: record.kind,
            key_hash: record.key_hash.clone(),
        };
        match self
            .refresh_rotated(req, &record, &grant, (jkt, used), spent)
            .await
        {
            Err(TokenError::InvalidGrant(m)) if m == USED => {
                // Another request spent it first (a concurrent use), or it just expired.
                if record.expires_at <= self.clock.now() {
                    Err(TokenError::InvalidGrant(
                        "the refresh token has expired with its mandate".into(),
                    ))
                } else {
                    Err(self.reused(&record, &grant).await)
                }
            }
            other => other,
        }
    }

    /// The decision made again against the mandate as it is now, then the new access
    /// token and the next refresh token, committed with the spending of this one.
    async fn refresh_rotated(
        &self,
        req: &TokenRequest,
        record: &OnceRecord,
        grant: &RefreshGrant,
        (jkt, mut used): (Option<String>, Vec<UsedAssertion>),
        spent: SpentOnce,
    ) -> Result<TokenResponse, TokenError> {
        let now = self.clock.now();
        let ended = || TokenError::InvalidGrant("the mandate is no longer active".into());
        let agent = self
            .store
            .agent(record.tenant_id, grant.agent_id)
            .await
            .map_err(unavailable)?
            .filter(|a| a.status == AgentStatus::Active)
            .ok_or_else(|| TokenError::InvalidGrant("the client's agent is disabled".into()))?;
        let mandate = self
            .store
            .mandate(record.tenant_id, grant.mandate_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(ended)?;
        if mandate.status != MandateStatus::Active
            || mandate.terms.expires_at <= now
            || mandate.terms.human_id != grant.human_id
            || mandate.terms.agent_id != agent.id
        {
            return Err(ended());
        }
        // Never a blind refresh: what the policies refuse now is refused.
        self.decide_direct(&agent, &mandate).map_err(|reason| {
            TokenError::InvalidGrant(format!("the mandate no longer allows this: {reason}"))
        })?;
        // Within what was granted and what the mandate holds now.
        let granted: Vec<String> = grant
            .scope
            .iter()
            .filter(|t| mandate.terms.scope.tools.iter().any(|m| &m.tool == *t))
            .cloned()
            .collect();
        if granted.is_empty() {
            return Err(TokenError::InvalidGrant(
                "the mandate no longer grants any of the refresh token's tools".into(),
            ));
        }
        let scope = narrow(&granted, None, req.scope.as_deref())?;
        let audience = self.authorized_audience(&grant.resource);
        let token = self.mandate_token(&mandate, vec![agent.id], &agent, audience, scope, jkt)?;
        // The next refresh token keeps the family, the binding and the scope granted.
        let (next, issue) = self.new_refresh_token(record.tenant_id, grant, &mandate)?;
        let mut response = self
            .record_and_sign(
                token,
                &agent,
                &mut used,
                OnceWrites {
                    spend: Some(spent),
                    issue: Some(issue),
                },
                Some(&mandate),
                Parent::Family(&grant.family),
                EventKind::TokenRenewed,
                &[],
            )
            .await?;
        response.refresh_token = Some(next);
        Ok(response)
    }

    /// A used refresh token came back: someone holds a copy. The whole family is
    /// revoked (every access token obtained through it too) and that is audited.
    async fn reused(&self, record: &OnceRecord, grant: &RefreshGrant) -> TokenError {
        tracing::warn!(mandate = %grant.mandate_id, "refresh token used twice; revoking its family");
        let event = NewEvent::new(record.tenant_id, EventKind::TokenRevoked, "system:oauth")
            .mandate(grant.mandate_id)
            .human(grant.human_id)
            .agent(grant.agent_id)
            .with("jti", grant.family.clone())
            .with("reason", "refresh token used twice");
        if let Err(e) = self
            .commit_revocation(family_revocation(record.tenant_id, grant, event))
            .await
        {
            return e;
        }
        TokenError::InvalidGrant(
            "the refresh token was used before; every token of its family is revoked".into(),
        )
    }
}

/// The entry that ends a refresh token's family: its root grant's tree, and `event`.
pub(super) fn family_revocation(tenant: TenantId, grant: &RefreshGrant, event: NewEvent) -> Entry {
    Entry {
        revoke: Some(RevokeTree {
            tenant_id: tenant,
            jti: grant.family.clone(),
        }),
        event: Some(event),
        ..Entry::default()
    }
}
