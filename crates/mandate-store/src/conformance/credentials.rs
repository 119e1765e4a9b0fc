//! Policy sets, grants and client-assertion replay.

use super::*;

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

pub async fn token_keys_are_published_retired_and_revocations_announced(store: Arc<dyn Store>) {
    let key = |kid: &str| TokenKey {
        kid: kid.to_owned(),
        jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"x","kid":"{kid}","alg":"EdDSA"}}"#),
        created_at: t0(),
        retire_at: None,
    };
    store.publish_token_key(&key("k1")).await.unwrap();
    store.publish_token_key(&key("k2")).await.unwrap();
    store.publish_token_key(&key("k1")).await.unwrap();
    let kids = |keys: Vec<TokenKey>| keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();
    assert_eq!(kids(store.token_keys(t0()).await.unwrap()), ["k1", "k2"]);
    store
        .retire_token_key("k1", t0() + Duration::minutes(5))
        .await
        .unwrap();
    let during = store.token_keys(t0() + Duration::minutes(4)).await.unwrap();
    assert_eq!(during[0].retire_at, Some(t0() + Duration::minutes(5)));
    assert_eq!(kids(during), ["k1", "k2"]);
    assert_eq!(
        kids(store.token_keys(t0() + Duration::minutes(5)).await.unwrap()),
        ["k2"]
    );

    // Agents are found by client id in any tenant (authentication only).
    let active = activated_mandate(&*store).await;
    let agent = store
        .agent_by_client_id(active.terms.agent_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.tenant_id, active.tenant_id);
    assert!(
        store
            .agent_by_client_id(AgentId::generate())
            .await
            .unwrap()
            .is_none()
    );

    // Where the backend has a notification channel, a revocation wakes its listeners.
    if let Some(mut feed) = store.revocation_feed().await.unwrap() {
        store
            .insert_grant(&grant_under(&active, "jti-feed", None, 0))
            .await
            .unwrap();
        store
            .revoke_grant_tree(active.tenant_id, "jti-feed", t0())
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no notification within 5 s"))
            .unwrap();
    }
}
