//! `POST /oauth2/register`: dynamic client registration (RFC 7591) for public MCP
//! clients. Metadata we understand is validated strictly; metadata we do not is ignored
//! (RFC 7591 §2) and not kept.

use mandate_store::{OAuthClientRecord, StoreError};
use mandate_types::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::DEFAULT_TENANT;
use crate::{CoreError, Service};

/// The largest registration request read.
pub const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_CHARS: usize = 2_000;
const MAX_NAME_CHARS: usize = 100;

/// What we keep of a client's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// RFC 9449 §5.2: every token request of this client must carry a DPoP proof, so
    /// its tokens are always bound to its key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
}

impl ClientMetadata {
    /// Validates what a client says about itself, the members of a registration
    /// request (RFC 7591) or of a Client ID Metadata Document, and keeps what we
    /// understand: what registration and [`Service::document_client`] both use.
    pub fn from_fields(fields: &Map<String, Value>) -> Result<ClientMetadata, RegistrationError> {
        parse_metadata(fields)
    }
}

/// A client as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredClient {
    pub client_id: String,
    pub tenant_id: TenantId,
    pub metadata: ClientMetadata,
    pub issued_at: chrono::DateTime<chrono::Utc>,
}

impl RegisteredClient {
    /// How the consent screen names the client.
    pub fn display_name(&self) -> &str {
        self.metadata
            .client_name
            .as_deref()
            .unwrap_or("an unnamed client")
    }
}

/// Why a registration is refused (RFC 7591 §3.2.2).
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("{0}")]
    InvalidRedirectUri(String),
    #[error("{0}")]
    InvalidClientMetadata(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl RegistrationError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::InvalidClientMetadata(_) => "invalid_client_metadata",
            RegistrationError::Core(_) => "temporarily_unavailable",
        }
    }
}

impl From<StoreError> for RegistrationError {
    fn from(e: StoreError) -> Self {
        RegistrationError::Core(e.into())
    }
}

fn bad(m: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(m.into())
}

impl Service {
    /// Registers a public client of the default tenant. Its agent is made per human at
    /// their first consent (an agent needs an accountable owner; nobody owns an
    /// anonymous registration).
    pub async fn register_oauth_client(
        &self,
        body: &[u8],
    ) -> Result<RegisteredClient, RegistrationError> {
        if body.len() > MAX_REGISTRATION_BYTES {
            return Err(bad("the registration request is too large"));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| bad("the registration request is not a JSON object"))?;
        let Value::Object(fields) = value else {
            return Err(bad("the registration request is not a JSON object"));
        };
        let metadata = parse_metadata(&fields)?;
        let tenant = self
            .store
            .tenant_by_name(DEFAULT_TENANT)
            .await?
            .ok_or_else(|| CoreError::Unavailable("no default tenant yet".to_owned()))?;
        let client_id =
            mandate_token::random_id("mcl_").map_err(|e| CoreError::Internal(e.to_string()))?;
        let now = self.clock.now();
        let record = OAuthClientRecord {
            client_id: client_id.clone(),
            tenant_id: tenant.id,
            metadata: serde_json::to_string(&metadata)
                .map_err(|e| CoreError::Internal(e.to_string()))?,
            created_at: now,
        };
        self.store.register_oauth_client(&record).await?;
        tracing::info!(client = %client_id, "OAuth client registered");
        Ok(RegisteredClient {
            client_id,
            tenant_id: tenant.id,
            metadata,
            issued_at: now,
        })
    }

