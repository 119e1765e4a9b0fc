//! What an upstream announces reaches its announcement channel, not the caller's
//! events: the Python fixture server over stdio.

#![allow(clippy::unwrap_used, clippy::panic, reason = "a test fails loudly")]

use std::time::Duration;

use mandate_mcp::{
    Announcement, ExtraHeaders, Limits, ListKind, StdioOptions, StdioUpstream, Upstream,
};
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test]
async fn a_stdio_servers_announcement_goes_to_its_channel_not_to_the_caller() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mandate/tests/python/mcp_fixture_server.py"
    );
    let upstream = StdioUpstream::spawn(
        "fixture",
        StdioOptions {
            command: "python3".into(),
            args: vec![fixture.into(), "--stdio".into(), "--dynamic".into()],
            env: Vec::new(),
            limits: Limits::default(),
            max_backoff: Duration::from_secs(1),
        },
    );
    let mut announced = upstream.announcements();
    let (events, mut seen) = mpsc::channel(16);
    let answer = upstream
        .request(
            "tools/call",
            Some(json!({"name": "add_prompt", "arguments": {}})),
            &ExtraHeaders::new(),
            Some(events),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "added extra_prompt");
    let heard = tokio::time::timeout(Duration::from_secs(5), announced.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heard, Announcement::ListChanged(ListKind::Prompts));
    assert!(seen.try_recv().is_err(), "the caller got the announcement");
}
