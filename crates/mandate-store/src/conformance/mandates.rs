//! Mandates, consents, compare-and-swap updates and expiry.

use super::*;

pub async fn mandates_round_trip_and_filter(store: Arc<dyn Store>) {
    let (m, owners) = seeded_mandate(&*store, 1).await;
    let other = tenant(&*store, "other").await;
    assert_eq!(
        store.mandate(m.tenant_id, m.id).await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(store.mandate(other, m.id).await.unwrap(), None);
    assert!(matches!(
        store.create_mandate(&m, &[]).await,
        Err(StoreError::Conflict { .. })
    ));

    let page = PageRequest::default();
    let f = |status, agent, human| MandateFilter {
        status,
        agent,
        human,
        consenter: None,
    };
    let consenter = |h| MandateFilter {
        consenter: Some(h),
        ..Default::default()
    };
    let list = |filter: MandateFilter| {
        let store = store.clone();
        let page = page.clone();
        async move {
            store
                .list_mandates(m.tenant_id, &filter, &page)
                .await
                .unwrap()
                .items
        }
    };
    assert_eq!(list(f(None, None, None)).await, vec![m.clone()]);
    assert_eq!(
        list(f(
            Some(MandateStatus::Requested),
            Some(m.terms.agent_id),
            Some(m.terms.human_id)
        ))
        .await,
        vec![m.clone()]
    );
    assert!(
        list(f(Some(MandateStatus::Active), None, None))
            .await
            .is_empty()
    );
    assert!(
        list(f(None, Some(AgentId::generate()), None))
            .await
            .is_empty()
    );
    assert!(
        list(f(None, None, Some(HumanId::generate())))
            .await
            .is_empty()
    );
    // Both the grantor and a named owner find it among the mandates they must answer.
    assert_eq!(list(consenter(m.terms.human_id)).await, vec![m.clone()]);
    assert_eq!(list(consenter(owners[0])).await, vec![m.clone()]);
    assert!(list(f(None, None, Some(owners[0]))).await.is_empty());
    assert!(list(consenter(HumanId::generate())).await.is_empty());
    assert!(
        store
            .list_mandates(other, &MandateFilter::default(), &page)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn mandate_updates_are_compare_and_swap(store: Arc<dyn Store>) {
    let active = activated_mandate(&*store).await;

    let mut done = active.clone();
    done.apply(
        MandateEvent::Complete {
            reason: Some("booked"),
        },
        t0(),
    )
    .unwrap();
    done.version += 1;
    store.update_mandate(&done, &[]).await.unwrap();

    // A writer still holding the `active` copy loses.
    let mut stale = active.clone();
    stale
        .apply(MandateEvent::Revoke { reason: None }, t0())
        .unwrap();
    stale.version += 1;
    assert!(matches!(
        store.update_mandate(&stale, &[]).await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(
        store.mandate(active.tenant_id, active.id).await.unwrap(),
        Some(done.clone())
    );
    let completed = MandateFilter {
        status: Some(MandateStatus::Completed),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_mandates(active.tenant_id, &completed, &PageRequest::default())
            .await
            .unwrap()
            .items,
        vec![done]
    );

    let ghost = Mandate {
        id: mandate_types::MandateId::generate(),
        version: 1,
        ..active.clone()
    };
    assert!(matches!(
        store.update_mandate(&ghost, &[]).await,
        Err(StoreError::VersionConflict)
    ));
}

pub async fn concurrent_updates_let_exactly_one_win(store: Arc<dyn Store>) {
    let (m, _) = seeded_mandate(&*store, 0).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut copy = m.clone();
        tasks.push(tokio::spawn(async move {
            copy.usage.calls = i + 1;
            copy.version += 1;
            store.update_mandate(&copy, &[]).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::VersionConflict) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        store
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

pub async fn consent_and_mandate_are_written_together(store: Arc<dyn Store>) {
    let (m, owners) = seeded_mandate(&*store, 1).await;
    let first = consent_for(&m, m.terms.human_id, ConsentDecision::Granted);
    let mut after_first = m.clone();
    after_first
        .apply(
            MandateEvent::Consent {
                consent: &first,
                prior: &[],
            },
            t0(),
        )
        .unwrap();
    after_first.version += 1;
    store
        .record_consent(&first, &after_first, &[note(&m, EventKind::ConsentGranted)])
        .await
        .unwrap();
    assert_eq!(
        after_first.status,
        MandateStatus::Requested,
        "the owner has not answered"
    );

    // The same human answering twice: refused, and nothing changes.
    let twice = consent_for(&m, m.terms.human_id, ConsentDecision::Denied);
    let mut bumped = after_first.clone();
    bumped.version += 1;
    assert!(matches!(
        store
            .record_consent(&twice, &bumped, &[note(&m, EventKind::ConsentDenied)])
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.mandate(m.tenant_id, m.id).await.unwrap(),
        Some(after_first.clone())
    );

    // A stale mandate version: the consent is not stored either.
    let owner_answer = consent_for(&m, owners[0], ConsentDecision::Granted);
    let mut stale = m.clone();
    stale.version += 1;
    assert!(matches!(
        store
            .record_consent(
                &owner_answer,
                &stale,
                &[note(&m, EventKind::ConsentGranted)]
            )
            .await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(
        store.consents(m.tenant_id, m.id).await.unwrap(),
        vec![first.clone()]
    );

    let mut active = after_first.clone();
    active
        .apply(
            MandateEvent::Consent {
                consent: &owner_answer,
                prior: std::slice::from_ref(&first),
            },
            t0(),
        )
        .unwrap();
    active.version += 1;
    store
        .record_consent(
            &owner_answer,
            &active,
            &[
                note(&m, EventKind::ConsentGranted),
                note(&m, EventKind::MandateActivated),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .mandate(m.tenant_id, m.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        MandateStatus::Active
    );
    assert_eq!(
        store.consents(m.tenant_id, m.id).await.unwrap(),
        vec![first, owner_answer]
    );
    let other = tenant(&*store, "other").await;
    assert!(store.consents(other, m.id).await.unwrap().is_empty());
    // Only the writes that happened left events; the refused ones left none.
    assert_eq!(
        kinds(&*store, m.tenant_id).await,
        vec![
            EventKind::MandateRequested,
            EventKind::ConsentGranted,
            EventKind::ConsentGranted,
            EventKind::MandateActivated
        ]
    );
}

pub async fn due_mandates_are_found_for_expiry(store: Arc<dyn Store>) {
    let (m, _) = seeded_mandate(&*store, 0).await;
    let before = m.terms.expires_at - Duration::seconds(1);
    assert!(
        store
            .mandates_due_to_expire(before, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .mandates_due_to_expire(m.terms.expires_at, 10)
        .await
        .unwrap();
    assert_eq!(due, vec![m.clone()]);

    let mut expired = m.clone();
    expired
        .apply(MandateEvent::Expire, m.terms.expires_at)
        .unwrap();
    expired.version += 1;
    store.update_mandate(&expired, &[]).await.unwrap();
    assert!(
        store
            .mandates_due_to_expire(m.terms.expires_at, 10)
            .await
            .unwrap()
            .is_empty(),
        "final mandates are not due"
    );
}
