//! An upstream the gateway spawns and talks to over stdio: newline-delimited JSON-RPC.
//!
//! A supervisor owns the process: it (re)starts it, runs the `initialize` handshake,
//! and restarts it with exponential back-off when it exits; requests in flight then
//! fail with a clear error. Request ids and progress tokens are rewritten so that many
//! callers share the one stream; a request the server sends goes to the caller whose
//! request is in flight when there is exactly one (stdio has no way to say which
//! request it belongs to), and is refused otherwise.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, broadcast, mpsc, oneshot, watch};

use super::{
    ExtraHeaders, Limits, Outcome, Upstream, UpstreamError, initialize_params, negotiated_version,
};
use crate::announce::{self, Announcement, Heard};
use crate::jsonrpc::{self, Message};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct StdioOptions {
    pub command: String,
    pub args: Vec<String>,
    /// Environment given to the process on top of a minimal one (`PATH`, `HOME`).
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub max_backoff: Duration,
}

struct Pending {
    reply: oneshot::Sender<Outcome>,
    events: Option<mpsc::Sender<Value>>,
}

struct Routes {
    pending: HashMap<i64, Pending>,
    /// Our progress token → (the caller's events, the caller's own token).
    progress: HashMap<String, (mpsc::Sender<Value>, Value)>,
    /// What the server announces about itself, whenever it writes it.
    announced: broadcast::Sender<Announcement>,
}

impl Routes {
    fn new(announced: broadcast::Sender<Announcement>) -> Self {
        Routes {
            pending: HashMap::new(),
            progress: HashMap::new(),
            announced,
        }
    }
}

/// What the supervisor publishes: the stdin writer and the handshake result while up.
#[derive(Clone)]
enum State {
    Starting,
    Up {
        stdin: mpsc::Sender<String>,
        info: Value,
    },
    Down(String),
}

pub struct StdioUpstream {
    name: String,
    next_id: Arc<AtomicI64>,
    routes: Arc<Mutex<Routes>>,
    state: watch::Receiver<State>,
    announced: broadcast::Sender<Announcement>,
    _supervisor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        self._supervisor.abort();
    }
}

impl StdioUpstream {
    /// Starts supervising the server; it is spawned at once and restarted when it exits.
    pub fn spawn(name: &str, options: StdioOptions) -> StdioUpstream {
        let (state_tx, state) = watch::channel(State::Starting);
        let announced = broadcast::channel(announce::CHANNEL).0;
        let routes = Arc::new(Mutex::new(Routes::new(announced.clone())));
        let next_id = Arc::new(AtomicI64::new(1));
        let supervisor = tokio::spawn(supervise(
            name.to_owned(),
            options,
            state_tx,
            routes.clone(),
            next_id.clone(),
        ));
        StdioUpstream {
            name: name.to_owned(),
            next_id,
            routes,
            state,
            announced,
            _supervisor: supervisor,
        }
    }

    async fn up(&self) -> Result<(mpsc::Sender<String>, Value), UpstreamError> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                State::Up { stdin, info } => return Ok((stdin.clone(), info.clone())),
                State::Down(why) => {
                    return Err(UpstreamError::Unavailable(format!(
                        "upstream `{}` is not running: {why}",
                        self.name
                    )));
                }
                State::Starting => {}
            }
            if state.changed().await.is_err() {
                return Err(UpstreamError::Unavailable(format!(
                    "upstream `{}` is shut down",
                    self.name
                )));
            }
        }
    }

    async fn write(
        &self,
        stdin: &mpsc::Sender<String>,
        message: &Message,
    ) -> Result<(), UpstreamError> {
        let line =
            serde_json::to_string(message).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        stdin
            .send(line)
            .await
            .map_err(|_| UpstreamError::Unavailable(format!("upstream `{}` exited", self.name)))
    }
}

