#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! Federated OIDC issuers against a real local HTTP issuer (axum on 127.0.0.1:0)
//! that counts its fetches. Time is the `now` passed to `verify`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use mandate_jose::{Alg, SigningKey};
use mandate_token::TokenError;
use mandate_token::federation::{FederatedIssuer, Federation, FederationOptions};
use serde_json::{Value, json};

const T0: i64 = 1_750_000_000;
const AUD: &str = "mandate";

/// A toy OpenID provider.
struct Provider {
    base: String,
    jwks: Mutex<Value>,
    /// What discovery claims as `issuer`; `None` for the truth.
    discovery_issuer: Mutex<Option<String>>,
    up: AtomicBool,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    /// Extra bytes appended to the JWK Set (a member `pad`), for the size cap.
    pad: AtomicUsize,
}

impl Provider {
    fn discoveries(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst)
    }
    fn jwks_fetches(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
    fn publish(&self, keys: &[&SigningKey]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| common::public_jwk(k, Some("sig")))
            .collect();
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }
    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

async fn discovery(State(p): State<Arc<Provider>>) -> Response {
    p.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if !p.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = p
        .discovery_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| p.base.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", p.base),
        "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(p): State<Arc<Provider>>) -> Response {
    p.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if !p.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut doc = p.jwks.lock().unwrap().clone();
    let pad = p.pad.load(Ordering::SeqCst);
    if pad > 0 {
        doc["pad"] = json!("a".repeat(pad));
    }
    Json(doc).into_response()
}

async fn start(keys: &[&SigningKey]) -> Arc<Provider> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let provider = Arc::new(Provider {
        base: format!("http://{addr}"),
        jwks: Mutex::new(json!({"keys": []})),
        discovery_issuer: Mutex::new(None),
        up: AtomicBool::new(true),
        discovery_hits: AtomicUsize::new(0),
        jwks_hits: AtomicUsize::new(0),
        pad: AtomicUsize::new(0),
    });
    provider.publish(keys);
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/moved", get(|| async { Redirect::temporary("/jwks") }))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    provider
}

fn options() -> FederationOptions {
    FederationOptions {
        dangerous_allow_insecure_loopback: true,
        max_stale: Duration::from_secs(3600),
        ..FederationOptions::default()
    }
}

fn issuer_config(p: &Provider) -> FederatedIssuer {
    FederatedIssuer {
        issuer: p.base.clone(),
        jwks_uri: None,
        audiences: vec![AUD.into(), "other-audience".into()],
        algs: vec![Alg::EdDSA, Alg::ES256],
        cache_ttl: Duration::from_secs(300),
    }
}

fn federation(p: &Provider) -> Federation {
    Federation::new(vec![issuer_config(p)], options()).unwrap()
}

fn claims(p: &Provider, now: i64) -> Value {
    json!({"iss": p.base, "sub": "repo:acme/app:ref:refs/heads/main", "aud": AUD,
        "exp": now + 300, "iat": now, "nbf": now})
}

fn token(key: &SigningKey, p: &Provider, now: i64) -> String {
    common::sign(key, json!({"typ": "JWT"}), &claims(p, now))
}

#[tokio::test]
async fn verifies_and_caches_keys() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let k2 = SigningKey::generate(Alg::ES256, "k2".into()).unwrap();
    let p = start(&[&k1, &k2]).await;
    let fed = federation(&p);

    let (iss, sub) = fed.verify(&token(&k1, &p, T0), T0).await.unwrap();
    assert_eq!(iss, p.base);
    assert_eq!(sub, "repo:acme/app:ref:refs/heads/main");
    assert_eq!((p.discoveries(), p.jwks_fetches()), (1, 1));

    for dt in [1, 10, 100, 299] {
        fed.verify(&token(&k2, &p, T0 + dt), T0 + dt).await.unwrap();
    }
    assert_eq!(
        (p.discoveries(), p.jwks_fetches()),
        (1, 1),
        "served from the cache"
    );

    // After the TTL, one refresh.
    fed.verify(&token(&k1, &p, T0 + 300), T0 + 300)
        .await
        .unwrap();
    fed.verify(&token(&k1, &p, T0 + 301), T0 + 301)
        .await
        .unwrap();
    assert_eq!((p.discoveries(), p.jwks_fetches()), (2, 2));
    println!(
        "federation cache: {} discovery and {} JWKS fetches for 7 tokens",
        p.discoveries(),
        p.jwks_fetches()
    );
}

