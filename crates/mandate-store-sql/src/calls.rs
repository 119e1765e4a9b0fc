//! The gateway's tables: budgets spent, approvals, proposals. Expanded inside
//! `sql_store!`, so it uses that expansion's helpers (`unavailable`, `micros`, …).
//!
//! Each once-only change is a single conditional statement (`UPDATE … WHERE status = …`
//! or a guarded increment), so two replicas racing for it cannot both succeed.

macro_rules! sql_calls {
    ($store:ty, $db:ty) => {
        fn limit_or_none(limit: Option<u64>) -> i64 {
            limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
        }

        /// A conditional write's answer: it changed the one row, or the row was not in
        /// the state it required ([`StoreError::VersionConflict`]).
        fn changed_once(rows: u64) -> Result<(), StoreError> {
            if rows == 1 {
                Ok(())
            } else {
                Err(StoreError::VersionConflict)
            }
        }

        fn approval_row(row: &DbRow) -> Result<::mandate_domain::Approval, StoreError> {
            text_doc(row)
        }

        fn proposal_row(row: &DbRow) -> Result<::mandate_domain::Proposal, StoreError> {
            text_doc(row)
        }

        async fn put_approval_doc<'e, E: ::sqlx::Executor<'e, Database = $db>>(
            executor: E,
            approval: &::mandate_domain::Approval,
            expect: &str,
        ) -> Result<bool, StoreError> {
            let done = ::sqlx::query(
                "UPDATE approvals SET status = $1, doc = $2 WHERE id = $3 AND tenant_id = $4 AND status = $5",
            )
            .bind(approval.status.as_str())
            .bind(to_text(approval)?)
            .bind(approval.id.to_string())
            .bind(approval.call.tenant_id.to_string())
            .bind(expect)
            .execute(executor)
            .await
            .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        }

        #[async_trait]
        impl ::mandate_store::Calls for $store {
            async fn add_drift(
                &self,
                tenant: TenantId,
                mandate: MandateId,
                add: ::mandate_store::DriftTotals,
                threshold: u64,
                now: DateTime<Utc>,
            ) -> Result<Option<::mandate_store::DriftTotals>, StoreError> {
                let count = |n: u64| i64::try_from(n).map_err(|_| StoreError::Corrupt("drift count out of range".into()));
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                let row = ::sqlx::query(
                    "INSERT INTO drift_counts (mandate_id, tenant_id, denied, out_of_scope) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (mandate_id) DO UPDATE
                       SET denied = drift_counts.denied + excluded.denied,
                           out_of_scope = drift_counts.out_of_scope + excluded.out_of_scope
                     RETURNING denied, out_of_scope, alerted_at",
                )
                .bind(mandate.to_string())
                .bind(tenant.to_string())
                .bind(count(add.denied)?)
                .bind(count(add.out_of_scope)?)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| store_error(e, "drift count"))?;
                let total = |column: &str| -> Result<u64, StoreError> {
                    let n: i64 = row.try_get(column).map_err(corrupt)?;
                    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
                };
                let totals = ::mandate_store::DriftTotals {
                    denied: total("denied")?,
                    out_of_scope: total("out_of_scope")?,
                };
                let alerted: Option<i64> = row.try_get("alerted_at").map_err(corrupt)?;
                let reached = threshold > 0 && totals.denied.saturating_add(totals.out_of_scope) >= threshold;
                let claimed = if reached && alerted.is_none() {
                    ::sqlx::query(
                        "UPDATE drift_counts SET alerted_at = $1 WHERE mandate_id = $2 AND alerted_at IS NULL",
                    )
                    .bind(micros(now))
                    .bind(mandate.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .rows_affected()
                        == 1
                } else {
                    false
                };
                tx.commit().await.map_err(unavailable)?;
                Ok(claimed.then_some(totals))
            }

            async fn spend(
                &self,
                tenant: TenantId,
                mandate: MandateId,
                calls: u64,
                amount: u64,
                limits: &::mandate_domain::Budgets,
            ) -> Result<Option<::mandate_domain::Usage>, StoreError> {
                let calls = i64::try_from(calls).map_err(|_| StoreError::Corrupt("call count out of range".into()))?;
                let amount = i64::try_from(amount).map_err(|_| StoreError::Corrupt("amount out of range".into()))?;
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                ::sqlx::query(
                    "INSERT INTO mandate_usage (mandate_id, tenant_id, calls, amount) VALUES ($1, $2, 0, 0)
                     ON CONFLICT (mandate_id) DO NOTHING",
                )
                .bind(mandate.to_string())
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "mandate usage"))?;
                let row = ::sqlx::query(
                    "UPDATE mandate_usage SET calls = calls + $3, amount = amount + $4
                     WHERE mandate_id = $1 AND tenant_id = $2
                       AND ($5 < 0 OR calls + $3 <= $5)
                       AND ($6 < 0 OR amount + $4 <= $6)
                     RETURNING calls, amount",
                )
                .bind(mandate.to_string())
                .bind(tenant.to_string())
                .bind(calls)
                .bind(amount)
                .bind(limit_or_none(limits.max_calls))
                .bind(limit_or_none(limits.max_amount))
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                let Some(row) = row else { return Ok(None) };
                let calls: i64 = row.try_get("calls").map_err(corrupt)?;
                let amount: i64 = row.try_get("amount").map_err(corrupt)?;
                Ok(Some(::mandate_domain::Usage {
                    calls: u64::try_from(calls).unwrap_or(0),
                    amount: u64::try_from(amount).unwrap_or(0),
                }))
            }

            async fn hold_for_approval(
                &self,
                approval: &::mandate_domain::Approval,
                now: DateTime<Utc>,
            ) -> Result<::mandate_domain::Approval, StoreError> {
                let call = &approval.call;
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                // Live rows past their expiry no longer hold the call's place.
                let stale = ::sqlx::query(
                    "SELECT doc FROM approvals
                     WHERE tenant_id = $1 AND mandate_id = $2 AND agent_id = $3 AND tool = $4
                       AND arguments_hash = $5 AND status IN ('pending', 'approved') AND expires_at <= $6",
                )
                .bind(call.tenant_id.to_string())
                .bind(call.mandate_id.to_string())
                .bind(call.agent_id.to_string())
                .bind(&call.tool)
                .bind(&call.arguments_hash)
                .bind(micros(now))
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
                for row in &stale {
                    let mut old = approval_row(row)?;
                    let was = old.status.as_str();
                    old.status = ::mandate_domain::ApprovalStatus::Expired;
                    put_approval_doc(&mut *tx, &old, was).await?;
                }
                let live = ::sqlx::query(
                    "SELECT doc FROM approvals
                     WHERE tenant_id = $1 AND mandate_id = $2 AND agent_id = $3 AND tool = $4
                       AND arguments_hash = $5 AND status IN ('pending', 'approved')",
                )
                .bind(call.tenant_id.to_string())
                .bind(call.mandate_id.to_string())
                .bind(call.agent_id.to_string())
                .bind(&call.tool)
                .bind(&call.arguments_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
                if let Some(row) = live {
                    let held = approval_row(&row)?;
                    tx.commit().await.map_err(unavailable)?;
                    return Ok(held);
                }
                ::sqlx::query(
                    "INSERT INTO approvals (id, tenant_id, mandate_id, agent_id, tool, arguments_hash, status, expires_at, doc)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(approval.id.to_string())
                .bind(call.tenant_id.to_string())
                .bind(call.mandate_id.to_string())
                .bind(call.agent_id.to_string())
                .bind(&call.tool)
                .bind(&call.arguments_hash)
                .bind(approval.status.as_str())
                .bind(micros(approval.expires_at))
                .bind(to_text(approval)?)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "live approval for this call"))?;
                tx.commit().await.map_err(unavailable)?;
                Ok(approval.clone())
            }

            async fn approval(
                &self,
                tenant: TenantId,
                id: ::mandate_types::ApprovalId,
            ) -> Result<Option<::mandate_domain::Approval>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM approvals WHERE id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(approval_row).transpose()
            }

            async fn list_approvals(
                &self,
                tenant: TenantId,
                filter: &::mandate_store::ApprovalFilter,
                page: &PageRequest,
            ) -> Result<Page<::mandate_domain::Approval>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM approvals
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR id > $2)
                       AND ($3 IS NULL OR status = $3)
                       AND ($4 IS NULL OR mandate_id = $4)
                     ORDER BY id LIMIT $5",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.mandate.map(|m| m.to_string()))
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                let approvals = rows.iter().map(approval_row).collect::<Result<Vec<_>, _>>()?;
                Ok(page.page(approvals, |a| a.id.to_string()))
            }

            async fn decide_approval(
                &self,
                tenant: TenantId,
                id: ::mandate_types::ApprovalId,
                approve: bool,
                by: &str,
                comment: Option<&str>,
                now: DateTime<Utc>,
            ) -> Result<Option<::mandate_domain::Approval>, StoreError> {
                let Some(mut approval) = self.approval(tenant, id).await? else {
                    return Ok(None);
                };
                if approval.status_at(now) != ::mandate_domain::ApprovalStatus::Pending {
                    return Err(StoreError::VersionConflict);
                }
                approval.status = if approve {
                    ::mandate_domain::ApprovalStatus::Approved
                } else {
                    ::mandate_domain::ApprovalStatus::Denied
                };
                approval.decided_by = Some(by.to_owned());
                approval.decided_at = Some(now);
                approval.comment = comment.map(str::to_owned);
                if put_approval_doc(&mut *self.writer().await?, &approval, "pending").await? {
                    Ok(Some(approval))
                } else {
                    Err(StoreError::VersionConflict)
                }
            }

            async fn approved_call(
                &self,
                key: &::mandate_store::CallKey<'_>,
                now: DateTime<Utc>,
            ) -> Result<Option<::mandate_domain::Approval>, StoreError> {
                let row = ::sqlx::query(
                    "SELECT doc FROM approvals
                     WHERE tenant_id = $1 AND mandate_id = $2 AND agent_id = $3 AND tool = $4
                       AND arguments_hash = $5 AND status = 'approved' AND expires_at > $6",
                )
                .bind(key.tenant.to_string())
                .bind(key.mandate.to_string())
                .bind(key.agent.to_string())
                .bind(key.tool)
                .bind(key.arguments_hash)
                .bind(micros(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.as_ref().map(approval_row).transpose()
            }

            async fn use_approval(
                &self,
                tenant: TenantId,
                id: ::mandate_types::ApprovalId,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let Some(mut approval) = self.approval(tenant, id).await? else {
                    return Ok(false);
                };
                if approval.status_at(now) != ::mandate_domain::ApprovalStatus::Approved {
                    return Ok(false);
                }
                approval.status = ::mandate_domain::ApprovalStatus::Used;
                approval.used_at = Some(now);
                put_approval_doc(&mut *self.writer().await?, &approval, "approved").await
            }

            async fn record_proposal(&self, proposal: &::mandate_domain::Proposal) -> Result<(), StoreError> {
                ::sqlx::query(
                    "INSERT INTO proposals (id, tenant_id, mandate_id, status, doc) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(proposal.id.to_string())
                .bind(proposal.call.tenant_id.to_string())
                .bind(proposal.call.mandate_id.to_string())
                .bind(proposal.status.as_str())
                .bind(to_text(proposal)?)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "proposal"))?;
                Ok(())
            }

            async fn proposal(
                &self,
                tenant: TenantId,
                id: ::mandate_types::ProposalId,
            ) -> Result<Option<::mandate_domain::Proposal>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM proposals WHERE id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(proposal_row).transpose()
            }

            async fn list_proposals(
                &self,
                tenant: TenantId,
                filter: &::mandate_store::ProposalFilter,
                page: &PageRequest,
            ) -> Result<Page<::mandate_domain::Proposal>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM proposals
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR id > $2)
                       AND ($3 IS NULL OR status = $3)
                       AND ($4 IS NULL OR mandate_id = $4)
                     ORDER BY id LIMIT $5",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.mandate.map(|m| m.to_string()))
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                let proposals = rows.iter().map(proposal_row).collect::<Result<Vec<_>, _>>()?;
                Ok(page.page(proposals, |p| p.id.to_string()))
            }

            async fn start_proposal(
                &self,
                tenant: TenantId,
                id: ::mandate_types::ProposalId,
                by: &str,
                reject: bool,
                now: DateTime<Utc>,
            ) -> Result<Option<::mandate_domain::Proposal>, StoreError> {
                let Some(mut proposal) = self.proposal(tenant, id).await? else {
                    return Ok(None);
                };
                if proposal.status != ::mandate_domain::ProposalStatus::Recorded {
                    return Err(StoreError::VersionConflict);
                }
                proposal.status = if reject {
                    ::mandate_domain::ProposalStatus::Rejected
                } else {
                    ::mandate_domain::ProposalStatus::Executing
                };
                proposal.executed_by = Some(by.to_owned());
                proposal.executed_at = Some(now);
                let done = ::sqlx::query(
                    "UPDATE proposals SET status = $1, doc = $2 WHERE id = $3 AND tenant_id = $4 AND status = 'recorded'",
                )
                .bind(proposal.status.as_str())
                .bind(to_text(&proposal)?)
                .bind(id.to_string())
                .bind(tenant.to_string())
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                if done.rows_affected() == 1 {
                    Ok(Some(proposal))
                } else {
                    Err(StoreError::VersionConflict)
                }
            }

            async fn finish_proposal(
                &self,
                tenant: TenantId,
                id: ::mandate_types::ProposalId,
                succeeded: bool,
                outcome: &::serde_json::Value,
            ) -> Result<(), StoreError> {
                let Some(mut proposal) = self.proposal(tenant, id).await? else {
                    return Err(StoreError::Missing { what: "proposal".into() });
                };
                proposal.status = if succeeded {
                    ::mandate_domain::ProposalStatus::Executed
                } else {
                    ::mandate_domain::ProposalStatus::Failed
                };
                proposal.outcome = Some(outcome.clone());
                let done = ::sqlx::query(
                    "UPDATE proposals SET status = $1, doc = $2 WHERE id = $3 AND tenant_id = $4 AND status = 'executing'",
                )
                .bind(proposal.status.as_str())
                .bind(to_text(&proposal)?)
                .bind(id.to_string())
                .bind(tenant.to_string())
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                changed_once(done.rows_affected())
            }

            async fn claim_rollback_step(
                &self,
                tenant: TenantId,
                mandate: MandateId,
                call_seq: u64,
                by: &str,
                now: DateTime<Utc>,
            ) -> Result<::mandate_store::StepClaim, StoreError> {
                let seq = seq_param(call_seq)?;
                // One statement: a new row, or a failed one of the same mandate taken again.
                let claimed = ::sqlx::query(
                    "INSERT INTO rollback_steps (tenant_id, call_seq, mandate_id, state, claimed_by, claimed_at)
                     VALUES ($1, $2, $3, 'running', $4, $5)
                     ON CONFLICT (tenant_id, call_seq) DO UPDATE
                       SET state = 'running', claimed_by = excluded.claimed_by,
                           claimed_at = excluded.claimed_at, finished_at = NULL, outcome = NULL
                       WHERE rollback_steps.state = 'failed' AND rollback_steps.mandate_id = excluded.mandate_id
                     RETURNING call_seq",
                )
                .bind(tenant.to_string())
                .bind(seq)
                .bind(mandate.to_string())
                .bind(by)
                .bind(micros(now))
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "rollback step"))?;
                if claimed.is_some() {
                    return Ok(::mandate_store::StepClaim::Claimed);
                }
                let state: Option<String> = ::sqlx::query_scalar(
                    "SELECT state FROM rollback_steps WHERE tenant_id = $1 AND call_seq = $2",
                )
                .bind(tenant.to_string())
                .bind(seq)
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                Ok(match state.as_deref() {
                    Some("done") => ::mandate_store::StepClaim::Done,
                    // Running, or failed under another mandate (never ours to take).
                    _ => ::mandate_store::StepClaim::Running,
                })
            }

            async fn finish_rollback_step(
                &self,
                tenant: TenantId,
                call_seq: u64,
                succeeded: bool,
                outcome: &::serde_json::Value,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let seq = seq_param(call_seq)?;
                let state = if succeeded {
                    ::mandate_store::StepState::Done
                } else {
                    ::mandate_store::StepState::Failed
                };
                let done = ::sqlx::query(
                    "UPDATE rollback_steps SET state = $1, finished_at = $2, outcome = $3
                     WHERE tenant_id = $4 AND call_seq = $5 AND state = 'running'",
                )
                .bind(state.as_str())
                .bind(micros(now))
                .bind(to_text(outcome)?)
                .bind(tenant.to_string())
                .bind(seq)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                changed_once(done.rows_affected())
            }

            async fn rollback_steps(
                &self,
                tenant: TenantId,
                mandate: MandateId,
            ) -> Result<Vec<::mandate_store::RollbackStep>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT call_seq, state, claimed_by, claimed_at, finished_at, outcome FROM rollback_steps
                     WHERE tenant_id = $1 AND mandate_id = $2 ORDER BY call_seq",
                )
                .bind(tenant.to_string())
                .bind(mandate.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get("call_seq").map_err(corrupt)?;
                        let state: String = row.try_get("state").map_err(corrupt)?;
                        let finished: Option<i64> = row.try_get("finished_at").map_err(corrupt)?;
                        let outcome: Option<String> = row.try_get("outcome").map_err(corrupt)?;
                        Ok(::mandate_store::RollbackStep {
                            tenant_id: tenant,
                            call_seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative sequence number {seq}")))?,
                            mandate_id: mandate,
                            state: ::mandate_store::StepState::parse(&state)
                                .ok_or_else(|| StoreError::Corrupt(format!("rollback step state `{state}`")))?,
                            claimed_by: row.try_get("claimed_by").map_err(corrupt)?,
                            claimed_at: from_micros(row.try_get("claimed_at").map_err(corrupt)?)?,
                            finished_at: finished.map(from_micros).transpose()?,
                            outcome: outcome
                                .map(|o| ::serde_json::from_str(&o).map_err(|e| StoreError::Corrupt(e.to_string())))
                                .transpose()?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use sql_calls;
