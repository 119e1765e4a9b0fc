//! A JWS compact serialization from an untrusted client (client assertions, DPoP
//! proofs, JWT-SVIDs, ID tokens all start here): the header peek and a verification
//! against a fixed Ed25519 key must refuse or accept, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_jose::{Alg, Jwk, Rules, SigningKey, peek_header, verify};

fn key() -> &'static Jwk {
    static KEY: OnceLock<Jwk> = OnceLock::new();
    KEY.get_or_init(|| {
        let signer = SigningKey::generate(Alg::EdDSA, "fuzz".into());
        match signer {
            Ok(s) => s.public_jwk(),
            Err(e) => panic!("no signing key: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = peek_header(text);
    let _ = verify(text, key(), Alg::EdDSA, &Rules::default());
});
