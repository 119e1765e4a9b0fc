//! An upstream over Streamable HTTP (revisions 2025-06-18 and 2025-11-25): one shared
//! session, started lazily and restarted when the server answers 404 to its id. While
//! the gateway wants the server's announcements, the session's standalone event stream
//! (a GET) is held open by a task of its own ([`Upstream::follow`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio::time::Instant;

use super::client::{self, Client, SendError};
use super::{Limits, Outcome, Upstream, UpstreamError, initialize_params, negotiated_version};
use crate::announce::{self, Announcement, Heard};
use crate::jsonrpc::Message;
use crate::sse::SseParser;

/// Headers added to each request (credentials are marked sensitive by whoever builds them).
pub type ExtraHeaders = HeaderMap;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

#[derive(Debug, Clone)]
struct Session {
    id: Option<HeaderValue>,
    version: String,
    info: Value,
}

#[derive(Debug)]
pub struct HttpUpstream {
    name: String,
    endpoint: Endpoint,
    client: Client,
    limits: Limits,
    /// Shared, not copied: every call reads it (its `info` is the upstream's whole
    /// `initialize` result).
    session: Mutex<Option<Arc<Session>>>,
    next_id: AtomicI64,
    announced: broadcast::Sender<Announcement>,
    following: Arc<std::sync::Mutex<Following>>,
}

/// The standalone stream's state: wanted until, held by a task, refused by the server.
#[derive(Debug, Default)]
struct Following {
    until: Option<Instant>,
    running: bool,
    /// The server answered the GET with anything but a stream (405: it offers none):
    /// not asked again before then.
    refused_until: Option<Instant>,
}

/// How long a server that refused its standalone stream is left alone.
const REFUSED_FOR: Duration = Duration::from_secs(60);

impl HttpUpstream {
    /// `name` is what errors call it (the tool server's name), never the URL's secrets.
    pub fn new(name: &str, url: &str, limits: Limits) -> Result<Self, UpstreamError> {
        let bad = |what: &str| UpstreamError::Protocol(format!("upstream `{name}`: {what}"));
        let mut parsed = url::Url::parse(url).map_err(|e| bad(&format!("bad URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the URL must be http or https"));
        }
        let basic = basic_credential(&mut parsed)
            .map_err(|()| bad("the URL's user name or password is not UTF-8"))?;
        // Never sent: a fragment is the client's own.
        parsed.set_fragment(None);
        let uri = parsed
            .as_str()
            .parse::<Uri>()
            .map_err(|e| bad(&format!("bad URL: {e}")))?;
        let client = Client::new(limits.connect_timeout)
            .map_err(|e| UpstreamError::Unavailable(format!("upstream `{name}`: {e}")))?;
        Ok(HttpUpstream {
            name: name.to_owned(),
            endpoint: Endpoint { uri, basic },
            client,
            limits,
            session: Mutex::new(None),
            next_id: AtomicI64::new(1),
            announced: broadcast::channel(announce::CHANNEL).0,
            following: Arc::default(),
        })
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Unavailable(format!("upstream `{}` {what}", self.name))
    }

    fn protocol(&self, what: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Protocol(format!("upstream `{}` {what}", self.name))
    }

