//! Federated OIDC issuers: agents that authenticate with a JWT from a trusted external
//! issuer (a CI system's OIDC token, a cloud workload identity, a Kubernetes service
//! account token).
//!
//! ```text
//!   token ─► peek header (kid, alg) + unverified `iss` ─► configured FederatedIssuer?
//!                                                              │
//!          ┌─────────── per-issuer key cache (async Mutex) ◄───┘
//!          │   fresh (< cache_ttl)            → keys
//!          │   stale / unknown kid            → refetch, at most once per refetch interval
//!          │   refetch failed                 → last good keys, until older than max_stale
//!          ▼
//!   mandate_jose::verify (alg pinned by key + issuer's algs) ─► iss, aud, exp/nbf/iat ─► (iss, sub)
//! ```
//!
//! Keys come from the issuer's `jwks_uri`: configured, or read from OpenID Connect
//! Discovery at `{issuer}/.well-known/openid-configuration`, whose `issuer` must
//! equal the configured one exactly. Fetches use HTTPS (plain HTTP only to a loopback
//! IP literal, and only when [`FederationOptions::dangerous_allow_insecure_loopback`]
//! is set), follow no redirects, time out, and read at most a capped body.
//!
//! The cache's clock is the `now` given to [`Federation::verify`], so tests move time
//! by passing a different number.

use std::sync::Arc;
use std::time::Duration;

use mandate_jose::{Alg, Jwk, Rules};
use reqwest::Url;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::claims::{ClaimError, Claims, TimeRules};
use crate::error::{TokenError, untrusted};
use crate::spiffe::{pin_alg, unverified_claim_str};

/// Longest token we look at.
const TOKEN_MAX: usize = 16 * 1024;
/// Most keys we read from one JWK Set.
const JWKS_MAX_KEYS: usize = 256;
/// The OpenID Connect Discovery path, appended to the issuer.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// One trusted external issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIssuer {
    /// The exact `iss` of its tokens (an `https` URL).
    pub issuer: String,
    /// Where its keys are; `None` to read `jwks_uri` from OpenID Connect Discovery.
    pub jwks_uri: Option<String>,
    /// `aud` must name at least one of these.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this issuer (never HS256).
    pub algs: Vec<Alg>,
    /// How long fetched keys are used before they are fetched again.
    pub cache_ttl: Duration,
}

impl FederatedIssuer {
    /// An issuer found by discovery, accepting RS256, PS256, ES256, ES384 and EdDSA,
    /// keys cached for five minutes.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> FederatedIssuer {
        FederatedIssuer {
            issuer: issuer.into(),
            jwks_uri: None,
            audiences,
            algs: vec![Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::EdDSA],
            cache_ttl: Duration::from_secs(300),
        }
    }
}

/// Limits for fetching keys. [`Default`] is what production should use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationOptions {
    /// Whole-request timeout for each fetch (connect, headers and body). Default 5 s.
    pub fetch_timeout: Duration,
    /// Largest discovery document or JWK Set read. Default 256 KiB.
    pub max_response_bytes: usize,
    /// Least time between two fetches for one issuer beyond the TTL refresh: a token
    /// with an unknown `kid`, or a retry after a failed fetch. Default 30 s, so
    /// forged `kid`s cannot make us hammer the issuer.
    pub refetch_interval: Duration,
    /// Keys older than this are not used even when a refresh fails. Default 24 h.
    pub max_stale: Duration,
    /// Allow `http://` to loopback IP literals (tests, a local issuer). Default false.
    pub dangerous_allow_insecure_loopback: bool,
}

impl Default for FederationOptions {
    fn default() -> Self {
        FederationOptions {
            fetch_timeout: Duration::from_secs(5),
            max_response_bytes: 256 * 1024,
            refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 60 * 60),
            dangerous_allow_insecure_loopback: false,
        }
    }
}

/// A federation configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FederationConfigError(String);

