//! The OAuth authorization server's port: registered clients, the agent each client
//! acts as for each human, and once-only records (pending authorization requests,
//! authorization codes, refresh tokens).
//!
//! The store never sees a code or a request id in the clear: it keeps their SHA-256
//! (`key_hash`). A once-only record is used by one conditional write, so two replicas
//! redeeming the same code cannot both succeed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_types::{AgentId, HumanId, TenantId};

use crate::StoreError;

/// A registered OAuth client (RFC 7591), its metadata kept as the server validated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClientRecord {
    /// Unique across tenants.
    pub client_id: String,
    pub tenant_id: TenantId,
    /// The validated client metadata, JSON, opaque to the store.
    pub metadata: String,
    pub created_at: DateTime<Utc>,
}

/// What a once-only record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceKind {
    /// An authorization request waiting for the human's answer on the consent screen.
    AuthorizationRequest,
    /// An authorization code waiting to be redeemed at the token endpoint.
    AuthorizationCode,
    /// A refresh token: used once, when it is rotated (written and spent only in the
    /// ledger's batches, see [`crate::Entry`]).
    RefreshToken,
    /// A console sign-in through an external identity provider, between its redirect
    /// and its callback (sealed: only the browser's handle opens it).
    ConsoleSignIn,
    /// A person's connection to an upstream provider, between the redirect and the
    /// callback (its `state`; the PKCE verifier sealed).
    ConnectionState,
}

impl OnceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OnceKind::AuthorizationRequest => "authorization_request",
            OnceKind::AuthorizationCode => "authorization_code",
            OnceKind::RefreshToken => "refresh_token",
            OnceKind::ConsoleSignIn => "console_sign_in",
            OnceKind::ConnectionState => "connection_state",
        }
    }
}

/// A record that may be used once, before it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceRecord {
    pub kind: OnceKind,
    /// Lowercase hex SHA-256 of the secret that names it.
    pub key_hash: String,
    pub tenant_id: TenantId,
    /// JSON, opaque to the store.
    pub data: String,
    pub expires_at: DateTime<Utc>,
    /// When it was used; `None` while unused.
    pub used_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait OAuthClients: Send + Sync {
    /// [`StoreError::Conflict`] when the client id is taken.
    async fn register_oauth_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError>;
    async fn oauth_client(&self, client_id: &str) -> Result<Option<OAuthClientRecord>, StoreError>;
    /// The agent `client_id` acts as for `human`, if one was made.
    async fn oauth_client_agent(
        &self,
        tenant: TenantId,
        client_id: &str,
        human: HumanId,
    ) -> Result<Option<AgentId>, StoreError>;
    /// Records the agent `client_id` acts as for `human`; [`StoreError::Conflict`]
    /// when one is recorded already (the caller reads it again).
    async fn bind_oauth_client_agent(
        &self,
        tenant: TenantId,
        client_id: &str,
        human: HumanId,
        agent: AgentId,
    ) -> Result<(), StoreError>;

    /// Stores a once-only record (its `used_at` is ignored: a new record is unused).
    /// Records of its kind that expired a day before this one's expiry are purged.
    async fn put_once(&self, record: &OnceRecord) -> Result<(), StoreError>;
    /// Reads a record without using it.
    async fn once(&self, kind: OnceKind, key_hash: &str) -> Result<Option<OnceRecord>, StoreError>;
    /// Uses a record: `Some((record, true))` for the one caller whose conditional write
    /// marked it used (it was unused and unexpired at `now`); `Some((record, false))`
    /// when it was used before or has expired (see `used_at`); `None` when unknown.
    async fn use_once(
        &self,
        kind: OnceKind,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(OnceRecord, bool)>, StoreError>;
}
