use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_audit::{Checkpoint, Event, EventKind, Head, NewEvent, PublicKey};
use mandate_domain::{
    Agent, AgentStatus, Consent, Grant, Human, Mandate, MandateStatus, Tenant, Tool, ToolServer,
};
use mandate_types::{
    AgentId, ApiTokenId, HumanId, MandateId, RiskTier, TenantId, ToolId, ToolServerId,
};
use serde::{Deserialize, Serialize};

use crate::{Page, PageRequest};

/// What went wrong in a store. No variant carries a secret or a full query.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (`what` names it, e.g. `agent name`).
    #[error("{what} already exists")]
    Conflict { what: String },
    /// A row the write depends on does not exist (e.g. a tool's server).
    #[error("{what} does not exist")]
    Missing { what: String },
    /// The row changed since it was read; read it again and retry.
    #[error("the record changed concurrently")]
    VersionConflict,
    /// The store cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decode; never expected, always worth an alert.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Who an admin API token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiTokenPrincipal {
    Admin,
    Human { id: HumanId },
    Agent { id: AgentId },
}

/// A bearer credential for the API. Only the SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub tenant_id: TenantId,
    pub principal: ApiTokenPrincipal,
    /// Lowercase hex SHA-256 of the full token string.
    pub token_hash: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HumanFilter {
    pub email: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    pub owner: Option<HumanId>,
    pub status: Option<AgentStatus>,
    pub name: Option<String>,
    /// Its owner or one of its sponsors.
    pub accountable: Option<HumanId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    pub server: Option<ToolServerId>,
    pub risk_tier: Option<RiskTier>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MandateFilter {
    pub status: Option<MandateStatus>,
    pub agent: Option<AgentId>,
    /// The grantor.
    pub human: Option<HumanId>,
    /// Someone who must consent: the grantor or a named owner.
    pub consenter: Option<HumanId>,
}

/// Tenants, the people and workloads in them, and their API credentials.
#[async_trait]
pub trait Directory: Send + Sync {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    async fn create_api_token(&self, token: &ApiToken) -> Result<(), StoreError>;
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError>;

    async fn create_human(&self, human: &Human) -> Result<(), StoreError>;
    async fn human(&self, tenant: TenantId, id: HumanId) -> Result<Option<Human>, StoreError>;
    async fn list_humans(
        &self,
        tenant: TenantId,
        filter: &HumanFilter,
        page: &PageRequest,
    ) -> Result<Page<Human>, StoreError>;

    async fn create_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    async fn agent(&self, tenant: TenantId, id: AgentId) -> Result<Option<Agent>, StoreError>;
    /// Replaces an agent's mutable fields (status, labels, credentials).
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError>;
    async fn list_agents(
        &self,
        tenant: TenantId,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Page<Agent>, StoreError>;
    /// The agent whose SPIFFE ID this is, in any tenant (a SPIFFE ID names one workload).
    /// An agent by its id in any tenant: only for authenticating a client, whose id
    /// (`client_id`) is the agent id and carries no tenant.
    async fn agent_by_client_id(&self, id: AgentId) -> Result<Option<Agent>, StoreError>;
    async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<Agent>, StoreError>;
    /// The agent a federated issuer + subject maps to, in any tenant.
    async fn agent_by_federated(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Agent>, StoreError>;
}

/// Tool servers and their tools.
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn create_tool_server(&self, server: &ToolServer) -> Result<(), StoreError>;
    async fn tool_server(
        &self,
        tenant: TenantId,
        id: ToolServerId,
    ) -> Result<Option<ToolServer>, StoreError>;
    async fn list_tool_servers(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ToolServer>, StoreError>;
    /// Replaces a tool server's operator settings (its name and id stay).
    async fn update_tool_server(&self, server: &ToolServer) -> Result<(), StoreError>;

    async fn create_tool(&self, tool: &Tool) -> Result<(), StoreError>;
    async fn tool(&self, tenant: TenantId, id: ToolId) -> Result<Option<Tool>, StoreError>;
    /// Replaces a tool's operator-set fields (tier, tags, data class, description).
    async fn update_tool(&self, tool: &Tool) -> Result<(), StoreError>;
    async fn list_tools(
        &self,
        tenant: TenantId,
        filter: &ToolFilter,
        page: &PageRequest,
    ) -> Result<Page<Tool>, StoreError>;
}

/// Mandates and the consents given to them.
#[async_trait]
pub trait Mandates: Send + Sync {
    /// Stores a new mandate and appends `audit` to the ledger, atomically.
    async fn create_mandate(&self, mandate: &Mandate, audit: &[NewEvent])
    -> Result<(), StoreError>;
    async fn mandate(&self, tenant: TenantId, id: MandateId)
    -> Result<Option<Mandate>, StoreError>;
    async fn list_mandates(
        &self,
        tenant: TenantId,
        filter: &MandateFilter,
        page: &PageRequest,
    ) -> Result<Page<Mandate>, StoreError>;
    /// Stores `mandate` if the stored version is still `mandate.version - 1`, and appends
    /// `audit` to the ledger, atomically: a change is never stored without its events,
    /// nor events without their change. A mandate that reaches a final status revokes
    /// every grant under it in the same transaction.
    async fn update_mandate(&self, mandate: &Mandate, audit: &[NewEvent])
    -> Result<(), StoreError>;
    /// Records `consent`, stores `mandate` (as [`Mandates::update_mandate`]) and appends
    /// `audit`, atomically. A second answer by the same human is a [`StoreError::Conflict`].
    async fn record_consent(
        &self,
        consent: &Consent,
        mandate: &Mandate,
        audit: &[NewEvent],
    ) -> Result<(), StoreError>;
    /// Every answer given to a mandate, oldest first.
    async fn consents(
        &self,
        tenant: TenantId,
        mandate: MandateId,
    ) -> Result<Vec<Consent>, StoreError>;
    /// Live mandates (requested or active) whose expiry is at or before `now`, any tenant.
    async fn mandates_due_to_expire(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Mandate>, StoreError>;
}

/// Which audit events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub mandate: Option<MandateId>,
    pub agent: Option<AgentId>,
    pub human: Option<HumanId>,
    pub kind: Option<EventKind>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
}

/// An event as stored, not yet trusted: verification parses it and checks its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub doc: String,
}

/// A client assertion's one use, recorded with what it obtained (see [`Entry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedAssertion {
    pub issuer: String,
    pub jti: String,
    /// When the assertion expires: its record may be purged after that.
    pub expires_at: DateTime<Utc>,
}

/// What one action writes, committed in the ledger's batch transaction: the client
/// assertions it used, the grant it issued, and the event that records it — all of
/// it in the same transaction as the rest of the batch, or nothing.
///
/// The checks run inside that transaction, in this order: each assertion is claimed
/// (refused as [`Refusal::Replay`] when any was used before — the database's uniqueness,
/// so exactly one of concurrent uses wins, on any replica, and within one batch the
/// first entry that names it); then the once-only record it spends is marked used
/// (refused as [`Refusal::Used`] unless it was unused and unexpired); then the grant is
/// written
/// under the rules of [`Grants::insert_grant`] (refused as [`Refusal::Missing`] when
/// its mandate or parent is not live); then the tree it revokes; last, the once-only
/// record it issues (a rotated refresh token) is stored. A refusal stops the entry: its
/// grant, the record it issues and its event are not written, while the assertions
/// claimed and the record spent before it stay so (each is used once, whatever became
/// of the request that used it).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub assertions: Vec<UsedAssertion>,
    /// A once-only record (an authorization code) the entry spends: marked used in the
    /// same transaction, refused ([`Refusal::Used`]) unless it was unused and unexpired.
    pub once: Option<SpentOnce>,
    pub grant: Option<Grant>,
    /// A grant to revoke with everything delegated from it, under the rules of
    /// [`Grants::revoke_grant_tree`] (refused as [`Refusal::Missing`] when unknown). The
    /// entry's event then records `revoked`: the jtis revoked now; when none were (all
    /// were revoked before), no event is recorded.
    pub revoke: Option<RevokeTree>,
    /// A once-only record the entry creates (a refresh token), stored only when every
    /// check of the entry passed. Its `used_at` is ignored: a new record is unused.
    pub issue: Option<crate::OnceRecord>,
    pub event: Option<NewEvent>,
}

