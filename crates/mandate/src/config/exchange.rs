//! `[[gateway.token_exchange]]`: upstream authorization servers that issue tokens for
//! assertions Mandate signs (RFC 8693 token exchange, RFC 7523 JWT bearer grant), for
//! tool servers whose `credential_ref` is `exchange:NAME`. A client secret, when the
//! endpoint wants one, is a vault secret named here, never written in the file.

use mandate_token::upstream::outbound::{Outbound, OutboundConfig, OutboundGrant};
use serde::Deserialize;

use super::ConfigError;

/// One exchange as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenExchangeSetting {
    /// What tool servers name it by: `credential_ref = "exchange:NAME"`.
    name: String,
    /// The upstream authorization server's token endpoint (`https`).
    token_endpoint: String,
    /// `token_exchange` (RFC 8693) or `jwt_bearer` (RFC 7523).
    grant: String,
    /// The upstream's identifier: the assertions' audience (default: the token
    /// endpoint).
    audience: Option<String>,
    /// RFC 8707 resource, if the upstream wants one.
    resource: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// Mandate's client id there, if it authenticates clients.
    client_id: Option<String>,
    /// The vault secret holding Mandate's client secret there (needs `client_id`).
    client_secret: Option<String>,
    /// Allow `http://` to a loopback IP literal (tests only). Default false.
    #[serde(default)]
    dangerous_allow_insecure_loopback: bool,
}

/// An exchange, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchangeSettings {
    pub name: String,
    pub outbound: OutboundConfig,
    pub client_secret: Option<String>,
}

impl TokenExchangeSetting {
    fn settle(self, index: usize) -> Result<TokenExchangeSettings, ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Value {
            origin: format!("config key `gateway.token_exchange[{index}].{key}`"),
            message: message.to_owned(),
        };
        if !mandate_types::is_plain_name(&self.name) {
            return Err(bad(
                "name",
                "must be a plain name (letters, digits, `-`, `_`, `.`)",
            ));
        }
        let grant = OutboundGrant::parse(&self.grant)
            .ok_or_else(|| bad("grant", "must be `token_exchange` or `jwt_bearer`"))?;
        if let Some(secret) = &self.client_secret {
            if secret.is_empty() || secret.len() > 128 {
                return Err(bad(
                    "client_secret",
                    "must name a vault secret (PUT /v1/secrets/NAME), not hold the secret",
                ));
            }
            if self.client_id.is_none() {
                return Err(bad("client_secret", "needs a `client_id`"));
            }
        }
        let outbound = OutboundConfig {
            token_endpoint: self.token_endpoint,
            grant,
            audience: self.audience,
            resource: self.resource,
            scopes: self.scopes,
            client_id: self.client_id,
            dangerous_allow_insecure_loopback: self.dangerous_allow_insecure_loopback,
        };
        // The checks the exchange makes when it is built, at load time.
        Outbound::new(outbound.clone(), std::time::Duration::from_secs(1))
            .map_err(|e| bad("token_endpoint", &e.to_string()))?;
        Ok(TokenExchangeSettings {
            name: self.name,
            outbound,
            client_secret: self.client_secret,
        })
    }
}

/// Settles every exchange; names must be unique.
pub(super) fn settle_all(
    settings: Vec<TokenExchangeSetting>,
) -> Result<Vec<TokenExchangeSettings>, ConfigError> {
    super::settle_named(
        "gateway.token_exchange",
        settings,
        TokenExchangeSetting::settle,
        |x| &x.name,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::tests::file;
    use crate::config::Config;

    const GOOD: &str = "[[gateway.token_exchange]]\nname = \"crm\"\n\
        token_endpoint = \"https://sts.example/token\"\ngrant = \"token_exchange\"\n\
        audience = \"https://crm.example\"\nscopes = [\"crm.read\"]\n";

    #[test]
    fn an_exchange_is_read() {
        let (_dir, flags) = file(GOOD);
        let c = Config::load(&flags, &BTreeMap::new()).unwrap();
        let x = &c.gateway.token_exchanges[0];
        assert_eq!(x.name, "crm");
        assert_eq!(x.outbound.audience.as_deref(), Some("https://crm.example"));
        assert_eq!(x.client_secret, None);
        let none = Config::load(&file("").1, &BTreeMap::new()).unwrap();
        assert!(none.gateway.token_exchanges.is_empty());
    }

    #[test]
    fn hostile_exchanges_are_refused_by_key() {
        for (bad, key) in [
            (
                GOOD.replace("https://sts.example/token", "http://sts.example/token"),
                "token_endpoint",
            ),
            (
                GOOD.replace("https://sts.example/token", "http://127.0.0.1:9/t"),
                "token_endpoint",
            ),
            (GOOD.replace("name = \"crm\"", "name = \"a b\""), "name"),
            (GOOD.replace("\"token_exchange\"", "\"password\""), "grant"),
            (
                GOOD.replace("[\"crm.read\"]", "[\"a b\"]"),
                "token_endpoint",
            ),
            (
                format!("{GOOD}client_secret = \"crm-secret\"\n"),
                "client_secret",
            ),
            (
                format!("{GOOD}client_id = \"m\"\nclient_secret = \"\"\n"),
                "client_secret",
            ),
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
        let local = GOOD.replace("https://sts.example/token", "http://127.0.0.1:9/t");
        let (_dir, flags) = file(&format!(
            "{local}dangerous_allow_insecure_loopback = true\n"
        ));
        assert!(Config::load(&flags, &BTreeMap::new()).is_ok());
    }
}
