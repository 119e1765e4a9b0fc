//! Mandate as an OAuth client of an upstream service's authorization server: the
//! person's connection to a tool server (authorization code + PKCE `S256`, RFC 6749
//! §4.1 and RFC 7636), refreshed with its refresh token (RFC 6749 §6) and revoked at
//! the provider (RFC 7009) when the person disconnects.
//!
//! ```text
//!   metadata ─► RFC 8414 document (cached an hour): issuer = the configured one,
//!               authorization / token endpoints (https, or http on loopback for tests),
//!               revocation endpoint if any, S256 among the challenge methods if listed
//!   connect  ─► authorization_endpoint ? response_type=code &client_id &redirect_uri
//!               &scope &state &code_challenge (S256)
//!   redeem   ─► token_endpoint (code + code_verifier, client_secret_basic) ─► TokenSet
//!   refresh  ─► token_endpoint (refresh_token)                             ─► TokenSet
//!   revoke   ─► revocation_endpoint (token + token_type_hint)
//! ```
//!
//! What the provider answers is parsed once into a typed value ([`Metadata`],
//! [`TokenSet`]); nothing here logs or returns a token or the client secret, and
//! errors carry at most short, quoted excerpts of what the provider said.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mandate_types::Secret;
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::untrusted;
use crate::federation::check_url;

/// How long a provider's metadata is used before it is read again.
const METADATA_TTL_SECS: i64 = 3600;
/// The largest metadata document or token response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// The longest token accepted from a provider.
const MAX_TOKEN: usize = 8 * 1024;
/// The longest lifetime taken from `expires_in` (ten years): beyond it, nonsense.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// One upstream provider and how Mandate is registered with it (the client secret
/// is not here: the broker unseals it for each request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The provider's exact issuer identifier.
    pub issuer: String,
    /// Where its metadata is; default the RFC 8414 well-known URL of `issuer`.
    pub metadata_url: String,
    pub client_id: String,
    /// Asked for at connection.
    pub scopes: Vec<String>,
    /// `http://` on a loopback IP literal allowed (tests only).
    pub dangerous_allow_insecure_loopback: bool,
}

impl ProviderConfig {
    /// The RFC 8414 §3.1 metadata URL of an issuer: the well-known path inserted
    /// between the host and the issuer's path.
    pub fn well_known(issuer: &str) -> Result<String, ProviderError> {
        let url = Url::parse(issuer)
            .map_err(|e| ProviderError::Config(format!("the issuer is not a URL: {e}")))?;
        let path = url.path().trim_end_matches('/');
        let mut metadata = url.clone();
        metadata.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
        Ok(metadata.to_string())
    }
}

/// Why talking to a provider failed. Never carries a token or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the upstream provider's configuration is refused: {0}")]
    Config(String),
    /// Its metadata or an endpoint cannot be had right now.
    #[error("the upstream provider cannot be used right now: {0}")]
    Unavailable(String),
    /// It answered with an OAuth error (RFC 6749 §5.2) or with something unusable.
    #[error("the upstream provider refused: {0}")]
    Refused(String),
}

/// What the provider's metadata says, checked (RFC 8414 §2, §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub revocation_endpoint: Option<Url>,
}

impl Metadata {
    /// Parses a metadata document: a JSON object naming `issuer` exactly, with
    /// authorization and token endpoints under the URL policy; if it lists
    /// `code_challenge_methods_supported`, `S256` must be among them.
    pub fn parse(body: &[u8], issuer: &str, allow_loopback: bool) -> Result<Metadata, String> {
        let Ok(Value::Object(doc)) = mandate_jose::parse_json_strict(body) else {
            return Err("the metadata is not a JSON object".into());
        };
        match doc.get("issuer") {
            Some(Value::String(i)) if i == issuer => {}
            Some(Value::String(i)) => {
                return Err(format!(
                    "the metadata names the issuer {}, not the configured one",
                    untrusted(i)
                ));
            }
            _ => return Err("the metadata has no `issuer`".into()),
        }
        let endpoint = |name: &str| -> Result<Option<Url>, String> {
            match doc.get(name) {
                None => Ok(None),
                Some(Value::String(u)) => check_url(u, allow_loopback)
                    .map(Some)
                    .map_err(|e| format!("`{name}`: {e}")),
                Some(_) => Err(format!("`{name}` is not a string")),
            }
        };
        let required =
            |name: &str| endpoint(name)?.ok_or_else(|| format!("the metadata has no `{name}`"));
        match doc.get("code_challenge_methods_supported") {
            None => {}
            Some(Value::Array(methods)) if methods.iter().any(|m| m == "S256") => {}
            Some(_) => return Err("the provider does not support PKCE with S256".into()),
        }
        Ok(Metadata {
            authorization_endpoint: required("authorization_endpoint")?,
            token_endpoint: required("token_endpoint")?,
            revocation_endpoint: endpoint("revocation_endpoint")?,
        })
    }
}