    async fn session(&self, extra: &ExtraHeaders) -> Result<Arc<Session>, UpstreamError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_ref() {
            return Ok(session.clone());
        }
        // Callers wait on the lock while one initializes: bound it, so that an upstream
        // that accepts the connection and never answers holds them no longer.
        let limit = self.limits.initialize_timeout;
        let session = tokio::time::timeout(limit, self.initialize(extra))
            .await
            .map_err(|_| {
                self.unavailable(format!(
                    "did not finish initialize within {} ms",
                    limit.as_millis()
                ))
            })??;
        let session = Arc::new(session);
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn initialize(&self, extra: &ExtraHeaders) -> Result<Session, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = Message::Request {
            id: Value::from(id),
            method: "initialize".into(),
            params: Some(initialize_params()),
        };
        let response = self.post(&body, None, extra).await?;
        let session_id = response.headers().get(&SESSION_HEADER).cloned();
        let outcome = self.read_response(response, &Value::from(id), None).await?;
        let info = outcome.map_err(|e| self.protocol(format!("refused initialize: {e}")))?;
        let version = negotiated_version(&info)?;
        let session = Session {
            id: session_id,
            version,
            info,
        };
        let initialized = Message::Notification {
            method: "notifications/initialized".into(),
            params: None,
        };
        let ack = self.post(&initialized, Some(&session), extra).await?;
        if !ack.status().is_success() {
            return Err(self.protocol(format!(
                "refused notifications/initialized with HTTP {}",
                ack.status().as_u16()
            )));
        }
        Ok(session)
    }

    async fn forget(&self, stale: &Session) {
        let mut guard = self.session.lock().await;
        if guard.as_ref().map(|s| &s.id) == Some(&stale.id) {
            *guard = None;
        }
    }

    async fn post(
        &self,
        body: &Message,
        session: Option<&Session>,
        extra: &ExtraHeaders,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let headers = self.endpoint.headers(
            HeaderValue::from_static("application/json, text/event-stream"),
            Some(HeaderValue::from_static("application/json")),
            session,
            extra,
        );
        let bytes = serde_json::to_vec(body).map_err(|e| self.protocol(e))?;
        self.client
            .send(
                Method::POST,
                &self.endpoint.uri,
                headers,
                Bytes::from(bytes),
            )
            .await
            .map_err(|e| match e {
                SendError::Connect => self.unavailable("is unreachable"),
                SendError::Failed => self.unavailable("failed"),
            })
    }

    /// Reads a response to the request `id`: one JSON message, or an SSE stream whose
    /// other messages go to `events` until the response arrives.
    async fn read_response(
        &self,
        mut response: Response<Incoming>,
        id: &Value,
        events: Option<&mpsc::Sender<Value>>,
    ) -> Result<Outcome, UpstreamError> {
        let status = response.status();
        if !status.is_success() {
            // A JSON-RPC error body (e.g. 400 with -32602) is still the server's answer.
            let body = read_limited(response.body_mut(), self.limits.max_message_bytes)
                .await
                .unwrap_or_default();
            if let Ok(Message::Response { outcome, .. }) = Message::parse(&body) {
                return Ok(outcome);
            }
            return Err(self.unavailable(format!("answered HTTP {}", status.as_u16())));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            let mut parser = SseParser::new(self.limits.max_message_bytes);
            loop {
                let chunk = client::chunk(response.body_mut())
                    .await
                    .map_err(|_| self.unavailable("broke off its event stream"))?;
                let Some(chunk) = chunk else {
                    return Err(self.unavailable("closed its event stream without a response"));
                };
                for event in parser.push(&chunk).map_err(|e| self.protocol(e))? {
                    let value: Value = serde_json::from_str(&event.data)
                        .map_err(|_| self.protocol("sent an event that is not JSON"))?;
                    let message = Message::from_value(value.clone())
                        .map_err(|e| self.protocol(format!("sent a bad message: {e}")))?;
                    match message {
                        Message::Response { id: rid, outcome } if &rid == id => {
                            return Ok(outcome);
                        }
                        Message::Response { .. } => {}
                        Message::Notification { method, params } => {
                            match Heard::of(&method, params.as_ref()) {
                                Heard::Announced(a) => {
                                    // Nobody listening is no failure.
                                    let _ = self.announced.send(a);
                                }
                                Heard::Unusable => {}
                                Heard::Other => {
                                    if let Some(events) = events {
                                        let _ = events.send(value).await;
                                    }
                                }
                            }
                        }
                        Message::Request { .. } => {
                            if let Some(events) = events {
                                // A caller that went away no longer wants the events.
                                let _ = events.send(value).await;
                            }
                        }
                    }
                }
            }
        }
        if content_type.starts_with("application/json") {
            let body = read_limited(response.body_mut(), self.limits.max_message_bytes)
                .await
                .map_err(|e| self.protocol(e))?;
            return match Message::parse(&body) {
                Ok(Message::Response { id: rid, outcome }) if &rid == id => Ok(outcome),
                Ok(_) => Err(self.protocol("answered with a message that is not our response")),
                Err(e) => Err(self.protocol(format!("answered with a bad message: {e}"))),
            };
        }
        Err(self.protocol("answered with neither JSON nor an event stream"))
    }

    async fn send_once(
        &self,
        message: &Message,
        id: Option<&Value>,
        extra: &ExtraHeaders,
        events: Option<&mpsc::Sender<Value>>,
    ) -> Result<Option<Outcome>, Retry> {
        let session = self.session(extra).await.map_err(Retry::No)?;
        let response = self
            .post(message, Some(&session), extra)
            .await
            .map_err(Retry::No)?;
        if response.status() == StatusCode::NOT_FOUND && session.id.is_some() {
            // The server forgot our session: start a new one and try again, once.
            self.forget(&session).await;
            return Err(Retry::Yes);
        }
        match id {
            Some(id) => self
                .read_response(response, id, events)
                .await
                .map(Some)
                .map_err(Retry::No),
            None if response.status().is_success() => Ok(None),
            None => Err(Retry::No(self.unavailable(format!(
                "refused a notification with HTTP {}",
                response.status().as_u16()
            )))),
        }
    }

    async fn send(
        &self,
        message: Message,
        id: Option<&Value>,
        extra: &ExtraHeaders,
        events: Option<&mpsc::Sender<Value>>,
    ) -> Result<Option<Outcome>, UpstreamError> {
        match self.send_once(&message, id, extra, events).await {
            Ok(outcome) => Ok(outcome),
            Err(Retry::No(e)) => Err(e),
            Err(Retry::Yes) => match self.send_once(&message, id, extra, events).await {
                Ok(outcome) => Ok(outcome),
                Err(Retry::No(e)) => Err(e),
                Err(Retry::Yes) => Err(self.unavailable("keeps forgetting its session")),
            },
        }
    }
}