/// A grant revoked by an [`Entry`], with its delegation subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeTree {
    pub tenant_id: TenantId,
    pub jti: String,
}

/// A once-only record spent by an [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentOnce {
    pub kind: crate::OnceKind,
    /// Lowercase hex SHA-256 of the secret that names it.
    pub key_hash: String,
}

impl Entry {
    /// An entry that only records `event`.
    pub fn event(event: NewEvent) -> Entry {
        Entry {
            event: Some(event),
            ..Entry::default()
        }
    }

    /// Whether it writes anything besides its event.
    pub fn has_writes(&self) -> bool {
        !self.assertions.is_empty()
            || self.once.is_some()
            || self.grant.is_some()
            || self.revoke.is_some()
            || self.issue.is_some()
    }
}

/// Why an [`Entry`] was refused by the checks in its batch's transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An assertion it used was used before: the first such, by its issuer (a client's
    /// id, or a marker such as the DPoP proofs' for uses that are not client assertions).
    #[error("an assertion of `{issuer}` was used before")]
    Replay { issuer: String },
    /// The once-only record it spends was used before, has expired, or is unknown.
    #[error("the record was used before or has expired")]
    Used,
    /// What its grant depends on is not live (`live mandate`, `live parent grant`).
    #[error("{what} does not exist")]
    Missing { what: String },
}