/// A successful token response (RFC 6749 §5.1), parsed: a bearer access token, its
/// lifetime if given, a refresh token if given, the granted scope if given.
pub struct TokenSet {
    pub access_token: Secret<String>,
    /// Seconds from the response; `None`: the provider did not say.
    pub expires_in: Option<i64>,
    pub refresh_token: Option<Secret<String>>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSet {
    /// Parses a token endpoint's answer. A status other than 200, a body that is not
    /// a JSON object, a token type other than `Bearer`, a token that is empty, too
    /// long or holds a control character or space, or a lifetime that is not a
    /// positive integer: refused.
    pub fn parse(status: u16, body: &[u8]) -> Result<TokenSet, String> {
        let Ok(Value::Object(doc)) = mandate_jose::parse_json_strict(body) else {
            return Err(format!(
                "the token endpoint answered {status} without a JSON object"
            ));
        };
        if status != 200 {
            let code = match doc.get("error") {
                Some(Value::String(e)) => untrusted(e),
                _ => "no `error`".to_owned(),
            };
            return Err(format!("the token endpoint answered {status} ({code})"));
        }
        match doc.get("token_type") {
            Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
            Some(Value::String(t)) => {
                return Err(format!("the token type {} is not Bearer", untrusted(t)));
            }
            _ => return Err("the token response has no `token_type`".into()),
        }
        let access_token =
            token(&doc, "access_token")?.ok_or("the token response has no `access_token`")?;
        let refresh_token = token(&doc, "refresh_token")?;
        let expires_in = match doc.get("expires_in") {
            None => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(s) if s > 0 && s <= MAX_EXPIRES_IN => Some(s),
                _ => return Err("`expires_in` is not a positive number of seconds".into()),
            },
            Some(_) => return Err("`expires_in` is not a number".into()),
        };
        let scope = match doc.get("scope") {
            None => None,
            Some(Value::String(s)) if s.len() <= 4096 && !s.chars().any(char::is_control) => {
                Some(s.clone())
            }
            Some(_) => return Err("`scope` is not a short string".into()),
        };
        Ok(TokenSet {
            access_token,
            expires_in,
            refresh_token,
            scope,
        })
    }
}

fn token(doc: &Map<String, Value>, name: &str) -> Result<Option<Secret<String>>, String> {
    match doc.get(name) {
        None => Ok(None),
        Some(Value::String(t))
            if !t.is_empty() && t.len() <= MAX_TOKEN && t.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(Secret::new(t.clone())))
        }
        Some(_) => Err(format!("`{name}` is not a usable token")),
    }
}

/// The S256 challenge of a verifier, a fresh verifier and a fresh `state`.
pub fn pkce_pair() -> Result<(Secret<String>, String), ProviderError> {
    let fresh =
        || crate::keys::random_id("").map_err(|e| ProviderError::Unavailable(e.to_string()));
    let verifier = format!("{}{}", fresh()?, fresh()?);
    let challenge = crate::oidc::pkce_challenge(&verifier);
    Ok((Secret::new(verifier), challenge))
}

/// One upstream provider. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Provider {
    config: ProviderConfig,
    http: reqwest::Client,
    metadata: Mutex<Option<(Arc<Metadata>, i64)>>,
}

