use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use mandate_domain::{AgentStatus, Principal, Tenant, canonical};
use mandate_store::{ApiToken, ApiTokenPrincipal, StoreError};
use mandate_types::{AgentId, ApiTokenId, HumanId, Secret, TenantId};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::{CoreError, Service};

/// Every API token starts with this, so secret scanners can recognise a leaked one.
pub const TOKEN_PREFIX: &str = "mdt_";
/// The name of the tenant the embedded default creates.
pub const DEFAULT_TENANT: &str = "default";
const MAX_TOKEN_LEN: usize = 128;

/// A freshly issued API token: the secret is shown once and never stored.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: Secret<String>,
}

/// What the first start of a store produced.
#[derive(Debug)]
pub enum Bootstrap {
    /// The default tenant and its first admin token were created just now.
    Created {
        tenant: TenantId,
        admin: IssuedToken,
    },
    /// The store was set up before (by this process or another replica).
    Existing { tenant: TenantId },
}

/// Admin tokens recently checked against the store, by hash: a policy enforcement
/// point asking the PDP thousands of times a second should not cost a store read each
/// time. Only admin tokens (whose standing depends on nothing else) are kept, for at
/// most [`ADMIN_CACHE_TTL_SECONDS`] and never past their expiry; a token revoked in the
/// store stops working within that time.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdminCache {
    entries: Arc<RwLock<HashMap<String, CachedAdmin>>>,
}

/// A token hash's tenant, and until when it may be trusted without the store.
type CachedAdmin = (TenantId, DateTime<Utc>);

pub const ADMIN_CACHE_TTL_SECONDS: i64 = 5;
const ADMIN_CACHE_MAX: usize = 10_000;

impl AdminCache {
    fn get(&self, hash: &str, now: DateTime<Utc>) -> Option<TenantId> {
        let entries = self.entries.read().ok()?;
        let (tenant, until) = entries.get(hash)?;
        (now < *until).then_some(*tenant)
    }

    fn put(
        &self,
        hash: String,
        tenant: TenantId,
        expires: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let ttl = now + chrono::Duration::seconds(ADMIN_CACHE_TTL_SECONDS);
        let until = expires.map_or(ttl, |exp| exp.min(ttl));
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= ADMIN_CACHE_MAX {
                entries.retain(|_, (_, until)| now < *until);
                if entries.len() >= ADMIN_CACHE_MAX {
                    entries.clear();
                }
            }
            entries.insert(hash, (tenant, until));
        }
    }
}

