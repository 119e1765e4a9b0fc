//! Everything [`CachedStore`] does not cache goes straight to the inner store; the
//! writes that touch what it caches evict first (see the module docs).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_audit::{Checkpoint, Event, Head, NewEvent, PublicKey};
use mandate_domain::{
    Agent, Approval, Budgets, Consent, Grant, Human, Mandate, Proposal, Tenant, Tool, ToolServer,
    Usage,
};
use mandate_types::{
    AgentId, ApprovalId, HumanId, MandateId, ProposalId, TenantId, ToolId, ToolServerId,
};
use serde_json::Value;

use super::CachedStore;
use crate::{
    Account, Accounts, AgentFilter, ApiToken, ApprovalFilter, AuditFilter, AuditLog, CallKey,
    Calls, Catalog, Committed, ConsoleSession, Directory, DriftTotals, Entry, FindingMark, Grants,
    HumanFilter, MandateFilter, Mandates, OAuthClientRecord, OAuthClients, OnceKind, OnceRecord,
    Page, PageRequest, PolicySets, ProposalFilter, Reviews, RevocationFeed, RollbackStep,
    SecretCursor, SecretMeta, StepClaim, Store, StoreError, StoredPolicySet, StoredRecord,
    StoredSecret, TokenKey, ToolFilter, Vault,
};

