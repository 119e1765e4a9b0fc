//! Drift: an agent that keeps trying what its mandate does not allow. Denied and
//! out-of-scope attempts are counted per mandate; the first time their sum reaches
//! the configured threshold, a `drift.alert` event is recorded, the webhook is told,
//! and — when the operator asked for it — the mandate is revoked.
//!
//! Each replica counts in memory and adds its counts to the mandate's totals in the
//! store within a second ([`Flusher`]): the threshold applies to the attempts made at
//! every replica together, and the alert is claimed in the store (one conditional
//! write), so exactly one replica raises it — within a second of the attempt that
//! crossed the threshold.

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::Principal;
use mandate_store::DriftTotals;
use mandate_types::{AgentId, HumanId, MandateId, TenantId};
use serde_json::json;

use super::flusher::Flusher;
use super::{Caller, Calls, obj};
use crate::EndRequest;

/// When to raise the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftPolicy {
    /// Denied plus out-of-scope attempts that raise the alert (0: never).
    pub threshold: u32,
    /// Revoke the mandate when the alert is raised.
    pub revoke: bool,
}

/// Refused attempts not yet added to the store's totals, per mandate.
pub(super) type DriftCounts = Flusher<Refused>;

#[derive(Debug)]
pub(super) struct Refused {
    /// The agent and human of the latest attempt, for the alert.
    agent: AgentId,
    human: HumanId,
    counts: DriftTotals,
}

impl Calls {
    /// Counts one refused attempt; within a second it is added to the mandate's totals
    /// in the store, and the alert raised if they reached the threshold.
    pub(super) async fn count_refusal(&self, caller: &Caller, out_of_scope: bool) {
        if self.inner.settings.drift.threshold == 0 {
            return;
        }
        let (agent, human) = (caller.agent.id, caller.mandate.terms.human_id);
        let calls = self.clone();
        self.inner.drift.add(
            caller.mandate.tenant_id,
            caller.mandate.id,
            || Refused {
                agent,
                human,
                counts: DriftTotals::default(),
            },
            |refused| {
                refused.agent = agent;
                if out_of_scope {
                    refused.counts.out_of_scope += 1;
                } else {
                    refused.counts.denied += 1;
                }
            },
            move |batch| {
                let calls = calls.clone();
                async move {
                    for (mandate, (tenant, refused)) in batch {
                        calls.add_drift(tenant, mandate, refused).await;
                    }
                }
            },
        );
    }

    /// Adds one replica's counts to the store's totals; raises the alert if this
    /// replica claimed it.
    async fn add_drift(&self, tenant: TenantId, mandate: MandateId, refused: Refused) {
        let policy = self.inner.settings.drift;
        let now = self.inner.service.clock().now();
        let claimed = self
            .inner
            .service
            .store()
            .add_drift(
                tenant,
                mandate,
                refused.counts,
                u64::from(policy.threshold),
                now,
            )
            .await;
        let count = match claimed {
            Ok(Some(totals)) => totals,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, %mandate, "drift counts not written; these attempts are not counted");
                return;
            }
        };
        let event = NewEvent {
            tenant_id: tenant,
            kind: EventKind::DriftAlert,
            mandate_id: Some(mandate),
            agent_id: Some(refused.agent),
            human_id: Some(refused.human),
            actor: vec!["gateway".to_owned()],
            data: obj(json!({
                "denied": count.denied,
                "out_of_scope": count.out_of_scope,
                "threshold": policy.threshold,
                "action": if policy.revoke { "revoke" } else { "alert" },
            })),
        };
        if let Err(e) = self.append(event).await {
            tracing::error!(error = %e, %mandate, "drift alert not recorded");
        }
        self.inner.notifier.drift_alert(json!({
            "type": "drift.alert",
            "tenant_id": tenant,
            "mandate_id": mandate,
            "agent_id": refused.agent,
            "human_id": refused.human,
            "denied": count.denied,
            "out_of_scope": count.out_of_scope,
            "threshold": policy.threshold,
        }));
        tracing::warn!(%mandate, agent = %refused.agent, denied = count.denied, out_of_scope = count.out_of_scope, "drift alert");
        if policy.revoke {
            let admin = Principal::Admin { tenant };
            let request = EndRequest {
                reason: Some(format!(
                    "drift: {} refused attempts reached the threshold of {}",
                    count.denied + count.out_of_scope,
                    policy.threshold
                )),
            };
            if let Err(e) = self.inner.service.revoke(&admin, mandate, request).await {
                tracing::error!(error = %e, %mandate, "drift: the mandate could not be revoked");
            }
        }
    }
}
