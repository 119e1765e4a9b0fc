//! The console's tables: accounts (Argon2id hashes) and sessions (cookie hashes).
//! Expanded inside `sql_store!`, so it uses that expansion's helpers.

macro_rules! sql_accounts {
    ($store:ty, $db:ty) => {
        fn account_row(row: &DbRow) -> Result<::mandate_store::Account, StoreError> {
            let tenant: String = row.try_get("tenant_id").map_err(corrupt)?;
            let human: String = row.try_get("human_id").map_err(corrupt)?;
            let failed: i64 = row.try_get("failed_attempts").map_err(corrupt)?;
            let locked: Option<i64> = row.try_get("locked_until").map_err(corrupt)?;
            let updated: i64 = row.try_get("updated_at").map_err(corrupt)?;
            let id_error = |e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string());
            Ok(::mandate_store::Account {
                tenant_id: tenant.parse().map_err(id_error)?,
                human_id: human.parse().map_err(id_error)?,
                login: row.try_get("login").map_err(corrupt)?,
                password_hash: row.try_get("password_hash").map_err(corrupt)?,
                failed_attempts: u32::try_from(failed.max(0)).unwrap_or(u32::MAX),
                locked_until: locked.map(from_micros).transpose()?,
                updated_at: from_micros(updated)?,
            })
        }

        fn session_row(row: &DbRow) -> Result<::mandate_store::ConsoleSession, StoreError> {
            let tenant: String = row.try_get("tenant_id").map_err(corrupt)?;
            let human: String = row.try_get("human_id").map_err(corrupt)?;
            let created: i64 = row.try_get("created_at").map_err(corrupt)?;
            let expires: i64 = row.try_get("expires_at").map_err(corrupt)?;
            let id_error = |e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string());
            Ok(::mandate_store::ConsoleSession {
                id_hash: row.try_get("id_hash").map_err(corrupt)?,
                tenant_id: tenant.parse().map_err(id_error)?,
                human_id: human.parse().map_err(id_error)?,
                csrf: row.try_get("csrf").map_err(corrupt)?,
                created_at: from_micros(created)?,
                expires_at: from_micros(expires)?,
            })
        }

        const ACCOUNT_COLUMNS: &str =
            "human_id, tenant_id, login, password_hash, failed_attempts, locked_until, updated_at";

        #[async_trait]
        impl ::mandate_store::Accounts for $store {
            async fn put_account(
                &self,
                account: &::mandate_store::Account,
            ) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO console_accounts
                         (human_id, tenant_id, login, password_hash, failed_attempts, locked_until, updated_at)
                     VALUES ($1, $2, $3, $4, 0, NULL, $5)
                     ON CONFLICT (human_id) DO UPDATE
                     SET login = excluded.login, password_hash = excluded.password_hash,
                         failed_attempts = 0, locked_until = NULL, updated_at = excluded.updated_at",
                )
                .bind(account.human_id.to_string())
                .bind(account.tenant_id.to_string())
                .bind(&account.login)
                .bind(&account.password_hash)
                .bind(micros(account.updated_at))
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "sign-in name"))?;
                Ok(())
            }

            async fn account_by_login(
                &self,
                login: &str,
            ) -> Result<Option<::mandate_store::Account>, StoreError> {
                let row = ::sqlx::query(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM console_accounts WHERE login = $1"
                ))
                .bind(login)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(account_row).transpose()
            }

            async fn sign_in_failed(
                &self,
                human: HumanId,
                lock_after: u32,
                lock_until: DateTime<Utc>,
            ) -> Result<Option<::mandate_store::Account>, StoreError> {
                // One statement, so that concurrent failures each count.
                let row = ::sqlx::query(&format!(
                    "UPDATE console_accounts
                     SET failed_attempts = failed_attempts + 1,
                         locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE locked_until END
                     WHERE human_id = $1
                     RETURNING {ACCOUNT_COLUMNS}"
                ))
                .bind(human.to_string())
                .bind(i64::from(lock_after))
                .bind(micros(lock_until))
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(account_row).transpose()
            }

            async fn sign_in_succeeded(&self, human: HumanId) -> Result<(), StoreError> {
                ::sqlx::query(
                    "UPDATE console_accounts SET failed_attempts = 0, locked_until = NULL
                     WHERE human_id = $1 AND (failed_attempts <> 0 OR locked_until IS NOT NULL)",
                )
                .bind(human.to_string())
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(())
            }

            async fn create_session(
                &self,
                session: &::mandate_store::ConsoleSession,
            ) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO console_sessions (id_hash, tenant_id, human_id, csrf, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&session.id_hash)
                .bind(session.tenant_id.to_string())
                .bind(session.human_id.to_string())
                .bind(&session.csrf)
                .bind(micros(session.created_at))
                .bind(micros(session.expires_at))
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "session"))?;
                Ok(())
            }

            async fn session(
                &self,
                id_hash: &str,
                now: DateTime<Utc>,
            ) -> Result<Option<::mandate_store::ConsoleSession>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT id_hash, tenant_id, human_id, csrf, created_at, expires_at
                     FROM console_sessions WHERE id_hash = $1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(micros(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(session_row).transpose()
            }

            async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
                ::sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn delete_sessions_of(&self, human: HumanId) -> Result<u64, StoreError> {
                let done = ::sqlx::query("DELETE FROM console_sessions WHERE human_id = $1")
                    .bind(human.to_string())
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(done.rows_affected())
            }

            async fn count_attempt(
                &self,
                key_hash: &str,
                at: DateTime<Utc>,
                window: ::chrono::Duration,
            ) -> Result<u64, StoreError> {
                // Both backends evaluate every SET expression against the row as it was.
                let attempts: i64 = ::sqlx::query_scalar(
                    "INSERT INTO attempt_windows (key_hash, started_at, attempts) VALUES ($1, $2, 1)
                     ON CONFLICT (key_hash) DO UPDATE SET
                         attempts = CASE WHEN attempt_windows.started_at <= $3
                                         THEN 1 ELSE attempt_windows.attempts + 1 END,
                         started_at = CASE WHEN attempt_windows.started_at <= $3
                                           THEN excluded.started_at ELSE attempt_windows.started_at END
                     RETURNING attempts",
                )
                .bind(key_hash)
                .bind(micros(at))
                .bind(micros(at - window))
                .fetch_one(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(u64::try_from(attempts).unwrap_or(0))
            }

            async fn forget_attempts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let done = ::sqlx::query("DELETE FROM attempt_windows WHERE started_at < $1")
                    .bind(micros(before))
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use sql_accounts;
