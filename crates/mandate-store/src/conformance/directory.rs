//! Tenants, API tokens, people, agents, tool servers and tools.

use super::*;

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
        step_up: false,
        created_at: t0(),
    };
    store.create_tool_server(&server).await.unwrap();
    assert_eq!(
        store.tool_server(a, server.id).await.unwrap(),
        Some(server.clone())
    );
    assert_eq!(store.tool_server(b, server.id).await.unwrap(), None);
    let stepping = ToolServer {
        step_up: true,
        ..server.clone()
    };
    store.update_tool_server(&stepping).await.unwrap();
    assert_eq!(
        store.tool_server(a, server.id).await.unwrap(),
        Some(stepping.clone())
    );
    store.update_tool_server(&server).await.unwrap();
    for ghost in [
        ToolServer {
            tenant_id: b,
            ..server.clone()
        },
        ToolServer {
            id: ToolServerId::generate(),
            ..server.clone()
        },
    ] {
        assert!(matches!(
            store.update_tool_server(&ghost).await,
            Err(StoreError::Missing { .. })
        ));
    }
    assert_eq!(
        store.tool_server(a, server.id).await.unwrap(),
        Some(server.clone())
    );
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
        amount_argument: None,
        compensation: None,
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
