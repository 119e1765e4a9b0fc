#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! RFC 9449 DPoP proof checks: the RFC's example proofs, then hostile proofs, each of
//! which must be refused for the reason the test names.

mod common;

use std::sync::Arc;

use common::{claims, dpop_header, forge, key, sign, with};
use mandate_jose::{Alg, SigningKey, b64url_decode, b64url_encode};
use mandate_token::{
    DpopConfig, DpopProof, DpopRequest, DpopVerifier, TokenError, access_token_hash,
};
use serde_json::{Value, json};

const VECTORS: &str = "dpop/rfc9449_example_proofs.json";
const NOW: i64 = 1_700_000_000;
const URL: &str = "https://as.example.com/oauth2/token";
const SECRET: [u8; 32] = [7; 32];

fn verifier() -> DpopVerifier {
    DpopVerifier::new(DpopConfig::new(SECRET))
}

fn nonce_verifier(secret: [u8; 32]) -> DpopVerifier {
    let mut cfg = DpopConfig::new(secret);
    cfg.require_nonce = true;
    DpopVerifier::new(cfg)
}

fn post(now: i64) -> DpopRequest<'static> {
    DpopRequest {
        method: "POST",
        url: URL,
        access_token: None,
        now,
    }
}

fn check(v: &DpopVerifier, proof: &str) -> Result<DpopProof, TokenError> {
    v.check(proof, &post(NOW))
}

/// A fresh, valid token-endpoint proof by `key`.
fn good(key: &SigningKey, jti: &str) -> String {
    sign(key, dpop_header(key), &claims(jti, "POST", URL, NOW))
}

/// Asserts `invalid_dpop_proof` whose message mentions `why`.
#[track_caller]
fn refused(result: Result<DpopProof, TokenError>, why: &str) {
    match result {
        Err(TokenError::InvalidDpopProof(msg)) => {
            assert!(msg.contains(why), "refused for {msg:?}, expected {why:?}");
        }
        other => panic!("expected invalid_dpop_proof ({why}), got {other:?}"),
    }
}

