//! Budgets spent, approvals and proposals: each once-only change happens once.

use mandate_domain::{Approval, ApprovalStatus, HeldCall, Proposal, ProposalStatus};
use mandate_types::{ApprovalId, ProposalId};
use serde_json::json;

use super::*;
use crate::{ApprovalFilter, CallKey, ProposalFilter};

fn held(m: &Mandate, args: serde_json::Value) -> HeldCall {
    HeldCall {
        tenant_id: m.tenant_id,
        mandate_id: m.id,
        agent_id: m.terms.agent_id,
        human_id: m.terms.human_id,
        delegation_chain: Vec::new(),
        tool: "bank.transfer".into(),
        risk_tier: RiskTier::HighImpact,
        arguments_hash: mandate_domain::canonical::sha256_hex(&args),
        arguments: args,
        reason: "needs approval".into(),
    }
}

fn pending(call: HeldCall, expires: DateTime<Utc>) -> Approval {
    Approval {
        id: ApprovalId::generate(),
        call,
        status: ApprovalStatus::Pending,
        created_at: t0(),
        expires_at: expires,
        decided_by: None,
        decided_at: None,
        comment: None,
        used_at: None,
    }
}

/// Replicas add their refused attempts; the totals are the sum, and when they reach the
/// threshold exactly one of the concurrent adders claims the alert — never again.
pub async fn drift_totals_add_up_and_the_alert_is_claimed_once(store: Arc<dyn Store>) {
    let m = activated_mandate(&*store).await;
    let add = |denied, out_of_scope| crate::DriftTotals {
        denied,
        out_of_scope,
    };
    let never = store
        .add_drift(m.tenant_id, m.id, add(1, 1), 0, t0())
        .await
        .unwrap();
    assert_eq!(never, None, "a threshold of 0 never alerts");
    let below = store
        .add_drift(m.tenant_id, m.id, add(0, 1), 10, t0())
        .await
        .unwrap();
    assert_eq!(below, None, "3 of 10");
    // 8 replicas add 1 each, concurrently: the one whose addition reaches 10 (or passes
    // it first) claims the alert, once.
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        let (tenant, id) = (m.tenant_id, m.id);
        tasks.push(tokio::spawn(async move {
            store
                .add_drift(tenant, id, add(i % 2, 1 - i % 2), 10, t0())
                .await
                .unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let totals = claimed[0];
    assert!(totals.denied + totals.out_of_scope >= 10, "{totals:?}");
    assert!(totals.denied >= 1 && totals.out_of_scope >= 2, "{totals:?}");
    let after = store
        .add_drift(m.tenant_id, m.id, add(5, 0), 10, t0())
        .await
        .unwrap();
    assert_eq!(after, None, "claimed once, whatever comes after");
}

pub async fn budgets_are_spent_atomically_and_approvals_and_proposals_used_once(
    store: Arc<dyn Store>,
) {
    let m = activated_mandate(&*store).await;
    let limits = Budgets {
        max_calls: Some(10),
        max_amount: Some(1_000),
        currency: Some("EUR".into()),
    };
    // 16 concurrent spenders of 1 call and 100 each: exactly 10 win (the amount bound
    // also allows exactly 10).
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let limits = limits.clone();
        let (tenant, id) = (m.tenant_id, m.id);
        tasks.push(tokio::spawn(async move {
            store.spend(tenant, id, 1, 100, &limits).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 10);
    let read = store.mandate(m.tenant_id, m.id).await.unwrap().unwrap();
    assert_eq!((read.usage.calls, read.usage.amount), (10, 1_000));
    let unlimited = Budgets::default();
    let usage = store
        .spend(m.tenant_id, m.id, 1, 5, &unlimited)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((usage.calls, usage.amount), (11, 1_005));

    // Approvals: one live approval per exact call.
    let args = json!({"to": "bob", "amount": 5});
    let expires = t0() + Duration::minutes(10);
    let first = store
        .hold_for_approval(&pending(held(&m, args.clone()), expires), t0())
        .await
        .unwrap();
    let again = store
        .hold_for_approval(&pending(held(&m, args.clone()), expires), t0())
        .await
        .unwrap();
    assert_eq!(
        first.id, again.id,
        "a second identical call reuses the pending approval"
    );
    let other = store
        .hold_for_approval(&pending(held(&m, json!({"to": "eve"})), expires), t0())
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let key = CallKey {
        tenant: m.tenant_id,
        mandate: m.id,
        agent: m.terms.agent_id,
        tool: "bank.transfer",
        arguments_hash: &first.call.arguments_hash,
    };
    assert!(store.approved_call(&key, t0()).await.unwrap().is_none());
    let listed = store
        .list_approvals(
            m.tenant_id,
            &ApprovalFilter {
                status: Some(ApprovalStatus::Pending),
                mandate: Some(m.id),
            },
            &PageRequest::new(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);

    let approved = store
        .decide_approval(m.tenant_id, first.id, true, "human:x", Some("ok"), t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert!(matches!(
        store
            .decide_approval(m.tenant_id, first.id, false, "human:y", None, t0())
            .await,
        Err(StoreError::VersionConflict)
    ));
    let found = store.approved_call(&key, t0()).await.unwrap().unwrap();
    assert_eq!(found.id, first.id);
    // Concurrent retries: exactly one uses it.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let (tenant, id) = (m.tenant_id, first.id);
        tasks.push(tokio::spawn(async move {
            store.use_approval(tenant, id, t0()).await.unwrap()
        }));
    }
    let mut used = 0;
    for task in tasks {
        if task.await.unwrap() {
            used += 1;
        }
    }
    assert_eq!(used, 1);
    assert!(store.approved_call(&key, t0()).await.unwrap().is_none());
    let after = store
        .approval(m.tenant_id, first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, ApprovalStatus::Used);
    // Used: the same call now needs a new approval.
    let fresh = store
        .hold_for_approval(&pending(held(&m, args.clone()), expires), t0())
        .await
        .unwrap();
    assert_ne!(fresh.id, first.id);
    // Expired approvals cannot be decided and make way for a new one.
    let late = t0() + Duration::minutes(11);
    assert!(matches!(
        store
            .decide_approval(m.tenant_id, fresh.id, true, "human:x", None, late)
            .await,
        Err(StoreError::VersionConflict)
    ));
    let renewed = store
        .hold_for_approval(
            &pending(held(&m, args.clone()), late + Duration::minutes(10)),
            late,
        )
        .await
        .unwrap();
    assert_ne!(renewed.id, fresh.id);
    let expired = store
        .approval(m.tenant_id, fresh.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.status, ApprovalStatus::Expired);
    // Another tenant sees nothing.
    let b = tenant(&*store, "b").await;
    assert!(store.approval(b, first.id).await.unwrap().is_none());

    // Proposals: executed once.
    let proposal = Proposal {
        id: ProposalId::generate(),
        call: held(&m, args),
        status: ProposalStatus::Recorded,
        created_at: t0(),
        executed_by: None,
        executed_at: None,
        outcome: None,
    };
    store.record_proposal(&proposal).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let (tenant, id) = (m.tenant_id, proposal.id);
        tasks.push(tokio::spawn(async move {
            store
                .start_proposal(tenant, id, "human:x", false, t0())
                .await
        }));
    }
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Some(p)) => {
                assert_eq!(p.status, ProposalStatus::Executing);
                started += 1;
            }
            Err(StoreError::VersionConflict) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
    store
        .finish_proposal(m.tenant_id, proposal.id, true, &json!({"content": []}))
        .await
        .unwrap();
    let done = store
        .proposal(m.tenant_id, proposal.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ProposalStatus::Executed);
    assert_eq!(done.outcome, Some(json!({"content": []})));
    let listed = store
        .list_proposals(
            m.tenant_id,
            &ProposalFilter {
                status: Some(ProposalStatus::Executed),
                mandate: None,
            },
            &PageRequest::new(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(store.proposal(b, proposal.id).await.unwrap().is_none());
}

/// Rollback steps: of concurrent claims of one step exactly one wins; a done step is
/// never claimed again; a failed one is claimed again (by one run); a step is only
/// finished while running; steps are listed per mandate and tenant.
pub async fn rollback_steps_are_claimed_once_and_done_never_again(store: Arc<dyn Store>) {
    use crate::{StepClaim, StepState};
    let m = activated_mandate(&*store).await;
    let (tenant, id) = (m.tenant_id, m.id);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .claim_rollback_step(tenant, id, 7, &format!("human:{i}"), t0())
                .await
                .unwrap()
        }));
    }
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(task.await.unwrap());
    }
    assert_eq!(
        claims.iter().filter(|c| **c == StepClaim::Claimed).count(),
        1,
        "{claims:?}"
    );
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, StepClaim::Claimed | StepClaim::Running))
    );
    // Failed: claimed again, once.
    let later = t0() + Duration::seconds(5);
    store
        .finish_rollback_step(
            tenant,
            7,
            false,
            &json!({"error": "insufficient funds"}),
            later,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .finish_rollback_step(tenant, 7, true, &json!({}), later)
            .await,
        Err(StoreError::VersionConflict)
    ));
    let steps = store.rollback_steps(tenant, id).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].state, StepState::Failed);
    assert_eq!(steps[0].finished_at, Some(later));
    assert_eq!(
        steps[0].outcome,
        Some(json!({"error": "insufficient funds"}))
    );
    assert_eq!(
        store
            .claim_rollback_step(tenant, id, 7, "admin", later)
            .await
            .unwrap(),
        StepClaim::Claimed
    );
    assert_eq!(
        store
            .claim_rollback_step(tenant, id, 7, "admin", later)
            .await
            .unwrap(),
        StepClaim::Running
    );
    // Done: never again.
    store
        .finish_rollback_step(tenant, 7, true, &json!({"result": "ok"}), later)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            store
                .claim_rollback_step(tenant, id, 7, "admin", later)
                .await
                .unwrap(),
            StepClaim::Done
        );
    }
    let steps = store.rollback_steps(tenant, id).await.unwrap();
    assert_eq!(steps[0].state, StepState::Done);
    assert_eq!(steps[0].claimed_by, "admin");
    assert_eq!(steps[0].claimed_at, later);
    // Another step, and another tenant's step of the same number, apart.
    assert_eq!(
        store
            .claim_rollback_step(tenant, id, 3, "admin", t0())
            .await
            .unwrap(),
        StepClaim::Claimed
    );
    let steps = store.rollback_steps(tenant, id).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| s.call_seq).collect::<Vec<_>>(),
        vec![3, 7]
    );
    let other = TenantId::generate();
    assert!(store.rollback_steps(other, id).await.unwrap().is_empty());
    assert!(matches!(
        store
            .finish_rollback_step(other, 3, true, &json!({}), t0())
            .await,
        Err(StoreError::VersionConflict)
    ));
}
