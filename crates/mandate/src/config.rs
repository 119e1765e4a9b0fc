//! `mandate serve` configuration: defaults, then a TOML file, then environment
//! variables, then flags. Unknown keys are errors that name the key's path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod connections;
pub use connections::ConnectionProviderSettings;
mod exchange;
pub use exchange::TokenExchangeSettings;
mod enterprise;

/// Settles each entry of an array of tables (`key[index]`), refusing a name used twice.
fn settle_named<S, T>(
    key: &str,
    settings: Vec<S>,
    settle: impl Fn(S, usize) -> Result<T, ConfigError>,
    name: impl Fn(&T) -> &String,
) -> Result<Vec<T>, ConfigError> {
    let mut out: Vec<T> = Vec::new();
    for (index, setting) in settings.into_iter().enumerate() {
        let settled = settle(setting, index)?;
        if out.iter().any(|p| name(p) == name(&settled)) {
            return Err(ConfigError::Value {
                origin: format!("config key `{key}[{index}].name`"),
                message: format!("`{}` is named twice", name(&settled)),
            });
        }
        out.push(settled);
    }
    Ok(out)
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8731";
pub const DEFAULT_DATA_DIR: &str = "./mandate-data";

/// Where environment variables come from: the process, or a map in tests.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<&str, &str> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| (*v).to_owned())
    }
}

/// The configuration file's shape. Every table rejects unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    mandates: MandatesSection,
    #[serde(default)]
    policies: PoliciesSection,
    /// Where clients reach this server (discovery documents name it).
    public_url: Option<String>,
    #[serde(default)]
    tokens: TokensSection,
    #[serde(default)]
    gateway: GatewaySection,
    #[serde(default)]
    console: ConsoleSection,
    /// `[tracing]`: OpenTelemetry traces over OTLP/HTTP (off unless `enabled`).
    #[serde(default)]
    tracing: TracingSection,
    /// After SIGTERM, how long requests in flight may take before they are cut and the
    /// process stops anyway (default 60; 1 to 3600).
    shutdown_grace_seconds: Option<u64>,
    /// Open client connections at most (default 4096; 16 to 1000000); beyond them, 64
    /// more get the health endpoints only, the rest wait in the backlog.
    max_connections: Option<usize>,
    /// How long a request's headers may take to arrive (default 10; 1 to 300); also
    /// how long a kept-alive connection may sit idle.
    header_read_timeout_seconds: Option<u64>,
    /// Proxies (addresses or networks, e.g. `10.0.0.0/8`) whose connections name the
    /// client in `X-Forwarded-For` (default none: the header is ignored).
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleSection {
    /// `[console.oidc]`: sign-in with an external OpenID Provider.
    oidc: Option<OidcSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcSection {
    /// The provider's exact issuer URL (`https`; discovery is read from it).
    issuer: Option<String>,
    client_id: Option<String>,
    /// A file holding the client secret (or `MANDATE_CONSOLE_OIDC_CLIENT_SECRET`).
    client_secret_file: Option<PathBuf>,
    /// Shown as "Sign in with …" (default "single sign-on").
    display_name: Option<String>,
    /// Default `["openid", "email"]`.
    scopes: Option<Vec<String>>,
    /// The ID token claim holding the human's email (default `email`).
    email_claim: Option<String>,
    /// The tenant whose humans sign in this way (default `default`).
    tenant: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    client_auth: Option<String>,
    /// Allow an `http://` issuer on a loopback IP literal (tests). Default false.
    dangerous_allow_insecure_loopback: Option<bool>,
}

/// How the console authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcClientAuth {
    SecretBasic,
    SecretPost,
}

/// `[console.oidc]`, checked; the secret already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleOidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: mandate_types::Secret<String>,
    pub display_name: String,
    pub scopes: Vec<String>,
    pub email_claim: String,
    pub tenant: String,
    pub client_auth: OidcClientAuth,
    pub dangerous_allow_insecure_loopback: bool,
}

