//! The vault port: sealed secrets by (tenant, name).
//!
//! The store never sees a secret in the clear. It keeps the sealed form as opaque text
//! (the broker's `v1.<key id>.<nonce>.<ciphertext>`) and the id of the key that sealed
//! it, which rotation reads to find what still needs resealing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_types::TenantId;

use crate::StoreError;

/// A sealed secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub tenant_id: TenantId,
    /// The name tool-server configurations refer to it by, unique in its tenant.
    pub name: String,
    /// The sealed form, opaque to the store.
    pub sealed: String,
    /// The master key that sealed it.
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What may be listed about a secret: never its sealed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub tenant_id: TenantId,
    pub name: String,
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<StoredSecret> for SecretMeta {
    fn from(s: StoredSecret) -> Self {
        Self {
            tenant_id: s.tenant_id,
            name: s.name,
            key_id: s.key_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Where a page of [`Vault::sealed_secrets_page`] resumes: after this (tenant, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretCursor {
    pub tenant_id: TenantId,
    pub name: String,
}

/// Sealed secrets, tenant-scoped like every other read.
#[async_trait]
pub trait Vault: Send + Sync {
    /// Stores `sealed` under (tenant, name): a new secret is created at `at`; an
    /// existing one is replaced, keeping its `created_at`, with `updated_at = at`.
    /// The tenant must exist ([`StoreError::Missing`]).
    async fn put_secret(
        &self,
        tenant: TenantId,
        name: &str,
        sealed: &str,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn secret(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<StoredSecret>, StoreError>;
    /// The tenant's secrets by name, without their sealed forms.
    async fn list_secrets(&self, tenant: TenantId) -> Result<Vec<SecretMeta>, StoreError>;
    /// `false` when there was no such secret.
    async fn delete_secret(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError>;
    /// Every tenant's secrets in (tenant, name) order, after `after`, at most `limit`:
    /// what a key rotation walks through.
    async fn sealed_secrets_page(
        &self,
        after: Option<&SecretCursor>,
        limit: u32,
    ) -> Result<Vec<StoredSecret>, StoreError>;
    /// Replaces the sealed form only if it is still `old` (compare-and-swap, for
    /// resealing without overwriting a concurrent update); `updated_at` is left as it
    /// was, since the secret did not change. `false` when it changed or is gone.
    async fn replace_sealed(
        &self,
        tenant: TenantId,
        name: &str,
        old: &str,
        new: &str,
        new_key_id: &str,
    ) -> Result<bool, StoreError>;
}
