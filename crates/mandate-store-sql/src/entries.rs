//! A ledger batch's entries (what a token writes: the assertions it used, its grant,
//! its event; see [`mandate_store::Entry`]) committed in one transaction. Expanded inside
//! `sql_store!`, so it uses that expansion's helpers (`unavailable`, `micros`, …) and
//! those of `sql_grants!` (`push_jti_claims`, `LiveMandates`, `Pairs`, …).
//!
//! Every step is one statement for the whole batch. On SQLite, where a statement is a
//! hand-off to the connection's thread and back, and the ledger's writer waits for each
//! while appenders queue, the common batch (assertions, grants under mandates and parent
//! grants, events)
//! goes as two scripts instead of six statements:
//!
//! ```text
//!   1. BEGIN IMMEDIATE; [purge expired jtis;] claim the jtis; read the mandates; read
//!      the parent grants; read the chain's head
//!   2. move the head from there to the last event; insert the events if it moved; insert
//!      the grants that passed if the head is at the last event; COMMIT
//! ```
//!
//! BEGIN IMMEDIATE takes the write lock before anything is read, so the mandates' check
//! is serialised against the update that ends a mandate exactly as on the general path
//! (whose first statement, the jtis' INSERT, takes it there), and the head read is the
//! head: the compare-and-swap that moves it cannot fail. Were it to fail all the same,
//! neither events nor grants would be written, only the claims, and the batch fails
//! (nothing is issued; a claimed assertion without its token is what a refusal leaves).

