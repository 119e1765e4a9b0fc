//! Signing people in with an external OpenID Provider: the relying party's side of the
//! authorization code flow with PKCE (RFC 7636, `S256`), for the console's
//! "Sign in with …".
//!
//! ```text
//!   start  ─► discovery (cached) ─► authorization_endpoint ? response_type=code
//!             &client_id &redirect_uri &scope &state &nonce &code_challenge (S256)
//!   finish ─► token_endpoint (code + code_verifier; client_secret_basic or _post)
//!          ─► id_token ─► Federation::verify_claims (JWKS cache, pinned alg, iss, aud, exp)
//!          ─► iat, azp, nonce, sub ─► VerifiedIdToken (the only way to read a claim)
//! ```
//!
//! Keys, discovery and the URL policy are those of [`Federation`]: one issuer, whose
//! audience is our `client_id`. Nothing here logs or returns the client secret, the
//! code or a token; errors carry at most short, quoted excerpts of what the provider
//! said.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mandate_types::Secret;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::claims::Claims;
use crate::error::untrusted;
use crate::federation::{FederatedIssuer, Federation, FederationConfigError, FederationOptions};
use crate::keys::random_id;

/// How long discovered endpoints are used before discovery is read again.
const ENDPOINTS_TTL_SECS: i64 = 3600;
/// Largest token response read.
const TOKEN_RESPONSE_MAX: usize = 64 * 1024;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic (RFC 6749 §2.3.1), the default.
    #[default]
    SecretBasic,
    /// `client_id` and `client_secret` in the form body.
    SecretPost,
}

/// One OpenID Provider and how we are registered with it.
#[derive(Debug, Clone)]
pub struct RelyingPartyConfig {
    /// The provider's exact `iss`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Where the provider sends the browser back (registered with the provider).
    pub redirect_uri: String,
    /// Requested scopes; `openid` is added when missing.
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
}

/// Why a sign-in with the provider failed. Messages are for the log; a person is
/// shown something plainer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Discovery, the token endpoint or the keys cannot be had.
    #[error("the identity provider cannot be used right now: {0}")]
    Unavailable(String),
    /// The provider refused the code (RFC 6749 §5.2 error), or answered nonsense.
    #[error("the identity provider refused the code: {0}")]
    Refused(String),
    /// The ID token failed a check.
    #[error("the ID token is refused: {0}")]
    IdToken(String),
}

/// What the browser is sent to, and what must be kept (server-side) until it returns.
#[derive(Debug)]
pub struct Authorization {
    pub url: Url,
    pub state: Secret<String>,
    pub nonce: Secret<String>,
    pub code_verifier: Secret<String>,
}

/// An ID token whose signature, issuer, audience, times and nonce were checked. The
/// only way to build one is [`RelyingParty::verify_id_token`].
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    subject: String,
    claims: Claims,
}

impl VerifiedIdToken {
    /// The provider's `sub`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The string claim `claim` (e.g. `email`), refused when `email_verified` is present
    /// and not true.
    pub fn verified_email(&self, claim: &str) -> Result<String, OidcError> {
        let email = self
            .claims
            .required_str(claim)
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
        match self.claims.get("email_verified") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::String(s)) if s == "true" => {}
            Some(_) => {
                return Err(OidcError::IdToken(
                    "the provider says the email is not verified".into(),
                ));
            }
        }
        Ok(email.to_owned())
    }
}

#[derive(Debug, Clone)]
struct Endpoints {
    authorization: Url,
    token: Url,
}

/// A registered client of one OpenID Provider. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RelyingParty {
    config: RelyingPartyConfig,
    federation: Federation,
    http: reqwest::Client,
    endpoints: Mutex<Option<(Arc<Endpoints>, i64)>>,
}