impl FederationConfigError {
    pub(crate) fn new(msg: impl Into<String>) -> FederationConfigError {
        FederationConfigError(msg.into())
    }
}

fn config_err(msg: impl Into<String>) -> FederationConfigError {
    FederationConfigError::new(msg)
}

/// The trusted issuers and their key caches. Cheap to share behind an `Arc`;
/// every method takes `&self`.
#[derive(Debug)]
pub struct Federation {
    issuers: Vec<IssuerState>,
    http: reqwest::Client,
    options: FederationOptions,
}

#[derive(Debug)]
struct IssuerState {
    config: FederatedIssuer,
    jwks_uri: Option<Url>,
    discovery_uri: Url,
    // One lock per issuer, held across a fetch: concurrent misses wait for the one
    // fetch in flight instead of starting their own.
    cache: Mutex<KeyCache>,
}

#[derive(Debug, Default)]
struct KeyCache {
    keys: Option<CachedKeys>,
    last_fetch_attempt: Option<i64>,
}

#[derive(Debug)]
struct CachedKeys {
    // INVARIANT: kids are non-empty and unique; keys are public signature keys.
    keys: Arc<Vec<(String, Jwk)>>,
    fetched_at: i64,
}

impl CachedKeys {
    fn find(&self, kid: &str) -> Option<Jwk> {
        self.keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, jwk)| jwk.clone())
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn invalid(msg: impl Into<String>) -> TokenError {
    TokenError::InvalidClient(msg.into())
}