/// Asserts `use_dpop_nonce` carrying `want`.
#[track_caller]
fn asks_for_nonce(result: Result<DpopProof, TokenError>, want: &str) {
    match result {
        Err(TokenError::UseDpopNonce { nonce }) => assert_eq!(nonce, want),
        other => panic!("expected use_dpop_nonce, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// RFC 9449 examples

#[test]
fn vendored_copy_matches_the_shared_source() {
    let ours = std::fs::read(common::vendored_dir().join(VECTORS)).unwrap();
    assert!(!ours.is_empty());
    let source = common::shared_dir().join(VECTORS);
    if source.is_file() {
        let theirs = std::fs::read(&source).unwrap();
        assert!(
            ours == theirs,
            "{VECTORS} differs from {}",
            source.display()
        );
    } else {
        eprintln!(
            "{} absent; only the vendored copy checked",
            source.display()
        );
    }
}

/// The request a vector's proof was made for: the HTTP request shown beside it in the
/// RFC when there is one, else the proof's own `htm`/`htu` (the bare example proof).
fn vector_request(v: &Value) -> (String, String, Option<String>) {
    let (method, url) = match (v["request_line"].as_str(), v["host"].as_str()) {
        (Some(line), Some(host)) => {
            let mut parts = line.split(' ');
            let method = parts.next().unwrap().to_owned();
            let target = parts.next().unwrap();
            (method, format!("https://{host}{target}"))
        }
        _ => (
            v["claims"]["htm"].as_str().unwrap().to_owned(),
            v["claims"]["htu"].as_str().unwrap().to_owned(),
        ),
    };
    let token = v["authorization"].as_str().map(|a| {
        a.strip_prefix("DPoP ")
            .unwrap_or_else(|| panic!("not a DPoP authorization: {a}"))
            .to_owned()
    });
    (method, url, token)
}

#[test]
fn rfc9449_example_proofs() {
    let doc = common::load(VECTORS);
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    let (mut passed, mut failed) = (0, 0);
    for v in vectors {
        let line = &v["source_line"];
        let (method, url, token) = vector_request(v);
        let iat = v["claims"]["iat"].as_i64().unwrap();
        // A verifier per vector: the RFC reuses one `jti` across its examples.
        let verifier = verifier();
        let req = DpopRequest {
            method: &method,
            url: &url,
            access_token: token.as_deref(),
            now: iat,
        };
        let result = verifier.check(v["dpop_proof"].as_str().unwrap(), &req);
        let mut ok = match (v["signature_valid"].as_bool().unwrap(), &result) {
            (true, Ok(proof)) => {
                proof.jkt() == v["jkt"].as_str().unwrap()
                    && proof.jti() == v["claims"]["jti"].as_str().unwrap()
                    && proof.iat() == iat
                    && verifier
                        .check_bound(proof, v["jkt"].as_str().unwrap())
                        .is_ok()
            }
            (false, Err(_)) => true,
            _ => false,
        };
        if let Some(t) = v["access_token"].as_str() {
            ok &= token.as_deref() == Some(t);
            ok &= v["computed_ath"].as_str() == Some(access_token_hash(t).as_str());
            ok &= v["ath_matches"].as_bool() == Some(true);
            // The same proof without its access token, or with another, is refused.
            let bare = DpopRequest {
                access_token: None,
                ..req
            };
            ok &= fresh_check(v, &bare).is_err();
            let other = DpopRequest {
                access_token: Some("another-token"),
                ..req
            };
            ok &= fresh_check(v, &other).is_err();
        }
        if ok {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("vector at line {line} failed: {result:?}");
        }
    }
    println!("{VECTORS}: {passed} passed, {failed} failed");
    assert_eq!(failed, 0);
}

fn fresh_check(v: &Value, req: &DpopRequest<'_>) -> Result<DpopProof, TokenError> {
    verifier().check(v["dpop_proof"].as_str().unwrap(), req)
}

#[test]
fn rfc_example_is_refused_outside_its_window_and_request() {
    let doc = common::load(VECTORS);
    let v = &doc["vectors"][0];
    let proof = v["dpop_proof"].as_str().unwrap();
    let iat = v["claims"]["iat"].as_i64().unwrap();
    let at = |method, url, now| {
        verifier().check(
            proof,
            &DpopRequest {
                method,
                url,
                access_token: None,
                now,
            },
        )
    };
    let url = "https://server.example.com/token";
    assert!(at("POST", url, iat + 60).is_ok());
    refused(at("POST", url, iat + 61), "too old");
    refused(at("POST", url, iat - 6), "in the future");
    refused(at("GET", url, iat), "htm");
    refused(at("POST", "https://server.example.com/other", iat), "htu");
    // Equivalent spellings of the same URL are accepted (RFC 3986 §6.2.2, §6.2.3).
    assert!(at("POST", "HTTPS://Server.Example.com:443/token?x=1#f", iat).is_ok());
}

// ---------------------------------------------------------------------------------
// The well-behaved path

#[test]
fn valid_proofs_for_each_accepted_algorithm() {
    for alg in [Alg::EdDSA, Alg::ES256] {
        let k = key(alg);
        let v = verifier();
        let proof = check(&v, &good(&k, "jti-1")).unwrap();
        assert_eq!(proof.jkt(), k.public_jwk().thumbprint());
        assert_eq!(proof.jti(), "jti-1");
        assert_eq!(proof.iat(), NOW);
        assert_eq!(proof.jwk().thumbprint(), proof.jkt());
        assert!(v.check_bound(&proof, &k.public_jwk().thumbprint()).is_ok());
        let other = key(alg).public_jwk().thumbprint();
        assert!(matches!(
            v.check_bound(&proof, &other),
            Err(TokenError::InvalidToken(_))
        ));
        assert!(v.check_bound(&proof, "").is_err());
    }
}

#[test]
fn resource_request_with_ath() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let url = "https://rs.example.com/api/items";
    let proof = sign(
        &k,
        dpop_header(&k),
        &with(
            claims("jti-ath", "GET", url, NOW),
            "ath",
            json!(access_token_hash(token)),
        ),
    );
    let req = DpopRequest {
        method: "GET",
        url: "https://rs.example.com/api/items?page=2",
        access_token: Some(token),
        now: NOW,
    };
    assert!(v.check(&proof, &req).is_ok());
}

// ---------------------------------------------------------------------------------
// Header: alg, typ, jwk

#[test]
fn alg_none_hs256_and_unlisted_algorithms_are_refused() {
    let k = key(Alg::EdDSA);
    let body = claims("j", "POST", URL, NOW);
    let jwk = k.public_jwk().to_public_json();
    let unsigned = |alg: &str| {
        let h = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
        format!(
            "{}.{}.",
            b64url_encode(&serde_json::to_vec(&h).unwrap()),
            b64url_encode(&serde_json::to_vec(&body).unwrap())
        )
    };
    refused(check(&verifier(), &unsigned("none")), "none");
    refused(check(&verifier(), &unsigned("NONE")), "none");
    let hs = forge(
        &k,
        &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}),
        &body,
    );
    refused(check(&verifier(), &hs), "asymmetric");
    // Listing HS256 in the configuration does not make it acceptable.
    let mut cfg = DpopConfig::new(SECRET);
    cfg.algs.push(Alg::HS256);
    refused(DpopVerifier::new(cfg).check(&hs, &post(NOW)), "asymmetric");
    // Supported by the JOSE layer but not configured for DPoP.
    let es384 = forge(
        &k,
        &json!({"typ": "dpop+jwt", "alg": "ES384", "jwk": jwk}),
        &body,
    );
    refused(check(&verifier(), &es384), "not accepted");
    refused(check(&verifier(), &unsigned("HS512")), "not supported");
    // Only EdDSA configured: an ES256 proof is refused.
    let mut cfg = DpopConfig::new(SECRET);
    cfg.algs = vec![Alg::EdDSA];
    let es = key(Alg::ES256);
    refused(
        DpopVerifier::new(cfg).check(&good(&es, "j"), &post(NOW)),
        "not accepted",
    );
}

