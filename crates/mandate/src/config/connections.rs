//! `[[gateway.connection_provider]]`: upstream OAuth providers with which people
//! connect their own accounts, for tool servers whose `credential_ref` is
//! `connection:NAME`. Mandate's client secret at each provider is a vault secret
//! (`PUT /v1/secrets/NAME`), named here, never written in the file.

use mandate_token::upstream::ProviderConfig;
use serde::Deserialize;

use super::ConfigError;

/// One provider as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionProviderSetting {
    /// What tool servers name it by: `credential_ref = "connection:NAME"`.
    name: String,
    /// The provider's exact issuer identifier (`https`).
    issuer: String,
    /// Its authorization server metadata (RFC 8414); default the well-known URL of
    /// `issuer` (`/.well-known/oauth-authorization-server`).
    metadata_url: Option<String>,
    /// Mandate's client id there (registered with the redirect URI
    /// `{public_url}/ui/connections/callback`).
    client_id: String,
    /// The vault secret holding Mandate's client secret there.
    client_secret: String,
    /// Scopes asked for when a person connects.
    #[serde(default)]
    scopes: Vec<String>,
    /// Allow `http://` to a loopback IP literal (tests only). Default false.
    #[serde(default)]
    dangerous_allow_insecure_loopback: bool,
}

/// A provider, checked: the provider's settings and the vault secret's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionProviderSettings {
    pub name: String,
    pub provider: ProviderConfig,
    pub client_secret: String,
}

impl ConnectionProviderSetting {
    pub(super) fn settle(self, index: usize) -> Result<ConnectionProviderSettings, ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Value {
            origin: format!("config key `gateway.connection_provider[{index}].{key}`"),
            message: message.to_owned(),
        };
        if !mandate_types::is_plain_name(&self.name) {
            return Err(bad(
                "name",
                "must be a plain name (letters, digits, `-`, `_`, `.`)",
            ));
        }
        if self.client_secret.is_empty() || self.client_secret.len() > 128 {
            return Err(bad(
                "client_secret",
                "must name a vault secret (PUT /v1/secrets/NAME), not hold the secret",
            ));
        }
        let metadata_url = match self.metadata_url {
            Some(url) => url,
            None => ProviderConfig::well_known(&self.issuer)
                .map_err(|e| bad("issuer", &e.to_string()))?,
        };
        let provider = ProviderConfig {
            issuer: self.issuer,
            metadata_url,
            client_id: self.client_id,
            scopes: self.scopes,
            dangerous_allow_insecure_loopback: self.dangerous_allow_insecure_loopback,
        };
        // The same checks the provider makes when it is built, at load time.
        mandate_token::upstream::Provider::new(provider.clone(), std::time::Duration::from_secs(1))
            .map_err(|e| bad("issuer", &e.to_string()))?;
        Ok(ConnectionProviderSettings {
            name: self.name,
            provider,
            client_secret: self.client_secret,
        })
    }
}

/// Settles every provider; names must be unique.
pub(super) fn settle_all(
    settings: Vec<ConnectionProviderSetting>,
) -> Result<Vec<ConnectionProviderSettings>, ConfigError> {
    let mut out: Vec<ConnectionProviderSettings> = Vec::new();
    for (index, setting) in settings.into_iter().enumerate() {
        let settled = setting.settle(index)?;
        if out.iter().any(|p| p.name == settled.name) {
            return Err(ConfigError::Value {
                origin: format!("config key `gateway.connection_provider[{index}].name`"),
                message: format!("`{}` is named twice", settled.name),
            });
        }
        out.push(settled);
    }
    Ok(out)
}
