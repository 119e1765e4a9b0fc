use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, SqlitePool};

use crate::{Migration, OpenError};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "directory_catalog_mandates",
        sql: include_str!("../migrations/sqlite/0001_directory_catalog_mandates.sql"),
    },
    Migration {
        version: 2,
        name: "audit_ledger",
        sql: include_str!("../migrations/sqlite/0002_audit_ledger.sql"),
    },
    Migration {
        version: 3,
        name: "policy_sets",
        sql: include_str!("../migrations/sqlite/0003_policy_sets.sql"),
    },
    Migration {
        version: 4,
        name: "grants",
        sql: include_str!("../migrations/sqlite/0004_grants.sql"),
    },
    Migration {
        version: 5,
        name: "token_keys",
        sql: include_str!("../migrations/sqlite/0005_token_keys.sql"),
    },
    Migration {
        version: 6,
        name: "calls",
        sql: include_str!("../migrations/sqlite/0006_calls.sql"),
    },
    Migration {
        version: 7,
        name: "vault",
        sql: include_str!("../migrations/sqlite/0007_vault.sql"),
    },
    Migration {
        version: 8,
        name: "console",
        sql: include_str!("../migrations/sqlite/0008_console.sql"),
    },
    Migration {
        version: 9,
        name: "oauth",
        sql: include_str!("../migrations/sqlite/0009_oauth.sql"),
    },
    Migration {
        version: 10,
        name: "audit_next_event",
        sql: include_str!("../migrations/sqlite/0010_audit_next_event.sql"),
    },
    Migration {
        version: 12,
        name: "drift_counts",
        sql: include_str!("../migrations/sqlite/0012_drift_counts.sql"),
    },
    Migration {
        version: 13,
        name: "rollback_steps",
        sql: include_str!("../migrations/sqlite/0013_rollback_steps.sql"),
    },
    Migration {
        version: 14,
        name: "attempt_windows",
        sql: include_str!("../migrations/sqlite/0014_attempt_windows.sql"),
    },
    Migration {
        version: 15,
        name: "access_reviews",
        sql: include_str!("../migrations/sqlite/0015_access_reviews.sql"),
    },
    Migration {
        version: 16,
        name: "connections",
        sql: include_str!("../migrations/sqlite/0016_connections.sql"),
    },
    Migration {
        version: 17,
        name: "grant_indexes_partial",
        sql: include_str!("../migrations/sqlite/0017_grant_indexes_partial.sql"),
    },
    Migration {
        version: 18,
        name: "audit_head_cas",
        sql: include_str!("../migrations/sqlite/0018_audit_head_cas.sql"),
    },
    Migration {
        version: 19,
        name: "grants_parent_deferred",
        sql: include_str!("../migrations/sqlite/0019_grants_parent_deferred.sql"),
    },
    Migration {
        version: 20,
        name: "audit_events_keyed",
        sql: include_str!("../migrations/sqlite/0020_audit_events_keyed.sql"),
    },
    Migration {
        version: 21,
        name: "used_jtis_by_expiry",
        sql: include_str!("../migrations/sqlite/0021_used_jtis_by_expiry.sql"),
    },
];

/// The embedded store: one SQLite file in WAL mode, every commit fsync'd before it is
/// acknowledged (the ledger's batches by [`crate::wal`], apart from their commit).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The one connection that writes. SQLite has one writer at a time anyway; queuing
    /// our writes for one connection beats contending for the file lock (whose busy
    /// handler sleeps in steps of up to 100 ms) and keeps the writer's page cache warm.
    writer: crate::Held<SqliteConnection>,
    /// Whether the writer connection commits without an fsync (`synchronous=NORMAL`):
    /// set for the ledger's batches, made durable by `wal` apart from their commit; every
    /// other write sets `FULL` back first. Read and written only under the writer's lock.
    /// It may say NORMAL of a connection that is FULL (one opened again), never the
    /// reverse: it is set before the statement that turns syncing off.
    unsynced: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The thread that makes the ledger's commits durable.
    wal: crate::wal::WalSync,
    /// Where each tenant's chain stands, as this process last saw it ([`crate::Heads`]).
    heads: crate::Heads,
    /// When this process last purged expired assertion uses ([`crate::PurgeClock`]).
    jtis_purged: crate::PurgeClock,
}