impl RelyingParty {
    /// Checks the configuration (the issuer and redirect URL under `options`' URL
    /// policy). Nothing is fetched yet.
    pub fn new(
        config: RelyingPartyConfig,
        options: FederationOptions,
    ) -> Result<RelyingParty, FederationConfigError> {
        let bad = |m: String| FederationConfigError::new(m);
        if config.client_id.is_empty() {
            return Err(bad("client_id is empty".into()));
        }
        if config.client_secret.expose().is_empty() {
            return Err(bad("the client secret is empty".into()));
        }
        Url::parse(&config.redirect_uri)
            .map_err(|e| bad(format!("the redirect URI is not a URL: {e}")))?;
        let timeout = options.fetch_timeout;
        let issuer = FederatedIssuer::new(config.issuer.clone(), vec![config.client_id.clone()]);
        let federation = Federation::new(vec![issuer], options)?;
        let http = provider_client(timeout)
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        Ok(RelyingParty {
            config,
            federation,
            http,
            endpoints: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// A fresh `state`, `nonce` and PKCE verifier, and the provider's authorization URL
    /// carrying them (the verifier only as its S256 challenge).
    pub async fn start(&self, now: i64) -> Result<Authorization, OidcError> {
        let endpoints = self.endpoints(now).await?;
        let fresh = || random_id("").map_err(|e| OidcError::Unavailable(e.to_string()));
        let (state, nonce) = (fresh()?, fresh()?);
        let code_verifier = format!("{}{}", fresh()?, fresh()?);
        let challenge = pkce_challenge(&code_verifier);
        let mut scopes: Vec<&str> = self.config.scopes.iter().map(String::as_str).collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        let mut url = endpoints.authorization.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Authorization {
            url,
            state: Secret::new(state),
            nonce: Secret::new(nonce),
            code_verifier: Secret::new(code_verifier),
        })
    }

    /// Redeems `code` at the token endpoint and verifies the ID token it returns.
    pub async fn finish(
        &self,
        code: &str,
        code_verifier: &Secret<String>,
        nonce: &Secret<String>,
        now: i64,
    ) -> Result<VerifiedIdToken, OidcError> {
        let id_token = self.redeem(code, code_verifier, now).await?;
        self.verify_id_token(id_token.expose(), nonce.expose(), now)
            .await
    }

    /// The ID token checks (OpenID Connect Core §3.1.3.7), before any claim is used:
    /// signature with a key of the provider's JWKS under a pinned asymmetric algorithm,
    /// `iss`, `aud` naming our client (and `azp` our client when present or when `aud`
    /// names others), `exp` unexpired and `iat` present and not in the future (60 s
    /// skew), `nonce` equal to ours, `sub` present.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: &str,
        now: i64,
    ) -> Result<VerifiedIdToken, OidcError> {
        let (_, claims) =
            self.federation
                .verify_claims(id_token, now)
                .await
                .map_err(|e| match e {
                    crate::TokenError::Unavailable(m) => OidcError::Unavailable(m),
                    other => OidcError::IdToken(other.to_string()),
                })?;
        let bad = |m: String| OidcError::IdToken(m);
        if claims
            .time("iat")
            .map_err(|e| bad(e.to_string()))?
            .is_none()
        {
            return Err(bad("claim `iat` is missing".into()));
        }
        let audiences = claims.audiences().map_err(|e| bad(e.to_string()))?;
        let azp = claims.str("azp").map_err(|e| bad(e.to_string()))?;
        match azp {
            Some(azp) if azp != self.config.client_id => {
                return Err(bad(format!(
                    "claim `azp` names another client, {}",
                    untrusted(azp)
                )));
            }
            None if audiences.len() > 1 => {
                return Err(bad(
                    "claim `aud` names several audiences and there is no `azp`".into(),
                ));
            }
            _ => {}
        }
        match claims.str("nonce").map_err(|e| bad(e.to_string()))? {
            Some(n) if same(n, nonce) => {}
            Some(_) => return Err(bad("claim `nonce` is not the one we sent".into())),
            None => return Err(bad("claim `nonce` is missing".into())),
        }
        let subject = claims
            .required_str("sub")
            .map_err(|e| bad(e.to_string()))?
            .to_owned();
        Ok(VerifiedIdToken { subject, claims })
    }

    /// The authorization and token endpoints, from discovery, cached for an hour.
    async fn endpoints(&self, now: i64) -> Result<Arc<Endpoints>, OidcError> {
        let mut cached = self.endpoints.lock().await;
        if let Some((e, at)) = cached.as_ref()
            && now.saturating_sub(*at) < ENDPOINTS_TTL_SECS
            && *at <= now.saturating_add(ENDPOINTS_TTL_SECS)
        {
            return Ok(e.clone());
        }
        let doc = self
            .federation
            .discovery(&self.config.issuer)
            .await
            .map_err(OidcError::Unavailable)?;
        let endpoint = |name: &str| -> Result<Url, OidcError> {
            let Some(Value::String(url)) = doc.get(name) else {
                return Err(OidcError::Unavailable(format!(
                    "the discovery document has no `{name}`"
                )));
            };
            self.federation
                .check_endpoint(url)
                .map_err(|m| OidcError::Unavailable(format!("`{name}`: {m}")))
        };
        let endpoints = Arc::new(Endpoints {
            authorization: endpoint("authorization_endpoint")?,
            token: endpoint("token_endpoint")?,
        });
        *cached = Some((endpoints.clone(), now));
        Ok(endpoints)
    }

    /// The token request (RFC 6749 §4.1.3 + RFC 7636 §4.5); returns the `id_token`.
    async fn redeem(
        &self,
        code: &str,
        code_verifier: &Secret<String>,
        now: i64,
    ) -> Result<Secret<String>, OidcError> {
        let endpoints = self.endpoints(now).await?;
        // The serializer is not `Send`: finish the body before anything awaits.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.config.redirect_uri)
                .append_pair("code_verifier", code_verifier.expose());
            if self.config.client_auth == ClientAuth::SecretPost {
                form.append_pair("client_id", &self.config.client_id)
                    .append_pair("client_secret", self.config.client_secret.expose());
            }
            form.finish()
        };
        let mut request = self
            .http
            .post(endpoints.token.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if self.config.client_auth == ClientAuth::SecretBasic {
            // RFC 6749 §2.3.1: each part form-encoded before Base64.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                enc(&self.config.client_id),
                enc(self.config.client_secret.expose())
            );
            request = request.header(
                reqwest::header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(pair)),
            );
        }
        let response = request.body(body).send().await.map_err(|e| {
            OidcError::Unavailable(format!("the token endpoint: {}", e.without_url()))
        })?;
        let status = response.status();
        let body = read_capped(response, TOKEN_RESPONSE_MAX).await?;
        let doc = match mandate_jose::parse_json_strict(&body) {
            Ok(Value::Object(doc)) => doc,
            _ => {
                return Err(OidcError::Refused(format!(
                    "the token endpoint answered {status} without a JSON object"
                )));
            }
        };
        if status != reqwest::StatusCode::OK {
            let code = match doc.get("error") {
                Some(Value::String(e)) => untrusted(e),
                _ => "no `error`".to_owned(),
            };
            return Err(OidcError::Refused(format!(
                "the token endpoint answered {status} ({code})"
            )));
        }
        match doc.get("id_token") {
            Some(Value::String(t)) if !t.is_empty() => Ok(Secret::new(t.clone())),
            _ => Err(OidcError::Refused(
                "the token response has no `id_token` (is `openid` among the scopes?)".into(),
            )),
        }
    }
}

/// The HTTP client for a provider's endpoints: bounded in time, redirects never
/// followed (a token request must not be replayed elsewhere).
pub(crate) fn provider_client(
    timeout: std::time::Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The S256 code challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Constant-time comparison (of digests, so lengths leak nothing).
fn same(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, OidcError> {
    let too_big = || OidcError::Refused(format!("the token response is larger than {max} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(too_big());
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OidcError::Unavailable(format!("the token endpoint: {}", e.without_url())))?
    {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn nonces_compare_in_full() {
        assert!(same("n-1", "n-1"));
        assert!(!same("n-1", "n-2"));
        assert!(!same("n-1", "n-"));
    }
}
