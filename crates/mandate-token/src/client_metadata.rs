//! Client ID Metadata Documents (the MCP authorization spec; draft
//! `oauth-client-id-metadata-document`): a `client_id` that is an https URL names a JSON
//! document the client publishes about itself. We fetch it with a size cap, a timeout
//! and no redirects, require its `client_id` to be exactly that URL, and keep it
//! briefly. What it says is validated by the caller like any registration.
//!
//! The URL is chosen by a stranger, so the fetch must not reach inside (SSRF):
//!
//! ```text
//! client_id URL ─► https only (http on loopback literals with the test switch)
//!   host an IP literal ─► is_public_address, or refused before any connection
//!   host a name ─► the client's only resolver (GuardedResolver): the injected
//!                  Resolver answers once; any answer not public refuses the name,
//!                  else the connection goes to exactly those addresses (reqwest
//!                  connects to what its resolver returned: no second lookup)
//!   no proxy (a proxy would resolve the name itself), no redirects, ≤ max_bytes, timeout
//! ```
//!
//! With `dangerous_allow_http_loopback` (tests) loopback addresses are allowed too,
//! and nothing else that is not public.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mandate_types::net::is_public_address;
use reqwest::Url;
use serde_json::Value;

/// What a [`Resolver`] returns.
pub type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Looks up a host name's addresses: the fetcher's only way from a name to an address.
/// The system's resolver by default; tests inject one that answers what they need.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    fn lookup(&self, host: &str) -> Lookup;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str) -> Lookup {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Why a host was refused: it is, or resolves to, an address that is not public.
#[derive(Debug, thiserror::Error)]
#[error("the client metadata document's host is or resolves to an internal address")]
pub struct InternalAddress;

