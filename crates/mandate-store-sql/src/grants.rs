//! The token service's tables: grants (issued credentials) and their revocation,
//! client-assertion `jti`s, and the published token-signing keys. Expanded inside
//! `sql_store!`, so it uses that expansion's helpers (`unavailable`, `micros`, …).

macro_rules! sql_grants {
    ($store:ty, $db:ty) => {
        /// Writes `grant` inside `tx` after checking, in the same transaction, what it
        /// depends on (see [`Grants::insert_grant`]); a refusal writes nothing.
        async fn grant_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            grant: &Grant,
        ) -> Result<Result<(), Refusal>, StoreError> {
            // The mandate first (the order a mandate's final-state update locks in:
            // the mandate, then its grants): it must be live, checked in this
            // transaction, serialised against the update that ends it, which revokes
            // every grant committed before it.
            if let Some(mandate) = grant.mandate_id {
                let live = ::sqlx::query(LIVE_MANDATE)
                    .bind(mandate.to_string())
                    .bind(grant.tenant_id.to_string())
                    .bind(micros(grant.issued_at))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(unavailable)?;
                if live.is_none() {
                    return Ok(Err(Refusal::Missing { what: "live mandate".into() }));
                }
            }
            if let Some(parent) = &grant.parent_jti {
                // Locks the parent (so a concurrent revocation waits for us, or we
                // for it) and checks that it is live, in one statement.
                let live = ::sqlx::query(
                    "UPDATE grants SET revoked_at = revoked_at
                     WHERE jti = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING jti",
                )
                .bind(parent)
                .bind(grant.tenant_id.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(unavailable)?;
                if live.is_none() {
                    return Ok(Err(Refusal::Missing { what: "live parent grant".into() }));
                }
            }
            ::sqlx::query(
                "INSERT INTO grants (jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&grant.jti)
            .bind(grant.tenant_id.to_string())
            .bind(grant.mandate_id.map(|m| m.to_string()))
            .bind(grant.agent_id.to_string())
            .bind(grant.parent_jti.as_deref())
            .bind(micros(grant.expires_at))
            .bind(grant.revoked_at.map(micros))
            .bind(to_text(grant)?)
            .execute(&mut **tx)
            .await
            .map_err(|e| store_error(e, "grant"))?;
            Ok(Ok(()))
        }

        /// Records one use of an assertion inside `tx`; `false` when it was used before
        /// (the table's key decides, so one of concurrent uses wins on any replica).
        async fn claim_jti_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            used: &UsedAssertion,
        ) -> Result<bool, StoreError> {
            let done = ::sqlx::query(
                "INSERT INTO used_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (issuer, jti) DO NOTHING",
            )
            .bind(&used.issuer)
            .bind(&used.jti)
            .bind(micros(used.expires_at))
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        }

        /// Forgets assertions that expired before `now` (they can no longer be replayed).
        async fn purge_jtis(tx: &mut ::sqlx::Transaction<'_, $db>, now: DateTime<Utc>) -> Result<(), StoreError> {
            ::sqlx::query("DELETE FROM used_jtis WHERE expires_at < $1")
                .bind(micros(now))
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
            Ok(())
        }

        #[async_trait]
        impl Grants for $store {
            async fn insert_grant(&self, grant: &Grant) -> Result<(), StoreError> {
                let mut tx = self.writer().begin().await.map_err(unavailable)?;
                grant_in(&mut tx, grant).await??;
                tx.commit().await.map_err(unavailable)
            }

            async fn grant(&self, tenant: TenantId, jti: &str) -> Result<Option<Grant>, StoreError> {
                let row = ::sqlx::query("SELECT doc, revoked_at FROM grants WHERE jti = $1 AND tenant_id = $2")
                    .bind(jti)
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(grant_row).transpose()
            }

            async fn revoke_grant_tree(&self, tenant: TenantId, jti: &str, at: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
                let mut tx = self.writer().begin().await.map_err(unavailable)?;
                let mut revoked = Vec::new();
                // The root first: from here on no child can be added under it.
                let root = ::sqlx::query(
                    "UPDATE grants SET revoked_at = COALESCE(revoked_at, $1)
                     WHERE jti = $2 AND tenant_id = $3 RETURNING jti, revoked_at",
                )
                .bind(micros(at))
                .bind(jti)
                .bind(tenant.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
                let Some(root) = root else {
                    return Err(StoreError::Missing { what: "grant".into() });
                };
                let root_at: i64 = root.try_get("revoked_at").map_err(corrupt)?;
                if root_at == micros(at) {
                    revoked.push(jti.to_owned());
                }
                // Then the descendants, statement after statement, until a pass finds
                // none left: each pass sees children committed before it began, and a
                // child being added waits on its parent's row, which we now hold.
                loop {
                    let rows = ::sqlx::query(
                        "WITH RECURSIVE tree (jti) AS (
                             SELECT jti FROM grants WHERE jti = $1 AND tenant_id = $2
                             UNION
                             SELECT g.jti FROM grants g JOIN tree t ON g.parent_jti = t.jti
                         )
                         UPDATE grants SET revoked_at = $3
                         WHERE jti IN (SELECT jti FROM tree) AND revoked_at IS NULL
                         RETURNING jti",
                    )
                    .bind(jti)
                    .bind(tenant.to_string())
                    .bind(micros(at))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    if rows.is_empty() {
                        break;
                    }
                    for row in rows {
                        revoked.push(row.try_get("jti").map_err(corrupt)?);
                    }
                }
                if let Some(notify) = NOTIFY_REVOKED {
                    ::sqlx::query(notify).execute(&mut *tx).await.map_err(unavailable)?;
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(revoked)
            }

            async fn revoked_since(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT jti, revoked_at FROM grants WHERE revoked_at >= $1 ORDER BY revoked_at, jti LIMIT $2",
                )
                .bind(micros(since))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter()
                    .map(|row| {
                        let at: i64 = row.try_get("revoked_at").map_err(corrupt)?;
                        Ok((row.try_get("jti").map_err(corrupt)?, from_micros(at)?))
                    })
                    .collect()
            }

            async fn claim_jti(&self, issuer: &str, jti: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool, StoreError> {
                let mut tx = self.writer().begin().await.map_err(unavailable)?;
                purge_jtis(&mut tx, now).await?;
                let used = UsedAssertion { issuer: issuer.to_owned(), jti: jti.to_owned(), expires_at };
                let fresh = claim_jti_in(&mut tx, &used).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(fresh)
            }

            async fn publish_token_key(&self, key: &TokenKey) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO token_keys (kid, jwk, created_at, retire_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (kid) DO NOTHING",
                )
                .bind(&key.kid)
                .bind(&key.jwk)
                .bind(micros(key.created_at))
                .bind(key.retire_at.map(micros))
                .execute(self.writer())
                .await
                .map_err(unavailable)?;
                Ok(())
            }

            async fn retire_token_key(&self, kid: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
                ::sqlx::query("UPDATE token_keys SET retire_at = $1 WHERE kid = $2")
                    .bind(micros(at))
                    .bind(kid)
                    .execute(self.writer())
                    .await
                    .map_err(unavailable)?;
                Ok(())
            }

            async fn token_keys(&self, now: DateTime<Utc>) -> Result<Vec<TokenKey>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT kid, jwk, created_at, retire_at FROM token_keys
                     WHERE retire_at IS NULL OR retire_at > $1 ORDER BY created_at, kid",
                )
                .bind(micros(now))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter()
                    .map(|row| {
                        let created: i64 = row.try_get("created_at").map_err(corrupt)?;
                        let retire: Option<i64> = row.try_get("retire_at").map_err(corrupt)?;
                        Ok(TokenKey {
                            kid: row.try_get("kid").map_err(corrupt)?,
                            jwk: row.try_get("jwk").map_err(corrupt)?,
                            created_at: from_micros(created)?,
                            retire_at: retire.map(from_micros).transpose()?,
                        })
                    })
                    .collect()
            }

            async fn revocation_feed(&self) -> Result<Option<Box<dyn ::mandate_store::RevocationFeed>>, StoreError> {
                self.listen_revocations().await
            }
        }

    };
}

pub(crate) use sql_grants;
