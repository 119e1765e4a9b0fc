//! The `authorization_code` grant (RFC 6749 §4.1.3) for public clients, with PKCE
//! (RFC 7636, S256) and the resource bound at authorization (RFC 8707).
//!
//! A code is used once: the store's conditional write, in the ledger batch that issues
//! the token (or on its own when the redemption is refused), lets exactly one
//! redemption through. A second redemption revokes the mandate the code created, and
//! with it every token the first one obtained (RFC 6749 §4.1.2). The redemption also
//! issues the first refresh token of a new family (`refresh.rs`), in the same commit.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_audit::EventKind;
use mandate_domain::{AgentStatus, MandateEvent, MandateStatus};
use mandate_store::{Entry, OnceKind, OnceRecord, Refusal, SpentOnce, StoreError};
use mandate_token::TokenError;
use mandate_types::{MandateId, TenantId};
use sha2::{Digest, Sha256};

use super::issue::{DpopRequired, OnceWrites, Parent, mandate_tools, narrow};
use super::refresh::RefreshGrant;
use super::{TokenService, unavailable};
use crate::oauth::{CodeGrant, sha256_hex};
use crate::{TokenRequest, TokenResponse};

/// RFC 6749 grant type.
pub const AUTHORIZATION_CODE: &str = "authorization_code";

