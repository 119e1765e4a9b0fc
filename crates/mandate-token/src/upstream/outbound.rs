//! Outbound token exchange: instead of a stored secret, the gateway obtains a token
//! for an upstream from the upstream's authorization server, presenting assertions
//! Mandate signs itself (published in its JWKS):
//!
//! ```text
//!   token_exchange (RFC 8693 §2.1)
//!     grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//!     subject_token      = JWT: iss Mandate, sub the person, aud, exp (60 s), jti
//!     actor_token        = JWT: iss Mandate, sub the agent, act {sub: Mandate},
//!                          mandate_id, aud, exp, jti
//!     *_token_type       = urn:ietf:params:oauth:token-type:jwt
//!     requested_token_type = urn:ietf:params:oauth:token-type:access_token
//!     audience / resource / scope as configured
//!     authorization_details = [{"type": "mandate", "mandate_id", "tool_server"}]
//!   jwt_bearer (RFC 7523 §2.1)
//!     grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
//!     assertion = JWT: iss Mandate, sub the person, aud, act {sub: the agent},
//!                 mandate_id, authorization_details, exp (60 s), jti
//!     scope / resource as configured
//! ```
//!
//! Client authentication at the endpoint is HTTP Basic when a client id and secret
//! are configured, none otherwise (RFC 7523 §3.1 leaves it optional). The answer is
//! parsed like any token response ([`TokenSet`]): a bearer access token only. What
//! this module builds and receives is never logged or returned to an agent.

use std::time::Duration;

use mandate_types::Secret;
use reqwest::Url;
use serde_json::{Map, Value, json};

use super::{ProviderError, TokenSet, check_scopes, post_form};
use crate::federation::check_url;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// How long an assertion Mandate signs for one request is valid.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// Which grant obtains the upstream's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundGrant {
    /// RFC 8693 token exchange: the person as subject, the agent (acting through
    /// Mandate) as actor.
    TokenExchange,
    /// RFC 7523 JWT bearer grant: one assertion about the person.
    JwtBearer,
}

impl OutboundGrant {
    pub fn parse(raw: &str) -> Option<OutboundGrant> {
        match raw {
            "token_exchange" => Some(OutboundGrant::TokenExchange),
            "jwt_bearer" => Some(OutboundGrant::JwtBearer),
            _ => None,
        }
    }
}

/// One upstream authorization server that issues tokens for Mandate's assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    pub token_endpoint: String,
    pub grant: OutboundGrant,
    /// The upstream's identifier: the assertions' `aud` and, for token exchange,
    /// the `audience` parameter. Default: the token endpoint.
    pub audience: Option<String>,
    /// RFC 8707 `resource`, if the upstream wants one.
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    /// Mandate's client id there, when the endpoint authenticates clients.
    pub client_id: Option<String>,
    /// `http://` on a loopback IP literal allowed (tests only).
    pub dangerous_allow_insecure_loopback: bool,
}

/// Whose token to obtain, for which mandate: what the assertions say.
#[derive(Debug, Clone)]
pub struct OnBehalf<'a> {
    /// Mandate's issuer (its public URL).
    pub issuer: &'a str,
    /// The person (`hum_…`).
    pub person: &'a str,
    /// The agent acting (`agt_…`).
    pub agent: &'a str,
    pub mandate_id: &'a str,
    pub tool_server: &'a str,
    pub now: i64,
}

/// Checked configuration and its HTTP client.
#[derive(Debug)]
pub struct Outbound {
    config: OutboundConfig,
    endpoint: Url,
    http: reqwest::Client,
}