impl OidcSection {
    /// Environment variables win over the file, key by key.
    fn settle(self, env: &dyn Env) -> Result<ConsoleOidcSettings, ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Value {
            origin: format!("config key `console.oidc.{key}`"),
            message: message.to_owned(),
        };
        let issuer = env
            .var("MANDATE_CONSOLE_OIDC_ISSUER")
            .or(self.issuer)
            .ok_or_else(|| bad("issuer", "is required"))?;
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(bad("issuer", "must be an https URL"));
        }
        let client_id = env
            .var("MANDATE_CONSOLE_OIDC_CLIENT_ID")
            .or(self.client_id)
            .ok_or_else(|| bad("client_id", "is required"))?;
        let file = env
            .var("MANDATE_CONSOLE_OIDC_CLIENT_SECRET_FILE")
            .map(PathBuf::from)
            .or(self.client_secret_file);
        let secret = match (env.var("MANDATE_CONSOLE_OIDC_CLIENT_SECRET"), file) {
            (Some(s), _) => s,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map_err(|e| {
                    bad(
                        "client_secret_file",
                        &format!("cannot read `{}`: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(bad(
                    "client_secret_file",
                    "is required (or MANDATE_CONSOLE_OIDC_CLIENT_SECRET)",
                ));
            }
        };
        if secret.is_empty() {
            return Err(bad("client_secret_file", "the client secret is empty"));
        }
        let client_auth = match self.client_auth.as_deref() {
            None | Some("client_secret_basic") => OidcClientAuth::SecretBasic,
            Some("client_secret_post") => OidcClientAuth::SecretPost,
            Some(other) => {
                return Err(bad(
                    "client_auth",
                    &format!("`{other}` is not `client_secret_basic` or `client_secret_post`"),
                ));
            }
        };
        let scopes = self
            .scopes
            .unwrap_or_else(|| vec!["openid".to_owned(), "email".to_owned()]);
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(bad("scopes", "a scope is one non-empty word"));
        }
        let display_name = self
            .display_name
            .unwrap_or_else(|| "single sign-on".to_owned());
        if display_name.is_empty() || display_name.chars().count() > 60 {
            return Err(bad("display_name", "must be 1 to 60 characters"));
        }
        Ok(ConsoleOidcSettings {
            issuer,
            client_id,
            client_secret: mandate_types::Secret::new(secret),
            display_name,
            scopes,
            email_claim: self.email_claim.unwrap_or_else(|| "email".to_owned()),
            tenant: self.tenant.unwrap_or_else(|| "default".to_owned()),
            client_auth,
            dangerous_allow_insecure_loopback: self
                .dangerous_allow_insecure_loopback
                .unwrap_or(false),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TracingSection {
    /// Default false: nothing of OpenTelemetry is installed.
    enabled: Option<bool>,
    /// The collector's OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    endpoint: Option<String>,
    /// Headers sent with every export (an API key, say). Never logged.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Headers whose value is read from a file (a mounted secret), trimmed.
    #[serde(default)]
    header_files: BTreeMap<String, PathBuf>,
    /// The share of new traces kept, 0.0 to 1.0 (default 1.0).
    sampling_ratio: Option<f64>,
    /// `service.name` of the spans (default `mandate`).
    service_name: Option<String>,
}

/// A sampling ratio in 0.0..=1.0 (compared by its bits, so settings stay `Eq`).
#[derive(Debug, Clone, Copy)]
pub struct SamplingRatio(f64);

impl SamplingRatio {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for SamplingRatio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for SamplingRatio {}

/// `[tracing]`, checked, header values read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingSettings {
    pub endpoint: String,
    pub headers: Vec<(String, mandate_types::Secret<String>)>,
    pub sampling_ratio: SamplingRatio,
    pub service_name: String,
}

impl TracingSection {
    /// `None` when tracing is off. Errors name keys and header names, never a value.
    fn settle(self) -> Result<Option<TracingSettings>, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Value {
            origin: format!("config key `tracing.{key}`"),
            message,
        };
        if !self.enabled.unwrap_or(false) {
            return Ok(None);
        }
        let endpoint = self
            .endpoint
            .ok_or_else(|| bad("endpoint", "is required when tracing is enabled".into()))?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.contains(char::is_whitespace)
        {
            return Err(bad(
                "endpoint",
                "must be an http:// or https:// URL (the collector's /v1/traces)".into(),
            ));
        }
        let ratio = self.sampling_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(bad(
                "sampling_ratio",
                format!("must be between 0.0 and 1.0 (got {ratio})"),
            ));
        }
        let service_name = self.service_name.unwrap_or_else(|| "mandate".to_owned());
        if service_name.is_empty() || service_name.len() > 128 {
            return Err(bad("service_name", "must be 1 to 128 characters".into()));
        }
        let mut headers = Vec::new();
        for (name, value) in self.headers {
            headers.push((name, mandate_types::Secret::new(value)));
        }
        for (name, path) in self.header_files {
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                return Err(bad(
                    "header_files",
                    format!("header `{}` is also in tracing.headers", printable(&name)),
                ));
            }
            let value = std::fs::read_to_string(&path).map_err(|e| {
                bad(
                    "header_files",
                    format!(
                        "header `{}`: cannot read `{}`: {}",
                        printable(&name),
                        path.display(),
                        e.kind()
                    ),
                )
            })?;
            headers.push((name, mandate_types::Secret::new(value.trim().to_owned())));
        }
        for (name, value) in &headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(bad(
                    "headers",
                    format!("`{}` is not a header name", printable(name)),
                ));
            }
            if http::HeaderValue::from_str(value.expose()).is_err() {
                return Err(bad(
                    "headers",
                    format!("the value of header `{name}` is not a valid header value (not shown)"),
                ));
            }
        }
        Ok(Some(TracingSettings {
            endpoint,
            headers,
            sampling_ratio: SamplingRatio(ratio),
            service_name,
        }))
    }
}