impl Provider {
    /// Checks the configuration (URLs under the URL policy, a client id, scopes of
    /// one word each). Nothing is fetched yet.
    pub fn new(config: ProviderConfig, timeout: Duration) -> Result<Provider, ProviderError> {
        let bad = |m: String| ProviderError::Config(m);
        let loopback = config.dangerous_allow_insecure_loopback;
        check_url(&config.issuer, loopback).map_err(|e| bad(format!("`issuer`: {e}")))?;
        check_url(&config.metadata_url, loopback)
            .map_err(|e| bad(format!("`metadata_url`: {e}")))?;
        if config.client_id.is_empty() || config.client_id.chars().any(char::is_control) {
            return Err(bad(
                "`client_id` is empty or holds a control character".into()
            ));
        }
        check_scopes(&config.scopes)?;
        let http = crate::oidc::provider_client(timeout)
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        Ok(Provider {
            config,
            http,
            metadata: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Where to send the person: the authorization request (RFC 6749 §4.1.1) with
    /// the S256 challenge of the caller's verifier.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
        now: i64,
    ) -> Result<Url, ProviderError> {
        let metadata = self.metadata(now).await?;
        let mut url = metadata.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    /// Redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &Secret<String>,
        redirect_uri: &str,
        secret: &Secret<String>,
        now: i64,
    ) -> Result<TokenSet, ProviderError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose()),
        ];
        self.token_request(&form, secret, now).await
    }

    /// Refreshes (RFC 6749 §6). The answer may carry a new refresh token (rotation).
    pub async fn refresh(
        &self,
        refresh_token: &Secret<String>,
        secret: &Secret<String>,
        now: i64,
    ) -> Result<TokenSet, ProviderError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        self.token_request(&form, secret, now).await
    }

    /// Revokes a token at the provider (RFC 7009 §2.1); `false` when its metadata
    /// names no revocation endpoint. Any 200 is success (§2.2: even for a token it
    /// did not know).
    pub async fn revoke(
        &self,
        token: &Secret<String>,
        hint: &str,
        secret: &Secret<String>,
        now: i64,
    ) -> Result<bool, ProviderError> {
        let metadata = self.metadata(now).await?;
        let Some(endpoint) = metadata.revocation_endpoint.clone() else {
            return Ok(false);
        };
        let form = [
            ("token", token.expose().as_str()),
            ("token_type_hint", hint),
        ];
        let (status, _) = self.post(endpoint, &form, secret).await?;
        if status == 200 {
            Ok(true)
        } else {
            Err(ProviderError::Refused(format!(
                "the revocation endpoint answered {status}"
            )))
        }
    }

    async fn token_request(
        &self,
        form: &[(&str, &str)],
        secret: &Secret<String>,
        now: i64,
    ) -> Result<TokenSet, ProviderError> {
        let endpoint = self.metadata(now).await?.token_endpoint.clone();
        let (status, body) = self.post(endpoint, form, secret).await?;
        TokenSet::parse(status, &body).map_err(ProviderError::Refused)
    }

    async fn post(
        &self,
        endpoint: Url,
        form: &[(&str, &str)],
        secret: &Secret<String>,
    ) -> Result<(u16, Vec<u8>), ProviderError> {
        post_form(
            &self.http,
            endpoint,
            form,
            Some((&self.config.client_id, secret)),
        )
        .await
    }

    /// The metadata, cached for an hour.
    async fn metadata(&self, now: i64) -> Result<Arc<Metadata>, ProviderError> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref()
            && now.saturating_sub(*at) < METADATA_TTL_SECS
            && *at <= now
        {
            return Ok(m.clone());
        }
        let url = &self.config.metadata_url;
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {}", e.without_url())))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(ProviderError::Unavailable(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let body = read_capped(response).await?;
        let metadata = Metadata::parse(
            &body,
            &self.config.issuer,
            self.config.dangerous_allow_insecure_loopback,
        )
        .map(Arc::new)
        .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))?;
        *cached = Some((metadata.clone(), now));
        Ok(metadata)
    }
}

/// Scopes as configured: each one non-empty word of printable ASCII.
pub(crate) fn check_scopes(scopes: &[String]) -> Result<(), ProviderError> {
    if scopes
        .iter()
        .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ProviderError::Config(
            "a scope is one non-empty word".into(),
        ));
    }
    Ok(())
}

/// POSTs a form to a provider's endpoint, with HTTP Basic client authentication when a
/// client id and secret are given (RFC 6749 §2.3.1: each part form-encoded before
/// Base64). The body and the header are marked sensitive; nothing is logged.
pub(crate) async fn post_form(
    http: &reqwest::Client,
    endpoint: Url,
    form: &[(&str, &str)],
    client: Option<(&str, &Secret<String>)>,
) -> Result<(u16, Vec<u8>), ProviderError> {
    // The serializer is not `Send`: finish the body before anything awaits.
    let body = {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            serializer.append_pair(k, v);
        }
        Secret::new(serializer.finish())
    };
    let mut request = http
        .post(endpoint)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if let Some((client_id, secret)) = client {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic =
            Secret::new(STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret.expose()))));
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Basic {}", basic.expose()))
                .map_err(|_| ProviderError::Config("the client secret cannot be sent".into()))?;
        authorization.set_sensitive(true);
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let response = request
        .body(body.expose().clone())
        .send()
        .await
        .map_err(|e| ProviderError::Unavailable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    Ok((status, read_capped(response).await?))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let too_big =
        || ProviderError::Refused(format!("an answer is larger than {MAX_RESPONSE} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Unavailable(e.without_url().to_string()))?
    {
        if body.len().saturating_add(chunk.len()) > MAX_RESPONSE {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub mod outbound;
#[cfg(test)]
mod tests;