#[tokio::test]
async fn configured_jwks_uri_skips_discovery() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1]).await;
    let mut cfg = issuer_config(&p);
    cfg.jwks_uri = Some(format!("{}/jwks", p.base));
    let fed = Federation::new(vec![cfg], options()).unwrap();
    fed.verify(&token(&k1, &p, T0), T0).await.unwrap();
    assert_eq!((p.discoveries(), p.jwks_fetches()), (0, 1));
}

#[tokio::test]
async fn key_rotation_costs_one_refetch() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let k2 = SigningKey::generate(Alg::EdDSA, "k2".into()).unwrap();
    let p = start(&[&k1]).await;
    let fed = federation(&p);
    fed.verify(&token(&k1, &p, T0), T0).await.unwrap();
    assert_eq!(p.jwks_fetches(), 1);

    // The issuer rotates: k2 appears, k1 goes.
    p.publish(&[&k2]);
    // Within the refetch interval of the last fetch, the new kid waits.
    let early = fed.verify(&token(&k2, &p, T0 + 5), T0 + 5).await;
    assert!(
        matches!(early, Err(TokenError::InvalidClient(_))),
        "{early:?}"
    );
    assert_eq!(p.jwks_fetches(), 1);
    // Afterwards: exactly one refetch, then cached.
    fed.verify(&token(&k2, &p, T0 + 30), T0 + 30).await.unwrap();
    assert_eq!(p.jwks_fetches(), 2);
    for dt in 31..40 {
        fed.verify(&token(&k2, &p, T0 + dt), T0 + dt).await.unwrap();
    }
    assert_eq!(p.jwks_fetches(), 2);
    // k1 is gone from the refreshed set.
    assert!(fed.verify(&token(&k1, &p, T0 + 40), T0 + 40).await.is_err());
    assert_eq!(
        p.jwks_fetches(),
        2,
        "the retired kid is inside the interval"
    );
}

#[tokio::test]
async fn unknown_kid_flood_fetches_at_most_once_per_interval() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1]).await;
    let fed = Arc::new(federation(&p));
    fed.verify(&token(&k1, &p, T0), T0).await.unwrap();
    assert_eq!(p.jwks_fetches(), 1);

    let mut refused = 0;
    for window in 0..3i64 {
        let base = T0 + 30 * (window + 1);
        let before = p.jwks_fetches();
        // 200 forged kids, concurrently, within one interval.
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let fed = fed.clone();
            let now = base + i % 29;
            let forged = SigningKey::generate(Alg::EdDSA, format!("forged-{window}-{i}")).unwrap();
            let t = token(&forged, &p, now);
            tasks.push(tokio::spawn(async move { fed.verify(&t, now).await }));
        }
        for t in tasks {
            if t.await.unwrap().is_err() {
                refused += 1;
            }
        }
        let fetched = p.jwks_fetches() - before;
        assert!(fetched <= 1, "window {window}: {fetched} fetches");
    }
    assert_eq!(refused, 600);
    // The real key still works throughout.
    fed.verify(&token(&k1, &p, T0 + 100), T0 + 100)
        .await
        .unwrap();
    println!(
        "unknown kid flood: 600 forged tokens refused, {} JWKS fetches in all",
        p.jwks_fetches()
    );
}

#[tokio::test]
async fn issuer_down_serves_last_good_keys_until_the_hard_limit() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1]).await;
    let fed = federation(&p);
    fed.verify(&token(&k1, &p, T0), T0).await.unwrap();
    p.set_up(false);

    // TTL passed, refresh fails: the last good keys are used.
    let t = T0 + 400;
    fed.verify(&token(&k1, &p, t), t).await.unwrap();
    let attempts = p.discoveries();
    assert_eq!(attempts, 2, "one failed refresh attempt");
    // And failed refreshes are not retried on every request.
    for dt in 1..20 {
        fed.verify(&token(&k1, &p, t + dt), t + dt).await.unwrap();
    }
    assert_eq!(p.discoveries(), attempts);
    // After the interval, one more try (still down), still served.
    fed.verify(&token(&k1, &p, t + 30), t + 30).await.unwrap();
    assert_eq!(p.discoveries(), attempts + 1);

    // Past max_stale (1 h in these options) the stale keys are no longer trusted.
    let late = T0 + 3601;
    let r = fed.verify(&token(&k1, &p, late), late).await;
    assert!(matches!(r, Err(TokenError::Unavailable(_))), "{r:?}");

    // The issuer comes back: service resumes on the next allowed fetch.
    p.set_up(true);
    let later = late + 30;
    fed.verify(&token(&k1, &p, later), later).await.unwrap();
}