enum Retry {
    Yes,
    No(UpstreamError),
}

/// Where an upstream's requests go, parsed once (a request clones the URI instead of
/// parsing the text again), and the Basic credential its URL carried, if any.
#[derive(Debug, Clone)]
struct Endpoint {
    uri: Uri,
    basic: Option<HeaderValue>,
}

impl Endpoint {
    /// A request's headers: what it accepts, its body's type, the URL's credential, the
    /// session's headers and the extra ones (appended: an extra header never replaces
    /// one of ours).
    fn headers(
        &self,
        accept: HeaderValue,
        content_type: Option<HeaderValue>,
        session: Option<&Session>,
        extra: &ExtraHeaders,
    ) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(5 + extra.len());
        headers.insert(header::ACCEPT, accept);
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        if let Some(basic) = &self.basic {
            headers.insert(header::AUTHORIZATION, basic.clone());
        }
        if let Some(session) = session {
            // The version was negotiated from revisions we know, all header-safe.
            if let Ok(version) = HeaderValue::from_str(&session.version) {
                headers.insert(VERSION_HEADER, version);
            }
            if let Some(id) = &session.id {
                headers.insert(SESSION_HEADER, id.clone());
            }
        }
        for (name, value) in extra {
            headers.append(name, value.clone());
        }
        headers
    }
}

/// Takes a user name and password out of `url` (which keeps neither) as the Basic
/// credential sent with each request, marked sensitive so that no log shows it; `Err`
/// when they do not decode to UTF-8.
fn basic_credential(url: &mut url::Url) -> Result<Option<HeaderValue>, ()> {
    use base64::Engine as _;
    use percent_encoding::percent_decode_str;

    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let user = percent_decode_str(url.username())
        .decode_utf8()
        .map_err(|_| ())?;
    let password = match url.password() {
        Some(p) => percent_decode_str(p).decode_utf8().map_err(|_| ())?,
        None => "".into(),
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).map_err(|_| ())?;
    value.set_sensitive(true);
    // An http(s) URL has an authority, so neither can fail.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(Some(value))
}

/// What the task holding a standalone stream needs (no reference to the upstream).
struct Follower {
    name: String,
    endpoint: Endpoint,
    client: Client,
    max_message_bytes: usize,
    session: Arc<Session>,
    extra: ExtraHeaders,
    announced: broadcast::Sender<Announcement>,
    following: Arc<std::sync::Mutex<Following>>,
}

