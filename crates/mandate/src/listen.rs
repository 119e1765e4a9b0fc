//! The listener: HTTP/1.1 connections under limits one client cannot exhaust (HTTP/2,
//! and TLS, belong to the proxy in front).
//!
//! - **A header-read timeout**: a connection's first byte, and each request's headers
//!   (the first request's, and each next one's on a kept-alive connection), must
//!   arrive within `header_read_timeout_seconds`, or the connection is closed. A client
//!   that sends nothing, or a byte a second, holds a connection for that long, not
//!   forever; an idle keep-alive connection is closed after it too.
//! - **A cap on connections** (`max_connections`): beyond it, up to [`OVERFLOW`] more
//!   are accepted and served one request each by [`overflow`], which answers the
//!   health endpoints (so a supervisor or balancer still sees the process) and 503
//!   with `Retry-After` to anything else; beyond those, new connections wait in the
//!   kernel's backlog. The process never reaches its file-descriptor limit by
//!   accepting, and `accept` errors (that limit, reached anyway) are logged and
//!   retried after a pause instead of spinning.
//!
//! Each request's client address reaches the handlers as axum's `ConnectInfo`: the
//! connection's peer, or behind a trusted proxy the address it reported
//! (`forwarded.rs`). On
//! shutdown, accepting stops and open connections are told to finish after the
//! request in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::forwarded::TrustedProxies;

/// Connections accepted beyond the cap, to answer health checks.
pub const OVERFLOW: usize = 64;
/// How long an overflow connection may take to send its one request's headers.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The listener's limits (`max_connections`, `header_read_timeout_seconds`) and whose
/// `X-Forwarded-For` it believes (`trusted_proxies`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, tells
/// open connections to finish, and returns once they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let regular = Arc::new(Semaphore::new(limits.max_connections));
    let spare = Arc::new(Semaphore::new(OVERFLOW));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut limited = builder.clone();
    limited
        .keep_alive(false)
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT);
    let mut at_cap_logged = false;
    tokio::pin!(shutdown);
    loop {
        // A slot first (a regular one, else a spare), then a connection.
        let slot = tokio::select! {
            slot = acquire(&regular, &spare) => slot,
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: the connection stays in the backlog; pause
                // rather than spin on it.
                tracing::warn!(error = %e, "accepting a connection failed; pausing 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (permit, overflow) = slot;
        if overflow && !at_cap_logged {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection cap reached: new connections get the health endpoints only (503 otherwise) until others close"
            );
        }
        at_cap_logged = overflow;
        let router = app.clone();
        let proxies = limits.trusted_proxies.clone();
        let service =
            TowerToHyperService::new(tower::service_fn(move |mut request: Request<Incoming>| {
                let client = if proxies.is_empty() {
                    peer
                } else {
                    SocketAddr::new(proxies.client(peer.ip(), request.headers()), peer.port())
                };
                request.extensions_mut().insert(ConnectInfo(client));
                let router = router.clone();
                async move {
                    if overflow {
                        return Ok::<_, std::convert::Infallible>(
                            self::overflow(router, request).await,
                        );
                    }
                    router.oneshot(request.map(Body::new)).await
                }
            }));
        let builder = if overflow {
            limited.clone()
        } else {
            builder.clone()
        };
        let first_byte = if overflow {
            OVERFLOW_HEADER_TIMEOUT
        } else {
            limits.header_read_timeout
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The connection's own timers start with its first read; a client that
            // sends nothing at all is cut here.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "connection closed: nothing sent within the header-read timeout");
                    drop(permit);
                    return;
                }
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A regular slot, or a spare one while every regular slot is taken (`true`); waits
/// while both are full.
async fn acquire(regular: &Arc<Semaphore>, spare: &Arc<Semaphore>) -> (OwnedSemaphorePermit, bool) {
    loop {
        tokio::select! {
            biased;
            permit = regular.clone().acquire_owned() => if let Ok(p) = permit { return (p, false) },
            permit = spare.clone().acquire_owned() => if let Ok(p) = permit { return (p, true) },
        }
        // Only a closed semaphore gets here, and neither is ever closed.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a connection beyond the cap gets: the health endpoints, 503 for the rest.
async fn overflow(router: Router, request: Request<Incoming>) -> Response<Body> {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return match router.oneshot(request.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let mut response = Response::new(Body::from(
        "{\"error\":\"unavailable\",\"detail\":\"too many connections; retry shortly\"}",
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}