#[test]
fn alg_that_does_not_fit_the_jwk_is_refused() {
    let ed = key(Alg::EdDSA);
    let ec = key(Alg::ES256);
    let body = claims("j", "POST", URL, NOW);
    // Header says ES256, key is Ed25519 (signed by the Ed25519 key).
    let proof = forge(
        &ed,
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": ed.public_jwk().to_public_json()}),
        &body,
    );
    assert!(check(&verifier(), &proof).is_err());
    // Header says EdDSA, key is P-256 without an `alg` of its own.
    let mut jwk = ec.public_jwk().to_public_json();
    jwk.as_object_mut().unwrap().remove("alg");
    let proof = forge(
        &ed,
        &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}),
        &body,
    );
    refused(check(&verifier(), &proof), "cannot be used with");
}

#[test]
fn typ_must_be_dpop_jwt() {
    let k = key(Alg::EdDSA);
    let body = claims("j", "POST", URL, NOW);
    for typ in [Value::Null, json!("JWT"), json!("at+jwt"), json!("dpop")] {
        let mut h = dpop_header(&k);
        match &typ {
            Value::Null => h.remove("typ"),
            t => h.insert("typ".into(), t.clone()),
        };
        refused(check(&verifier(), &sign(&k, h, &body)), "typ");
    }
    // The media-type spelling is the same type (RFC 7515 §4.1.9).
    let mut h = dpop_header(&k);
    h.insert("typ".into(), json!("application/dpop+jwt"));
    assert!(check(&verifier(), &sign(&k, h, &body)).is_ok());
}

