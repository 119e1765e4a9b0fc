//! An HTTP upstream's announcements, from a hand-made server that sends hostile ones:
//! on a call's event stream they go to the announcement channel (never to the caller's
//! events), on the session's standalone stream (`follow`) too, and only those with
//! usable params; a server that offers no standalone stream is not asked again at once.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use mandate_mcp::{Announcement, ExtraHeaders, HttpUpstream, Limits, ListKind, Upstream};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

#[derive(Default)]
struct Mock {
    refuse_streams: bool,
    gets: AtomicUsize,
}

fn sse(messages: &[String]) -> Response {
    let body: String = messages.iter().map(|m| format!("data: {m}\n\n")).collect();
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn on_post(State(_): State<Arc<Mock>>, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap();
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    match message["method"].as_str().unwrap_or_default() {
        "initialize" => (
            [("mcp-session-id", "s1")],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": true}},
                "serverInfo": {"name": "mock", "version": "1"}}})),
        )
            .into_response(),
        _ => sse(&[
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                "params": {"huge": "x".repeat(100_000)}})
            .to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                "params": {"uri": "u".repeat(5000)}})
            .to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": 1, "progress": 1}})
            .to_string(),
            json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}).to_string(),
        ]),
    }
}

async fn on_get(State(mock): State<Arc<Mock>>, headers: HeaderMap) -> Response {
    assert_eq!(headers["mcp-session-id"], "s1");
    let first = mock.gets.fetch_add(1, Ordering::SeqCst) == 0;
    if mock.refuse_streams {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if !first {
        return sse(&[]);
    }
    sse(&[
        "not json".to_owned(),
        json!({"jsonrpc": "2.0", "method": "notifications/unheard/of", "params": {"uri": "a"}})
            .to_string(),
        json!({"jsonrpc": "2.0", "id": 9, "method": "roots/list"}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": "test://a\u{7}"}})
        .to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": "test://a"}})
        .to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed",
            "params": [1, 2]})
        .to_string(),
    ])
}

async fn upstream(mock: Mock) -> (HttpUpstream, Arc<Mock>) {
    let mock = Arc::new(mock);
    let app = Router::new()
        .route("/mcp", post(on_post).get(on_get))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        HttpUpstream::new("mock", &url, Limits::default()).unwrap(),
        mock,
    )
}

/// What arrives on `announced` within `wait`.
async fn gathered(
    announced: &mut broadcast::Receiver<Announcement>,
    wait: Duration,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    while let Ok(Ok(a)) = tokio::time::timeout(wait, announced.recv()).await {
        out.push(a);
    }
    out
}

#[tokio::test]
async fn a_calls_stream_keeps_announcements_from_the_caller() {
    let (upstream, _) = upstream(Mock::default()).await;
    let mut announced = upstream.announcements();
    let (events, mut seen) = mpsc::channel(16);
    let answer = upstream
        .request(
            "tools/call",
            Some(json!({"name": "t"})),
            &ExtraHeaders::new(),
            Some(events),
        )
        .await
        .unwrap();
    assert_eq!(answer, Ok(json!({"content": []})));
    let progress = seen.try_recv().unwrap();
    assert_eq!(progress["method"], "notifications/progress");
    assert!(seen.try_recv().is_err(), "the caller got an announcement");
    assert_eq!(
        gathered(&mut announced, Duration::from_millis(300)).await,
        vec![Announcement::ListChanged(ListKind::Tools)]
    );
}

#[tokio::test]
async fn the_standalone_stream_yields_only_usable_announcements() {
    let (upstream, _) = upstream(Mock::default()).await;
    let mut announced = upstream.announcements();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    upstream.follow(&ExtraHeaders::new(), until).await;
    assert_eq!(
        gathered(&mut announced, Duration::from_millis(1500)).await,
        vec![
            Announcement::ResourceUpdated {
                uri: "test://a".into()
            },
            Announcement::ListChanged(ListKind::Prompts),
        ]
    );
}

#[tokio::test]
async fn a_server_without_a_standalone_stream_is_left_alone() {
    let mock = Mock {
        refuse_streams: true,
        ..Mock::default()
    };
    let (upstream, mock) = upstream(mock).await;
    let mut announced = upstream.announcements();
    for _ in 0..3 {
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        upstream.follow(&ExtraHeaders::new(), until).await;
        assert!(
            gathered(&mut announced, Duration::from_millis(300))
                .await
                .is_empty()
        );
    }
    assert_eq!(mock.gets.load(Ordering::SeqCst), 1);
}