/// Whether the fetcher may connect to `ip`.
fn allowed(ip: IpAddr, loopback: bool) -> bool {
    is_public_address(ip) || (loopback && ip.is_loopback())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `host`'s addresses, looked up once: every one must be allowed, or the name is
/// refused (a mix of public and internal answers is how rebinding is tried).
async fn checked_lookup(lookup: Lookup, loopback: bool) -> Result<Vec<IpAddr>, BoxError> {
    let ips = lookup.await?;
    if ips.is_empty() {
        return Err("the host has no address".into());
    }
    if ips.iter().any(|ip| !allowed(*ip, loopback)) {
        return Err(Box::new(InternalAddress));
    }
    Ok(ips)
}

/// The HTTP client's resolver: the connection is made to the addresses
/// [`checked_lookup`] let through, and only those.
#[derive(Debug)]
struct GuardedResolver {
    inner: Arc<dyn Resolver>,
    loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.inner.lookup(name.as_str());
        let loopback = self.loopback;
        Box::pin(async move {
            let ips = checked_lookup(lookup, loopback).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Whether `e` (a failed request) was refused by the address guard.
fn refused_internal(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<InternalAddress>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// How client metadata documents are fetched.
#[derive(Debug, Clone)]
pub struct ClientMetadataOptions {
    pub timeout: Duration,
    pub max_bytes: usize,
    /// How long a fetched document is used before it is fetched again.
    pub cache_for: Duration,
    /// Accept `http://` URLs on loopback addresses (tests only).
    pub dangerous_allow_http_loopback: bool,
}

impl Default for ClientMetadataOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            cache_for: Duration::from_secs(300),
            dangerous_allow_http_loopback: false,
        }
    }
}

/// A fetched document and when it was fetched.
type Cached = (Instant, serde_json::Map<String, Value>);

/// Fetches and caches client metadata documents.
#[derive(Debug)]
pub struct ClientMetadataFetcher {
    http: reqwest::Client,
    resolver: Arc<dyn Resolver>,
    options: ClientMetadataOptions,
    cache: Mutex<HashMap<String, Cached>>,
}

const MAX_CACHED: usize = 1_000;

impl ClientMetadataFetcher {
    /// A fetcher resolving names with the system's resolver.
    pub fn new(options: ClientMetadataOptions) -> Result<Self, String> {
        Self::with_resolver(options, Arc::new(SystemResolver))
    }

    /// A fetcher resolving names with `resolver` (every answer is still checked).
    pub fn with_resolver(
        options: ClientMetadataOptions,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, String> {
        let guarded = GuardedResolver {
            inner: resolver.clone(),
            loopback: options.dangerous_allow_http_loopback,
        };
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the guard.
            .no_proxy()
            .dns_resolver(Arc::new(guarded))
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            resolver,
            options,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `client_id` is a URL this fetcher would fetch (an https URL with a path;
    /// http on loopback only when allowed).
    pub fn names_a_document(&self, client_id: &str) -> bool {
        self.check(client_id).is_ok()
    }

    fn check(&self, client_id: &str) -> Result<Url, String> {
        if client_id.len() > 2_000 {
            return Err("the client_id URL is too long".into());
        }
        let url = Url::parse(client_id).map_err(|_| "the client_id is not a URL".to_owned())?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err("the client_id URL may not carry userinfo or a fragment".into());
        }
        if url.path() == "/" || url.path().is_empty() {
            return Err("the client_id URL must have a path".into());
        }
        // The document must name itself exactly as the client does.
        if url.as_str() != client_id {
            return Err("the client_id URL is not in normal form".into());
        }
        match url.scheme() {
            "https" if url.host_str().is_some() => Ok(url),
            "http" if self.options.dangerous_allow_http_loopback && is_loopback(&url) => Ok(url),
            _ => Err("the client_id URL must use https".into()),
        }
    }

    /// Refuses a URL whose host is an IP literal that is not public (literals never
    /// reach the resolver, so they are judged here, before any connection).
    fn literal_guard(&self, url: &Url) -> Result<(), String> {
        // The URL parser wrote IP literals in normal form (IPv4 in dotted decimal,
        // IPv6 in brackets), so a literal parses here or is a name.
        let host = url
            .host_str()
            .ok_or_else(|| "the client_id URL has no host".to_owned())?;
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let Ok(ip) = literal.parse::<IpAddr>() else {
            return Ok(());
        };
        if allowed(ip, self.options.dangerous_allow_http_loopback) {
            Ok(())
        } else {
            Err(InternalAddress.to_string())
        }
    }

    /// Whether a fetch of `client_id` may start: its form, and its host when that is an
    /// IP literal (no I/O: a name is judged when the connection resolves it).
    pub fn guard_url(&self, client_id: &str) -> Result<(), String> {
        let url = self.check(client_id)?;
        self.literal_guard(&url)
    }

    /// The addresses a fetch would connect to for the name `host`: the one lookup
    /// and check a connection makes, without connecting (the guard, on its own).
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        checked_lookup(
            self.resolver.lookup(host),
            self.options.dangerous_allow_http_loopback,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// The document `client_id` names, fetched or from the cache.
    pub async fn fetch(&self, client_id: &str) -> Result<serde_json::Map<String, Value>, String> {
        let url = self.check(client_id)?;
        self.literal_guard(&url)?;
        if let Ok(cache) = self.cache.lock()
            && let Some((at, doc)) = cache.get(client_id)
            && at.elapsed() < self.options.cache_for
        {
            return Ok(doc.clone());
        }
        let max = self.options.max_bytes;
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                if refused_internal(&e) {
                    InternalAddress.to_string()
                } else {
                    "the client metadata document cannot be fetched".to_owned()
                }
            })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!(
                "the client metadata document answered {}",
                response.status().as_u16()
            ));
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| "the client metadata document cannot be read".to_owned())?
        {
            if body.len().saturating_add(chunk.len()) > max {
                return Err(format!(
                    "the client metadata document is larger than {max} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let doc = parse_document(client_id, &body)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (at, _)| at.elapsed() < self.options.cache_for);
            }
            if cache.len() < MAX_CACHED {
                cache.insert(client_id.to_owned(), (Instant::now(), doc.clone()));
            }
        }
        Ok(doc)
    }
}

/// The document `client_id` names, from the bytes fetched: a strict JSON object (no
/// duplicate members) whose `client_id` is exactly that URL. What else it says is the
/// caller's to validate, like any registration.
pub fn parse_document(
    client_id: &str,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, String> {
    let Ok(Value::Object(doc)) = mandate_jose::parse_json_strict(body) else {
        return Err("the client metadata document is not a JSON object".into());
    };
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err("the client metadata document names another client_id".into());
    }
    Ok(doc)
}

fn is_loopback(url: &Url) -> bool {
    url.host_str()
        .is_some_and(mandate_types::net::is_loopback_literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_client_ids_name_documents() {
        let strict = ClientMetadataFetcher::new(ClientMetadataOptions::default()).unwrap();
        assert!(strict.names_a_document("https://app.example/client.json"));
        for no in [
            "mcl_abc",
            "https://app.example/",
            "https://app.example",
            "http://127.0.0.1:9/client.json",
            "https://u@app.example/c",
            "https://app.example/c#f",
            "https://APP.example/c",
        ] {
            assert!(!strict.names_a_document(no), "{no}");
        }
        let loose = ClientMetadataFetcher::new(ClientMetadataOptions {
            dangerous_allow_http_loopback: true,
            ..ClientMetadataOptions::default()
        })
        .unwrap();
        assert!(loose.names_a_document("http://127.0.0.1:9/client.json"));
        assert!(!loose.names_a_document("http://app.example/client.json"));
    }
}
