#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! Every case of Wycheproof's `json_web_key_test.json`.
//!
//! Each group carries a JWK Set (`public`, else `private`). A case is a JWS
//! to check against that set: "valid" means the set is acceptable and the
//! token verifies with the key its `kid` names (algorithm pinned by that
//! key); "invalid" means the set, the key, or the token must be refused.
//! A valid case whose algorithm we deliberately do not implement is listed
//! as not applicable.

mod common;

use mandate_jose::{JoseError, Jwk, Rules, peek_header, verify};

const FILE: &str = "wycheproof/json_web_key_test.json";

/// Set → key by kid → pinned verify. The first error ends it.
fn check(set: &serde_json::Value, jws: &str) -> Result<(), JoseError> {
    let keys = Jwk::set_from_json(set)?;
    let header = peek_header(jws)?;
    let key = keys
        .iter()
        .find(|k| k.kid() == header.kid.as_deref())
        .ok_or_else(|| JoseError::KeyRejected("no key with that kid".into()))?;
    let pins = key.allowed_algs();
    let [pin] = pins.as_slice() else {
        return Err(JoseError::KeyRejected(format!(
            "key allows {pins:?}: no single pin"
        )));
    };
    verify(jws, key, *pin, &Rules::default()).map(|_| ())
}

#[test]
fn json_web_key_test() {
    let file = common::load(FILE);
    let declared = file["numberOfTests"].as_u64().unwrap();
    let (mut passed, mut failed, mut total) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let mut not_applicable: Vec<(u64, String)> = Vec::new();

    for g in file["testGroups"].as_array().unwrap() {
        let set = g.get("public").or_else(|| g.get("private")).unwrap();
        for t in g["tests"].as_array().unwrap() {
            total += 1;
            let tc = t["tcId"].as_u64().unwrap();
            let jws = t["jws"].as_str().unwrap();
            let comment = t["comment"].as_str().unwrap_or("");
            let valid = t["result"].as_str().unwrap() == "valid";
            let got = check(set, jws);
            match (valid, got) {
                (true, Ok(())) | (false, Err(_)) => passed += 1,
                (true, Err(JoseError::Unsupported(why))) => {
                    not_applicable.push((tc, format!("{comment}: {why}")));
                }
                (true, Err(e)) => {
                    failed += 1;
                    failures.push(format!("tcId {tc} ({comment}): rejected: {e}"));
                }
                (false, Ok(())) => {
                    failed += 1;
                    failures.push(format!("tcId {tc} ({comment}): accepted"));
                }
            }
        }
    }

    let na = not_applicable.len() as u64;
    println!("json_web_key_test.json: {passed} passed, {failed} failed");
    println!("json_web_key_test.json: {na} not applicable:");
    for (tc, why) in &not_applicable {
        println!("  tcId {tc}: {why}");
    }
    for f in &failures {
        println!("  FAILED {f}");
    }
    assert_eq!(total, declared);
    assert_eq!(passed + failed + na, total);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(na <= 2, "{not_applicable:?}");
}

/// Each refusal above happens for the reason the vector is about, not by
/// accident: check the individual keys directly.
#[test]
fn bad_keys_are_refused_for_their_own_reason() {
    let file = common::load(FILE);
    let groups = file["testGroups"].as_array().unwrap();
    let by_comment = |c: &str| -> Vec<&serde_json::Value> {
        groups
            .iter()
            .filter(|g| g["comment"] == c)
            .map(|g| &g.get("public").or_else(|| g.get("private")).unwrap()["keys"][0])
            .collect()
    };
    let err = |v: &serde_json::Value| Jwk::from_json(v).unwrap_err().to_string();

    for k in by_comment("jws_rsa_roca_key") {
        assert!(err(k).contains("ROCA"), "{}", err(k));
    }
    for k in by_comment("keysize_too_small") {
        assert!(err(k).contains("at least 2048"), "{}", err(k));
    }
    for k in by_comment("exponentOne") {
        assert!(err(k).contains("exponent"), "{}", err(k));
    }
    for k in by_comment("invalid_point") {
        assert!(err(k).contains("not on P-256"), "{}", err(k));
    }
    for k in by_comment("wrong_curve") {
        assert!(err(k).contains("exactly 48 bytes"), "{}", err(k));
    }
    for k in by_comment("wrong_kty") {
        assert!(err(k).contains("carries the member"), "{}", err(k));
    }
    // Short and empty HMAC keys are refused as such, whatever alg they claim.
    for c in ["HS256", "HS384", "HS512"] {
        for k in by_comment(c) {
            let bytes = mandate_jose::b64url_decode(k["k"].as_str().unwrap()).unwrap();
            if bytes.len() < 32 {
                assert!(err(k).contains("shorter than 32"), "{}", err(k));
            }
        }
    }
    // AES keys are not signing keys.
    for c in ["invalid_aes_gcm_key", "invalid_aes_kw_key"] {
        for k in by_comment(c) {
            assert!(matches!(Jwk::from_json(k), Err(JoseError::Unsupported(_))));
        }
    }
    // Mixed set: refused as mixed.
    let g = groups
        .iter()
        .find(|g| g["comment"] == "jws_mixedSymmetryKeyset")
        .unwrap();
    let e = Jwk::set_from_json(&g["private"]).unwrap_err().to_string();
    assert!(e.contains("mixes"), "{e}");
    // Duplicate-kid set: its second key's `k` is itself non-canonical
    // base64url (non-zero trailing bits), which strict decoding refuses first.
    // Make sure the duplicate kid alone is refused too.
    let g = groups
        .iter()
        .find(|g| g["comment"] == "jws_duplicate_kid")
        .unwrap();
    let e = Jwk::set_from_json(&g["private"]).unwrap_err();
    assert!(
        matches!(e, JoseError::Malformed(ref m) if m.contains("`k`")),
        "{e}"
    );
    let first = g["private"]["keys"][0].clone();
    let mut second = first.clone();
    second["k"] = "-xbuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE".into();
    let e = Jwk::set_from_json(&serde_json::json!({"keys": [first, second]}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("two keys"), "{e}");
}
