use mandate_domain::{Compensation, Principal, Tool, ToolServer, ToolServerTransport};
use mandate_store::{Page, PageRequest, ToolFilter};
use mandate_types::{DataClass, TenantId, ToolId, ToolServerId};

use crate::input::{check_label, check_tags, check_text, check_url};
use crate::{CoreError, NewTool, NewToolServer, Service, ToolServerUpdate, ToolUpdate};

impl Service {
    pub async fn create_tool_server(
        &self,
        caller: &Principal,
        new: NewToolServer,
    ) -> Result<ToolServer, CoreError> {
        let tenant = self.require_admin(caller)?;
        // No dots: the server name prefixes its tools' names (`bank.transfer`).
        check_label("name", &new.name, false)?;
        match &new.transport {
            ToolServerTransport::McpHttp { url } => check_url("transport.url", url)?,
            ToolServerTransport::Http { base_url } => check_url("transport.base_url", base_url)?,
            ToolServerTransport::McpStdio { command, args } => {
                if command.trim().is_empty() {
                    return Err(CoreError::invalid("`transport.command` must not be empty"));
                }
                check_text("transport.command", command, 1024)?;
                for a in args {
                    check_text("transport.args", a, 4096)?;
                }
            }
        }
        if let Some(r) = &new.credential_ref {
            // `secret:NAME`, `postgres-role:ROLE`, `connection:PROVIDER`,
            // `exchange:NAME`, or a bare secret name.
            let name = r
                .strip_prefix("secret:")
                .or_else(|| r.strip_prefix("postgres-role:"))
                .or_else(|| r.strip_prefix("connection:"))
                .or_else(|| r.strip_prefix("exchange:"))
                .unwrap_or(r);
            check_label("credential_ref", name, true)?;
        }
        let server = ToolServer {
            id: ToolServerId::generate(),
            tenant_id: tenant,
            name: new.name,
            transport: new.transport,
            credential_ref: new.credential_ref,
            step_up: new.step_up,
            created_at: self.clock.now(),
        };
        self.store.create_tool_server(&server).await?;
        Ok(server)
    }

    pub async fn tool_server(
        &self,
        caller: &Principal,
        id: ToolServerId,
    ) -> Result<ToolServer, CoreError> {
        self.require_admin(caller)?;
        self.store
            .tool_server(caller.tenant(), id)
            .await?
            .ok_or_else(|| CoreError::not_found("tool server", id))
    }

    /// Changes a tool server's operator settings.
    pub async fn update_tool_server(
        &self,
        caller: &Principal,
        id: ToolServerId,
        update: ToolServerUpdate,
    ) -> Result<ToolServer, CoreError> {
        let mut server = self.tool_server(caller, id).await?;
        if let Some(step_up) = update.step_up {
            server.step_up = step_up;
        }
        self.store.update_tool_server(&server).await?;
        Ok(server)
    }

    pub async fn list_tool_servers(
        &self,
        caller: &Principal,
        page: PageRequest,
    ) -> Result<Page<ToolServer>, CoreError> {
        let tenant = self.require_admin(caller)?;
        Ok(self.store.list_tool_servers(tenant, &page).await?)
    }

    pub async fn create_tool(&self, caller: &Principal, new: NewTool) -> Result<Tool, CoreError> {
        let tenant = self.require_admin(caller)?;
        check_label("name", &new.name, true)?;
        check_text("description", &new.description, 4096)?;
        check_tags(&new.tags)?;
        if !(new.input_schema.is_null() || new.input_schema.is_object()) {
            return Err(CoreError::invalid(
                "`input_schema` must be a JSON Schema object",
            ));
        }
        if let Some(pointer) = &new.amount_argument {
            check_pointer("amount_argument", pointer)?;
        }
        let Some(server) = self.store.tool_server(tenant, new.server_id).await? else {
            return Err(CoreError::invalid(format!(
                "`server_id`: tool server `{}` does not exist",
                new.server_id
            )));
        };
        if let Some(c) = &new.compensation {
            self.check_compensation(tenant, &format!("{}.{}", server.name, new.name), c)
                .await?;
        }
        let tool = Tool {
            id: ToolId::generate(),
            tenant_id: tenant,
            server_id: new.server_id,
            name: new.name,
            description: new.description,
            input_schema: new.input_schema,
            risk_tier: new
                .risk_tier
                .unwrap_or_else(|| new.annotations.default_tier()),
            annotations: new.annotations,
            tags: new.tags,
            data_class: new.data_class.unwrap_or(DataClass::Internal),
            amount_argument: new.amount_argument,
            compensation: new.compensation,
            created_at: self.clock.now(),
        };
        self.store.create_tool(&tool).await?;
        Ok(tool)
    }

