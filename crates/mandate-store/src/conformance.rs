//! The one conformance suite every store adapter must pass.
//!
//! An adapter's tests invoke [`crate::store_conformance!`] with an async function that
//! returns a fresh, empty store; each case below becomes one `#[tokio::test]`.

#![allow(
    clippy::unwrap_used,
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

use crate::{
    AgentFilter, ApiToken, ApiTokenPrincipal, AuditFilter, HumanFilter, MandateFilter, PageRequest,
    Store, StoreError, ToolFilter,
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
            audit_filters_and_pages,
            concurrent_appenders_never_fork_a_chain,
            failed_lifecycle_writes_leave_no_event,
            checkpoints_and_keys,
            policy_sets_are_versioned_newest_wins,
            grants_revoke_down_the_delegation_tree_and_with_their_mandate,
            client_assertion_jtis_are_accepted_once,
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

async fn tenant(store: &dyn Store, name: &str) -> TenantId {
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

pub async fn tenants_and_api_tokens(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let id = tenant(&*store, "acme").await;
    assert_eq!(store.tenant(id).await.unwrap().unwrap().name, "acme");
    assert_eq!(store.tenant_by_name("acme").await.unwrap().unwrap().id, id);
    assert!(store.tenant_by_name("nope").await.unwrap().is_none());
    let dup = Tenant {
        id: TenantId::generate(),
        name: "acme".into(),
        created_at: t0(),
    };
    assert!(matches!(
        store.create_tenant(&dup).await,
        Err(StoreError::Conflict { .. })
    ));

    let token = ApiToken {
        id: ApiTokenId::generate(),
        tenant_id: id,
        principal: ApiTokenPrincipal::Admin,
        token_hash: "ab".repeat(32),
        label: "bootstrap".into(),
        created_at: t0(),
        expires_at: None,
        revoked_at: None,
    };
    store.create_api_token(&token).await.unwrap();
    assert_eq!(
        store.api_token_by_hash(&"ab".repeat(32)).await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(
        store.api_token_by_hash(&"cd".repeat(32)).await.unwrap(),
        None
    );
    let same_hash = ApiToken {
        id: ApiTokenId::generate(),
        ..token
    };
    assert!(matches!(
        store.create_api_token(&same_hash).await,
        Err(StoreError::Conflict { .. })
    ));
}

pub async fn humans_are_tenant_scoped_and_unique_by_email(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let alice = human(a, "alice@example.com");
    store.create_human(&alice).await.unwrap();
    assert_eq!(store.human(a, alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store.human(b, alice.id).await.unwrap(),
        None,
        "cross-tenant reads find nothing"
    );

    let again = human(a, "alice@example.com");
    assert!(matches!(
        store.create_human(&again).await,
        Err(StoreError::Conflict { .. })
    ));
    store
        .create_human(&human(b, "alice@example.com"))
        .await
        .unwrap();

    let mut bob = human(a, "bob@example.com");
    bob.groups = vec!["finance".into()];
    store.create_human(&bob).await.unwrap();
    let all = store
        .list_humans(a, &HumanFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    let by_email = HumanFilter {
        email: Some("bob@example.com".into()),
        group: None,
    };
    let found = store
        .list_humans(a, &by_email, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(found.items, vec![bob.clone()]);
    let by_group = HumanFilter {
        email: None,
        group: Some("finance".into()),
    };
    let found = store
        .list_humans(a, &by_group, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(found.items, vec![bob]);
    let hostile = HumanFilter {
        email: Some("' OR '1'='1".into()),
        group: Some("%".into()),
    };
    let found = store
        .list_humans(a, &hostile, &PageRequest::default())
        .await
        .unwrap();
    assert!(
        found.items.is_empty(),
        "filters are bound, never spliced or pattern-matched"
    );
}

pub async fn listing_pages_without_gaps_or_repeats(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let h = human(a, &format!("h{i}@example.com"));
        store.create_human(&h).await.unwrap();
        ids.push(h.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::new(None, Some(3)).unwrap();
    loop {
        let got = store
            .list_humans(a, &HumanFilter::default(), &page)
            .await
            .unwrap();
        assert!(got.items.len() <= 3);
        seen.extend(got.items.iter().map(|h| h.id));
        match got.next {
            Some(cursor) => page = PageRequest::new(Some(cursor.0), Some(3)).unwrap(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every item once, in creation order");
}

pub async fn agents_and_their_credentials(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let owner = human(a, "owner@example.com");
    store.create_human(&owner).await.unwrap();

    let mut bot = agent(a, owner.id, "travel-bot");
    bot.credentials = AgentCredentials {
        jwks: vec![
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        ],
        spiffe_id: Some("spiffe://example.org/travel".into()),
        federated: Some(FederatedIdentity {
            issuer: "https://idp.example".into(),
            subject: "svc-travel".into(),
        }),
    };
    bot.labels.insert("team".into(), "travel".into());
    store.create_agent(&bot).await.unwrap();
    assert_eq!(store.agent(a, bot.id).await.unwrap(), Some(bot.clone()));
    assert_eq!(store.agent(b, bot.id).await.unwrap(), None);
    assert_eq!(
        store
            .agent_by_spiffe_id("spiffe://example.org/travel")
            .await
            .unwrap(),
        Some(bot.clone())
    );
    assert_eq!(
        store
            .agent_by_spiffe_id("spiffe://example.org/other")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .agent_by_federated("https://idp.example", "svc-travel")
            .await
            .unwrap(),
        Some(bot.clone())
    );
    assert_eq!(
        store
            .agent_by_federated("https://idp.example", "someone")
            .await
            .unwrap(),
        None
    );

    let same_name = agent(a, owner.id, "travel-bot");
    assert!(matches!(
        store.create_agent(&same_name).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut same_spiffe = agent(b, owner.id, "other");
    same_spiffe.credentials.spiffe_id = bot.credentials.spiffe_id.clone();
    assert!(matches!(
        store.create_agent(&same_spiffe).await,
        Err(StoreError::Conflict { .. })
    ));

    let helper = agent(a, owner.id, "helper");
    store.create_agent(&helper).await.unwrap();
    bot.status = AgentStatus::Disabled;
    store.update_agent(&bot).await.unwrap();
    assert_eq!(
        store.agent(a, bot.id).await.unwrap().unwrap().status,
        AgentStatus::Disabled
    );

    let disabled = AgentFilter {
        status: Some(AgentStatus::Disabled),
        ..Default::default()
    };
    let got = store
        .list_agents(a, &disabled, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(got.items, vec![bot.clone()]);
    let owned = AgentFilter {
        owner: Some(owner.id),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_agents(a, &owned, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let named = AgentFilter {
        name: Some("helper".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_agents(a, &named, &PageRequest::default())
            .await
            .unwrap()
            .items,
        vec![helper]
    );
    assert!(
        store
            .list_agents(b, &AgentFilter::default(), &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let ghost = agent(a, owner.id, "ghost");
    assert!(matches!(
        store.update_agent(&ghost).await,
        Err(StoreError::Missing { .. })
    ));
}

pub async fn tool_servers_and_tools(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let server = ToolServer {
        id: ToolServerId::generate(),
        tenant_id: a,
        name: "bank".into(),
        transport: ToolServerTransport::McpHttp {
            url: "http://127.0.0.1:9/mcp".into(),
        },
        credential_ref: Some("secret:bank".into()),
        created_at: t0(),
    };
    store.create_tool_server(&server).await.unwrap();
    assert_eq!(
        store.tool_server(a, server.id).await.unwrap(),
        Some(server.clone())
    );
    assert_eq!(store.tool_server(b, server.id).await.unwrap(), None);
    let dup = ToolServer {
        id: ToolServerId::generate(),
        ..server.clone()
    };
    assert!(matches!(
        store.create_tool_server(&dup).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store
            .list_tool_servers(a, &PageRequest::default())
            .await
            .unwrap()
            .items,
        vec![server.clone()]
    );

    let mk = |name: &str, tier: RiskTier| Tool {
        id: ToolId::generate(),
        tenant_id: a,
        server_id: server.id,
        name: name.to_owned(),
        description: format!("{name} things"),
        input_schema: serde_json::json!({"type": "object"}),
        annotations: ToolAnnotations {
            read_only_hint: Some(tier == RiskTier::Read),
            ..Default::default()
        },
        risk_tier: tier,
        tags: BTreeSet::from(["financial".to_owned()]),
        data_class: DataClass::Confidential,
        compensating_tool: None,
        created_at: t0(),
    };
    let balance = mk("balance", RiskTier::Read);
    let mut transfer = mk("transfer", RiskTier::HighImpact);
    store.create_tool(&balance).await.unwrap();
    store.create_tool(&transfer).await.unwrap();
    assert!(matches!(
        store.create_tool(&mk("balance", RiskTier::Read)).await,
        Err(StoreError::Conflict { .. })
    ));
    let orphan = Tool {
        server_id: ToolServerId::generate(),
        ..mk("orphan", RiskTier::Read)
    };
    assert!(matches!(
        store.create_tool(&orphan).await,
        Err(StoreError::Missing { .. })
    ));

    transfer.tags.insert("external_transfer".into());
    transfer.data_class = DataClass::Restricted;
    store.update_tool(&transfer).await.unwrap();
    assert_eq!(
        store.tool(a, transfer.id).await.unwrap(),
        Some(transfer.clone())
    );
    assert_eq!(store.tool(b, transfer.id).await.unwrap(), None);

    let high = ToolFilter {
        server: Some(server.id),
        risk_tier: Some(RiskTier::HighImpact),
    };
    assert_eq!(
        store
            .list_tools(a, &high, &PageRequest::default())
            .await
            .unwrap()
            .items,
        vec![transfer]
    );
    let all = store
        .list_tools(a, &ToolFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
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

pub async fn mandates_round_trip_and_filter(store: Arc<dyn Store>) {
    let (m, owners) = seeded_mandate(&*store, 1).await;
    let other = tenant(&*store, "other").await;
    assert_eq!(
        store.mandate(m.tenant_id, m.id).await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(store.mandate(other, m.id).await.unwrap(), None);
    assert!(matches!(
        store.create_mandate(&m, &[]).await,
        Err(StoreError::Conflict { .. })
    ));

    let page = PageRequest::default();
    let f = |status, agent, human| MandateFilter {
        status,
        agent,
        human,
        consenter: None,
    };
    let consenter = |h| MandateFilter {
        consenter: Some(h),
        ..Default::default()
    };
    let list = |filter: MandateFilter| {
        let store = store.clone();
        let page = page.clone();
        async move {
            store
                .list_mandates(m.tenant_id, &filter, &page)
                .await
                .unwrap()
                .items
        }
    };
    assert_eq!(list(f(None, None, None)).await, vec![m.clone()]);
    assert_eq!(
        list(f(
            Some(MandateStatus::Requested),
            Some(m.terms.agent_id),
            Some(m.terms.human_id)
        ))
        .await,
        vec![m.clone()]
    );
    assert!(
        list(f(Some(MandateStatus::Active), None, None))
            .await
            .is_empty()
    );
    assert!(
        list(f(None, Some(AgentId::generate()), None))
            .await
            .is_empty()
    );
    assert!(
        list(f(None, None, Some(HumanId::generate())))
            .await
            .is_empty()
    );
    // Both the grantor and a named owner find it among the mandates they must answer.
    assert_eq!(list(consenter(m.terms.human_id)).await, vec![m.clone()]);
    assert_eq!(list(consenter(owners[0])).await, vec![m.clone()]);
    assert!(list(f(None, None, Some(owners[0]))).await.is_empty());
    assert!(list(consenter(HumanId::generate())).await.is_empty());
    assert!(
        store
            .list_mandates(other, &MandateFilter::default(), &page)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// A stored mandate with no owners, made active by its grantor's consent.
async fn activated_mandate(store: &dyn Store) -> Mandate {
    let (m, _) = seeded_mandate(store, 0).await;
    let consent = consent_for(&m, m.terms.human_id, ConsentDecision::Granted);
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

pub async fn mandate_updates_are_compare_and_swap(store: Arc<dyn Store>) {
    let active = activated_mandate(&*store).await;

    let mut done = active.clone();
    done.apply(
        MandateEvent::Complete {
            reason: Some("booked"),
        },
        t0(),
    )
    .unwrap();
    done.version += 1;
    store.update_mandate(&done, &[]).await.unwrap();

    // A writer still holding the `active` copy loses.
    let mut stale = active.clone();
    stale
        .apply(MandateEvent::Revoke { reason: None }, t0())
        .unwrap();
    stale.version += 1;
    assert!(matches!(
        store.update_mandate(&stale, &[]).await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(
        store.mandate(active.tenant_id, active.id).await.unwrap(),
        Some(done.clone())
    );
    let completed = MandateFilter {
        status: Some(MandateStatus::Completed),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_mandates(active.tenant_id, &completed, &PageRequest::default())
            .await
            .unwrap()
            .items,
        vec![done]
    );

    let ghost = Mandate {
        id: mandate_types::MandateId::generate(),
        version: 1,
        ..active.clone()
    };
    assert!(matches!(
        store.update_mandate(&ghost, &[]).await,
        Err(StoreError::VersionConflict)
    ));
}

pub async fn concurrent_updates_let_exactly_one_win(store: Arc<dyn Store>) {
    let (m, _) = seeded_mandate(&*store, 0).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut copy = m.clone();
        tasks.push(tokio::spawn(async move {
            copy.usage.calls = i + 1;
            copy.version += 1;
            store.update_mandate(&copy, &[]).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::VersionConflict) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        store
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

pub async fn consent_and_mandate_are_written_together(store: Arc<dyn Store>) {
    let (m, owners) = seeded_mandate(&*store, 1).await;
    let first = consent_for(&m, m.terms.human_id, ConsentDecision::Granted);
    let mut after_first = m.clone();
    after_first
        .apply(
            MandateEvent::Consent {
                consent: &first,
                prior: &[],
            },
            t0(),
        )
        .unwrap();
    after_first.version += 1;
    store
        .record_consent(&first, &after_first, &[note(&m, EventKind::ConsentGranted)])
        .await
        .unwrap();
    assert_eq!(
        after_first.status,
        MandateStatus::Requested,
        "the owner has not answered"
    );

    // The same human answering twice: refused, and nothing changes.
    let twice = consent_for(&m, m.terms.human_id, ConsentDecision::Denied);
    let mut bumped = after_first.clone();
    bumped.version += 1;
    assert!(matches!(
        store
            .record_consent(&twice, &bumped, &[note(&m, EventKind::ConsentDenied)])
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.mandate(m.tenant_id, m.id).await.unwrap(),
        Some(after_first.clone())
    );

    // A stale mandate version: the consent is not stored either.
    let owner_answer = consent_for(&m, owners[0], ConsentDecision::Granted);
    let mut stale = m.clone();
    stale.version += 1;
    assert!(matches!(
        store
            .record_consent(
                &owner_answer,
                &stale,
                &[note(&m, EventKind::ConsentGranted)]
            )
            .await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(
        store.consents(m.tenant_id, m.id).await.unwrap(),
        vec![first.clone()]
    );

    let mut active = after_first.clone();
    active
        .apply(
            MandateEvent::Consent {
                consent: &owner_answer,
                prior: std::slice::from_ref(&first),
            },
            t0(),
        )
        .unwrap();
    active.version += 1;
    store
        .record_consent(
            &owner_answer,
            &active,
            &[
                note(&m, EventKind::ConsentGranted),
                note(&m, EventKind::MandateActivated),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        MandateStatus::Active
    );
    assert_eq!(
        store.consents(m.tenant_id, m.id).await.unwrap(),
        vec![first, owner_answer]
    );
    let other = tenant(&*store, "other").await;
    assert!(store.consents(other, m.id).await.unwrap().is_empty());
    // Only the writes that happened left events; the refused ones left none.
    assert_eq!(
        kinds(&*store, m.tenant_id).await,
        vec![
            EventKind::MandateRequested,
            EventKind::ConsentGranted,
            EventKind::ConsentGranted,
            EventKind::MandateActivated
        ]
    );
}

pub async fn due_mandates_are_found_for_expiry(store: Arc<dyn Store>) {
    let (m, _) = seeded_mandate(&*store, 0).await;
    let before = m.terms.expires_at - Duration::seconds(1);
    assert!(
        store
            .mandates_due_to_expire(before, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .mandates_due_to_expire(m.terms.expires_at, 10)
        .await
        .unwrap();
    assert_eq!(due, vec![m.clone()]);

    let mut expired = m.clone();
    expired
        .apply(MandateEvent::Expire, m.terms.expires_at)
        .unwrap();
    expired.version += 1;
    store.update_mandate(&expired, &[]).await.unwrap();
    assert!(
        store
            .mandates_due_to_expire(m.terms.expires_at, 10)
            .await
            .unwrap()
            .is_empty(),
        "final mandates are not due"
    );
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

pub async fn audit_chains_per_tenant_in_batch_order(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let ev = |t, i: u64| NewEvent::new(t, EventKind::Decision, "agent:x").with("i", i);
    let batch = vec![ev(b, 0), ev(a, 1), ev(b, 2), ev(a, 3), ev(a, 4)];
    let out = store.append_events(&batch, t0()).await.unwrap();
    assert_eq!(out.len(), 5);
    let seqs: Vec<(TenantId, u64, u64)> = out
        .iter()
        .map(|e| (e.tenant_id, e.seq, e.data["i"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        seqs,
        vec![(b, 1, 0), (a, 1, 1), (b, 2, 2), (a, 2, 3), (a, 3, 4)]
    );
    let more = store
        .append_events(&[ev(a, 5)], t0() + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(more[0].seq, 4);
    assert_eq!(more[0].prev_hash, out[4].hash);
    assert!(store.append_events(&[], t0()).await.unwrap().is_empty());

    // What was returned is what was stored, byte for byte re-parsed.
    let stored = store
        .audit_events(a, &AuditFilter::default(), None, 500)
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![
            out[1].clone(),
            out[3].clone(),
            out[4].clone(),
            more[0].clone()
        ]
    );
    assert_eq!(verified(&*store, a).await, more[0].head());
    assert_eq!(verified(&*store, b).await, out[2].head());
    let mut heads = store.audit_heads().await.unwrap();
    heads.sort_by_key(|(t, _)| *t);
    let mut want = vec![(a, more[0].head()), (b, out[2].head())];
    want.sort_by_key(|(t, _)| *t);
    assert_eq!(heads, want);
}

pub async fn audit_filters_and_pages(store: Arc<dyn Store>) {
    let (m, owners) = seeded_mandate(&*store, 1).await;
    let t = m.tenant_id;
    let mut batch = Vec::new();
    for i in 0..10u64 {
        let kind = if i % 2 == 0 {
            EventKind::Decision
        } else {
            EventKind::ToolCalled
        };
        batch.push(note(&m, kind).with("i", i));
    }
    batch.push(NewEvent::new(t, EventKind::PolicyChanged, "admin").human(owners[0]));
    store
        .append_events(&batch, t0() + Duration::minutes(5))
        .await
        .unwrap();

    // The same answers before the index is built, half built, and complete.
    check_audit_filters(&store, &m, &owners).await;
    assert_eq!(store.index_audit(5).await.unwrap(), 5);
    check_audit_filters(&store, &m, &owners).await;
    assert_eq!(store.index_audit(1_000).await.unwrap(), 7);
    assert_eq!(store.index_audit(1_000).await.unwrap(), 0);
    check_audit_filters(&store, &m, &owners).await;
}

async fn check_audit_filters(store: &Arc<dyn Store>, m: &Mandate, owners: &[HumanId]) {
    let t = m.tenant_id;
    let read = |filter: AuditFilter, after: Option<u64>, limit: u32| {
        let store = store.clone();
        async move {
            store
                .audit_events(t, &filter, after, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<u64>>()
        }
    };
    let all = read(AuditFilter::default(), None, 500).await;
    assert_eq!(all, (1..=12).collect::<Vec<u64>>());
    assert_eq!(
        read(AuditFilter::default(), Some(3), 4).await,
        vec![4, 5, 6, 7]
    );
    let by_kind = AuditFilter {
        kind: Some(EventKind::ToolCalled),
        ..Default::default()
    };
    assert_eq!(read(by_kind, None, 500).await, vec![3, 5, 7, 9, 11]);
    let by_mandate = AuditFilter {
        mandate: Some(m.id),
        ..Default::default()
    };
    assert_eq!(read(by_mandate, None, 500).await.len(), 11);
    let by_owner = AuditFilter {
        human: Some(owners[0]),
        ..Default::default()
    };
    assert_eq!(read(by_owner, None, 500).await, vec![12]);
    let by_agent = AuditFilter {
        agent: Some(m.terms.agent_id),
        kind: Some(EventKind::MandateRequested),
        ..Default::default()
    };
    assert_eq!(read(by_agent, None, 500).await, vec![1]);
    let before = AuditFilter {
        until: Some(t0() + Duration::minutes(1)),
        ..Default::default()
    };
    assert_eq!(read(before, None, 500).await, vec![1]);
    let after = AuditFilter {
        since: Some(t0() + Duration::minutes(5)),
        ..Default::default()
    };
    assert_eq!(read(after, None, 500).await.len(), 11);
    let other = TenantId::generate();
    assert!(
        store
            .audit_events(other, &AuditFilter::default(), None, 500)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn concurrent_appenders_never_fork_a_chain(store: Arc<dyn Store>) {
    let t = tenant(&*store, "busy").await;
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for round in 0..20u64 {
                let size = usize::try_from(round % 3 + 1).unwrap();
                let batch: Vec<NewEvent> = (0..size)
                    .map(|_| NewEvent::new(t, EventKind::Decision, format!("agent:{task}")))
                    .collect();
                let out = store.append_events(&batch, t0()).await.unwrap();
                // A batch is contiguous in its chain.
                for pair in out.windows(2) {
                    assert_eq!(pair[1].seq, pair[0].seq + 1);
                }
                seqs.extend(out.iter().map(|e| e.seq));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    let n = u64::try_from(all.len()).unwrap();
    assert_eq!(
        all,
        (1..=n).collect::<Vec<u64>>(),
        "every seq once, no gaps"
    );
    assert_eq!(verified(&*store, t).await.seq, n);
}

pub async fn failed_lifecycle_writes_leave_no_event(store: Arc<dyn Store>) {
    let (m, _) = seeded_mandate(&*store, 0).await;
    // A duplicate mandate and a stale update both fail, and take their events with them.
    assert!(
        store
            .create_mandate(&m, &[note(&m, EventKind::MandateRequested)])
            .await
            .is_err()
    );
    let mut stale = m.clone();
    stale.version += 5;
    assert!(matches!(
        store
            .update_mandate(&stale, &[note(&m, EventKind::MandateRevoked)])
            .await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(
        kinds(&*store, m.tenant_id).await,
        vec![EventKind::MandateRequested]
    );
    let mut revoked = m.clone();
    revoked.version += 1;
    store
        .update_mandate(&revoked, &[note(&m, EventKind::MandateRevoked)])
        .await
        .unwrap();
    assert_eq!(
        kinds(&*store, m.tenant_id).await,
        vec![EventKind::MandateRequested, EventKind::MandateRevoked]
    );
}

pub async fn checkpoints_and_keys(store: Arc<dyn Store>) {
    let t = tenant(&*store, "a").await;
    let out = store
        .append_events(&[NewEvent::new(t, EventKind::Decision, "admin")], t0())
        .await
        .unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    store.add_audit_key(key.public_key()).await.unwrap();
    store.add_audit_key(key.public_key()).await.unwrap();
    assert_eq!(
        store.audit_keys().await.unwrap(),
        vec![key.public_key().clone()]
    );
    let cp = key.checkpoint(t, &out[0].head(), t0());
    store.add_checkpoint(&cp).await.unwrap();
    // A second checkpoint of the same position is ignored, not an error.
    store
        .add_checkpoint(&key.checkpoint(t, &out[0].head(), t0() + Duration::seconds(9)))
        .await
        .unwrap();
    let records = store.checkpoint_records(t).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 1);
    let back: Checkpoint = serde_json::from_str(&records[0].doc).unwrap();
    assert_eq!(back, cp);
    assert!(back.verify(key.public_key()));
    let other = tenant(&*store, "b").await;
    assert!(store.checkpoint_records(other).await.unwrap().is_empty());
}

pub async fn policy_sets_are_versioned_newest_wins(store: Arc<dyn Store>) {
    assert_eq!(store.policy_set_version().await.unwrap(), 0);
    assert!(store.latest_policy_set().await.unwrap().is_none());
    let v1 = store
        .put_policy_set("sha256:aa", r#"{"policies":[]}"#, "admin", t0())
        .await
        .unwrap();
    let v2 = store
        .put_policy_set(
            "sha256:bb",
            r#"{"policies":[{"name":"a.cedar","text":"permit (principal, action, resource);"}]}"#,
            "human:x",
            t0() + Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(store.policy_set_version().await.unwrap(), 2);
    let latest = store.latest_policy_set().await.unwrap().unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.digest, "sha256:bb");
    assert!(latest.source.contains("permit (principal"));
    assert_eq!(latest.created_by, "human:x");
    assert_eq!(latest.created_at, t0() + Duration::seconds(1));

    // Writers racing: every write gets its own version or a conflict, never a lost one.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_policy_set(&format!("sha256:{i}"), "{}", "admin", t0())
                .await
        }));
    }
    let mut won = BTreeSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(version) => assert!(won.insert(version), "version {version} given twice"),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(!won.is_empty());
    assert_eq!(
        store.policy_set_version().await.unwrap(),
        2 + won.len() as u64
    );
}

fn grant_under(m: &Mandate, jti: &str, parent: Option<&str>, depth: u8) -> Grant {
    Grant {
        jti: jti.to_owned(),
        tenant_id: m.tenant_id,
        mandate_id: Some(m.id),
        agent_id: m.terms.agent_id,
        parent_jti: parent.map(str::to_owned),
        depth,
        scope: vec!["flights.*".into()],
        cnf_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        issued_at: t0(),
        expires_at: t0() + Duration::minutes(5),
        revoked_at: None,
    }
}

pub async fn grants_revoke_down_the_delegation_tree_and_with_their_mandate(store: Arc<dyn Store>) {
    let active = activated_mandate(&*store).await;

    let root = grant_under(&active, "jti-root", None, 0);
    store.insert_grant(&root).await.unwrap();
    store
        .insert_grant(&grant_under(&active, "jti-a", Some("jti-root"), 1))
        .await
        .unwrap();
    store
        .insert_grant(&grant_under(&active, "jti-a1", Some("jti-a"), 2))
        .await
        .unwrap();
    store
        .insert_grant(&grant_under(&active, "jti-b", Some("jti-root"), 1))
        .await
        .unwrap();
    assert_eq!(
        store
            .grant(active.tenant_id, "jti-root")
            .await
            .unwrap()
            .unwrap(),
        root
    );
    // A jti is unique; an unknown parent, or one in another tenant, is refused.
    assert!(matches!(
        store.insert_grant(&root).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .insert_grant(&grant_under(&active, "jti-x", Some("nope"), 1))
            .await,
        Err(StoreError::Missing { .. })
    ));
    let other = tenant(&*store, "other").await;
    assert!(store.grant(other, "jti-root").await.unwrap().is_none());
    let mut foreign = grant_under(&active, "jti-y", Some("jti-root"), 1);
    foreign.tenant_id = other;
    assert!(matches!(
        store.insert_grant(&foreign).await,
        Err(StoreError::Missing { .. })
    ));

    // Revoking a delegated grant revokes its subtree, not its parent or siblings.
    let at = t0() + Duration::seconds(30);
    let mut revoked = store
        .revoke_grant_tree(active.tenant_id, "jti-a", at)
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, ["jti-a", "jti-a1"]);
    assert!(
        store
            .grant(active.tenant_id, "jti-a1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            == Some(at)
    );
    assert!(
        store
            .grant(active.tenant_id, "jti-b")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    // Nothing is delegated from a revoked grant; revoking again changes nothing.
    assert!(matches!(
        store
            .insert_grant(&grant_under(&active, "jti-a2", Some("jti-a"), 2))
            .await,
        Err(StoreError::Missing { .. })
    ));
    assert!(
        store
            .revoke_grant_tree(active.tenant_id, "jti-a", at + Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.revoke_grant_tree(other, "jti-root", at).await,
        Err(StoreError::Missing { .. })
    ));

    // Completing the mandate revokes every grant under it, in the same write.
    let mut done = active.clone();
    done.apply(
        MandateEvent::Complete { reason: None },
        t0() + Duration::minutes(1),
    )
    .unwrap();
    done.version += 1;
    store.update_mandate(&done, &[]).await.unwrap();
    for jti in ["jti-root", "jti-b"] {
        let g = store.grant(active.tenant_id, jti).await.unwrap().unwrap();
        assert_eq!(g.revoked_at, Some(t0() + Duration::minutes(1)), "{jti}");
    }
    assert_eq!(
        store
            .grant(active.tenant_id, "jti-a")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at),
        "an earlier revocation keeps its time"
    );
    let since = store.revoked_since(t0(), 100).await.unwrap();
    let jtis: Vec<&str> = since.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jtis.len(), 4);
    assert_eq!(&jtis[..2], ["jti-a", "jti-a1"]);
    assert!(
        store
            .revoked_since(t0() + Duration::minutes(2), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn client_assertion_jtis_are_accepted_once(store: Arc<dyn Store>) {
    let exp = t0() + Duration::minutes(5);
    assert!(store.claim_jti("agt_1", "j1", exp, t0()).await.unwrap());
    assert!(
        !store.claim_jti("agt_1", "j1", exp, t0()).await.unwrap(),
        "a replay"
    );
    assert!(
        store.claim_jti("agt_2", "j1", exp, t0()).await.unwrap(),
        "per issuer"
    );
    // Once expired the record is purged; the assertion itself is then refused for its
    // `exp` by the caller, so accepting the jti again is harmless.
    assert!(
        store
            .claim_jti(
                "agt_1",
                "j1",
                exp + Duration::minutes(5),
                exp + Duration::seconds(1)
            )
            .await
            .unwrap()
    );
    // Concurrent claims of one jti: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.claim_jti("agt_3", "race", exp, t0()).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}
