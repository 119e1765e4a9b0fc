//! The SQL adapters of Mandate's storage ports.
//!
//! ```text
//!                 ┌──────────────── repo.rs (one body of portable SQL) ───────────────┐
//!   dyn Store ◄── │ SqliteStore   (embedded default; WAL, every commit fsync'd)       │
//!                 │ PostgresStore (scale-out; any number of replicas on one database) │
//!                 └────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Both adapters run the same statements: `$N` placeholders, `TEXT`/`BIGINT` columns, a
//! JSON `doc` column holding each entity whole (`TEXT` in SQLite, `JSONB` in PostgreSQL,
//! bound through `sqlx::types::Json`). What differs — connecting, the migrations, the
//! lock that serialises migrations, the revocation notification, the lock a grant holds
//! on its mandate (`LOCK_LIVE_MANDATES`), the check of its parent (`LIVE_PARENTS`) and
//! how an append moves the head in one round trip (`DATA_MODIFYING_CTE`) —
//! lives in each adapter's module. Times are stored as
//! microseconds since the Unix epoch.

mod accounts;
mod calls;
mod connections;
mod directory;
mod entries;
mod grants;
mod oauth;
mod postgres;
mod repo;
mod reviews;
mod sqlite;
mod vault;
mod wal;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One connection held for a writer instead of taken from a pool per write: sqlx's pool
/// hands every released connection to a task that pings it (on SQLite one more hand-off
/// to the connection's thread, on PostgreSQL one more round trip to the server). Whoever
/// holds the lock writes; the others queue in order. [`Held::close`] drops a connection
/// that may be broken or mid-transaction, and the next [`Held::lock`] opens another.
pub(crate) struct Held<C: sqlx::Connection> {
    slot: std::sync::Arc<tokio::sync::Mutex<Option<C>>>,
    options: <C as sqlx::Connection>::Options,
    /// What the connection is for, in errors.
    what: &'static str,
}

impl<C: sqlx::Connection> Clone for Held<C> {
    fn clone(&self) -> Self {
        Held {
            slot: self.slot.clone(),
            options: self.options.clone(),
            what: self.what,
        }
    }
}

impl<C: sqlx::Connection> std::fmt::Debug for Held<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl<C: sqlx::Connection> Held<C> {
    /// `conn`, if already open, or one opened with `options` on first use.
    pub(crate) fn new(
        conn: Option<C>,
        options: <C as sqlx::Connection>::Options,
        what: &'static str,
    ) -> Self {
        Held {
            slot: std::sync::Arc::new(tokio::sync::Mutex::new(conn)),
            options,
            what,
        }
    }

    /// The connection, once those who asked before are done with it; opened if closed.
    pub(crate) async fn lock(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, C>, mandate_store::StoreError> {
        let mut slot = self.slot.lock().await;
        if slot.is_none() {
            let opened = C::connect_with(&self.options)
                .await
                .map_err(|e| repo::store_error(e, self.what))?;
            *slot = Some(opened);
        }
        tokio::sync::MutexGuard::try_map(slot, Option::as_mut).map_err(|_| {
            mandate_store::StoreError::Unavailable(format!("{} could not be opened", self.what))
        })
    }

    /// Drops the connection; the next [`Held::lock`] opens another.
    pub(crate) async fn close(&self) {
        *self.slot.lock().await = None;
    }

    /// Whether a connection is open now (tests).
    #[cfg(test)]
    pub(crate) async fn is_open(&self) -> bool {
        self.slot.lock().await.is_some()
    }
}

/// Each tenant's chain head as this process last wrote or read it: the ledger's batches
/// are appended in one statement that continues it (`append_on_head` in `repo.rs`). Only
/// a guess: the database refuses a statement that does not continue the stored head, so
/// a stale guess costs one refused statement, never a forked chain.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heads(
    std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<mandate_types::TenantId, mandate_audit::Head>>,
    >,
);

impl Heads {
    pub(crate) fn get(&self, tenant: mandate_types::TenantId) -> Option<mandate_audit::Head> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&tenant)
            .cloned()
    }

    pub(crate) fn set(&self, tenant: mandate_types::TenantId, head: Option<mandate_audit::Head>) {
        let mut heads = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match head {
            Some(head) => heads.insert(tenant, head),
            None => heads.remove(&tenant),
        };
    }
}

/// A store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store at {location}: {source}")]
    Connect {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the data directory `{path}`: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the database has migration {found}, newer than this binary knows ({known}); upgrade Mandate"
    )]
    TooNew { found: i64, known: i64 },
}

/// One schema change: applied once, in order, recorded in `mandate_migrations`.
#[derive(Debug, Clone, Copy)]
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// When a periodic clean-up last ran in this process, so that the write path runs it at
/// most once per [`PurgeClock::EVERY`] instead of in every batch. Shared by clones.
#[derive(Debug, Clone, Default)]
struct PurgeClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl PurgeClock {
    /// Expired assertion uses are kept this much longer at most: they only refuse what
    /// their `exp` already refuses (an assertion used again after it expired).
    const EVERY: chrono::Duration = chrono::Duration::seconds(1);

    /// Whether the clean-up is due at `now`; `true` claims it (one caller per period).
    fn due(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        use std::sync::atomic::Ordering;
        let now = now.timestamp_micros();
        let last = self.0.load(Ordering::Acquire);
        now.saturating_sub(last) >= Self::EVERY.num_microseconds().unwrap_or(i64::MAX)
            && self
                .0
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::PurgeClock;

    #[test]
    fn a_purge_is_due_once_per_period() {
        let clock = PurgeClock::default();
        let t0 = chrono::Utc::now();
        assert!(clock.due(t0), "the first batch purges");
        assert!(!clock.due(t0), "claimed: the next one does not");
        assert!(!clock.due(t0 + chrono::Duration::milliseconds(999)));
        assert!(clock.due(t0 + PurgeClock::EVERY));
        // A clock that went back does not purge before a period passed again.
        assert!(!clock.due(t0));
        let shared = clock.clone();
        assert!(
            shared.due(t0 + PurgeClock::EVERY * 2),
            "clones share one clock"
        );
        assert!(!clock.due(t0 + PurgeClock::EVERY * 2));
    }
}
