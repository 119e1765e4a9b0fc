//! The console's port: local sign-in accounts and browser sessions.
//!
//! The store keeps only verifiers: an account's Argon2id hash (never the password) and a
//! session's SHA-256 (never the cookie's value). Sign-in names are unique across tenants,
//! so an email alone finds its account.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_types::{HumanId, TenantId};

use crate::StoreError;

/// A human's local sign-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub tenant_id: TenantId,
    pub human_id: HumanId,
    /// The sign-in name, lower-cased; unique across tenants.
    pub login: String,
    /// A PHC string (`$argon2id$…`).
    pub password_hash: String,
    /// Failed sign-ins since the last success.
    pub failed_attempts: u32,
    /// Sign-in is refused until then, whatever the password.
    pub locked_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the cookie's value.
    pub id_hash: String,
    pub tenant_id: TenantId,
    pub human_id: HumanId,
    /// The token every form of this session must carry.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates or replaces the human's account (a new password clears failures and the
    /// lock). [`StoreError::Conflict`] when another human already signs in with `login`.
    async fn put_account(&self, account: &Account) -> Result<(), StoreError>;
    async fn account_by_login(&self, login: &str) -> Result<Option<Account>, StoreError>;
    /// Counts a failed sign-in; the `lock_after`-th consecutive failure locks the account
    /// until `lock_until`. Returns the account as it now is.
    async fn sign_in_failed(
        &self,
        human: HumanId,
        lock_after: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError>;
    /// A successful sign-in: failures are forgotten.
    async fn sign_in_succeeded(&self, human: HumanId) -> Result<(), StoreError>;

    async fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;
    /// The session with this hash, if it has not expired at `now`.
    async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsoleSession>, StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of a human (a password change); returns how many.
    async fn delete_sessions_of(&self, human: HumanId) -> Result<u64, StoreError>;

    /// Counts one attempt under `key_hash` at `at` and returns how many its window has
    /// seen, this one included. A window starts with a key's first attempt and lasts
    /// `window`; the first attempt after it starts the next. One conditional write:
    /// every replica sharing the store counts into the same row.
    async fn count_attempt(
        &self,
        key_hash: &str,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<u64, StoreError>;
    /// Deletes the counts of windows that started before `before`; returns how many.
    async fn forget_attempts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