/// A PKCE verifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
fn is_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl TokenService {
    pub(crate) async fn authorization_code(
        &self,
        req: &TokenRequest,
    ) -> Result<TokenResponse, TokenError> {
        let client_id = public_client(req, "authorization codes")?;
        let code = req
            .code
            .as_deref()
            .ok_or_else(|| TokenError::InvalidRequest("`code` is missing".into()))?;
        let verifier = req.code_verifier.as_deref().ok_or_else(|| {
            TokenError::InvalidRequest("`code_verifier` is missing (PKCE)".into())
        })?;
        if !is_verifier(verifier) {
            return Err(TokenError::InvalidRequest(
                "`code_verifier` must be 43 to 128 unreserved characters".into(),
            ));
        }
        if code.len() > 128 {
            return Err(TokenError::InvalidGrant("the code is unknown".into()));
        }
        let now = self.clock.now();
        let spent = SpentOnce {
            kind: OnceKind::AuthorizationCode,
            key_hash: sha256_hex(code),
        };
        let record = self
            .store
            .once(spent.kind, &spent.key_hash)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| TokenError::InvalidGrant("the code is unknown".into()))?;
        let grant: CodeGrant = serde_json::from_str(&record.data).map_err(unavailable)?;
        if record.used_at.is_some() || record.expires_at <= now {
            return Err(self.spent_before(&record, &grant).await);
        }
        // The code is spent from here on, whatever follows: in the commit that issues,
        // or on its own when the redemption is refused (a wrong guess burns it).
        match self
            .redeem(req, client_id, verifier, &record, &grant, &spent)
            .await
        {
            Ok(issued) => Ok(issued),
            Err(TokenError::InvalidGrant(m)) if m == super::issue::SPENT => {
                Err(self.spent_before(&record, &grant).await)
            }
            Err(refused) => {
                let burn = Entry {
                    once: Some(spent),
                    ..Entry::default()
                };
                match self.ledger.commit(burn).await {
                    Ok(Err(Refusal::Used)) => Err(self.spent_before(&record, &grant).await),
                    Ok(_) => Err(refused),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not spend a refused authorization code");
                        Err(refused)
                    }
                }
            }
        }
    }

    /// A code that was found spent: used before (a replay, which revokes the mandate it
    /// created and every token obtained with it), or expired.
    async fn spent_before(&self, record: &OnceRecord, grant: &CodeGrant) -> TokenError {
        let used = match self.store.once(record.kind, &record.key_hash).await {
            Ok(now) => now.is_some_and(|r| r.used_at.is_some()),
            Err(e) => return unavailable(e),
        };
        if !used {
            return TokenError::InvalidGrant("the code has expired".into());
        }
        tracing::warn!(mandate = %grant.mandate_id, "authorization code used twice; revoking its mandate");
        if let Err(e) = self
            .revoke_replayed(record.tenant_id, grant.mandate_id)
            .await
        {
            return e;
        }
        TokenError::InvalidGrant(
            "the code was used before; everything it granted is revoked".into(),
        )
    }

    /// The checks of a redemption after its code was found unused, then the token,
    /// issued in the commit that spends the code.
    async fn redeem(
        &self,
        req: &TokenRequest,
        client_id: &str,
        verifier: &str,
        record: &OnceRecord,
        grant: &CodeGrant,
        spent: &SpentOnce,
    ) -> Result<TokenResponse, TokenError> {
        if grant.client_id != client_id {
            return Err(TokenError::InvalidGrant(
                "the code was issued to another client".into(),
            ));
        }
        if req.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
            return Err(TokenError::InvalidGrant(
                "`redirect_uri` differs from the authorization request's".into(),
            ));
        }
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !same(&computed, &grant.code_challenge) {
            return Err(TokenError::InvalidGrant(
                "the code_verifier does not match the code_challenge".into(),
            ));
        }
        authorized_resource(req, &grant.resource, "authorization codes")?;
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
            .ok_or_else(|| TokenError::InvalidGrant("the mandate no longer exists".into()))?;
        if mandate.terms.human_id != grant.human_id || mandate.terms.agent_id != agent.id {
            return Err(TokenError::InvalidGrant(
                "the code does not match its mandate".into(),
            ));
        }
        self.decide_direct(&agent, &mandate)
            .map_err(TokenError::InvalidGrant)?;
        let mut used = Vec::new();
        let jkt =
            self.token_endpoint_dpop(req, DpopRequired::ByClient(grant.dpop_bound), &mut used)?;
        let granted = mandate_tools(&mandate);
        let scope = narrow(&granted, None, None)?;
        let audience = self.authorized_audience(&grant.resource);
        let token = self.mandate_token(
            &mandate,
            vec![agent.id],
            &agent,
            audience,
            scope,
            jkt.clone(),
        )?;
        // The first refresh token of a family whose root is this token's grant.
        let (refresh, issue) = self.new_refresh_token(
            record.tenant_id,
            &RefreshGrant {
                client_id: grant.client_id.clone(),
                family: token.jti.clone(),
                mandate_id: mandate.id,
                human_id: grant.human_id,
                agent_id: agent.id,
                resource: grant.resource.clone(),
                scope: token.scope.clone(),
                jkt,
            },
            &mandate,
        )?;
        let mut response = self
            .record_and_sign(
                token,
                &agent,
                &mut used,
                OnceWrites {
                    spend: Some(spent.clone()),
                    issue: Some(issue),
                },
                Some(&mandate),
                Parent::None,
                EventKind::TokenIssued,
                &[],
            )
            .await?;
        response.refresh_token = Some(refresh);
        Ok(response)
    }

    /// The audience of a token for an authorized resource: the gateway accepts
    /// `{public}/mcp` on every MCP path; a per-server resource is named beside it.
    pub(super) fn authorized_audience(&self, resource: &str) -> Vec<String> {
        let mcp = format!("{}/mcp", self.config.issuer);
        let mut audience = vec![mcp.clone()];
        if resource != mcp {
            audience.push(resource.to_owned());
        }
        audience
    }

    /// Ends the mandate a replayed code created: every grant under it is revoked in
    /// the same transaction.
    async fn revoke_replayed(&self, tenant: TenantId, id: MandateId) -> Result<(), TokenError> {
        for _ in 0..5 {
            let Some(mandate) = self.store.mandate(tenant, id).await.map_err(unavailable)? else {
                return Ok(());
            };
            if mandate.status != MandateStatus::Active && mandate.status != MandateStatus::Requested
            {
                return Ok(());
            }
            let now = self.clock.now();
            let mut next = mandate.clone();
            let reason = "its authorization code was used twice";
            if next
                .apply(
                    MandateEvent::Revoke {
                        reason: Some(reason),
                    },
                    now,
                )
                .is_err()
            {
                return Ok(());
            }
            next.version += 1;
            let event =
                crate::mandates::mandate_event(&next, EventKind::MandateRevoked, "system:oauth")
                    .with("reason", reason);
            match self.store.update_mandate(&next, &[event]).await {
                Ok(()) => {
                    self.catch_up_revocations().await?;
                    return Ok(());
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(unavailable("the mandate kept changing"))
    }
}

/// A grant redeemed for the resource it was authorized for: `resource` absent or that
/// one, and no `audience` (the resource was chosen when the person authorized it).
pub(super) fn authorized_resource(
    req: &TokenRequest,
    authorized: &str,
    grant: &str,
) -> Result<(), TokenError> {
    match req.resource.as_slice() {
        [] => {}
        [r] if r == authorized => {}
        _ => {
            return Err(TokenError::InvalidTarget(
                "`resource` differs from the one authorized".into(),
            ));
        }
    }
    if !req.audience.is_empty() {
        return Err(TokenError::InvalidRequest(format!(
            "`audience` is not used with {grant}; the resource was authorized"
        )));
    }
    Ok(())
}

/// The `client_id` of a public client's request for a grant issued to it (`grant`
/// names what it redeems); a client assertion has no place there.
pub(super) fn public_client<'r>(req: &'r TokenRequest, grant: &str) -> Result<&'r str, TokenError> {
    if req.client_assertion.is_some() || req.client_assertion_type.is_some() {
        return Err(TokenError::InvalidClient(format!(
            "{grant} are issued to public clients: send `client_id`, no assertion"
        )));
    }
    req.client_id
        .as_deref()
        .ok_or_else(|| TokenError::InvalidRequest("`client_id` is missing".into()))
}
