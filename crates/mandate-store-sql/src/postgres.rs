use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use crate::{Migration, OpenError};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "directory_catalog_mandates",
        sql: include_str!("../migrations/postgres/0001_directory_catalog_mandates.sql"),
    },
    Migration {
        version: 2,
        name: "audit_ledger",
        sql: include_str!("../migrations/postgres/0002_audit_ledger.sql"),
    },
    Migration {
        version: 3,
        name: "policy_sets",
        sql: include_str!("../migrations/postgres/0003_policy_sets.sql"),
    },
    Migration {
        version: 4,
        name: "grants",
        sql: include_str!("../migrations/postgres/0004_grants.sql"),
    },
    Migration {
        version: 5,
        name: "token_keys",
        sql: include_str!("../migrations/postgres/0005_token_keys.sql"),
    },
    Migration {
        version: 6,
        name: "calls",
        sql: include_str!("../migrations/postgres/0006_calls.sql"),
    },
    Migration {
        version: 7,
        name: "vault",
        sql: include_str!("../migrations/postgres/0007_vault.sql"),
    },
    Migration {
        version: 8,
        name: "console",
        sql: include_str!("../migrations/postgres/0008_console.sql"),
    },
    Migration {
        version: 9,
        name: "oauth",
        sql: include_str!("../migrations/postgres/0009_oauth.sql"),
    },
    Migration {
        version: 12,
        name: "drift_counts",
        sql: include_str!("../migrations/postgres/0012_drift_counts.sql"),
    },
    Migration {
        version: 13,
        name: "rollback_steps",
        sql: include_str!("../migrations/postgres/0013_rollback_steps.sql"),
    },
    Migration {
        version: 14,
        name: "attempt_windows",
        sql: include_str!("../migrations/postgres/0014_attempt_windows.sql"),
    },
    Migration {
        version: 15,
        name: "access_reviews",
        sql: include_str!("../migrations/postgres/0015_access_reviews.sql"),
    },
    Migration {
        version: 16,
        name: "connections",
        sql: include_str!("../migrations/postgres/0016_connections.sql"),
    },
    Migration {
        version: 17,
        name: "grant_indexes_partial",
        sql: include_str!("../migrations/postgres/0017_grant_indexes_partial.sql"),
    },
    Migration {
        version: 21,
        name: "used_jtis_by_expiry",
        sql: include_str!("../migrations/postgres/0021_used_jtis_by_expiry.sql"),
    },
];

/// Serialises migrations across replicas starting at once ("mandate" in ASCII).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7881707082679141)";

/// The scale-out store: any number of stateless replicas share one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The ledger writer's own connection ([`crate::Held`]): one task appends the
    /// batches, so it holds one instead of taking one from the pool per batch.
    ledger: crate::Held<PgConnection>,
    /// Where each tenant's chain stands, as this replica last saw it ([`crate::Heads`]).
    /// Other replicas move it too; a stale head costs one statement that changes
    /// nothing, and the batch then locks and reads the head.
    heads: crate::Heads,
    /// When this process last purged expired assertion uses ([`crate::PurgeClock`]).
    jtis_purged: crate::PurgeClock,
}