#[test]
fn jwk_must_be_present_public_and_the_signing_key() {
    let k = key(Alg::EdDSA);
    let body = claims("j", "POST", URL, NOW);
    let mut h = dpop_header(&k);
    h.remove("jwk");
    refused(check(&verifier(), &sign(&k, h, &body)), "`jwk` is missing");

    // A private key in the header.
    let seed = [42u8; 32];
    let sk = SigningKey::from_ed25519_seed("k".into(), &seed).unwrap();
    let mut private = sk.public_jwk().to_public_json();
    private["d"] = json!(b64url_encode(&seed));
    let proof = forge(
        &sk,
        &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": private}),
        &body,
    );
    refused(check(&verifier(), &proof), "private");

    // Someone else's key in the header, signed with ours.
    let other = key(Alg::EdDSA);
    let proof = forge(
        &k,
        &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": other.public_jwk().to_public_json()}),
        &body,
    );
    refused(check(&verifier(), &proof), "bad signature");

    // A jwk that is not an object, and a symmetric key.
    let proof = forge(
        &k,
        &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": "key"}),
        &body,
    );
    assert!(check(&verifier(), &proof).is_err());
    let proof = forge(
        &k,
        &json!({"typ": "dpop+jwt", "alg": "EdDSA",
                "jwk": {"kty": "oct", "k": b64url_encode(&[1u8; 32])}}),
        &body,
    );
    refused(check(&verifier(), &proof), "private");
}

/// A client signs every proof with one key, which the verifier parses once and keeps
/// by the `jwk` member's exact text: every proof is still checked in full, a member
/// set that differs in anything is parsed on its own (and refused if it must be), and
/// a key that was refused is refused every time.
#[test]
fn one_key_many_proofs_and_only_the_exact_key_text_is_reused() {
    let v = verifier();
    let k = key(Alg::EdDSA);
    for i in 0..5 {
        let proof = good(&k, &format!("j-{i}"));
        assert!(check(&v, &proof).is_ok(), "proof {i} by a known key");
        // A reused key does not excuse a bad signature or a replay.
        let mut tampered = proof.clone();
        tampered.pop();
        tampered.push(if proof.ends_with('A') { 'B' } else { 'A' });
        assert!(check(&v, &tampered).is_err(), "tampered proof {i}");
        refused(check(&v, &proof), "used before");
    }

    // The same `x`, but members that make it another (unusable) key.
    let body = claims("other", "POST", URL, NOW);
    let jwk = k.public_jwk().to_public_json();
    for variant in [
        with(jwk.clone(), "crv", json!("Ed448")),
        with(jwk.clone(), "kty", json!("EC")),
        with(jwk.clone(), "alg", json!("ES256")),
    ] {
        let proof = forge(
            &k,
            &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": variant}),
            &body,
        );
        assert!(
            check(&v, &proof).is_err(),
            "a variant of a known key was taken for it: {variant}"
        );
    }

    // The identity point is no key, however often it is presented.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let bad = with(jwk, "x", json!(b64url_encode(&identity)));
    for i in 0..2 {
        let proof = forge(
            &k,
            &json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": bad}),
            &claims(&format!("bad-{i}"), "POST", URL, NOW),
        );
        refused(check(&v, &proof), "curve point");
    }
}

#[test]
fn tampered_signature_and_payload_are_refused() {
    let k = key(Alg::ES256);
    let proof = good(&k, "j");
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let mut bytes = b64url_decode(sig).unwrap();
    bytes[0] ^= 0x01;
    let flipped = format!("{input}.{}", b64url_encode(&bytes));
    refused(check(&verifier(), &flipped), "bad signature");
    // Another payload under the original signature.
    let mut parts: Vec<&str> = proof.split('.').collect();
    let forged_body = b64url_encode(
        &serde_json::to_vec(&claims("j", "POST", "https://evil.example/token", NOW)).unwrap(),
    );
    parts[1] = &forged_body;
    refused(check(&verifier(), &parts.join(".")), "bad signature");
}

// ---------------------------------------------------------------------------------
// Claims

#[test]
fn htm_must_match_the_method_exactly() {
    let k = key(Alg::EdDSA);
    for (i, htm) in ["GET", "post", "POST ", ""].into_iter().enumerate() {
        let proof = sign(
            &k,
            dpop_header(&k),
            &claims(&format!("j{i}"), htm, URL, NOW),
        );
        refused(check(&verifier(), &proof), "htm");
    }
    let proof = sign(
        &k,
        dpop_header(&k),
        &with(claims("j", "POST", URL, NOW), "htm", Value::Null),
    );
    refused(check(&verifier(), &proof), "`htm` is missing");
}

