//! A JWK from an untrusted document (an agent's registered keys, a JWKS fetched from
//! a federated issuer): strict JSON, then the key's own checks (points on the curve,
//! sizes), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_jose::{Jwk, parse_json_strict};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = parse_json_strict(data) {
        let _ = Jwk::from_json(&value);
    }
});
