//! The vault and the port to the credential broker: what to add to a request to an
//! upstream. The agent never sees these headers; they are marked sensitive and never
//! logged.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderMap;
use mandate_broker::postgres_roles::{DynamicCredential, PostgresRoles};
use mandate_broker::{BasicUsername, Injection, MasterKeys, SealError, Sealed};
use mandate_domain::{Mandate, Principal, ToolServer};
use mandate_store::{SecretMeta, Store};
use mandate_types::{MandateId, Secret, TenantId};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::CallError;
use super::connections::connection_provider;
use super::exchange::{exchange_of, per_person_credential};
use crate::CoreError;

#[async_trait]
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// Headers carrying `server`'s credential for a call under `mandate`; empty when
    /// the server has none. An error means the call must not be forwarded.
    async fn headers(&self, server: &ToolServer, mandate: &Mandate)
    -> Result<HeaderMap, CallError>;
    /// Headers carrying `server`'s credential for listing its tools before any mandate
    /// exists (the consent screen). A credential made per mandate cannot be presented
    /// then: an error, and nothing is sent.
    async fn listing_headers(&self, server: &ToolServer) -> Result<HeaderMap, CallError>;
}

/// No broker configured: servers without a credential work; a server that names one is
/// refused (its calls would reach the upstream unauthenticated).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

#[async_trait]
impl Credentials for NoCredentials {
    async fn headers(&self, server: &ToolServer, _: &Mandate) -> Result<HeaderMap, CallError> {
        self.listing_headers(server).await
    }

    async fn listing_headers(&self, server: &ToolServer) -> Result<HeaderMap, CallError> {
        match &server.credential_ref {
            None => Ok(HeaderMap::new()),
            Some(_) => Err(CallError::Unavailable(format!(
                "tool server `{}` needs a credential, but no credential broker is configured (set MANDATE_MASTER_KEY or MANDATE_MASTER_KEY_FILE)",
                server.name
            ))),
        }
    }
}

/// The credential broker: secrets sealed in the store under the master keys, and
/// PostgreSQL roles made per mandate.
///
/// A tool server's `credential_ref` names what to inject:
/// - `secret:NAME` — a vault secret (`PUT /v1/secrets/NAME`), stored sealed as
///   `{"value": …, "inject": {"kind": "bearer" | "header" | "basic", …}}` with the
///   tenant and name as associated data;
/// - `postgres-role:ROLE` — a login role created for the calling mandate (member of
///   `ROLE`, `VALID UNTIL` the mandate's expiry), injected as Basic credentials, and
///   dropped when the mandate ends ([`Broker::drop_ended`]);
/// - `connection:PROVIDER` — the mandate's person's own connection to the configured
///   upstream provider, its access token injected as a bearer token (connections.rs).
/// - `exchange:NAME` — a token the upstream's authorization server issues for the
///   mandate's person and agent against assertions Mandate signs (RFC 8693 / RFC 7523;
///   exchange.rs), injected as a bearer token.
pub struct Broker {
    pub(super) store: Arc<dyn Store>,
    pub(super) keys: MasterKeys,
    roles: Option<Arc<PostgresRoles>>,
    /// Dynamic credentials already made, by mandate: reused until the mandate ends.
    made: Mutex<HashMap<MandateId, (TenantId, DynamicCredential)>>,
    /// People's connections to upstream providers, when any provider is configured.
    pub(super) connections: Option<super::connections::ConnectionSettings>,
    /// One refresh at a time on this replica (another replica's is settled by the
    /// store's compare-and-swap).
    pub(super) refreshing: Mutex<()>,
    /// Upstream authorization servers that issue tokens for Mandate's assertions.
    pub(super) exchanges: Option<super::exchange::ExchangeSettings>,
    /// Tokens they issued, kept until shortly before they expire.
    pub(super) kept: super::exchange::Kept,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field(
                "keys",
                &self.keys.ids().map(|k| k.to_string()).collect::<Vec<_>>(),
            )
            .field("postgres_roles", &self.roles.is_some())
            .finish_non_exhaustive()
    }
}

/// What `PUT /v1/secrets/{name}` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretInput {
    /// The secret itself; never returned, logged or audited.
    pub value: String,
    /// How it is presented upstream.
    #[schema(value_type = Object)]
    pub inject: Injection,
}

#[derive(Serialize, Deserialize)]
struct SealedSecret {
    value: String,
    inject: Injection,
}

const SECRET_PREFIX: &str = "secret:";
const ROLE_PREFIX: &str = "postgres-role:";

