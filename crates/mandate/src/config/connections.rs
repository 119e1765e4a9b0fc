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
    super::settle_named(
        "gateway.connection_provider",
        settings,
        ConnectionProviderSetting::settle,
        |p| &p.name,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::tests::file;
    use crate::config::Config;

    const GOOD: &str = "[[gateway.connection_provider]]\nname = \"calendar\"\n\
        issuer = \"https://as.example/t1\"\nclient_id = \"mandate\"\n\
        client_secret = \"calendar-client\"\nscopes = [\"calendar.read\"]\n";

    #[test]
    fn a_provider_is_read_with_its_default_metadata_url() {
        let (_dir, flags) = file(GOOD);
        let c = Config::load(&flags, &BTreeMap::new()).unwrap();
        let p = &c.gateway.connection_providers[0];
        assert_eq!(p.name, "calendar");
        assert_eq!(p.client_secret, "calendar-client");
        assert_eq!(
            p.provider.metadata_url,
            "https://as.example/.well-known/oauth-authorization-server/t1"
        );
        assert!(!p.provider.dangerous_allow_insecure_loopback);
        let none = Config::load(&file("").1, &BTreeMap::new()).unwrap();
        assert!(none.gateway.connection_providers.is_empty());
    }

    #[test]
    fn hostile_providers_are_refused_by_key() {
        for (bad, key) in [
            (
                GOOD.replace("https://as.example/t1", "http://as.example"),
                "issuer",
            ),
            (
                GOOD.replace("https://as.example/t1", "http://127.0.0.1:9"),
                "issuer",
            ),
            (
                GOOD.replace("name = \"calendar\"", "name = \"a b\""),
                "name",
            ),
            (GOOD.replace("name = \"calendar\"", "name = \"\""), "name"),
            (
                GOOD.replace(
                    "client_secret = \"calendar-client\"",
                    "client_secret = \"\"",
                ),
                "client_secret",
            ),
            (
                GOOD.replace("client_id = \"mandate\"", "client_id = \"\""),
                "issuer",
            ),
            (GOOD.replace("[\"calendar.read\"]", "[\"a b\"]"), "issuer"),
            (format!("{GOOD}metadata_url = \"ftp://x\"\n"), "issuer"),
            (
                format!("{GOOD}client_secret_value = \"s3cret\"\n"),
                "client_secret_value",
            ),
            (format!("{GOOD}{GOOD}"), "name"),
        ] {
            let (_dir, flags) = file(&bad);
            let e = Config::load(&flags, &BTreeMap::new())
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        // http on loopback only with the test switch.
        let local = GOOD.replace("https://as.example/t1", "http://127.0.0.1:9");
        let (_dir, flags) = file(&format!(
            "{local}dangerous_allow_insecure_loopback = true\n"
        ));
        assert!(Config::load(&flags, &BTreeMap::new()).is_ok());
    }
}