#[async_trait]
impl Upstream for StdioUpstream {
    async fn request(
        &self,
        method: &str,
        mut params: Option<Value>,
        _extra: &ExtraHeaders,
        events: Option<mpsc::Sender<Value>>,
    ) -> Result<Outcome, UpstreamError> {
        let (stdin, _) = self.up().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let mut our_token = None;
        {
            let mut routes = self.routes.lock().await;
            if let (Some(events), Some(meta)) = (
                &events,
                params
                    .as_mut()
                    .and_then(|p| p.get_mut("_meta"))
                    .and_then(Value::as_object_mut),
            ) && let Some(token) = meta.get("progressToken").cloned()
            {
                let ours = format!("mandate-{id}");
                meta.insert("progressToken".into(), Value::from(ours.clone()));
                routes
                    .progress
                    .insert(ours.clone(), (events.clone(), token));
                our_token = Some(ours);
            }
            routes.pending.insert(id, Pending { reply, events });
        }
        let message = Message::Request {
            id: Value::from(id),
            method: method.to_owned(),
            params,
        };
        let sent = self.write(&stdin, &message).await;
        let outcome = match sent {
            Ok(()) => answer.await.map_err(|_| {
                UpstreamError::Unavailable(format!(
                    "upstream `{}` exited before answering",
                    self.name
                ))
            }),
            Err(e) => Err(e),
        };
        let mut routes = self.routes.lock().await;
        routes.pending.remove(&id);
        if let Some(token) = our_token {
            routes.progress.remove(&token);
        }
        outcome
    }

    async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
        _extra: &ExtraHeaders,
    ) -> Result<(), UpstreamError> {
        let (stdin, _) = self.up().await?;
        let message = Message::Notification {
            method: method.to_owned(),
            params,
        };
        self.write(&stdin, &message).await
    }

    async fn respond(
        &self,
        id: Value,
        outcome: Outcome,
        _extra: &ExtraHeaders,
    ) -> Result<(), UpstreamError> {
        let (stdin, _) = self.up().await?;
        self.write(&stdin, &Message::Response { id, outcome }).await
    }

    async fn server_info(&self, _extra: &ExtraHeaders) -> Result<Value, UpstreamError> {
        Ok(self.up().await?.1)
    }

    fn announcements(&self) -> broadcast::Receiver<Announcement> {
        self.announced.subscribe()
    }
}

async fn supervise(
    name: String,
    options: StdioOptions,
    state: watch::Sender<State>,
    routes: Arc<Mutex<Routes>>,
    next_id: Arc<AtomicI64>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = tokio::time::Instant::now();
        let why = match run_once(&name, &options, &state, &routes, &next_id).await {
            Ok(why) | Err(why) => why,
        };
        tracing::warn!(upstream = %name, reason = %why, "stdio upstream stopped; restarting");
        let _ = state.send(State::Down(why));
        // Requests in flight will never be answered by this process.
        let mut r = routes.lock().await;
        r.pending.clear();
        r.progress.clear();
        drop(r);
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(250);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(options.max_backoff);
        let _ = state.send(State::Starting);
    }
}

/// Runs the process until it exits; returns why.
async fn run_once(
    name: &str,
    options: &StdioOptions,
    state: &watch::Sender<State>,
    routes: &Arc<Mutex<Routes>>,
    next_id: &Arc<AtomicI64>,
) -> Result<String, String> {
    let mut command = Command::new(&options.command);
    command
        .args(&options.args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for key in ["PATH", "HOME", "LANG", "SYSTEMROOT"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    for (key, value) in &options.env {
        command.env(key, value);
    }
    let mut child: Child = command
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", options.command))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the process has no stdio".into());
    };
    let (line_tx, mut line_rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = line_rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    let log_name = name.to_owned();
    let logger = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line: String = line.chars().take(512).collect();
            tracing::debug!(upstream = %log_name, "{line}");
        }
    });

    // The handshake, answered through the same routes as every other request.
    let init_id = next_id.fetch_add(1, Ordering::Relaxed);
    let (reply, answer) = oneshot::channel();
    routes.lock().await.pending.insert(
        init_id,
        Pending {
            reply,
            events: None,
        },
    );
    let init = Message::Request {
        id: Value::from(init_id),
        method: "initialize".into(),
        params: Some(initialize_params()),
    };
    let init_line = serde_json::to_string(&init).map_err(|e| e.to_string())?;
    line_tx
        .send(init_line)
        .await
        .map_err(|_| "the process closed its input".to_owned())?;

    let reader = read_stdout(
        stdout,
        routes.clone(),
        line_tx.clone(),
        options.limits.max_message_bytes,
    );
    tokio::pin!(reader);
    let handshake = async {
        let outcome = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .map_err(|_| "no answer to initialize within 30 s".to_owned())?
            .map_err(|_| "exited during initialize".to_owned())?;
        let info = outcome.map_err(|e| format!("refused initialize: {e}"))?;
        negotiated_version(&info).map_err(|e| e.to_string())?;
        let initialized = Message::Notification {
            method: "notifications/initialized".into(),
            params: None,
        };
        let line = serde_json::to_string(&initialized).map_err(|e| e.to_string())?;
        line_tx
            .send(line)
            .await
            .map_err(|_| "the process closed its input".to_owned())?;
        Ok::<Value, String>(info)
    };
    let info = tokio::select! {
        info = handshake => info?,
        why = &mut reader => return Err(why),
    };
    let _ = state.send(State::Up {
        stdin: line_tx.clone(),
        info,
    });
    drop(line_tx);
    let why = tokio::select! {
        why = &mut reader => why,
        status = child.wait() => match status {
            Ok(status) => format!("exited with {status}"),
            Err(e) => format!("could not be waited for: {e}"),
        },
    };
    writer.abort();
    logger.abort();
    let _ = child.start_kill();
    Ok(why)
}