fn aad(tenant: TenantId, name: &str) -> Vec<u8> {
    format!("{tenant}/{name}").into_bytes()
}

pub(super) fn unavailable(what: impl std::fmt::Display) -> CallError {
    tracing::error!(error = %what, "credential broker failed; the call is not forwarded");
    CallError::Unavailable("the upstream's credential is unavailable; nothing was forwarded".into())
}

impl Broker {
    pub fn new(store: Arc<dyn Store>, keys: MasterKeys, roles: Option<PostgresRoles>) -> Broker {
        Broker {
            store,
            keys,
            roles: roles.map(Arc::new),
            made: Mutex::new(HashMap::new()),
            connections: None,
            refreshing: Mutex::new(()),
            exchanges: None,
            kept: super::exchange::Kept::default(),
        }
    }

    /// Seals and stores a secret (replacing one of the same name).
    pub async fn put_secret(
        &self,
        caller: &Principal,
        name: &str,
        input: SecretInput,
    ) -> Result<SecretMeta, CoreError> {
        let Principal::Admin { tenant } = caller else {
            return Err(CoreError::Forbidden(
                "only an administrator may store secrets".into(),
            ));
        };
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(CoreError::invalid(
                "a secret's name is 1 to 128 characters of `a-z A-Z 0-9 _ - .`",
            ));
        }
        let secret = Secret::new(input.value);
        // Refuse what could never be injected, now rather than at the first call.
        input
            .inject
            .header(&secret)
            .map_err(|e| CoreError::invalid(format!("`value`: {e}")))?;
        let plain = serde_json::to_vec(&SealedSecret {
            value: secret.expose().clone(),
            inject: input.inject,
        })
        .map_err(|e| CoreError::Internal(e.to_string()))?;
        let sealed = self
            .keys
            .seal(&plain, &aad(*tenant, name))
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let now = chrono::Utc::now();
        self.store
            .put_secret(
                *tenant,
                name,
                &sealed.to_string(),
                sealed.key_id().as_str(),
                now,
            )
            .await?;
        self.store
            .list_secrets(*tenant)
            .await?
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| CoreError::Internal("a stored secret vanished".into()))
    }

    pub async fn list_secrets(&self, caller: &Principal) -> Result<Vec<SecretMeta>, CoreError> {
        let Principal::Admin { tenant } = caller else {
            return Err(CoreError::Forbidden(
                "only an administrator may list secrets".into(),
            ));
        };
        Ok(self.store.list_secrets(*tenant).await?)
    }

    pub async fn delete_secret(&self, caller: &Principal, name: &str) -> Result<(), CoreError> {
        let Principal::Admin { tenant } = caller else {
            return Err(CoreError::Forbidden(
                "only an administrator may delete secrets".into(),
            ));
        };
        if self.store.delete_secret(*tenant, name).await? {
            Ok(())
        } else {
            Err(CoreError::not_found("secret", name))
        }
    }

    /// Reseals every secret not sealed under the newest key; returns how many.
    pub async fn reseal_all(&self) -> Result<usize, CoreError> {
        let mut after = None;
        let mut done = 0;
        loop {
            let page = self.store.sealed_secrets_page(after.as_ref(), 200).await?;
            let Some(last) = page.last() else {
                return Ok(done);
            };
            after = Some(mandate_store::SecretCursor {
                tenant_id: last.tenant_id,
                name: last.name.clone(),
            });
            for stored in &page {
                let sealed: Sealed = stored
                    .sealed
                    .parse()
                    .map_err(|e: SealError| CoreError::Internal(e.to_string()))?;
                if !self.keys.needs_reseal(&sealed) {
                    continue;
                }
                let fresh = self
                    .keys
                    .reseal(&sealed, &aad(stored.tenant_id, &stored.name))
                    .map_err(|e| CoreError::Internal(e.to_string()))?;
                if self
                    .store
                    .replace_sealed(
                        stored.tenant_id,
                        &stored.name,
                        &stored.sealed,
                        &fresh.to_string(),
                        fresh.key_id().as_str(),
                    )
                    .await?
                {
                    done += 1;
                }
            }
        }
    }

    /// Drops the PostgreSQL roles of mandates that ended; returns how many.
    pub async fn drop_ended(&self) -> usize {
        let Some(roles) = &self.roles else {
            return 0;
        };
        let made: Vec<(MandateId, TenantId)> = {
            let made = self.made.lock().await;
            made.iter().map(|(m, (t, _))| (*m, *t)).collect()
        };
        let mut dropped = 0;
        for (mandate, tenant) in made {
            let ended = match self.store.mandate(tenant, mandate).await {
                Ok(Some(m)) => m.status.is_final() || m.terms.expires_at <= chrono::Utc::now(),
                Ok(None) => true,
                Err(_) => false,
            };
            if ended {
                match roles.drop_for_mandate(&mandate.to_string()).await {
                    Ok(_) => {
                        self.made.lock().await.remove(&mandate);
                        dropped += 1;
                    }
                    Err(e) => {
                        tracing::warn!(mandate = %mandate, error = %e, "cannot drop a mandate's PostgreSQL role yet")
                    }
                }
            }
        }
        dropped
    }

    /// A vault secret of `server`'s tenant, opened: its value and how it is injected.
    pub(super) async fn vault_secret(
        &self,
        server: &ToolServer,
        name: &str,
    ) -> Result<(Secret<String>, Injection), CallError> {
        let stored = self
            .store
            .secret(server.tenant_id, name)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                unavailable(format!(
                    "tool server `{}` names secret `{name}`, which does not exist",
                    server.name
                ))
            })?;
        let sealed: Sealed = stored.sealed.parse().map_err(unavailable)?;
        let plain = self
            .keys
            .open(&sealed, &aad(server.tenant_id, name))
            .map_err(unavailable)?;
        let secret: SealedSecret = serde_json::from_slice(plain.expose()).map_err(unavailable)?;
        Ok((Secret::new(secret.value), secret.inject))
    }

    async fn vault_header(&self, server: &ToolServer, name: &str) -> Result<HeaderMap, CallError> {
        let (value, inject) = self.vault_secret(server, name).await?;
        let (header, value) = inject.header(&value).map_err(unavailable)?;
        let mut headers = HeaderMap::new();
        headers.insert(header, value);
        Ok(headers)
    }

    async fn role_header(
        &self,
        member_of: &str,
        mandate: &Mandate,
    ) -> Result<HeaderMap, CallError> {
        let Some(roles) = &self.roles else {
            return Err(unavailable(
                "a tool server asks for a PostgreSQL role, but no dynamic-credential database is configured",
            ));
        };
        let mut made = self.made.lock().await;
        let credential = match made.get(&mandate.id) {
            Some((_, c)) if c.valid_until > chrono::Utc::now() => c.clone(),
            _ => {
                let c = roles
                    .create_for_mandate(
                        &mandate.id.to_string(),
                        mandate.terms.expires_at,
                        &[member_of.to_owned()],
                    )
                    .await
                    .map_err(unavailable)?;
                made.insert(mandate.id, (mandate.tenant_id, c.clone()));
                c
            }
        };
        let inject = Injection::Basic {
            username: BasicUsername::try_from(credential.username.clone()).map_err(unavailable)?,
        };
        let (header, value) = inject.header(&credential.password).map_err(unavailable)?;
        let mut headers = HeaderMap::new();
        headers.insert(header, value);
        Ok(headers)
    }
}

