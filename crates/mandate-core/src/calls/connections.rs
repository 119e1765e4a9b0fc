//! People's connections to upstream tool servers: a tool server whose
//! `credential_ref` is `connection:PROVIDER` is called with the access token of the
//! mandate's person at that provider, never with a shared secret.
//!
//! ```text
//!   call, no connection ─► held (gateway: input_required / refusal with the link)
//!   person opens {public}/ui/connections/{server}/connect (signed in to the console)
//!       ─► Broker::start_connection: state (256 random bits; its SHA-256 kept once,
//!          10 min, the person, server and PKCE verifier sealed under the master key)
//!       ─► provider's authorization endpoint (code + S256)
//!   provider ─► {public}/ui/connections/callback?code&state
//!       ─► Broker::finish_connection: the state's record, of this signed-in person
//!          (another's: refused, left unused) ─► used once (a replay: refused)
//!       ─► code redeemed ─► access + refresh token sealed (aad: tenant/person/server)
//!          ─► upstream_connections, connection.connected (no token material)
//!   later calls ─► opened per call (no cache: a deletion is seen by every replica at
//!       once) ─► refreshed when within a minute of expiry (compare-and-swap in the
//!       store) ─► `Authorization: Bearer …`, marked sensitive
//!   disconnect ─► deleted, connection.revoked, tokens revoked at the provider (RFC 7009)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use mandate_audit::{EventKind, NewEvent};
use mandate_broker::{Injection, Sealed};
use mandate_domain::{Mandate, Principal, ToolServer};
use mandate_store::{ConnectionMeta, OnceKind, OnceRecord, StoredConnection};
use mandate_token::upstream::{Provider, ProviderError, TokenSet, pkce_pair};
use mandate_types::{Clock, HumanId, Secret, TenantId, ToolServerId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::CallError;
use super::vault::{Broker, unavailable};
use crate::{CoreError, Ledger};

const CONNECTION_PREFIX: &str = "connection:";
/// How long a person has between the connect link and the provider's callback.
const STATE_TTL_MINUTES: i64 = 10;
/// An access token is refreshed this long before it expires (or a quarter of its
/// lifetime before, for one that lives under four minutes).
const REFRESH_MARGIN_SECONDS: i64 = 60;
/// The largest state accepted back (ours are 43 characters).
const MAX_STATE: usize = 128;

/// The providers tool servers may name, and what the flow needs around them.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// By the name a `connection:NAME` reference uses.
    pub providers: BTreeMap<String, ConnectionProvider>,
    /// `{public}/ui/connections/callback`, registered with every provider.
    pub redirect_uri: String,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
}

/// One configured provider and the vault secret holding Mandate's client secret.
#[derive(Debug, Clone)]
pub struct ConnectionProvider {
    pub provider: Arc<Provider>,
    /// A vault secret of the tool server's tenant (`PUT /v1/secrets/NAME`).
    pub client_secret: String,
}

/// A connection as the person sees it: no token material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    pub server_id: ToolServerId,
    pub server: String,
    pub provider: String,
    pub scope: String,
    pub connected_at: chrono::DateTime<chrono::Utc>,
}

/// The provider a server's connection is made with, if it takes one.
pub fn connection_provider(server: &ToolServer) -> Option<&str> {
    server
        .credential_ref
        .as_deref()
        .and_then(|r| r.strip_prefix(CONNECTION_PREFIX))
}

/// What is sealed in a connection row.
#[derive(Serialize, Deserialize)]
struct SealedTokens {
    access_token: String,
    refresh_token: Option<String>,
    /// When to refresh it (Unix seconds); `None`: the provider gave no lifetime.
    refresh_at: Option<i64>,
}

/// What is sealed in a pending state's record.
#[derive(Serialize, Deserialize)]
struct PendingState {
    tenant: TenantId,
    human: HumanId,
    server: ToolServerId,
    verifier: String,
}

fn connection_aad(tenant: TenantId, human: HumanId, server: ToolServerId) -> Vec<u8> {
    format!("connection/{tenant}/{human}/{server}").into_bytes()
}