impl Outbound {
    pub fn new(config: OutboundConfig, timeout: Duration) -> Result<Outbound, ProviderError> {
        let bad = |m: String| ProviderError::Config(m);
        let endpoint = check_url(
            &config.token_endpoint,
            config.dangerous_allow_insecure_loopback,
        )
        .map_err(|e| bad(format!("`token_endpoint`: {e}")))?;
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 2048 && !s.chars().any(char::is_control);
        for (key, value) in [
            ("audience", &config.audience),
            ("resource", &config.resource),
            ("client_id", &config.client_id),
        ] {
            if value.as_deref().is_some_and(|v| !printable(v)) {
                return Err(bad(format!(
                    "`{key}` is empty, too long or holds a control character"
                )));
            }
        }
        check_scopes(&config.scopes)?;
        let http = crate::oidc::provider_client(timeout)
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        Ok(Outbound {
            config,
            endpoint,
            http,
        })
    }

    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// The upstream's identifier in the assertions.
    fn audience(&self) -> &str {
        self.config
            .audience
            .as_deref()
            .unwrap_or(&self.config.token_endpoint)
    }

    /// The claims of the assertions for `who`: `(subject, actor)` for token
    /// exchange, `(assertion, None)` for the JWT bearer grant. Each gets its own of
    /// the two fresh `jtis`.
    pub fn claims(
        &self,
        who: &OnBehalf<'_>,
        jtis: [String; 2],
    ) -> (Map<String, Value>, Option<Map<String, Value>>) {
        let [first, second] = jtis;
        let base = |sub: &str, jti: String| -> Map<String, Value> {
            let mut c = Map::new();
            c.insert("iss".into(), json!(who.issuer));
            c.insert("sub".into(), json!(sub));
            c.insert("aud".into(), json!(self.audience()));
            c.insert("iat".into(), json!(who.now));
            c.insert("exp".into(), json!(who.now + ASSERTION_LIFETIME_SECS));
            c.insert("jti".into(), json!(jti));
            c
        };
        match self.config.grant {
            OutboundGrant::TokenExchange => {
                let subject = base(who.person, first);
                let mut actor = base(who.agent, second);
                actor.insert("act".into(), json!({"sub": who.issuer}));
                actor.insert("mandate_id".into(), json!(who.mandate_id));
                (subject, Some(actor))
            }
            OutboundGrant::JwtBearer => {
                let mut assertion = base(who.person, first);
                assertion.insert("act".into(), json!({"sub": who.agent}));
                assertion.insert("mandate_id".into(), json!(who.mandate_id));
                assertion.insert("authorization_details".into(), details(who));
                (assertion, None)
            }
        }
    }

    /// Asks for the token with the signed assertions (`actor` for token exchange
    /// only), authenticating with `secret` when a client id is configured.
    pub async fn obtain(
        &self,
        who: &OnBehalf<'_>,
        subject: &Secret<String>,
        actor: Option<&Secret<String>>,
        secret: Option<&Secret<String>>,
    ) -> Result<TokenSet, ProviderError> {
        let scope = self.config.scopes.join(" ");
        let details = details(who).to_string();
        let mut form: Vec<(&str, &str)> = Vec::new();
        match self.config.grant {
            OutboundGrant::TokenExchange => {
                let actor = actor.ok_or_else(|| {
                    ProviderError::Config("token exchange needs an actor token".into())
                })?;
                form.extend([
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", subject.expose().as_str()),
                    ("subject_token_type", JWT_TOKEN_TYPE),
                    ("actor_token", actor.expose().as_str()),
                    ("actor_token_type", JWT_TOKEN_TYPE),
                    ("requested_token_type", ACCESS_TOKEN_TYPE),
                    ("audience", self.audience()),
                    ("authorization_details", details.as_str()),
                ]);
            }
            OutboundGrant::JwtBearer => {
                form.extend([
                    ("grant_type", JWT_BEARER),
                    ("assertion", subject.expose().as_str()),
                ]);
            }
        }
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        if let Some(resource) = &self.config.resource {
            form.push(("resource", resource));
        }
        let client = match (&self.config.client_id, secret) {
            (Some(id), Some(secret)) => Some((id.as_str(), secret)),
            (Some(id), None) => {
                form.push(("client_id", id));
                None
            }
            (None, _) => None,
        };
        let (status, body) = post_form(&self.http, self.endpoint.clone(), &form, client).await?;
        TokenSet::parse(status, &body).map_err(ProviderError::Refused)
    }
}

