//! DPoP proofs whose header members and claims the fuzzer chooses, signed by a fixed
//! key the header embeds, so that the production verifier's claim checks (`jti`, `htm`,
//! `htu` normalisation, `iat` window, `ath`, nonce, replay) run on nearly every input.
//!
//! Input: `flags, header members NUL claims NUL method NUL url NUL access_token`.
//! flags bit 0: sign with P-256 rather than Ed25519; bit 1: require a nonce. In the
//! claims, `@NONCE@` becomes the verifier's current nonce and `@ATH@` the access
//! token's hash (neither can be guessed), so the accepting paths are reachable.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mandate_token::{DpopConfig, DpopRequest, DpopVerifier, access_token_hash};
use serde_json::{Map, json};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = common::fields(rest, 5);
    let key = if flags & 1 == 0 {
        common::ed25519()
    } else {
        common::es256()
    };
    let mut cfg = DpopConfig::new([7; 32]);
    cfg.require_nonce = flags & 2 != 0;
    let verifier = DpopVerifier::new(cfg);
    let access_token = f.get(4).and_then(|t| std::str::from_utf8(t).ok());

    let mut defaults = Map::new();
    defaults.insert("typ".into(), json!("dpop+jwt"));
    defaults.insert("alg".into(), json!(key.alg().as_str()));
    defaults.insert("jwk".into(), key.public_jwk().to_public_json());
    let header = common::header_over(defaults, f.first().copied().unwrap_or_default());
    let mut claims = f.get(1).copied().unwrap_or_default().to_vec();
    replace(
        &mut claims,
        b"@NONCE@",
        verifier.nonce(common::NOW).as_bytes(),
    );
    replace(
        &mut claims,
        b"@ATH@",
        access_token_hash(access_token.unwrap_or_default()).as_bytes(),
    );
    let Some(proof) = common::sign_raw(key, &header, &claims) else {
        return;
    };
    let req = DpopRequest {
        method: common::text(&f, 2, "POST"),
        url: common::text(&f, 3, "https://as.example/oauth2/token"),
        access_token,
        now: common::NOW,
    };
    if let Ok(p) = verifier.check(&proof, &req) {
        assert_eq!(
            p.jkt(),
            key.public_jwk().thumbprint(),
            "the proof key is not the signer"
        );
        assert!(
            verifier.check(&proof, &req).is_err(),
            "a DPoP proof was accepted twice"
        );
        assert_eq!(p.replay_id().len(), 43, "a replay id is not fixed-size");
    }
});

/// Replaces every `from` in `bytes` with `to`.
fn replace(bytes: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    *bytes = out;
}
