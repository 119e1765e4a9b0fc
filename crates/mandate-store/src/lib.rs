//! Storage ports: what the use cases need from a store, and nothing about SQL.
//!
//! ```text
//!   mandate-core ──uses──► dyn Store ◄──implements── mandate-store-sql::{SqliteStore, PostgresStore}
//!                                 ▲
//!                 conformance ────┘  (one suite, run against every adapter)
//! ```
//!
//! Every read is scoped by tenant: an id from another tenant is simply not found.
//! Writes that race are settled here, not in the use cases: unique keys surface as
//! [`StoreError::Conflict`], and a mandate is only updated if its `version` is the one
//! the caller read ([`StoreError::VersionConflict`] otherwise).

mod accounts;
mod cached;
mod calls;
#[cfg(feature = "conformance")]
pub mod conformance;
mod connections;
mod oauth;
mod page;
mod ports;
mod reviews;
mod vault;

pub use accounts::{Account, Accounts, ConsoleSession};
pub use cached::{CachedStore, DEFAULT_TTL as DEFAULT_CACHE_TTL};
pub use calls::{
    ApprovalFilter, CallKey, Calls, DriftTotals, ProposalFilter, RollbackStep, StepClaim, StepState,
};
pub use connections::{ConnectionMeta, Connections, StoredConnection};
pub use oauth::{OAuthClientRecord, OAuthClients, OnceKind, OnceRecord};
pub use page::{Cursor, Page, PageRequest, PageRequestError};
pub use ports::{
    AgentFilter, ApiToken, ApiTokenPrincipal, AuditFilter, AuditLog, Catalog, Committed, Directory,
    Entry, Grants, HumanFilter, MandateFilter, Mandates, PolicySets, Refusal, RevocationFeed,
    RevokeTree, SpentOnce, Store, StoreError, StoredPolicySet, StoredRecord, TokenKey, ToolFilter,
    UsedAssertion,
};
pub use reviews::{FindingMark, Reviews};
pub use vault::{SecretCursor, SecretMeta, StoredSecret, Vault};