#[async_trait]
impl Directory for CachedStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.inner.create_tenant(tenant).await
    }
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        self.inner.tenant(id).await
    }
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.inner.tenant_by_name(name).await
    }
    async fn create_api_token(&self, token: &ApiToken) -> Result<(), StoreError> {
        self.inner.create_api_token(token).await
    }
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        self.inner.api_token_by_hash(token_hash).await
    }
    async fn create_human(&self, human: &Human) -> Result<(), StoreError> {
        self.inner.create_human(human).await
    }
    async fn human(&self, tenant: TenantId, id: HumanId) -> Result<Option<Human>, StoreError> {
        self.inner.human(tenant, id).await
    }
    async fn list_humans(
        &self,
        tenant: TenantId,
        filter: &HumanFilter,
        page: &PageRequest,
    ) -> Result<Page<Human>, StoreError> {
        self.inner.list_humans(tenant, filter, page).await
    }
    async fn create_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.inner.create_agent(agent).await
    }
    async fn agent(&self, tenant: TenantId, id: AgentId) -> Result<Option<Agent>, StoreError> {
        Ok(self
            .cached_agent(id)
            .await?
            .filter(|a| a.tenant_id == tenant))
    }
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let done = self.inner.update_agent(agent).await;
        self.evict_agent(agent.id);
        done
    }
    async fn list_agents(
        &self,
        tenant: TenantId,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Page<Agent>, StoreError> {
        self.inner.list_agents(tenant, filter, page).await
    }
    async fn agent_by_client_id(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        self.cached_agent(id).await
    }
    async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<Agent>, StoreError> {
        self.inner.agent_by_spiffe_id(spiffe_id).await
    }
    async fn agent_by_federated(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Agent>, StoreError> {
        self.inner.agent_by_federated(issuer, subject).await
    }
}

#[async_trait]
impl Catalog for CachedStore {
    async fn create_tool_server(&self, server: &ToolServer) -> Result<(), StoreError> {
        let done = self.inner.create_tool_server(server).await;
        self.catalog_changed();
        done
    }
    async fn tool_server(
        &self,
        tenant: TenantId,
        id: ToolServerId,
    ) -> Result<Option<ToolServer>, StoreError> {
        self.inner.tool_server(tenant, id).await
    }
    async fn list_tool_servers(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ToolServer>, StoreError> {
        self.inner.list_tool_servers(tenant, page).await
    }
    async fn update_tool_server(&self, server: &ToolServer) -> Result<(), StoreError> {
        let done = self.inner.update_tool_server(server).await;
        self.catalog_changed();
        done
    }
    async fn create_tool(&self, tool: &Tool) -> Result<(), StoreError> {
        let done = self.inner.create_tool(tool).await;
        self.catalog_changed();
        done
    }
    async fn tool(&self, tenant: TenantId, id: ToolId) -> Result<Option<Tool>, StoreError> {
        self.inner.tool(tenant, id).await
    }
    async fn update_tool(&self, tool: &Tool) -> Result<(), StoreError> {
        let done = self.inner.update_tool(tool).await;
        self.catalog_changed();
        done
    }
    async fn list_tools(
        &self,
        tenant: TenantId,
        filter: &ToolFilter,
        page: &PageRequest,
    ) -> Result<Page<Tool>, StoreError> {
        self.inner.list_tools(tenant, filter, page).await
    }
}

#[async_trait]
impl Mandates for CachedStore {
    async fn create_mandate(
        &self,
        mandate: &Mandate,
        audit: &[NewEvent],
    ) -> Result<(), StoreError> {
        self.inner.create_mandate(mandate, audit).await
    }
    async fn mandate(
        &self,
        tenant: TenantId,
        id: MandateId,
    ) -> Result<Option<Mandate>, StoreError> {
        self.cached_mandate(tenant, id).await
    }
    async fn list_mandates(
        &self,
        tenant: TenantId,
        filter: &MandateFilter,
        page: &PageRequest,
    ) -> Result<Page<Mandate>, StoreError> {
        self.inner.list_mandates(tenant, filter, page).await
    }
    async fn update_mandate(
        &self,
        mandate: &Mandate,
        audit: &[NewEvent],
    ) -> Result<(), StoreError> {
        let done = self.inner.update_mandate(mandate, audit).await;
        self.evict_mandate(mandate.id);
        if mandate.status.is_final() {
            self.revoked_here();
        }
        done
    }
    async fn record_consent(
        &self,
        consent: &Consent,
        mandate: &Mandate,
        audit: &[NewEvent],
    ) -> Result<(), StoreError> {
        let done = self.inner.record_consent(consent, mandate, audit).await;
        self.evict_mandate(mandate.id);
        if mandate.status.is_final() {
            self.revoked_here();
        }
        done
    }
    async fn consents(
        &self,
        tenant: TenantId,
        mandate: MandateId,
    ) -> Result<Vec<Consent>, StoreError> {
        self.inner.consents(tenant, mandate).await
    }
    async fn mandates_due_to_expire(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Mandate>, StoreError> {
        self.inner.mandates_due_to_expire(now, limit).await
    }
}

#[async_trait]
impl AuditLog for CachedStore {
    async fn append_events(
        &self,
        batch: &[NewEvent],
        at: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.append_events(batch, at).await
    }
    async fn commit_entries(
        &self,
        batch: &[Entry],
        at: DateTime<Utc>,
    ) -> Result<Vec<Committed>, StoreError> {
        let done = self.inner.commit_entries(batch, at).await;
        self.revoked_by(batch);
        done
    }
    async fn append_events_unsynced(
        &self,
        batch: &[NewEvent],
        at: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.append_events_unsynced(batch, at).await
    }
    async fn commit_entries_unsynced(
        &self,
        batch: &[Entry],
        at: DateTime<Utc>,
    ) -> Result<Vec<Committed>, StoreError> {
        let done = self.inner.commit_entries_unsynced(batch, at).await;
        self.revoked_by(batch);
        done
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    async fn audit_heads(&self) -> Result<Vec<(TenantId, Head)>, StoreError> {
        self.inner.audit_heads().await
    }
    async fn index_audit(&self, max: u32) -> Result<u64, StoreError> {
        self.inner.index_audit(max).await
    }
    async fn audit_events(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.audit_events(tenant, filter, after, limit).await
    }
    async fn audit_records(
        &self,
        tenant: TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.inner.audit_records(tenant, after, limit).await
    }
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.inner.add_checkpoint(checkpoint).await
    }
    async fn checkpoint_records(&self, tenant: TenantId) -> Result<Vec<StoredRecord>, StoreError> {
        self.inner.checkpoint_records(tenant).await
    }
    async fn add_audit_key(&self, key: &PublicKey) -> Result<(), StoreError> {
        self.inner.add_audit_key(key).await
    }
    async fn audit_keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        self.inner.audit_keys().await
    }
}

#[async_trait]
impl PolicySets for CachedStore {
    async fn put_policy_set(
        &self,
        digest: &str,
        source: &str,
        created_by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner
            .put_policy_set(digest, source, created_by, at)
            .await
    }
    async fn latest_policy_set(&self) -> Result<Option<StoredPolicySet>, StoreError> {
        self.inner.latest_policy_set().await
    }
    async fn policy_set_version(&self) -> Result<u64, StoreError> {
        self.inner.policy_set_version().await
    }
}

#[async_trait]
impl Grants for CachedStore {
    async fn insert_grant(&self, grant: &Grant) -> Result<(), StoreError> {
        self.inner.insert_grant(grant).await
    }
    async fn grant(&self, tenant: TenantId, jti: &str) -> Result<Option<Grant>, StoreError> {
        self.inner.grant(tenant, jti).await
    }
    async fn revoke_grant_tree(
        &self,
        tenant: TenantId,
        jti: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let done = self.inner.revoke_grant_tree(tenant, jti, at).await;
        self.revoked_here();
        done
    }
    async fn revoked_since(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.inner.revoked_since(since, limit).await
    }
    async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.claim_jti(issuer, jti, expires_at, now).await
    }
    async fn publish_token_key(&self, key: &TokenKey) -> Result<(), StoreError> {
        self.inner.publish_token_key(key).await
    }
    async fn retire_token_key(&self, kid: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.retire_token_key(kid, at).await
    }
    async fn token_keys(&self, now: DateTime<Utc>) -> Result<Vec<TokenKey>, StoreError> {
        self.inner.token_keys(now).await
    }
    async fn revocation_feed(&self) -> Result<Option<Box<dyn RevocationFeed>>, StoreError> {
        Ok(Some(self.feed(self.inner.revocation_feed().await?)))
    }
}

#[async_trait]
impl Calls for CachedStore {
    async fn add_drift(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        add: DriftTotals,
        threshold: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<DriftTotals>, StoreError> {
        self.inner
            .add_drift(tenant, mandate, add, threshold, now)
            .await
    }
    async fn spend(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        calls: u64,
        amount: u64,
        limits: &Budgets,
    ) -> Result<Option<Usage>, StoreError> {
        let spent = self
            .inner
            .spend(tenant, mandate, calls, amount, limits)
            .await?;
        if let Some(usage) = &spent {
            self.spent(mandate, usage);
        }
        Ok(spent)
    }
    async fn hold_for_approval(
        &self,
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<Approval, StoreError> {
        self.inner.hold_for_approval(approval, now).await
    }
    async fn approval(
        &self,
        tenant: TenantId,
        id: ApprovalId,
    ) -> Result<Option<Approval>, StoreError> {
        self.inner.approval(tenant, id).await
    }
    async fn list_approvals(
        &self,
        tenant: TenantId,
        filter: &ApprovalFilter,
        page: &PageRequest,
    ) -> Result<Page<Approval>, StoreError> {
        self.inner.list_approvals(tenant, filter, page).await
    }
    async fn decide_approval(
        &self,
        tenant: TenantId,
        id: ApprovalId,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Approval>, StoreError> {
        self.inner
            .decide_approval(tenant, id, approve, by, comment, now)
            .await
    }
    async fn approved_call(
        &self,
        key: &CallKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Approval>, StoreError> {
        self.inner.approved_call(key, now).await
    }
    async fn use_approval(
        &self,
        tenant: TenantId,
        id: ApprovalId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.use_approval(tenant, id, now).await
    }
    async fn record_proposal(&self, proposal: &Proposal) -> Result<(), StoreError> {
        self.inner.record_proposal(proposal).await
    }
    async fn proposal(
        &self,
        tenant: TenantId,
        id: ProposalId,
    ) -> Result<Option<Proposal>, StoreError> {
        self.inner.proposal(tenant, id).await
    }
    async fn list_proposals(
        &self,
        tenant: TenantId,
        filter: &ProposalFilter,
        page: &PageRequest,
    ) -> Result<Page<Proposal>, StoreError> {
        self.inner.list_proposals(tenant, filter, page).await
    }
    async fn start_proposal(
        &self,
        tenant: TenantId,
        id: ProposalId,
        by: &str,
        reject: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Proposal>, StoreError> {
        self.inner.start_proposal(tenant, id, by, reject, now).await
    }
    async fn finish_proposal(
        &self,
        tenant: TenantId,
        id: ProposalId,
        succeeded: bool,
        outcome: &Value,
    ) -> Result<(), StoreError> {
        self.inner
            .finish_proposal(tenant, id, succeeded, outcome)
            .await
    }
    async fn claim_rollback_step(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        call_seq: u64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<StepClaim, StoreError> {
        self.inner
            .claim_rollback_step(tenant, mandate, call_seq, by, now)
            .await
    }
    async fn finish_rollback_step(
        &self,
        tenant: TenantId,
        call_seq: u64,
        succeeded: bool,
        outcome: &Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner
            .finish_rollback_step(tenant, call_seq, succeeded, outcome, now)
            .await
    }
    async fn rollback_steps(
        &self,
        tenant: TenantId,
        mandate: MandateId,
    ) -> Result<Vec<RollbackStep>, StoreError> {
        self.inner.rollback_steps(tenant, mandate).await
    }
}

#[async_trait]
impl Vault for CachedStore {
    async fn put_secret(
        &self,
        tenant: TenantId,
        name: &str,
        sealed: &str,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner
            .put_secret(tenant, name, sealed, key_id, at)
            .await
    }
    async fn secret(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<StoredSecret>, StoreError> {
        self.inner.secret(tenant, name).await
    }
    async fn list_secrets(&self, tenant: TenantId) -> Result<Vec<SecretMeta>, StoreError> {
        self.inner.list_secrets(tenant).await
    }
    async fn delete_secret(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_secret(tenant, name).await
    }
    async fn sealed_secrets_page(
        &self,
        after: Option<&SecretCursor>,
        limit: u32,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        self.inner.sealed_secrets_page(after, limit).await
    }
    async fn replace_sealed(
        &self,
        tenant: TenantId,
        name: &str,
        old: &str,
        new: &str,
        new_key_id: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace_sealed(tenant, name, old, new, new_key_id)
            .await
    }
}

#[async_trait]
impl Accounts for CachedStore {
    async fn put_account(&self, account: &Account) -> Result<(), StoreError> {
        self.inner.put_account(account).await
    }
    async fn account_by_login(&self, login: &str) -> Result<Option<Account>, StoreError> {
        self.inner.account_by_login(login).await
    }
    async fn sign_in_failed(
        &self,
        human: HumanId,
        lock_after: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
        self.inner
            .sign_in_failed(human, lock_after, lock_until)
            .await
    }
    async fn sign_in_succeeded(&self, human: HumanId) -> Result<(), StoreError> {
        self.inner.sign_in_succeeded(human).await
    }
    async fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.inner.create_session(session).await
    }
    async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        self.inner.session(id_hash, now).await
    }
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.inner.delete_session(id_hash).await
    }
    async fn delete_sessions_of(&self, human: HumanId) -> Result<u64, StoreError> {
        self.inner.delete_sessions_of(human).await
    }
    async fn count_attempt(
        &self,
        key_hash: &str,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<u64, StoreError> {
        self.inner.count_attempt(key_hash, at, window).await
    }
    async fn forget_attempts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.forget_attempts(before).await
    }
}

#[async_trait]
impl OAuthClients for CachedStore {
    async fn register_oauth_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError> {
        self.inner.register_oauth_client(client).await
    }
    async fn oauth_client(&self, client_id: &str) -> Result<Option<OAuthClientRecord>, StoreError> {
        self.inner.oauth_client(client_id).await
    }
    async fn oauth_client_agent(
        &self,
        tenant: TenantId,
        client_id: &str,
        human: HumanId,
    ) -> Result<Option<AgentId>, StoreError> {
        self.inner
            .oauth_client_agent(tenant, client_id, human)
            .await
    }
    async fn bind_oauth_client_agent(
        &self,
        tenant: TenantId,
        client_id: &str,
        human: HumanId,
        agent: AgentId,
    ) -> Result<(), StoreError> {
        self.inner
            .bind_oauth_client_agent(tenant, client_id, human, agent)
            .await
    }
    async fn put_once(&self, record: &OnceRecord) -> Result<(), StoreError> {
        self.inner.put_once(record).await
    }
    async fn once(&self, kind: OnceKind, key_hash: &str) -> Result<Option<OnceRecord>, StoreError> {
        self.inner.once(kind, key_hash).await
    }
    async fn use_once(
        &self,
        kind: OnceKind,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(OnceRecord, bool)>, StoreError> {
        self.inner.use_once(kind, key_hash, now).await
    }
}

#[async_trait]
impl Reviews for CachedStore {
    async fn mark_finding(&self, mark: &FindingMark, audit: &[NewEvent]) -> Result<(), StoreError> {
        self.inner.mark_finding(mark, audit).await
    }
    async fn finding_marks(
        &self,
        tenant: TenantId,
        agents: Option<&[AgentId]>,
    ) -> Result<Vec<FindingMark>, StoreError> {
        self.inner.finding_marks(tenant, agents).await
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn catalog_generation(&self) -> u64 {
        self.shared
            .catalog
            .load(std::sync::atomic::Ordering::SeqCst)
            .wrapping_add(self.inner.catalog_generation())
    }
}

/// Never cached: a deleted connection must be gone for every replica at once.
#[async_trait]
impl crate::Connections for CachedStore {
    async fn put_connection(&self, c: &crate::StoredConnection) -> Result<(), StoreError> {
        self.inner.put_connection(c).await
    }
    async fn connection(
        &self,
        tenant: TenantId,
        human: HumanId,
        server: ToolServerId,
    ) -> Result<Option<crate::StoredConnection>, StoreError> {
        self.inner.connection(tenant, human, server).await
    }
    async fn list_connections(
        &self,
        tenant: TenantId,
        human: HumanId,
    ) -> Result<Vec<crate::ConnectionMeta>, StoreError> {
        self.inner.list_connections(tenant, human).await
    }
    async fn delete_connection(
        &self,
        tenant: TenantId,
        human: HumanId,
        server: ToolServerId,
    ) -> Result<Option<crate::StoredConnection>, StoreError> {
        self.inner.delete_connection(tenant, human, server).await
    }
    async fn replace_connection_sealed(
        &self,
        current: &crate::StoredConnection,
        new: &str,
        new_key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace_connection_sealed(current, new, new_key_id, at)
            .await
    }
}
