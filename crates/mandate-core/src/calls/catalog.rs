//! The catalog as the gateway builds it from what upstreams list: a tool the catalog
//! does not know is created with the risk tier its annotations imply; the operator may
//! raise or lower it afterwards, and a later change of annotations only ever raises it.

use std::collections::HashMap;

use mandate_domain::{Tool, ToolAnnotations, ToolServer};
use mandate_store::{PageRequest, StoreError, ToolFilter};
use mandate_types::{DataClass, RiskTier, TenantId, ToolId};
use serde_json::Value;

use super::{CallError, Calls, Target};

/// One callable thing: its server, its catalog entry, and how the upstream describes it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub server: ToolServer,
    pub tool: Tool,
    /// The upstream's tool definition (`Value::Null` for the `/` entries).
    pub definition: Value,
}

impl Listing {
    /// What a call on it is on.
    pub fn target(&self) -> Target<'_> {
        Target {
            server: &self.server,
            tool: &self.tool,
        }
    }
}

impl Calls {
    /// Moves whenever the catalog changes (a snapshot built at an older one is stale).
    pub fn catalog_generation(&self) -> u64 {
        self.inner.service.store().catalog_generation()
    }

    /// Every tool server of the tenant.
    pub async fn tool_servers(&self, tenant: TenantId) -> Result<Vec<ToolServer>, CallError> {
        let mut out = Vec::new();
        let mut after = None;
        for _ in 0..100 {
            let page = PageRequest::new(after, Some(PageRequest::MAX_LIMIT))
                .map_err(|e| CallError::Invalid(e.to_string()))?;
            let got = self
                .inner
                .service
                .store()
                .list_tool_servers(tenant, &page)
                .await?;
            out.extend(got.items);
            match got.next {
                Some(cursor) => after = Some(cursor.0),
                None => break,
            }
        }
        Ok(out)
    }

    /// The catalog's entries for `server`, by name.
    pub async fn catalogued(
        &self,
        server: &ToolServer,
    ) -> Result<HashMap<String, Tool>, CallError> {
        let mut out = HashMap::new();
        let mut after = None;
        for _ in 0..100 {
            let page = PageRequest::new(after, Some(PageRequest::MAX_LIMIT))
                .map_err(|e| CallError::Invalid(e.to_string()))?;
            let filter = ToolFilter {
                server: Some(server.id),
                risk_tier: None,
            };
            let got = self
                .inner
                .service
                .store()
                .list_tools(server.tenant_id, &filter, &page)
                .await?;
            out.extend(got.items.into_iter().map(|t| (t.name.clone(), t)));
            match got.next {
                Some(cursor) => after = Some(cursor.0),
                None => break,
            }
        }
        Ok(out)
    }

    /// Makes sure the catalog has an entry for a listed tool (`known`: the server's
    /// entries as read); a changed annotation only ever raises the tier the operator
    /// left. `tier_floor` fixes the tier of the `/` entries.
    pub async fn ensure_listed(
        &self,
        server: &ToolServer,
        known: &HashMap<String, Tool>,
        name: &str,
        definition: &Value,
        tier_floor: Option<RiskTier>,
    ) -> Result<Tool, CallError> {
        let store = self.inner.service.store();
        let annotations: ToolAnnotations = definition
            .get("annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        let implied = tier_floor.unwrap_or_else(|| annotations.default_tier());
        if let Some(tool) = known.get(name) {
            if tier_floor.is_none() && tool.annotations != annotations && implied > tool.risk_tier {
                let mut raised = tool.clone();
                raised.annotations = annotations;
                raised.risk_tier = implied;
                store.update_tool(&raised).await?;
                return Ok(raised);
            }
            return Ok(tool.clone());
        }
        let tool = Tool {
            id: ToolId::generate(),
            tenant_id: server.tenant_id,
            server_id: server.id,
            name: name.to_owned(),
            description: definition
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(4096)
                .collect(),
            input_schema: definition
                .get("inputSchema")
                .cloned()
                .unwrap_or(Value::Null),
            annotations,
            risk_tier: implied,
            tags: Default::default(),
            data_class: DataClass::Internal,
            amount_argument: None,
            compensating_tool: None,
            created_at: chrono::Utc::now(),
        };
        match store.create_tool(&tool).await {
            Ok(()) => Ok(tool),
            // Another replica catalogued it first: use theirs.
            Err(StoreError::Conflict { .. }) => {
                self.catalogued(server).await?.remove(name).ok_or_else(|| {
                    CallError::Unavailable("the catalog changed concurrently".into())
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}
