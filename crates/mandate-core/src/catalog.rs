use mandate_domain::{Principal, Tool, ToolServer, ToolServerTransport};
use mandate_store::{Page, PageRequest, ToolFilter};
use mandate_types::{DataClass, ToolId, ToolServerId};

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
            // `secret:NAME`, `postgres-role:ROLE`, or a bare secret name.
            let name = r
                .strip_prefix("secret:")
                .or_else(|| r.strip_prefix("postgres-role:"))
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
        if let Some(c) = &new.compensating_tool {
            check_label("compensating_tool", c, true)?;
        }
        if let Some(pointer) = &new.amount_argument {
            check_pointer("amount_argument", pointer)?;
        }
        if self
            .store
            .tool_server(tenant, new.server_id)
            .await?
            .is_none()
        {
            return Err(CoreError::invalid(format!(
                "`server_id`: tool server `{}` does not exist",
                new.server_id
            )));
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
            compensating_tool: new.compensating_tool,
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
        self.store.update_tool(&tool).await?;
        Ok(tool)
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

/// A JSON pointer (RFC 6901): empty, or `/`-separated tokens with `~0`/`~1` escapes only.
pub(crate) fn check_pointer(field: &str, pointer: &str) -> Result<(), CoreError> {
    let bad = || {
        CoreError::invalid(format!(
            "`{field}` must be a JSON pointer such as `/amount`"
        ))
    };
    if pointer.len() > 256 || !pointer.starts_with('/') {
        return Err(bad());
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c.is_control() {
            return Err(bad());
        }
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(bad());
        }
    }
    Ok(())
}