impl Federation {
    /// Checks the configuration and builds the HTTP client. Nothing is fetched yet.
    pub fn new(
        issuers: Vec<FederatedIssuer>,
        options: FederationOptions,
    ) -> Result<Federation, FederationConfigError> {
        let insecure = options.dangerous_allow_insecure_loopback;
        let mut states: Vec<IssuerState> = Vec::with_capacity(issuers.len());
        for config in issuers {
            let issuer_url = check_url(&config.issuer, insecure)
                .map_err(|m| config_err(format!("issuer {}: {m}", untrusted(&config.issuer))))?;
            if issuer_url.query().is_some() {
                return Err(config_err(format!(
                    "issuer {}: an issuer URL has no query",
                    untrusted(&config.issuer)
                )));
            }
            if states.iter().any(|s| s.config.issuer == config.issuer) {
                return Err(config_err(format!(
                    "issuer {} is configured twice",
                    untrusted(&config.issuer)
                )));
            }
            if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
                return Err(config_err(format!(
                    "issuer {}: at least one non-empty audience is required",
                    untrusted(&config.issuer)
                )));
            }
            if config.algs.is_empty() || config.algs.contains(&Alg::HS256) {
                return Err(config_err(format!(
                    "issuer {}: name at least one asymmetric algorithm (HS256 is refused)",
                    untrusted(&config.issuer)
                )));
            }
            if config.cache_ttl.is_zero() {
                return Err(config_err(format!(
                    "issuer {}: the cache TTL must be positive",
                    untrusted(&config.issuer)
                )));
            }
            let jwks_uri = match &config.jwks_uri {
                None => None,
                Some(u) => Some(check_url(u, insecure).map_err(|m| {
                    config_err(format!(
                        "issuer {}: jwks_uri: {m}",
                        untrusted(&config.issuer)
                    ))
                })?),
            };
            let discovery = format!("{}{DISCOVERY_PATH}", config.issuer.trim_end_matches('/'));
            let discovery_uri = check_url(&discovery, insecure)
                .map_err(|m| config_err(format!("issuer {}: {m}", untrusted(&config.issuer))))?;
            states.push(IssuerState {
                config,
                jwks_uri,
                discovery_uri,
                cache: Mutex::new(KeyCache::default()),
            });
        }
        if options.max_response_bytes == 0 || options.fetch_timeout.is_zero() {
            return Err(config_err("fetch limits must be positive"));
        }
        let http = reqwest::Client::builder()
            .timeout(options.fetch_timeout)
            .connect_timeout(options.fetch_timeout)
            // A redirect could leave HTTPS or the issuer's host; an issuer that
            // moves its keys must be reconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Federation {
            issuers: states,
            http,
            options,
        })
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &FederatedIssuer> {
        self.issuers.iter().map(|s| &s.config)
    }

    /// Verifies a token from a federated issuer and returns `(issuer, subject)`.
    ///
    /// The unverified `iss` only selects which issuer's keys to try, and the header's
    /// `kid` which key; the algorithm must be one the issuer is configured for and fit
    /// that key. After the signature verifies: `iss` must equal the issuer, `aud` name
    /// a configured audience, `exp` be present and unexpired, `nbf`/`iat` not in the
    /// future (60 s skew each), and `sub` be a non-empty string.
    ///
    /// Errors are `invalid_client`, except `temporarily_unavailable` when the
    /// issuer's keys cannot be had at all.
    pub async fn verify(&self, token: &str, now: i64) -> Result<(String, String), TokenError> {
        let (issuer, claims) = self.verify_claims(token, now).await?;
        let sub = claims
            .required_str("sub")
            .map_err(|e| invalid(format!("the token: {e}")))?;
        Ok((issuer, sub.to_owned()))
    }

    /// The checks of [`Federation::verify`] except `sub`: signature, `iss`, `aud` and
    /// times. Returns the issuer and the verified claims, for callers with checks of
    /// their own (an OpenID Connect ID token's `nonce`, `azp`, `email`).
    pub async fn verify_claims(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(String, Claims), TokenError> {
        self.verify_typed(token, None, &TimeRules::at(now)).await
    }

    /// [`Federation::verify_claims`] with the header's `typ` required to be `typ`
    /// (checked with the signature, before any claim is read) and the time checks of
    /// `times` (whose `now` is also the key cache's clock).
    pub async fn verify_typed(
        &self,
        token: &str,
        typ: Option<&str>,
        times: &TimeRules,
    ) -> Result<(String, Claims), TokenError> {
        let now = times.now;
        if token.len() > TOKEN_MAX {
            return Err(invalid("the token is too large"));
        }
        let header = mandate_jose::peek_header(token)
            .map_err(|e| invalid(format!("the token is malformed: {e}")))?;
        // Unverified: read only to choose whose keys to try.
        let claimed_iss = unverified_claim_str(token, "iss")
            .map_err(|m| invalid(format!("the token {m}")))?
            .ok_or_else(|| invalid("the token has no `iss`"))?;
        let state = self
            .issuers
            .iter()
            .find(|s| s.config.issuer == claimed_iss)
            .ok_or_else(|| {
                invalid(format!(
                    "the issuer {} is not trusted",
                    untrusted(&claimed_iss)
                ))
            })?;
        if !state.config.algs.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {} is not accepted from this issuer",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| invalid("the token header has no `kid`"))?;
        let key = self.key_for(state, kid, now).await?;
        let alg = pin_alg(header.alg, &key, &state.config.algs)
            .map_err(|m| invalid(format!("the token's {m}")))?;
        let rules = Rules {
            typ: typ.map(str::to_owned),
            ..Rules::default()
        };
        let verified = mandate_jose::verify(token, &key, alg, &rules)
            .map_err(|e| invalid(format!("the token does not verify: {e}")))?;

        let claim_err = |e: ClaimError| invalid(format!("the token: {e}"));
        let claims = Claims::from_payload(&verified.payload).map_err(claim_err)?;
        claims
            .expect_issuer(&state.config.issuer)
            .map_err(claim_err)?;
        let audiences: Vec<&str> = state.config.audiences.iter().map(String::as_str).collect();
        claims.expect_audience(&audiences).map_err(claim_err)?;
        claims.check_times(times).map_err(claim_err)?;
        Ok((state.config.issuer.clone(), claims))
    }

    /// The OpenID Connect Discovery document of a configured issuer, fetched now
    /// (under the same limits as keys); its `issuer` equals the configured one.
    pub async fn discovery(&self, issuer: &str) -> Result<serde_json::Map<String, Value>, String> {
        let state = self
            .issuers
            .iter()
            .find(|s| s.config.issuer == issuer)
            .ok_or_else(|| format!("the issuer {} is not configured", untrusted(issuer)))?;
        self.discovery_document(state).await
    }

    /// Whether `url` may be fetched or visited under these options: `https`, or
    /// `http` to a loopback IP literal when insecure loopback is allowed.
    pub fn check_endpoint(&self, url: &str) -> Result<Url, String> {
        check_url(url, self.options.dangerous_allow_insecure_loopback)
    }

    /// The key named `kid`, from the cache or after one (rate-limited) fetch.
    async fn key_for(&self, state: &IssuerState, kid: &str, now: i64) -> Result<Jwk, TokenError> {
        let mut cache = state.cache.lock().await;
        let fresh = cache
            .keys
            .as_ref()
            .is_some_and(|c| now.saturating_sub(c.fetched_at) < secs(state.config.cache_ttl));
        if fresh && let Some(key) = cache.keys.as_ref().and_then(|c| c.find(kid)) {
            return Ok(key);
        }
        // Stale, never fetched, or an unknown kid: fetch, unless we did so recently.
        let interval = secs(self.options.refetch_interval);
        // Concurrent requests reach the lock slightly out of order, so a `now` a few
        // seconds before the last attempt is normal and must not allow a fetch; only
        // a clock that went back by more than the interval resets the limit.
        let may_fetch = match cache.last_fetch_attempt {
            None => true,
            Some(at) => now.saturating_sub(at) >= interval || at.saturating_sub(now) > interval,
        };
        if may_fetch {
            cache.last_fetch_attempt = Some(now);
            match self.fetch_keys(state).await {
                Ok(keys) => {
                    tracing::debug!(issuer = %state.config.issuer, keys = keys.len(), "fetched federated issuer keys");
                    cache.keys = Some(CachedKeys {
                        keys: Arc::new(keys),
                        fetched_at: now,
                    });
                }
                Err(reason) => {
                    tracing::warn!(issuer = %state.config.issuer, %reason, "fetching federated issuer keys failed; keeping the last good keys");
                }
            }
        }
        match &cache.keys {
            None => Err(TokenError::Unavailable(
                "the issuer's keys cannot be fetched".into(),
            )),
            Some(c) if now.saturating_sub(c.fetched_at) > secs(self.options.max_stale) => {
                Err(TokenError::Unavailable(
                    "the issuer's keys are out of date and cannot be refreshed".into(),
                ))
            }
            Some(c) => c.find(kid).ok_or_else(|| {
                invalid(format!(
                    "the kid {} is not among the issuer's keys",
                    untrusted(kid)
                ))
            }),
        }
    }

    /// Fetches the issuer's keys (after discovery, if configured so).
    async fn fetch_keys(&self, state: &IssuerState) -> Result<Vec<(String, Jwk)>, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(u) => u.clone(),
            None => self.discover(state).await?,
        };
        let body = self.get(&jwks_uri).await?;
        parse_jwks(&body).map_err(|m| format!("{jwks_uri}: {m}"))
    }

    /// Reads `jwks_uri` from the discovery document.
    async fn discover(&self, state: &IssuerState) -> Result<Url, String> {
        let uri = &state.discovery_uri;
        let doc = self.discovery_document(state).await?;
        let Some(Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(format!("{uri}: the discovery document has no `jwks_uri`"));
        };
        check_url(jwks_uri, self.options.dangerous_allow_insecure_loopback)
            .map_err(|m| format!("{uri}: jwks_uri: {m}"))
    }

    /// The discovery document, whose `issuer` must be ours.
    async fn discovery_document(
        &self,
        state: &IssuerState,
    ) -> Result<serde_json::Map<String, Value>, String> {
        let uri = &state.discovery_uri;
        let body = self.get(uri).await?;
        let Ok(Value::Object(doc)) = mandate_jose::parse_json_strict(&body) else {
            return Err(format!(
                "{uri}: the discovery document is not a JSON object"
            ));
        };
        match doc.get("issuer") {
            Some(Value::String(iss)) if *iss == state.config.issuer => {}
            Some(Value::String(iss)) => {
                return Err(format!(
                    "{uri}: the discovery document names the issuer {}, not the configured one",
                    untrusted(iss)
                ));
            }
            _ => return Err(format!("{uri}: the discovery document has no `issuer`")),
        }
        Ok(doc)
    }

    /// GET with the size cap; only `200 OK` is accepted.
    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        let max = self.options.max_response_bytes;
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("{url}: answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(format!("{url}: the response is larger than {max} bytes"));
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len().saturating_add(chunk.len()) > max {
                return Err(format!("{url}: the response is larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Reads an issuer's JWK Set. Keys for another `use`, without a `kid`, of unknown or
/// unsupported types, or that fail strict parsing are skipped (an issuer may publish
/// encryption keys or algorithms we do not implement); two usable keys with one `kid`
/// make the whole set ambiguous and refused. At least one usable key is required.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<(String, Jwk)>, String> {
    let Ok(Value::Object(doc)) = mandate_jose::parse_json_strict(bytes) else {
        return Err("the JWK Set is not a JSON object".into());
    };
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err("the JWK Set has no `keys` array".into());
    };
    if entries.len() > JWKS_MAX_KEYS {
        return Err(format!("the JWK Set has more than {JWKS_MAX_KEYS} keys"));
    }
    let mut keys: Vec<(String, Jwk)> = Vec::new();
    for entry in entries {
        let Value::Object(obj) = entry else { continue };
        if obj.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let Some(Value::String(kid)) = obj.get("kid") else {
            continue;
        };
        if kid.is_empty() {
            continue;
        }
        let Ok(jwk) = Jwk::from_public_json(entry) else {
            continue;
        };
        if keys.iter().any(|(k, _)| k == kid) {
            return Err(format!("the kid {} appears twice", untrusted(kid)));
        }
        keys.push((kid.clone(), jwk));
    }
    if keys.is_empty() {
        return Err("the JWK Set holds no usable signature key".into());
    }
    Ok(keys)
}

/// An `https` URL, or `http` to a loopback IP literal when `insecure_loopback`; never
/// with userinfo or a fragment.
pub(crate) fn check_url(s: &str, insecure_loopback: bool) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL may not carry userinfo".into());
    }
    if url.fragment().is_some() {
        return Err("the URL may not carry a fragment".into());
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(url),
        "http" if insecure_loopback && is_loopback_literal(&url) => Ok(url),
        "http" => Err("the URL must use https".into()),
        _ => Err("the URL must be an https URL".into()),
    }
}

fn is_loopback_literal(url: &Url) -> bool {
    url.host_str()
        .is_some_and(mandate_types::net::is_loopback_literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        assert!(check_url("https://issuer.example", false).is_ok());
        assert!(check_url("http://issuer.example", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/x", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
        assert!(check_url("http://[::1]:8080/x", true).is_ok());
        assert!(check_url("http://localhost:8080/x", true).is_err());
        assert!(check_url("http://10.0.0.1/x", true).is_err());
        assert!(check_url("https://user:pw@issuer.example", false).is_err());
        assert!(check_url("https://issuer.example/#frag", false).is_err());
        assert!(check_url("file:///etc/passwd", true).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn jwks_skips_unusable_keys_and_refuses_ambiguity() {
        let ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "a",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let enc = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "b", "use": "enc",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let doc = serde_json::json!({"keys": [ed, enc, {"kty": "foo", "kid": "c"}, 5]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        let dup = serde_json::json!({"keys": [ed, ed]});
        assert!(parse_jwks(dup.to_string().as_bytes()).is_err());
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(br#"{"keys": 1}"#).is_err());
    }
}
