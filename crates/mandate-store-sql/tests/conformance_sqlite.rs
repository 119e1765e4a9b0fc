#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The store conformance suite against SQLite (a real file in WAL mode per case).

use std::sync::Arc;

use mandate_store::Store;
use mandate_store_sql::SqliteStore;

async fn fresh() -> Arc<dyn Store> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    // The directory must outlive the store; it is removed when the test process exits.
    std::mem::forget(dir);
    Arc::new(store)
}

mandate_store::store_conformance!(fresh);
mandate_store::cached_store_conformance!(fresh);

/// The whole suite again through the cache the server runs with: it must not change
/// what any port promises.
mod through_the_cache {
    use super::*;

    async fn cached() -> Arc<dyn Store> {
        Arc::new(mandate_store::CachedStore::new(fresh().await))
    }

    mandate_store::store_conformance!(cached);
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    use mandate_store::Directory as _;
    let dir = tempfile::tempdir().unwrap();
    let tenant = mandate_domain::Tenant {
        id: mandate_types::TenantId::generate(),
        name: "default".into(),
        created_at: chrono::Utc::now(),
    };
    {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.create_tenant(&tenant).await.unwrap();
    }
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(
        store.tenant_by_name("default").await.unwrap().unwrap().id,
        tenant.id
    );
}

mod replicas;

/// A second store on the same file moves the head, as a second process would.
#[tokio::test]
async fn one_statement_appends_fall_back_when_the_head_moved() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(dir.path()).await.unwrap();
    let b = SqliteStore::open(dir.path()).await.unwrap();
    replicas::one_statement_appends_fall_back_when_the_head_moved(&a, &b).await;
}
