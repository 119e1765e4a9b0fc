#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The listener under hostile clients (`src/listen.rs`): a client that sends its
//! headers a byte at a time is cut off after the header-read timeout, and a flood of
//! connections that send nothing neither exhausts the process nor silences its health
//! endpoints; beyond the cap, other requests get 503 with `Retry-After`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;

use common::Server;

const CAP: usize = 16;
const TIMEOUT_SECONDS: u64 = 2;

fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(
        &config,
        format!("max_connections = {CAP}\nheader_read_timeout_seconds = {TIMEOUT_SECONDS}\n"),
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    (server, dir)
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// One request on a fresh connection: the status line and how long it took.
fn get(server: &Server, path: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address(server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    (answer, started.elapsed())
}

/// Whether the server closed `stream` (a read returns 0 or fails) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_headers_are_cut_off_and_health_stays_served() {
    let (mut server, _dir) = server();
    // 3 × the cap, each sending its request line a byte every 300 ms.
    let mut slow: Vec<TcpStream> = (0..3 * CAP)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    let started = Instant::now();
    let line = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut cut = vec![false; slow.len()];
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(TIMEOUT_SECONDS + 3) && cut.iter().any(|c| !c) {
        for (i, stream) in slow.iter_mut().enumerate() {
            if cut[i] {
                continue;
            }
            let byte = line.get(sent).copied().unwrap_or(b'x');
            if stream.write_all(&[byte]).is_err() {
                cut[i] = true;
            }
        }
        sent += 1;
        // Meanwhile a health check on a fresh connection is answered at once.
        if sent == 3 {
            let (answer, took) = get(&server, "/healthz");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for (i, stream) in slow.iter_mut().enumerate() {
        if !cut[i] {
            cut[i] = closed_within(stream, Duration::from_secs(1));
        }
    }
    assert!(
        cut.iter().all(|c| *c),
        "{} of {} slow clients still connected after {:?}",
        cut.iter().filter(|c| !**c).count(),
        cut.len(),
        started.elapsed()
    );
    let (answer, _) = get(&server, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = server.drain_log();
    assert!(log.contains("connection cap reached"), "{log}");
}

#[test]
fn a_connection_flood_neither_exhausts_nor_silences_the_server() {
    let (server, _dir) = server();
    // The cap, the spare slots and more: connections that send nothing.
    let flood: Vec<TcpStream> = (0..CAP + 64 + 40)
        .map(|_| TcpStream::connect(address(&server)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Health is answered (beyond the cap a spare slot serves it, or the flood's idle
    // connections are cut after the timeout and slots free up).
    let (answer, took) = get(&server, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(TIMEOUT_SECONDS * 3), "{took:?}");
    // Every idle connection is closed by the server after the header-read timeout.
    for mut stream in flood {
        assert!(
            closed_within(&mut stream, Duration::from_secs(TIMEOUT_SECONDS * 3)),
            "an idle connection was kept"
        );
    }
    // Connections beyond the cap: anything but health is 503 with Retry-After.
    // Kept-alive connections, each answered once and still open, fill the regular slots.
    let mut held: Vec<TcpStream> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while held.len() < CAP {
        assert!(Instant::now() < deadline, "{} connections held", held.len());
        let mut s = TcpStream::connect(address(&server)).unwrap();
        write!(s, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = [0u8; 512];
        let n = s.read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
        // A spare slot answers once and closes: not one that holds a regular slot.
        if answer.starts_with("http/1.1 200") && !answer.contains("connection: close") {
            held.push(s);
        }
    }
    let (answer, _) = get(&server, "/v1/mandates");
    assert!(
        answer.starts_with("HTTP/1.1 503")
            && answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    drop(held);
    // The API is back once they are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, _) = get(&server, "/v1/mandates");
        if answer.starts_with("HTTP/1.1 401") {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