    /// The client a Client ID Metadata Document describes: fetched (bounded, cached),
    /// naming itself, and validated like a registration. Its tenant is the default one.
    pub async fn document_client(&self, client_id: &str) -> Result<RegisteredClient, String> {
        let Some(fetcher) = &self.client_documents else {
            return Err("client metadata documents are not accepted here".into());
        };
        let doc = fetcher.fetch(client_id).await?;
        let metadata = parse_metadata(&doc).map_err(|e| e.to_string())?;
        let tenant = self
            .store
            .tenant_by_name(DEFAULT_TENANT)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "store unavailable");
                "the store is unavailable".to_owned()
            })?
            .ok_or_else(|| "no default tenant yet".to_owned())?;
        Ok(RegisteredClient {
            client_id: client_id.to_owned(),
            tenant_id: tenant.id,
            metadata,
            issued_at: self.clock.now(),
        })
    }

    /// Whether `client_id` names a Client ID Metadata Document we would fetch.
    pub fn names_client_document(&self, client_id: &str) -> bool {
        self.client_documents
            .as_ref()
            .is_some_and(|f| f.names_a_document(client_id))
    }

    /// A registered client, if `client_id` names one.
    pub async fn oauth_client(
        &self,
        client_id: &str,
    ) -> Result<Option<RegisteredClient>, CoreError> {
        if client_id.is_empty() || client_id.len() > MAX_URI_CHARS {
            return Ok(None);
        }
        let Some(record) = self.store.oauth_client(client_id).await? else {
            return Ok(None);
        };
        let metadata: ClientMetadata = serde_json::from_str(&record.metadata)
            .map_err(|e| CoreError::Internal(format!("stored client metadata: {e}")))?;
        Ok(Some(RegisteredClient {
            client_id: record.client_id,
            tenant_id: record.tenant_id,
            metadata,
            issued_at: record.created_at,
        }))
    }
}

fn text(
    fields: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, RegistrationError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad(format!(
            "`{name}` must be a string of at most {max} characters without control characters"
        ))),
    }
}

fn strings(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, RegistrationError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= 16 => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("`{name}` must hold strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(format!(
            "`{name}` must be an array of at most 16 strings"
        ))),
    }
}

fn parse_metadata(fields: &Map<String, Value>) -> Result<ClientMetadata, RegistrationError> {
    let application_type = text(fields, "application_type", 16)?;
    if let Some(t) = &application_type
        && t != "native"
        && t != "web"
    {
        return Err(bad("`application_type` must be `native` or `web`"));
    }
    let native = application_type.as_deref() == Some("native");
    let redirect_uris = match fields.get("redirect_uris") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_REDIRECT_URIS => {
            let mut out = Vec::new();
            for item in items {
                let Some(uri) = item.as_str() else {
                    return Err(RegistrationError::InvalidRedirectUri(
                        "`redirect_uris` must hold strings".into(),
                    ));
                };
                check_redirect_uri(uri, native).map_err(RegistrationError::InvalidRedirectUri)?;
                if !out.iter().any(|u: &String| u == uri) {
                    out.push(uri.to_owned());
                }
            }
            out
        }
        _ => {
            return Err(RegistrationError::InvalidRedirectUri(format!(
                "`redirect_uris` is required: 1 to {MAX_REDIRECT_URIS} redirect URIs"
            )));
        }
    };
    match text(fields, "token_endpoint_auth_method", 64)?.as_deref() {
        // Absent means client_secret_basic in RFC 7591. We issue no client secrets:
        // a client asking for a secret-based method (the MCP SDKs' examples ask for
        // client_secret_post) is registered as a public client instead, which RFC 7591
        // §3.2.1 allows, and the answer says `none` so the client sends no secret.
        // PKCE protects its codes either way.
        None | Some("none" | "client_secret_post" | "client_secret_basic") => {}
        Some(other) => {
            return Err(bad(format!(
                "token_endpoint_auth_method `{}` is not supported: register a public client (`none`)",
                other.chars().take(64).collect::<String>()
            )));
        }
    }
    if let Some(grants) = strings(fields, "grant_types")? {
        if !grants.iter().any(|g| g == "authorization_code") {
            return Err(bad("`grant_types` must include authorization_code"));
        }
        // Every registered client gets both: a code's redemption returns a refresh
        // token, so the answer lists refresh_token whether asked for or not.
        if let Some(g) = grants
            .iter()
            .find(|g| *g != "authorization_code" && *g != "refresh_token")
        {
            return Err(bad(format!(
                "grant type `{}` is not available to registered clients",
                g.chars().take(100).collect::<String>()
            )));
        }
    }
    if let Some(types) = strings(fields, "response_types")?
        && types.iter().any(|t| t != "code")
    {
        return Err(bad("`response_types` may only hold `code`"));
    }
    let client_uri = text(fields, "client_uri", MAX_URI_CHARS)?;
    if let Some(uri) = &client_uri
        && !uri.starts_with("https://")
        && !uri.starts_with("http://")
    {
        return Err(bad("`client_uri` must be an http(s) URL"));
    }
    Ok(ClientMetadata {
        client_name: text(fields, "client_name", MAX_NAME_CHARS)?,
        redirect_uris,
        client_uri,
        scope: text(fields, "scope", 1_000)?,
        software_id: text(fields, "software_id", MAX_NAME_CHARS)?,
        software_version: text(fields, "software_version", MAX_NAME_CHARS)?,
        application_type,
        dpop_bound_access_tokens: match fields.get("dpop_bound_access_tokens") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("`dpop_bound_access_tokens` must be a boolean")),
        },
    })
}