impl PostgresStore {
    /// A connection to write on. PostgreSQL takes concurrent writers as they come; row
    /// locks order them.
    pub(crate) async fn writer(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, mandate_store::StoreError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| crate::repo::store_error(e, "record"))
    }

    /// The ledger's connection, opened if it is not. Its commits are durable when they
    /// return, `durable` or not.
    pub(crate) async fn ledger_writer(
        &self,
        _durable: bool,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, PgConnection>, mandate_store::StoreError> {
        self.ledger.lock().await
    }

    /// A commit on PostgreSQL is durable when it returns (as `synchronous_commit` says):
    /// nothing is left to sync.
    pub(crate) async fn sync_commits(&self) -> Result<(), mandate_store::StoreError> {
        Ok(())
    }

    /// A ledger batch failed for a reason other than a refusal: its connection is
    /// closed (it may be broken or mid-transaction) and the next batch opens another.
    pub(crate) async fn ledger_lost(&self) {
        self.ledger.close().await;
    }

    /// The writers are the pool's connections, which `ping` already checked.
    pub(crate) async fn check_writer(&self) -> Result<(), mandate_store::StoreError> {
        Ok(())
    }

    /// Tells every replica's feed that something they may hold in memory changed (an
    /// agent, a tool server or tool). Sent after the write committed; if it cannot be
    /// sent, the write stands and the other replicas' caches age out on their own.
    pub(crate) async fn changed(&self) {
        if let Err(e) = sqlx::query("SELECT pg_notify('mandate_revocations', 'changed')")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "could not notify other replicas of a change");
        }
    }

    /// Connects to `url` (`postgres://…`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let options: PgConnectOptions = url.parse().map_err(|source| OpenError::Connect {
            location: redact_url(url),
            source,
        })?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pin a `search_path`).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, OpenError> {
        let location = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|source| OpenError::Connect { location, source })?;
        let store = Self {
            pool,
            ledger: crate::Held::new(None, options, "the ledger's connection"),
            heads: crate::Heads::default(),
            jtis_purged: crate::PurgeClock::default(),
        };
        store
            .run_migrations(MIGRATIONS, Some(MIGRATION_LOCK))
            .await?;
        Ok(store)
    }

    /// The connection pool, for the PostgreSQL-only features built on it (LISTEN/NOTIFY).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The channel replicas listen on for revocations.
const REVOCATIONS: &str = "mandate_revocations";

/// Any number of replicas share one PostgreSQL database.
pub(crate) const SHARED: bool = true;

/// Run in every transaction that revokes grants: PostgreSQL delivers the notification
/// when (and only if) the transaction commits.
pub(crate) const NOTIFY_REVOKED: Option<&str> = Some("SELECT pg_notify('mandate_revocations', '')");

/// A batch chained on a remembered head is one statement: a common table expression
/// moves the head row only from where it stood (a compare-and-swap under the row's
/// lock, which orders replicas) and the events are inserted only if it did (see
/// `append_on_head`). The extended protocol takes one statement per query, so a ledger
/// batch of token entries joins its steps in common table expressions: four statements
/// instead of six (see `entries`).
pub(crate) const DATA_MODIFYING_CTE: bool = true;

/// `audit_events` is keyed by (tenant_id, seq) here, as written (SQLite's differs: see
/// there).
pub(crate) const EVENTS_KEYED: bool = false;

/// How the batches' multi-row INSERTs begin (SQLite's differs: see there).
pub(crate) const INSERT_ROWS: &str = "INSERT INTO";

/// What the check of grants' mandates appends to its `SELECT … FROM mandates`: a share
/// lock on each row until the transaction ends. A final-state update of a mandate locks
/// the row for update: it waits for the grants to commit (and then revokes them with the
/// rest, its statement seeing the new rows), or the grants' check waits for it and then
/// reads the ended status. Share locks do not block one another, so grants of one
/// mandate are written in parallel.
pub(crate) const LOCK_LIVE_MANDATES: &str = " FOR SHARE";

/// The check that the parents of new grants are live, around the list of their jtis: an
/// UPDATE that changes nothing but locks each row, so a concurrent revocation of the tree
/// waits for these grants to commit (and its next pass revokes them), or they wait for it
/// and find the parent revoked.
pub(crate) const LIVE_PARENTS: (&str, &str) = (
    "UPDATE grants SET revoked_at = revoked_at WHERE revoked_at IS NULL AND jti IN (",
    ") RETURNING jti, tenant_id",
);

