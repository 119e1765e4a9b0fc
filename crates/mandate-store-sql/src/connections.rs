//! People's connections to upstream tool servers, opaque sealed tokens by (tenant,
//! person, server). Expanded inside `sql_store!`, so it uses that expansion's helpers
//! (`unavailable`, `micros`, …).

macro_rules! sql_connections {
    ($store:ty, $db:ty) => {
        fn stored_connection(
            row: &DbRow,
        ) -> Result<::mandate_store::StoredConnection, StoreError> {
            let text = |column: &str| -> Result<String, StoreError> {
                row.try_get(column).map_err(corrupt)
            };
            let id = |e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string());
            Ok(::mandate_store::StoredConnection {
                tenant_id: text("tenant_id")?.parse().map_err(id)?,
                human_id: text("human_id")?.parse().map_err(id)?,
                server_id: text("server_id")?.parse().map_err(id)?,
                provider: text("provider")?,
                scope: text("scope")?,
                sealed: text("sealed")?,
                key_id: text("key_id")?,
                connected_at: from_micros(row.try_get("connected_at").map_err(corrupt)?)?,
                updated_at: from_micros(row.try_get("updated_at").map_err(corrupt)?)?,
            })
        }

        #[async_trait]
        impl ::mandate_store::Connections for $store {
            async fn put_connection(
                &self,
                c: &::mandate_store::StoredConnection,
            ) -> Result<(), StoreError> {
                // The person and the server must be of the connection's tenant.
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                let owned = ::sqlx::query(
                    "SELECT 1 FROM humans h JOIN tool_servers s ON s.tenant_id = h.tenant_id
                     WHERE h.id = $1 AND s.id = $2 AND h.tenant_id = $3",
                )
                .bind(c.human_id.to_string())
                .bind(c.server_id.to_string())
                .bind(c.tenant_id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
                if owned.is_none() {
                    return Err(StoreError::Missing {
                        what: "the person or tool server of this connection".into(),
                    });
                }
                ::sqlx::query(
                    "INSERT INTO upstream_connections (tenant_id, human_id, server_id, provider,
                         scope, sealed, key_id, connected_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant_id, human_id, server_id) DO UPDATE
                     SET provider = excluded.provider, scope = excluded.scope,
                         sealed = excluded.sealed, key_id = excluded.key_id,
                         connected_at = excluded.connected_at, updated_at = excluded.updated_at",
                )
                .bind(c.tenant_id.to_string())
                .bind(c.human_id.to_string())
                .bind(c.server_id.to_string())
                .bind(&c.provider)
                .bind(&c.scope)
                .bind(&c.sealed)
                .bind(&c.key_id)
                .bind(micros(c.connected_at))
                .bind(micros(c.updated_at))
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "connection"))?;
                tx.commit().await.map_err(unavailable)?;
                Ok(())
            }

            async fn connection(
                &self,
                tenant: TenantId,
                human: HumanId,
                server: ToolServerId,
            ) -> Result<Option<::mandate_store::StoredConnection>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT * FROM upstream_connections
                     WHERE tenant_id = $1 AND human_id = $2 AND server_id = $3",
                )
                .bind(tenant.to_string())
                .bind(human.to_string())
                .bind(server.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(stored_connection).transpose()
            }

            async fn list_connections(
                &self,
                tenant: TenantId,
                human: HumanId,
            ) -> Result<Vec<::mandate_store::ConnectionMeta>, StoreError> {
                // The sealed form is not even read: a listing cannot leak it.
                let rows = ::sqlx::query(
                    "SELECT tenant_id, human_id, server_id, provider, scope, '' AS sealed,
                         key_id, connected_at, updated_at
                     FROM upstream_connections WHERE tenant_id = $1 AND human_id = $2
                     ORDER BY server_id",
                )
                .bind(tenant.to_string())
                .bind(human.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter()
                    .map(|row| stored_connection(row).map(::mandate_store::ConnectionMeta::from))
                    .collect()
            }

            async fn delete_connection(
                &self,
                tenant: TenantId,
                human: HumanId,
                server: ToolServerId,
            ) -> Result<Option<::mandate_store::StoredConnection>, StoreError> {
                let row = ::sqlx::query(
                    "DELETE FROM upstream_connections
                     WHERE tenant_id = $1 AND human_id = $2 AND server_id = $3
                     RETURNING *",
                )
                .bind(tenant.to_string())
                .bind(human.to_string())
                .bind(server.to_string())
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(stored_connection).transpose()
            }

            async fn replace_connection_sealed(
                &self,
                current: &::mandate_store::StoredConnection,
                new: &str,
                new_key_id: &str,
                at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let done = ::sqlx::query(
                    "UPDATE upstream_connections SET sealed = $1, key_id = $2, updated_at = $3
                     WHERE tenant_id = $4 AND human_id = $5 AND server_id = $6 AND sealed = $7",
                )
                .bind(new)
                .bind(new_key_id)
                .bind(micros(at))
                .bind(current.tenant_id.to_string())
                .bind(current.human_id.to_string())
                .bind(current.server_id.to_string())
                .bind(&current.sealed)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use sql_connections;