macro_rules! sql_entries {
    ($store:ty, $db:ty) => {
        /// The checks and writes of a batch's entries inside its transaction, one
        /// statement per step for the whole batch (see [`Entry`] for the order and what a
        /// refusal leaves): per entry, `None` when it passed or why it was refused.
        async fn write_entries(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            batch: &[Entry],
            now: DateTime<Utc>,
            purged: &$crate::PurgeClock,
        ) -> Result<(Vec<Option<Refusal>>, Vec<Option<Vec<String>>>), StoreError> {
            let mut refused: Vec<Option<Refusal>> = vec![None; batch.len()];
            let used = assertions_used(batch);
            if !used.is_empty() {
                if purged.due(now) {
                    purge_jtis(tx, now).await?;
                }
                let claims: Vec<&UsedAssertion> = used.iter().map(|(_, u)| *u).collect();
                refuse_replays(&used, claim_jtis_in(tx, &claims).await?, &mut refused);
            }
            for (entry, slot) in batch.iter().zip(refused.iter_mut()) {
                if let (None, Some(once)) = (&slot, &entry.once)
                    && !use_once_in(tx, once.kind, &once.key_hash, now).await?
                {
                    *slot = Some(Refusal::Used);
                }
            }
            let grants: Vec<(usize, &Grant)> = batch
                .iter()
                .enumerate()
                .filter(|(i, _)| refused.get(*i).is_some_and(Option::is_none))
                .filter_map(|(i, e)| e.grant.as_ref().map(|g| (i, g)))
                .collect();
            if !grants.is_empty() {
                let written: Vec<&Grant> = grants.iter().map(|(_, g)| *g).collect();
                for ((entry, _), outcome) in grants.iter().zip(grants_in(tx, &written).await?) {
                    if let (Some(slot), Some(why)) = (refused.get_mut(*entry), outcome) {
                        *slot = Some(why);
                    }
                }
            }
            let mut revoked: Vec<Option<Vec<String>>> = vec![None; batch.len()];
            for ((entry, slot), done) in
                batch.iter().zip(refused.iter_mut()).zip(revoked.iter_mut())
            {
                if let (None, Some(tree)) = (&slot, &entry.revoke) {
                    match revoke_tree_in(tx, tree.tenant_id, &tree.jti, now).await? {
                        Some(jtis) => *done = Some(jtis),
                        None => {
                            *slot = Some(Refusal::Missing {
                                what: "grant".into(),
                            })
                        }
                    }
                }
            }
            let issued: Vec<&::mandate_store::OnceRecord> = batch
                .iter()
                .zip(&refused)
                .filter(|(_, r)| r.is_none())
                .filter_map(|(e, _)| e.issue.as_ref())
                .collect();
            if !issued.is_empty() {
                // Issued records live long (a refresh token, until its mandate ends):
                // those of their kinds that expired a day ago go now.
                let mut kinds: Vec<::mandate_store::OnceKind> =
                    issued.iter().map(|r| r.kind).collect();
                kinds.dedup();
                for kind in kinds {
                    purge_once_in(tx, kind, now - ::chrono::Duration::days(1)).await?;
                }
                for record in issued {
                    insert_once_in(tx, record).await?;
                }
            }
            Ok((refused, revoked))
        }

        /// Each assertion an entry of `batch` used, with the entry's index.
        fn assertions_used(batch: &[Entry]) -> Vec<(usize, &UsedAssertion)> {
            batch
                .iter()
                .enumerate()
                .flat_map(|(i, e)| e.assertions.iter().map(move |u| (i, u)))
                .collect()
        }

        /// Refuses, as a replay, each entry with an assertion that was not `fresh`.
        fn refuse_replays(
            used: &[(usize, &UsedAssertion)],
            fresh: Vec<bool>,
            refused: &mut [Option<Refusal>],
        ) {
            for ((entry, claim), fresh) in used.iter().zip(fresh) {
                if !fresh && let Some(slot @ None) = refused.get_mut(*entry) {
                    *slot = Some(Refusal::Replay {
                        issuer: claim.issuer.clone(),
                    });
                }
            }
        }

        /// What each entry of a batch comes to, and the events to record for those that
        /// passed, in order.
        struct Outcomes {
            outcomes: Vec<Committed>,
            events: Vec<NewEvent>,
            /// Per entry, whether one of `events` is its.
            recorded_for: Vec<bool>,
        }

        impl Outcomes {
            fn new(
                batch: &[Entry],
                refusals: Vec<Option<Refusal>>,
                revocations: Vec<Option<Vec<String>>>,
            ) -> Self {
                let mut outcomes: Vec<Committed> = Vec::with_capacity(batch.len());
                let mut events = Vec::with_capacity(batch.len());
                let mut recorded_for: Vec<bool> = Vec::with_capacity(batch.len());
                for ((entry, refused), revoked) in batch.iter().zip(refusals).zip(revocations) {
                    let event = match (&entry.event, revoked) {
                        // A revocation's event names what it revoked now; none: no event.
                        (Some(event), Some(jtis)) if !jtis.is_empty() => {
                            Some(event.clone().with("revoked", jtis))
                        }
                        (_, Some(_)) => None,
                        (event, None) => event.clone(),
                    };
                    recorded_for.push(refused.is_none() && event.is_some());
                    match refused {
                        None => {
                            events.extend(event);
                            outcomes.push(Ok(None));
                        }
                        Some(refused) => outcomes.push(Err(refused)),
                    }
                }
                Outcomes {
                    outcomes,
                    events,
                    recorded_for,
                }
            }

            /// The outcomes, once `recorded` (the events, chained and committed) go, in
            /// order, to the entries that had one and passed.
            fn recorded(mut self, recorded: Vec<Event>) -> Vec<Committed> {
                let mut recorded = recorded.into_iter();
                for (outcome, recorded_here) in self.outcomes.iter_mut().zip(self.recorded_for) {
                    if let (Ok(slot), true) = (outcome, recorded_here) {
                        *slot = recorded.next();
                    }
                }
                self.outcomes
            }
        }

        /// The second script of [`commit_entries_scripted`](Self::commit_entries_scripted):
        /// `chained` moves the head and goes in only from where it starts; `written` goes in
        /// only if the head then is at `chained`'s last event (without events, always);
        /// then COMMIT. It returns one row if the head moved.
        fn commit_script(chained: &[Event], written: &[&Grant]) -> Result<::sqlx::QueryBuilder<'static, $db>, StoreError> {
            let mut q = ::sqlx::QueryBuilder::<$db>::new("");
            if let Some(last) = chained.last() {
                push_on_head(&mut q, chained)?;
                if !written.is_empty() {
                    q.push("; INSERT INTO grants (jti, tenant_id, mandate_id, agent_id, parent_jti, expires_at, revoked_at, doc) SELECT * FROM (");
                    push_grant_values(&mut q, written)?;
                    q.push(") WHERE EXISTS (SELECT 1 FROM audit_heads WHERE tenant_id = ")
                        .push_bind(last.tenant_id.to_string())
                        .push(" AND seq = ")
                        .push_bind(seq_param(last.seq)?)
                        .push(" AND hash = ")
                        .push_bind(last.hash.clone())
                        .push(")");
                }
                q.push("; ");
            } else if !written.is_empty() {
                push_grants_insert(&mut q, written)?;
                q.push("; ");
            }
            q.push("COMMIT");
            Ok(q)
        }

        impl $store {
            /// [`AuditLog::commit_entries`] on the ledger's connection.
            async fn commit_entries_on(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                batch: &[Entry],
                at: DateTime<Utc>,
            ) -> Result<Vec<Committed>, StoreError> {
                if BATCH_SCRIPTS
                    && let Some(outcomes) = self.commit_entries_scripted(conn, batch, at).await?
                {
                    return Ok(outcomes);
                }
                let mut tx = ::sqlx::Connection::begin(&mut *conn)
                    .await
                    .map_err(unavailable)?;
                let (refusals, revocations) =
                    write_entries(&mut tx, batch, at, &self.jtis_purged).await?;
                let outcomes = Outcomes::new(batch, refusals, revocations);
                let recorded = self
                    .append_remembered_in(&mut tx, &outcomes.events, at)
                    .await?;
                tx.commit().await.map_err(unavailable)?;
                self.remember_heads(&recorded);
                Ok(outcomes.recorded(recorded))
            }

            /// [`Self::commit_entries_on`] for the common batch, in two scripts (see the
            /// module's header): `None` when the batch is not of that shape (an entry that
            /// spends or issues a once-only record, or revokes; events of several tenants,
            /// or of one with no chain yet), with nothing written: the batch then takes the
            /// general path. An error before the second script's COMMIT rolls everything
            /// back.
            async fn commit_entries_scripted(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                batch: &[Entry],
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                let mut tenants = batch.iter().filter_map(|e| e.event.as_ref()).map(|e| e.tenant_id);
                let tenant = tenants.next();
                let common = batch.len() <= AUDIT_ROWS_PER_INSERT
                    && tenants.all(|t| Some(t) == tenant)
                    && batch.iter().all(|e| e.once.is_none() && e.revoke.is_none() && e.issue.is_none());
                let used = assertions_used(batch);
                let grants: Vec<(usize, &Grant)> =
                    batch.iter().enumerate().filter_map(|(i, e)| e.grant.as_ref().map(|g| (i, g))).collect();
                if !common || used.len() > JTI_ROWS_PER_INSERT || grants.len() > GRANT_ROWS_PER_INSERT {
                    return Ok(None);
                }
                let done = self.scripted(conn, batch, tenant, &used, &grants, at).await;
                if !matches!(done, Ok(Some(_))) {
                    // Nothing of it stays (past the COMMIT this finds no transaction).
                    let _ = ::sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                done
            }

            async fn scripted(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                batch: &[Entry],
                tenant: Option<TenantId>,
                used: &[(usize, &UsedAssertion)],
                grants: &[(usize, &Grant)],
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                // 1. The write lock; the jtis' claims, the mandates and the chain's head,
                // read under it.
                let mut q = ::sqlx::QueryBuilder::<$db>::new("BEGIN IMMEDIATE");
                let claims: Vec<&UsedAssertion> = used.iter().map(|(_, u)| *u).collect();
                if !claims.is_empty() {
                    if self.jtis_purged.due(at) {
                        q.push("; ");
                        push_jti_purge(&mut q, at);
                    }
                    q.push("; ");
                    push_jti_claims(&mut q, &claims);
                }
                let mandates: Vec<String> =
                    grants.iter().filter_map(|(_, g)| g.mandate_id.map(|m| m.to_string())).collect();
                if !mandates.is_empty() {
                    q.push("; ");
                    push_live_mandates(&mut q, &mandates);
                }
                let mut parents: Vec<&str> = grants.iter().filter_map(|(_, g)| g.parent_jti.as_deref()).collect();
                parents.sort_unstable();
                parents.dedup();
                if !parents.is_empty() {
                    q.push("; ");
                    push_live_parents(&mut q, &parents);
                }
                if let Some(tenant) = tenant {
                    q.push("; SELECT seq, hash FROM audit_heads WHERE tenant_id = ").push_bind(tenant.to_string());
                }
                // Each statement's rows, told apart by their columns.
                let mut claimed = Pairs::default();
                let mut live = LiveMandates::default();
                let mut live_parents = Pairs::default();
                let mut head = None;
                for row in q.build().fetch_all(&mut *conn).await.map_err(unavailable)? {
                    if LiveMandates::is_mandate_row(&row) {
                        live.read(&row)?;
                    } else if row.try_column("hash").is_ok() {
                        head = Some(Head {
                            seq: seq_column(&row)?,
                            hash: row.try_get("hash").map_err(corrupt)?,
                        });
                    } else if row.try_column("issuer").is_ok() {
                        claimed.read(&row, CLAIMED)?;
                    } else {
                        live_parents.read(&row, LIVE_PARENT)?;
                    }
                }
                let mut refused: Vec<Option<Refusal>> = vec![None; batch.len()];
                refuse_replays(used, claimed.fresh(&claims), &mut refused);
                let mut written: Vec<&Grant> = Vec::with_capacity(grants.len());
                for (entry, grant) in grants {
                    let Some(slot @ None) = refused.get_mut(*entry) else { continue };
                    match live.refusal(grant).or_else(|| live_parents.parent_refusal(grant)) {
                        Some(why) => *slot = Some(why),
                        None => written.push(*grant),
                    }
                }
                let outcomes = Outcomes::new(batch, refused, vec![None; batch.len()]);
                let chained = match head {
                    Some(head) => chain_on(head, &outcomes.events, at),
                    None if outcomes.events.is_empty() => Vec::new(),
                    // A tenant's first event creates its head: the general way does that.
                    None => return Ok(None),
                };

                // 2. The events on that head, the grants that passed only if the head
                // moved to the events' last (it cannot fail to, under the lock; if it
                // did, the COMMIT keeps nothing but the jtis' claims), and the COMMIT.
                let mut q = commit_script(&chained, &written)?;
                // Rows: the head's UPDATE returns one if it moved.
                let rows = q.build().fetch_all(&mut *conn).await.map_err(|e| store_error(e, "grant"))?;
                if let Some(first) = chained.first()
                    && rows.len() != 1
                {
                    self.remember_head(first.tenant_id, None);
                    return Err(StoreError::Unavailable(
                        "the audit chain's head moved under the writer's lock".to_owned(),
                    ));
                }
                self.remember_heads(&chained);
                Ok(Some(outcomes.recorded(chained)))
            }
        }
    };
}

pub(crate) use sql_entries;