#[tokio::test]
async fn issuer_never_reachable_is_unavailable() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1]).await;
    p.set_up(false);
    let fed = federation(&p);
    let r = fed.verify(&token(&k1, &p, T0), T0).await;
    assert!(matches!(r, Err(TokenError::Unavailable(_))), "{r:?}");
    assert_eq!(r.unwrap_err().code(), "temporarily_unavailable");
}

#[tokio::test]
async fn wrong_issuer_in_discovery_is_refused() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1]).await;
    for claimed in [
        "https://evil.example".to_owned(),
        format!("{}/", p.base),
        p.base.to_uppercase(),
    ] {
        *p.discovery_issuer.lock().unwrap() = Some(claimed.clone());
        let fed = federation(&p);
        let r = fed.verify(&token(&k1, &p, T0), T0).await;
        assert!(
            matches!(r, Err(TokenError::Unavailable(_))),
            "{claimed}: {r:?}"
        );
    }
    assert_eq!(
        p.jwks_fetches(),
        0,
        "the JWKS of a mismatched issuer is never read"
    );
}

#[tokio::test]
async fn responses_are_capped_and_redirects_not_followed() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1]).await;

    let small = FederationOptions {
        max_response_bytes: 4096,
        ..options()
    };
    p.pad.store(5000, Ordering::SeqCst);
    let fed = Federation::new(vec![issuer_config(&p)], small.clone()).unwrap();
    let r = fed.verify(&token(&k1, &p, T0), T0).await;
    assert!(matches!(r, Err(TokenError::Unavailable(_))), "{r:?}");
    p.pad.store(1000, Ordering::SeqCst);
    let fed = Federation::new(vec![issuer_config(&p)], small).unwrap();
    fed.verify(&token(&k1, &p, T0), T0).await.unwrap();
    p.pad.store(0, Ordering::SeqCst);

    let mut cfg = issuer_config(&p);
    cfg.jwks_uri = Some(format!("{}/moved", p.base));
    let fed = Federation::new(vec![cfg], options()).unwrap();
    let r = fed.verify(&token(&k1, &p, T0), T0).await;
    assert!(matches!(r, Err(TokenError::Unavailable(_))), "{r:?}");
}

