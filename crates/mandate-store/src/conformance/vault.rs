//! The vault: sealed secrets by (tenant, name).

use super::*;
use crate::{SecretCursor, StoredSecret};

pub async fn vault_secrets_are_tenant_scoped_upserted_and_listed(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let t1 = t0() + Duration::seconds(1);

    store
        .put_secret(a, "github", "v1.k1.nonce.ct1", "k1", t0())
        .await
        .unwrap();
    let got = store.secret(a, "github").await.unwrap().unwrap();
    assert_eq!(
        got,
        StoredSecret {
            tenant_id: a,
            name: "github".into(),
            sealed: "v1.k1.nonce.ct1".into(),
            key_id: "k1".into(),
            created_at: t0(),
            updated_at: t0(),
        }
    );
    // Another tenant does not see it, and may use the same name for its own.
    assert!(store.secret(b, "github").await.unwrap().is_none());
    store
        .put_secret(b, "github", "v1.k1.nonce.other", "k1", t0())
        .await
        .unwrap();

    // A second put replaces the sealed form and keeps the creation time.
    store
        .put_secret(a, "github", "v1.k2.nonce.ct2", "k2", t1)
        .await
        .unwrap();
    let got = store.secret(a, "github").await.unwrap().unwrap();
    assert_eq!(
        (got.sealed.as_str(), got.key_id.as_str()),
        ("v1.k2.nonce.ct2", "k2")
    );
    assert_eq!((got.created_at, got.updated_at), (t0(), t1));
    assert_eq!(
        store
            .secret(b, "github")
            .await
            .unwrap()
            .unwrap()
            .sealed
            .as_str(),
        "v1.k1.nonce.other"
    );

    // Names are any text; listings are by name and carry no sealed form.
    store
        .put_secret(a, "zürich db", "v1.k2.n.c", "k2", t0())
        .await
        .unwrap();
    store
        .put_secret(a, "aws/prod", "v1.k1.n.c", "k1", t0())
        .await
        .unwrap();
    let listed = store.list_secrets(a).await.unwrap();
    let names: Vec<_> = listed.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["aws/prod", "github", "zürich db"]);
    assert!(listed.iter().all(|m| m.tenant_id == a));
    assert_eq!(listed[1].key_id, "k2");
    assert_eq!(listed[1].updated_at, t1);
    assert_eq!(store.list_secrets(b).await.unwrap().len(), 1);

    // Deleting is per tenant and says whether anything was there.
    assert!(!store.delete_secret(b, "aws/prod").await.unwrap());
    assert!(store.delete_secret(a, "aws/prod").await.unwrap());
    assert!(!store.delete_secret(a, "aws/prod").await.unwrap());
    assert!(store.secret(a, "aws/prod").await.unwrap().is_none());

    // A tenant that does not exist cannot hold secrets.
    let err = store
        .put_secret(TenantId::generate(), "x", "v1.k1.n.c", "k1", t0())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err:?}");
}

pub async fn vault_pages_across_tenants_and_reseals_by_compare_and_swap(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for t in ["a", "b", "c"] {
        let id = tenant(&*store, t).await;
        for n in 0..3 {
            let name = format!("secret-{n}");
            store
                .put_secret(id, &name, &format!("v1.k1.{t}.{n}"), "k1", t0())
                .await
                .unwrap();
            expected.push((id.to_string(), name));
        }
    }
    expected.sort();

    // Pages of two: every secret once, in (tenant, name) order.
    let mut seen = Vec::new();
    let mut after: Option<SecretCursor> = None;
    loop {
        let page = store.sealed_secrets_page(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(SecretCursor {
            tenant_id: last.tenant_id,
            name: last.name.clone(),
        });
        seen.extend(
            page.iter()
                .map(|s| (s.tenant_id.to_string(), s.name.clone())),
        );
    }
    assert_eq!(seen, expected);

    // Reseal: only from the sealed form last read.
    let first = store.sealed_secrets_page(None, 1).await.unwrap().remove(0);
    let (t, name) = (first.tenant_id, first.name.clone());
    assert!(
        !store
            .replace_sealed(t, &name, "v1.k1.stale.0", "v1.k2.x.y", "k2")
            .await
            .unwrap()
    );
    assert_eq!(
        store.secret(t, &name).await.unwrap().unwrap().sealed,
        first.sealed
    );

    // Racing resealers: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let (old, name) = (first.sealed.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            store
                .replace_sealed(t, &name, &old, &format!("v1.k2.new.{i}"), "k2")
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
    let now = store.secret(t, &name).await.unwrap().unwrap();
    assert!(now.sealed.starts_with("v1.k2.new."));
    assert_eq!(now.key_id, "k2");
    // Resealing changes no secret: the times stay.
    assert_eq!((now.created_at, now.updated_at), (t0(), t0()));

    // Gone: nothing to swap.
    assert!(store.delete_secret(t, &name).await.unwrap());
    assert!(
        !store
            .replace_sealed(t, &name, &now.sealed, "v1.k3.a.b", "k3")
            .await
            .unwrap()
    );
}
