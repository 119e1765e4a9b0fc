#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! Client ID Metadata Documents against hostile hosts, without a packet leaving this
//! machine: names are answered by an injected resolver, connections can only go to
//! loopback listeners that count what reaches them, and internal addresses other
//! than loopback are only ever answered, never connected to (the guard refuses them
//! before any connection; were it broken, the literal and resolver cases below would
//! fail on the error they return, and the listeners would count the connection).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mandate_token::{ClientMetadataFetcher, ClientMetadataOptions, Lookup, Resolver};

/// Answers names from a table, counting lookups; unknown names fail.
#[derive(Debug, Default)]
struct Table {
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    lookups: AtomicUsize,
}

impl Table {
    fn answer(&self, name: &str, ips: &[&str]) {
        self.answers.lock().unwrap().insert(
            name.to_owned(),
            ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        );
    }
}

impl Resolver for Table {
    fn lookup(&self, host: &str) -> Lookup {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.answers.lock().unwrap().get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::other("no such name in the test table"))
        })
    }
}

/// A loopback TCP listener that counts the connections it accepts (and closes them).
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (addr, seen)
}

fn fetcher(table: &Arc<Table>, loopback: bool) -> ClientMetadataFetcher {
    ClientMetadataFetcher::with_resolver(
        ClientMetadataOptions {
            timeout: Duration::from_secs(2),
            dangerous_allow_http_loopback: loopback,
            ..ClientMetadataOptions::default()
        },
        table.clone(),
    )
    .unwrap()
}

const REFUSED: &str = "the client metadata document's host is or resolves to an internal address";

/// Internal answers that are not loopback: only ever answered by the table and judged
/// by the guard on its own (`resolve`), which makes no connection at all.
const INTERNAL: &[(&str, &[&str])] = &[
    ("private.test", &["10.0.0.1"]),
    ("metadata.test", &["169.254.169.254"]),
    ("cgnat.test", &["100.64.0.1"]),
    ("rfc1918.test", &["192.168.1.10"]),
    ("zero.test", &["0.0.0.0"]),
    ("multicast.test", &["224.0.0.1"]),
    ("broadcast.test", &["255.255.255.255"]),
    ("docs.test", &["203.0.113.5"]),
    ("v6-unspecified.test", &["::"]),
    ("v6-mapped.test", &["::ffff:10.1.2.3"]),
    ("v6-compat.test", &["::10.1.2.3"]),
    ("nat64.test", &["64:ff9b::a9fe:a9fe"]),
    ("nat64-loopback.test", &["64:ff9b::7f00:1"]),
    ("6to4-loopback.test", &["2002:7f00:1::1"]),
    ("6to4.test", &["2002:c0a8:0101::1"]),
    ("ula.test", &["fd00::1"]),
    ("link-local.test", &["fe80::1"]),
    ("v6-multicast.test", &["ff02::1"]),
    ("teredo.test", &["2001:0:4136:e378:8000:63bf:3fff:fdd2"]),
    ("v6-docs.test", &["2001:db8::1"]),
    // A public answer beside an internal one refuses the name (rebinding by mixing).
    ("mixed.test", &["93.184.215.14", "10.0.0.1"]),
];

#[tokio::test]
async fn names_resolving_to_internal_addresses_are_refused() {
    let table = Arc::new(Table::default());
    for (name, ips) in INTERNAL {
        table.answer(name, ips);
    }
    table.answer(
        "public.test",
        &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    );
    let strict = fetcher(&table, false);
    let loose = fetcher(&table, true);
    for (name, _) in INTERNAL {
        assert_eq!(strict.resolve(name).await.unwrap_err(), REFUSED, "{name}");
        // The loopback test switch allows loopback, nothing else.
        assert_eq!(loose.resolve(name).await.unwrap_err(), REFUSED, "{name}");
    }
    assert_eq!(strict.resolve("public.test").await.unwrap().len(), 2);
    assert!(strict.resolve("unknown.test").await.is_err());
}

