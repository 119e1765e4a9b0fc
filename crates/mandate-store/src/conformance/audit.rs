//! The audit ledger: chains, filters, concurrent appenders, checkpoints.

use super::*;

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

/// Batches as large as the ledger makes them (2 000, `LedgerConfig::max_batch`) and
/// larger: one chain in batch order, whichever way the store writes them (one
/// statement on a remembered head, or several inserts in a transaction).
pub async fn large_batches_chain_in_order(store: Arc<dyn Store>) {
    let t = tenant(&*store, "large").await;
    let ev = |i: u64| NewEvent::new(t, EventKind::Decision, "agent:x").with("i", i);
    let mut next = 0u64;
    let mut last = None;
    for size in [1u64, 2_000, 4_500, 1_999, 2_001] {
        let batch: Vec<NewEvent> = (next..next + size).map(ev).collect();
        let out = store.append_events(&batch, t0()).await.unwrap();
        assert_eq!(out.len() as u64, size);
        for (k, e) in out.iter().enumerate() {
            assert_eq!(e.seq, next + k as u64 + 1);
            assert_eq!(e.data["i"].as_u64(), Some(next + k as u64));
        }
        if let (Some(prev), Some(first)) = (&last, out.first()) {
            assert_eq!(&first.prev_hash, prev);
        }
        last = out.last().map(|e| e.hash.clone());
        next += size;
    }
    assert_eq!(verified(&*store, t).await.seq, next);
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
