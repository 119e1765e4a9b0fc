//! A ledger batch's entries (what a token writes: the assertions it used, its grant,
//! its event; see [`mandate_store::Entry`]) committed in one transaction. Expanded inside
//! `sql_store!`, so it uses that expansion's helpers (`unavailable`, `micros`, …) and
//! those of `sql_grants!` (`push_jti_claims`, `LiveMandates`, `Pairs`, …).
//!
//! Every step is one statement for the whole batch. The ledger's writer waits for each
//! round trip while appenders queue, so the common batch (assertions, grants under
//! mandates and parent grants, events; see `Common`) goes in fewer of them.
//!
//! On SQLite, where a statement is a hand-off to the connection's thread and back, and a
//! script of statements is one, as two scripts instead of six statements:
//!
//! ```text
//!   1. BEGIN IMMEDIATE; [purge expired jtis;] claim the jtis; read the mandates; read
//!      the parent grants; read the chain's head
//!   2. move the head from there to the last event; insert the events if it moved; insert
//!      the grants that passed if the head is at the last event; COMMIT
//! ```
//!
//! Before those, a batch whose entries all pass (the common case) is tried as one
//! script on the head this process remembers (`optimistic`): the head's compare-and-swap
//! also checks that no assertion was used before and every mandate is live, and each
//! INSERT after it (events, claims, grants) is guarded by the count the one before
//! wrote, so a head that did not move writes nothing and the two scripts take over.
//!
//! BEGIN IMMEDIATE takes the write lock before anything is read, so the mandates' check
//! is serialised against the update that ends a mandate exactly as on the general path
//! (whose first statement, the jtis' INSERT, takes it there), and the head read is the
//! head: the compare-and-swap that moves it cannot fail. Were it to fail all the same,
//! neither events nor grants would be written, only the claims, and the batch fails
//! (nothing is issued; a claimed assertion without its token is what a refusal leaves).
//!
//! On PostgreSQL, whose extended protocol takes one statement per query, as four
//! statements instead of six, the steps joined by common table expressions:
//!
//! ```text
//!   1. BEGIN
//!   2. claim the jtis, then read the mandates FOR SHARE   [3. lock the live parents]
//!   4. move the head from the one this process remembers; if it moved, insert the
//!      events and the grants that passed
//!   5. COMMIT
//! ```
//!
//! The locks are taken in the general path's order (the claims, the mandates, the
//! parents, the head): the mandates' read waits for the claims, a condition on them
//! makes it. If another replica moved the head, step 4 writes nothing, the transaction
//! is rolled back and the batch takes the general path.

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

        /// The second script of [`commit_common_scripted`](Self::commit_common_scripted):
        /// `chained` moves the head and goes in only from where it starts; `written` goes in
        /// only if the head then is at `chained`'s last event (without events, always);
        /// then COMMIT. It returns one row if the head moved.
        fn commit_script(chained: &[Event], written: &[&Grant]) -> Result<::sqlx::QueryBuilder<'static, $db>, StoreError> {
            let mut q = ::sqlx::QueryBuilder::<$db>::new("");
            if chained.is_empty() {
                if !written.is_empty() {
                    push_grants_insert(&mut q, written)?;
                    q.push("; ");
                }
            } else {
                push_on_head(&mut q, chained, written)?;
                q.push("; ");
            }
            q.push("COMMIT");
            Ok(q)
        }

        /// The most assertions, and the most mandates, a batch may carry to be tried as
        /// one script (see `optimistic`): each is a term of the head's condition.
        const OPTIMISTIC_ROWS: usize = 64;

        /// A batch of the common shape (see [`Common::of`]): what it claims, the grants
        /// it writes and what those depend on.
        struct Common<'b> {
            batch: &'b [Entry],
            /// The one tenant of its events, if it has any.
            tenant: Option<TenantId>,
            used: Vec<(usize, &'b UsedAssertion)>,
            claims: Vec<&'b UsedAssertion>,
            grants: Vec<(usize, &'b Grant)>,
            mandates: Vec<String>,
            parents: Vec<&'b str>,
        }

        impl<'b> Common<'b> {
            /// `None` when an entry spends, revokes or issues a once-only record, the
            /// events are of several tenants, or the claims, grants or events are more
            /// than one statement takes.
            fn of(batch: &'b [Entry]) -> Option<Self> {
                let mut tenants = batch.iter().filter_map(|e| e.event.as_ref()).map(|e| e.tenant_id);
                let tenant = tenants.next();
                let common = batch.len() <= AUDIT_ROWS_PER_INSERT
                    && tenants.all(|t| Some(t) == tenant)
                    && batch.iter().all(|e| e.once.is_none() && e.revoke.is_none() && e.issue.is_none());
                let used = assertions_used(batch);
                let grants: Vec<(usize, &Grant)> =
                    batch.iter().enumerate().filter_map(|(i, e)| e.grant.as_ref().map(|g| (i, g))).collect();
                if !common || used.len() > JTI_ROWS_PER_INSERT || grants.len() > GRANT_ROWS_PER_INSERT {
                    return None;
                }
                let claims = used.iter().map(|(_, u)| *u).collect();
                let mandates = grants.iter().filter_map(|(_, g)| g.mandate_id.map(|m| m.to_string())).collect();
                let mut parents: Vec<&str> = grants.iter().filter_map(|(_, g)| g.parent_jti.as_deref()).collect();
                parents.sort_unstable();
                parents.dedup();
                Some(Common { batch, tenant, used, claims, grants, mandates, parents })
            }
        }

        /// What the checks of a [`Common`] batch read: the claims that were new, the live
        /// mandates and parents, and (SQLite) the chain's head.
        #[derive(Default)]
        struct Reads {
            claimed: Pairs,
            live: LiveMandates,
            live_parents: Pairs,
            head: Option<Head>,
        }

        impl Reads {
            /// Reads one row of the checks, told apart by its columns.
            fn read(&mut self, row: &DbRow) -> Result<(), StoreError> {
                if LiveMandates::is_mandate_row(row) {
                    self.live.read(row)
                } else if row.try_column("hash").is_ok() {
                    self.head = Some(head_of(row)?);
                    Ok(())
                } else if row.try_column("issuer").is_ok() {
                    self.claimed.read(row, CLAIMED)
                } else {
                    self.live_parents.read(row, LIVE_PARENT)
                }
            }

            /// What each entry of `common` comes to, and the grants that passed.
            fn judge<'b>(self, common: &Common<'b>) -> (Outcomes, Vec<&'b Grant>) {
                let mut refused: Vec<Option<Refusal>> = vec![None; common.batch.len()];
                refuse_replays(&common.used, self.claimed.fresh(&common.claims), &mut refused);
                let mut written: Vec<&Grant> = Vec::with_capacity(common.grants.len());
                for (entry, grant) in &common.grants {
                    let Some(slot @ None) = refused.get_mut(*entry) else { continue };
                    match self.live.refusal(grant).or_else(|| self.live_parents.parent_refusal(grant)) {
                        Some(why) => *slot = Some(why),
                        None => written.push(*grant),
                    }
                }
                let revoked = vec![None; common.batch.len()];
                (Outcomes::new(common.batch, refused, revoked), written)
            }
        }

        /// A grant of no mandate (nothing to check it against but its tenant), issued `now`.
        #[cfg(test)]
        pub(crate) fn test_grant(tenant: TenantId, jti: &str, now: DateTime<Utc>) -> Grant {
            Grant {
                jti: jti.to_owned(),
                tenant_id: tenant,
                mandate_id: None,
                agent_id: ::mandate_types::AgentId::generate(),
                parent_jti: None,
                depth: 0,
                scope: vec![],
                cnf_jkt: None,
                issued_at: now,
                expires_at: now + ::chrono::Duration::minutes(5),
                revoked_at: None,
            }
        }

        /// The checks of [`commit_common`](<$store>::commit_common), run by each adapter's
        /// tests with `other`, another store (process, replica) on the same database: a
        /// replay in the batch is refused and the rest written; a child under a live
        /// parent is written, one under an unknown parent refused; after `other` moved
        /// the head, SQLite chains on the head it reads under its lock, PostgreSQL
        /// writes nothing (not even the claims) and the general way chains it; a tenant
        /// with no chain yet takes the general way, nothing written before.
        #[cfg(test)]
        pub(crate) async fn check_commit_common(store: &$store, other: &$store, tenant: TenantId) {
            #![allow(clippy::unwrap_used, reason = "tests")]
            use ::mandate_store::{AuditLog as _, Grants as _};
            let now = Utc::now();
            let event = |tenant| NewEvent::new(tenant, ::mandate_audit::EventKind::TokenIssued, "agent:test");
            let entry = |tenant: TenantId, n: &str| Entry {
                assertions: vec![UsedAssertion {
                    issuer: "agt_1".into(),
                    jti: format!("j-{n}"),
                    expires_at: now + ::chrono::Duration::minutes(5),
                }],
                grant: Some(test_grant(tenant, &format!("g-{n}"), now)),
                event: Some(event(tenant)),
                ..Entry::default()
            };
            let common = |batch: Vec<Entry>| async move {
                let mut writer = store.ledger_writer(false).await.unwrap();
                store.commit_common(&mut writer, &batch, now).await.unwrap()
            };
            let claimed = |jti: &'static str| async move {
                !store.claim_jti("agt_1", jti, now + ::chrono::Duration::minutes(5), now).await.unwrap()
            };
            // The head this store remembers (PostgreSQL's way starts from it).
            store.append_events(&[event(tenant)], now).await.unwrap();
            let done = common(vec![entry(tenant, "1"), entry(tenant, "1")])
                .await
                .expect("the common batch takes the short way");
            assert_eq!(done[0].clone().unwrap().unwrap().seq, 2);
            assert!(matches!(done[1], Err(Refusal::Replay { .. })));
            assert!(store.grant(tenant, "g-1").await.unwrap().is_some());

            let child = |n: &str, parent: &str| {
                let mut e = entry(tenant, n);
                if let Some(g) = e.grant.as_mut() {
                    g.parent_jti = Some(parent.to_owned());
                    g.depth = 1;
                }
                e
            };
            let done = common(vec![child("c1", "g-1"), child("c2", "nope")]).await.unwrap();
            assert!(matches!(done[0], Ok(Some(_))));
            assert!(matches!(done[1], Err(Refusal::Missing { .. })));
            assert!(store.grant(tenant, "g-c1").await.unwrap().is_some());
            assert!(store.grant(tenant, "g-c2").await.unwrap().is_none());

            // Another store appends: the head this one remembers is stale.
            let moved = other.append_events(&[event(tenant)], now).await.unwrap();
            let done = match common(vec![entry(tenant, "2")]).await {
                Some(done) => {
                    assert!(!DATA_MODIFYING_CTE, "read under SQLite's lock, the head is the stored one");
                    done
                }
                None => {
                    assert!(DATA_MODIFYING_CTE);
                    assert!(store.grant(tenant, "g-2").await.unwrap().is_none());
                    assert_eq!(store.audit_heads().await.unwrap()[0].1, moved[0].head());
                    store.commit_entries(&[entry(tenant, "2")], now).await.unwrap()
                }
            };
            let recorded = done[0].clone().unwrap().unwrap();
            assert_eq!((recorded.seq, &recorded.prev_hash), (5, &moved[0].hash));
            assert_eq!(store.audit_heads().await.unwrap()[0].1, recorded.head());
            assert!(store.grant(tenant, "g-2").await.unwrap().is_some());
            // And from there the short way again.
            let done = common(vec![entry(tenant, "4")]).await.unwrap();
            assert_eq!(done[0].clone().unwrap().unwrap().seq, 6);

            // A tenant without a chain: nothing written, then the general way.
            let new = ::mandate_store::conformance::tenant(store, "new").await;
            assert!(common(vec![entry(new, "3")]).await.is_none());
            assert!(store.grant(new, "g-3").await.unwrap().is_none());
            // Its claim was not kept either, or this would be a replay.
            let done = store.commit_entries(&[entry(new, "3")], now).await.unwrap();
            assert_eq!(done[0].clone().unwrap().unwrap().seq, 1);
            assert!(store.grant(new, "g-3").await.unwrap().is_some());
            for jti in ["j-1", "j-2", "j-3", "j-4"] {
                assert!(claimed(jti).await, "{jti}");
            }
            // 1 appended, 2 and 3 the short way, 4 by `other`, 5 and 6 after it.
            assert_eq!(store.audit_records(tenant, 0, 100).await.unwrap().len(), 6);
        }

        /// A batch whose INSERT fails halfway (a row squats a sequence number the batch
        /// reaches) leaves nothing of itself: not the rows before the failing one (which
        /// SQLite's `OR FAIL` keeps until the rollback), not the head's move, not the
        /// claims or grants of a token batch; and the next batch, once the squatter is
        /// gone, is written from the stored head.
        #[cfg(test)]
        pub(crate) async fn check_half_written_batches_leave_nothing(store: &$store, tenant: TenantId) {
            #![allow(clippy::unwrap_used, reason = "tests")]
            use ::mandate_store::{AuditLog as _, Grants as _};
            let now = Utc::now();
            let event = || NewEvent::new(tenant, ::mandate_audit::EventKind::TokenIssued, "agent:test");
            let entry = |n: &str| Entry {
                assertions: vec![UsedAssertion {
                    issuer: "agt_1".into(),
                    jti: format!("j-{n}"),
                    expires_at: now + ::chrono::Duration::minutes(5),
                }],
                grant: Some(test_grant(tenant, &format!("g-{n}"), now)),
                event: Some(event()),
                ..Entry::default()
            };
            let seqs = || async {
                let records = store.audit_records(tenant, 0, 100).await.unwrap();
                records.iter().map(|r| r.seq).collect::<Vec<_>>()
            };
            let first = store.append_events(&[event()], now).await.unwrap();
            assert_eq!(first[0].seq, 1);
            // Written as the store writes events (on SQLite with its key), outside the chain.
            let squatter = Event::chain(&Head { seq: 2, hash: "squat".into() }, event(), now);
            events_insert(std::slice::from_ref(&squatter)).unwrap().build().execute(&store.pool).await.unwrap();

            // Events only: the second of three collides.
            assert!(store.append_events(&[event(), event(), event()], now).await.is_err());
            assert_eq!(seqs().await, [1, 3]);
            assert_eq!(store.audit_heads().await.unwrap()[0].1, first[0].head());

            // Token entries: the second's event collides.
            assert!(store.commit_entries(&[entry("a"), entry("b")], now).await.is_err());
            assert_eq!(seqs().await, [1, 3]);
            assert_eq!(store.audit_heads().await.unwrap()[0].1, first[0].head());
            for n in ["a", "b"] {
                assert!(store.grant(tenant, &format!("g-{n}")).await.unwrap().is_none(), "{n}");
            }

            ::sqlx::query("DELETE FROM audit_events WHERE hash = $1")
                .bind(&squatter.hash)
                .execute(&store.pool)
                .await
                .unwrap();
            // The claims were not kept: the same entries now go in, chained on seq 1.
            let done = store.commit_entries(&[entry("a"), entry("b")], now).await.unwrap();
            let recorded: Vec<_> = done.into_iter().map(|d| d.unwrap().unwrap()).collect();
            assert_eq!((recorded[0].seq, &recorded[0].prev_hash), (2, &first[0].hash));
            assert_eq!(recorded[1].seq, 3);
            assert!(store.grant(tenant, "g-b").await.unwrap().is_some());
            assert_eq!(store.append_events(&[event()], now).await.unwrap()[0].seq, 4);
        }

        impl $store {
            /// [`AuditLog::commit_entries`] on the ledger's connection.
            async fn commit_entries_on(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                batch: &[Entry],
                at: DateTime<Utc>,
            ) -> Result<Vec<Committed>, StoreError> {
                if let Some(outcomes) = self.commit_common(conn, batch, at).await? {
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

            /// `batch` in fewer round trips, if it is [`Common`] (see the module's header):
            /// `None`, with nothing written, when it is not or the way cannot be taken.
            pub(crate) async fn commit_common(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                batch: &[Entry],
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                let Some(common) = Common::of(batch) else {
                    return Ok(None);
                };
                if DATA_MODIFYING_CTE {
                    self.commit_common_statements(conn, &common, at).await
                } else {
                    self.commit_common_scripted(conn, &common, at).await
                }
            }

            /// A [`Common`] batch in two scripts on SQLite (see the module's header):
            /// `None` when its tenant has no chain yet, with nothing written: the general
            /// way creates it. An error before the second script's COMMIT rolls
            /// everything back.
            async fn commit_common_scripted(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                common: &Common<'_>,
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                let done = match self.optimistic(conn, common, at).await {
                    Ok(None) => self.scripted(conn, common, at).await,
                    done => done,
                };
                if !matches!(done, Ok(Some(_))) {
                    // Nothing of it stays (past the COMMIT this finds no transaction).
                    let _ = ::sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                done
            }

            /// A [`Common`] batch as one script, if every entry of it passes (the common
            /// case): chained on the head this process remembers, the head moved only if
            /// no assertion was used before, every mandate is active, of the batch's
            /// tenant and ends after the last grant's issue (stricter than each grant's
            /// own check: a batch refused here takes the exact way), and then the events,
            /// grants and claims written with it, all under BEGIN IMMEDIATE as in
            /// [`scripted`](Self::scripted). `Ok(None)`, with nothing written (the
            /// transaction commits nothing), when the way cannot be taken or a check
            /// failed: the two scripts then judge each entry.
            async fn optimistic(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                common: &Common<'_>,
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                let Some(tenant) = common.tenant else { return Ok(None) };
                let mut seen = ::std::collections::HashSet::with_capacity(common.claims.len());
                let taken = common.claims.len() <= OPTIMISTIC_ROWS
                    && common.mandates.len() <= OPTIMISTIC_ROWS
                    && common.parents.is_empty()
                    && common.grants.iter().all(|(_, g)| g.tenant_id == tenant)
                    && common.claims.iter().all(|u| seen.insert((u.issuer.as_str(), u.jti.as_str())));
                let head = self.remembered_head(tenant);
                let (true, Some(head)) = (taken, head) else { return Ok(None) };
                let n = common.batch.len();
                let outcomes = Outcomes::new(common.batch, vec![None; n], vec![None; n]);
                let chained = chain_on(head, &outcomes.events, at);
                if chained.is_empty() {
                    return Ok(None);
                }
                let written: Vec<&Grant> = common.grants.iter().map(|(_, g)| *g).collect();
                let mut mandates = common.mandates.clone();
                mandates.sort_unstable();
                mandates.dedup();
                let issued = common.grants.iter().map(|(_, g)| micros(g.issued_at)).max();
                let mut q = ::sqlx::QueryBuilder::<$db>::new("BEGIN IMMEDIATE; ");
                if !common.claims.is_empty() && self.jtis_purged.due(at) {
                    push_jti_purge(&mut q, at);
                    q.push("; ");
                }
                push_on_head_if(&mut q, &chained, &[], |q| {
                    if !common.claims.is_empty() {
                        q.push(" AND NOT EXISTS (SELECT 1 FROM used_jtis WHERE ");
                        let mut terms = q.separated(" OR ");
                        for u in &common.claims {
                            terms
                                .push("(expires_at = ")
                                .push_bind_unseparated(micros(u.expires_at))
                                .push_unseparated(" AND issuer = ")
                                .push_bind_unseparated(u.issuer.clone())
                                .push_unseparated(" AND jti = ")
                                .push_bind_unseparated(u.jti.clone())
                                .push_unseparated(")");
                        }
                        q.push(")");
                    }
                    if let (false, Some(issued)) = (mandates.is_empty(), issued) {
                        // The unary `+`s keep SQLite on the list of keys (see `push_live_mandates`).
                        q.push(" AND (SELECT count(*) FROM mandates WHERE id IN (");
                        let mut ids = q.separated(", ");
                        for id in &mandates {
                            ids.push_bind(id.clone());
                        }
                        q.push(") AND +tenant_id = ")
                            .push_bind(tenant.to_string())
                            .push(" AND +status = 'active' AND +expires_at > ")
                            .push_bind(issued)
                            .push(") = ")
                            .push_bind(i64::try_from(mandates.len()).unwrap_or(i64::MAX));
                    }
                })?;
                // Each INSERT only if the one before wrote all its rows: none, from a
                // head that did not move, and nothing after.
                let mut before = chained.len();
                if !common.claims.is_empty() {
                    q.push(format!("; {INSERT_ROWS} used_jtis (issuer, jti, expires_at) SELECT * FROM ("));
                    push_jti_values(&mut q, &common.claims);
                    q.push(")");
                    push_if_written(&mut q, before)?;
                    before = common.claims.len();
                }
                push_grants_if_written(&mut q, &written, before)?;
                // The head as it stands, to go on from if this did not move it.
                q.push("; SELECT seq, hash FROM audit_heads WHERE tenant_id = ").push_bind(tenant.to_string());
                q.push("; COMMIT");
                // Rows: the head's UPDATE returns one if it moved (everything went in);
                // the head's, with its hash.
                let (mut moved, mut stored) = (false, None);
                for row in q.build().fetch_all(&mut *conn).await.map_err(|e| store_error(e, "grant"))? {
                    if row.try_column("hash").is_ok() {
                        stored = Some(head_of(&row)?);
                    } else {
                        moved = true;
                    }
                }
                if !moved {
                    self.remember_head(tenant, stored);
                    return Ok(None);
                }
                self.remember_heads(&chained);
                Ok(Some(outcomes.recorded(chained)))
            }

            async fn scripted(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                common: &Common<'_>,
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                // 1. The write lock; the jtis' claims, the mandates and the chain's head,
                // read under it.
                let mut q = ::sqlx::QueryBuilder::<$db>::new("BEGIN IMMEDIATE");
                if !common.claims.is_empty() {
                    if self.jtis_purged.due(at) {
                        q.push("; ");
                        push_jti_purge(&mut q, at);
                    }
                    q.push("; ");
                    push_jti_claims(&mut q, &common.claims);
                }
                if !common.mandates.is_empty() {
                    q.push("; ");
                    push_live_mandates(&mut q, &common.mandates);
                }
                if !common.parents.is_empty() {
                    q.push("; ");
                    push_live_parents(&mut q, &common.parents);
                }
                if let Some(tenant) = common.tenant {
                    q.push("; SELECT seq, hash FROM audit_heads WHERE tenant_id = ").push_bind(tenant.to_string());
                }
                let mut reads = Reads::default();
                for row in q.build().fetch_all(&mut *conn).await.map_err(unavailable)? {
                    reads.read(&row)?;
                }
                let head = reads.head.take();
                let (outcomes, written) = reads.judge(common);
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

            /// A [`Common`] batch on PostgreSQL in four statements instead of six:
            ///
            /// ```text
            ///   BEGIN
            ///   claim the jtis, then read (FOR SHARE) the mandates: one statement
            ///   [read the parent grants, locking them]
            ///   move the head from the remembered one; if it moved, insert the events
            ///   and the grants that passed: one statement
            ///   COMMIT
            /// ```
            ///
            /// The claims are made before the mandates are locked (the mandates' read
            /// waits for them), the mandates before the parents: the order of the general
            /// way. `None`, with nothing written (rolled back), when the head is not
            /// remembered or another replica moved it: the general way reads it.
            async fn commit_common_statements(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                common: &Common<'_>,
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                let head = match common.tenant {
                    Some(tenant) => match self.remembered_head(tenant) {
                        None => return Ok(None),
                        head => head,
                    },
                    None => None,
                };
                ::sqlx::query("BEGIN").execute(&mut *conn).await.map_err(unavailable)?;
                let done = self.in_statements(conn, common, head, at).await;
                let kept = match &done {
                    Ok(Some(_)) => ::sqlx::query("COMMIT").execute(&mut *conn).await.map_err(unavailable),
                    _ => ::sqlx::query("ROLLBACK").execute(&mut *conn).await.map_err(unavailable),
                };
                match (done, kept) {
                    (Ok(Some(outcomes)), Ok(_)) => Ok(Some(outcomes)),
                    // A failed COMMIT may or may not have kept the batch: the appenders
                    // fail closed, and the head is read again next time.
                    (Ok(Some(_)), Err(e)) => {
                        self.forget_heads(common.tenant);
                        Err(e)
                    }
                    (done, _) => done,
                }
            }

            async fn in_statements(
                &self,
                conn: &mut <$db as ::sqlx::Database>::Connection,
                common: &Common<'_>,
                head: Option<Head>,
                at: DateTime<Utc>,
            ) -> Result<Option<Vec<Committed>>, StoreError> {
                if !common.claims.is_empty() && self.jtis_purged.due(at) {
                    let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                    push_jti_purge(&mut q, at);
                    q.build().execute(&mut *conn).await.map_err(unavailable)?;
                }
                let mut reads = Reads::default();
                let mut checks = Vec::with_capacity(2);
                match (common.claims.is_empty(), common.mandates.is_empty()) {
                    (true, true) => {}
                    (false, true) => {
                        let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                        push_jti_claims(&mut q, &common.claims);
                        checks.push(q);
                    }
                    (true, false) => {
                        let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                        push_live_mandates(&mut q, &common.mandates);
                        checks.push(q);
                    }
                    (false, false) => {
                        // Claims and mandates, one row set: the mandates' rows have a
                        // status, the claims' a null one.
                        let mut q = ::sqlx::QueryBuilder::<$db>::new("WITH claimed AS (");
                        push_jti_claims(&mut q, &common.claims);
                        q.push("), live AS (");
                        push_live_mandates_after(&mut q, &common.mandates, " AND (SELECT count(*) FROM claimed) >= 0");
                        q.push(
                            ") SELECT issuer, jti, NULL AS id, NULL AS tenant_id, NULL::BIGINT AS expires_at, NULL AS status FROM claimed \
                             UNION ALL SELECT NULL, NULL, id, tenant_id, expires_at, status FROM live",
                        );
                        checks.push(q);
                    }
                }
                if !common.parents.is_empty() {
                    let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                    push_live_parents(&mut q, &common.parents);
                    checks.push(q);
                }
                for mut q in checks {
                    for row in q.build().fetch_all(&mut *conn).await.map_err(unavailable)? {
                        reads.read(&row)?;
                    }
                }
                let (outcomes, written) = reads.judge(common);
                let chained = match head {
                    Some(head) => chain_on(head, &outcomes.events, at),
                    None => Vec::new(),
                };
                let mut q = ::sqlx::QueryBuilder::<$db>::new("");
                if chained.is_empty() {
                    if !written.is_empty() {
                        push_grants_insert(&mut q, &written)?;
                        q.build().execute(&mut *conn).await.map_err(|e| store_error(e, "grant"))?;
                    }
                } else {
                    push_on_head(&mut q, &chained, &written)?;
                    let done = q.build().execute(&mut *conn).await.map_err(|e| store_error(e, "grant"))?;
                    if done.rows_affected() == 0 {
                        // Another replica moved the head: nothing of this statement went in.
                        self.forget_heads(common.tenant);
                        return Ok(None);
                    }
                }
                self.remember_heads(&chained);
                Ok(Some(outcomes.recorded(chained)))
            }

            /// Forgets where `tenant`'s chain stands (the next batch reads it).
            fn forget_heads(&self, tenant: Option<TenantId>) {
                if let Some(tenant) = tenant {
                    self.remember_head(tenant, None);
                }
            }
        }
    };
}

pub(crate) use sql_entries;
