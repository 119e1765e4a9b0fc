//! What callers send, parsed once at the edge. Every type rejects unknown fields.

use std::collections::{BTreeMap, BTreeSet};

use mandate_domain::{
    AgentCredentials, AgentStatus, Compensation, ConsentDecision, ToolAnnotations,
    ToolServerTransport,
};
use mandate_types::{DataClass, HumanId, RiskTier, ToolServerId};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::CoreError;

/// A new person.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHuman {
    pub display_name: String,
    pub email: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A new agent (workload identity).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Unique in the tenant: `a-z 0-9 . _ -`, 1 to 64 characters.
    pub name: String,
    /// The accountable human.
    pub owner: HumanId,
    /// Other people answerable for the agent (access reviews show it to them); at most
    /// 16, never the owner.
    #[serde(default)]
    pub sponsors: Vec<HumanId>,
    #[serde(default)]
    pub credentials: AgentCredentials,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Changes to an agent; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    pub status: Option<AgentStatus>,
    pub credentials: Option<AgentCredentials>,
    pub labels: Option<BTreeMap<String, String>>,
    /// Replaces the sponsors (`[]` removes them all).
    pub sponsors: Option<Vec<HumanId>>,
}

/// A new upstream.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToolServer {
    /// Unique in the tenant; prefixes its tools' names. `a-z 0-9 _ -`, 1 to 64 characters.
    pub name: String,
    pub transport: ToolServerTransport,
    /// A broker reference to the outbound credential (never the secret).
    pub credential_ref: Option<String>,
    /// Answer calls outside the caller's scope with a step-up challenge (HTTP 403
    /// `insufficient_scope`) when the person could add the tool. Default off.
    #[serde(default)]
    pub step_up: bool,
}

/// Operator settings of a tool server; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolServerUpdate {
    /// Answer calls outside the caller's scope with a step-up challenge (HTTP 403
    /// `insufficient_scope`) when the person could add the tool.
    pub step_up: Option<bool>,
}

/// A new tool on a server.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTool {
    pub server_id: ToolServerId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[serde(default)]
    pub annotations: ToolAnnotations,
    /// Defaults to the tier the annotations imply.
    pub risk_tier: Option<RiskTier>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Defaults to `internal`.
    pub data_class: Option<DataClass>,
    /// A JSON pointer to the call's spend in its arguments (e.g. `/amount_cents`).
    pub amount_argument: Option<String>,
    /// How a call of this tool is undone (the tool may name itself); absent: irreversible.
    pub compensation: Option<Compensation>,
}

/// Operator overrides for a tool; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolUpdate {
    pub risk_tier: Option<RiskTier>,
    pub tags: Option<BTreeSet<String>>,
    pub data_class: Option<DataClass>,
    pub description: Option<String>,
    /// A JSON pointer to the call's spend in its arguments; `""` clears it.
    pub amount_argument: Option<String>,
    /// How a call of this tool is undone; `null` declares it irreversible.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Compensation>)]
    pub compensation: Option<Option<Compensation>>,
}

/// A field that is present (`null` included): absent fields stay `None` by `default`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A consenter's answer to a mandate.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    pub decision: ConsentDecision,
    /// The terms hash the consenter was shown. When given, it must equal the mandate's,
    /// so nobody consents to terms they did not see.
    pub terms_hash: Option<String>,
    pub comment: Option<String>,
}

/// Ending a mandate (complete or revoke).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndRequest {
    pub reason: Option<String>,
}

pub(crate) fn check_label(field: &str, value: &str, allow_dot: bool) -> Result<(), CoreError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'_'
                || b == b'-'
                || (allow_dot && b == b'.')
        });
    if ok {
        Ok(())
    } else {
        let chars = if allow_dot {
            "a-z 0-9 . _ -"
        } else {
            "a-z 0-9 _ -"
        };
        Err(CoreError::invalid(format!(
            "`{field}` must be 1 to 64 characters of `{chars}`"
        )))
    }
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), CoreError> {
    if value.chars().count() > max || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CoreError::invalid(format!(
            "`{field}` must be at most {max} characters, without control characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_email(email: &str) -> Result<(), CoreError> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(CoreError::invalid("`email` is not an email address"))
    }
}

pub(crate) fn check_url(field: &str, url: &str) -> Result<(), CoreError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && url.len() <= 2048
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(CoreError::invalid(format!(
            "`{field}` must be an http:// or https:// URL"
        ))),
    }
}