impl PostgresStore {
    pub(crate) async fn listen_revocations(
        &self,
    ) -> Result<Option<Box<dyn mandate_store::RevocationFeed>>, mandate_store::StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| mandate_store::StoreError::Unavailable(e.to_string()))?;
        listener
            .listen(REVOCATIONS)
            .await
            .map_err(|e| mandate_store::StoreError::Unavailable(e.to_string()))?;
        Ok(Some(Box::new(Feed(listener))))
    }
}

struct Feed(sqlx::postgres::PgListener);

#[async_trait::async_trait]
impl mandate_store::RevocationFeed for Feed {
    async fn next(&mut self) -> Result<(), mandate_store::StoreError> {
        self.0
            .recv()
            .await
            .map(|_| ())
            .map_err(|e| mandate_store::StoreError::Unavailable(e.to_string()))
    }
}

/// A database URL without its password, fit for a message.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let (head, tail) = url.split_at(at);
            let user_start = scheme + 3;
            let userinfo = head.get(user_start..).unwrap_or_default();
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{}{}",
                head.get(..user_start).unwrap_or_default(),
                user,
                tail
            )
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::redact_url;

    /// A schema of its own in the test database, dropped by [`Schema::drop`].
    struct Schema {
        admin: super::PgConnection,
        name: String,
        options: super::PgConnectOptions,
    }

    impl Schema {
        async fn new() -> Schema {
            use sqlx::Connection as _;
            let url = std::env::var("MANDATE_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let base: super::PgConnectOptions = url.parse().unwrap();
            let name = format!("mandate_test_{}", uuid::Uuid::now_v7().simple());
            let mut admin = super::PgConnection::connect_with(&base).await.unwrap();
            sqlx::raw_sql(&format!("CREATE SCHEMA {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let options = base.options([("search_path", name.as_str())]);
            Schema {
                admin,
                name,
                options,
            }
        }

        async fn store(&self) -> super::PostgresStore {
            super::PostgresStore::connect_with(self.options.clone())
                .await
                .unwrap()
        }

        async fn drop(mut self) {
            sqlx::raw_sql(&format!("DROP SCHEMA {} CASCADE", self.name))
                .execute(&mut self.admin)
                .await
                .unwrap();
        }
    }

    /// The one-statement append on PostgreSQL is a compare-and-swap of the head (see
    /// `check_append_on_head`).
    #[tokio::test]
    async fn the_one_statement_append_moves_the_head_only_from_where_it_stood() {
        use sqlx::Connection as _;

        let schema = Schema::new().await;
        let store = schema.store().await;
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        let mut conn = super::PgConnection::connect_with(&schema.options)
            .await
            .unwrap();
        super::check_append_on_head(&store, &mut conn, tenant).await;
        schema.drop().await;
    }

    /// A batch of token entries goes as four statements, chained on the head this
    /// replica remembers; when another replica moved it, nothing is written (not even
    /// the assertions' claims) and the general way chains the batch on the stored head.
    #[tokio::test]
    async fn common_entries_chain_on_the_remembered_head_or_write_nothing() {
        let schema = Schema::new().await;
        let store = schema.store().await;
        let other = schema.store().await;
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        super::check_commit_common(&store, &other, tenant).await;
        schema.drop().await;
    }

    /// A batch whose INSERT fails halfway leaves nothing (one statement or one
    /// transaction, rolled back).
    #[tokio::test]
    async fn a_batch_that_fails_halfway_leaves_nothing() {
        let schema = Schema::new().await;
        let store = schema.store().await;
        let tenant = mandate_store::conformance::tenant(&store, "default").await;
        super::check_half_written_batches_leave_nothing(&store, tenant).await;
        schema.drop().await;
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://mandate:s3cret@db:5432/mandate"),
            "postgres://mandate@db:5432/mandate"
        );
        assert_eq!(redact_url("postgres://db/mandate"), "postgres://db/mandate");
    }
}
crate::repo::sql_store!(PostgresStore, sqlx::Postgres, "postgres");
