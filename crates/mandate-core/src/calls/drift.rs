//! Drift: an agent that keeps trying what its mandate does not allow. Denied and
//! out-of-scope attempts are counted per mandate; the first time their sum reaches
//! the configured threshold, a `drift.alert` event is recorded, the webhook is told,
//! and — when the operator asked for it — the mandate is revoked.
//!
//! Counts are kept in memory by each replica (a restart starts them again); the alert
//! is recorded once per mandate per replica.

use std::collections::HashMap;

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::Principal;
use mandate_types::MandateId;
use serde_json::json;
use tokio::sync::Mutex;

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

#[derive(Debug, Default)]
pub(super) struct DriftCounts {
    counts: Mutex<HashMap<MandateId, Count>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    denied: u32,
    out_of_scope: u32,
    alerted: bool,
}

impl Calls {
    /// Counts one refused attempt; raises the alert when it crosses the threshold.
    pub(super) async fn count_refusal(&self, caller: &Caller, out_of_scope: bool) {
        let policy = self.inner.settings.drift;
        if policy.threshold == 0 {
            return;
        }
        let count = {
            let mut counts = self.inner.drift.counts.lock().await;
            let count = counts.entry(caller.mandate.id).or_default();
            if out_of_scope {
                count.out_of_scope += 1;
            } else {
                count.denied += 1;
            }
            if count.alerted || count.denied + count.out_of_scope < policy.threshold {
                return;
            }
            count.alerted = true;
            *count
        };
        let event = NewEvent {
            tenant_id: caller.mandate.tenant_id,
            kind: EventKind::DriftAlert,
            mandate_id: Some(caller.mandate.id),
            agent_id: Some(caller.agent.id),
            human_id: Some(caller.mandate.terms.human_id),
            actor: vec!["gateway".to_owned()],
            data: obj(json!({
                "denied": count.denied,
                "out_of_scope": count.out_of_scope,
                "threshold": policy.threshold,
                "action": if policy.revoke { "revoke" } else { "alert" },
            })),
        };
        if let Err(e) = self.append(event).await {
            tracing::error!(error = %e, mandate = %caller.mandate.id, "drift alert not recorded");
        }
        self.inner.notifier.drift_alert(json!({
            "type": "drift.alert",
            "tenant_id": caller.mandate.tenant_id,
            "mandate_id": caller.mandate.id,
            "agent_id": caller.agent.id,
            "human_id": caller.mandate.terms.human_id,
            "denied": count.denied,
            "out_of_scope": count.out_of_scope,
            "threshold": policy.threshold,
        }));
        tracing::warn!(mandate = %caller.mandate.id, agent = %caller.agent.id, denied = count.denied, out_of_scope = count.out_of_scope, "drift alert");
        if policy.revoke {
            let admin = Principal::Admin {
                tenant: caller.mandate.tenant_id,
            };
            let request = EndRequest {
                reason: Some(format!(
                    "drift: {} refused attempts reached the threshold of {}",
                    count.denied + count.out_of_scope,
                    policy.threshold
                )),
            };
            if let Err(e) = self
                .inner
                .service
                .revoke(&admin, caller.mandate.id, request)
                .await
            {
                tracing::error!(error = %e, mandate = %caller.mandate.id, "drift: the mandate could not be revoked");
            }
        }
    }
}