/// Routes what the server writes until its stdout closes; returns why it stopped.
async fn read_stdout(
    stdout: tokio::process::ChildStdout,
    routes: Arc<Mutex<Routes>>,
    stdin: mpsc::Sender<String>,
    max_line: usize,
) -> String {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(u64::try_from(max_line).unwrap_or(u64::MAX) + 1);
        match tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await {
            Ok(0) => return "closed its output".into(),
            Ok(n) if n > max_line => return format!("wrote a line longer than {max_line} bytes"),
            Ok(_) => {}
            Err(e) => return format!("output failed: {e}"),
        }
        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
            tracing::debug!("stdio upstream wrote a line that is not JSON; ignored");
            continue;
        };
        let Ok(message) = Message::from_value(value.clone()) else {
            tracing::debug!("stdio upstream wrote a message that is not JSON-RPC; ignored");
            continue;
        };
        route(message, value, &routes, &stdin).await;
    }
}

use tokio::io::AsyncReadExt as _;

async fn route(message: Message, raw: Value, routes: &Mutex<Routes>, stdin: &mpsc::Sender<String>) {
    let mut r = routes.lock().await;
    match message {
        Message::Response { id, outcome } => {
            if let Some(pending) = id.as_i64().and_then(|id| r.pending.remove(&id)) {
                let _ = pending.reply.send(outcome);
            }
        }
        Message::Notification { method, params } => {
            match Heard::of(&method, params.as_ref()) {
                Heard::Announced(a) => {
                    let _ = r.announced.send(a);
                    return;
                }
                Heard::Unusable => return,
                Heard::Other => {}
            }
            let token = params
                .as_ref()
                .and_then(|p| p.get("progressToken"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some((events, theirs)) = token.and_then(|t| r.progress.get(&t)) {
                let mut params = params.unwrap_or(Value::Null);
                if let Some(map) = params.as_object_mut() {
                    map.insert("progressToken".into(), theirs.clone());
                }
                let message = Message::Notification {
                    method,
                    params: Some(params),
                };
                // A `Message` always serialises (its keys are strings).
                if let Ok(message) = serde_json::to_value(&message) {
                    let _ = events.try_send(message);
                }
            } else if let [only] = r.pending.values().collect::<Vec<_>>()[..]
                && let Some(events) = &only.events
            {
                let _ = events.try_send(raw);
            }
        }
        Message::Request { id, method, .. } => {
            let target = match &r.pending.values().collect::<Vec<_>>()[..] {
                [only] => only.events.clone(),
                _ => None,
            };
            drop(r);
            let delivered = match target {
                Some(events) => events.send(raw).await.is_ok(),
                None => false,
            };
            if !delivered {
                let refusal = jsonrpc::error_response(
                    id,
                    jsonrpc::code::METHOD_NOT_FOUND,
                    format!("the gateway cannot route `{method}` to a client"),
                    None,
                );
                if let Ok(line) = serde_json::to_string(&refusal) {
                    let _ = stdin.send(line).await;
                }
            }
        }
    }
}
