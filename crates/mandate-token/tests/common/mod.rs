//! Shared by the token tests: where the outside vectors live
//! (`shared/conformance/` beside the repository when it is there, else the vendored
//! copies in `tests/vectors/`), and token and proof builders.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::{Path, PathBuf};

use mandate_jose::{Alg, SigningKey, b64url_encode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The shared conformance directory (`<repo>/../shared/conformance`).
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

/// The vendored copies.
pub fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The path of a fixture (`dpop/…`, `spiffe/…`), preferring the shared copy.
pub fn fixture(rel: &str) -> PathBuf {
    let shared = shared_dir().join(rel);
    if shared.is_file() {
        shared
    } else {
        vendored_dir().join(rel)
    }
}

/// A fixture's bytes.
pub fn read(rel: &str) -> Vec<u8> {
    let path = fixture(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A SPIFFE fixture's bytes (`rel` under `spiffe/`).
pub fn spiffe(rel: &str) -> Vec<u8> {
    read(&format!("spiffe/{rel}"))
}

/// A JSON fixture, parsed.
pub fn load(rel: &str) -> Value {
    let path = fixture(rel);
    eprintln!("reading {}", path.display());
    serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A token signed by `key` (which sets `alg` and `kid`), with extra header members.
pub fn sign(key: &SigningKey, header: impl Into<Value>, claims: &Value) -> String {
    key.sign(object(header.into()), claims.to_string().as_bytes())
        .unwrap()
}

/// A token whose header is taken verbatim, signed by `key` whatever the header says.
pub fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let sig = key.sign_input(input.as_bytes()).unwrap();
    format!("{input}.{}", b64url_encode(&sig))
}

/// A token with an HS256 MAC keyed by `secret` (the classic public-key-as-secret forgery).
pub fn forge_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    format!(
        "{input}.{}",
        b64url_encode(&hmac_sha256(secret, input.as_bytes()))
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Flips one bit in the decoded signature of a compact JWS.
pub fn flip_signature_bit(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = mandate_jose::b64url_decode(sig).unwrap();
    sig[0] ^= 0x01;
    format!("{input}.{}", b64url_encode(&sig))
}

/// Replaces the payload segment, keeping header and signature.
pub fn swap_payload(token: &str, claims: &Value) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = b64url_encode(claims.to_string().as_bytes());
    parts[1] = &payload;
    parts.join(".")
}

/// The public JWK of `key` as JSON, with `use` set (or removed when `None`).
pub fn public_jwk(key: &SigningKey, use_: Option<&str>) -> Value {
    let mut v = key.public_jwk().to_public_json();
    let m = v.as_object_mut().unwrap();
    match use_ {
        Some(u) => {
            m.insert("use".into(), u.into());
        }
        None => {
            m.remove("use");
        }
    }
    v
}

/// The raw public key bytes (`x`) of an Ed25519 signing key.
pub fn ed25519_x(key: &SigningKey) -> Vec<u8> {
    let v = key.public_jwk().to_public_json();
    mandate_jose::b64url_decode(v["x"].as_str().unwrap()).unwrap()
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
