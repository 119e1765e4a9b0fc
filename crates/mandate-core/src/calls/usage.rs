//! Use of mandates without budget limits, counted in memory and written in batches
//! (at most one write per mandate per second, within a second of the call: see
//! [`Flusher`]), so such calls never wait for a write of their own. Mandates with
//! limits spend atomically on the call's path instead (the store's `spend`), where a
//! refusal is possible.

use std::sync::Arc;

use mandate_domain::Budgets;
use mandate_store::Store;
use mandate_types::{MandateId, TenantId};

use super::flusher::Flusher;

#[derive(Debug, Default)]
pub(super) struct UsageCounter {
    /// Calls and amount not yet written, per mandate.
    pending: Flusher<(u64, u64)>,
}

impl UsageCounter {
    /// Counts one call; the count is written within a second.
    pub(super) fn add(
        &self,
        store: &Arc<dyn Store>,
        tenant: TenantId,
        mandate: MandateId,
        amount: u64,
    ) {
        let store = store.clone();
        self.pending.add(
            tenant,
            mandate,
            || (0, 0),
            |(calls, spent)| {
                *calls += 1;
                *spent = spent.saturating_add(amount);
            },
            move |batch| {
                let store = store.clone();
                async move {
                    let unlimited = Budgets::default();
                    for (mandate, (tenant, (calls, amount))) in batch {
                        if let Err(e) = store
                            .spend(tenant, mandate, calls, amount, &unlimited)
                            .await
                        {
                            tracing::warn!(error = %e, %mandate, calls, "usage of an unlimited mandate not counted");
                        }
                    }
                }
            },
        );
    }
}