/// A name from the file as an error may show it: printable ASCII, at most 64 characters.
fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    /// How long a held call waits for a human (default 900; 10 to 604800).
    approval_ttl_seconds: Option<u64>,
    /// How long an upstream may take to answer one call (default 60; 1 to 3600).
    call_timeout_seconds: Option<u64>,
    /// Largest request body from a client (default 1048576; 1024 to 67108864).
    max_body_bytes: Option<usize>,
    /// Calls in flight per upstream (default 64).
    max_concurrent_per_upstream: Option<usize>,
    /// Record tool arguments (after redaction) in decision events (default false: hash only).
    capture_arguments: Option<bool>,
    /// JSON pointers redacted wherever arguments are kept or shown.
    #[serde(default)]
    redact: Vec<String>,
    /// Browser origins allowed besides the public URL's and loopback.
    #[serde(default)]
    allowed_origins: Vec<String>,
    /// POSTed a signed notification of every new approval.
    webhook_url: Option<String>,
    /// A file holding the webhook's HMAC secret (required with `webhook_url`).
    webhook_secret_file: Option<PathBuf>,
    /// Refused (denied or out-of-scope) attempts per mandate that raise a `drift.alert`
    /// (default 0: off).
    drift_threshold: Option<u32>,
    /// Revoke the mandate when its drift alert is raised (default false).
    drift_revoke: Option<bool>,
    /// A PostgreSQL URL (a role with CREATEROLE) where tool servers whose credential is
    /// `postgres-role:ROLE` get a login role per mandate.
    postgres_roles_url: Option<String>,
    /// `[[gateway.connection_provider]]`: providers people connect their accounts with.
    #[serde(default)]
    connection_provider: Vec<connections::ConnectionProviderSetting>,
    /// `[[gateway.token_exchange]]`: authorization servers that issue upstream tokens
    /// for Mandate's assertions.
    #[serde(default)]
    token_exchange: Vec<exchange::TokenExchangeSetting>,
}