#[test]
fn htu_must_match_the_request_url() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let mut n = 0;
    let mut proof_for = |htu: &str| {
        n += 1;
        sign(
            &k,
            dpop_header(&k),
            &claims(&format!("j{n}"), "POST", htu, NOW),
        )
    };
    for other in [
        "https://evil.example.com/oauth2/token",
        "https://as.example.com/oauth2/token/",
        "https://as.example.com/oauth2/Token",
        "https://as.example.com/oauth2",
        "http://as.example.com/oauth2/token",
        "https://as.example.com:8443/oauth2/token",
        "https://as.example.com.evil.example/oauth2/token",
    ] {
        refused(check(&v, &proof_for(other)), "not the request URL");
    }
    for malformed in [
        "/oauth2/token",
        "as.example.com/oauth2/token",
        "https://user@as.example.com/oauth2/token",
        "ftp://as.example.com/oauth2/token",
    ] {
        refused(check(&v, &proof_for(malformed)), "htu");
    }
    // A query or fragment in `htu` is refused (RFC 9449 §4.2 says without them), even
    // when it equals the request's.
    let req = DpopRequest {
        url: "https://as.example.com/oauth2/token?a=1",
        ..post(NOW)
    };
    let with_query = proof_for("https://as.example.com/oauth2/token?a=1");
    refused(v.check(&with_query, &req), "query or fragment");
    refused(
        check(&v, &proof_for("https://as.example.com/oauth2/token#f")),
        "query or fragment",
    );
    // The request's query and fragment are ignored.
    let plain = proof_for(URL);
    assert!(v.check(&plain, &req).is_ok());
    // Normalised spellings are equal.
    for same in [
        "HTTPS://AS.Example.Com/oauth2/token",
        "https://as.example.com:443/oauth2/token",
        "https://as.example.com/oauth2/./token",
        "https://as.example.com/%6Fauth2/token",
    ] {
        assert!(check(&v, &proof_for(same)).is_ok(), "{same}");
    }
    // A malformed request URL fails closed.
    let bad_req = DpopRequest {
        url: "not a url",
        ..post(NOW)
    };
    refused(v.check(&proof_for(URL), &bad_req), "request URL");
    let proof = sign(
        &k,
        dpop_header(&k),
        &with(claims("jx", "POST", URL, NOW), "htu", Value::Null),
    );
    refused(check(&v, &proof), "`htu` is missing");
    let proof = sign(
        &k,
        dpop_header(&k),
        &with(claims("jy", "POST", URL, NOW), "htu", json!(["x"])),
    );
    refused(check(&v, &proof), "not a string");
}

#[test]
fn iat_window() {
    let k = key(Alg::EdDSA);
    let at = |jti: &str, iat: Value| {
        let body = with(claims(jti, "POST", URL, NOW), "iat", iat);
        check(&verifier(), &sign(&k, dpop_header(&k), &body))
    };
    assert!(at("a", json!(NOW - 60)).is_ok());
    refused(at("b", json!(NOW - 61)), "too old");
    refused(at("c", json!(NOW - 86_400)), "too old");
    assert!(at("d", json!(NOW + 5)).is_ok());
    refused(at("e", json!(NOW + 6)), "in the future");
    refused(at("f", json!(NOW + 86_400)), "in the future");
    refused(at("g", Value::Null), "`iat` is missing");
    refused(at("h", json!(NOW.to_string())), "NumericDate");
    refused(at("i", json!(-1)), "out of range");
}

