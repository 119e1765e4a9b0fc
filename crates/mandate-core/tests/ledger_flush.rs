#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! `Ledger::flush`: events appended without waiting (calls' outcomes) are committed by
//! the time a flush returns, which is what shutdown relies on before the process exits.

use std::sync::Arc;

use mandate_audit::{EventKind, NewEvent, SigningKey};
use mandate_core::{Ledger, LedgerConfig};
use mandate_store::{AuditFilter, Store};
use mandate_store_sql::SqliteStore;
use mandate_types::{SystemClock, TenantId};

/// A ledger on a fresh SQLite store (kept alive by the returned directory).
async fn ledger_on_sqlite(config: LedgerConfig) -> (tempfile::TempDir, Arc<dyn Store>, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = ledger_in(dir.path(), config).await;
    (dir, store, ledger)
}

/// A ledger on an SQLite store in `data`.
async fn ledger_in(data: &std::path::Path, config: LedgerConfig) -> (Arc<dyn Store>, Ledger) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(data).await.unwrap());
    let (key, _) = SigningKey::generate().unwrap();
    let ledger = Ledger::start(store.clone(), Arc::new(SystemClock), Arc::new(key), config);
    (store, ledger)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flush_returns_once_every_detached_event_before_it_is_committed() {
    let (_dir, store, ledger) = ledger_on_sqlite(LedgerConfig {
        // Small batches: the detached events span many of them.
        max_batch: 7,
        ..LedgerConfig::default()
    })
    .await;
    // Nothing queued: a flush returns at once.
    ledger.flush().await.unwrap();

    let tenant = TenantId::generate();
    for round in 0..5u64 {
        for i in 0..200u64 {
            ledger.append_detached(
                NewEvent::new(tenant, EventKind::ToolCalled, "agent:agt_x")
                    .with("i", round * 200 + i),
            );
        }
        ledger.flush().await.unwrap();
        let events = store
            .audit_events(tenant, &AuditFilter::default(), None, 1_001)
            .await
            .unwrap();
        assert_eq!(
            events.len() as u64,
            (round + 1) * 200,
            "after flush {round}: some detached events are not committed"
        );
    }
}

/// An outcome nobody waits on rides in the commit of the next entry someone does (one
/// batch: one transaction, one `at`), and on its own it is still committed at once
/// after a moment's wait, not left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_detached_event_rides_with_the_next_awaited_one_or_is_written_soon_alone() {
    let (_dir, store, ledger) = ledger_on_sqlite(LedgerConfig::default()).await;
    let tenant = TenantId::generate();
    let event =
        |what: &str| NewEvent::new(tenant, EventKind::ToolCalled, "agent:agt_x").with("what", what);
    ledger.append_detached(event("outcome of call 1"));
    ledger.append(event("decision of call 2")).await.unwrap();
    let events = store
        .audit_events(tenant, &AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        2,
        "the awaited append returned before the outcome was written"
    );
    assert_eq!(events[0].at, events[1].at, "not one batch");

    ledger.append_detached(event("outcome of call 2"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = store
        .audit_events(tenant, &AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 3, "a lone outcome was held back");
}

/// A batch committed and then made durable apart (on SQLite, the WAL is synced by
/// its own thread while the next batch commits): an appender whose batch could not be
/// synced is told it failed, as one whose commit failed is, and the ledger goes on
/// once syncing works.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_whose_sync_failed_is_refused_and_the_ledger_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ledger) = ledger_in(
        &data,
        // Every batch synced apart, as batches with others queued behind them are.
        LedgerConfig {
            sync_apart: true,
            ..LedgerConfig::default()
        },
    )
    .await;
    let tenant = TenantId::generate();
    let event = |i: u64| NewEvent::new(tenant, EventKind::Decision, "agent:agt_x").with("i", i);
    ledger.append(event(1)).await.unwrap();

    // The files stay open (the commit succeeds) but cannot be found to be synced.
    let moved = dir.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    assert!(
        ledger.append(event(2)).await.is_err(),
        "an event that was not made durable was acknowledged"
    );
    assert!(
        ledger.flush().await.is_err(),
        "a barrier passed a failed sync"
    );

    std::fs::rename(&moved, &data).unwrap();
    let recorded = ledger.append(event(3)).await.unwrap();
    let events = store
        .audit_events(tenant, &AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(events.last().map(|e| e.seq), Some(recorded.seq));
    // The event whose sync failed was committed: the chain runs on through it.
    assert_eq!(events.len(), 3);
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash, "the chain broke");
    }
}

/// A batch with nothing queued behind it and no batch being synced is committed
/// durably by itself (on SQLite its commit fsyncs the WAL through the open file): it
/// never waits for the sync thread, which looks the WAL up by its path. With the data
/// directory moved away, such an append is still acknowledged, where one synced apart
/// is refused (the test above); and the chain goes on through both kinds of batch.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_batch_commits_durably_without_the_sync_thread() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ledger) = ledger_in(
        &data,
        LedgerConfig {
            // One event a batch: appenders at once queue behind each other.
            max_batch: 1,
            ..LedgerConfig::default()
        },
    )
    .await;
    let tenant = TenantId::generate();
    let event =
        move |i: u64| NewEvent::new(tenant, EventKind::Decision, "agent:agt_x").with("i", i);
    ledger.append(event(0)).await.unwrap();

    // Many at once: batches with others behind them are synced apart.
    let appends: Vec<_> = (1..=40)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.append(event(i)).await })
        })
        .collect();
    for append in appends {
        append.await.unwrap().unwrap();
    }

    let moved = dir.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let alone = ledger.append(event(41)).await;
    std::fs::rename(&moved, &data).unwrap();
    alone.expect("a lone batch was sent to the sync thread");

    let events = store
        .audit_events(tenant, &AuditFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 42);
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash, "the chain broke");
    }
}
