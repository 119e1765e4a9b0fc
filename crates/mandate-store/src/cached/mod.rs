//! The replica's in-memory view of what the hot paths read: agents and mandates, and a
//! generation number for the tool catalog — a decorator over any [`Store`].
//!
//! ```text
//!   use cases ──► CachedStore ──► agent / mandate: memory hit (fresh)  ─► answer
//!                     │                          miss or older than ttl ─► inner store, fill
//!                     │ every write goes through: the entities it touches are evicted
//!                     │ (budget spends update the cached usage in place), revocations wake
//!                     │ this replica's revocation followers at once
//!                     ▼
//!                 inner Store (SQLite | PostgreSQL)
//!                     │ LISTEN/NOTIFY (PostgreSQL): another replica revoked or changed
//!                     ▼ something ─► every cached entry dropped, catalog generation bumped
//! ```
//!
//! Failure and staleness rules:
//! - An entry is served for at most `ttl` (default 1 s) after it was read; then it is
//!   read again, and a read that fails is an error (the caller fails closed), never the
//!   old value.
//! - A write made through this replica evicts before it returns, so the next read here
//!   sees it. A fill that raced with an eviction is dropped, not stored (generation
//!   check), so an old value read before a write can never be cached after it.
//! - Another replica's change arrives through the store's notification feed (whoever
//!   follows [`Grants::revocation_feed`] — the token service does — clears the cache on
//!   each wake-up); if the feed is down, `ttl` bounds the staleness.
//! - Terms never change and a mandate's end revokes its grants in the same transaction,
//!   so a token of an ended mandate is refused by the revocation list even before the
//!   cached mandate ages out.

mod forward;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mandate_domain::{Agent, Mandate, Usage};
use mandate_types::{AgentId, MandateId, TenantId};
use tokio::sync::watch;

use crate::{Entry, RevocationFeed, Store, StoreError};

/// How long an entry is trusted without a notification, by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// Entries kept per kind; past this the map is cleared (a full re-read is cheap).
const MAX_ENTRIES: usize = 100_000;

/// A [`Store`] that serves agents and mandates from memory. See the module docs.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    shared: Arc<Shared>,
}

struct Shared {
    ttl: Duration,
    agents: Table<AgentId, Agent>,
    mandates: Table<MandateId, Mandate>,
    /// Bumped on every eviction and clear: a fill that began before is not stored.
    generation: AtomicU64,
    /// Bumped whenever tool servers or tools may have changed.
    catalog: AtomicU64,
    /// Wakes this replica's feeds: a revocation was written here.
    local: watch::Sender<u64>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("ttl", &self.shared.ttl)
            .finish_non_exhaustive()
    }
}

struct Table<K, V> {
    entries: RwLock<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq + Copy, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn fresh(&self, key: K, ttl: Duration) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V, at: Instant) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (at, value));
    }

    fn remove(&self, key: K) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    fn update(&self, key: K, change: impl FnOnce(&mut V)) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, v)) = entries.get_mut(&key) {
            change(v);
        }
    }

    fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>) -> CachedStore {
        CachedStore::with_ttl(inner, DEFAULT_TTL)
    }

    /// Trusts entries for `ttl` without a notification (zero: never serves an entry).
    pub fn with_ttl(inner: Arc<dyn Store>, ttl: Duration) -> CachedStore {
        CachedStore {
            inner,
            shared: Arc::new(Shared {
                ttl,
                agents: Table::new(),
                mandates: Table::new(),
                generation: AtomicU64::new(0),
                catalog: AtomicU64::new(0),
                local: watch::channel(0).0,
            }),
        }
    }

    /// The store this one decorates.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Drops every entry (another replica changed something).
    pub fn clear(&self) {
        self.shared.clear();
    }
}

impl Shared {
    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.agents.clear();
        self.mandates.clear();
        self.catalog.fetch_add(1, Ordering::SeqCst);
    }
}

impl CachedStore {
    /// An agent by id in any tenant (both `agent` and `agent_by_client_id` read it).
    async fn cached_agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        if let Some(agent) = self.shared.agents.fresh(id, self.shared.ttl) {
            return Ok(Some(agent));
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let at = Instant::now();
        let agent = self.inner.agent_by_client_id(id).await?;
        if let Some(agent) = &agent
            && self.shared.generation.load(Ordering::SeqCst) == generation
        {
            self.shared.agents.put(id, agent.clone(), at);
        }
        Ok(agent)
    }

    async fn cached_mandate(
        &self,
        tenant: TenantId,
        id: MandateId,
    ) -> Result<Option<Mandate>, StoreError> {
        if let Some(mandate) = self.shared.mandates.fresh(id, self.shared.ttl) {
            return Ok(Some(mandate).filter(|m| m.tenant_id == tenant));
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let at = Instant::now();
        let mandate = self.inner.mandate(tenant, id).await?;
        if let Some(mandate) = &mandate
            && self.shared.generation.load(Ordering::SeqCst) == generation
        {
            self.shared.mandates.put(id, mandate.clone(), at);
        }
        Ok(mandate)
    }

    fn evict_agent(&self, id: AgentId) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.agents.remove(id);
    }

    fn evict_mandate(&self, id: MandateId) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.mandates.remove(id);
    }

    fn catalog_changed(&self) {
        self.shared.catalog.fetch_add(1, Ordering::SeqCst);
    }

    fn revoked_here(&self) {
        self.shared.local.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A ledger batch was committed (or may have been): if it revoked grants, this
    /// process's revocation list catches up now instead of at the next poll.
    fn revoked_by(&self, batch: &[Entry]) {
        if batch.iter().any(|e| e.revoke.is_some()) {
            self.revoked_here();
        }
    }

    fn feed(&self, inner: Option<Box<dyn RevocationFeed>>) -> Box<dyn RevocationFeed> {
        Box::new(Feed {
            inner,
            local: self.shared.local.subscribe(),
            shared: self.shared.clone(),
        })
    }

    /// A budget was spent: the cached usage only ever grows to what the store returned.
    fn spent(&self, id: MandateId, usage: &Usage) {
        self.shared.mandates.update(id, |m| {
            m.usage.calls = m.usage.calls.max(usage.calls);
            m.usage.amount = m.usage.amount.max(usage.amount);
        });
    }
}

/// The inner store's feed (if any) and this replica's own revocations, as one feed.
/// A wake-up from the inner feed means another replica (or this one, through the
/// database) changed something: the cache is cleared before the holder is woken.
struct Feed {
    inner: Option<Box<dyn RevocationFeed>>,
    local: watch::Receiver<u64>,
    shared: Arc<Shared>,
}

#[async_trait]
impl RevocationFeed for Feed {
    async fn next(&mut self) -> Result<(), StoreError> {
        match self.inner.as_mut() {
            Some(inner) => {
                tokio::select! {
                    woke = inner.next() => {
                        self.shared.clear();
                        woke
                    }
                    changed = self.local.changed() => changed.map_err(|_| StoreError::Unavailable("the store was dropped".into())),
                }
            }
            None => self
                .local
                .changed()
                .await
                .map_err(|_| StoreError::Unavailable("the store was dropped".into())),
        }
    }
}
