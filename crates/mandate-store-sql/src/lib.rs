//! The SQL adapters of Mandate's storage ports.
//!
//! ```text
//!                 ┌──────────────── repo.rs (one body of portable SQL) ───────────────┐
//!   dyn Store ◄── │ SqliteStore   (embedded default; WAL, synchronous=FULL)           │
//!                 │ PostgresStore (scale-out; any number of replicas on one database) │
//!                 └────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Both adapters run the same statements: `$N` placeholders, `TEXT`/`BIGINT` columns, a
//! JSON `doc` column holding each entity whole (`TEXT` in SQLite, `JSONB` in PostgreSQL,
//! bound through `sqlx::types::Json`). What differs — connecting, the migrations, the
//! lock that serialises migrations, the revocation notification, the lock a grant holds
//! on its mandate (`LOCK_LIVE_MANDATES`) and the check of its parent (`LIVE_PARENTS`) —
//! lives in each adapter's module. Times are stored as
//! microseconds since the Unix epoch.

mod accounts;
mod calls;
mod connections;
mod directory;
mod grants;
mod oauth;
mod postgres;
mod repo;
mod reviews;
mod sqlite;
mod vault;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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
