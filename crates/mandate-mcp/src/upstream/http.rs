//! An upstream over Streamable HTTP (revisions 2025-06-18 and 2025-11-25): one shared
//! session, started lazily and restarted when the server answers 404 to its id. While
//! the gateway wants the server's announcements, the session's standalone event stream
//! (a GET) is held open by a task of its own ([`Upstream::follow`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio::time::Instant;

use super::{Limits, Outcome, Upstream, UpstreamError, initialize_params, negotiated_version};
use crate::announce::{self, Announcement, Heard};
use crate::jsonrpc::Message;
use crate::sse::SseParser;

/// Headers added to each request (credentials are marked sensitive by whoever builds them).
pub type ExtraHeaders = HeaderMap;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

#[derive(Debug, Clone)]
struct Session {
    id: Option<HeaderValue>,
    version: String,
    info: Value,
}

#[derive(Debug)]
pub struct HttpUpstream {
    name: String,
    /// Parsed once: a request clones it instead of parsing the text again.
    url: reqwest::Url,
    client: reqwest::Client,
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
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| UpstreamError::Protocol(format!("upstream `{name}`: bad URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UpstreamError::Protocol(format!(
                "upstream `{name}`: the URL must be http or https"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Unavailable(format!("upstream `{name}`: {e}")))?;
        Ok(HttpUpstream {
            name: name.to_owned(),
            url: parsed,
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
        let session_id = response.headers().get(SESSION_HEADER).cloned();
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
    ) -> Result<reqwest::Response, UpstreamError> {
        let request = self
            .client
            .post(self.url.clone())
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(http::header::CONTENT_TYPE, "application/json");
        let request = with_session(request, session, extra);
        let bytes = serde_json::to_vec(body).map_err(|e| self.protocol(e))?;
        request.body(bytes).send().await.map_err(|e| {
            if e.is_connect() {
                self.unavailable("is unreachable")
            } else if e.is_timeout() {
                self.unavailable("timed out")
            } else {
                self.unavailable("failed")
            }
        })
    }

    /// Reads a response to the request `id`: one JSON message, or an SSE stream whose
    /// other messages go to `events` until the response arrives.
    async fn read_response(
        &self,
        mut response: reqwest::Response,
        id: &Value,
        events: Option<&mpsc::Sender<Value>>,
    ) -> Result<Outcome, UpstreamError> {
        let status = response.status();
        if !status.is_success() {
            // A JSON-RPC error body (e.g. 400 with -32602) is still the server's answer.
            let body = read_limited(&mut response, self.limits.max_message_bytes)
                .await
                .unwrap_or_default();
            if let Ok(Message::Response { outcome, .. }) = Message::parse(&body) {
                return Ok(outcome);
            }
            return Err(self.unavailable(format!("answered HTTP {}", status.as_u16())));
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            let mut parser = SseParser::new(self.limits.max_message_bytes);
            loop {
                let chunk = response
                    .chunk()
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
            let body = read_limited(&mut response, self.limits.max_message_bytes)
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

/// The session's headers and the extra ones on a request.
fn with_session(
    mut request: reqwest::RequestBuilder,
    session: Option<&Session>,
    extra: &ExtraHeaders,
) -> reqwest::RequestBuilder {
    if let Some(session) = session {
        request = request.header(VERSION_HEADER, session.version.as_str());
        if let Some(id) = &session.id {
            request = request.header(SESSION_HEADER, id.clone());
        }
    }
    for (name, value) in extra {
        request = request.header(name, value);
    }
    request
}

/// What the task holding a standalone stream needs (no reference to the upstream).
struct Follower {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
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
            let request = self
                .client
                .get(self.url.clone())
                .header(http::header::ACCEPT, "text/event-stream");
            let sent = with_session(request, Some(&self.session), &self.extra)
                .send()
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
    async fn read(&self, mut response: reqwest::Response) {
        let mut parser = SseParser::new(self.max_message_bytes);
        loop {
            let until = self.following.lock().ok().and_then(|f| f.until);
            let Some(until) = until.filter(|u| Instant::now() < *u) else {
                return;
            };
            let chunk = match tokio::time::timeout_at(until, response.chunk()).await {
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

async fn read_limited(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
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
            url: self.url.clone(),
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
}