impl SqliteStore {
    /// The writer connection, once the writes queued before this one are done; its
    /// commits are durable when they return (`synchronous=FULL`).
    pub(crate) async fn writer(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        self.writer_syncing(true).await
    }

    /// The ledger's batches take the one writer like every other write. Unless
    /// `durable`, they commit without an fsync and are durable once
    /// [`SqliteStore::sync_commits`] returns; a `durable` batch's commit syncs the WAL
    /// itself (the writer has nothing else to do meanwhile: no hand-off to the sync
    /// thread and back).
    pub(crate) async fn ledger_writer(
        &self,
        durable: bool,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        self.writer_syncing(durable).await
    }

    async fn writer_syncing(
        &self,
        sync: bool,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut writer = self.writer.lock().await?;
        if self.unsynced.load(Relaxed) != sync {
            return Ok(writer);
        }
        let pragma = if sync {
            "PRAGMA synchronous = FULL"
        } else {
            // Said before it is done: a failure leaves the flag on the safe side.
            self.unsynced.store(true, Relaxed);
            "PRAGMA synchronous = NORMAL"
        };
        sqlx::query(pragma)
            .execute(&mut *writer)
            .await
            .map_err(|e| crate::repo::store_error(e, "the writer connection"))?;
        if sync {
            self.unsynced.store(false, Relaxed);
        }
        Ok(writer)
    }

    /// Makes the ledger's commits that returned before the call durable (see
    /// [`crate::wal`]). A failed sync closes the writer, as a failed batch does.
    pub(crate) async fn sync_commits(&self) -> Result<(), StoreError> {
        let synced = self.wal.sync().await;
        if synced.is_err() {
            self.ledger_lost().await;
        }
        synced
    }

    /// A ledger batch failed for a reason other than a refusal: the writer connection
    /// is closed and the next write opens a fresh one (a lost worker thread, a file
    /// that was replaced, state a failed commit may have left).
    pub(crate) async fn ledger_lost(&self) {
        self.writer.close().await;
    }

    /// Whether the writer answers; a writer whose connection fails (its thread gone) is
    /// dropped, to be opened again by the next write.
    pub(crate) async fn check_writer(&self) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        if let Err(e) = writer.ping().await {
            drop(writer);
            self.writer.close().await;
            return Err(crate::repo::store_error(e, "the writer connection"));
        }
        Ok(())
    }

    /// One process owns an SQLite database: there is no other replica to tell.
    pub(crate) async fn changed(&self) {}

    /// Opens (creating if needed) `mandate.db` in `data_dir` and brings its schema up to
    /// date. A data directory it creates is private to this user (mode 0700).
    pub async fn open(data_dir: &Path) -> Result<Self, OpenError> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            dir.mode(0o700);
        }
        dir.create(data_dir).map_err(|source| OpenError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let file = data_dir.join("mandate.db");
        let location = file.display().to_string();
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| OpenError::Connect {
                location: location.clone(),
                source,
            })?
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-65536")
            // Statement journals (a multi-row insert inside a batch's transaction keeps
            // one, to undo that statement alone) in memory: on the default they spill to
            // a temporary file past 64 KiB, each spill creating, writing and deleting a
            // file in the middle of the commit. Nothing durable lives there: the WAL
            // holds the transaction.
            .pragma("temp_store", "MEMORY")
            .pragma("wal_autocheckpoint", "16384");
        // No ping before each use (sqlx's default): a connection to a file cannot go
        // stale, and the ping is one more hand-off to the connection's thread per query.
        let writer = SqliteConnection::connect_with(&options)
            .await
            .map_err(|source| OpenError::Connect {
                location: location.clone(),
                source,
            })?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|source| OpenError::Connect { location, source })?;
        let wal = crate::wal::WalSync::start(&file).map_err(|source| OpenError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let store = Self {
            pool,
            writer: crate::Held::new(Some(writer), options.clone(), "the writer connection"),
            unsynced: std::sync::Arc::default(),
            wal,
            heads: crate::Heads::default(),
            jtis_purged: crate::PurgeClock::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), OpenError> {
        // SQLite serialises writers itself: the first write of the transaction below
        // takes the database's write lock, and a second process waits for it.
        self.run_migrations(MIGRATIONS, None).await
    }
}

