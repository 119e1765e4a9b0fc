//! A `private_key_jwt` client assertion (RFC 7523 §3) from an untrusted client, whole:
//! the unverified `iss` peek the token endpoint uses to pick the client, then the
//! production verifier against the client's registered keys (the fixed keys of
//! `common`), its audience and a fixed clock. Never a panic.
//!
//! Input: `assertion NUL client_id` (the client id defaults to the peeked `iss`).
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_token::{ClientKeys, unverified_issuer, verify_client_assertion};

const AUD: &str = "https://as.example/oauth2/token";

fn keys() -> &'static ClientKeys {
    static KEYS: OnceLock<ClientKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut no_alg = common::es256().public_jwk().to_public_json();
        if let Some(m) = no_alg.as_object_mut() {
            m.remove("alg");
            m.insert("kid".into(), "no-alg".into());
        }
        ClientKeys::parse(&[
            common::ed25519().public_jwk().to_public_json(),
            common::es256().public_jwk().to_public_json(),
            no_alg,
        ])
    })
}

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 2);
    let Some(token) = f.first().and_then(|t| std::str::from_utf8(t).ok()) else {
        return;
    };
    let peeked = unverified_issuer(token).ok();
    let client_id = match f.get(1).and_then(|c| std::str::from_utf8(c).ok()) {
        Some(c) => c.to_owned(),
        None => peeked.clone().unwrap_or_else(|| "agt_fuzz".into()),
    };
    if let Ok(a) = verify_client_assertion(token, &client_id, keys(), &[AUD], common::NOW) {
        assert_eq!(a.client_id, client_id);
        assert_eq!(
            peeked.as_deref(),
            Some(client_id.as_str()),
            "verified `iss` differs from the peek"
        );
    }
});
