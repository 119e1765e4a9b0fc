//! Introspection (RFC 7662) and revocation (RFC 7009).

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{Agent, Principal};
use mandate_store::{Entry, Refusal, RevokeTree};
use mandate_token::{TaskToken, TokenError};
use mandate_types::TenantId;
use serde_json::{Map, Value, json};

use super::refresh::REFRESH_PREFIX;
use super::{TokenService, unavailable};
use crate::tokens::issue::TokenRequest;

/// An introspection answer: `{"active": false}` or the token's claims.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Introspection(pub Map<String, Value>);

impl Introspection {
    fn inactive() -> Introspection {
        let mut m = Map::new();
        m.insert("active".into(), Value::Bool(false));
        Introspection(m)
    }
}

/// Who asks to revoke: a client (its assertion), a public client (its `client_id`:
/// its own refresh tokens only) or an API caller.
#[derive(Debug, Clone)]
pub enum RevokeRequest<'a> {
    /// An agent authenticated like at the token endpoint.
    Client(&'a TokenRequest),
    /// A public OAuth client, which has no credential (RFC 7009 §2.1).
    Public { client_id: &'a str },
    /// An admin or human API caller.
    Api(&'a Principal),
}

impl TokenService {
    /// Introspects `token` for an API caller of the same tenant (resource servers use
    /// an admin token). Anything not valid, or from another tenant, is inactive.
    pub async fn introspect(
        &self,
        caller: &Principal,
        token: &str,
    ) -> Result<Introspection, TokenError> {
        if !matches!(caller, Principal::Admin { .. }) {
            return Err(TokenError::InvalidClient(
                "introspection needs an admin token".into(),
            ));
        }
        let parsed = match self.live_token(token).await {
            Ok(t) => t,
            Err(TokenError::Unavailable(m)) => return Err(TokenError::Unavailable(m)),
            Err(_) => return Ok(Introspection::inactive()),
        };
        if parsed.tenant != caller.tenant() {
            return Ok(Introspection::inactive());
        }
        let mut claims = parsed.to_claims();
        claims.insert("active".into(), Value::Bool(true));
        claims.insert(
            "token_type".into(),
            json!(if parsed.cnf_jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            }),
        );
        Ok(Introspection(claims))
    }

    /// Revokes `token` and everything delegated from it. A client may revoke tokens
    /// it holds or that were delegated from its own; an admin any token of its
    /// tenant; a human the tokens of mandates they granted. Unknown or invalid tokens
    /// are ignored (RFC 7009 §2.2): the answer does not reveal which tokens exist.
    pub async fn revoke(&self, who: RevokeRequest<'_>, token: &str) -> Result<(), TokenError> {
        if token.starts_with(REFRESH_PREFIX) {
            return self.revoke_refresh(who, token).await;
        }
        let (tenant, actor_label, client, used): (_, String, Option<Agent>, _) = match who {
            // A public client holds refresh tokens; its access tokens expire in minutes.
            RevokeRequest::Public { .. } => return Ok(()),
            RevokeRequest::Client(req) => {
                let (agent, used) = self.authenticate_client(req).await?;
                (
                    agent.tenant_id,
                    format!("agent:{}", agent.id),
                    Some(agent),
                    used,
                )
            }
            RevokeRequest::Api(p) => (p.tenant(), p.label(), None, Vec::new()),
        };
        // Whatever follows, the client's assertion is used (with the revocation when there
        // is one, else on its own).
        match self
            .revocation(tenant, &actor_label, client.as_ref(), who, token)
            .await?
        {
            Some(entry) => {
                let entry = Entry {
                    assertions: used,
                    ..entry
                };
                self.commit_revocation(entry).await
            }
            None => self.spend_now(used).await,
        }
    }

    /// Commits an entry that revokes a grant tree and puts what it revoked now on this
    /// replica's list at once (the others read it from the store).
    pub(super) async fn commit_revocation(&self, entry: Entry) -> Result<(), TokenError> {
        match self.ledger.commit(entry).await.map_err(unavailable)? {
            Ok(Some(event)) => {
                let revoked = event.data.get("revoked").and_then(Value::as_array);
                let now = self.clock.now();
                self.revoked.add(
                    revoked
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|j| (j, now)),
                );
                Ok(())
            }
            // Nothing was revoked now (it was before), or the grant is unknown.
            Ok(None) | Err(Refusal::Missing { .. }) => Ok(()),
            Err(refused) => Err(super::issue::refusal(refused, super::issue::Via::Mandate)),
        }
    }

    /// RFC 7009 for a refresh token: its whole family is revoked (the tree of the
    /// family's first access token), by the client it was issued to, an admin of its
    /// tenant or the human whose mandate it serves. Anything else changes nothing and
    /// is answered alike.
    async fn revoke_refresh(&self, who: RevokeRequest<'_>, token: &str) -> Result<(), TokenError> {
        let (actor_label, used) = match who {
            RevokeRequest::Client(req) => {
                // Agents authenticated by assertion hold no refresh tokens; their
                // assertion is used all the same.
                let (_, used) = self.authenticate_client(req).await?;
                return self.spend_now(used).await;
            }
            RevokeRequest::Public { client_id } => (format!("client:{client_id}"), Vec::new()),
            RevokeRequest::Api(p) => (p.label(), Vec::new()),
        };
        let Some((record, grant)) = self.refresh_record(token).await? else {
            return self.spend_now(used).await;
        };
        let allowed = match who {
            RevokeRequest::Public { client_id } => grant.client_id == client_id,
            RevokeRequest::Api(p @ Principal::Admin { .. }) => p.tenant() == record.tenant_id,
            RevokeRequest::Api(Principal::Human { id, tenant }) => {
                *tenant == record.tenant_id && *id == grant.human_id
            }
            _ => false,
        };
        if !allowed {
            return Ok(());
        }
        let event = NewEvent::new(record.tenant_id, EventKind::TokenRevoked, actor_label)
            .mandate(grant.mandate_id)
            .human(grant.human_id)
            .agent(grant.agent_id)
            .with("jti", grant.family.clone())
            .with("refresh_token", true);
        self.commit_revocation(super::refresh::family_revocation(
            record.tenant_id,
            &grant,
            event,
        ))
        .await
    }

    /// What revoking `token` writes, or `None` when there is nothing the caller may
    /// revoke (RFC 7009 §2.2: the answer does not tell which).
    async fn revocation(
        &self,
        tenant: TenantId,
        actor_label: &str,
        client: Option<&Agent>,
        who: RevokeRequest<'_>,
        token: &str,
    ) -> Result<Option<Entry>, TokenError> {
        let parsed: TaskToken = match self.verify_signature(token).await {
            Ok(claims) => match TaskToken::from_claims(
                &claims,
                &mandate_token::Expect {
                    issuer: &self.config.issuer,
                    audience: None,
                    // Expired tokens may be revoked too (harmless): read them as of issue.
                    now: claims.time("iat").ok().flatten().unwrap_or_default(),
                    skew: self.config.skew_seconds,
                },
            ) {
                Ok(t) => t,
                Err(_) => return Ok(None),
            },
            Err(TokenError::Unavailable(m)) => return Err(TokenError::Unavailable(m)),
            Err(_) => return Ok(None),
        };
        if parsed.tenant != tenant {
            return Ok(None);
        }
        let allowed = match (&client, who) {
            (Some(agent), _) => parsed.actors.contains(&agent.id),
            (None, RevokeRequest::Api(Principal::Admin { .. })) => true,
            (None, RevokeRequest::Api(Principal::Human { id, .. })) => {
                parsed.subject == id.to_string()
            }
            _ => false,
        };
        if !allowed {
            return Ok(None);
        }
        let mut event = NewEvent::new(tenant, EventKind::TokenRevoked, actor_label)
            .with("jti", parsed.jti.clone());
        if let Some(m) = parsed.mandate {
            event = event.mandate(m);
        }
        if let Some(a) = parsed.actor() {
            event = event.agent(a);
        }
        Ok(Some(Entry {
            revoke: Some(RevokeTree {
                tenant_id: tenant,
                jti: parsed.jti,
            }),
            event: Some(event),
            ..Entry::default()
        }))
    }
}