/// One process owns an SQLite database: no other replica shares it.
pub(crate) const SHARED: bool = false;

/// SQLite has no data-modifying common table expressions: a batch chained on a
/// remembered head is two statements sent as one script (one hand-off to the
/// connection's thread), the head's compare-and-swap and the events' INSERT guarded by
/// `changes()`, in a transaction of their own when the caller has none (see
/// `append_on_head`). A script of statements with bound parameters is one hand-off too:
/// a ledger batch of token entries goes as two scripts (see `entries`).
pub(crate) const DATA_MODIFYING_CTE: bool = false;

/// How the batches' multi-row INSERTs (events, grants, claims of assertions) begin.
/// `OR FAIL`: a constraint that fails stops the statement and keeps what it had written
/// so far, where the default (`ABORT`) undoes the statement alone — for which SQLite
/// copies every page the statement touches into a statement journal first (measured:
/// about 5 % of a task token's CPU on SQLite). Nothing needs that undo: a failed
/// statement fails its whole script or transaction, which is rolled back
/// (`commit_common_scripted`, `append_on_head`'s callers, a dropped transaction). A
/// grant's parent is a deferred foreign key here, checked at COMMIT, for the same
/// reason (an immediate one keeps the journal too; migration 19).
pub(crate) const INSERT_ROWS: &str = "INSERT OR FAIL INTO";

/// `audit_events` is keyed by one integer here (migration 20): its tenant's number in
/// `audit_heads` times 2^40 plus its sequence number, so that its rows are its only
/// B-tree. Statements find a tenant's events by a range of that key.
pub(crate) const EVENTS_KEYED: bool = true;

/// SQLite has no notification channel: revocations are seen by polling (and, in the one
/// process that owns the file, directly).
pub(crate) const NOTIFY_REVOKED: Option<&str> = None;

/// What the check of grants' mandates appends to its `SELECT … FROM mandates`: nothing.
/// The check is read in the writer's transaction: the one writer connection serialises
/// it against every other write of this process, the mandate's final-state update
/// included; a write by another process in between makes the grants' write fail (a WAL
/// snapshot that is not the newest cannot become a write transaction).
pub(crate) const LOCK_LIVE_MANDATES: &str = "";

/// The check that the parents of new grants are live, around the list of their jtis: a
/// read, serialised like the mandates' check above (a revocation of the tree is a write
/// of this process's one writer connection, before or after this transaction, never
/// inside it), so no row is rewritten to lock it as on PostgreSQL.
///
/// `+revoked_at` keeps SQLite's planner off the index on `revoked_at`: without
/// statistics it preferred `revoked_at IS NULL` (every live grant) to the list of keys,
/// and scanned every live grant for each batch of token exchanges (0.9 ms a batch with
/// 8 000 grants, growing with the table).
pub(crate) const LIVE_PARENTS: (&str, &str) = (
    "SELECT jti, tenant_id FROM grants WHERE +revoked_at IS NULL AND jti IN (",
    ")",
);

impl SqliteStore {
    pub(crate) async fn listen_revocations(
        &self,
    ) -> Result<Option<Box<dyn mandate_store::RevocationFeed>>, mandate_store::StoreError> {
        Ok(None)
    }
}

