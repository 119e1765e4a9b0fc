//! Shared by the targets that verify tokens: fixed keys, a fixed clock, and signing of
//! fuzzer-chosen header and payload bytes, so that the verifiers' claim checks are
//! reached on most inputs instead of stopping at the signature.
#![allow(dead_code, reason = "each target uses a part")]

use std::sync::OnceLock;

use mandate_jose::{Alg, SigningKey, b64url_encode};

/// The fixed clock of every target, Unix seconds.
pub const NOW: i64 = 1_750_000_000;

/// The seed of the fixed Ed25519 key: tokens in the seed corpora are signed by it
/// (see `fuzz/README.md`), so they verify on every run.
pub const ED25519_SEED: [u8; 32] = [42; 32];

/// The fixed Ed25519 key, `kid` "fuzz-ed".
pub fn ed25519() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(
        || match SigningKey::from_ed25519_seed("fuzz-ed".into(), &ED25519_SEED) {
            Ok(k) => k,
            Err(e) => panic!("no Ed25519 key: {e}"),
        },
    )
}

/// A P-256 key made once per process, `kid` "fuzz-es" (ECDSA signatures are
/// randomised anyway).
pub fn es256() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(
        || match SigningKey::generate(Alg::ES256, "fuzz-es".into()) {
            Ok(k) => k,
            Err(e) => panic!("no P-256 key: {e}"),
        },
    )
}

/// `data` cut at NUL bytes into at most `n` fields (JSON text never holds a raw NUL).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |b| *b == 0).collect()
}

/// Field `i` as text, or `default` when it is absent, empty or not UTF-8.
pub fn text<'a>(fields: &[&'a [u8]], i: usize, default: &'a str) -> &'a str {
    fields
        .get(i)
        .and_then(|f| std::str::from_utf8(f).ok())
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
}

/// A JSON object's members, or none when `bytes` is not one.
pub fn object(bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// The compact JWS of exactly these header and payload bytes, signed by `key` whatever
/// the header says.
pub fn sign_raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> Option<String> {
    let input = format!("{}.{}", b64url_encode(header), b64url_encode(payload));
    let sig = key.sign_input(input.as_bytes()).ok()?;
    Some(format!("{input}.{}", b64url_encode(&sig)))
}

/// `header` over the defaults, member by member, then serialised.
pub fn header_over(defaults: serde_json::Map<String, serde_json::Value>, header: &[u8]) -> Vec<u8> {
    let mut merged = defaults;
    merged.extend(object(header));
    serde_json::to_vec(&merged).unwrap_or_default()
}