impl Follower {
    /// Holds the stream open, reopening it after a second when it ends, until it is no
    /// longer wanted, the session is gone (404) or the server refuses it.
    async fn run(self) {
        loop {
            let wanted = self
                .following
                .lock()
                .ok()
                .and_then(|f| f.until)
                .is_some_and(|until| Instant::now() < until);
            if !wanted {
                break;
            }
            let headers = self.endpoint.headers(
                HeaderValue::from_static("text/event-stream"),
                None,
                Some(&self.session),
                &self.extra,
            );
            let sent = self
                .client
                .send(Method::GET, &self.endpoint.uri, headers, Bytes::new())
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    self.read(response).await;
                }
                // The server forgot the session: the next `follow` opens the stream
                // of the one that replaces it.
                Ok(response) if response.status() == StatusCode::NOT_FOUND => break,
                Ok(response) => {
                    tracing::debug!(upstream = %self.name, status = response.status().as_u16(), "no standalone stream from this upstream");
                    if let Ok(mut f) = self.following.lock() {
                        f.refused_until = Some(Instant::now() + REFUSED_FOR);
                    }
                    break;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Ok(mut f) = self.following.lock() {
            f.running = false;
        }
    }

    /// Reads one stream until it ends or is no longer wanted: announcements go to the
    /// channel; anything else on it is for no request of ours and is dropped.
    async fn read(&self, mut response: Response<Incoming>) {
        let mut parser = SseParser::new(self.max_message_bytes);
        loop {
            let until = self.following.lock().ok().and_then(|f| f.until);
            let Some(until) = until.filter(|u| Instant::now() < *u) else {
                return;
            };
            let chunk =
                match tokio::time::timeout_at(until, client::chunk(response.body_mut())).await {
                    Err(_) => continue,
                    Ok(Ok(Some(chunk))) => chunk,
                    Ok(_) => return,
                };
            let Ok(events) = parser.push(&chunk) else {
                return;
            };
            for event in events {
                let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                if let Heard::Announced(a) = Heard::of_message(&value) {
                    let _ = self.announced.send(a);
                }
            }
        }
    }
}

async fn read_limited(response: &mut Incoming, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = client::chunk(response).await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("sent a response larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl Upstream for HttpUpstream {
    async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        extra: &ExtraHeaders,
        events: Option<mpsc::Sender<Value>>,
    ) -> Result<Outcome, UpstreamError> {
        let id = Value::from(self.next_id.fetch_add(1, Ordering::Relaxed));
        let message = Message::Request {
            id: id.clone(),
            method: method.to_owned(),
            params,
        };
        self.send(message, Some(&id), extra, events.as_ref())
            .await?
            .ok_or_else(|| self.protocol("did not answer"))
    }

    async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
        extra: &ExtraHeaders,
    ) -> Result<(), UpstreamError> {
        let message = Message::Notification {
            method: method.to_owned(),
            params,
        };
        self.send(message, None, extra, None).await.map(|_| ())
    }

    async fn respond(
        &self,
        id: Value,
        outcome: Outcome,
        extra: &ExtraHeaders,
    ) -> Result<(), UpstreamError> {
        let message = Message::Response { id, outcome };
        self.send(message, None, extra, None).await.map(|_| ())
    }

    async fn server_info(&self, extra: &ExtraHeaders) -> Result<Value, UpstreamError> {
        Ok(self.session(extra).await?.info.clone())
    }

    fn announcements(&self) -> broadcast::Receiver<Announcement> {
        self.announced.subscribe()
    }

