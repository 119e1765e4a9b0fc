//! Tenants, humans, agents and API tokens (`Directory`), and tool servers and tools
//! (`Catalog`), for both adapters. Expanded inside `sql_store!`, whose imports and
//! row helpers it uses.

macro_rules! sql_directory {
    ($store:ty, $db:ty) => {
        /// The agent's sponsors as rows (the caller removed the old ones).
        async fn put_sponsors(
            tx: &mut ::sqlx::Transaction<'_, $db>,
            agent: &Agent,
        ) -> Result<(), StoreError> {
            for human in &agent.sponsors {
                ::sqlx::query("INSERT INTO agent_sponsors (tenant_id, agent_id, human_id) VALUES ($1, $2, $3)")
                    .bind(agent.tenant_id.to_string())
                    .bind(agent.id.to_string())
                    .bind(human.to_string())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| store_error(e, "sponsor"))?;
            }
            Ok(())
        }

        #[async_trait]
        impl Directory for $store {
            async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
                ::sqlx::query("INSERT INTO tenants (id, name, created_at, doc) VALUES ($1, $2, $3, $4)")
                    .bind(tenant.id.to_string())
                    .bind(&tenant.name)
                    .bind(micros(tenant.created_at))
                    .bind(Json(tenant))
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(|e| store_error(e, "tenant"))?;
                Ok(())
            }

            async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM tenants WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM tenants WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn create_api_token(&self, token: &ApiToken) -> Result<(), StoreError> {
                ::sqlx::query("INSERT INTO api_tokens (id, tenant_id, token_hash, doc) VALUES ($1, $2, $3, $4)")
                    .bind(token.id.to_string())
                    .bind(token.tenant_id.to_string())
                    .bind(&token.token_hash)
                    .bind(Json(token))
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(|e| store_error(e, "API token"))?;
                Ok(())
            }

            async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM api_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn create_human(&self, human: &Human) -> Result<(), StoreError> {
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                ::sqlx::query("INSERT INTO humans (id, tenant_id, email, doc) VALUES ($1, $2, $3, $4)")
                    .bind(human.id.to_string())
                    .bind(human.tenant_id.to_string())
                    .bind(&human.email)
                    .bind(Json(human))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error(e, "human with this email"))?;
                let groups: ::std::collections::BTreeSet<&String> = human.groups.iter().collect();
                for group in groups {
                    ::sqlx::query("INSERT INTO human_groups (human_id, group_name) VALUES ($1, $2)")
                        .bind(human.id.to_string())
                        .bind(group)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| store_error(e, "group membership"))?;
                }
                tx.commit().await.map_err(unavailable)
            }

            async fn human(&self, tenant: TenantId, id: HumanId) -> Result<Option<Human>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM humans WHERE id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn list_humans(
                &self,
                tenant: TenantId,
                filter: &HumanFilter,
                page: &PageRequest,
            ) -> Result<Page<Human>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM humans h
                     WHERE h.tenant_id = $1
                       AND ($2 IS NULL OR h.id > $2)
                       AND ($3 IS NULL OR h.email = $3)
                       AND ($4 IS NULL OR EXISTS (
                           SELECT 1 FROM human_groups g WHERE g.human_id = h.id AND g.group_name = $4))
                     ORDER BY h.id LIMIT $5",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(filter.email.as_deref())
                .bind(filter.group.as_deref())
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(page.page(docs(&rows)?, |h: &Human| h.id.to_string()))
            }

            async fn create_agent(&self, agent: &Agent) -> Result<(), StoreError> {
                let fed = agent.credentials.federated.as_ref();
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                ::sqlx::query(
                    "INSERT INTO agents (id, tenant_id, name, owner_id, status, spiffe_id, fed_issuer, fed_subject, doc)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(agent.id.to_string())
                .bind(agent.tenant_id.to_string())
                .bind(&agent.name)
                .bind(agent.owner.to_string())
                .bind(json_text(&agent.status))
                .bind(agent.credentials.spiffe_id.as_deref())
                .bind(fed.map(|f| f.issuer.as_str()))
                .bind(fed.map(|f| f.subject.as_str()))
                .bind(Json(agent))
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "agent with this name, SPIFFE ID or federated identity"))?;
                put_sponsors(&mut tx, agent).await?;
                tx.commit().await.map_err(unavailable)
            }

            async fn agent(&self, tenant: TenantId, id: AgentId) -> Result<Option<Agent>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM agents WHERE id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError> {
                let fed = agent.credentials.federated.as_ref();
                let mut writer = self.writer().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *writer).await.map_err(unavailable)?;
                let done = ::sqlx::query(
                    "UPDATE agents SET name = $1, owner_id = $2, status = $3, spiffe_id = $4,
                         fed_issuer = $5, fed_subject = $6, doc = $7
                     WHERE id = $8 AND tenant_id = $9",
                )
                .bind(&agent.name)
                .bind(agent.owner.to_string())
                .bind(json_text(&agent.status))
                .bind(agent.credentials.spiffe_id.as_deref())
                .bind(fed.map(|f| f.issuer.as_str()))
                .bind(fed.map(|f| f.subject.as_str()))
                .bind(Json(agent))
                .bind(agent.id.to_string())
                .bind(agent.tenant_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "agent with this name, SPIFFE ID or federated identity"))?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Missing { what: format!("agent `{}`", agent.id) });
                }
                ::sqlx::query("DELETE FROM agent_sponsors WHERE agent_id = $1")
                    .bind(agent.id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                put_sponsors(&mut tx, agent).await?;
                tx.commit().await.map_err(unavailable)?;
                self.changed().await;
                Ok(())
            }

            async fn list_agents(
                &self,
                tenant: TenantId,
                filter: &AgentFilter,
                page: &PageRequest,
            ) -> Result<Page<Agent>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM agents
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR id > $2)
                       AND ($3 IS NULL OR owner_id = $3)
                       AND ($4 IS NULL OR status = $4)
                       AND ($5 IS NULL OR name = $5)
                       AND ($6 IS NULL OR owner_id = $6
                            OR id IN (SELECT agent_id FROM agent_sponsors WHERE tenant_id = $1 AND human_id = $6))
                     ORDER BY id LIMIT $7",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(filter.owner.map(|h| h.to_string()))
                .bind(filter.status.as_ref().and_then(json_text))
                .bind(filter.name.as_deref())
                .bind(filter.accountable.map(|h| h.to_string()))
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(page.page(docs(&rows)?, |a: &Agent| a.id.to_string()))
            }

            async fn agent_by_client_id(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM agents WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn agent_by_spiffe_id(&self, spiffe_id: &str) -> Result<Option<Agent>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM agents WHERE spiffe_id = $1")
                    .bind(spiffe_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn agent_by_federated(&self, issuer: &str, subject: &str) -> Result<Option<Agent>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM agents WHERE fed_issuer = $1 AND fed_subject = $2")
                    .bind(issuer)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }
        }

        #[async_trait]
        impl Catalog for $store {
            async fn create_tool_server(&self, server: &ToolServer) -> Result<(), StoreError> {
                ::sqlx::query("INSERT INTO tool_servers (id, tenant_id, name, doc) VALUES ($1, $2, $3, $4)")
                    .bind(server.id.to_string())
                    .bind(server.tenant_id.to_string())
                    .bind(&server.name)
                    .bind(Json(server))
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(|e| store_error(e, "tool server with this name"))?;
                self.changed().await;
                Ok(())
            }

            async fn tool_server(&self, tenant: TenantId, id: ToolServerId) -> Result<Option<ToolServer>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM tool_servers WHERE id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn update_tool_server(&self, server: &ToolServer) -> Result<(), StoreError> {
                let done = ::sqlx::query("UPDATE tool_servers SET doc = $1 WHERE id = $2 AND tenant_id = $3 AND name = $4")
                    .bind(Json(server))
                    .bind(server.id.to_string())
                    .bind(server.tenant_id.to_string())
                    .bind(&server.name)
                    .execute(&mut *self.writer().await?)
                    .await
                    .map_err(unavailable)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Missing { what: format!("tool server `{}`", server.id) });
                }
                self.changed().await;
                Ok(())
            }

            async fn list_tool_servers(&self, tenant: TenantId, page: &PageRequest) -> Result<Page<ToolServer>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM tool_servers WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(page.page(docs(&rows)?, |s: &ToolServer| s.id.to_string()))
            }

            async fn create_tool(&self, tool: &Tool) -> Result<(), StoreError> {
                // The server must exist in the tool's own tenant, not merely somewhere.
                let done = ::sqlx::query(
                    "INSERT INTO tools (id, tenant_id, server_id, name, risk_tier, doc)
                     SELECT $1, $2, $3, $4, $5, $6
                     WHERE EXISTS (SELECT 1 FROM tool_servers WHERE id = $3 AND tenant_id = $2)",
                )
                .bind(tool.id.to_string())
                .bind(tool.tenant_id.to_string())
                .bind(tool.server_id.to_string())
                .bind(&tool.name)
                .bind(tool.risk_tier.as_str())
                .bind(Json(tool))
                .execute(&mut *self.writer().await?)
                .await
                .map_err(|e| store_error(e, "tool with this name on this server"))?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Missing { what: format!("tool server `{}`", tool.server_id) });
                }
                self.changed().await;
                Ok(())
            }

            async fn tool(&self, tenant: TenantId, id: ToolId) -> Result<Option<Tool>, StoreError> {
                let row = ::sqlx::query("SELECT doc FROM tools WHERE id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(tenant.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(doc).transpose()
            }

            async fn update_tool(&self, tool: &Tool) -> Result<(), StoreError> {
                let done = ::sqlx::query(
                    "UPDATE tools SET risk_tier = $1, doc = $2 WHERE id = $3 AND tenant_id = $4",
                )
                .bind(tool.risk_tier.as_str())
                .bind(Json(tool))
                .bind(tool.id.to_string())
                .bind(tool.tenant_id.to_string())
                .execute(&mut *self.writer().await?)
                .await
                .map_err(unavailable)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Missing { what: format!("tool `{}`", tool.id) });
                }
                self.changed().await;
                Ok(())
            }

            async fn list_tools(&self, tenant: TenantId, filter: &ToolFilter, page: &PageRequest) -> Result<Page<Tool>, StoreError> {
                let rows = ::sqlx::query(
                    "SELECT doc FROM tools
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR id > $2)
                       AND ($3 IS NULL OR server_id = $3)
                       AND ($4 IS NULL OR risk_tier = $4)
                     ORDER BY id LIMIT $5",
                )
                .bind(tenant.to_string())
                .bind(page.after())
                .bind(filter.server.map(|s| s.to_string()))
                .bind(filter.risk_tier.map(|t| t.as_str()))
                .bind(limit_plus_one(page))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(page.page(docs(&rows)?, |t: &Tool| t.id.to_string()))
            }
        }
    };
}

pub(crate) use sql_directory;
