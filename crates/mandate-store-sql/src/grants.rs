//! The token service's tables: grants (issued credentials) and their revocation,
//! client-assertion `jti`s, and the published token-signing keys. Expanded inside
//! `sql_store!`, so it uses that expansion's helpers (`unavailable`, `micros`, …).

macro_rules! sql_grants {
    ($store:ty, $db:ty) => {
        /// Writes `grants` inside `tx` after checking, in the same transaction, what each
        /// depends on (see [`Grants::insert_grant`]): one statement per step whatever their
        /// number. Returns, per grant, `None` when it was written or why it was refused (a
        /// refused grant is not written; the others are).
        async fn grants_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            grants: &[&Grant],
        ) -> Result<Vec<Option<Refusal>>, StoreError> {
            let mut refused: Vec<Option<Refusal>> = vec![None; grants.len()];
            // The mandates first (the order a mandate's final-state update locks in: the
            // mandate, then its grants): each must be live, checked in this transaction,
            // serialised against the update that ends it, which revokes every grant
            // committed before it.
            let mut mandates: Vec<String> = grants.iter().filter_map(|g| g.mandate_id.map(|m| m.to_string())).collect();
            mandates.sort_unstable();
            mandates.dedup();
            let mut live = LiveMandates::default();
            if !mandates.is_empty() {
                let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                push_live_mandates(&mut q, &mandates);
                for row in q.build().fetch_all(&mut **tx).await.map_err(unavailable)? {
                    live.read(&row)?;
                }
            }
            for (slot, grant) in refused.iter_mut().zip(grants) {
                if let Some(why) = live.refusal(grant) {
                    *slot = Some(why);
                }
            }
            // Then the parents: checked live in one statement, serialised against a
            // concurrent revocation of them (see `LIVE_PARENTS` of each backend).
            let mut parents: Vec<&str> = grants
                .iter()
                .zip(&refused)
                .filter(|(_, r)| r.is_none())
                .filter_map(|(g, _)| g.parent_jti.as_deref())
                .collect();
            parents.sort_unstable();
            parents.dedup();
            let mut live_parents = Pairs::default();
            if !parents.is_empty() {
                let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                push_live_parents(&mut q, &parents);
                for row in q.build().fetch_all(&mut **tx).await.map_err(unavailable)? {
                    live_parents.read(&row, LIVE_PARENT)?;
                }
            }
            for (slot, grant) in refused.iter_mut().zip(grants) {
                if slot.is_none() {
                    *slot = live_parents.parent_refusal(grant);
                }
            }
            let written: Vec<&Grant> = grants.iter().zip(&refused).filter(|(_, r)| r.is_none()).map(|(g, _)| *g).collect();
            for chunk in written.chunks(GRANT_ROWS_PER_INSERT) {
                let mut insert = ::sqlx::QueryBuilder::<$db>::new("");
                push_grants_insert(&mut insert, chunk)?;
                insert.build().execute(&mut **tx).await.map_err(|e| store_error(e, "grant"))?;
            }
            Ok(refused)
        }

        /// `INSERT INTO grants …` of `chunk` (at most `GRANT_ROWS_PER_INSERT`), pushed onto `q`.
        fn push_grants_insert(q: &mut ::sqlx::QueryBuilder<'static, $db>, chunk: &[&Grant]) -> Result<(), StoreError> {
            q.push(format!("{INSERT_ROWS} grants {GRANT_COLUMNS} "));
            push_grant_values(q, chunk)
        }

        /// The columns of a grant's row, in the order of [`push_grant_values`].
        const GRANT_COLUMNS: &str = "(jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc)";

        /// `VALUES (…), (…)` of grants, pushed onto `q`.
        fn push_grant_values(q: &mut ::sqlx::QueryBuilder<'static, $db>, chunk: &[&Grant]) -> Result<(), StoreError> {
            let mut rows = Vec::with_capacity(chunk.len());
            for g in chunk {
                rows.push((*g, to_text(*g)?));
            }
            q.push_values(rows, |mut b, (g, doc)| {
                b.push_bind(g.jti.clone())
                    .push_bind(g.tenant_id.to_string())
                    .push_bind(g.mandate_id.map(|m| m.to_string()))
                    .push_bind(g.agent_id.to_string())
                    .push_bind(g.parent_jti.clone())
                    .push_bind(micros(g.expires_at))
                    .push_bind(g.revoked_at.map(micros))
                    .push_bind(doc);
            });
            Ok(())
        }

        /// The read of the mandates new grants depend on, pushed onto `q`; each row is
        /// read by [`LiveMandates::read`]. The status is compared there, not in SQL:
        /// SQLite's planner, without statistics, preferred the index on status (every
        /// active mandate) to the list of keys.
        fn push_live_mandates(q: &mut ::sqlx::QueryBuilder<'static, $db>, ids: &[String]) {
            push_live_mandates_after(q, ids, "");
        }

        /// [`push_live_mandates`], whose rows are read (and on PostgreSQL locked) only
        /// once `after` holds: a condition that reads a common table expression of the
        /// statement makes that one run first.
        fn push_live_mandates_after(q: &mut ::sqlx::QueryBuilder<'static, $db>, ids: &[String], after: &str) {
            q.push("SELECT id, tenant_id, expires_at, status FROM mandates WHERE id IN (");
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(id.clone());
            }
            q.push(")").push(after).push(LOCK_LIVE_MANDATES);
        }

        /// The check that `jtis` (parents of new grants) are live, pushed onto `q`; each
        /// row is read as [`LIVE_PARENT`].
        fn push_live_parents(q: &mut ::sqlx::QueryBuilder<'static, $db>, jtis: &[&str]) {
            q.push(LIVE_PARENTS.0);
            let mut ids = q.separated(", ");
            for jti in jtis {
                ids.push_bind(jti.to_string());
            }
            q.push(LIVE_PARENTS.1);
        }

        /// Pairs of text columns read from rows: the claims [`push_jti_claims`] recorded
        /// for the first time ([`CLAIMED`]), the live grants among the parents checked
        /// ([`LIVE_PARENT`]).
        #[derive(Default)]
        struct Pairs(::std::collections::HashSet<(String, String)>);

        const CLAIMED: (&str, &str) = ("issuer", "jti");
        const LIVE_PARENT: (&str, &str) = ("jti", "tenant_id");

        impl Pairs {
            fn read(&mut self, row: &DbRow, (first, second): (&str, &str)) -> Result<(), StoreError> {
                self.0.insert((row.try_get(first).map_err(corrupt)?, row.try_get(second).map_err(corrupt)?));
                Ok(())
            }

            /// Claims read: per assertion of `used`, whether this was its first use.
            /// `remove`: a second use of one assertion within `used` is a replay too.
            fn fresh(mut self, used: &[&UsedAssertion]) -> Vec<bool> {
                used.iter().map(|u| self.0.remove(&(u.issuer.clone(), u.jti.clone()))).collect()
            }

            /// Live parents read: why `grant` may not be written (its parent is not live,
            /// or not its tenant's).
            fn parent_refusal(&self, grant: &Grant) -> Option<Refusal> {
                let parent = grant.parent_jti.as_ref()?;
                (!self.0.contains(&(parent.clone(), grant.tenant_id.to_string())))
                    .then(|| Refusal::Missing { what: "live parent grant".into() })
            }
        }

        /// The active mandates among those read (id, tenant) and when each ends (micros).
        #[derive(Default)]
        struct LiveMandates(::std::collections::HashMap<(String, String), i64>);

        impl LiveMandates {
            /// Whether `row` is a row of [`push_live_mandates`]'s read: the others of a
            /// script, or of a union with it, have no `status` or a null one.
            fn is_mandate_row(row: &DbRow) -> bool {
                row.try_get::<Option<String>, _>("status").ok().flatten().is_some()
            }

            fn read(&mut self, row: &DbRow) -> Result<(), StoreError> {
                let status: String = row.try_get("status").map_err(corrupt)?;
                if status == "active" {
                    self.0.insert(
                        (row.try_get("id").map_err(corrupt)?, row.try_get("tenant_id").map_err(corrupt)?),
                        row.try_get("expires_at").map_err(corrupt)?,
                    );
                }
                Ok(())
            }

            /// Why `grant` may not be written: its mandate is not active, or ends before
            /// the grant was issued.
            fn refusal(&self, grant: &Grant) -> Option<Refusal> {
                let mandate = grant.mandate_id?;
                let key = (mandate.to_string(), grant.tenant_id.to_string());
                (!self.0.get(&key).is_some_and(|expires| *expires > micros(grant.issued_at)))
                    .then(|| Refusal::Missing { what: "live mandate".into() })
            }
        }

        /// Revokes `jti` and every grant delegated from it inside `tx` (see
        /// [`Grants::revoke_grant_tree`]): the jtis revoked now, or `None` when the grant
        /// is unknown. Announces the revocation to other replicas when the transaction
        /// commits (PostgreSQL).
        async fn revoke_tree_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            tenant: TenantId,
            jti: &str,
            at: DateTime<Utc>,
        ) -> Result<Option<Vec<String>>, StoreError> {
            let mut revoked = Vec::new();
            // The root first: from here on no child can be added under it (a revoked
            // parent is refused by the grant's own check).
            let root = ::sqlx::query(
                "UPDATE grants SET revoked_at = $1
                 WHERE jti = $2 AND tenant_id = $3 AND revoked_at IS NULL RETURNING jti",
            )
            .bind(micros(at))
            .bind(jti)
            .bind(tenant.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable)?;
            if root.is_some() {
                revoked.push(jti.to_owned());
            } else {
                // Revoked before, or unknown.
                let known = ::sqlx::query("SELECT jti FROM grants WHERE jti = $1 AND tenant_id = $2")
                    .bind(jti)
                    .bind(tenant.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(unavailable)?;
                if known.is_none() {
                    return Ok(None);
                }
            }
            // Then the descendants, statement after statement, until a pass finds
            // none left: each pass sees children committed before it began, and a
            // child being added waits on its parent's row, which we now hold.
            // `+revoked_at` keeps SQLite's planner on the tree's keys instead of the index
            // on revoked_at (every live grant).
            loop {
                let rows = ::sqlx::query(
                    "WITH RECURSIVE tree (jti) AS (
                         SELECT jti FROM grants WHERE jti = $1 AND tenant_id = $2
                         UNION
                         SELECT g.jti FROM grants g JOIN tree t ON g.parent_jti = t.jti
                     )
                     UPDATE grants SET revoked_at = $3
                     WHERE jti IN (SELECT jti FROM tree) AND +revoked_at IS NULL
                     RETURNING jti",
                )
                .bind(jti)
                .bind(tenant.to_string())
                .bind(micros(at))
                .fetch_all(&mut **tx)
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
                ::sqlx::query(notify).execute(&mut **tx).await.map_err(unavailable)?;
            }
            Ok(Some(revoked))
        }

        /// Rows per multi-row INSERT of grants (8 parameters each).
        const GRANT_ROWS_PER_INSERT: usize = 1_000;

        /// Records one use of each assertion inside `tx`, in one statement; returns, per
        /// assertion, whether this was its first use — the table's key decides, so one of
        /// concurrent uses wins on any replica, and within `used` the first one does.
        async fn claim_jtis_in(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            used: &[&UsedAssertion],
        ) -> Result<Vec<bool>, StoreError> {
            let mut claimed = Pairs::default();
            for chunk in used.chunks(JTI_ROWS_PER_INSERT) {
                let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                push_jti_claims(&mut q, chunk);
                for row in q.build().fetch_all(&mut **tx).await.map_err(unavailable)? {
                    claimed.read(&row, CLAIMED)?;
                }
            }
            Ok(claimed.fresh(used))
        }

        /// The claim of `chunk`'s assertions (at most `JTI_ROWS_PER_INSERT`), pushed onto
        /// `q`: the rows it returns ([`CLAIMED`]) are the claims that were new.
        fn push_jti_claims(q: &mut ::sqlx::QueryBuilder<'static, $db>, chunk: &[&UsedAssertion]) {
            q.push(format!("{INSERT_ROWS} used_jtis (issuer, jti, expires_at) "));
            push_jti_values(q, chunk);
            q.push(" ON CONFLICT (expires_at, issuer, jti) DO NOTHING RETURNING issuer, jti");
        }

        /// `VALUES (…), (…)` of assertion uses, in `used_jtis`' column order, pushed onto `q`.
        fn push_jti_values(q: &mut ::sqlx::QueryBuilder<'static, $db>, chunk: &[&UsedAssertion]) {
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.issuer.clone()).push_bind(u.jti.clone()).push_bind(micros(u.expires_at));
            });
        }

        /// Rows per multi-row INSERT of assertion uses (3 parameters each).
        const JTI_ROWS_PER_INSERT: usize = 2_000;

        /// Forgets assertions that expired before `now` (they can no longer be replayed).
        async fn purge_jtis(tx: &mut ::sqlx::Transaction<'_, $db>, now: DateTime<Utc>) -> Result<(), StoreError> {
            let mut q = ::sqlx::QueryBuilder::<$db>::new("");
            push_jti_purge(&mut q, now);
            q.build().execute(&mut **tx).await.map_err(unavailable)?;
            Ok(())
        }

        /// The statement of [`purge_jtis`], pushed onto `q`.
        fn push_jti_purge(q: &mut ::sqlx::QueryBuilder<'static, $db>, now: DateTime<Utc>) {
            q.push("DELETE FROM used_jtis WHERE expires_at < ").push_bind(micros(now));
        }

        #[async_trait]
        impl Grants for $store {
            async fn insert_grant(&self, grant: &Grant) -> Result<(), StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                if let Some(Some(refused)) = grants_in(&mut tx, &[grant]).await?.pop() {
                    return Err(refused.into());
                }
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
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                let Some(revoked) = revoke_tree_in(&mut tx, tenant, jti, at).await? else {
                    return Err(StoreError::Missing { what: "grant".into() });
                };
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
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                if self.jtis_purged.due(now) {
                    purge_jtis(&mut tx, now).await?;
                }
                let used = UsedAssertion { issuer: issuer.to_owned(), jti: jti.to_owned(), expires_at };
                let fresh = claim_jtis_in(&mut tx, &[&used]).await?;
                tx.commit().await.map_err(unavailable)?;
                Ok(fresh.first().copied().unwrap_or(false))
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
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(())
            }

            async fn retire_token_key(&self, kid: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
                ::sqlx::query("UPDATE token_keys SET retire_at = $1 WHERE kid = $2")
                    .bind(micros(at))
                    .bind(kid)
                    .execute(&mut *self.writer().await?)
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
