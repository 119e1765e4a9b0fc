//! The statements both adapters run, written once.
//!
//! `sql_store!` expands to the port implementations for one adapter type. It is a macro
//! rather than generic code because sqlx's per-database trait bounds would otherwise
//! spread through every signature; the SQL text is the same for both backends.

use chrono::{DateTime, Utc};
use mandate_store::StoreError;
use sqlx::error::ErrorKind;

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Maps a driver error to a port error; `what` names the thing a constraint protects.
pub(crate) fn store_error(err: sqlx::Error, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict {
                what: what.to_owned(),
            },
            ErrorKind::ForeignKeyViolation => StoreError::Missing {
                what: format!("a record referenced by this {what}"),
            },
            _ => StoreError::Unavailable(db.message().to_owned()),
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(err.to_string())
        }
        _ => StoreError::Unavailable(err.to_string()),
    }
}

pub(crate) fn limit_plus_one(page: &mandate_store::PageRequest) -> i64 {
    i64::from(page.limit()) + 1
}

macro_rules! sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use ::async_trait::async_trait;
        use ::chrono::{DateTime, Utc};
        use ::mandate_domain::{Agent, Consent, Grant, Human, Mandate, Tenant, Tool, ToolServer};
        use ::mandate_audit::{Checkpoint, Event, Head, NewEvent, PublicKey, GENESIS_HASH};
        use ::mandate_store::{
            AgentFilter, ApiToken, AuditFilter, AuditLog, Catalog, Committed, Directory, Entry, Grants,
            HumanFilter, MandateFilter, Mandates, Page, PageRequest, PolicySets, Refusal, Store,
            StoreError, StoredPolicySet, StoredRecord, TokenKey, ToolFilter, UsedAssertion,
        };
        use ::mandate_types::{AgentId, HumanId, MandateId, TenantId, ToolId, ToolServerId};
        use ::sqlx::types::Json;
        use ::sqlx::Row as _;

        use $crate::repo::{limit_plus_one, micros, store_error};

        type DbRow = <$db as ::sqlx::Database>::Row;

        fn doc<T: ::serde::de::DeserializeOwned>(row: &DbRow) -> Result<T, StoreError> {
            row.try_get::<Json<T>, _>("doc")
                .map(|json| json.0)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        }

        fn docs<T: ::serde::de::DeserializeOwned>(rows: &[DbRow]) -> Result<Vec<T>, StoreError> {
            rows.iter().map(doc).collect()
        }

        fn unavailable(err: ::sqlx::Error) -> StoreError {
            store_error(err, "record")
        }

        fn corrupt(err: ::sqlx::Error) -> StoreError {
            StoreError::Corrupt(err.to_string())
        }

        fn from_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
            DateTime::<Utc>::from_timestamp_micros(us)
                .ok_or_else(|| StoreError::Corrupt(format!("time {us} out of range")))
        }

        fn json_text<T: ::serde::Serialize>(value: &T) -> Option<String> {
            ::serde_json::to_value(value)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        }

        impl $store {
            pub(crate) async fn run_migrations(
                &self,
                migrations: &[$crate::Migration],
                lock: Option<&str>,
            ) -> Result<(), $crate::OpenError> {
                let known = migrations.last().map_or(0, |m| m.version);
                let failed = |version, name, source| $crate::OpenError::Migration {
                    version,
                    name,
                    source,
                };
                let mut tx = self.pool.begin().await.map_err(|e| failed(0, "begin", e))?;
                if let Some(lock) = lock {
                    ::sqlx::query(lock)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| failed(0, "lock", e))?;
                }
                ::sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS mandate_migrations (
                        version BIGINT PRIMARY KEY,
                        name TEXT NOT NULL,
                        applied_at BIGINT NOT NULL
                    )",
                )
                .execute(&mut *tx)
                .await
                .map_err(|e| failed(0, "bookkeeping", e))?;
                let applied: i64 = ::sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM mandate_migrations")
                    .fetch_one(&mut *tx)
                    .await
                    .and_then(|row| row.try_get("v"))
                    .map_err(|e| failed(0, "bookkeeping", e))?;
                if applied > known {
                    return Err($crate::OpenError::TooNew { found: applied, known });
                }
                for m in migrations.iter().filter(|m| m.version > applied) {
                    ::sqlx::raw_sql(m.sql)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| failed(m.version, m.name, e))?;
                    ::sqlx::query("INSERT INTO mandate_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(micros(Utc::now()))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| failed(m.version, m.name, e))?;
                    ::tracing::info!(version = m.version, name = m.name, backend = $backend, "applied migration");
                }
                tx.commit().await.map_err(|e| failed(known, "commit", e))
            }
        }

        /// A mandate with what the gateway has spent of its budgets (kept apart, in
        /// `mandate_usage`, so spending never races the mandate's own updates).
        fn mandate_row(row: &DbRow) -> Result<Mandate, StoreError> {
            let mut mandate: Mandate = doc(row)?;
            let calls: Option<i64> = row.try_get("calls").map_err(corrupt)?;
            let amount: Option<i64> = row.try_get("amount").map_err(corrupt)?;
            mandate.usage.calls = u64::try_from(calls.unwrap_or(0)).unwrap_or(0);
            mandate.usage.amount = u64::try_from(amount.unwrap_or(0)).unwrap_or(0);
            Ok(mandate)
        }

        fn version(m: &Mandate) -> Result<(i64, i64), StoreError> {
            let new = i64::try_from(m.version).map_err(|_| StoreError::VersionConflict)?;
            Ok((new, new - 1))
        }

        #[async_trait]
        impl Mandates for $store {
            async fn create_mandate(&self, mandate: &Mandate, audit: &[NewEvent]) -> Result<(), StoreError> {
                let (version, _) = version(mandate)?;
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                ::sqlx::query(
                    "INSERT INTO mandates (id, tenant_id, agent_id, human_id, status, expires_at, version, doc)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(mandate.id.to_string())
                .bind(mandate.tenant_id.to_string())
                .bind(mandate.terms.agent_id.to_string())
                .bind(mandate.terms.human_id.to_string())
                .bind(mandate.status.as_str())
                .bind(micros(mandate.terms.expires_at))
                .bind(version)
                .bind(Json(mandate))
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "mandate"))?;
                for human in mandate.terms.required_consenters() {
                    ::sqlx::query("INSERT INTO mandate_consenters (mandate_id, human_id) VALUES ($1, $2)")
                        .bind(mandate.id.to_string())
                        .bind(human.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| store_error(e, "human"))?;
                }
                append_in(&mut tx, audit, mandate.updated_at).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn mandate(&self, tenant: TenantId, id: MandateId) -> Result<Option<Mandate>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT m.doc, u.calls, u.amount FROM mandates m
                     LEFT JOIN mandate_usage u ON u.mandate_id = m.id
                     WHERE m.id = $1 AND m.tenant_id = $2",
                )
                .bind(id.to_string())
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(mandate_row).transpose()
            }

            async fn list_mandates(&self, tenant: TenantId, filter: &MandateFilter, page: &PageRequest) -> Result<Page<Mandate>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT m.doc, u.calls, u.amount FROM mandates m
                     LEFT JOIN mandate_usage u ON u.mandate_id = m.id
                     WHERE m.tenant_id = $1
                       AND ($2 IS NULL OR m.id > $2)
                       AND ($3 IS NULL OR m.status = $3)
                       AND ($4 IS NULL OR m.agent_id = $4)
                       AND ($5 IS NULL OR m.human_id = $5)
                       AND ($6 IS NULL OR m.id IN (SELECT mandate_id FROM mandate_consenters WHERE human_id = $6))
                     ORDER BY m.id LIMIT $7",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.agent.map(|a| a.to_string()))
                .bind(filter.human.map(|h| h.to_string()))
                .bind(filter.consenter.map(|h| h.to_string()))
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                let mandates = rows.iter().map(mandate_row).collect::<Result<Vec<_>, _>>()?;
                Ok(page.page(mandates, |m: &Mandate| m.id.to_string()))
            }

            async fn update_mandate(&self, mandate: &Mandate, audit: &[NewEvent]) -> Result<(), StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                update_mandate_in(&mut tx, mandate).await?;
                append_in(&mut tx, audit, mandate.updated_at).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn record_consent(&self, consent: &Consent, mandate: &Mandate, audit: &[NewEvent]) -> Result<(), StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                ::sqlx::query(
                    "INSERT INTO consents (id, tenant_id, mandate_id, human_id, decided_at, doc)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(consent.id.to_string())
                .bind(consent.tenant_id.to_string())
                .bind(consent.mandate_id.to_string())
                .bind(consent.human_id.to_string())
                .bind(micros(consent.decided_at))
                .bind(Json(consent))
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "answer from this human to this mandate"))?;
                // Dropping `tx` on error rolls the consent back.
                update_mandate_in(&mut tx, mandate).await?;
                append_in(&mut tx, audit, mandate.updated_at).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn consents(&self, tenant: TenantId, mandate: MandateId) -> Result<Vec<Consent>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM consents WHERE mandate_id = $1 AND tenant_id = $2 ORDER BY decided_at, id",
                )
                .bind(mandate.to_string())
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                docs(&rows)
            }

            async fn mandates_due_to_expire(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Mandate>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM mandates
                     WHERE status IN ('requested', 'active') AND expires_at <= $1
                     ORDER BY expires_at, id LIMIT $2",
                )
                .bind(micros(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                docs(&rows)
            }
        }

        async fn update_mandate_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            mandate: &Mandate,
        ) -> Result<(), StoreError> {
            let (new_version, read_version) = version(mandate)?;
            let done = ::sqlx::query(
                "UPDATE mandates SET status = $1, expires_at = $2, version = $3, doc = $4
                 WHERE id = $5 AND tenant_id = $6 AND version = $7",
            )
            .bind(mandate.status.as_str())
            .bind(micros(mandate.terms.expires_at))
            .bind(new_version)
            .bind(Json(mandate))
            .bind(mandate.id.to_string())
            .bind(mandate.tenant_id.to_string())
            .bind(read_version)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::VersionConflict);
            }
            if mandate.status.is_final() {
                // Every credential dies with its mandate, in the same transaction.
                ::sqlx::query(
                    "UPDATE grants SET revoked_at = $1
                     WHERE tenant_id = $2 AND mandate_id = $3 AND revoked_at IS NULL",
                )
                .bind(micros(mandate.updated_at))
                .bind(mandate.tenant_id.to_string())
                .bind(mandate.id.to_string())
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
                if let Some(notify) = NOTIFY_REVOKED {
                    ::sqlx::query(notify).execute(&mut **tx).await.map_err(unavailable)?;
                }
            }
            Ok(())
        }

        /// The columns of `audit_events` that a row of chained events fills.
        const EVENT_COLUMNS: &str = "(tenant_id, seq, at, kind, mandate_id, agent_id, human_id, hash, doc)";

        /// `VALUES (…), (…)` of chained events, pushed onto `query`.
        fn push_event_values(query: &mut ::sqlx::QueryBuilder<'static, $db>, chunk: &[Event]) -> Result<(), StoreError> {
            let mut rows = Vec::with_capacity(chunk.len());
            for e in chunk {
                rows.push((e, seq_param(e.seq)?, to_text(e)?));
            }
            query.push_values(rows, |mut b, (e, seq, doc)| {
                // `encode` rather than `to_string`: no trip through `core::fmt` per id.
                b.push_bind(e.tenant_id.encode().as_str().to_owned())
                    .push_bind(seq)
                    .push_bind(micros(e.at))
                    .push_bind(e.kind.as_str())
                    .push_bind(e.mandate_id.map(|id| id.encode().as_str().to_owned()))
                    .push_bind(e.agent_id.map(|id| id.encode().as_str().to_owned()))
                    .push_bind(e.human_id.map(|id| id.encode().as_str().to_owned()))
                    .push_bind(e.hash.clone())
                    .push_bind(doc);
            });
            Ok(())
        }

        /// What follows `INSERT … audit_events` for rows given as `VALUES (…), (…)` and
        /// a closing parenthesis: where `audit_events` is keyed by one integer
        /// (`EVENTS_KEYED`), each row's key made from its tenant's number and its
        /// sequence number (a tenant without a head gets none, and the row is refused).
        const EVENT_ROWS: &str = if EVENTS_KEYED {
            "(id, tenant_id, seq, at, kind, mandate_id, agent_id, human_id, hash, doc) \
             SELECT (SELECT num FROM audit_heads WHERE tenant_id = column1) * 1099511627776 + column2, * FROM ("
        } else {
            "(tenant_id, seq, at, kind, mandate_id, agent_id, human_id, hash, doc) SELECT * FROM ("
        };

        /// The highest sequence number a keyed `audit_events` holds (2^40 - 1; the SQL
        /// here and migration 20 write 2^40 as `1099511627776`).
        const MAX_SEQ: u64 = (1 << 40) - 1;

        /// How a row of `audit_mandate_index` (`r`) finds its event (`e`).
        const EVENT_OF_INDEX_ROW: &str = if EVENTS_KEYED {
            "e.id = (SELECT num FROM audit_heads h WHERE h.tenant_id = r.tenant_id) * 1099511627776 + r.seq AND e.tenant_id = r.tenant_id"
        } else {
            "e.tenant_id = r.tenant_id AND e.seq = r.seq"
        };

        /// The order of one tenant's events.
        const EVENT_ORDER: &str = if EVENTS_KEYED { "id" } else { "seq" };

        /// `tenant`'s events after `after` and up to `upto` (all after it: `None`), as a
        /// condition on `audit_events` pushed onto `q`: on a keyed table a range of its
        /// key, and the tenant's id besides.
        fn push_events_between(
            q: &mut ::sqlx::QueryBuilder<'_, $db>,
            tenant: TenantId,
            after: u64,
            upto: Option<u64>,
        ) -> Result<(), StoreError> {
            let tenant = tenant.to_string();
            if EVENTS_KEYED {
                let key = " * 1099511627776 + ";
                q.push("id > (SELECT num FROM audit_heads WHERE tenant_id = ")
                    .push_bind(tenant.clone())
                    .push(")")
                    .push(key)
                    .push_bind(seq_param(after.min(MAX_SEQ))?)
                    .push(" AND id <= (SELECT num FROM audit_heads WHERE tenant_id = ")
                    .push_bind(tenant.clone())
                    .push(")")
                    .push(key)
                    .push_bind(seq_param(upto.unwrap_or(MAX_SEQ).min(MAX_SEQ))?)
                    .push(" AND tenant_id = ")
                    .push_bind(tenant);
            } else {
                q.push("tenant_id = ").push_bind(tenant).push(" AND seq > ").push_bind(seq_param(after)?);
                if let Some(upto) = upto {
                    q.push(" AND seq <= ").push_bind(seq_param(upto)?);
                }
            }
            Ok(())
        }

        /// One multi-row INSERT of chained events (at most `AUDIT_ROWS_PER_INSERT`).
        fn events_insert(chunk: &[Event]) -> Result<::sqlx::QueryBuilder<'static, $db>, StoreError> {
            // Keyed: each row's key is worked out in the statement (`EVENT_ROWS`).
            let rows = if EVENTS_KEYED { EVENT_ROWS } else { EVENT_COLUMNS };
            let mut insert = ::sqlx::QueryBuilder::<$db>::new(format!("{INSERT_ROWS} audit_events {rows} "));
            push_event_values(&mut insert, chunk)?;
            if EVENTS_KEYED {
                insert.push(")");
            }
            Ok(insert)
        }

        /// Appends `chained` (one tenant's events, chained on the head this process
        /// remembers) in one round trip, if the stored head is still the one they
        /// continue: `Ok(false)` when it is not, and nothing was written. The head row is
        /// moved only from where the events start (a compare-and-swap under the row's
        /// lock, which also orders replicas) and the events are inserted only if it was,
        /// so a stale head changes nothing and raises no error (which would abort a
        /// surrounding transaction). PostgreSQL does both in one statement; SQLite, which
        /// has no data-modifying CTEs, in two statements sent as one script, wrapped in
        /// a transaction of their own when `own_transaction` (the caller has none; if
        /// the script fails, the caller must roll back what it may have left open).
        async fn append_on_head<'e, E: ::sqlx::Executor<'e, Database = $db>>(
            executor: E,
            chained: &[Event],
            own_transaction: bool,
        ) -> Result<bool, StoreError> {
            if chained.is_empty() {
                return Ok(true);
            }
            let mut q = ::sqlx::QueryBuilder::<$db>::new(if own_transaction && !DATA_MODIFYING_CTE {
                "BEGIN IMMEDIATE; "
            } else {
                ""
            });
            push_on_head(&mut q, chained, &[])?;
            if own_transaction && !DATA_MODIFYING_CTE {
                q.push("; COMMIT");
            }
            // The head moved (and every event went in) or nothing was written.
            let moved = if DATA_MODIFYING_CTE {
                q.build().execute(executor).await.map(|done| done.rows_affected() > 0)
            } else {
                // Counted by the UPDATE's returned row: a script's `rows_affected` adds
                // what SQLite reports after BEGIN and COMMIT, the last count it kept.
                q.build().fetch_all(executor).await.map(|rows| rows.len() == 1)
            };
            moved.map_err(|e| store_error(e, "audit event"))
        }

        /// `batch` (one tenant's events) chained after `head`.
        fn chain_on(mut head: Head, batch: &[NewEvent], at: DateTime<Utc>) -> Vec<Event> {
            let mut chained = Vec::with_capacity(batch.len());
            for new in batch {
                let event = Event::chain(&head, new.clone(), at);
                head = event.head();
                chained.push(event);
            }
            chained
        }

        /// The statement(s) of [`append_on_head`] for `chained` (not empty), pushed onto
        /// `q`: on SQLite two, of which the head's UPDATE returns one row if it moved.
        /// `grants` go in with the events or not at all: on PostgreSQL as one more
        /// common table expression guarded like the events' INSERT; on SQLite as a third
        /// statement, written only if the head then stands at the last event.
        fn push_on_head(
            q: &mut ::sqlx::QueryBuilder<'static, $db>,
            chained: &[Event],
            grants: &[&Grant],
        ) -> Result<(), StoreError> {
            push_on_head_if(q, chained, grants, |_| ())
        }

        /// [`push_on_head`], the head moved only if `checks` (conditions pushed after
        /// the compare-and-swap's, each starting with ` AND `) hold too.
        fn push_on_head_if(
            q: &mut ::sqlx::QueryBuilder<'static, $db>,
            chained: &[Event],
            grants: &[&Grant],
            checks: impl FnOnce(&mut ::sqlx::QueryBuilder<'static, $db>),
        ) -> Result<(), StoreError> {
            let (Some(first), Some(last)) = (chained.first(), chained.last()) else {
                return Err(StoreError::Corrupt("an empty batch chained on a head".to_owned()));
            };
            let from = first
                .seq
                .checked_sub(1)
                .ok_or_else(|| StoreError::Corrupt("an event chained before the genesis".to_owned()))?;
            if DATA_MODIFYING_CTE {
                q.push("WITH moved AS (");
            }
            q.push("UPDATE audit_heads SET seq = ")
                .push_bind(seq_param(last.seq)?)
                .push(", hash = ")
                .push_bind(last.hash.clone())
                .push(" WHERE tenant_id = ")
                .push_bind(first.tenant_id.to_string())
                .push(" AND seq = ")
                .push_bind(seq_param(from)?)
                .push(" AND hash = ")
                .push_bind(first.prev_hash.clone());
            checks(q);
            if DATA_MODIFYING_CTE {
                q.push(" RETURNING 1)");
                if !grants.is_empty() {
                    q.push(format!(", granted AS ({INSERT_ROWS} grants {GRANT_COLUMNS} SELECT * FROM ("));
                    push_grant_values(q, grants)?;
                    q.push(format!(") AS granted {GRANT_COLUMNS} WHERE EXISTS (SELECT 1 FROM moved))"));
                }
                q.push(format!(" {INSERT_ROWS} audit_events {EVENT_COLUMNS} SELECT * FROM ("));
                push_event_values(q, chained)?;
                q.push(format!(") AS chained {EVENT_COLUMNS} WHERE EXISTS (SELECT 1 FROM moved)"));
            } else {
                // `changes()`: the rows the UPDATE just moved (1, or 0 from a stale head).
                q.push(format!(" RETURNING 1; {INSERT_ROWS} audit_events {EVENT_ROWS}"));
                push_event_values(q, chained)?;
                q.push(") WHERE changes() = 1");
                push_grants_if_written(q, grants, chained.len())?;
            }
            Ok(())
        }

        /// `; INSERT` of `grants` (none: nothing) if the statement before wrote exactly
        /// `rows` rows (see [`push_if_written`]), pushed onto `q`.
        fn push_grants_if_written(q: &mut ::sqlx::QueryBuilder<'static, $db>, grants: &[&Grant], rows: usize) -> Result<(), StoreError> {
            if grants.is_empty() {
                return Ok(());
            }
            q.push(format!("; {INSERT_ROWS} grants {GRANT_COLUMNS} SELECT * FROM ("));
            push_grant_values(q, grants)?;
            q.push(")");
            push_if_written(q, rows)
        }

        /// ` WHERE` the statement before wrote exactly `rows` rows (at least one), pushed
        /// onto `q`: on SQLite, what a script writes only with the events that moved the
        /// head (a head that did not move wrote no event, and so nothing after it).
        fn push_if_written(q: &mut ::sqlx::QueryBuilder<'static, $db>, rows: usize) -> Result<(), StoreError> {
            let rows = i64::try_from(rows.max(1)).map_err(|_| StoreError::Corrupt("a batch too large to count".to_owned()))?;
            q.push(" WHERE changes() = ").push_bind(rows);
            Ok(())
        }

        /// The checks of [`append_on_head`], run by each adapter's tests on a store
        /// with one tenant and a connection of its own to the same database: from the
        /// stored head the batch moves the head and goes in; from any other (a stale
        /// hash, the genesis) nothing changes and no error is raised, in a transaction
        /// of its own and inside the caller's, whose other writes then still commit.
        #[cfg(test)]
        pub(crate) async fn check_append_on_head(
            store: &$store,
            conn: &mut <$db as ::sqlx::Database>::Connection,
            tenant: TenantId,
        ) {
            #![allow(clippy::unwrap_used, reason = "tests")]
            use ::mandate_store::AuditLog as _;
            let now = Utc::now();
            let new = || NewEvent::new(tenant, ::mandate_audit::EventKind::Decision, "admin");
            let chain = |from: &Head| {
                let one = Event::chain(from, new(), now);
                let two = Event::chain(&one.head(), new(), now);
                vec![one, two]
            };
            let stored = store.append_events(&[new()], now).await.unwrap()[0].head();
            let stale = Head { seq: stored.seq, hash: Head::genesis().hash };
            for from in [&stale, &Head::genesis()] {
                assert!(!append_on_head(&mut *conn, &chain(from), true).await.unwrap());
                let mut tx = ::sqlx::Connection::begin(&mut *conn).await.unwrap();
                assert!(!append_on_head(&mut *tx, &chain(from), false).await.unwrap());
                // The transaction goes on: a write after the refused append commits.
                ::sqlx::query("UPDATE audit_heads SET seq = seq WHERE tenant_id = $1")
                    .bind(tenant.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            assert_eq!(store.audit_heads().await.unwrap()[0].1, stored, "nothing moved");
            assert_eq!(store.audit_records(tenant, 0, 10).await.unwrap().len(), 1);

            let chained = chain(&stored);
            assert!(append_on_head(&mut *conn, &chained, true).await.unwrap());
            let more = chain(&chained[1].head());
            let mut tx = ::sqlx::Connection::begin(&mut *conn).await.unwrap();
            assert!(append_on_head(&mut *tx, &more, false).await.unwrap());
            tx.commit().await.unwrap();
            assert_eq!(store.audit_heads().await.unwrap()[0].1, more[1].head());
            let records = store.audit_records(tenant, 0, 10).await.unwrap();
            assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
            // The connection is left in autocommit: a write of its own is durable at once.
            assert!(append_on_head(&mut *conn, &chain(&more[1].head()), true).await.unwrap());
            assert_eq!(store.audit_records(tenant, 0, 10).await.unwrap().len(), 7);
        }

        /// Rows per multi-row INSERT: 9 parameters each, 18 000 in all, stays below both
        /// backends' limits on bound parameters (SQLite 32 766, PostgreSQL 65 535). As
        /// many as the ledger's largest batch (`LedgerConfig::max_batch`), so that a full
        /// batch still takes the one round trip of `append_on_head`.
        const AUDIT_ROWS_PER_INSERT: usize = 2_000;

        fn seq_param(seq: u64) -> Result<i64, StoreError> {
            i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence number {seq} is out of range")))
        }

        fn seq_column(row: &DbRow) -> Result<u64, StoreError> {
            let seq: i64 = row.try_get("seq").map_err(|e| StoreError::Corrupt(e.to_string()))?;
            u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative sequence number {seq}")))
        }

        /// A chain's head read as a row (`seq`, `hash`).
        fn head_of(row: &DbRow) -> Result<Head, StoreError> {
            Ok(Head {
                seq: seq_column(row)?,
                hash: row.try_get("hash").map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        }

        fn records(rows: &[DbRow]) -> Result<Vec<StoredRecord>, StoreError> {
            rows.iter()
                .map(|row| {
                    Ok(StoredRecord {
                        seq: seq_column(row)?,
                        doc: row.try_get("doc").map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    })
                })
                .collect()
        }

        fn text_doc<T: ::serde::de::DeserializeOwned>(row: &DbRow) -> Result<T, StoreError> {
            let text: String = row.try_get("doc").map_err(|e| StoreError::Corrupt(e.to_string()))?;
            ::serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
        }

        fn to_text<T: ::serde::Serialize>(value: &T) -> Result<String, StoreError> {
            ::serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
        }

        /// Appends ` AND …` for each filter that is set, on columns prefixed by `table`.
        fn push_audit_filter(q: &mut ::sqlx::QueryBuilder<'_, $db>, table: &str, filter: &AuditFilter) {
            let ids = [
                ("mandate_id", filter.mandate.map(|id| id.to_string())),
                ("agent_id", filter.agent.map(|id| id.to_string())),
                ("human_id", filter.human.map(|id| id.to_string())),
                ("kind", filter.kind.map(|k| k.as_str().to_owned())),
            ];
            for (column, value) in ids {
                if let Some(value) = value {
                    q.push(format!(" AND {table}{column} = ")).push_bind(value);
                }
            }
            if let Some(since) = filter.since {
                q.push(format!(" AND {table}at >= ")).push_bind(micros(since));
            }
            if let Some(until) = filter.until {
                q.push(format!(" AND {table}at < ")).push_bind(micros(until));
            }
        }

        /// Chains and inserts `batch` inside `tx`. Each tenant's head row is locked first
        /// (an UPDATE takes the row lock in PostgreSQL and the write lock in SQLite), in
        /// tenant-id order so that two appenders never wait on each other in a cycle.
        async fn append_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            batch: &[NewEvent],
            at: DateTime<Utc>,
        ) -> Result<Vec<Event>, StoreError> {
            let mut tenants: Vec<TenantId> = batch.iter().map(|e| e.tenant_id).collect();
            tenants.sort_unstable();
            tenants.dedup();
            let mut placed: Vec<Option<Event>> = vec![None; batch.len()];
            for tenant in tenants {
                // One statement creates the tenant's head on its first event and locks it
                // (PostgreSQL: the conflict's update takes the row lock that serialises
                // appenders across replicas), returning where the chain stands.
                let row = ::sqlx::query(
                    "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)
                     ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq
                     RETURNING seq, hash",
                )
                .bind(tenant.to_string())
                .bind(GENESIS_HASH)
                .fetch_one(&mut **tx)
                .await
                .map_err(unavailable)?;
                let mut head = head_of(&row)?;
                let mut chained = Vec::new();
                for (slot, new) in placed.iter_mut().zip(batch).filter(|(_, e)| e.tenant_id == tenant) {
                    let event = Event::chain(&head, new.clone(), at);
                    head = event.head();
                    chained.push(event.clone());
                    *slot = Some(event);
                }
                for chunk in chained.chunks(AUDIT_ROWS_PER_INSERT) {
                    events_insert(chunk)?
                        .build()
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| store_error(e, "audit event"))?;
                }
                ::sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE tenant_id = $3")
                    .bind(seq_param(head.seq)?)
                    .bind(&head.hash)
                    .bind(tenant.to_string())
                    .execute(&mut **tx)
                    .await
                    .map_err(unavailable)?;
            }
            Ok(placed.into_iter().flatten().collect())
        }

        impl $store {
            /// A ledger batch's result, after closing the ledger's connection if the batch
            /// failed for a reason other than a refusal (it may be broken, or left
            /// mid-transaction); the next batch opens another.
            /// Appends a ledger batch on the ledger's writer; `durable`: its commit syncs
            /// (else it is durable once a later [`AuditLog::sync`] returns).
            async fn append_ledger(
                &self,
                batch: &[NewEvent],
                at: DateTime<Utc>,
                durable: bool,
            ) -> Result<Vec<Event>, StoreError> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                let appended = {
                    let mut writer = self.ledger_writer(durable).await?;
                    self.append_events_on(&mut writer, batch, at).await
                };
                self.ledger_outcome(appended).await
            }

            /// Commits a batch of entries on the ledger's writer, as [`Self::append_ledger`].
            async fn commit_ledger(
                &self,
                batch: &[Entry],
                at: DateTime<Utc>,
                durable: bool,
            ) -> Result<Vec<Committed>, StoreError> {
                let committed = {
                    let mut writer = self.ledger_writer(durable).await?;
                    self.commit_entries_on(&mut writer, batch, at).await
                };
                self.ledger_outcome(committed).await
            }

            async fn ledger_outcome<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
                if matches!(result, Err(StoreError::Unavailable(_))) {
                    self.ledger_lost().await;
                }
                result
            }

            fn remembered_head(&self, tenant: TenantId) -> Option<Head> {
                self.heads.get(tenant)
            }

            fn remember_head(&self, tenant: TenantId, head: Option<Head>) {
                self.heads.set(tenant, head);
            }

            /// Remembers where each tenant's chain stands after `events` committed (the
            /// last event of each tenant wins: events are in chain order).
            fn remember_heads(&self, events: &[Event]) {
                let mut remembered: Vec<TenantId> = Vec::new();
                for event in events.iter().rev() {
                    if !remembered.contains(&event.tenant_id) {
                        remembered.push(event.tenant_id);
                        self.remember_head(event.tenant_id, Some(event.head()));
                    }
                }
            }

            /// `batch` chained after the head this process remembers, when that is enough
            /// to append it as one statement: a single tenant whose head is remembered,
            /// and few enough events for one INSERT (see `append_on_head`).
            fn chained_on_remembered(&self, batch: &[NewEvent], at: DateTime<Utc>) -> Option<(TenantId, Vec<Event>)> {
                let first = batch.first()?;
                if batch.len() > AUDIT_ROWS_PER_INSERT || batch.iter().any(|e| e.tenant_id != first.tenant_id) {
                    return None;
                }
                let head = self.remembered_head(first.tenant_id)?;
                Some((first.tenant_id, chain_on(head, batch, at)))
            }

            /// [`append_in`], as one statement inside `tx` when the head is remembered
            /// (see `chained_on_remembered`). If the head moved, that statement changed
            /// nothing and the batch takes `append_in` in the same transaction.
            async fn append_remembered_in(
                &self,
                tx: &mut ::sqlx::Transaction<'_, $db>,
                batch: &[NewEvent],
                at: DateTime<Utc>,
            ) -> Result<Vec<Event>, StoreError> {
                if let Some((tenant, chained)) = self.chained_on_remembered(batch, at) {
                    if append_on_head(&mut **tx, &chained, false).await? {
                        return Ok(chained);
                    }
                    self.remember_head(tenant, None);
                }
                append_in(tx, batch, at).await
            }
        }

        impl $store {
            /// [`AuditLog::append_events`] on the ledger's connection.
            async fn append_events_on(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                batch: &[NewEvent],
                at: DateTime<Utc>,
            ) -> Result<Vec<Event>, StoreError> {
                // The common batch: one tenant, whose head this process remembers, that
                // fits one statement. Appended as that one statement (autocommit: atomic
                // on its own, durable once synced); if the head moved, nothing is written
                // and the batch takes the transaction below.
                if let Some((tenant, chained)) = self.chained_on_remembered(batch, at) {
                    match append_on_head(&mut *conn, &chained, true).await {
                        Ok(true) => {
                            self.remember_heads(&chained);
                            return Ok(chained);
                        }
                        // The head moved: nothing was written.
                        Ok(false) => self.remember_head(tenant, None),
                        // Anything else (I/O, a lost connection) may have written it:
                        // never write the batch a second time; the appenders fail closed.
                        // Nothing is left open on the connection for the next batch (a
                        // lost one is closed by `ledger_outcome`).
                        Err(e) => {
                            self.remember_head(tenant, None);
                            let _ = ::sqlx::query("ROLLBACK").execute(&mut *conn).await;
                            return Err(e);
                        }
                    }
                }
                let mut tx = ::sqlx::Connection::begin(&mut *conn).await.map_err(unavailable)?;
                let events = append_in(&mut tx, batch, at).await?;
                tx.commit().await.map_err(unavailable)?;
                self.remember_heads(&events);
                Ok(events)
            }
        }

        #[async_trait]
        impl AuditLog for $store {
            // Durable when they return: on SQLite the commit itself syncs the WAL
            // (`synchronous=FULL`), with no hand-off to the sync thread.
            async fn append_events(&self, batch: &[NewEvent], at: DateTime<Utc>) -> Result<Vec<Event>, StoreError> {
                self.append_ledger(batch, at, true).await
            }

            async fn commit_entries(&self, batch: &[Entry], at: DateTime<Utc>) -> Result<Vec<Committed>, StoreError> {
                self.commit_ledger(batch, at, true).await
            }

            async fn sync(&self) -> Result<(), StoreError> {
                self.sync_commits().await
            }

            async fn append_events_unsynced(&self, batch: &[NewEvent], at: DateTime<Utc>) -> Result<Vec<Event>, StoreError> {
                self.append_ledger(batch, at, false).await
            }

            async fn commit_entries_unsynced(&self, batch: &[Entry], at: DateTime<Utc>) -> Result<Vec<Committed>, StoreError> {
                self.commit_ledger(batch, at, false).await
            }

            async fn audit_heads(&self) -> Result<Vec<(TenantId, Head)>, StoreError> {
                let rows = ::sqlx::query("SELECT tenant_id, seq, hash FROM audit_heads WHERE seq > 0 ORDER BY tenant_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|row| {
                        let tenant: String = row.try_get("tenant_id").map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        Ok((
                            tenant.parse().map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))?,
                            head_of(row)?,
                        ))
                    })
                    .collect()
            }

            async fn audit_events(
                &self,
                tenant: TenantId,
                filter: &AuditFilter,
                after: Option<u64>,
                limit: u32,
            ) -> Result<Vec<Event>, StoreError> {
                let after = after.unwrap_or(0);
                let indexed: u64 = match ::sqlx::query("SELECT indexed AS seq FROM audit_index_state WHERE tenant_id = $1")
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?
                {
                    Some(row) => seq_column(&row)?,
                    None => 0,
                };
                let mut events = Vec::new();
                // Asked by mandate: the indexed part through audit_mandate_index first.
                let mut scan_from = after;
                if let Some(mandate) = filter.mandate
                    && after < indexed
                {
                    let mut q = ::sqlx::QueryBuilder::<$db>::new(
                        format!("SELECT e.doc FROM audit_mandate_index r JOIN audit_events e ON {EVENT_OF_INDEX_ROW} WHERE r.tenant_id = "),
                    );
                    q.push_bind(tenant.to_string());
                    q.push(" AND r.mandate_id = ").push_bind(mandate.to_string());
                    q.push(" AND r.seq > ").push_bind(seq_param(after)?);
                    q.push(" AND r.seq <= ").push_bind(seq_param(indexed)?);
                    push_audit_filter(&mut q, "e.", &AuditFilter { mandate: None, ..filter.clone() });
                    q.push(" ORDER BY r.seq LIMIT ").push_bind(i64::from(limit));
                    let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
                    for row in &rows {
                        events.push(text_doc(row)?);
                    }
                    scan_from = indexed;
                }
                // The rest: the tail the index has not reached, or everything when no
                // mandate is named.
                let left = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(events.len());
                if left > 0 {
                    let mut q = ::sqlx::QueryBuilder::<$db>::new("SELECT doc FROM audit_events WHERE ");
                    push_events_between(&mut q, tenant, scan_from, None)?;
                    push_audit_filter(&mut q, "", filter);
                    q.push(format!(" ORDER BY {EVENT_ORDER} LIMIT ")).push_bind(i64::try_from(left).unwrap_or(i64::MAX));
                    let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
                    for row in &rows {
                        events.push(text_doc(row)?);
                    }
                }
                Ok(events)
            }

            async fn index_audit(&self, max: u32) -> Result<u64, StoreError> {
                let mut done = 0u64;
                for (tenant, head) in self.audit_heads().await? {
                    let mut writer = self.writer().await?;
                    let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                    ::sqlx::query("INSERT INTO audit_index_state (tenant_id, indexed) VALUES ($1, 0) ON CONFLICT (tenant_id) DO NOTHING")
                        .bind(tenant.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    // Locks this tenant's index state: indexers on other replicas wait.
                    let row = ::sqlx::query("UPDATE audit_index_state SET indexed = indexed WHERE tenant_id = $1 RETURNING indexed AS seq")
                        .bind(tenant.to_string())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    let from = seq_column(&row)?;
                    let upto = head.seq.min(from.saturating_add(u64::from(max)));
                    if upto <= from {
                        continue;
                    }
                    let mut q = ::sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_mandate_index (tenant_id, mandate_id, seq)
                         SELECT tenant_id, mandate_id, seq FROM audit_events WHERE ",
                    );
                    push_events_between(&mut q, tenant, from, Some(upto))?;
                    q.push(" AND mandate_id IS NOT NULL ORDER BY mandate_id, seq");
                    q.build().execute(&mut *tx).await.map_err(unavailable)?;
                    ::sqlx::query("UPDATE audit_index_state SET indexed = $1 WHERE tenant_id = $2")
                        .bind(seq_param(upto)?)
                        .bind(tenant.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                    tx.commit().await.map_err(unavailable)?;
                    done += upto - from;
                }
                Ok(done)
            }

            async fn audit_records(&self, tenant: TenantId, after: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
                let mut q = ::sqlx::QueryBuilder::<$db>::new("SELECT seq, doc FROM audit_events WHERE ");
                push_events_between(&mut q, tenant, after, None)?;
                q.push(format!(" ORDER BY {EVENT_ORDER} LIMIT ")).push_bind(i64::from(limit));
                let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
                records(&rows)
            }

            async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO audit_checkpoints (tenant_id, seq, doc) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, seq) DO NOTHING",
                )
                .bind(checkpoint.tenant_id.to_string())
                .bind(seq_param(checkpoint.seq)?)
                .bind(to_text(checkpoint)?)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(())
            }

            async fn checkpoint_records(&self, tenant: TenantId) -> Result<Vec<StoredRecord>, StoreError> {
                let rows = ::sqlx::query("SELECT seq, doc FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq")
                    .bind(tenant.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                records(&rows)
            }

            async fn add_audit_key(&self, key: &PublicKey) -> Result<(), StoreError> {
                ::sqlx::query("INSERT INTO audit_keys (key_id, doc) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING")
                    .bind(&key.key_id)
                    .bind(to_text(key)?)
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn audit_keys(&self) -> Result<Vec<PublicKey>, StoreError> {
                let rows = ::sqlx::query("SELECT doc FROM audit_keys ORDER BY key_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(text_doc).collect()
            }
        }

        fn grant_row(row: &DbRow) -> Result<Grant, StoreError> {
            let mut grant: Grant = text_doc(row)?;
            let revoked: Option<i64> = row.try_get("revoked_at").map_err(corrupt)?;
            grant.revoked_at = revoked.map(from_micros).transpose()?;
            Ok(grant)
        }

        $crate::directory::sql_directory!($store, $db);
        $crate::grants::sql_grants!($store, $db);
        $crate::entries::sql_entries!($store, $db);
        $crate::calls::sql_calls!($store, $db);
        $crate::vault::sql_vault!($store, $db);
        $crate::connections::sql_connections!($store, $db);
        $crate::accounts::sql_accounts!($store, $db);
        $crate::oauth::sql_oauth!($store, $db);
        $crate::reviews::sql_reviews!($store, $db);

        #[async_trait]
        impl PolicySets for $store {
            async fn put_policy_set(
                &self,
                digest: &str,
                source: &str,
                created_by: &str,
                at: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                let row = ::sqlx::query(
                    "INSERT INTO policy_sets (version, digest, source, created_by, created_at) \
                     SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3, $4 FROM policy_sets \
                     RETURNING version",
                )
                .bind(digest)
                .bind(source)
                .bind(created_by)
                .bind(micros(at))
                .fetch_one(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "policy set version"))?;
                let version: i64 = row.try_get("version").map_err(corrupt)?;
                u64::try_from(version).map_err(|_| StoreError::Corrupt("negative policy set version".into()))
            }

            async fn latest_policy_set(&self) -> Result<Option<StoredPolicySet>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT version, digest, source, created_by, created_at FROM policy_sets \
                     ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let version: i64 = row.try_get("version").map_err(corrupt)?;
                let created_at: i64 = row.try_get("created_at").map_err(corrupt)?;
                Ok(Some(StoredPolicySet {
                    version: u64::try_from(version).map_err(|_| StoreError::Corrupt("negative policy set version".into()))?,
                    digest: row.try_get("digest").map_err(corrupt)?,
                    source: row.try_get("source").map_err(corrupt)?,
                    created_by: row.try_get("created_by").map_err(corrupt)?,
                    created_at: from_micros(created_at)?,
                }))
            }

            async fn policy_set_version(&self) -> Result<u64, StoreError> {
                let row = ::sqlx::query("SELECT COALESCE(MAX(version), 0) AS version FROM policy_sets")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let version: i64 = row.try_get("version").map_err(corrupt)?;
                u64::try_from(version).map_err(|_| StoreError::Corrupt("negative policy set version".into()))
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                ::sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
                self.check_writer().await
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            fn shared(&self) -> bool {
                SHARED
            }
        }
    };
}

pub(crate) use sql_store;