crate::repo::sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{LIVE_PARENTS, SqliteStore};

    /// On SQLite the append on the remembered head is a script of two statements (the
    /// head's compare-and-swap, the events' INSERT guarded by `changes()`), in its own
    /// transaction or the caller's (see `check_append_on_head`).
    #[tokio::test]
    async fn the_one_script_append_moves_the_head_only_from_where_it_stood() {
        use sqlx::Connection as _;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("mandate.db"))
            .busy_timeout(std::time::Duration::from_secs(5));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        super::check_append_on_head(&store, &mut conn, tenant).await;
    }

    /// A batch of token entries goes as two scripts, chained on the head read under the
    /// write lock: one another process moved is followed, not forked; a tenant with no
    /// chain yet takes the general way, the scripts having written nothing (not even
    /// the assertions' claims).
    #[tokio::test]
    async fn scripted_entries_chain_on_the_head_as_it_is_and_leave_new_chains_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let other = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        super::check_commit_common(&store, &other, tenant).await;
    }

    /// The second script writes a batch's grants only with its events: from a head that
    /// is not the stored one, neither goes in (and nothing else changes); from the
    /// stored one, both do.
    #[tokio::test]
    async fn the_commit_script_writes_grants_only_with_their_events() {
        use mandate_audit::{Event, EventKind, Head, NewEvent};
        use mandate_store::{AuditLog as _, Grants as _};
        use sqlx::Connection as _;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        let now = chrono::Utc::now();
        let new = || NewEvent::new(tenant, EventKind::TokenIssued, "agent:test");
        let stored = store.append_events(&[new()], now).await.unwrap()[0].head();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("mandate.db"))
            .busy_timeout(std::time::Duration::from_secs(5));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        let stale = Head {
            seq: stored.seq,
            hash: Head::genesis().hash,
        };
        for (from, jti, moved) in [(&stale, "g-stale", false), (&stored, "g-moved", true)] {
            let chained = vec![Event::chain(from, new(), now)];
            let g = super::test_grant(tenant, jti, now);
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            let rows = super::commit_script(&chained, &[&g])
                .unwrap()
                .build()
                .fetch_all(&mut conn)
                .await
                .unwrap();
            assert_eq!(rows.len() == 1, moved, "{jti}");
            assert_eq!(
                store.grant(tenant, jti).await.unwrap().is_some(),
                moved,
                "{jti}"
            );
            let records = store.audit_records(tenant, 0, 10).await.unwrap();
            assert_eq!(records.len(), if moved { 2 } else { 1 }, "{jti}");
        }
    }

    /// The one-script way of a token batch (`optimistic`): taken when every entry
    /// passes, everything written with the events; and when any check would refuse an
    /// entry (a used assertion, a mandate ended, ending before the grant's issue or of
    /// another tenant, a head another process moved) it writes nothing at all, and the
    /// two scripts then judge the batch exactly.
    #[tokio::test]
    async fn the_one_script_batch_writes_all_of_itself_or_nothing() {
        use mandate_audit::{EventKind, NewEvent};
        use mandate_store::{AuditLog as _, Entry, Grants as _, UsedAssertion};
        use sqlx::Connection as _;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let other = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        let elsewhere = mandate_store::conformance::tenant(&store, "elsewhere").await;
        let now = chrono::Utc::now();
        let mandate = |status: &str,
                       tenant: mandate_types::TenantId,
                       ends: chrono::DateTime<chrono::Utc>| {
            let id = mandate_types::MandateId::generate();
            let row = format!(
                "INSERT INTO mandates (id, tenant_id, agent_id, human_id, status, expires_at, version, doc)
                 VALUES ('{id}', '{tenant}', 'agt_x', 'hum_x', '{status}', {}, 1, '{{}}')",
                ends.timestamp_micros()
            );
            (id, row)
        };
        let day = now + chrono::Duration::days(1);
        let (live, a) = mandate("active", tenant, day);
        let (ended, b) = mandate("revoked", tenant, day);
        let (soon, c) = mandate("active", tenant, now - chrono::Duration::seconds(1));
        let (foreign, d) = mandate("active", elsewhere, day);
        let mut raw = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("mandate.db"))
                .foreign_keys(false),
        )
        .await
        .unwrap();
        for row in [a, b, c, d] {
            sqlx::query(&row).execute(&mut raw).await.unwrap();
        }
        let entry = |n: &str, mandate: mandate_types::MandateId| {
            let mut grant = super::test_grant(tenant, &format!("g-{n}"), now);
            grant.mandate_id = Some(mandate);
            Entry {
                assertions: vec![UsedAssertion {
                    issuer: "agt_1".into(),
                    jti: format!("j-{n}"),
                    expires_at: now + chrono::Duration::minutes(5),
                }],
                grant: Some(grant),
                event: Some(
                    NewEvent::new(tenant, EventKind::TokenIssued, "agent:test").with("n", n),
                ),
                ..Entry::default()
            }
        };
        let one_script = |batch: Vec<Entry>| {
            let store = &store;
            async move {
                let common = super::Common::of(&batch).unwrap();
                let mut writer = store.ledger_writer(false).await.unwrap();
                store.optimistic(&mut writer, &common, now).await.unwrap()
            }
        };
        let claims = || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM used_jtis")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            n
        };
        let head = || async { store.audit_heads().await.unwrap()[0].1.clone() };

        // No remembered head yet: not taken.
        assert!(one_script(vec![entry("1", live)]).await.is_none());
        let first = store
            .append_events(
                &[NewEvent::new(tenant, EventKind::TokenIssued, "agent:test")],
                now,
            )
            .await
            .unwrap();
        let done = one_script(vec![entry("1", live), entry("2", live)])
            .await
            .unwrap();
        let recorded: Vec<_> = done.into_iter().map(|d| d.unwrap().unwrap()).collect();
        assert_eq!((recorded[0].seq, recorded[1].seq), (2, 3));
        assert_eq!(recorded[0].prev_hash, first[0].hash);
        assert_eq!(head().await, recorded[1].head());
        for jti in ["g-1", "g-2"] {
            assert!(store.grant(tenant, jti).await.unwrap().is_some(), "{jti}");
        }
        assert_eq!(claims().await, 2);

        // Each would refuse an entry: nothing of the batch is written.
        let refused = [
            ("a used assertion", vec![entry("3", live), entry("1", live)]),
            (
                "an ended mandate",
                vec![entry("4", live), entry("5", ended)],
            ),
            ("a mandate ending before the issue", vec![entry("6", soon)]),
            ("another tenant's mandate", vec![entry("7", foreign)]),
            (
                "the same assertion twice",
                vec![entry("8", live), entry("8", live)],
            ),
        ];
        for (why, batch) in refused {
            assert!(one_script(batch).await.is_none(), "{why}");
            assert_eq!(head().await, recorded[1].head(), "{why}");
            assert_eq!(claims().await, 2, "{why}");
            assert_eq!(
                store.audit_records(tenant, 0, 100).await.unwrap().len(),
                3,
                "{why}"
            );
        }
        for jti in ["g-3", "g-4", "g-5", "g-6", "g-7", "g-8"] {
            assert!(store.grant(tenant, jti).await.unwrap().is_none(), "{jti}");
        }

        // Another process moved the head (with an event exactly like the next one):
        // nothing written; the two scripts follow the stored head.
        let next = || vec![entry("9", live)];
        let copy = next().remove(0).event.unwrap();
        other.append_events(&[copy], now).await.unwrap();
        assert!(one_script(next()).await.is_none());
        assert!(store.grant(tenant, "g-9").await.unwrap().is_none());
        assert_eq!(claims().await, 2);
        let done = store.commit_entries(&next(), now).await.unwrap();
        assert_eq!(done[0].clone().unwrap().unwrap().seq, 5);
        // And from there the one script again.
        let done = one_script(vec![entry("10", live)]).await.unwrap();
        assert_eq!(done[0].clone().unwrap().unwrap().seq, 6);
        assert_eq!(claims().await, 4);
    }

    /// The batches' INSERTs stop at a failing row without undoing the statement
    /// (`INSERT_ROWS`): the rollback that follows leaves nothing of the batch.
    #[tokio::test]
    async fn a_batch_that_fails_halfway_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        super::check_half_written_batches_leave_nothing(&store, tenant).await;
    }

    /// Migration 19 rebuilds `grants` of a database that has rows: every grant (its
    /// parent link too) is kept, and a grant whose parent is missing still never
    /// commits (the foreign key is checked at COMMIT now, in a transaction and on its
    /// own). The assertions' claims, rebuilt by migration 21, still refuse a replay.
    #[tokio::test]
    async fn the_batch_tables_are_rebuilt_with_their_rows_and_their_checks() {
        use mandate_store::Grants as _;
        use sqlx::Connection as _;

        let dir = tempfile::tempdir().unwrap();
        let mut conn = before_migration(dir.path(), 19).await;
        let now = chrono::Utc::now();
        let tenant: mandate_types::TenantId =
            "ten_00000000000000000000000000000001".parse().unwrap();
        let grant = |jti: &str, parent: Option<&str>| {
            let mut g = super::test_grant(tenant, jti, now);
            g.parent_jti = parent.map(str::to_owned);
            g
        };
        let (root, child) = (grant("g-root", None), grant("g-child", Some("g-root")));
        for g in [&root, &child] {
            sqlx::query("INSERT INTO grants (jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc) VALUES ($1, $2, NULL, 'agt_1', $3, 0, NULL, $4)")
                .bind(&g.jti)
                .bind(tenant.to_string())
                .bind(&g.parent_jti)
                .bind(serde_json::to_string(g).unwrap())
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let later = now + chrono::Duration::minutes(5);
        sqlx::query(
            "INSERT INTO used_jtis (issuer, jti, expires_at) VALUES ('agt_1', 'j-used', $1)",
        )
        .bind(later.timestamp_micros())
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = SqliteStore::open(dir.path()).await.unwrap();
        let kept = store.grant(tenant, "g-child").await.unwrap().unwrap();
        assert_eq!(kept.parent_jti.as_deref(), Some("g-root"));
        assert!(store.grant(tenant, "g-root").await.unwrap().is_some());
        assert!(
            !store
                .claim_jti("agt_1", "j-used", later, now)
                .await
                .unwrap(),
            "a replay"
        );
        assert!(store.claim_jti("agt_1", "j-new", later, now).await.unwrap());
        let schema: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'grants'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert!(
            schema.contains(r#"REFERENCES "grants" (jti) DEFERRABLE INITIALLY DEFERRED"#),
            "{schema}"
        );

        let orphan = "INSERT INTO grants (jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc) VALUES ('g-orphan', 'ten_x', NULL, 'agt_1', 'g-none', 0, NULL, '{}')";
        let mut conn = store.pool.acquire().await.unwrap();
        assert!(
            sqlx::query(orphan).execute(&mut *conn).await.is_err(),
            "on its own"
        );
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(orphan).execute(&mut *tx).await.unwrap();
        assert!(tx.commit().await.is_err(), "at COMMIT");
        drop(conn);
        assert!(store.grant(tenant, "g-orphan").await.unwrap().is_none());
        let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM grants WHERE jti = 'g-orphan'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(orphans, 0);
    }

    /// A connection to a new database in `dir` with the migrations before `version`
    /// applied, as a store of that time left it.
    async fn before_migration(dir: &std::path::Path, version: i64) -> sqlx::SqliteConnection {
        use sqlx::Connection as _;

        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("mandate.db"))
            .create_if_missing(true)
            .foreign_keys(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE mandate_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        for m in super::MIGRATIONS.iter().filter(|m| m.version < version) {
            sqlx::raw_sql(m.sql).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO mandate_migrations VALUES ($1, $2, 0)")
                .bind(m.version)
                .bind(m.name)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn
    }

    /// A ledger written before migration 20 keeps every event under the new key: each
    /// tenant's chain reads back whole and in order, goes on from its head, and is
    /// indexed by mandate; the keys of two tenants do not mix, and a row whose key is
    /// not its own sequence number is refused.
    #[tokio::test]
    async fn the_ledger_is_keyed_anew_with_every_event() {
        use mandate_audit::{Event, EventKind, Head, NewEvent};
        use mandate_store::{AuditFilter, AuditLog as _};
        use sqlx::Connection as _;

        let dir = tempfile::tempdir().unwrap();
        let mut conn = before_migration(dir.path(), 20).await;
        let now = chrono::Utc::now();
        let mandate: mandate_types::MandateId = mandate_types::MandateId::generate();
        let new = |tenant| {
            let mut event = NewEvent::new(tenant, EventKind::Decision, "agent:test");
            event.mandate_id = Some(mandate);
            event
        };
        let mut chains = Vec::new();
        for (n, tenant) in [
            (3, "ten_0000000000000000000000000000000b"),
            (2, "ten_0000000000000000000000000000000a"),
        ] {
            let tenant: mandate_types::TenantId = tenant.parse().unwrap();
            let mut head = Head::genesis();
            let mut chain = Vec::new();
            for _ in 0..n {
                let event = Event::chain(&head, new(tenant), now);
                head = event.head();
                sqlx::query("INSERT INTO audit_events (tenant_id, seq, at, kind, mandate_id, agent_id, human_id, hash, doc) VALUES ($1, $2, 0, 'decision', $3, NULL, NULL, $4, $5)")
                    .bind(tenant.to_string())
                    .bind(i64::try_from(event.seq).unwrap())
                    .bind(mandate.to_string())
                    .bind(&event.hash)
                    .bind(serde_json::to_string(&event).unwrap())
                    .execute(&mut conn)
                    .await
                    .unwrap();
                chain.push(event);
            }
            sqlx::query("INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, $2, $3)")
                .bind(tenant.to_string())
                .bind(i64::try_from(head.seq).unwrap())
                .bind(&head.hash)
                .execute(&mut conn)
                .await
                .unwrap();
            chains.push((tenant, chain));
        }
        conn.close().await.unwrap();

        let store = SqliteStore::open(dir.path()).await.unwrap();
        for (tenant, chain) in &chains {
            let records = store.audit_records(*tenant, 0, 100).await.unwrap();
            let docs: Vec<_> = chain
                .iter()
                .map(|e| serde_json::to_string(e).unwrap())
                .collect();
            assert_eq!(
                records.iter().map(|r| &r.doc).collect::<Vec<_>>(),
                docs.iter().collect::<Vec<_>>()
            );
            let last = chain.last().unwrap();
            let next = store.append_events(&[new(*tenant)], now).await.unwrap();
            assert_eq!(
                (next[0].seq, &next[0].prev_hash),
                (last.seq + 1, &last.hash)
            );
            let tail = store.audit_records(*tenant, last.seq, 100).await.unwrap();
            assert_eq!(
                tail.iter().map(|r| r.seq).collect::<Vec<_>>(),
                [last.seq + 1]
            );
        }
        assert_eq!(store.index_audit(100).await.unwrap(), 7);
        for (tenant, chain) in &chains {
            let filter = AuditFilter {
                mandate: Some(mandate),
                ..AuditFilter::default()
            };
            let found = store
                .audit_events(*tenant, &filter, None, 100)
                .await
                .unwrap();
            let seqs: Vec<u64> = found.iter().map(|e| e.seq).collect();
            let all: Vec<u64> = (1..=chain.len() as u64 + 1).collect();
            assert_eq!(seqs, all);
            assert!(found.iter().all(|e| e.tenant_id == *tenant));
        }
        let keys: Vec<(i64, i64)> = sqlx::query_as("SELECT id, seq FROM audit_events ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(keys.len(), 7);
        assert!(
            keys.iter()
                .all(|(id, seq)| id % (1 << 40) == *seq && *id >> 40 >= 1),
            "{keys:?}"
        );
        let squat = "INSERT INTO audit_events (id, tenant_id, seq, at, kind, hash, doc) VALUES ($1, 'ten_x', $2, 0, 'decision', 'h', '{}')";
        for (id, seq) in [(keys[0].0 + 9, 8), (9, 9)] {
            assert!(
                sqlx::query(squat)
                    .bind(id)
                    .bind(seq)
                    .execute(&store.pool)
                    .await
                    .is_err(),
                "{id} {seq}"
            );
        }
        let unkeyed = "INSERT INTO audit_events (tenant_id, seq, at, kind, hash, doc) VALUES ('ten_x', 9, 0, 'decision', 'h', '{}')";
        assert!(sqlx::query(unkeyed).execute(&store.pool).await.is_err());
    }

    /// SQLite keeps no statistics: the batch's check of live parents must look its
    /// grants up by key, never walk the index of every live grant (it did, at 0.9 ms a
    /// batch and growing with the table).
    #[tokio::test]
    async fn the_live_parents_check_looks_grants_up_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let keys = ["?"; 8].join(", ");
        let sql = format!(
            "EXPLAIN QUERY PLAN {}{keys}{}",
            LIVE_PARENTS.0, LIVE_PARENTS.1
        );
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql);
        for i in 0..8 {
            query = query.bind(format!("jti-{i}"));
        }
        let plan: Vec<String> = query
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.3)
            .collect();
        assert!(
            plan.iter()
                .all(|step| step.contains("sqlite_autoindex_grants_1 (jti=?)")),
            "{plan:?}"
        );
    }

    /// The ledger's batches commit without an fsync when they are synced apart, and
    /// with one when they are durable on their own; every other write on the writer
    /// connection commits with one, whatever came before it.
    #[tokio::test]
    async fn only_the_ledger_commits_without_syncing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        async fn level(conn: &mut sqlx::SqliteConnection) -> i64 {
            sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(conn)
                .await
                .unwrap()
        }
        const FULL: i64 = 2;
        const NORMAL: i64 = 1;
        assert_eq!(level(&mut store.writer().await.unwrap()).await, FULL);
        for _ in 0..2 {
            assert_eq!(
                level(&mut store.ledger_writer(false).await.unwrap()).await,
                NORMAL
            );
            assert_eq!(level(&mut store.writer().await.unwrap()).await, FULL);
            assert_eq!(
                level(&mut store.ledger_writer(false).await.unwrap()).await,
                NORMAL
            );
            assert_eq!(
                level(&mut store.ledger_writer(true).await.unwrap()).await,
                FULL
            );
        }
        // A writer opened again starts syncing every commit, and the ledger's turns it off.
        let _ = store.ledger_writer(false).await.unwrap();
        store.ledger_lost().await;
        assert_eq!(level(&mut store.writer().await.unwrap()).await, FULL);
        store.ledger_lost().await;
        assert_eq!(
            level(&mut store.ledger_writer(false).await.unwrap()).await,
            NORMAL
        );
    }

    /// A ledger batch that failed closes the writer; the next write opens another on
    /// the same file and the chain goes on where it stood.
    #[tokio::test]
    async fn a_lost_writer_is_opened_again_by_the_next_write() {
        use mandate_audit::{EventKind, NewEvent};
        use mandate_store::{AuditLog as _, Store as _};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        let event = || vec![NewEvent::new(tenant, EventKind::Decision, "admin")];
        let now = chrono::Utc::now();
        let first = store.append_events(&event(), now).await.unwrap();
        store.ledger_lost().await;
        assert!(!store.writer.is_open().await, "the writer was closed");
        let second = store.append_events(&event(), now).await.unwrap();
        assert_eq!((first[0].seq, second[0].seq), (1, 2));
        assert_eq!(second[0].prev_hash, first[0].hash);
        store.ping().await.unwrap();
        assert!(store.writer.is_open().await);
    }
}
