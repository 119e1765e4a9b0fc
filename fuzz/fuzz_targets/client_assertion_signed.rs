//! Client assertions whose header members and claims the fuzzer chooses, signed by one
//! of the client's registered keys, so that the production verifier's claim checks
//! (`iss` = `sub` = client id, `aud`, `exp` within the lifetime, `nbf`, `iat`, `jti`)
//! run on nearly every input.
//!
//! Input: `flags, header members NUL claims NUL client_id`. flags bit 0: sign with the
//! P-256 key rather than the Ed25519 one.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mandate_token::{ClientKeys, unverified_issuer, verify_client_assertion};
use serde_json::{Map, json};

const AUD: &str = "https://as.example/oauth2/token";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = common::fields(rest, 3);
    let key = if flags & 1 == 0 {
        common::ed25519()
    } else {
        common::es256()
    };
    let keys = ClientKeys::parse(&[
        common::ed25519().public_jwk().to_public_json(),
        common::es256().public_jwk().to_public_json(),
    ]);
    let mut defaults = Map::new();
    defaults.insert("alg".into(), json!(key.alg().as_str()));
    defaults.insert("kid".into(), json!(key.kid()));
    let header = common::header_over(defaults, f.first().copied().unwrap_or_default());
    let claims = f.get(1).copied().unwrap_or_default();
    let Some(token) = common::sign_raw(key, &header, claims) else {
        return;
    };
    let client_id = common::text(&f, 2, "agt_fuzz");
    let peeked = unverified_issuer(&token).ok();
    if let Ok(a) = verify_client_assertion(&token, client_id, &keys, &[AUD], common::NOW) {
        assert_eq!(
            peeked.as_deref(),
            Some(client_id),
            "verified `iss` differs from the peek"
        );
        assert!(
            a.expires_at >= common::NOW - 60,
            "an expired assertion was accepted"
        );
    }
});
