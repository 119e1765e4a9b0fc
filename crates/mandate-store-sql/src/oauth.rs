//! The OAuth authorization server's tables: clients, the agent of each (client, human),
//! and once-only records. Expanded inside `sql_store!`, so it uses that expansion's
//! helpers (`unavailable`, `micros`, …).

macro_rules! sql_oauth {
    ($store:ty, $db:ty) => {
        /// Marks a once-only record used inside `tx`: `true` for the one conditional write
        /// that found it unused and unexpired at `now`.
        async fn use_once_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            kind: ::mandate_store::OnceKind,
            key_hash: &str,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let done = ::sqlx::query(
                "UPDATE oauth_once SET used_at = $1
                 WHERE kind = $2 AND key_hash = $3 AND used_at IS NULL AND expires_at > $1",
            )
            .bind(micros(now))
            .bind(kind.as_str())
            .bind(key_hash)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        }

        /// Stores a new, unused once-only record inside `tx`.
        async fn insert_once_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            record: &::mandate_store::OnceRecord,
        ) -> Result<(), StoreError> {
            ::sqlx::query(
                "INSERT INTO oauth_once (kind, key_hash, tenant_id, data, expires_at, used_at)
                 VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(record.kind.as_str())
            .bind(&record.key_hash)
            .bind(record.tenant_id.to_string())
            .bind(&record.data)
            .bind(micros(record.expires_at))
            .execute(&mut **tx)
            .await
            .map_err(|e| store_error(e, "once-only record"))?;
            Ok(())
        }

        /// Deletes the once-only records of `kind` that expired before `before`. Per
        /// kind: the kinds live from a minute (codes) to a month (refresh tokens).
        async fn purge_once_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            kind: ::mandate_store::OnceKind,
            before: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            ::sqlx::query("DELETE FROM oauth_once WHERE kind = $1 AND expires_at < $2")
                .bind(kind.as_str())
                .bind(micros(before))
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
            Ok(())
        }

        fn oauth_client_row(row: &DbRow) -> Result<::mandate_store::OAuthClientRecord, StoreError> {
            let tenant: String = row.try_get("tenant_id").map_err(corrupt)?;
            let created: i64 = row.try_get("created_at").map_err(corrupt)?;
            Ok(::mandate_store::OAuthClientRecord {
                client_id: row.try_get("client_id").map_err(corrupt)?,
                tenant_id: tenant
                    .parse()
                    .map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))?,
                metadata: row.try_get("metadata").map_err(corrupt)?,
                created_at: from_micros(created)?,
            })
        }

        fn once_row(
            kind: ::mandate_store::OnceKind,
            row: &DbRow,
        ) -> Result<::mandate_store::OnceRecord, StoreError> {
            let tenant: String = row.try_get("tenant_id").map_err(corrupt)?;
            let expires: i64 = row.try_get("expires_at").map_err(corrupt)?;
            let used: Option<i64> = row.try_get("used_at").map_err(corrupt)?;
            Ok(::mandate_store::OnceRecord {
                kind,
                key_hash: row.try_get("key_hash").map_err(corrupt)?,
                tenant_id: tenant
                    .parse()
                    .map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))?,
                data: row.try_get("data").map_err(corrupt)?,
                expires_at: from_micros(expires)?,
                used_at: used.map(from_micros).transpose()?,
            })
        }

        #[async_trait]
        impl ::mandate_store::OAuthClients for $store {
            async fn register_oauth_client(
                &self,
                client: &::mandate_store::OAuthClientRecord,
            ) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO oauth_clients (client_id, tenant_id, metadata, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&client.client_id)
                .bind(client.tenant_id.to_string())
                .bind(&client.metadata)
                .bind(micros(client.created_at))
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "OAuth client"))?;
                Ok(())
            }

            async fn oauth_client(
                &self,
                client_id: &str,
            ) -> Result<Option<::mandate_store::OAuthClientRecord>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT client_id, tenant_id, metadata, created_at FROM oauth_clients
                     WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(oauth_client_row).transpose()
            }

            async fn oauth_client_agent(
                &self,
                tenant: TenantId,
                client_id: &str,
                human: HumanId,
            ) -> Result<Option<AgentId>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT agent_id FROM oauth_client_agents
                     WHERE tenant_id = $1 AND client_id = $2 AND human_id = $3",
                )
                .bind(tenant.to_string())
                .bind(client_id)
                .bind(human.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                let Some(row) = row else { return Ok(None) };
                let agent: String = row.try_get("agent_id").map_err(corrupt)?;
                agent
                    .parse()
                    .map(Some)
                    .map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))
            }

            async fn bind_oauth_client_agent(
                &self,
                tenant: TenantId,
                client_id: &str,
                human: HumanId,
                agent: AgentId,
            ) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO oauth_client_agents (tenant_id, client_id, human_id, agent_id)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant.to_string())
                .bind(client_id)
                .bind(human.to_string())
                .bind(agent.to_string())
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "OAuth client agent"))?;
                Ok(())
            }

            async fn put_once(
                &self,
                record: &::mandate_store::OnceRecord,
            ) -> Result<(), StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer)
                    .await
                    .map_err(unavailable)?;
                purge_once_in(
                    &mut tx,
                    record.kind,
                    record.expires_at - ::chrono::Duration::days(1),
                )
                .await?;
                insert_once_in(&mut tx, record).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(())
            }

            async fn once(
                &self,
                kind: ::mandate_store::OnceKind,
                key_hash: &str,
            ) -> Result<Option<::mandate_store::OnceRecord>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT key_hash, tenant_id, data, expires_at, used_at FROM oauth_once
                     WHERE kind = $1 AND key_hash = $2",
                )
                .bind(kind.as_str())
                .bind(key_hash)
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(|r| once_row(kind, r)).transpose()
            }

            async fn use_once(
                &self,
                kind: ::mandate_store::OnceKind,
                key_hash: &str,
                now: DateTime<Utc>,
            ) -> Result<Option<(::mandate_store::OnceRecord, bool)>, StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer)
                    .await
                    .map_err(unavailable)?;
                let first = use_once_in(&mut tx, kind, key_hash, now).await?;
                tx.commit().await.map_err(unavailable)?;
                // `once` reads on the writer too: let it go first.
                drop(writer);
                let record = self.once(kind, key_hash).await?;
                Ok(record.map(|r| (r, first)))
            }
        }
    };
}

pub(crate) use sql_oauth;
