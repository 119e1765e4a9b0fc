//! The one conformance suite every store adapter must pass.
//!
//! An adapter's tests invoke [`crate::store_conformance!`] with an async function that
//! returns a fresh, empty store; each case below becomes one `#[tokio::test]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a failed assertion is how a case reports"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mandate_domain::{
    Agent, AgentCredentials, AgentStatus, ApprovalRules, Budgets, Consent, ConsentChannel,
    ConsentDecision, FederatedIdentity, Grant, Human, Mandate, MandateEvent, MandateStatus,
    MandateTerms, Scope, Tenant, Tool, ToolAnnotations, ToolGrant, ToolServer, ToolServerTransport,
};
use mandate_types::{
    AgentId, ApiTokenId, ConsentId, DataClass, HumanId, MandateMode, RiskTier, TenantId, ToolId,
    ToolServerId,
};

use mandate_audit::{ChainVerifier, Checkpoint, Event, EventKind, Head, NewEvent, SigningKey};

mod accounts;
mod audit;
mod cached;
mod calls;
mod connections;
mod credentials;
mod directory;
mod mandates;
mod oauth;
mod reviews;
mod vault;

pub use accounts::*;
pub use audit::*;
pub use cached::*;
pub use calls::*;
pub use connections::*;
pub use credentials::*;
pub use directory::*;
pub use mandates::*;
pub use oauth::*;
pub use reviews::*;
pub use vault::*;

use crate::{
    AgentFilter, ApiToken, ApiTokenPrincipal, AuditFilter, HumanFilter, MandateFilter, PageRequest,
    Store, StoreError, TokenKey, ToolFilter,
};

/// Generates one test per conformance case. `$fresh` is an `async fn() -> Arc<dyn Store>`
/// (or anything `Store`) returning an empty store of its own.
#[macro_export]
macro_rules! store_conformance {
    ($fresh:path) => {
        $crate::store_conformance!(@cases $fresh;
            tenants_and_api_tokens,
            humans_are_tenant_scoped_and_unique_by_email,
            listing_pages_without_gaps_or_repeats,
            agents_and_their_credentials,
            tool_servers_and_tools,
            mandates_round_trip_and_filter,
            mandate_updates_are_compare_and_swap,
            concurrent_updates_let_exactly_one_win,
            consent_and_mandate_are_written_together,
            due_mandates_are_found_for_expiry,
            audit_chains_per_tenant_in_batch_order,
            large_batches_chain_in_order,
            audit_filters_and_pages,
            concurrent_appenders_never_fork_a_chain,
            failed_lifecycle_writes_leave_no_event,
            checkpoints_and_keys,
            policy_sets_are_versioned_newest_wins,
            grants_revoke_down_the_delegation_tree_and_with_their_mandate,
            grants_are_refused_under_a_mandate_that_is_not_live,
            revocation_wins_every_race,
            client_assertion_jtis_are_accepted_once,
            entries_commit_their_writes_with_their_event_or_nothing,
            token_keys_are_published_retired_and_revocations_announced,
            budgets_are_spent_atomically_and_approvals_and_proposals_used_once,
            drift_totals_add_up_and_the_alert_is_claimed_once,
            rollback_steps_are_claimed_once_and_done_never_again,
            vault_secrets_are_tenant_scoped_upserted_and_listed,
            vault_pages_across_tenants_and_reseals_by_compare_and_swap,
            connections_are_per_person_and_server_replaced_and_deleted,
            accounts_lock_after_failures_and_sessions_expire,
            attempts_are_counted_per_key_in_windows_and_forgotten,
            oauth_clients_agents_and_once_only_records,
            agent_sponsors_and_review_marks,
        );
    };
    (@cases $fresh:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let store = $fresh().await;
                $crate::conformance::$case(store).await;
            }
        )+
    };
}

