//! Access reviews: agents' sponsors and reviewers' marks on findings.

use std::sync::Arc;

use super::*;
use crate::FindingMark;

fn mark(tenant_id: TenantId, agent_id: AgentId, finding: &str, status: &str) -> FindingMark {
    FindingMark {
        tenant_id,
        finding_id: finding.to_owned(),
        agent_id,
        kind: "unused_scope".into(),
        subject: "flights.cancel".into(),
        status: status.into(),
        comment: Some("looked at it".into()),
        marked_by: "admin".into(),
        marked_at: t0(),
    }
}

fn event(tenant_id: TenantId, agent_id: AgentId, finding: &str) -> NewEvent {
    NewEvent::new(tenant_id, EventKind::ReviewFindingMarked, "admin")
        .agent(agent_id)
        .with("finding_id", finding)
}

pub async fn agent_sponsors_and_review_marks(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let owner = human(a, "owner@example.com");
    let sponsor = human(a, "sponsor@example.com");
    let other = human(a, "other@example.com");
    for h in [&owner, &sponsor, &other] {
        store.create_human(h).await.unwrap();
    }
    let mut sponsored = agent(a, owner.id, "sponsored");
    sponsored.sponsors = vec![sponsor.id];
    store.create_agent(&sponsored).await.unwrap();
    let plain = agent(a, other.id, "plain");
    store.create_agent(&plain).await.unwrap();
    assert_eq!(
        store
            .agent(a, sponsored.id)
            .await
            .unwrap()
            .unwrap()
            .sponsors,
        vec![sponsor.id]
    );

    // `accountable`: owned or sponsored.
    let accountable = |h: HumanId| AgentFilter {
        accountable: Some(h),
        ..AgentFilter::default()
    };
    let names = |page: crate::Page<Agent>| -> Vec<String> {
        page.items.into_iter().map(|a| a.name).collect()
    };
    let first = PageRequest::first(50);
    let listed = store.list_agents(a, &accountable(sponsor.id), &first).await;
    assert_eq!(names(listed.unwrap()), vec!["sponsored"]);
    let listed = store.list_agents(a, &accountable(owner.id), &first).await;
    assert_eq!(names(listed.unwrap()), vec!["sponsored"]);
    let listed = store.list_agents(a, &accountable(other.id), &first).await;
    assert_eq!(names(listed.unwrap()), vec!["plain"]);
    // Another tenant sees nothing through the sponsor's id.
    let listed = store.list_agents(b, &accountable(sponsor.id), &first).await;
    assert!(listed.unwrap().items.is_empty());

    // Sponsors are replaced with the agent: the old one no longer finds it.
    let mut changed = sponsored.clone();
    changed.sponsors = vec![other.id];
    store.update_agent(&changed).await.unwrap();
    let listed = store.list_agents(a, &accountable(sponsor.id), &first).await;
    assert!(listed.unwrap().items.is_empty());
    let listed = store.list_agents(a, &accountable(other.id), &first).await;
    let mut got = names(listed.unwrap());
    got.sort();
    assert_eq!(got, vec!["plain", "sponsored"]);
    // A sponsor who is not a person of the store is refused, and nothing changes.
    let mut ghost = changed.clone();
    ghost.sponsors = vec![HumanId::generate()];
    assert!(matches!(
        store.update_agent(&ghost).await,
        Err(StoreError::Missing { .. })
    ));
    assert_eq!(
        store
            .agent(a, sponsored.id)
            .await
            .unwrap()
            .unwrap()
            .sponsors,
        vec![other.id]
    );

    // Marks: stored with their event, the latest replaces the earlier one.
    assert!(store.finding_marks(a, None).await.unwrap().is_empty());
    let first_mark = mark(a, sponsored.id, "fnd_1", "acknowledged");
    store
        .mark_finding(&first_mark, &[event(a, sponsored.id, "fnd_1")])
        .await
        .unwrap();
    let mut second = mark(a, sponsored.id, "fnd_1", "remediated");
    second.comment = None;
    second.marked_by = format!("human:{}", owner.id);
    store
        .mark_finding(&second, &[event(a, sponsored.id, "fnd_1")])
        .await
        .unwrap();
    let other_mark = mark(a, plain.id, "fnd_2", "accepted_risk");
    store
        .mark_finding(&other_mark, &[event(a, plain.id, "fnd_2")])
        .await
        .unwrap();
    assert_eq!(
        store.finding_marks(a, None).await.unwrap(),
        vec![second.clone(), other_mark.clone()]
    );
    assert_eq!(
        store.finding_marks(a, Some(&[sponsored.id])).await.unwrap(),
        vec![second.clone()]
    );
    assert!(store.finding_marks(a, Some(&[])).await.unwrap().is_empty());
    assert!(store.finding_marks(b, None).await.unwrap().is_empty());
    assert_eq!(
        kinds(&*store, a).await,
        vec![EventKind::ReviewFindingMarked; 3]
    );
    verified(&*store, a).await;

    // Another tenant's agent (or none) is not marked, and no event is written.
    let foreign = mark(b, sponsored.id, "fnd_3", "acknowledged");
    assert!(matches!(
        store
            .mark_finding(&foreign, &[event(b, sponsored.id, "fnd_3")])
            .await,
        Err(StoreError::Missing { .. })
    ));
    assert!(kinds(&*store, b).await.is_empty());
    assert!(store.finding_marks(b, None).await.unwrap().is_empty());
}
