//! The OAuth authorization server: clients, their agents per human, once-only records.

use super::*;
use crate::{OAuthClientRecord, OnceKind, OnceRecord};

pub async fn oauth_clients_agents_and_once_only_records(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let alice = human(a, "alice@example.com");
    store.create_human(&alice).await.unwrap();
    let helper = agent(a, alice.id, "oauth-helper");
    store.create_agent(&helper).await.unwrap();

    let client = OAuthClientRecord {
        client_id: "mcl_one".into(),
        tenant_id: a,
        metadata: r#"{"client_name":"one"}"#.into(),
        created_at: t0(),
    };
    store.register_oauth_client(&client).await.unwrap();
    assert_eq!(
        store.oauth_client("mcl_one").await.unwrap(),
        Some(client.clone())
    );
    assert!(store.oauth_client("mcl_two").await.unwrap().is_none());
    assert!(matches!(
        store.register_oauth_client(&client).await,
        Err(StoreError::Conflict { .. })
    ));

    // One agent per (client, human); a second binding is a conflict.
    assert!(
        store
            .oauth_client_agent(a, "mcl_one", alice.id)
            .await
            .unwrap()
            .is_none()
    );
    store
        .bind_oauth_client_agent(a, "mcl_one", alice.id, helper.id)
        .await
        .unwrap();
    assert_eq!(
        store
            .oauth_client_agent(a, "mcl_one", alice.id)
            .await
            .unwrap(),
        Some(helper.id)
    );
    assert!(matches!(
        store
            .bind_oauth_client_agent(a, "mcl_one", alice.id, helper.id)
            .await,
        Err(StoreError::Conflict { .. })
    ));

    // A once-only record is used by exactly one of many concurrent callers.
    let record = OnceRecord {
        kind: OnceKind::AuthorizationCode,
        key_hash: "c0de".into(),
        tenant_id: a,
        data: r#"{"x":1}"#.into(),
        expires_at: t0() + Duration::seconds(60),
        used_at: None,
    };
    store.put_once(&record).await.unwrap();
    assert!(matches!(
        store.put_once(&record).await,
        Err(StoreError::Conflict { .. })
    ));
    // The same hash under another kind is another record.
    assert!(
        store
            .once(OnceKind::AuthorizationRequest, "c0de")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .once(OnceKind::AuthorizationCode, "c0de")
            .await
            .unwrap(),
        Some(record.clone())
    );
    let now = t0() + Duration::seconds(1);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .use_once(OnceKind::AuthorizationCode, "c0de", now)
                .await
                .unwrap()
                .unwrap()
                .1
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        if t.await.unwrap() {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1);
    let (used, first) = store
        .use_once(OnceKind::AuthorizationCode, "c0de", now)
        .await
        .unwrap()
        .unwrap();
    assert!(!first);
    assert_eq!(used.used_at, Some(now));
    assert!(
        store
            .use_once(OnceKind::AuthorizationCode, "nope", now)
            .await
            .unwrap()
            .is_none()
    );

    // An expired record cannot be used, and stays unused.
    let late = OnceRecord {
        key_hash: "1a7e".into(),
        ..record.clone()
    };
    store.put_once(&late).await.unwrap();
    let (seen, first) = store
        .use_once(
            OnceKind::AuthorizationCode,
            "1a7e",
            t0() + Duration::seconds(61),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!first);
    assert_eq!(seen.used_at, None);

    // Records long expired are purged when new ones are stored.
    let later = OnceRecord {
        key_hash: "1a7e2".into(),
        expires_at: t0() + Duration::days(3),
        ..record
    };
    store.put_once(&later).await.unwrap();
    assert!(
        store
            .once(OnceKind::AuthorizationCode, "c0de")
            .await
            .unwrap()
            .is_none()
    );
}