    pub async fn tool(&self, caller: &Principal, id: ToolId) -> Result<Tool, CoreError> {
        self.require_admin(caller)?;
        self.store
            .tool(caller.tenant(), id)
            .await?
            .ok_or_else(|| CoreError::not_found("tool", id))
    }

    pub async fn update_tool(
        &self,
        caller: &Principal,
        id: ToolId,
        update: ToolUpdate,
    ) -> Result<Tool, CoreError> {
        let mut tool = self.tool(caller, id).await?;
        if let Some(tier) = update.risk_tier {
            tool.risk_tier = tier;
        }
        if let Some(tags) = update.tags {
            check_tags(&tags)?;
            tool.tags = tags;
        }
        if let Some(class) = update.data_class {
            tool.data_class = class;
        }
        if let Some(description) = update.description {
            check_text("description", &description, 4096)?;
            tool.description = description;
        }
        if let Some(pointer) = update.amount_argument {
            if pointer.is_empty() {
                tool.amount_argument = None;
            } else {
                check_pointer("amount_argument", &pointer)?;
                tool.amount_argument = Some(pointer);
            }
        }
        if let Some(compensation) = update.compensation {
            if let Some(c) = &compensation {
                let server = self
                    .store
                    .tool_server(tool.tenant_id, tool.server_id)
                    .await?
                    .ok_or_else(|| CoreError::not_found("tool server", tool.server_id))?;
                self.check_compensation(
                    tool.tenant_id,
                    &format!("{}.{}", server.name, tool.name),
                    c,
                )
                .await?;
            }
            tool.compensation = compensation;
        }
        self.store.update_tool(&tool).await?;
        Ok(tool)
    }

    /// A compensation's form, and that the tool it names is in the tenant's catalog
    /// (or is the tool itself, `own`): an unknown tool is refused.
    async fn check_compensation(
        &self,
        tenant: TenantId,
        own: &str,
        compensation: &Compensation,
    ) -> Result<(), CoreError> {
        compensation.check().map_err(CoreError::invalid)?;
        if compensation.tool == own {
            return Ok(());
        }
        let Some((server_name, tool_name)) = compensation.target() else {
            return Err(CoreError::invalid(
                "`compensation.tool` must name a tool as `server.tool`",
            ));
        };
        let unknown = || {
            CoreError::invalid(format!(
                "`compensation.tool`: tool `{}` is not in the catalog",
                compensation.tool
            ))
        };
        let mut server = None;
        let mut after = None;
        for _ in 0..100 {
            let page = PageRequest::new(after.take(), Some(PageRequest::MAX_LIMIT))
                .map_err(|e| CoreError::invalid(e.to_string()))?;
            let listed = self.store.list_tool_servers(tenant, &page).await?;
            server = listed.items.into_iter().find(|s| s.name == server_name);
            match (&server, listed.next) {
                (None, Some(cursor)) => after = Some(cursor.0),
                _ => break,
            }
        }
        let server = server.ok_or_else(unknown)?;
        let filter = ToolFilter {
            server: Some(server.id),
            risk_tier: None,
        };
        for _ in 0..100 {
            let page = PageRequest::new(after.take(), Some(PageRequest::MAX_LIMIT))
                .map_err(|e| CoreError::invalid(e.to_string()))?;
            let listed = self.store.list_tools(tenant, &filter, &page).await?;
            if listed.items.iter().any(|t| t.name == tool_name) {
                return Ok(());
            }
            match listed.next {
                Some(cursor) => after = Some(cursor.0),
                None => break,
            }
        }
        Err(unknown())
    }

    pub async fn list_tools(
        &self,
        caller: &Principal,
        filter: ToolFilter,
        page: PageRequest,
    ) -> Result<Page<Tool>, CoreError> {
        let tenant = self.require_admin(caller)?;
        Ok(self.store.list_tools(tenant, &filter, &page).await?)
    }
}

/// A JSON pointer (RFC 6901): `/`-separated tokens with `~0`/`~1` escapes only.
pub(crate) fn check_pointer(field: &str, pointer: &str) -> Result<(), CoreError> {
    if mandate_domain::is_json_pointer(pointer) {
        Ok(())
    } else {
        Err(CoreError::invalid(format!(
            "`{field}` must be a JSON pointer such as `/amount`"
        )))
    }
}
