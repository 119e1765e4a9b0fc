//! The HTTP client under [`super::http::HttpUpstream`]: hyper's pooled client, over TCP
//! or TLS (rustls, Mozilla's roots), HTTP/1.1.
//!
//! An upstream needs none of what a general-purpose client adds to every request: its
//! URL is parsed once when it is registered, redirects are never followed (an upstream
//! that answers 3xx has not answered), and requests go straight to it, never through a
//! proxy named by the environment (the requests carry the credentials the gateway
//! injects). So each request is built as an `http::Request` and handed to the pool as
//! it is.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Why a request got no response.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be made (refused, unreachable, or not within the connect
    /// timeout), or TLS failed.
    Connect,
    /// The connection broke before a response came.
    Failed,
}

/// How long an idle connection stays in the pool: under the 5 s after which common
/// servers (uvicorn, Node) close an idle keep-alive connection, so a request is not
/// sent on one the upstream is closing at that moment.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// One upstream's connection pool.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pool: Pool<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    pub(super) fn new(connect_timeout: Duration) -> Result<Client, String> {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        // The scheme is the TLS layer's to check: it passes http through and wraps https.
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Client {
            pool: Pool::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .pool_timer(TokioTimer::new())
                .build(connector),
        })
    }

    /// Sends one request; the response's body is read with [`chunk`].
    pub(super) async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, SendError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        self.pool.request(request).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect
            } else {
                SendError::Failed
            }
        })
    }
}

/// The next piece of a response's body, `None` at its end; trailers are skipped.
pub(super) async fn chunk(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}