/// JWK members that only a private (or symmetric) key has.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub(crate) fn check_credentials(c: &AgentCredentials) -> Result<(), CoreError> {
    if c.jwks.len() > 16 {
        return Err(CoreError::invalid(
            "`credentials.jwks` may hold at most 16 keys",
        ));
    }
    for (i, jwk) in c.jwks.iter().enumerate() {
        let Some(obj) = jwk.as_object() else {
            return Err(CoreError::invalid(format!(
                "`credentials.jwks[{i}]` must be a JSON object"
            )));
        };
        if !obj.get("kty").is_some_and(Value::is_string) {
            return Err(CoreError::invalid(format!(
                "`credentials.jwks[{i}]` has no `kty`"
            )));
        }
        if let Some(member) = PRIVATE_JWK_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(CoreError::invalid(format!(
                "`credentials.jwks[{i}]` holds private key material (`{member}`); register public keys only"
            )));
        }
    }
    if let Some(id) = &c.spiffe_id {
        let valid = id.len() <= 2048
            && id.strip_prefix("spiffe://").is_some_and(|rest| {
                let domain = rest.split('/').next().unwrap_or_default();
                !domain.is_empty()
                    && domain.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b == b'.'
                            || b == b'-'
                            || b == b'_'
                    })
                    && !rest.contains("//")
                    && !rest.ends_with('/')
                    && !rest.split('/').any(|seg| seg == "." || seg == "..")
            });
        if !valid {
            return Err(CoreError::invalid(
                "`credentials.spiffe_id` must be a SPIFFE ID (`spiffe://trust-domain/path`)",
            ));
        }
    }
    if let Some(fed) = &c.federated {
        check_url("credentials.federated.issuer", &fed.issuer)?;
        if fed.subject.is_empty() || fed.subject.len() > 255 {
            return Err(CoreError::invalid(
                "`credentials.federated.subject` must be 1 to 255 characters",
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), CoreError> {
    if labels.len() > 32 {
        return Err(CoreError::invalid("`labels` may hold at most 32 entries"));
    }
    for (k, v) in labels {
        check_label("labels", k, true)?;
        check_text("labels", v, 256)?;
    }
    Ok(())
}

pub(crate) fn check_tags(tags: &BTreeSet<String>) -> Result<(), CoreError> {
    if tags.len() > 32 {
        return Err(CoreError::invalid("`tags` may hold at most 32 tags"));
    }
    tags.iter().try_for_each(|t| check_label("tags", t, false))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn private_keys_are_refused() {
        let creds = AgentCredentials {
            jwks: vec![json!({"kty": "OKP", "crv": "Ed25519", "x": "abc", "d": "secret"})],
            ..Default::default()
        };
        let err = check_credentials(&creds).unwrap_err();
        assert!(err.to_string().contains("private key material"), "{err}");
    }

    #[test]
    fn spiffe_ids_are_checked() {
        for bad in [
            "spiffe://",
            "http://x/y",
            "spiffe://Example.org/a",
            "spiffe://a/../b",
            "spiffe://a//b",
            "spiffe://a/b/",
        ] {
            let creds = AgentCredentials {
                spiffe_id: Some(bad.into()),
                ..Default::default()
            };
            assert!(check_credentials(&creds).is_err(), "{bad}");
        }
        let good = AgentCredentials {
            spiffe_id: Some("spiffe://example.org/ns/prod/sa/bot".into()),
            ..Default::default()
        };
        check_credentials(&good).unwrap();
    }

    #[test]
    fn emails_and_labels() {
        check_email("a@b.co").unwrap();
        for bad in ["", "a", "a@b", "@b.co", "a b@c.d", "a@b@c.d"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        check_label("name", "travel-bot", false).unwrap();
        assert!(check_label("name", "Travel", false).is_err());
        assert!(check_label("name", "a.b", false).is_err());
        check_label("name", "a.b", true).unwrap();
    }
}