/// The gateway's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewaySettings {
    pub approval_ttl_seconds: u64,
    pub call_timeout_seconds: u64,
    pub max_body_bytes: usize,
    pub max_concurrent_per_upstream: usize,
    pub capture_arguments: bool,
    pub redact: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
    pub postgres_roles_url: Option<String>,
    pub drift_threshold: u32,
    pub drift_revoke: bool,
    /// Upstream providers for people's connections.
    pub connection_providers: Vec<ConnectionProviderSettings>,
    /// Outbound token exchanges.
    pub token_exchanges: Vec<TokenExchangeSettings>,
}

impl GatewaySection {
    fn settle(self) -> Result<GatewaySettings, ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Value {
            origin: format!("config key `gateway.{key}`"),
            message: message.to_owned(),
        };
        let approval_ttl_seconds = self.approval_ttl_seconds.unwrap_or(900);
        if !(10..=604_800).contains(&approval_ttl_seconds) {
            return Err(bad("approval_ttl_seconds", "must be between 10 and 604800"));
        }
        let call_timeout_seconds = self.call_timeout_seconds.unwrap_or(60);
        if !(1..=3_600).contains(&call_timeout_seconds) {
            return Err(bad("call_timeout_seconds", "must be between 1 and 3600"));
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(bad("max_body_bytes", "must be between 1024 and 67108864"));
        }
        let max_concurrent_per_upstream = self.max_concurrent_per_upstream.unwrap_or(64);
        if !(1..=10_000).contains(&max_concurrent_per_upstream) {
            return Err(bad(
                "max_concurrent_per_upstream",
                "must be between 1 and 10000",
            ));
        }
        for pointer in &self.redact {
            if !pointer.starts_with('/') {
                return Err(bad(
                    "redact",
                    &format!("`{pointer}` is not a JSON pointer (e.g. `/card/number`)"),
                ));
            }
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(bad(
                    "allowed_origins",
                    &format!("`{origin}` is not an http(s) origin"),
                ));
            }
        }
        if let Some(url) = &self.postgres_roles_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(bad(
                "postgres_roles_url",
                "must start with postgres:// or postgresql://",
            ));
        }
        if let Some(url) = &self.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad("webhook_url", "must start with http:// or https://"));
            }
            if self.webhook_secret_file.is_none() {
                return Err(bad(
                    "webhook_secret_file",
                    "is required with `webhook_url` (the body is signed)",
                ));
            }
        }
        Ok(GatewaySettings {
            approval_ttl_seconds,
            call_timeout_seconds,
            max_body_bytes,
            max_concurrent_per_upstream,
            capture_arguments: self.capture_arguments.unwrap_or(false),
            redact: self.redact,
            allowed_origins: self
                .allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            webhook_url: self.webhook_url,
            webhook_secret_file: self.webhook_secret_file,
            postgres_roles_url: self.postgres_roles_url,
            drift_threshold: self.drift_threshold.unwrap_or(0),
            drift_revoke: self.drift_revoke.unwrap_or(false),
            connection_providers: connections::settle_all(self.connection_provider)?,
            token_exchanges: exchange::settle_all(self.token_exchange)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensSection {
    /// Longest task-token lifetime (default 300; 30 to 3600).
    max_lifetime_seconds: Option<i64>,
    /// `EdDSA` (default) or `ES256`.
    signing_alg: Option<String>,
    /// Rotate this replica's signing key after this many days (default 30).
    rotate_days: Option<u64>,
    /// Refuse agents' token requests (client credentials, token exchange) without a
    /// DPoP proof (default false). Interactive clients register
    /// `dpop_bound_access_tokens` instead.
    require_dpop: Option<bool>,
    /// Require server-issued DPoP nonces (default false). Replicas must then share
    /// `DATA/dpop-nonce-key`.
    dpop_nonce: Option<bool>,
    /// Accept `http://` Client ID Metadata Document URLs on loopback addresses
    /// (default false; tests only — production client ids are https URLs).
    dangerous_allow_http_client_metadata: Option<bool>,
    /// `[[tokens.spiffe]]`: trust bundles whose JWT-SVIDs authenticate agents.
    #[serde(default)]
    spiffe: Vec<SpiffeBundleSetting>,
    /// `[[tokens.federation]]`: OIDC issuers whose ID tokens authenticate agents.
    #[serde(default)]
    federation: Vec<FederationSetting>,
    /// `[[tokens.enterprise_idp]]`: identity providers whose ID-JAGs grant task
    /// tokens under existing mandates.
    #[serde(default)]
    enterprise_idp: Vec<enterprise::EnterpriseIdpSetting>,
}

/// A SPIFFE trust domain and the file holding its bundle (SPIFFE bundle format or a
/// plain JWK Set).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeBundleSetting {
    pub trust_domain: String,
    pub bundle: PathBuf,
}

/// A federated OIDC issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSetting {
    pub issuer: String,
    /// Accepted `aud` values of its tokens.
    pub audiences: Vec<String>,
    /// Its JWKS; by default found by OpenID discovery.
    pub jwks_uri: Option<String>,
}

