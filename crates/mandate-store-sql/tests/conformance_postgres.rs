#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The store conformance suite against PostgreSQL: every case gets a schema of its own
//! in the database named by `MANDATE_TEST_POSTGRES_URL` (default: the local `test`
//! database), so concurrent runs never see each other.

use std::sync::Arc;

use mandate_store::Store;
use mandate_store_sql::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn fresh() -> Arc<dyn Store> {
    Arc::new(
        PostgresStore::connect_with(fresh_schema().await)
            .await
            .unwrap(),
    )
}

/// Options for a schema of its own in the test database.
async fn fresh_schema() -> PgConnectOptions {
    let url = std::env::var("MANDATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let base: PgConnectOptions = url.parse().unwrap();
    let schema = format!("mandate_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect_with(&base).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} is needed for these tests (set MANDATE_TEST_POSTGRES_URL): {e}")
    });
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    drop_stale_schemas(&mut admin).await;
    base.options([("search_path", schema.as_str())])
}

/// Schemas left by earlier runs (a UUIDv7 carries its creation time) older than an hour.
async fn drop_stale_schemas(admin: &mut PgConnection) {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'mandate\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (name,) in names {
        let Some(hex) = name.strip_prefix("mandate_test_") else {
            continue;
        };
        let Ok(uuid) = uuid::Uuid::try_parse(hex) else {
            continue;
        };
        let Some(ts) = uuid.get_timestamp() else {
            continue;
        };
        let (secs, _) = ts.to_unix();
        if now_ms - i64::try_from(secs).unwrap() * 1000 > 3_600_000 {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// The ledger holds one connection of its own. When the server ends it (a restart, a
/// failover, an administrator), at most the batch that found it dead fails — its
/// appenders are told, nothing is half-written — and the next batch opens another and
/// continues the chain.
#[tokio::test]
async fn the_ledger_opens_a_new_connection_after_its_own_was_ended() {
    use mandate_audit::{EventKind, NewEvent};
    use mandate_store::AuditLog as _;

    let url = std::env::var("MANDATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let base: PgConnectOptions = url.parse().unwrap();
    let schema = format!("mandate_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect_with(&base).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let options = base
        .options([("search_path", schema.as_str())])
        .application_name(&schema);
    let store = PostgresStore::connect_with(options).await.unwrap();
    let tenant = mandate_store::conformance::tenant(&store, "default").await;
    let event = || vec![NewEvent::new(tenant, EventKind::Decision, "admin")];
    let first = store
        .append_events(&event(), chrono::Utc::now())
        .await
        .unwrap();

    let ended: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&schema)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "the store's connections were ended");

    let mut failures = 0;
    let second = loop {
        match store.append_events(&event(), chrono::Utc::now()).await {
            Ok(events) => break events,
            Err(e) => {
                assert!(
                    matches!(e, mandate_store::StoreError::Unavailable(_)),
                    "{e}"
                );
                failures += 1;
                assert!(failures < 2, "the ledger did not open a new connection");
            }
        }
    };
    assert_eq!(
        (first[0].seq, second[0].seq),
        (1, 2),
        "nothing half-written"
    );
    assert_eq!(second[0].prev_hash, first[0].hash);
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
}

mod replicas;

/// A second replica on the same database moves the head.
#[tokio::test]
async fn one_statement_appends_fall_back_when_the_head_moved() {
    let options = fresh_schema().await;
    let a = PostgresStore::connect_with(options.clone()).await.unwrap();
    let b = PostgresStore::connect_with(options).await.unwrap();
    replicas::one_statement_appends_fall_back_when_the_head_moved(&a, &b).await;
}

mandate_store::store_conformance!(fresh);
mandate_store::cached_store_conformance!(fresh);
