//! Introspection (RFC 7662) and revocation (RFC 7009).

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{Agent, Principal};
use mandate_token::{TaskToken, TokenError};
use serde_json::{Map, Value, json};

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

/// Who asks to revoke: a client (its assertion) or an API caller.
#[derive(Debug, Clone)]
pub enum RevokeRequest<'a> {
    /// An agent authenticated like at the token endpoint.
    Client(&'a TokenRequest),
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
        let (tenant, actor_label, client): (_, String, Option<Agent>) = match who {
            RevokeRequest::Client(req) => {
                let (agent, used) = self.authenticate_client(req).await?;
                self.spend_now(used).await?;
                (agent.tenant_id, format!("agent:{}", agent.id), Some(agent))
            }
            RevokeRequest::Api(p) => (p.tenant(), p.label(), None),
        };
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
                Err(_) => return Ok(()),
            },
            Err(TokenError::Unavailable(m)) => return Err(TokenError::Unavailable(m)),
            Err(_) => return Ok(()),
        };
        if parsed.tenant != tenant {
            return Ok(());
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
            return Ok(());
        }
        let now = self.clock.now();
        let revoked = match self.store.revoke_grant_tree(tenant, &parsed.jti, now).await {
            Ok(r) => r,
            Err(mandate_store::StoreError::Missing { .. }) => return Ok(()),
            Err(e) => return Err(unavailable(e)),
        };
        self.revoked.add(revoked.iter().map(|j| (j.as_str(), now)));
        if !revoked.is_empty() {
            let mut event = NewEvent::new(tenant, EventKind::TokenRevoked, actor_label)
                .with("jti", parsed.jti.clone())
                .with("revoked", json!(revoked));
            if let Some(m) = parsed.mandate {
                event = event.mandate(m);
            }
            if let Some(a) = parsed.actor() {
                event = event.agent(a);
            }
            self.ledger.append(event).await.map_err(unavailable)?;
        }
        Ok(())
    }
}
