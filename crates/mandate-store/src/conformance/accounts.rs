//! The console's accounts and sessions.

use super::*;
use crate::{Account, ConsoleSession};

fn account(tenant_id: TenantId, human_id: HumanId, login: &str, hash: &str) -> Account {
    Account {
        tenant_id,
        human_id,
        login: login.to_owned(),
        password_hash: hash.to_owned(),
        failed_attempts: 0,
        locked_until: None,
        updated_at: t0(),
    }
}

pub async fn accounts_lock_after_failures_and_sessions_expire(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let alice = human(a, "alice@example.com");
    let bob = human(b, "bob@example.com");
    store.create_human(&alice).await.unwrap();
    store.create_human(&bob).await.unwrap();

    let mine = account(a, alice.id, "alice@example.com", "$argon2id$one");
    store.put_account(&mine).await.unwrap();
    assert_eq!(
        store.account_by_login("alice@example.com").await.unwrap(),
        Some(mine.clone())
    );
    assert!(
        store
            .account_by_login("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );
    // A sign-in name is unique across tenants.
    let clash = account(b, bob.id, "alice@example.com", "$argon2id$two");
    assert!(matches!(
        store.put_account(&clash).await,
        Err(StoreError::Conflict { .. })
    ));

    // Failures count one by one; the third locks.
    let until = t0() + Duration::minutes(15);
    for n in 1..=3u32 {
        let now = store
            .sign_in_failed(alice.id, 3, until)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.failed_attempts, n);
        assert_eq!(now.locked_until, (n == 3).then_some(until));
    }
    assert!(
        store
            .sign_in_failed(bob.id, 3, until)
            .await
            .unwrap()
            .is_none()
    );
    // A success clears the count and the lock; so does a new password.
    store.sign_in_succeeded(alice.id).await.unwrap();
    let got = store
        .account_by_login("alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.failed_attempts, got.locked_until), (0, None));
    store.sign_in_failed(alice.id, 1, until).await.unwrap();
    let renewed = Account {
        password_hash: "$argon2id$three".into(),
        updated_at: t0() + Duration::seconds(5),
        ..mine.clone()
    };
    store.put_account(&renewed).await.unwrap();
    assert_eq!(
        store.account_by_login("alice@example.com").await.unwrap(),
        Some(renewed)
    );

    // Sessions: found until they expire, gone when deleted, all of a human's at once.
    let session = |hash: &str, human: HumanId, tenant: TenantId| ConsoleSession {
        id_hash: hash.to_owned(),
        tenant_id: tenant,
        human_id: human,
        csrf: format!("csrf-{hash}"),
        created_at: t0(),
        expires_at: t0() + Duration::hours(1),
    };
    store
        .create_session(&session("s1", alice.id, a))
        .await
        .unwrap();
    store
        .create_session(&session("s2", alice.id, a))
        .await
        .unwrap();
    store
        .create_session(&session("s3", bob.id, b))
        .await
        .unwrap();
    assert!(matches!(
        store.create_session(&session("s1", bob.id, b)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.session("s1", t0()).await.unwrap(),
        Some(session("s1", alice.id, a))
    );
    assert!(
        store
            .session("s1", t0() + Duration::hours(1))
            .await
            .unwrap()
            .is_none()
    );
    store.delete_session("s1").await.unwrap();
    assert!(store.session("s1", t0()).await.unwrap().is_none());
    assert_eq!(store.delete_sessions_of(alice.id).await.unwrap(), 1);
    assert!(store.session("s2", t0()).await.unwrap().is_none());
    assert!(store.session("s3", t0()).await.unwrap().is_some());
}

pub async fn attempts_are_counted_per_key_in_windows_and_forgotten(store: Arc<dyn Store>) {
    let minute = chrono::Duration::seconds(60);
    let at = |s: i64| t0() + chrono::Duration::seconds(s);
    assert_eq!(
        store.count_attempt("key-a", at(0), minute).await.unwrap(),
        1
    );
    assert_eq!(
        store.count_attempt("key-a", at(30), minute).await.unwrap(),
        2
    );
    // Another key: counted apart.
    assert_eq!(
        store.count_attempt("key-b", at(30), minute).await.unwrap(),
        1
    );
    // Concurrent attempts are each counted once: the counts they see are 3..=42.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.count_attempt("key-a", at(59), minute).await.unwrap()
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (3..=42).collect::<Vec<u64>>());
    // A window lasts from its first attempt: key-a's ended at 60 s, key-b's runs to 90 s.
    assert_eq!(
        store.count_attempt("key-a", at(60), minute).await.unwrap(),
        1
    );
    assert_eq!(
        store.count_attempt("key-b", at(89), minute).await.unwrap(),
        2
    );
    assert_eq!(
        store.count_attempt("key-a", at(61), minute).await.unwrap(),
        2
    );
    // Windows that started before the bound are forgotten (key-b's, from 30 s).
    assert_eq!(store.forget_attempts(at(31)).await.unwrap(), 1);
    assert_eq!(
        store.count_attempt("key-b", at(89), minute).await.unwrap(),
        1
    );
    assert_eq!(
        store.count_attempt("key-a", at(62), minute).await.unwrap(),
        3
    );
}
