//! Access reviews' marks on findings (`Reviews`), for both adapters. Expanded inside
//! `sql_store!`, whose imports and row helpers it uses.

macro_rules! sql_reviews {
    ($store:ty, $db:ty) => {
        fn mark_row(row: &DbRow) -> Result<::mandate_store::FindingMark, StoreError> {
            let text = |column: &str| -> Result<String, StoreError> { row.try_get(column).map_err(corrupt) };
            let parsed = |column: &str| -> Result<_, StoreError> {
                text(column)?.parse().map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))
            };
            Ok(::mandate_store::FindingMark {
                tenant_id: parsed("tenant_id")?,
                finding_id: text("finding_id")?,
                agent_id: text("agent_id")?
                    .parse()
                    .map_err(|e: ::mandate_types::IdError| StoreError::Corrupt(e.to_string()))?,
                kind: text("kind")?,
                subject: text("subject")?,
                status: text("status")?,
                comment: row.try_get("comment").map_err(corrupt)?,
                marked_by: text("marked_by")?,
                marked_at: from_micros(row.try_get("marked_at").map_err(corrupt)?)?,
            })
        }

        #[async_trait]
        impl ::mandate_store::Reviews for $store {
            async fn mark_finding(
                &self,
                mark: &::mandate_store::FindingMark,
                audit: &[NewEvent],
            ) -> Result<(), StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                let agent = ::sqlx::query("SELECT id FROM agents WHERE id = $1 AND tenant_id = $2")
                    .bind(mark.agent_id.to_string())
                    .bind(mark.tenant_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if agent.is_none() {
                    return Err(StoreError::Missing { what: format!("agent `{}`", mark.agent_id) });
                }
                ::sqlx::query(
                    "INSERT INTO review_marks (tenant_id, finding_id, agent_id, kind, subject, status, comment, marked_by, marked_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant_id, finding_id) DO UPDATE
                       SET agent_id = excluded.agent_id, kind = excluded.kind, subject = excluded.subject,
                           status = excluded.status, comment = excluded.comment,
                           marked_by = excluded.marked_by, marked_at = excluded.marked_at",
                )
                .bind(mark.tenant_id.to_string())
                .bind(&mark.finding_id)
                .bind(mark.agent_id.to_string())
                .bind(&mark.kind)
                .bind(&mark.subject)
                .bind(&mark.status)
                .bind(mark.comment.as_deref())
                .bind(&mark.marked_by)
                .bind(micros(mark.marked_at))
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "finding mark"))?;
                append_in(&mut tx, audit, mark.marked_at).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn finding_marks(
                &self,
                tenant: TenantId,
                agents: Option<&[AgentId]>,
            ) -> Result<Vec<::mandate_store::FindingMark>, StoreError> {
                let mut q = ::sqlx::QueryBuilder::<$db>::new(
                    "SELECT tenant_id, finding_id, agent_id, kind, subject, status, comment, marked_by, marked_at
                     FROM review_marks WHERE tenant_id = ",
                );
                q.push_bind(tenant.to_string());
                if let Some(agents) = agents {
                    if agents.is_empty() {
                        return Ok(Vec::new());
                    }
                    q.push(" AND agent_id IN (");
                    let mut ids = q.separated(", ");
                    for agent in agents {
                        ids.push_bind(agent.to_string());
                    }
                    q.push(")");
                }
                q.push(" ORDER BY finding_id");
                let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
                rows.iter().map(mark_row).collect()
            }
        }
    };
}

pub(crate) use sql_reviews;
