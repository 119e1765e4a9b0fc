//! What one task token costs the token service and a resource, per operation, for
//! each signing algorithm (EdDSA, ES256):
//!
//! - `sign`: `KeyRing::sign` of a mandate-bound task token (what `/oauth2/token` adds
//!   after the store and audit writes);
//! - `verify`: `KeyRing::verify` + `TaskToken::from_claims` (what every resource does
//!   per request, with the revocation-list lookup);
//! - `verify + DPoP`: the same plus `DpopVerifier::check` of a fresh proof bound to the
//!   token (`ath`), and `check_bound`; the proof is signed with the same algorithm;
//! - `dpop proof sign`: what a client pays per request to make a proof.
//!
//! cargo run --release -p mandate-token --example verify_cost [ITERATIONS]
//!
//! Single-threaded; prints µs/op (mean over ITERATIONS after a warm-up). It asserts
//! nothing beyond each operation succeeding.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a failure should be loud"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use mandate_jose::{Alg, SigningKey};
use mandate_token::{
    ACCESS_TOKEN_TYP, DpopConfig, DpopRequest, DpopVerifier, Expect, KeyRing, MANDATE_DETAILS_TYPE,
    RevocationList, TaskToken, access_token_hash,
};
use mandate_types::{AgentId, MandateId, TenantId};
use serde_json::{Map, Value, json};

const ISSUER: &str = "https://mandate.example";
const AUDIENCE: &str = "https://mandate.example/mcp";
const RESOURCE_URL: &str = "https://mandate.example/mcp";

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().unwrap())
        .unwrap_or(20_000);
    println!("verify_cost: {iterations} iterations per figure, one thread, µs/op (mean)");
    println!(
        "{:<8} {:>10} {:>10} {:>14} {:>16} {:>8}",
        "alg", "sign", "verify", "verify+DPoP", "dpop proof sign", "bytes"
    );
    for alg in [Alg::EdDSA, Alg::ES256] {
        run(alg, iterations);
    }
}

fn run(alg: Alg, iterations: u32) {
    let signer = Arc::new(SigningKey::generate(alg, format!("k-{}", alg.as_str())).unwrap());
    // A second published key, as during a rotation overlap: the lookup is by `kid`.
    let other = SigningKey::generate(Alg::EdDSA, "k-other".into()).unwrap();
    let ring = KeyRing::new(signer, &[other.public_jwk().to_public_json()]);
    let now = chrono::Utc::now().timestamp();
    let client = SigningKey::generate(alg, "client".into()).unwrap();
    let jkt = client.public_jwk().thumbprint();
    let token = task_token(now, Some(jkt.clone()));
    let claims = token.to_claims();

    // Signing.
    let sign = time(iterations, || {
        black_box(ring.sign(ACCESS_TOKEN_TYP, black_box(&claims)).unwrap());
    });
    let jwt = ring.sign(ACCESS_TOKEN_TYP, &claims).unwrap();

    // Verification, as a resource does it (a revocation list with some entries).
    let revoked = RevocationList::new(chrono::Duration::minutes(7));
    let entries: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    revoked.add(entries.iter().map(|j| (j.as_str(), chrono::Utc::now())));
    let audiences = [AUDIENCE];
    let expect = Expect {
        issuer: ISSUER,
        audience: Some(&audiences),
        now,
        skew: 60,
    };
    let verify = time(iterations, || {
        let claims = ring.verify(black_box(&jwt), ACCESS_TOKEN_TYP).unwrap();
        let parsed = TaskToken::from_claims(&claims, &expect).unwrap();
        assert!(!revoked.is_revoked(&parsed.jti));
        black_box(parsed);
    });

    // Proofs made beforehand (each with a unique jti: the verifier refuses replays).
    let mut config = DpopConfig::new([9; 32]);
    config.replay_capacity = iterations as usize * 2 + 16;
    let dpop = DpopVerifier::new(config);
    let ath = access_token_hash(&jwt);
    let mut k = 0u64;
    let mut proof = || {
        k += 1;
        let Value::Object(header) = json!({
            "typ": "dpop+jwt",
            "jwk": client.public_jwk().to_public_json(),
        }) else {
            unreachable!()
        };
        let claims = json!({
            "jti": format!("p-{k}"), "htm": "POST", "htu": RESOURCE_URL, "iat": now, "ath": ath,
        });
        client
            .sign(header, &serde_json::to_vec(&claims).unwrap())
            .unwrap()
    };
    let proof_sign = time(iterations, || {
        black_box(proof());
    });
    let proofs: Vec<String> = (0..iterations + iterations / 10 + 1)
        .map(|_| proof())
        .collect();
    let mut next = proofs.iter();
    let with_dpop = time(iterations, || {
        let claims = ring.verify(black_box(&jwt), ACCESS_TOKEN_TYP).unwrap();
        let parsed = TaskToken::from_claims(&claims, &expect).unwrap();
        assert!(!revoked.is_revoked(&parsed.jti));
        let checked = dpop
            .check(
                next.next().unwrap(),
                &DpopRequest {
                    method: "POST",
                    url: RESOURCE_URL,
                    access_token: Some(&jwt),
                    now,
                },
            )
            .unwrap();
        dpop.check_bound(&checked, parsed.cnf_jkt.as_deref().unwrap())
            .unwrap();
        black_box(parsed);
    });
    println!(
        "{:<8} {:>10.1} {:>10.1} {:>14.1} {:>16.1} {:>8}",
        alg.as_str(),
        sign,
        verify,
        with_dpop,
        proof_sign,
        jwt.len()
    );
}

/// Mean µs per call of `f` over `iterations`, after a warm-up of a tenth as many.
fn time(iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

/// A mandate-bound, DPoP-bound token as `/oauth2/token` issues one.
fn task_token(now: i64, jkt: Option<String>) -> TaskToken {
    let mandate = MandateId::generate();
    let tools = vec!["crm.read".to_owned(), "crm.update".to_owned()];
    let mut details = Map::new();
    details.insert("type".into(), json!(MANDATE_DETAILS_TYPE));
    details.insert("mandate_id".into(), json!(mandate.to_string()));
    details.insert("tools".into(), json!(tools));
    details.insert("intent".into(), json!("Reconcile the March invoices"));
    details.insert("data_ceiling".into(), json!("confidential"));
    details.insert("mode".into(), json!("execute"));
    details.insert("terms_hash".into(), json!("a".repeat(64)));
    TaskToken {
        issuer: ISSUER.into(),
        jti: "tVJ3n0c5m8G3c2M7aH0o7Qw".into(),
        tenant: TenantId::generate(),
        subject: "hum_0192f0e6-6d4c-7c3e-9a57-6b0f4f0a2c11".into(),
        actors: vec![AgentId::generate()],
        audience: vec![AUDIENCE.into()],
        issued_at: now,
        expires_at: now + 300,
        scope: tools,
        mandate: Some(mandate),
        authorization_details: Some(Value::Array(vec![Value::Object(details)])),
        cnf_jkt: jkt,
    }
}
