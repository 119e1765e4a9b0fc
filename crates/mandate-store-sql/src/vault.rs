//! The vault's table: sealed secrets by (tenant, name), opaque to the store. Expanded
//! inside `sql_store!`, so it uses that expansion's helpers (`unavailable`, `micros`, …).

macro_rules! sql_vault {
    ($store:ty, $db:ty) => {
        fn stored_secret(row: &DbRow) -> Result<::mandate_store::StoredSecret, StoreError> {
            let tenant: String = row.try_get("tenant_id").map_err(corrupt)?;
            let created: i64 = row.try_get("created_at").map_err(corrupt)?;
            let updated: i64 = row.try_get("updated_at").map_err(corrupt)?;
            Ok(::mandate_store::StoredSecret {
                tenant_id: tenant
                    .parse()
                    .map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))?,
                name: row.try_get("name").map_err(corrupt)?,
                sealed: row.try_get("sealed").map_err(corrupt)?,
                key_id: row.try_get("key_id").map_err(corrupt)?,
                created_at: from_micros(created)?,
                updated_at: from_micros(updated)?,
            })
        }

        #[async_trait]
        impl ::mandate_store::Vault for $store {
            async fn put_secret(
                &self,
                tenant: TenantId,
                name: &str,
                sealed: &str,
                key_id: &str,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO vault_secrets (tenant_id, name, sealed, key_id, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (tenant_id, name) DO UPDATE
                     SET sealed = excluded.sealed, key_id = excluded.key_id, updated_at = excluded.updated_at",
                )
                .bind(tenant.to_string())
                .bind(name)
                .bind(sealed)
                .bind(key_id)
                .bind(micros(at))
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "secret"))?;
                Ok(())
            }

            async fn secret(
                &self,
                tenant: TenantId,
                name: &str,
            ) -> Result<Option<::mandate_store::StoredSecret>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT tenant_id, name, sealed, key_id, created_at, updated_at
                     FROM vault_secrets WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(stored_secret).transpose()
            }

            async fn list_secrets(
                &self,
                tenant: TenantId,
            ) -> Result<Vec<::mandate_store::SecretMeta>, StoreError> {
                // The sealed form is not even read: a listing cannot leak it.
                let rows = ::sqlx::query(
                    "SELECT tenant_id, name, '' AS sealed, key_id, created_at, updated_at
                     FROM vault_secrets WHERE tenant_id = $1 ORDER BY name",
                )
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter()
                    .map(|row| stored_secret(row).map(::mandate_store::SecretMeta::from))
                    .collect()
            }

            async fn delete_secret(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
                let done = ::sqlx::query("DELETE FROM vault_secrets WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.to_string())
                    .bind(name)
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(done.rows_affected() == 1)
            }

            async fn sealed_secrets_page(
                &self,
                after: Option<&::mandate_store::SecretCursor>,
                limit: u32,
            ) -> Result<Vec<::mandate_store::StoredSecret>, StoreError> {
                let (tenant, name) = after
                    .map(|c| (c.tenant_id.to_string(), c.name.clone()))
                    .unwrap_or_default();
                // ('', '') sorts before every row: tenant ids are never empty.
                let rows = ::sqlx::query(
                    "SELECT tenant_id, name, sealed, key_id, created_at, updated_at
                     FROM vault_secrets
                     WHERE tenant_id > $1 OR (tenant_id = $1 AND name > $2)
                     ORDER BY tenant_id, name LIMIT $3",
                )
                .bind(tenant)
                .bind(name)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter().map(stored_secret).collect()
            }

            async fn replace_sealed(
                &self,
                tenant: TenantId,
                name: &str,
                old: &str,
                new: &str,
                new_key_id: &str,
            ) -> Result<bool, StoreError> {
                let done = ::sqlx::query(
                    "UPDATE vault_secrets SET sealed = $1, key_id = $2
                     WHERE tenant_id = $3 AND name = $4 AND sealed = $5",
                )
                .bind(new)
                .bind(new_key_id)
                .bind(tenant.to_string())
                .bind(name)
                .bind(old)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use sql_vault;