#[async_trait]
impl Credentials for Broker {
    async fn headers(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
    ) -> Result<HeaderMap, CallError> {
        match server.credential_ref.as_deref() {
            None => Ok(HeaderMap::new()),
            Some(r) => match (r.strip_prefix(SECRET_PREFIX), r.strip_prefix(ROLE_PREFIX)) {
                (Some(name), _) => self.vault_header(server, name).await,
                (_, Some(role)) => self.role_header(role, mandate).await,
                _ => match (connection_provider(server), exchange_of(server)) {
                    (Some(provider), _) => self.connection_header(server, mandate, provider).await,
                    (_, Some(name)) => self.exchange_header(server, mandate, name).await,
                    _ => self.vault_header(server, r).await,
                },
            },
        }
    }

    async fn listing_headers(&self, server: &ToolServer) -> Result<HeaderMap, CallError> {
        match server.credential_ref.as_deref() {
            None => Ok(HeaderMap::new()),
            Some(r) if r.starts_with(ROLE_PREFIX) => Err(CallError::Unavailable(format!(
                "tool server `{}` takes a credential made per mandate; it is listed once a mandate calls it",
                server.name
            ))),
            // A person's token is never used to build what every caller of the tenant
            // sees: such a server is listed without a credential.
            Some(_) if per_person_credential(server) => Ok(HeaderMap::new()),
            Some(r) => {
                self.vault_header(server, r.strip_prefix(SECRET_PREFIX).unwrap_or(r))
                    .await
            }
        }
    }
}
