use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mandate_types::{DataClass, RiskTier, TenantId, ToolId, ToolServerId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// How the gateway reaches an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolServerTransport {
    /// MCP over Streamable HTTP.
    McpHttp { url: String },
    /// MCP over stdio: a process the gateway spawns and supervises.
    McpStdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
    },
    /// A plain HTTP API, fronted at `/proxy/{server}/…`.
    Http { base_url: String },
}

/// An upstream the gateway fronts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ToolServer {
    pub id: ToolServerId,
    pub tenant_id: TenantId,
    /// Unique per tenant; namespaces its tools (`{server}.{tool}`).
    pub name: String,
    pub transport: ToolServerTransport,
    /// A broker reference to the outbound credential; never the secret itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<String>,
    /// Step-up authorization (MCP): a call to a tool of this server that is outside the
    /// caller's scope, and that the person could add, answers HTTP 403
    /// `insufficient_scope` with the scope a new consent needs. Off (the default), such
    /// a tool is refused exactly like one that does not exist.
    #[serde(default)]
    pub step_up: bool,
    pub created_at: DateTime<Utc>,
}

/// MCP tool annotations (hints), from which risk defaults are derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

impl ToolAnnotations {
    /// The risk tier the hints imply. MCP's defaults are pessimistic (a tool is assumed
    /// destructive and open-world unless it says otherwise), and so is this.
    pub fn default_tier(&self) -> RiskTier {
        if self.read_only_hint == Some(true) {
            return RiskTier::Read;
        }
        let destructive = self.destructive_hint.unwrap_or(true);
        let open_world = self.open_world_hint.unwrap_or(true);
        if destructive || open_world {
            RiskTier::HighImpact
        } else {
            RiskTier::Write
        }
    }
}

/// One action on a tool server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    pub id: ToolId,
    pub tenant_id: TenantId,
    pub server_id: ToolServerId,
    /// The tool's name on its server.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[serde(default)]
    pub annotations: ToolAnnotations,
    pub risk_tier: RiskTier,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    pub data_class: DataClass,
    /// Where the call's spend is in its arguments (a JSON pointer such as
    /// `/amount_cents`), counted against the mandate's amount budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_argument: Option<String>,
    /// How a call of this tool is undone (rollback); none: the tool is irreversible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<crate::Compensation>,
    pub created_at: DateTime<Utc>,
}

impl Tool {
    /// Whether a call of this tool can be undone: its operator declared a compensation.
    pub fn reversible(&self) -> bool {
        self.compensation.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_defaults_follow_the_annotations_pessimistically() {
        let hints = |ro, d, o| ToolAnnotations {
            read_only_hint: ro,
            destructive_hint: d,
            open_world_hint: o,
        };
        assert_eq!(hints(None, None, None).default_tier(), RiskTier::HighImpact);
        assert_eq!(hints(Some(true), None, None).default_tier(), RiskTier::Read);
        assert_eq!(
            hints(Some(false), Some(false), Some(false)).default_tier(),
            RiskTier::Write
        );
        assert_eq!(
            hints(None, Some(false), Some(true)).default_tier(),
            RiskTier::HighImpact
        );
    }
}
