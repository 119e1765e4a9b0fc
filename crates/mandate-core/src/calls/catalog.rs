//! The catalog as the gateway builds it from what upstreams list: a tool the catalog
//! does not know is created with the risk tier its annotations imply; the operator may
//! raise or lower it afterwards, and a later change of annotations only ever raises it.

use std::collections::HashMap;
use std::time::Duration;

use mandate_domain::{Tool, ToolAnnotations, ToolServer, ToolServerTransport};
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

/// How long the consent screen waits for an upstream to list its tools; past it, the
/// screen offers what the catalog holds and says which servers did not answer.
pub const OFFER_LISTING_TIMEOUT: Duration = Duration::from_secs(5);

impl Calls {
    /// Lists the tenant's MCP servers upstream (only `only`, when named) and catalogues
    /// what they list, so that a consent screen offers the tools of a server no agent
    /// has called yet, with their tiers. The servers are listed side by side, each
    /// answer awaited at most `within`. Returns the names of the servers that could not
    /// be listed: their tools stay as last catalogued.
    ///
    /// Nothing is held while an upstream is awaited: no store connection, no lock (the
    /// catalogue writes start once the answer is in).
    pub async fn catalogue_upstreams(
        &self,
        tenant: TenantId,
        only: Option<&str>,
        within: Duration,
    ) -> Result<Vec<String>, CallError> {
        let mut listing = tokio::task::JoinSet::new();
        for server in self.tool_servers(tenant).await? {
            if only.is_some_and(|name| name != server.name)
                || matches!(server.transport, ToolServerTransport::Http { .. })
            {
                continue;
            }
            let forwarder = self.inner.forwarder.clone();
            listing.spawn(async move {
                let listed = forwarder.catalogue(&server, within).await;
                (server.name, listed)
            });
        }
        let mut unlisted = Vec::new();
        while let Some(done) = listing.join_next().await {
            match done {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(e))) => {
                    tracing::warn!(server = %name, error = %e, "cannot list an upstream for the consent screen; offering the catalog as it is");
                    unlisted.push(name);
                }
                Err(e) => {
                    tracing::error!(error = %e, "listing an upstream for the consent screen failed");
                    return Err(CallError::Unavailable(
                        "the upstreams could not be listed".into(),
                    ));
                }
            }
        }
        unlisted.sort();
        Ok(unlisted)
    }

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
            compensation: None,
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