    async fn follow(&self, extra: &ExtraHeaders, until: Instant) {
        {
            let Ok(mut f) = self.following.lock() else {
                return;
            };
            f.until = Some(f.until.map_or(until, |u| u.max(until)));
            let refused = f.refused_until.is_some_and(|r| Instant::now() < r);
            if f.running || refused {
                return;
            }
            f.running = true;
        }
        let Ok(session) = self.session(extra).await else {
            if let Ok(mut f) = self.following.lock() {
                f.running = false;
            }
            return;
        };
        let follower = Follower {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            client: self.client.clone(),
            max_message_bytes: self.limits.max_message_bytes,
            session,
            extra: extra.clone(),
            announced: self.announced.clone(),
            following: self.following.clone(),
        };
        tokio::spawn(follower.run());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "a test fails loudly")]

    use std::time::{Duration, Instant};

    use super::*;

    /// An upstream that takes connections and never answers: a call is told so once the
    /// initialize timeout passes, and so is the next one (nobody is left holding the
    /// session lock).
    #[tokio::test]
    async fn an_upstream_that_never_answers_initialize_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let limits = Limits {
            initialize_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let upstream = HttpUpstream::new("silent", &url, limits).unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let refused = tokio::time::timeout(
                Duration::from_secs(5),
                upstream.request("tools/list", None, &ExtraHeaders::new(), None),
            )
            .await
            .unwrap_or_else(|_| panic!("the call hung on a silent upstream"));
            let waited = started.elapsed();
            match refused {
                Err(UpstreamError::Unavailable(message)) => {
                    assert!(message.contains("initialize"), "{message}");
                }
                other => panic!("{other:?}"),
            }
            assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        }
        silent.abort();
    }

    #[test]
    fn a_url_that_cannot_name_an_upstream_is_refused_without_echoing_it() {
        for url in [
            "not a url",
            "ftp://127.0.0.1/mcp",
            "file:///etc/passwd",
            "http://someone:hunt%FFer2@127.0.0.1/mcp",
        ] {
            match HttpUpstream::new("u", url, Limits::default()) {
                Err(UpstreamError::Protocol(message)) => {
                    assert!(!message.contains("hunt"), "{url}: {message}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        // A fragment is never sent; the URL is still usable.
        let upstream = HttpUpstream::new("u", "http://127.0.0.1:9/mcp#part", Limits::default());
        assert_eq!(upstream.unwrap().endpoint.uri, "http://127.0.0.1:9/mcp");
    }

    /// A URL's user name and password become a Basic credential, marked sensitive, and
    /// leave the URI the requests are sent to.
    #[test]
    fn a_urls_credential_is_sent_as_basic_and_kept_out_of_the_uri() {
        for (url, expected) in [
            ("http://someone:hunter2@127.0.0.1/mcp", "someone:hunter2"),
            ("https://hunter2@tools.example/mcp", "hunter2:"),
            ("http://:hunter2@127.0.0.1/mcp", ":hunter2"),
            ("http://a%40b:p%3Aw%20d@127.0.0.1/mcp", "a@b:p:w d"),
        ] {
            use base64::Engine as _;

            let upstream = HttpUpstream::new("u", url, Limits::default()).unwrap();
            assert!(!upstream.endpoint.uri.to_string().contains('@'), "{url}");
            let headers = upstream.endpoint.headers(
                HeaderValue::from_static("*/*"),
                None,
                None,
                &ExtraHeaders::new(),
            );
            let basic = headers.get(header::AUTHORIZATION).unwrap();
            assert!(basic.is_sensitive(), "{url}");
            let encoded = basic.to_str().unwrap().strip_prefix("Basic ").unwrap();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            assert_eq!(String::from_utf8(decoded).unwrap(), expected, "{url}");
        }
        let plain = HttpUpstream::new("u", "http://127.0.0.1/mcp", Limits::default()).unwrap();
        assert!(plain.endpoint.basic.is_none());
    }

    #[tokio::test]
    async fn an_upstream_nobody_listens_on_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        drop(listener);
        let upstream = HttpUpstream::new("gone", &url, Limits::default()).unwrap();
        match upstream
            .request("tools/list", None, &ExtraHeaders::new(), None)
            .await
        {
            Err(UpstreamError::Unavailable(message)) => {
                assert_eq!(message, "upstream `gone` is unreachable");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A 3xx is no answer: the request is not sent again elsewhere, so the credentials
    /// on it never reach the place a redirect names.
    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        use std::sync::atomic::AtomicUsize;

        let elsewhere_hits = Arc::new(AtomicUsize::new(0));
        let hits = elsewhere_hits.clone();
        let elsewhere = axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        });
        let elsewhere_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}/mcp", elsewhere_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(elsewhere_listener, elsewhere).await });
        let redirecting = axum::Router::new().fallback(move || {
            let target = target.clone();
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, target)],
                    "",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirecting).await });

        let upstream = HttpUpstream::new("moved", &url, Limits::default()).unwrap();
        let mut extra = ExtraHeaders::new();
        extra.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        match upstream.request("tools/list", None, &extra, None).await {
            Err(UpstreamError::Unavailable(message)) => {
                assert_eq!(message, "upstream `moved` answered HTTP 307");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
    }
}