#[test]
fn jti_is_required_bounded_and_single_use_per_key() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let body = |jti: Value| with(claims("", "POST", URL, NOW), "jti", jti);
    refused(
        check(&v, &sign(&k, dpop_header(&k), &body(Value::Null))),
        "`jti` is missing",
    );
    refused(
        check(&v, &sign(&k, dpop_header(&k), &body(json!("")))),
        "`jti` is empty",
    );
    refused(
        check(&v, &sign(&k, dpop_header(&k), &body(json!(17)))),
        "not a string",
    );
    refused(
        check(
            &v,
            &sign(&k, dpop_header(&k), &body(json!("x".repeat(257)))),
        ),
        "longer than 256",
    );
    assert!(
        check(
            &v,
            &sign(&k, dpop_header(&k), &body(json!("x".repeat(256))))
        )
        .is_ok()
    );

    // The same proof twice, and a new proof reusing the jti, are replays.
    let proof = good(&k, "once");
    assert!(check(&v, &proof).is_ok());
    refused(check(&v, &proof), "used before");
    let again = sign(&k, dpop_header(&k), &claims("once", "POST", URL, NOW + 1));
    refused(v.check(&again, &post(NOW + 1)), "used before");
    // Even at another URL: the cache is keyed by (jkt, jti), not by URL.
    let elsewhere = "https://as.example.com/par";
    let there = sign(&k, dpop_header(&k), &claims("once", "POST", elsewhere, NOW));
    let req = DpopRequest {
        url: elsewhere,
        ..post(NOW)
    };
    refused(v.check(&there, &req), "used before");
    // The same jti under another key is not a replay.
    let other = key(Alg::ES256);
    assert!(check(&v, &good(&other, "once")).is_ok());
}

#[test]
fn a_refused_proof_does_not_use_up_its_jti() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let token = "the-access-token";
    let url = "https://rs.example.com/r";
    let proof = sign(
        &k,
        dpop_header(&k),
        &with(
            claims("j", "GET", url, NOW),
            "ath",
            json!(access_token_hash(token)),
        ),
    );
    let req = |access_token| DpopRequest {
        method: "GET",
        url,
        access_token: Some(access_token),
        now: NOW,
    };
    refused(
        v.check(&proof, &req("another-token")),
        "`ath` does not match",
    );
    assert!(v.check(&proof, &req(token)).is_ok());
    refused(v.check(&proof, &req(token)), "used before");
}