/// What the token is for (RFC 9396 authorization details): this mandate, at this
/// tool server.
fn details(who: &OnBehalf<'_>) -> Value {
    json!([{
        "type": "mandate",
        "mandate_id": who.mandate_id,
        "tool_server": who.tool_server,
    }])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    fn config(grant: OutboundGrant) -> OutboundConfig {
        OutboundConfig {
            token_endpoint: "https://sts.example.com/token".into(),
            grant,
            audience: Some("https://crm.example.com".into()),
            resource: None,
            scopes: vec!["crm.read".into()],
            client_id: None,
            dangerous_allow_insecure_loopback: false,
        }
    }

    fn who() -> OnBehalf<'static> {
        OnBehalf {
            issuer: "https://mandate.example.com",
            person: "hum_1",
            agent: "agt_2",
            mandate_id: "mnd_3",
            tool_server: "crm",
            now: 1_000,
        }
    }

    #[test]
    fn token_exchange_names_the_person_as_subject_and_the_agent_as_actor() {
        let o =
            Outbound::new(config(OutboundGrant::TokenExchange), Duration::from_secs(5)).unwrap();
        let (subject, actor) = o.claims(&who(), ["j1".into(), "j2".into()]);
        let actor = actor.unwrap();
        assert_eq!(subject["sub"], "hum_1");
        assert_eq!(subject["iss"], "https://mandate.example.com");
        assert_eq!(subject["aud"], "https://crm.example.com");
        assert_eq!(subject["exp"], 1_060);
        assert!(subject.get("mandate_id").is_none());
        assert_eq!(actor["sub"], "agt_2");
        assert_eq!(actor["act"], json!({"sub": "https://mandate.example.com"}));
        assert_eq!(actor["mandate_id"], "mnd_3");
        assert_ne!(subject["jti"], actor["jti"]);
    }

    #[test]
    fn a_jwt_bearer_assertion_carries_the_agent_and_the_mandate() {
        let mut c = config(OutboundGrant::JwtBearer);
        c.audience = None;
        let o = Outbound::new(c, Duration::from_secs(5)).unwrap();
        let (assertion, actor) = o.claims(&who(), ["j1".into(), "j2".into()]);
        assert!(actor.is_none());
        assert_eq!(assertion["sub"], "hum_1");
        // Without an audience configured, the token endpoint is the audience (RFC
        // 7523 §3: it identifies the authorization server).
        assert_eq!(assertion["aud"], "https://sts.example.com/token");
        assert_eq!(assertion["act"], json!({"sub": "agt_2"}));
        assert_eq!(
            assertion["authorization_details"],
            json!([{"type": "mandate", "mandate_id": "mnd_3", "tool_server": "crm"}])
        );
    }

    #[test]
    fn hostile_settings_are_refused() {
        type Spoil = Box<dyn Fn(&mut OutboundConfig)>;
        let cases: Vec<Spoil> = vec![
            Box::new(|c| c.token_endpoint = "http://sts.example.com/token".into()),
            Box::new(|c| c.token_endpoint = "https://u:p@sts.example.com/token".into()),
            Box::new(|c| c.token_endpoint = "not a url".into()),
            Box::new(|c| c.audience = Some(String::new())),
            Box::new(|c| c.audience = Some("a\nb".into())),
            Box::new(|c| c.resource = Some("x".repeat(5_000))),
            Box::new(|c| c.client_id = Some("\u{0}".into())),
            Box::new(|c| c.scopes = vec!["two words".into()]),
            Box::new(|c| c.scopes = vec![String::new()]),
        ];
        for (i, spoil) in cases.iter().enumerate() {
            let mut c = config(OutboundGrant::TokenExchange);
            spoil(&mut c);
            let err = Outbound::new(c, Duration::from_secs(5)).unwrap_err();
            assert!(matches!(err, ProviderError::Config(_)), "case {i}: {err}");
        }
        assert_eq!(
            OutboundGrant::parse("token_exchange"),
            Some(OutboundGrant::TokenExchange)
        );
        assert_eq!(
            OutboundGrant::parse("jwt_bearer"),
            Some(OutboundGrant::JwtBearer)
        );
        assert_eq!(OutboundGrant::parse("password"), None);
    }
}
