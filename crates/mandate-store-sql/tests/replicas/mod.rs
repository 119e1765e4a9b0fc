#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! Cases that need two stores on one database (two processes, two replicas), shared by
//! the SQLite and the PostgreSQL test files.

use mandate_store::Store;

/// The ledger's one-statement append works from the head this process remembers; when
/// another writer moved the head (a second store on the same database, as a second
/// process or replica would be), the statement writes nothing and the batch is
/// appended in a transaction instead: no gap, no fork, nothing written twice.
pub async fn one_statement_appends_fall_back_when_the_head_moved(a: &dyn Store, b: &dyn Store) {
    use mandate_audit::{ChainVerifier, Event, EventKind, NewEvent};

    let tenant = mandate_store::conformance::tenant(a, "default").await;
    let batch = |n: usize| -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent::new(tenant, EventKind::Decision, "admin").with("i", i))
            .collect()
    };
    let now = chrono::Utc::now();
    let mut written: Vec<Event> = Vec::new();
    written.extend(a.append_events(&batch(3), now).await.unwrap()); // a learns the head
    written.extend(a.append_events(&batch(2), now).await.unwrap()); // one statement
    written.extend(b.append_events(&batch(4), now).await.unwrap()); // the head moves
    written.extend(a.append_events(&batch(2), now).await.unwrap()); // refused, then a transaction
    written.extend(a.append_events(&batch(1), now).await.unwrap()); // one statement again
    let seqs: Vec<u64> = written.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());

    // Every stored event once, in one unbroken chain.
    let verify = |count: usize| {
        let a = &a;
        async move {
            let stored = a.audit_records(tenant, 0, 100).await.unwrap();
            assert_eq!(stored.len(), count, "nothing written twice");
            let mut verifier = ChainVerifier::new(tenant, []);
            for record in &stored {
                let event: Event = serde_json::from_str(&record.doc).unwrap();
                verifier.push(&event).unwrap();
            }
        }
    };
    verify(12).await;
    let heads = b.audit_heads().await.unwrap();
    assert_eq!(heads[0].1.seq, 12, "the head follows every insert");
    assert_eq!(heads[0].1.hash, written[11].hash);

    // A batch of entries (a token's writes) appends its events the same way inside its
    // transaction. When the head moved, only that statement is without effect: the
    // batch's other writes (here the use of an assertion) stand, and its events are
    // chained after the stored head.
    use mandate_store::{Entry, UsedAssertion};
    let expires_at = now + chrono::Duration::minutes(5);
    let entry = |jti: &str| Entry {
        assertions: vec![UsedAssertion {
            issuer: "client".into(),
            jti: jti.into(),
            expires_at,
        }],
        event: batch(1).pop(),
        ..Entry::default()
    };
    written.extend(b.append_events(&batch(1), now).await.unwrap()); // the head moves
    for jti in ["j1", "j2"] {
        // j1: refused on the remembered head, then chained in the transaction; j2: one
        // statement on the head j1 left.
        let outcome = a.commit_entries(&[entry(jti)], now).await.unwrap();
        let [Ok(Some(event))] = outcome.as_slice() else {
            panic!("{outcome:?}");
        };
        written.push(event.clone());
    }
    let seqs: Vec<u64> = written.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=15).collect::<Vec<u64>>());
    for jti in ["j1", "j2"] {
        assert!(
            !a.claim_jti("client", jti, expires_at, now).await.unwrap(),
            "the use of {jti} was recorded with its batch"
        );
    }
    verify(15).await;
    assert_eq!(b.audit_heads().await.unwrap()[0].1.hash, written[14].hash);
}
