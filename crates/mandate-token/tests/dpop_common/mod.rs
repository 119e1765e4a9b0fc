//! Helpers for the DPoP tests: where the RFC 9449 vectors live, and proof builders.
//!
//! The vectors are read from `shared/conformance/dpop/` beside the repository when it is
//! there, else from the vendored copy in `tests/vectors/dpop/`.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::{Path, PathBuf};

use mandate_jose::{Alg, SigningKey, b64url_encode};
use serde_json::{Map, Value, json};

/// The shared conformance directory (`<repo>/../shared/conformance/dpop`).
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/dpop")
}

/// The vendored copy.
pub fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/dpop")
}

/// The path of a fixture, preferring the shared copy.
pub fn fixture(rel: &str) -> PathBuf {
    let shared = shared_dir().join(rel);
    if shared.is_file() {
        shared
    } else {
        vendored_dir().join(rel)
    }
}

/// Reads and parses a JSON fixture.
pub fn load(rel: &str) -> Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    eprintln!("reading {}", path.display());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn key(alg: Alg) -> SigningKey {
    SigningKey::generate(alg, "client-key".into()).unwrap()
}

/// The header a well-behaved client sends.
pub fn dpop_header(key: &SigningKey) -> Map<String, Value> {
    let Value::Object(h) = json!({
        "typ": "dpop+jwt",
        "jwk": key.public_jwk().to_public_json(),
    }) else {
        unreachable!()
    };
    h
}

/// A proof signed through `SigningKey::sign` (which sets `alg` and `kid`).
pub fn sign(key: &SigningKey, header: Map<String, Value>, claims: &Value) -> String {
    key.sign(header, &serde_json::to_vec(claims).unwrap())
        .unwrap()
}

/// A proof with exactly the given header, signed over the raw signing input: for
/// headers `SigningKey::sign` refuses to produce (wrong `alg`, someone else's `jwk`, …).
pub fn sign_raw(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(&serde_json::to_vec(header).unwrap()),
        b64url_encode(&serde_json::to_vec(claims).unwrap())
    );
    let sig = key.sign_input(input.as_bytes()).unwrap();
    format!("{input}.{}", b64url_encode(&sig))
}

/// The claims of a proof for `method url` at `iat`.
pub fn claims(jti: &str, method: &str, url: &str, iat: i64) -> Value {
    json!({"jti": jti, "htm": method, "htu": url, "iat": iat})
}

/// Sets or removes (`Value::Null`) a member of a JSON object.
pub fn with(mut v: Value, name: &str, value: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        if value.is_null() {
            m.remove(name);
        } else {
            m.insert(name.into(), value);
        }
    }
    v
}