fn hash_token(token: &str) -> String {
    canonical::hex(&Sha256::digest(token.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl Service {
    /// Creates the default tenant and its first admin token, unless they exist. Safe to
    /// call from several replicas at once: exactly one of them gets `Created`.
    pub async fn bootstrap(&self) -> Result<Bootstrap, CoreError> {
        if let Some(t) = self.store.tenant_by_name(DEFAULT_TENANT).await? {
            return Ok(Bootstrap::Existing { tenant: t.id });
        }
        let tenant = Tenant {
            id: TenantId::generate(),
            name: DEFAULT_TENANT.to_owned(),
            created_at: self.clock.now(),
        };
        match self.store.create_tenant(&tenant).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                let t = self
                    .store
                    .tenant_by_name(DEFAULT_TENANT)
                    .await?
                    .ok_or_else(|| CoreError::Internal("default tenant vanished".to_owned()))?;
                return Ok(Bootstrap::Existing { tenant: t.id });
            }
            Err(e) => return Err(e.into()),
        }
        let admin = self
            .issue_token(tenant.id, ApiTokenPrincipal::Admin, "bootstrap admin")
            .await?;
        Ok(Bootstrap::Created {
            tenant: tenant.id,
            admin,
        })
    }

    /// Creates an admin token for `tenant` (operators use it to recover access).
    pub async fn issue_admin_token(
        &self,
        tenant: TenantId,
        label: &str,
    ) -> Result<IssuedToken, CoreError> {
        self.issue_token(tenant, ApiTokenPrincipal::Admin, label)
            .await
    }

    /// An API token for a human, issued by an admin.
    pub async fn issue_human_token(
        &self,
        caller: &Principal,
        human: HumanId,
        label: &str,
    ) -> Result<IssuedToken, CoreError> {
        let tenant = self.require_admin(caller)?;
        self.human(caller, human).await?;
        self.issue_token(tenant, ApiTokenPrincipal::Human { id: human }, label)
            .await
    }

    /// An API token for an agent, issued by an admin.
    pub async fn issue_agent_token(
        &self,
        caller: &Principal,
        agent: AgentId,
        label: &str,
    ) -> Result<IssuedToken, CoreError> {
        let tenant = self.require_admin(caller)?;
        self.agent(caller, agent).await?;
        self.issue_token(tenant, ApiTokenPrincipal::Agent { id: agent }, label)
            .await
    }

    async fn issue_token(
        &self,
        tenant: TenantId,
        principal: ApiTokenPrincipal,
        label: &str,
    ) -> Result<IssuedToken, CoreError> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 100 {
            return Err(CoreError::invalid("`label` must be 1 to 100 characters"));
        }
        let secret = new_secret();
        let token = ApiToken {
            id: ApiTokenId::generate(),
            tenant_id: tenant,
            principal,
            token_hash: hash_token(&secret),
            label: label.to_owned(),
            created_at: self.clock.now(),
            expires_at: None,
            revoked_at: None,
        };
        self.store.create_api_token(&token).await?;
        Ok(IssuedToken {
            token,
            secret: Secret::new(secret),
        })
    }

    /// Turns a bearer token into a principal. Unknown, malformed, expired and revoked
    /// tokens, and tokens of disabled agents, are all simply not accepted.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, CoreError> {
        if !bearer.starts_with(TOKEN_PREFIX)
            || bearer.len() > MAX_TOKEN_LEN
            || !bearer
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(CoreError::Unauthenticated);
        }
        let hash = hash_token(bearer);
        let now = self.clock.now();
        if let Some(tenant) = self.admins.get(&hash, now) {
            return Ok(Principal::Admin { tenant });
        }
        let Some(token) = self.store.api_token_by_hash(&hash).await? else {
            return Err(CoreError::Unauthenticated);
        };
        if token.revoked_at.is_some() || token.expires_at.is_some_and(|exp| exp <= now) {
            return Err(CoreError::Unauthenticated);
        }
        let tenant = token.tenant_id;
        match token.principal {
            ApiTokenPrincipal::Admin => {
                self.admins.put(hash, tenant, token.expires_at, now);
                Ok(Principal::Admin { tenant })
            }
            ApiTokenPrincipal::Human { id } => match self.store.human(tenant, id).await? {
                Some(_) => Ok(Principal::Human { tenant, id }),
                None => Err(CoreError::Unauthenticated),
            },
            ApiTokenPrincipal::Agent { id } => match self.store.agent(tenant, id).await? {
                Some(agent) if agent.status == AgentStatus::Active => {
                    Ok(Principal::Agent { tenant, id })
                }
                Some(_) => Err(CoreError::Forbidden(format!("agent `{id}` is disabled"))),
                None => Err(CoreError::Unauthenticated),
            },
        }
    }

    /// Authenticates an agent by a task token of ours presented to the admin API: it
    /// must be addressed to this server (`aud` = the issuer), carry the
    /// `mandates:request` scope, pass every check of a resource (DPoP included), and
    /// belong to an active agent.
    pub async fn authenticate_task_token(
        &self,
        presented: &crate::Presented<'_>,
    ) -> Result<Principal, CoreError> {
        let tokens = self.tokens.as_ref().ok_or(CoreError::Unauthenticated)?;
        let token = tokens.verify_access(presented).await.map_err(|e| match e {
            mandate_token::TokenError::Unavailable(m) => CoreError::Unavailable(m),
            _ => CoreError::Unauthenticated,
        })?;
        if !token
            .scope
            .iter()
            .any(|s| s == mandate_token::REQUEST_MANDATES_SCOPE)
        {
            return Err(CoreError::Forbidden(
                "this token is for tools, not the admin API".into(),
            ));
        }
        let id = token.actor().ok_or(CoreError::Unauthenticated)?;
        match self.store.agent(token.tenant, id).await? {
            Some(agent) if agent.status == AgentStatus::Active => Ok(Principal::Agent {
                tenant: token.tenant,
                id,
            }),
            Some(_) => Err(CoreError::Forbidden(format!("agent `{id}` is disabled"))),
            None => Err(CoreError::Unauthenticated),
        }
    }

    pub(crate) fn require_admin(&self, caller: &Principal) -> Result<TenantId, CoreError> {
        match caller {
            Principal::Admin { tenant } => Ok(*tenant),
            _ => Err(CoreError::Forbidden(
                "only an administrator may do this".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_admins_last_five_seconds_and_never_past_expiry() {
        use chrono::TimeZone as _;
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let tenant = TenantId::generate();
        let cache = AdminCache::default();
        assert_eq!(cache.get("h", t), None);
        cache.put("h".into(), tenant, None, t);
        assert_eq!(
            cache.get("h", t + chrono::Duration::seconds(4)),
            Some(tenant)
        );
        assert_eq!(cache.get("h", t + chrono::Duration::seconds(5)), None);
        cache.put(
            "e".into(),
            tenant,
            Some(t + chrono::Duration::seconds(1)),
            t,
        );
        assert_eq!(cache.get("e", t + chrono::Duration::seconds(1)), None);
        assert_eq!(cache.get("other", t), None);
    }

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