fn t0() -> DateTime<Utc> {
    // Whole microseconds: what every adapter can store exactly.
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A new tenant named `name`, created in `store`.
pub async fn tenant(store: &dyn Store, name: &str) -> TenantId {
    let t = Tenant {
        id: TenantId::generate(),
        name: name.to_owned(),
        created_at: t0(),
    };
    store.create_tenant(&t).await.unwrap();
    t.id
}

fn human(tenant_id: TenantId, email: &str) -> Human {
    Human {
        id: HumanId::generate(),
        tenant_id,
        display_name: email.split('@').next().unwrap_or_default().to_owned(),
        email: email.to_owned(),
        groups: vec!["staff".into()],
        created_at: t0(),
    }
}

fn agent(tenant_id: TenantId, owner: HumanId, name: &str) -> Agent {
    Agent {
        id: AgentId::generate(),
        tenant_id,
        name: name.to_owned(),
        owner,
        sponsors: Vec::new(),
        credentials: AgentCredentials::default(),
        labels: BTreeMap::new(),
        status: AgentStatus::Active,
        created_at: t0(),
    }
}

fn terms(agent_id: AgentId, human_id: HumanId, owners: &[HumanId]) -> MandateTerms {
    MandateTerms {
        agent_id,
        human_id,
        intent: "book my Lisbon trip".into(),
        purpose: None,
        scope: Scope {
            tools: vec![ToolGrant {
                tool: "flights.*".into(),
                constraints: BTreeMap::new(),
            }],
        },
        data_ceiling: DataClass::Internal,
        mode: MandateMode::Execute,
        budgets: Budgets::default(),
        approval: ApprovalRules::default(),
        owners: owners.iter().copied().collect::<BTreeSet<_>>(),
        not_before: None,
        expires_at: t0() + Duration::days(1),
        max_delegation_depth: 0,
    }
}

fn consent_for(m: &Mandate, who: HumanId, decision: ConsentDecision) -> Consent {
    Consent {
        id: ConsentId::generate(),
        tenant_id: m.tenant_id,
        mandate_id: m.id,
        human_id: who,
        decision,
        terms_hash: m.terms_hash.clone(),
        channel: ConsentChannel::Api,
        comment: Some("ok".into()),
        decided_at: t0(),
    }
}

async fn seeded_mandate(store: &dyn Store, owners: usize) -> (Mandate, Vec<HumanId>) {
    let a = tenant(store, "a").await;
    let grantor = human(a, "grantor@example.com");
    store.create_human(&grantor).await.unwrap();
    let mut owner_ids = Vec::new();
    for i in 0..owners {
        let o = human(a, &format!("owner{i}@example.com"));
        store.create_human(&o).await.unwrap();
        owner_ids.push(o.id);
    }
    let bot = agent(a, grantor.id, "bot");
    store.create_agent(&bot).await.unwrap();
    let m = Mandate::request(
        a,
        terms(bot.id, grantor.id, &owner_ids),
        format!("agent:{}", bot.id),
        t0(),
    );
    store
        .create_mandate(&m, &[note(&m, EventKind::MandateRequested)])
        .await
        .unwrap();
    (m, owner_ids)
}

/// A stored mandate with no owners, made active by its grantor's consent.
async fn activated_mandate(store: &dyn Store) -> Mandate {
    let (m, _) = seeded_mandate(store, 0).await;
    consented(store, &m).await
}

/// `m` (stored, requested, no owners) made active by its grantor's consent.
async fn consented(store: &dyn Store, m: &Mandate) -> Mandate {
    let consent = consent_for(m, m.terms.human_id, ConsentDecision::Granted);
    let mut active = m.clone();
    active
        .apply(
            MandateEvent::Consent {
                consent: &consent,
                prior: &[],
            },
            t0(),
        )
        .unwrap();
    active.version += 1;
    store.record_consent(&consent, &active, &[]).await.unwrap();
    active
}

fn note(m: &Mandate, kind: EventKind) -> NewEvent {
    NewEvent::new(m.tenant_id, kind, "admin")
        .mandate(m.id)
        .agent(m.terms.agent_id)
        .human(m.terms.human_id)
}

async fn kinds(store: &dyn Store, tenant: TenantId) -> Vec<EventKind> {
    store
        .audit_events(tenant, &AuditFilter::default(), None, 500)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect()
}

/// Reads a tenant's whole stored chain and verifies it.
async fn verified(store: &dyn Store, tenant: TenantId) -> Head {
    let mut verifier = ChainVerifier::new(tenant, []);
    let mut after = 0;
    loop {
        let records = store.audit_records(tenant, after, 100).await.unwrap();
        let Some(last) = records.last() else { break };
        after = last.seq;
        for r in &records {
            let event: Event = serde_json::from_str(&r.doc).unwrap();
            assert_eq!(event.seq, r.seq);
            verifier.push(&event).unwrap();
        }
    }
    verifier.finish(&[], &[]).unwrap().head
}
