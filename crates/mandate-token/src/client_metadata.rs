//! Client ID Metadata Documents (the MCP authorization spec; draft
//! `oauth-client-id-metadata-document`): a `client_id` that is an https URL names a JSON
//! document the client publishes about itself. We fetch it with a size cap, a timeout
//! and no redirects, require its `client_id` to be exactly that URL, and keep it
//! briefly. What it says is validated by the caller like any registration.
//!
//! Not defended here: an https URL whose host resolves to an internal address (SSRF by
//! DNS); operators who expose the authorization endpoint to untrusted clients should
//! egress-filter the server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;

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
    options: ClientMetadataOptions,
    cache: Mutex<HashMap<String, Cached>>,
}

const MAX_CACHED: usize = 1_000;

impl ClientMetadataFetcher {
    pub fn new(options: ClientMetadataOptions) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
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

    /// The document `client_id` names, fetched or from the cache.
    pub async fn fetch(&self, client_id: &str) -> Result<serde_json::Map<String, Value>, String> {
        let url = self.check(client_id)?;
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
            .map_err(|_| "the client metadata document cannot be fetched".to_owned())?;
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
        let Ok(Value::Object(doc)) = mandate_jose::parse_json_strict(&body) else {
            return Err("the client metadata document is not a JSON object".into());
        };
        if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
            return Err("the client metadata document names another client_id".into());
        }
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