/// The token service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub max_lifetime_seconds: i64,
    /// `EdDSA` or `ES256`.
    pub signing_alg: String,
    pub rotate_days: u64,
    pub require_dpop: bool,
    pub dpop_nonce: bool,
    /// Client ID Metadata Documents over http on loopback (tests only).
    pub dangerous_allow_http_client_metadata: bool,
    pub spiffe: Vec<SpiffeBundleSetting>,
    pub federation: Vec<FederationSetting>,
    /// Enterprise identity providers whose ID-JAGs are accepted.
    pub enterprise_idps: Vec<mandate_token::EnterpriseIdp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoliciesSection {
    /// The operator's policy directory (`*.cedar`, `*.cedarschema`, `entities.json`).
    dir: Option<PathBuf>,
    /// How often the directory is checked for changes.
    reload_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    /// A `tracing` filter, e.g. `info` or `mandate=debug,info`.
    level: Option<String>,
    /// `text` (default) or `json`.
    format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MandatesSection {
    /// How often live mandates past their expiry are marked expired.
    expiry_sweep_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The settled configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: the embedded SQLite store under `data_dir`.
    pub database_url: Option<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub expiry_sweep_seconds: u64,
    /// The operator's policy directory; `None`: policies live in the store.
    pub policies_dir: Option<PathBuf>,
    pub policy_reload_seconds: u64,
    /// Default `http://{listen}`.
    pub public_url: String,
    pub tokens: TokenSettings,
    pub gateway: GatewaySettings,
    /// Console sign-in with an external OpenID Provider; `None`: passwords only.
    pub console_oidc: Option<ConsoleOidcSettings>,
    /// After SIGTERM, how long requests in flight may take (then they are cut).
    pub shutdown_grace_seconds: u64,
    /// The listener's connection cap (see `listen.rs`).
    pub max_connections: usize,
    /// How long a request's headers may take to arrive.
    pub header_read_timeout_seconds: u64,
    /// Whose `X-Forwarded-For` names the client (see `forwarded.rs`).
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// OpenTelemetry traces; `None`: off (the default).
    pub tracing: Option<TracingSettings>,
}

/// Flags given to `mandate serve`; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub policies: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file `{path}`: key `{key}`: {message}")]
    Key {
        path: String,
        key: String,
        message: String,
    },
    #[error("config file `{path}`: {message}")]
    Syntax { path: String, message: String },
    #[error("{origin}: `{value}` is not a socket address (e.g. `127.0.0.1:8731`)")]
    Listen { origin: String, value: String },
    #[error("{origin}: the database URL must start with `postgres://` or `postgresql://`")]
    DatabaseUrl { origin: String },
    #[error("{origin}: {message}")]
    Value { origin: String, message: String },
}

