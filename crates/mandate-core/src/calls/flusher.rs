//! Per-mandate counts kept in memory and written in batches: a call adds to its
//! mandate's pending value and never waits for a write; a flusher task, running while
//! anything is pending, hands everything pending to its writer at most once a second
//! (at once when the last write was a second ago or more), and stops after a second
//! with nothing to write.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mandate_types::{MandateId, TenantId};

const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What is pending, per mandate.
pub(super) type Batch<V> = HashMap<MandateId, (TenantId, V)>;

#[derive(Debug)]
pub(super) struct Flusher<V> {
    state: Arc<Mutex<State<V>>>,
}

#[derive(Debug)]
struct State<V> {
    pending: Batch<V>,
    last_flush: Option<Instant>,
    /// A flusher task is running.
    running: bool,
}

impl<V> Default for Flusher<V> {
    fn default() -> Self {
        Flusher {
            state: Arc::new(Mutex::new(State {
                pending: HashMap::new(),
                last_flush: None,
                running: false,
            })),
        }
    }
}

impl<V: Send + 'static> Flusher<V> {
    /// Adds to `mandate`'s pending value (`init` makes it when nothing is pending for
    /// it); starts a flusher task that gives batches to `write` if none is running.
    pub(super) fn add<W, F>(
        &self,
        tenant: TenantId,
        mandate: MandateId,
        init: impl FnOnce() -> V,
        add: impl FnOnce(&mut V),
        write: W,
    ) where
        W: Fn(Batch<V>) -> F + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let first_wait = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = state
                .pending
                .entry(mandate)
                .or_insert_with(|| (tenant, init()));
            add(&mut entry.1);
            if state.running {
                return;
            }
            state.running = true;
            state.last_flush.map_or(Duration::ZERO, |at| {
                FLUSH_EVERY.saturating_sub(at.elapsed())
            })
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut wait = first_wait;
            loop {
                tokio::time::sleep(wait).await;
                wait = FLUSH_EVERY;
                let batch = {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    state.last_flush = Some(Instant::now());
                    if state.pending.is_empty() {
                        state.running = false;
                        return;
                    }
                    std::mem::take(&mut state.pending)
                };
                write(batch).await;
            }
        });
    }
}