fn state_aad(key_hash: &str) -> Vec<u8> {
    format!("connection-state/{key_hash}").into_bytes()
}

fn state_hash(state: &str) -> String {
    Sha256::digest(state.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `state` as we issue them: 43 base64url characters (256 bits). Anything else is
/// refused before the store is asked.
fn parse_state(state: &str) -> Option<&str> {
    (state.len() == 43
        && state.len() <= MAX_STATE
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(state)
}

fn provider_failed(e: ProviderError) -> CoreError {
    tracing::warn!(error = %e, "an upstream provider failed during a connection");
    CoreError::Invalid {
        detail: "the service's sign-in did not complete; try connecting again".into(),
    }
}

fn person(caller: &Principal) -> Result<(TenantId, HumanId), CoreError> {
    match caller {
        Principal::Human { tenant, id } => Ok((*tenant, *id)),
        _ => Err(CoreError::Forbidden(
            "only a person connects their own account".into(),
        )),
    }
}

impl Broker {
    /// Offers people's connections to the providers in `settings`.
    #[must_use]
    pub fn with_connections(mut self, settings: ConnectionSettings) -> Self {
        self.connections = Some(settings);
        self
    }

    fn settings(&self) -> Result<&ConnectionSettings, CallError> {
        self.connections.as_ref().ok_or_else(|| {
            unavailable("a tool server names a connection, but no upstream provider is configured")
        })
    }

    fn provider(&self, name: &str) -> Result<&ConnectionProvider, CallError> {
        self.settings()?
            .providers
            .get(name)
            .ok_or_else(|| unavailable(format!("no upstream provider `{name}` is configured")))
    }

    fn now(&self) -> Result<chrono::DateTime<chrono::Utc>, CallError> {
        Ok(self.settings()?.clock.now())
    }

    /// Whether a call to `server` under `mandate` must wait for its person to connect:
    /// the server takes a connection and the person has none.
    pub async fn connection_needed(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
    ) -> Result<bool, CallError> {
        if connection_provider(server).is_none() {
            return Ok(false);
        }
        let stored = self
            .store
            .connection(server.tenant_id, mandate.terms.human_id, server.id)
            .await?;
        Ok(stored.is_none())
    }

    /// Records that a call was held for its person's connection.
    pub async fn connection_required(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
        actor: Vec<String>,
    ) -> Result<(), CallError> {
        let mut event = connection_event(
            EventKind::ConnectionRequired,
            server,
            mandate.terms.human_id,
            actor,
            json!({}),
        );
        event.mandate_id = Some(mandate.id);
        event.agent_id = Some(mandate.terms.agent_id);
        self.audit(event).await
    }

    /// The `Authorization: Bearer` header of the person's connection, refreshed first
    /// when its access token is (nearly) expired.
    pub(super) async fn connection_header(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
        provider: &str,
    ) -> Result<HeaderMap, CallError> {
        let entry = self.provider(provider)?;
        let (tenant, human) = (server.tenant_id, mandate.terms.human_id);
        let mut stored = self.stored(tenant, human, server).await?;
        let mut tokens = self.open_tokens(&stored)?;
        let now = self.now()?.timestamp();
        if tokens.refresh_at.is_some_and(|at| at <= now) {
            let _one = self.refreshing.lock().await;
            // Another call may have refreshed while this one waited.
            stored = self.stored(tenant, human, server).await?;
            tokens = self.open_tokens(&stored)?;
            if tokens.refresh_at.is_some_and(|at| at <= now) {
                tokens = self.refresh(server, entry, &stored, tokens).await?;
            }
        }
        let (header, value) = Injection::Bearer
            .header(&Secret::new(tokens.access_token))
            .map_err(unavailable)?;
        let mut headers = HeaderMap::new();
        headers.insert(header, value);
        Ok(headers)
    }

    async fn stored(
        &self,
        tenant: TenantId,
        human: HumanId,
        server: &ToolServer,
    ) -> Result<StoredConnection, CallError> {
        self.store
            .connection(tenant, human, server.id)
            .await?
            .ok_or_else(|| {
                CallError::Unavailable(format!(
                    "the person has no connection to tool server `{}`; nothing was forwarded",
                    server.name
                ))
            })
    }

    fn open_tokens(&self, stored: &StoredConnection) -> Result<SealedTokens, CallError> {
        let sealed: Sealed = stored.sealed.parse().map_err(unavailable)?;
        let aad = connection_aad(stored.tenant_id, stored.human_id, stored.server_id);
        let plain = self.keys.open(&sealed, &aad).map_err(unavailable)?;
        serde_json::from_slice(plain.expose()).map_err(unavailable)
    }

    fn seal_tokens(
        &self,
        tenant: TenantId,
        human: HumanId,
        server: ToolServerId,
        tokens: &SealedTokens,
    ) -> Result<Sealed, CallError> {
        let plain = Secret::new(serde_json::to_vec(tokens).map_err(unavailable)?);
        self.keys
            .seal(plain.expose(), &connection_aad(tenant, human, server))
            .map_err(unavailable)
    }

    /// Refreshes (RFC 6749 §6) and stores the result by compare-and-swap. A provider
    /// that refuses the refresh token ended the connection: it is deleted (the next
    /// call is held for the person again).
    async fn refresh(
        &self,
        server: &ToolServer,
        entry: &ConnectionProvider,
        stored: &StoredConnection,
        old: SealedTokens,
    ) -> Result<SealedTokens, CallError> {
        let Some(refresh_token) = old.refresh_token.map(Secret::new) else {
            return self
                .ended(
                    server,
                    stored,
                    "the access token expired and there is no refresh token",
                )
                .await;
        };
        let (secret, _) = self.vault_secret(server, &entry.client_secret).await?;
        let now = self.now()?;
        let fresh = match entry
            .provider
            .refresh(&refresh_token, &secret, now.timestamp())
            .await
        {
            Ok(fresh) => fresh,
            Err(ProviderError::Refused(reason)) => {
                tracing::warn!(server = %server.name, %reason, "the provider refused a connection's refresh token");
                return self
                    .ended(server, stored, "the provider refused the refresh token")
                    .await;
            }
            Err(e) => return Err(unavailable(e)),
        };
        let tokens = into_sealed(fresh, now.timestamp(), Some(refresh_token));
        let sealed =
            self.seal_tokens(stored.tenant_id, stored.human_id, stored.server_id, &tokens)?;
        let replaced = self
            .store
            .replace_connection_sealed(stored, &sealed.to_string(), sealed.key_id().as_str(), now)
            .await?;
        if !replaced {
            // Another replica refreshed (or the person disconnected) meanwhile: theirs.
            let current = self
                .stored(stored.tenant_id, stored.human_id, server)
                .await?;
            return self.open_tokens(&current);
        }
        Ok(tokens)
    }

    /// A connection that can no longer be used is removed (audited), so that the
    /// person's next call is held for them to connect again.
    async fn ended(
        &self,
        server: &ToolServer,
        stored: &StoredConnection,
        reason: &str,
    ) -> Result<SealedTokens, CallError> {
        let removed = self
            .store
            .delete_connection(stored.tenant_id, stored.human_id, stored.server_id)
            .await?;
        if removed.is_some() {
            self.audit_revoked(server, stored.human_id, vec!["mandate".into()], reason)
                .await?;
        }
        Err(CallError::Unavailable(format!(
            "the connection to `{}` ended ({reason}); nothing was forwarded, and the person's next call asks them to connect again",
            server.name
        )))
    }

    /// Where to send the signed-in person to connect `server`: the provider's
    /// authorization URL, its `state` held once for ten minutes.
    pub async fn start_connection(
        &self,
        caller: &Principal,
        server: ToolServerId,
    ) -> Result<String, CoreError> {
        let (tenant, human) = person(caller)?;
        let server = self.connectable(tenant, server).await?;
        let entry = self.entry_of(&server)?;
        let settings = self.settings().map_err(from_call)?;
        let mut random = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| CoreError::Internal("the system random generator failed".into()))?;
        let state = URL_SAFE_NO_PAD.encode(random);
        let key_hash = state_hash(&state);
        let (verifier, challenge) = pkce_pair().map_err(provider_failed)?;
        let pending = PendingState {
            tenant,
            human,
            server: server.id,
            verifier: verifier.expose().clone(),
        };
        let plain = Secret::new(
            serde_json::to_vec(&pending).map_err(|e| CoreError::Internal(e.to_string()))?,
        );
        let sealed = self
            .keys
            .seal(plain.expose(), &state_aad(&key_hash))
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let now = settings.clock.now();
        let url = entry
            .provider
            .authorization_url(&settings.redirect_uri, &state, &challenge, now.timestamp())
            .await
            .map_err(provider_failed)?;
        self.store
            .put_once(&OnceRecord {
                kind: OnceKind::ConnectionState,
                key_hash,
                tenant_id: tenant,
                data: sealed.to_string(),
                expires_at: now + chrono::Duration::minutes(STATE_TTL_MINUTES),
                used_at: None,
            })
            .await?;
        Ok(url.to_string())
    }

    /// The provider's callback for the signed-in person: the state must be one we
    /// issued to this person, unused and unexpired; the code is redeemed and the
    /// tokens stored sealed. Returns the connection as shown.
    pub async fn finish_connection(
        &self,
        caller: &Principal,
        state: &str,
        code: &str,
    ) -> Result<ConnectionView, CoreError> {
        let (tenant, human) = person(caller)?;
        let refused = || {
            CoreError::Forbidden(
                "this connection link is not valid for you (expired, used, or another person's)"
                    .into(),
            )
        };
        let state = parse_state(state).ok_or_else(refused)?;
        if code.is_empty() || code.len() > 2048 || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CoreError::invalid("the provider's `code` is malformed"));
        }
        let key_hash = state_hash(state);
        let record = self
            .store
            .once(OnceKind::ConnectionState, &key_hash)
            .await?
            .ok_or_else(refused)?;
        let pending = self.open_state(&record).ok_or_else(refused)?;
        if pending.tenant != tenant || pending.human != human || record.tenant_id != tenant {
            // Another person's link: refused, and left for its person.
            tracing::warn!("a connection callback carried another person's state; refused");
            return Err(refused());
        }
        let settings = self.settings().map_err(from_call)?;
        let now = settings.clock.now();
        match self
            .store
            .use_once(OnceKind::ConnectionState, &key_hash, now)
            .await?
        {
            Some((_, true)) => {}
            _ => return Err(refused()),
        }
        let server = self.connectable(tenant, pending.server).await?;
        let entry = self.entry_of(&server)?;
        let (secret, _) = self
            .vault_secret(&server, &entry.client_secret)
            .await
            .map_err(from_call)?;
        let fresh = entry
            .provider
            .redeem(
                code,
                &Secret::new(pending.verifier),
                &settings.redirect_uri,
                &secret,
                now.timestamp(),
            )
            .await
            .map_err(provider_failed)?;
        let scope = fresh
            .scope
            .clone()
            .unwrap_or_else(|| entry.provider.config().scopes.join(" "));
        let tokens = into_sealed(fresh, now.timestamp(), None);
        let sealed = self
            .seal_tokens(tenant, human, server.id, &tokens)
            .map_err(from_call)?;
        let provider = connection_provider(&server).unwrap_or_default().to_owned();
        self.store
            .put_connection(&StoredConnection {
                tenant_id: tenant,
                human_id: human,
                server_id: server.id,
                provider: provider.clone(),
                scope: scope.clone(),
                sealed: sealed.to_string(),
                key_id: sealed.key_id().as_str().to_owned(),
                connected_at: now,
                updated_at: now,
            })
            .await?;
        let event = connection_event(
            EventKind::ConnectionConnected,
            &server,
            human,
            vec![format!("human:{human}")],
            json!({"provider": provider, "scope": scope}),
        );
        self.audit(event).await.map_err(from_call)?;
        Ok(ConnectionView {
            server_id: server.id,
            server: server.name,
            provider,
            scope,
            connected_at: now,
        })
    }

    fn open_state(&self, record: &OnceRecord) -> Option<PendingState> {
        let sealed: Sealed = record.data.parse().ok()?;
        let plain = self.keys.open(&sealed, &state_aad(&record.key_hash)).ok()?;
        serde_json::from_slice(plain.expose()).ok()
    }

    /// The signed-in person's connections, by server.
    pub async fn list_connections(
        &self,
        caller: &Principal,
    ) -> Result<Vec<ConnectionView>, CoreError> {
        let (tenant, human) = person(caller)?;
        let mut out = Vec::new();
        for meta in self.store.list_connections(tenant, human).await? {
            let ConnectionMeta {
                server_id,
                provider,
                scope,
                connected_at,
                ..
            } = meta;
            let server = self
                .store
                .tool_server(tenant, server_id)
                .await?
                .map(|s| s.name)
                .unwrap_or_else(|| server_id.to_string());
            out.push(ConnectionView {
                server_id,
                server,
                provider,
                scope,
                connected_at,
            });
        }
        Ok(out)
    }

    /// The tool servers of the person's tenant that take a connection.
    pub async fn connectable_servers(
        &self,
        caller: &Principal,
        servers: Vec<ToolServer>,
    ) -> Result<Vec<ToolServer>, CoreError> {
        person(caller)?;
        Ok(servers
            .into_iter()
            .filter(|s| s.tenant_id == caller.tenant() && connection_provider(s).is_some())
            .collect())
    }

    /// Disconnects the signed-in person from `server`: deleted at once (every replica
    /// reads the store per call), audited, and its tokens revoked at the provider when
    /// it has a revocation endpoint (a failure there is logged; the connection is gone
    /// here either way).
    pub async fn revoke_connection(
        &self,
        caller: &Principal,
        server: ToolServerId,
    ) -> Result<(), CoreError> {
        let (tenant, human) = person(caller)?;
        let gone = self
            .store
            .delete_connection(tenant, human, server)
            .await?
            .ok_or_else(|| CoreError::not_found("connection", server))?;
        let server = self
            .store
            .tool_server(tenant, server)
            .await?
            .ok_or_else(|| CoreError::not_found("tool server", server))?;
        self.audit_revoked(
            &server,
            human,
            vec![format!("human:{human}")],
            "disconnected by the person",
        )
        .await
        .map_err(from_call)?;
        let Ok(tokens) = self.open_tokens(&gone) else {
            return Ok(());
        };
        let Ok(entry) = self.entry_of(&server) else {
            return Ok(());
        };
        let Ok((secret, _)) = self.vault_secret(&server, &entry.client_secret).await else {
            return Ok(());
        };
        let now = self.now().map_err(from_call)?.timestamp();
        let mut revoke = vec![(Secret::new(tokens.access_token), "access_token")];
        if let Some(r) = tokens.refresh_token {
            revoke.insert(0, (Secret::new(r), "refresh_token"));
        }
        for (token, hint) in revoke {
            if let Err(e) = entry.provider.revoke(&token, hint, &secret, now).await {
                tracing::warn!(server = %server.name, error = %e, "revoking a connection's token at the provider failed; the connection is removed here");
            }
        }
        Ok(())
    }

    async fn audit_revoked(
        &self,
        server: &ToolServer,
        human: HumanId,
        actor: Vec<String>,
        reason: &str,
    ) -> Result<(), CallError> {
        let event = connection_event(
            EventKind::ConnectionRevoked,
            server,
            human,
            actor,
            json!({"reason": reason}),
        );
        self.audit(event).await
    }

    async fn audit(&self, event: NewEvent) -> Result<(), CallError> {
        self.settings()?
            .ledger
            .append(event)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn connectable(
        &self,
        tenant: TenantId,
        id: ToolServerId,
    ) -> Result<ToolServer, CoreError> {
        self.store
            .tool_server(tenant, id)
            .await?
            .filter(|s| connection_provider(s).is_some())
            .ok_or_else(|| CoreError::not_found("tool server", id))
    }

    fn entry_of(&self, server: &ToolServer) -> Result<&ConnectionProvider, CoreError> {
        self.provider(connection_provider(server).unwrap_or_default())
            .map_err(from_call)
    }
}

fn into_sealed(fresh: TokenSet, now: i64, kept_refresh: Option<Secret<String>>) -> SealedTokens {
    SealedTokens {
        access_token: fresh.access_token.expose().clone(),
        // A provider that does not rotate refresh tokens sends none: keep ours.
        refresh_token: fresh
            .refresh_token
            .or(kept_refresh)
            .map(|r| r.expose().clone()),
        refresh_at: fresh
            .expires_in
            .map(|s| now.saturating_add(s - (s / 4).min(REFRESH_MARGIN_SECONDS))),
    }
}

/// An event about `human`'s connection to `server` (never any token material): the
/// server by name and id, and `data`'s fields.
fn connection_event(
    kind: EventKind,
    server: &ToolServer,
    human: HumanId,
    actor: Vec<String>,
    data: serde_json::Value,
) -> NewEvent {
    let mut event = NewEvent::new(server.tenant_id, kind, "");
    event.actor = actor;
    event.human_id = Some(human);
    event.data = crate::calls::obj(data);
    event.data.insert("server".into(), json!(server.name));
    event.data.insert("server_id".into(), json!(server.id));
    event
}

fn from_call(e: CallError) -> CoreError {
    match e {
        CallError::Unavailable(m) => CoreError::Unavailable(m),
        other => CoreError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_parsed_before_the_store_is_asked() {
        let ok = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(parse_state(&ok), Some(ok.as_str()));
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &ok[..42]),
            &format!("{}/", &ok[..42]),
            &format!("{}\n", &ok[..42]),
            &format!("{}é", &ok[..41]),
        ] {
            assert_eq!(parse_state(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn sealed_tokens_open_only_in_their_own_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = mandate_store_sql::SqliteStore::open(dir.path())
            .await
            .unwrap();
        let keys = mandate_broker::MasterKeys::generate().unwrap();
        let broker = Broker::new(Arc::new(store), keys, None);
        let (t, h, s) = (
            TenantId::generate(),
            HumanId::generate(),
            ToolServerId::generate(),
        );
        let tokens = SealedTokens {
            access_token: "at-PLANTED".into(),
            refresh_token: Some("rt-PLANTED".into()),
            refresh_at: Some(1),
        };
        let sealed = broker.seal_tokens(t, h, s, &tokens).unwrap().to_string();
        assert!(!sealed.contains("PLANTED"));
        let row = |tenant_id, human_id, server_id| StoredConnection {
            tenant_id,
            human_id,
            server_id,
            provider: "p".into(),
            scope: String::new(),
            sealed: sealed.clone(),
            key_id: String::new(),
            connected_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        let opened = broker.open_tokens(&row(t, h, s)).unwrap();
        assert_eq!(opened.access_token, "at-PLANTED");
        assert_eq!(opened.refresh_token.as_deref(), Some("rt-PLANTED"));
        // Copied into another person's, server's or tenant's row: it does not open.
        for moved in [
            row(t, HumanId::generate(), s),
            row(t, h, ToolServerId::generate()),
            row(TenantId::generate(), h, s),
        ] {
            assert!(broker.open_tokens(&moved).is_err());
        }
    }

    #[test]
    fn aads_bind_tenant_person_and_server() {
        let (t, h, s) = (
            TenantId::generate(),
            HumanId::generate(),
            ToolServerId::generate(),
        );
        assert_ne!(
            connection_aad(t, h, s),
            connection_aad(t, HumanId::generate(), s)
        );
        assert_ne!(
            connection_aad(t, h, s),
            connection_aad(t, h, ToolServerId::generate())
        );
        assert_eq!(state_hash("x").len(), 64);
    }
}