#[test]
fn ath_is_required_iff_an_access_token_is_presented() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let url = "https://rs.example.com/r";
    let req = |access_token| DpopRequest {
        method: "GET",
        url,
        access_token,
        now: NOW,
    };
    let proof = |jti: &str, ath: Value| {
        sign(
            &k,
            dpop_header(&k),
            &with(claims(jti, "GET", url, NOW), "ath", ath),
        )
    };
    refused(
        v.check(&proof("a", Value::Null), &req(Some(token))),
        "`ath` is missing",
    );
    refused(
        v.check(
            &proof("b", json!(access_token_hash("other"))),
            &req(Some(token)),
        ),
        "`ath` does not match",
    );
    refused(
        v.check(&proof("c", json!("")), &req(Some(token))),
        "`ath` does not match",
    );
    refused(
        v.check(&proof("d", json!(access_token_hash(token))), &req(None)),
        "no access token",
    );
    assert!(matches!(
        v.check(&proof("e", json!(access_token_hash(""))), &req(Some(""))),
        Err(TokenError::InvalidToken(_))
    ));
    assert!(
        v.check(
            &proof("f", json!(access_token_hash(token))),
            &req(Some(token))
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------
// The header value

#[test]
fn one_proof_within_the_size_limit() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let a = good(&k, "a");
    let b = good(&k, "b");
    refused(check(&v, ""), "empty");
    refused(check(&v, &format!("{a},{b}")), "exactly one");
    refused(check(&v, &format!("{a}, {b}")), "exactly one");
    refused(check(&v, &format!("{a} {b}")), "whitespace");
    refused(check(&v, &format!(" {a}")), "whitespace");
    refused(check(&v, &format!("{a}\t")), "whitespace");
    refused(check(&v, &format!("{a}.{b}")), "three");
    refused(check(&v, &format!("\"{a}\"")), "not a compact JWS");
    refused(check(&v, "a.b"), "three");

    let big = with(
        claims("big", "POST", URL, NOW),
        "pad",
        json!("x".repeat(9 * 1024)),
    );
    refused(
        check(&v, &sign(&k, dpop_header(&k), &big)),
        "longer than 8192",
    );
    let mut cfg = DpopConfig::new(SECRET);
    cfg.max_len = 200;
    refused(
        DpopVerifier::new(cfg).check(&a, &post(NOW)),
        "longer than 200",
    );
    // The untouched proofs are still good.
    assert!(check(&v, &a).is_ok());
}

// ---------------------------------------------------------------------------------
// Nonces

fn with_nonce(k: &SigningKey, jti: &str, nonce: Option<&str>) -> String {
    let body = with(
        claims(jti, "POST", URL, NOW),
        "nonce",
        nonce.map_or(Value::Null, |n| json!(n)),
    );
    sign(k, dpop_header(k), &body)
}

#[test]
fn required_nonce_missing_stale_or_forged_asks_for_a_fresh_one() {
    let k = key(Alg::EdDSA);
    let v = nonce_verifier(SECRET);
    let fresh = v.nonce(NOW);
    assert!(
        fresh
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "nonce is NQCHAR-safe"
    );

    asks_for_nonce(check(&v, &with_nonce(&k, "a", None)), &fresh);
    asks_for_nonce(check(&v, &with_nonce(&k, "b", Some(""))), &fresh);
    // Two slots old.
    let stale = v.nonce(NOW - 2 * 300);
    asks_for_nonce(check(&v, &with_nonce(&k, "c", Some(&stale))), &fresh);
    // Far in the future, though correctly MACed: not issued yet.
    let future = v.nonce(NOW + 10 * 300);
    asks_for_nonce(check(&v, &with_nonce(&k, "d", Some(&future))), &fresh);
    // Not ours: another secret, garbage, a truncated or altered nonce.
    let foreign = nonce_verifier([9; 32]).nonce(NOW);
    asks_for_nonce(check(&v, &with_nonce(&k, "e", Some(&foreign))), &fresh);
    asks_for_nonce(
        check(&v, &with_nonce(&k, "f", Some("eyJ7S_zG.eyJH0-Z"))),
        &fresh,
    );
    asks_for_nonce(check(&v, &with_nonce(&k, "g", Some(&fresh[..20]))), &fresh);
    let mut altered = b64url_decode(&fresh).unwrap();
    altered[7] ^= 1; // another slot under the same MAC
    let altered = b64url_encode(&altered);
    asks_for_nonce(check(&v, &with_nonce(&k, "h", Some(&altered))), &fresh);
    // A nonce of the wrong type is a malformed proof.
    let body = with(claims("i", "POST", URL, NOW), "nonce", json!(5));
    refused(check(&v, &sign(&k, dpop_header(&k), &body)), "not a string");

    // The current and the previous slot are accepted.
    assert!(check(&v, &with_nonce(&k, "ok1", Some(&fresh))).is_ok());
    let previous = v.nonce(NOW - 300);
    assert!(check(&v, &with_nonce(&k, "ok2", Some(&previous))).is_ok());
    // None of the refusals above used up a jti.
    assert!(check(&v, &with_nonce(&k, "a", Some(&fresh))).is_ok());
}

#[test]
fn nonce_slots_turn_over() {
    let v = nonce_verifier(SECRET);
    let k = key(Alg::EdDSA);
    let slot_start = NOW - NOW.rem_euclid(300);
    let n = v.nonce(slot_start);
    assert_eq!(n, v.nonce(slot_start + 299), "one nonce per slot");
    assert_ne!(n, v.nonce(slot_start + 300));
    let at = |jti: &str, now: i64| {
        let body = with(claims(jti, "POST", URL, now), "nonce", json!(n));
        v.check(&sign(&k, dpop_header(&k), &body), &post(now))
    };
    assert!(at("a", slot_start + 599).is_ok(), "previous slot");
    asks_for_nonce(at("b", slot_start + 600), &v.nonce(slot_start + 600));
    // A replica whose clock is a little ahead may already hand out the next slot's.
    // (A fresh verifier: this one's replay cache has seen later times.)
    let v = nonce_verifier(SECRET);
    let ahead = v.nonce(slot_start + 300);
    let body = with(
        claims("c", "POST", URL, slot_start + 296),
        "nonce",
        json!(ahead),
    );
    assert!(
        v.check(&sign(&k, dpop_header(&k), &body), &post(slot_start + 296))
            .is_ok()
    );
    let body = with(
        claims("d", "POST", URL, slot_start + 200),
        "nonce",
        json!(ahead),
    );
    assert!(
        v.check(&sign(&k, dpop_header(&k), &body), &post(slot_start + 200))
            .is_err()
    );
}

#[test]
fn replicas_with_the_same_secret_accept_each_others_nonces() {
    let k = key(Alg::ES256);
    let a = nonce_verifier(SECRET);
    let b = nonce_verifier(SECRET);
    let c = nonce_verifier([8; 32]);
    let from_a = a.nonce(NOW);
    assert_eq!(from_a, b.nonce(NOW));
    assert!(check(&b, &with_nonce(&k, "x", Some(&from_a))).is_ok());
    asks_for_nonce(
        check(&c, &with_nonce(&k, "x", Some(&from_a))),
        &c.nonce(NOW),
    );
    // Replay caches are per replica.
    assert!(check(&a, &with_nonce(&k, "x", Some(&from_a))).is_ok());
}

#[test]
fn nonce_not_required_is_not_checked() {
    let k = key(Alg::EdDSA);
    assert!(check(&verifier(), &with_nonce(&k, "a", Some("anything"))).is_ok());
}

// ---------------------------------------------------------------------------------
// The replay cache

#[test]
fn full_replay_cache_refuses_new_proofs_until_entries_expire() {
    let k = key(Alg::EdDSA);
    let mut cfg = DpopConfig::new(SECRET);
    cfg.replay_capacity = 3;
    let v = DpopVerifier::new(cfg);
    for jti in ["a", "b", "c"] {
        assert!(check(&v, &good(&k, jti)).is_ok());
    }
    let d = good(&k, "d");
    assert!(matches!(check(&v, &d), Err(TokenError::Unavailable(_))));
    // Still a replay, not forgotten.
    refused(check(&v, &good(&k, "a")), "used before");
    // Once the first proofs can no longer be accepted, their entries make room.
    let later = NOW + 66;
    let e = sign(&k, dpop_header(&k), &claims("e", "POST", URL, later));
    assert!(v.check(&e, &post(later)).is_ok());
    // `d` itself is now too old.
    refused(v.check(&d, &post(later)), "too old");
}

#[test]
fn an_earlier_clock_reading_cannot_revive_a_purged_proof() {
    let k = key(Alg::EdDSA);
    let v = verifier();
    let proof = good(&k, "p");
    assert!(check(&v, &proof).is_ok());
    // Another request moves the cache's clock past the proof's window…
    let later = NOW + 70;
    let other = sign(&k, dpop_header(&k), &claims("q", "POST", URL, later));
    assert!(v.check(&other, &post(later)).is_ok());
    // …so a caller with a lagging clock cannot replay it.
    assert!(v.check(&proof, &post(NOW + 60)).is_err());
}

#[test]
fn concurrent_replays_let_exactly_one_through() {
    let k = key(Alg::EdDSA);
    let v = Arc::new(verifier());
    let proof = Arc::new(good(&k, "race"));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let v = Arc::clone(&v);
            let proof = Arc::clone(&proof);
            std::thread::spawn(move || check(&v, &proof).is_ok())
        })
        .collect();
    let accepted = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(accepted, 1);
}

#[test]
fn config_debug_hides_the_secret() {
    let cfg = DpopConfig::new([0xAB; 32]);
    let shown = format!("{cfg:?}");
    assert!(shown.contains("redacted"));
    assert!(!shown.contains("171"), "{shown}");
}
