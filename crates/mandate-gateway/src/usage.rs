//! Use of mandates without budget limits, counted in memory and written in batches
//! (at most one write per mandate per second), so such calls never wait for a write of
//! their own. Mandates with limits spend atomically on the call's path instead
//! (`Calls::spend`), where a refusal is possible.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mandate_domain::Budgets;
use mandate_types::{MandateId, TenantId};

use crate::Gateway;

const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct UsageCounter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    pending: HashMap<MandateId, (TenantId, u64, u64)>,
    last_flush: Instant,
    flushing: bool,
}

impl Default for UsageCounter {
    fn default() -> Self {
        UsageCounter {
            state: Mutex::new(State {
                pending: HashMap::new(),
                last_flush: Instant::now(),
                flushing: false,
            }),
        }
    }
}

impl UsageCounter {
    /// Counts one call; starts a flush when the last one is a second old.
    pub(crate) fn add(&self, gateway: &Gateway, tenant: TenantId, mandate: MandateId, amount: u64) {
        let batch = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let entry = state.pending.entry(mandate).or_insert((tenant, 0, 0));
            entry.1 += 1;
            entry.2 = entry.2.saturating_add(amount);
            if state.flushing || state.last_flush.elapsed() < FLUSH_EVERY {
                return;
            }
            state.flushing = true;
            state.last_flush = Instant::now();
            std::mem::take(&mut state.pending)
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let unlimited = Budgets::default();
            for (mandate, (tenant, calls, amount)) in batch {
                if let Err(e) = gateway
                    .store()
                    .spend(tenant, mandate, calls, amount, &unlimited)
                    .await
                {
                    tracing::warn!(error = %e, %mandate, calls, "usage of an unlimited mandate not counted");
                }
            }
            if let Ok(mut state) = gateway.usage.state.lock() {
                state.flushing = false;
            }
        });
    }
}
