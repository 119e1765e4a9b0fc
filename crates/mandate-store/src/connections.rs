//! The connections port: a person's connection to an upstream tool server, by
//! (tenant, person, tool server).
//!
//! The store never sees a token in the clear: the broker seals the access and refresh
//! tokens together and the store keeps that sealed form as opaque text, beside what
//! may be shown (the provider, the granted scope, when it was made).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_types::{HumanId, TenantId, ToolServerId};

use crate::StoreError;

/// A connection as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConnection {
    pub tenant_id: TenantId,
    pub human_id: HumanId,
    pub server_id: ToolServerId,
    /// The configured provider it was made with.
    pub provider: String,
    /// The scope the provider granted (space-separated).
    pub scope: String,
    /// The sealed tokens, opaque to the store.
    pub sealed: String,
    /// The master key that sealed them.
    pub key_id: String,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What may be listed about a connection: never its sealed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionMeta {
    pub tenant_id: TenantId,
    pub human_id: HumanId,
    pub server_id: ToolServerId,
    pub provider: String,
    pub scope: String,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<StoredConnection> for ConnectionMeta {
    fn from(c: StoredConnection) -> Self {
        Self {
            tenant_id: c.tenant_id,
            human_id: c.human_id,
            server_id: c.server_id,
            provider: c.provider,
            scope: c.scope,
            connected_at: c.connected_at,
            updated_at: c.updated_at,
        }
    }
}

/// People's connections, tenant-scoped like every other read. Nothing is cached in
/// front of this port: a deleted connection is gone for every replica at once.
#[async_trait]
pub trait Connections: Send + Sync {
    /// Stores a connection, replacing one of the same (tenant, person, server) (a
    /// person who connects again). The tenant, person and server must exist
    /// ([`StoreError::Missing`]).
    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError>;
    async fn connection(
        &self,
        tenant: TenantId,
        human: HumanId,
        server: ToolServerId,
    ) -> Result<Option<StoredConnection>, StoreError>;
    /// A person's connections by server, without their sealed forms.
    async fn list_connections(
        &self,
        tenant: TenantId,
        human: HumanId,
    ) -> Result<Vec<ConnectionMeta>, StoreError>;
    /// Deletes a connection and returns what it was (the caller revokes its tokens at
    /// the provider); `None` when there was none.
    async fn delete_connection(
        &self,
        tenant: TenantId,
        human: HumanId,
        server: ToolServerId,
    ) -> Result<Option<StoredConnection>, StoreError>;
    /// Replaces the sealed tokens of `current`'s connection only if they are still
    /// `current.sealed` (compare-and-swap: two replicas refreshing at once do not
    /// overwrite each other), with `updated_at = at`. `false` when they changed or the
    /// connection is gone.
    async fn replace_connection_sealed(
        &self,
        current: &StoredConnection,
        new: &str,
        new_key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