impl From<Refusal> for StoreError {
    fn from(refused: Refusal) -> StoreError {
        match refused {
            Refusal::Replay { .. } => StoreError::Conflict {
                what: "client assertion".into(),
            },
            Refusal::Missing { what } => StoreError::Missing { what },
            Refusal::Used => StoreError::Conflict {
                what: "once-only record".into(),
            },
        }
    }
}

/// What became of each entry of a batch: the recorded event (`None` when the entry
/// had none), or why it was refused.
pub type Committed = Result<Option<Event>, Refusal>;

/// The audit ledger: per-tenant hash chains of events, their signed checkpoints and the
/// public keys that signed them. Append-only: nothing here updates or deletes an event.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `batch` to the chains of their tenants in one transaction — all or none —
    /// each event after its tenant's stored head, in batch order, at time `at`. Returns
    /// the recorded events in batch order. Concurrent appenders (other replicas too) are
    /// serialised per tenant, so a chain never forks.
    async fn append_events(
        &self,
        batch: &[NewEvent],
        at: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError>;
    /// Commits `batch` in one transaction — all or none — with the checks and writes
    /// of each [`Entry`] in batch order, then the events of the entries not refused,
    /// chained as [`AuditLog::append_events`] does. Returns each entry's outcome in batch
    /// order. An error means nothing of the batch was written.
    async fn commit_entries(
        &self,
        batch: &[Entry],
        at: DateTime<Utc>,
    ) -> Result<Vec<Committed>, StoreError>;
    /// [`AuditLog::append_events`], returning once the batch is committed: visible to
    /// readers, and durable only once a [`AuditLog::sync`] that began after it returns.
    /// For the ledger's writer, which answers nobody before that and commits its next
    /// batch while this one is made durable. On a store whose commits are durable when
    /// they return, the same as `append_events`.
    async fn append_events_unsynced(
        &self,
        batch: &[NewEvent],
        at: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        self.append_events(batch, at).await
    }
    /// [`AuditLog::commit_entries`], returning once the batch is committed, as
    /// [`AuditLog::append_events_unsynced`] does.
    async fn commit_entries_unsynced(
        &self,
        batch: &[Entry],
        at: DateTime<Utc>,
    ) -> Result<Vec<Committed>, StoreError> {
        self.commit_entries(batch, at).await
    }
    /// Makes every commit that returned before this call durable: what the `_unsynced`
    /// appends left to do. An error means they may not be: whoever waits on them must be
    /// told they failed. Nothing to do on a store whose commits are durable when they
    /// return.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every tenant's chain head.
    async fn audit_heads(&self) -> Result<Vec<(TenantId, Head)>, StoreError>;
    /// Brings the lookup index up to date behind the appenders, at most `max` events per
    /// tenant per call; returns how many it indexed (0: caught up). Queries are correct
    /// whether or not it ran; it only makes filtered reads fast.
    async fn index_audit(&self, max: u32) -> Result<u64, StoreError>;
    /// Events of `tenant` matching `filter`, in sequence order, after `after`.
    async fn audit_events(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;
    /// The stored form of `tenant`'s events after `after`, in sequence order, unparsed.
    async fn audit_records(
        &self,
        tenant: TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;
    /// Stores a checkpoint (a second one for the same sequence number is ignored).
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// `tenant`'s checkpoints, stored form, in sequence order.
    async fn checkpoint_records(&self, tenant: TenantId) -> Result<Vec<StoredRecord>, StoreError>;
    /// Registers a checkpoint signing key's public half (idempotent).
    async fn add_audit_key(&self, key: &PublicKey) -> Result<(), StoreError>;
    async fn audit_keys(&self) -> Result<Vec<PublicKey>, StoreError>;
}

/// Issued credentials and their revocation, and the one-time use of client assertions.
#[async_trait]
pub trait Grants: Send + Sync {
    /// Records a grant. Its parent, when named, must exist in the same tenant and be
    /// live, or the write is refused ([`StoreError::Missing`]): nothing is delegated from
    /// a revoked grant, even by a replica that has not heard yet.
    ///
    /// Its mandate, when named, must exist in the same tenant, be `active` and not have
    /// expired at the grant's `issued_at`, or the write is refused
    /// ([`StoreError::Missing`], `live mandate`). The check is made in the transaction
    /// that writes the grant and is serialised against the mandate's final-state update
    /// ([`Mandates::update_mandate`], which revokes every grant under the mandate): the
    /// grant commits before that update and is revoked by it, or is refused after it.
    /// So once a revocation (completion, expiry) is acknowledged, no grant of the
    /// mandate is live on any replica, whenever it was asked for.
    async fn insert_grant(&self, grant: &Grant) -> Result<(), StoreError>;
    async fn grant(&self, tenant: TenantId, jti: &str) -> Result<Option<Grant>, StoreError>;
    /// Revokes the grant and every grant delegated from it, at any depth; returns the
    /// jtis revoked now (already revoked ones are left as they were).
    async fn revoke_grant_tree(
        &self,
        tenant: TenantId,
        jti: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// Grants revoked at or after `since` (any tenant), oldest first: what a replica's
    /// in-memory revocation list catches up on.
    async fn revoked_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
    /// Records that `issuer` used assertion `jti`, valid until `expires_at`. `false`
    /// when it was used before (a replay: the same issuer, `jti` and `exp`, which an
    /// assertion presented again carries). Expired records are purged on the way.
    async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Publishes the public half of a token-signing key (idempotent by `kid`).
    async fn publish_token_key(&self, key: &TokenKey) -> Result<(), StoreError>;
    /// Schedules a published key's removal from the key set at `at`.
    async fn retire_token_key(&self, kid: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The published keys not retired at `now`, oldest first.
    async fn token_keys(&self, now: DateTime<Utc>) -> Result<Vec<TokenKey>, StoreError>;
    /// A feed that wakes when grants are revoked, or an agent, tool server or tool
    /// changed, anywhere (PostgreSQL LISTEN/NOTIFY), or `None` when the backend has no
    /// such channel (the caller polls). [`crate::CachedStore`] always has one: it adds
    /// this replica's own revocations, and clears its cache on the inner feed's wake-ups.
    async fn revocation_feed(&self) -> Result<Option<Box<dyn RevocationFeed>>, StoreError>;
}

/// The public half of a token-signing key, as every replica's verifier trusts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub kid: String,
    /// The public JWK as JSON text (with `kid` and `alg`).
    pub jwk: String,
    pub created_at: DateTime<Utc>,
    /// When it leaves the key set (set by a rotation, after the overlap window).
    pub retire_at: Option<DateTime<Utc>>,
}

/// Wakes its holder when some replica revoked grants; the holder then reads
/// [`Grants::revoked_since`]. A wake-up carries no data and may be spurious.
#[async_trait]
pub trait RevocationFeed: Send {
    /// Waits for the next notification. An error means the channel broke: poll, and
    /// ask for a new feed.
    async fn next(&mut self) -> Result<(), StoreError>;
}

/// A version of the operator's policy set, kept in the store when the store (not a
/// directory) is where policies live; deployment-wide, so every replica decides alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicySet {
    /// 1, 2, …: the highest is in force.
    pub version: u64,
    /// `sha256:` of the files, as the policy crate computes it.
    pub digest: String,
    /// The files as JSON text (`PolicySource`).
    pub source: String,
    /// `admin`, `human:hum_…`.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Policy sets, newest wins. Versions only ever grow; old versions are kept.
#[async_trait]
pub trait PolicySets: Send + Sync {
    /// Stores the next version and returns its number. Two writers racing for the
    /// same number: one gets [`StoreError::Conflict`] and may retry.
    async fn put_policy_set(
        &self,
        digest: &str,
        source: &str,
        created_by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// The version in force, if any was ever stored.
    async fn latest_policy_set(&self) -> Result<Option<StoredPolicySet>, StoreError>;
    /// The number of the version in force (0: none); cheap, for polling.
    async fn policy_set_version(&self) -> Result<u64, StoreError>;
}

/// Everything Mandate keeps. Implemented by each adapter; chosen only by the binary.
#[async_trait]
pub trait Store:
    Directory
    + Catalog
    + Mandates
    + AuditLog
    + PolicySets
    + Grants
    + crate::Calls
    + crate::Vault
    + crate::Connections
    + crate::Accounts
    + crate::OAuthClients
    + crate::Reviews
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Checks that the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Which backend this is, for logs and metrics (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// Whether other replicas may share this store (PostgreSQL), so that what one
    /// replica remembers only in memory another does not know. An embedded store is
    /// owned by one process: `false`.
    fn shared(&self) -> bool {
        false
    }
    /// A number that changes whenever this replica learns that tool servers or tools
    /// may have changed (its own write, or another replica's notification), so that
    /// what is built from the catalog can be rebuilt at once. A store that does not
    /// track it answers 0, and such caches fall back to their own expiry.
    fn catalog_generation(&self) -> u64 {
        0
    }
}
