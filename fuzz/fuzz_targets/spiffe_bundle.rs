//! A SPIFFE trust bundle or plain JWK Set document (operator configuration, or a
//! document an operator copied from elsewhere): the production bundle parsers refuse
//! or accept, never panic, and what they accept keeps their invariant (every JWT
//! authority has a unique non-empty `kid` and is a public key).
//!
//! Input: `kind, document`; kind bit 0: a plain JWK Set rather than a SPIFFE bundle.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mandate_token::{JwtBundle, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, doc)) = data.split_first() else {
        return;
    };
    let Ok(td) = TrustDomain::parse("example.org") else {
        return;
    };
    let parsed = if kind & 1 == 0 {
        JwtBundle::from_spiffe_bundle_json(td, doc)
    } else {
        JwtBundle::from_jwks_json(td, doc)
    };
    if let Ok(bundle) = parsed {
        let mut kids = HashSet::new();
        for (kid, jwk) in bundle.keys() {
            assert!(!kid.is_empty(), "a JWT authority without a kid");
            assert!(
                kids.insert(kid.to_owned()),
                "two JWT authorities share a kid"
            );
            assert!(!jwk.is_private(), "a bundle kept a private key");
            assert!(bundle.key(kid).is_some());
        }
        assert_eq!(bundle.len(), kids.len());
    }
});