impl Config {
    pub fn load(flags: &Overrides, env: &dyn Env) -> Result<Self, ConfigError> {
        let file = match flags.config.as_deref() {
            Some(path) => parse_file(
                path,
                &std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            )?,
            None => FileConfig::default(),
        };
        // Later sources win: file < environment < flags.
        let pick = |flag: Option<String>, var: &str, file: Option<String>, what: &str| {
            flag.map(|v| (v, format!("--{what}")))
                .or_else(|| env.var(var).map(|v| (v, var.to_owned())))
                .or_else(|| file.map(|v| (v, format!("config key `{}`", what.replace('-', "_")))))
        };

        let (listen_text, listen_origin) = pick(
            flags.listen.clone(),
            "MANDATE_LISTEN",
            file.listen,
            "listen",
        )
        .unwrap_or_else(|| (DEFAULT_LISTEN.to_owned(), "default".to_owned()));
        let listen = listen_text.parse().map_err(|_| ConfigError::Listen {
            origin: listen_origin,
            value: listen_text.clone(),
        })?;

        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env.var("MANDATE_DATA").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        // A file holding the URL (a mounted secret: the URL carries the password) ranks
        // just below the variable itself.
        let url_from_file = match env.var("MANDATE_DATABASE_URL_FILE") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Value {
                    origin: "MANDATE_DATABASE_URL_FILE".to_owned(),
                    message: format!("cannot read `{path}`: {e}"),
                })?;
                Some((
                    text.trim().to_owned(),
                    "MANDATE_DATABASE_URL_FILE".to_owned(),
                ))
            }
            None => None,
        };
        let database_url = match flags
            .database_url
            .clone()
            .map(|v| (v, "--database-url".to_owned()))
            .or_else(|| {
                env.var("MANDATE_DATABASE_URL")
                    .map(|v| (v, "MANDATE_DATABASE_URL".to_owned()))
            })
            .or(url_from_file)
            .or_else(|| {
                file.database_url
                    .map(|v| (v, "config key `database_url`".to_owned()))
            }) {
            Some((url, origin)) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::DatabaseUrl { origin });
                }
                Some(url)
            }
            None => None,
        };

        let log_level = env
            .var("MANDATE_LOG")
            .or(file.log.level)
            .unwrap_or_else(|| "info".to_owned());
        let log_format = match env.var("MANDATE_LOG_FORMAT") {
            Some(v) => match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Value {
                        origin: "MANDATE_LOG_FORMAT".to_owned(),
                        message: format!("`{v}` is not `text` or `json`"),
                    });
                }
            },
            None => file.log.format.unwrap_or_default(),
        };
        let expiry_sweep_seconds = file.mandates.expiry_sweep_seconds.unwrap_or(5);
        if expiry_sweep_seconds == 0 || expiry_sweep_seconds > 3_600 {
            return Err(ConfigError::Value {
                origin: "config key `mandates.expiry_sweep_seconds`".to_owned(),
                message: "must be between 1 and 3600".to_owned(),
            });
        }
        let shutdown_grace_seconds = file.shutdown_grace_seconds.unwrap_or(60);
        if !(1..=3_600).contains(&shutdown_grace_seconds) {
            return Err(ConfigError::Value {
                origin: "config key `shutdown_grace_seconds`".to_owned(),
                message: "must be between 1 and 3600".to_owned(),
            });
        }
        let max_connections = file.max_connections.unwrap_or(4096);
        if !(16..=1_000_000).contains(&max_connections) {
            return Err(ConfigError::Value {
                origin: "config key `max_connections`".to_owned(),
                message: "must be between 16 and 1000000".to_owned(),
            });
        }
        let header_read_timeout_seconds = file.header_read_timeout_seconds.unwrap_or(10);
        if !(1..=300).contains(&header_read_timeout_seconds) {
            return Err(ConfigError::Value {
                origin: "config key `header_read_timeout_seconds`".to_owned(),
                message: "must be between 1 and 300".to_owned(),
            });
        }
        let trusted_proxies = crate::forwarded::TrustedProxies::settle(
            env.var("MANDATE_TRUSTED_PROXIES").as_deref(),
            file.trusted_proxies.as_deref(),
        )
        .map_err(|(origin, message)| ConfigError::Value {
            origin: origin.to_owned(),
            message,
        })?;
        let policies_dir = flags
            .policies
            .clone()
            .or_else(|| env.var("MANDATE_POLICIES").map(PathBuf::from))
            .or(file.policies.dir);
        let policy_reload_seconds = file.policies.reload_seconds.unwrap_or(1);
        if policy_reload_seconds == 0 || policy_reload_seconds > 3_600 {
            return Err(ConfigError::Value {
                origin: "config key `policies.reload_seconds`".to_owned(),
                message: "must be between 1 and 3600".to_owned(),
            });
        }
        let public_url = env
            .var("MANDATE_PUBLIC_URL")
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError::Value {
                origin: "MANDATE_PUBLIC_URL / config key `public_url`".to_owned(),
                message: format!("`{public_url}` must start with http:// or https://"),
            });
        }
        let t = file.tokens;
        let max_lifetime_seconds = t.max_lifetime_seconds.unwrap_or(300);
        if !(30..=3_600).contains(&max_lifetime_seconds) {
            return Err(ConfigError::Value {
                origin: "config key `tokens.max_lifetime_seconds`".to_owned(),
                message: "must be between 30 and 3600".to_owned(),
            });
        }
        let signing_alg = t.signing_alg.unwrap_or_else(|| "EdDSA".to_owned());
        if signing_alg != "EdDSA" && signing_alg != "ES256" {
            return Err(ConfigError::Value {
                origin: "config key `tokens.signing_alg`".to_owned(),
                message: format!("`{signing_alg}` is not `EdDSA` or `ES256`"),
            });
        }
        let rotate_days = t.rotate_days.unwrap_or(30);
        if rotate_days == 0 || rotate_days > 365 {
            return Err(ConfigError::Value {
                origin: "config key `tokens.rotate_days`".to_owned(),
                message: "must be between 1 and 365".to_owned(),
            });
        }
        let tokens = TokenSettings {
            max_lifetime_seconds,
            signing_alg,
            rotate_days,
            require_dpop: t.require_dpop.unwrap_or(false),
            dpop_nonce: t.dpop_nonce.unwrap_or(false),
            dangerous_allow_http_client_metadata: t
                .dangerous_allow_http_client_metadata
                .unwrap_or(false),
            spiffe: t.spiffe,
            federation: t.federation,
            enterprise_idps: t
                .enterprise_idp
                .into_iter()
                .enumerate()
                .map(|(i, s)| s.settle(i))
                .collect::<Result<_, _>>()?,
        };
        let gateway = file.gateway.settle()?;
        let tracing = file.tracing.settle()?;
        let console_oidc = match file.console.oidc {
            Some(section) => Some(section.settle(env)?),
            None if env.var("MANDATE_CONSOLE_OIDC_ISSUER").is_some() => {
                Some(OidcSection::default().settle(env)?)
            }
            None => None,
        };
        Ok(Config {
            tracing,
            console_oidc,
            tokens,
            gateway,
            policies_dir,
            policy_reload_seconds,
            public_url,
            listen,
            data_dir,
            database_url,
            log_level,
            log_format,
            expiry_sweep_seconds,
            shutdown_grace_seconds,
            max_connections,
            header_read_timeout_seconds,
            trusted_proxies,
        })
    }
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.display().to_string(),
        message: e.message().to_owned(),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().message().to_owned();
        ConfigError::Key {
            path: path.display().to_string(),
            key,
            message,
        }
    })
}

#[cfg(test)]
mod tests;
