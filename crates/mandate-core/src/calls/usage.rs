//! Use of mandates without budget limits, counted in memory and written in batches
//! (at most one write per mandate per second, within a second of the call), so such
//! calls never wait for a write of their own. Mandates with limits spend atomically on
//! the call's path instead (the store's `spend`), where a refusal is possible.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mandate_domain::Budgets;
use mandate_store::Store;
use mandate_types::{MandateId, TenantId};

const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct UsageCounter {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    pending: HashMap<MandateId, (TenantId, u64, u64)>,
    last_flush: Instant,
    /// A flusher task is running: it writes what is pending every second until a
    /// second passes with nothing to write.
    flusher: bool,
}

impl Default for UsageCounter {
    fn default() -> Self {
        UsageCounter {
            state: Arc::new(Mutex::new(State {
                pending: HashMap::new(),
                last_flush: Instant::now(),
                flusher: false,
            })),
        }
    }
}

impl UsageCounter {
    /// Counts one call; the count is written within a second (a flusher task runs
    /// while there is anything to write).
    pub(super) fn add(
        &self,
        store: &Arc<dyn Store>,
        tenant: TenantId,
        mandate: MandateId,
        amount: u64,
    ) {
        let first_wait = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = state.pending.entry(mandate).or_insert((tenant, 0, 0));
            entry.1 += 1;
            entry.2 = entry.2.saturating_add(amount);
            if state.flusher {
                return;
            }
            state.flusher = true;
            FLUSH_EVERY.saturating_sub(state.last_flush.elapsed())
        };
        let state = self.state.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut wait = first_wait;
            loop {
                tokio::time::sleep(wait).await;
                wait = FLUSH_EVERY;
                let batch = {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    state.last_flush = Instant::now();
                    if state.pending.is_empty() {
                        state.flusher = false;
                        return;
                    }
                    std::mem::take(&mut state.pending)
                };
                let unlimited = Budgets::default();
                for (mandate, (tenant, calls, amount)) in batch {
                    if let Err(e) = store
                        .spend(tenant, mandate, calls, amount, &unlimited)
                        .await
                    {
                        tracing::warn!(error = %e, %mandate, calls, "usage of an unlimited mandate not counted");
                    }
                }
            }
        });
    }
}