#[tokio::test]
async fn hostile_tokens_are_refused() {
    let k1 = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let es = SigningKey::generate(Alg::ES256, "es".into()).unwrap();
    let intruder = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let p = start(&[&k1, &es]).await;
    let fed = federation(&p);
    let good = token(&k1, &p, T0);
    fed.verify(&good, T0).await.unwrap();

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&p, T0);
        f(&mut c);
        c
    };
    let signed = |c: Value| common::sign(&k1, json!({}), &c);
    let cases: Vec<(&str, String)> = vec![
        (
            "untrusted issuer",
            signed(with(&|c| c["iss"] = json!("https://evil.example"))),
        ),
        (
            "issuer with a trailing slash",
            signed(with(&|c| c["iss"] = json!(format!("{}/", p.base)))),
        ),
        (
            "iss missing",
            signed(with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            })),
        ),
        ("iss not a string", signed(with(&|c| c["iss"] = json!(1)))),
        (
            "aud missing",
            signed(with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            })),
        ),
        (
            "aud wrong",
            signed(with(&|c| c["aud"] = json!(["someone-else"]))),
        ),
        (
            "exp missing",
            signed(with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
        ),
        ("expired", signed(with(&|c| c["exp"] = json!(T0 - 61)))),
        (
            "nbf in the future",
            signed(with(&|c| c["nbf"] = json!(T0 + 61))),
        ),
        (
            "iat in the future",
            signed(with(&|c| c["iat"] = json!(T0 + 61))),
        ),
        (
            "sub missing",
            signed(with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            })),
        ),
        ("sub empty", signed(with(&|c| c["sub"] = json!("")))),
        (
            "kid missing",
            common::forge(&k1, &json!({"alg": "EdDSA"}), &claims(&p, T0)),
        ),
        (
            "alg none",
            format!(
                "{}.",
                common::forge(&k1, &json!({"alg": "none", "kid": "k1"}), &claims(&p, T0))
                    .rsplit_once('.')
                    .unwrap()
                    .0
            ),
        ),
        (
            "alg HS256 keyed with the public key",
            common::forge_hs256(
                &common::ed25519_x(&k1),
                &json!({"alg": "HS256", "kid": "k1"}),
                &claims(&p, T0),
            ),
        ),
        (
            "alg not configured for the issuer",
            common::forge(&k1, &json!({"alg": "ES384", "kid": "es"}), &claims(&p, T0)),
        ),
        (
            "alg ES256 on the Ed25519 key",
            common::forge(&es, &json!({"alg": "ES256", "kid": "k1"}), &claims(&p, T0)),
        ),
        (
            "alg EdDSA on the P-256 key",
            common::forge(&k1, &json!({"alg": "EdDSA", "kid": "es"}), &claims(&p, T0)),
        ),
        (
            "intruder key under a published kid",
            token(&intruder, &p, T0),
        ),
        (
            "jku",
            common::forge(
                &k1,
                &json!({"alg": "EdDSA", "kid": "k1", "jku": format!("{}/jwks", p.base)}),
                &claims(&p, T0),
            ),
        ),
        ("signature bit flip", common::flip_signature_bit(&good)),
        (
            "payload swapped",
            common::swap_payload(&good, &with(&|c| c["sub"] = json!("admin"))),
        ),
        ("garbage", "a.b.c".into()),
    ];
    let fetches = p.jwks_fetches();
    for (name, t) in &cases {
        match fed.verify(t, T0).await {
            Err(TokenError::InvalidClient(msg)) => assert!(!msg.is_empty(), "{name}"),
            other => panic!("{name}: expected invalid_client, got {other:?}"),
        }
    }
    assert_eq!(
        p.jwks_fetches(),
        fetches,
        "no hostile token caused a fetch inside the interval"
    );
    println!("hostile federated tokens: {} refused", cases.len());
}

#[test]
fn configuration_is_checked() {
    let base = FederatedIssuer::new("https://issuer.example", vec![AUD.into()]);
    assert!(Federation::new(vec![base.clone()], FederationOptions::default()).is_ok());
    let bad: Vec<(&str, FederatedIssuer, bool)> = vec![
        (
            "http issuer",
            FederatedIssuer {
                issuer: "http://issuer.example".into(),
                ..base.clone()
            },
            true,
        ),
        (
            "loopback http without the flag",
            FederatedIssuer {
                issuer: "http://127.0.0.1:1".into(),
                ..base.clone()
            },
            false,
        ),
        (
            "http jwks_uri",
            FederatedIssuer {
                jwks_uri: Some("http://issuer.example/jwks".into()),
                ..base.clone()
            },
            false,
        ),
        (
            "issuer with a query",
            FederatedIssuer {
                issuer: "https://issuer.example/?a=b".into(),
                ..base.clone()
            },
            false,
        ),
        (
            "no audience",
            FederatedIssuer {
                audiences: vec![],
                ..base.clone()
            },
            false,
        ),
        (
            "empty audience",
            FederatedIssuer {
                audiences: vec![String::new()],
                ..base.clone()
            },
            false,
        ),
        (
            "no algorithm",
            FederatedIssuer {
                algs: vec![],
                ..base.clone()
            },
            false,
        ),
        (
            "HS256",
            FederatedIssuer {
                algs: vec![Alg::ES256, Alg::HS256],
                ..base.clone()
            },
            false,
        ),
        (
            "zero TTL",
            FederatedIssuer {
                cache_ttl: Duration::ZERO,
                ..base.clone()
            },
            false,
        ),
    ];
    for (name, cfg, insecure) in bad {
        let opts = FederationOptions {
            dangerous_allow_insecure_loopback: insecure,
            ..FederationOptions::default()
        };
        assert!(Federation::new(vec![cfg], opts).is_err(), "{name}");
    }
    assert!(
        Federation::new(vec![base.clone(), base], FederationOptions::default()).is_err(),
        "duplicate issuer"
    );
}
