//! A `DPoP` header value from an untrusted client, whole (RFC 9449 §4.3): shape, header
//! peek, the embedded key, the signature, then the claims, checked by the production
//! verifier against a request also taken from the input. Never a panic.
//!
//! Input: `proof NUL method NUL url NUL access_token` (all but the proof optional).
//! The clock is fixed just after the RFC's example proofs (the seeds), so those pass.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mandate_token::{DpopConfig, DpopRequest, DpopVerifier};

/// Shortly after the `iat` of RFC 9449's example proofs.
const NOW: i64 = 1_562_262_620;

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 4);
    let Some(proof) = f.first().and_then(|p| std::str::from_utf8(p).ok()) else {
        return;
    };
    let req = DpopRequest {
        method: common::text(&f, 1, "POST"),
        url: common::text(&f, 2, "https://server.example.com/token"),
        access_token: f.get(3).and_then(|t| std::str::from_utf8(t).ok()),
        now: NOW,
    };
    for require_nonce in [false, true] {
        let mut cfg = DpopConfig::new([7; 32]);
        cfg.require_nonce = require_nonce;
        let verifier = DpopVerifier::new(cfg);
        if let Ok(p) = verifier.check(proof, &req) {
            // A proof that passed is refused the second time (its `jti` is spent),
            // and binds to its own thumbprint only.
            assert!(
                verifier.check(proof, &req).is_err(),
                "a DPoP proof was accepted twice"
            );
            assert!(verifier.check_bound(&p, p.jkt()).is_ok());
        }
    }
});