#[tokio::test]
async fn names_resolving_to_loopback_are_never_connected_to() {
    // Loopback answers, where a counting listener waits: refused before any
    // connection, through the whole fetch. Each name is looked up exactly once.
    let (listener, seen) = counting_listener().await;
    let port = listener.port();
    let table = Arc::new(Table::default());
    let names = [
        ("loop.test", &["127.0.0.1"][..]),
        ("loop-mapped.test", &["::ffff:127.0.0.1"][..]),
        ("loop-v6.test", &["::1"][..]),
        // Loopback first, so that a broken guard would reach the listener, never 10/8.
        ("loop-mixed.test", &["127.0.0.1", "10.0.0.1"][..]),
    ];
    for (name, ips) in names {
        table.answer(name, ips);
    }
    let f = fetcher(&table, false);
    for (name, _) in names {
        let before = table.lookups.load(Ordering::SeqCst);
        let url = format!("https://{name}:{port}/client.json");
        assert_eq!(f.fetch(&url).await.unwrap_err(), REFUSED, "{name}");
        assert_eq!(table.lookups.load(Ordering::SeqCst), before + 1, "{name}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no connection was made");
}

#[tokio::test]
async fn internal_ip_literals_are_refused_before_any_connection() {
    let (listener, seen) = counting_listener().await;
    let port = listener.port();
    let table = Arc::new(Table::default());
    let f = fetcher(&table, false);
    // Loopback literals, where the listener waits, through the whole fetch; the URL
    // parser's other spellings land on the same literal or are refused as not normal.
    for host in [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::1]",
        "2130706433",
        "0x7f.0.0.1",
        "127.1",
    ] {
        let url = format!("https://{host}:{port}/client.json");
        let err = f.fetch(&url).await.unwrap_err();
        assert!(
            err == REFUSED || err.contains("normal form"),
            "{host}: {err}"
        );
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no connection was made");
    // Other internal literals: judged by the guard on its own, never fetched.
    for host in [
        "10.0.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "172.16.0.1",
        "192.168.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.251",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[ff02::1]",
        "[::ffff:a9fe:a9fe]",
        "[::a00:1]",
        "[64:ff9b::a00:1]",
        "[2002:a00:1::1]",
        "[2001:db8::1]",
    ] {
        let url = format!("https://{host}/client.json");
        assert_eq!(f.guard_url(&url).unwrap_err(), REFUSED, "{host}");
    }
    assert!(f.guard_url("https://app.example/client.json").is_ok());
    assert!(f.guard_url("https://93.184.215.14/client.json").is_ok());
    assert_eq!(
        table.lookups.load(Ordering::SeqCst),
        0,
        "literals are not looked up"
    );
}

#[tokio::test]
async fn the_connection_goes_to_the_address_that_was_checked() {
    // With the loopback test switch, loopback is allowed: the fetch connects to
    // exactly the address the resolver answered (a TLS handshake to a listener that
    // speaks none fails, but the listener counts the connection), after one lookup.
    let (listener, seen) = counting_listener().await;
    let table = Arc::new(Table::default());
    table.answer("client.test", &["127.0.0.1"]);
    let f = fetcher(&table, true);
    let url = format!("https://client.test:{}/client.json", listener.port());
    let err = f.fetch(&url).await.unwrap_err();
    assert_eq!(err, "the client metadata document cannot be fetched");
    assert_eq!(table.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // The switch allows loopback only: other internal answers stay refused (judged
    // by the guard on its own, never connected to).
    table.answer("private.test", &["10.0.0.1"]);
    assert_eq!(f.resolve("private.test").await.unwrap_err(), REFUSED);
    // http is for loopback literals under the switch only; names stay https.
    let url = format!("http://client.test:{}/client.json", listener.port());
    assert_eq!(
        f.fetch(&url).await.unwrap_err(),
        "the client_id URL must use https"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_are_not_followed_and_sizes_are_capped() {
    // A document server on loopback (the test switch) that redirects to a second
    // listener, which must never be reached, and serves an oversized document.
    let (target, reached) = counting_listener().await;
    let app = axum::Router::new()
        .route(
            "/moved.json",
            axum::routing::get(move || async move {
                axum::response::Redirect::temporary(&format!("http://{target}/client.json"))
            }),
        )
        .route(
            "/big.json",
            axum::routing::get(|| async { "x".repeat(64 * 1024) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let table = Arc::new(Table::default());
    let f = fetcher(&table, true);
    let moved = f.fetch(&format!("{base}/moved.json")).await.unwrap_err();
    assert_eq!(moved, "the client metadata document answered 307");
    let big = f.fetch(&format!("{base}/big.json")).await.unwrap_err();
    assert!(big.contains("larger than"), "{big}");
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}