/// A redirect URI we accept: absolute, `https`, or `http` on a loopback host only;
/// no fragment, no user information. A native client (`application_type: native`) may
/// also use a private-use URI scheme (RFC 8252 §7.1).
pub(crate) fn check_redirect_uri(uri: &str, native: bool) -> Result<(), String> {
    if uri.len() > MAX_URI_CHARS || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a redirect URI is too long or holds spaces or control characters".into());
    }
    if uri.contains('#') {
        return Err("a redirect URI must not have a fragment".into());
    }
    let (secure, rest) = if let Some(r) = uri.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = uri.strip_prefix("http://") {
        (false, r)
    } else if native && is_private_use(uri) {
        return Ok(());
    } else if native {
        return Err("a native client's redirect URI must be https, http on a loopback address, or a private-use scheme in reverse domain order (`com.example.app:/callback`)".into());
    } else {
        return Err("a redirect URI must be an https URL (or http on a loopback address)".into());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains('\\') {
        return Err("a redirect URI needs a host and no user information".into());
    }
    let host = host_of(authority);
    let port = authority.get(host.len()..).unwrap_or_default();
    let host_ok = if host.starts_with('[') {
        host.len() > 2
            && host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'[' | b']' | b'.'))
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    if !host_ok || !port_ok {
        return Err("a redirect URI needs a plain host name or address, and a numeric port".into());
    }
    if !secure && !is_loopback(host) {
        return Err(
            "an http redirect URI must be on a loopback address (127.0.0.1, [::1] or localhost)"
                .into(),
        );
    }
    Ok(())
}

/// A private-use URI scheme redirect (RFC 8252 §7.1): a scheme in reverse domain
/// order — lowercase letters, digits, `+ - .`, at least one `.` between labels — then
/// `:/` and a path. Anything else (`javascript:`, `data:`, a bare word) is refused.
fn is_private_use(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let labels_ok = scheme.split('.').all(|label| {
        label.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'+'))
    });
    scheme.contains('.') && scheme.len() <= 100 && labels_ok && rest.starts_with('/')
}

fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .and_then(|i| authority.get(..=i))
            .unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    mandate_types::net::is_loopback_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:8123/callback",
            "http://localhost/cb?x=1",
            "http://[::1]:9/cb",
            "http://127.5.0.1/cb",
        ] {
            assert!(check_redirect_uri(ok, false).is_ok(), "{ok}");
            assert!(check_redirect_uri(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://localhost.evil.example/cb",
            "https://app.example/cb#frag",
            "https://user@app.example/cb",
            "http://evil.example@127.0.0.1/cb",
            "javascript:alert(1)",
            "com.example.app:/cb",
            "https:///cb",
            "https://app.example/c b",
            "https://a;script-src/cb",
            "http://127.0.0.1:x/cb",
            "/relative",
        ] {
            assert!(check_redirect_uri(bad, false).is_err(), "{bad}");
        }
        // RFC 8252 §7.1: private-use schemes, for native clients only.
        for native in [
            "com.example.app:/cb",
            "com.example.app:/oauth2redirect/example-provider",
            "io.github.some-app:/callback?x=1",
            "com.example.app://callback",
        ] {
            assert!(check_redirect_uri(native, true).is_ok(), "{native}");
            assert!(check_redirect_uri(native, false).is_err(), "{native}");
        }
        for bad in [
            "javascript:alert(1)",
            "javascript:/alert(1)",
            "data:/text",
            "myapp:/cb",
            "Com.Example.App:/cb",
            "com.example.app:cb",
            "com..example:/cb",
            ".com.example:/cb",
            "com.example.app:/cb#frag",
            "com.example.app:/c b",
            "1com.example:/cb",
        ] {
            assert!(check_redirect_uri(bad, true).is_err(), "{bad}");
        }
    }
}
