//! A SPIFFE JWT-SVID presented as a client assertion, whole: header peek, the
//! unverified `sub` that picks the trust domain's bundle, the signature with the
//! algorithm the bundle key pins, then the claims. The production verifier runs
//! against fixed bundles (the fixed keys of `common` for `example.org`, go-spiffe's
//! `jwks_valid_1.json` for `domain.test`) and a fixed clock. Never a panic.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_token::{JwtBundle, TrustBundles, TrustDomain, verify_jwt_svid};

const AUD: &str = "https://mandate.example/oauth2/token";

fn bundles() -> &'static TrustBundles {
    static BUNDLES: OnceLock<TrustBundles> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let ours = serde_json::json!({ "keys": [
            with_use(common::ed25519().public_jwk().to_public_json()),
            with_use(common::es256().public_jwk().to_public_json()),
        ]})
        .to_string();
        let go_spiffe = include_bytes!(
            "../../crates/mandate-token/tests/vectors/spiffe/go-spiffe/bundle/jwtbundle/testdata/jwks_valid_1.json"
        );
        let mut bundles = TrustBundles::new();
        for (domain, doc, spiffe) in [
            ("example.org", ours.as_bytes(), true),
            ("domain.test", &go_spiffe[..], false),
        ] {
            let bundle = TrustDomain::parse(domain)
                .map_err(|e| e.to_string())
                .and_then(|td| {
                    let parsed = if spiffe {
                        JwtBundle::from_spiffe_bundle_json(td, doc)
                    } else {
                        JwtBundle::from_jwks_json(td, doc)
                    };
                    parsed.map_err(|e| e.to_string())
                });
            match bundle {
                Ok(b) => bundles.insert(b),
                Err(e) => panic!("fixed bundle {domain} refused: {e}"),
            };
        }
        bundles
    })
}

fn with_use(mut jwk: serde_json::Value) -> serde_json::Value {
    if let Some(m) = jwk.as_object_mut() {
        m.insert("use".into(), "jwt-svid".into());
    }
    jwk
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = verify_jwt_svid(token, bundles(), &[AUD], common::NOW) {
        assert!(
            !id.is_trust_domain_id(),
            "a trust domain ID was accepted as a workload"
        );
        assert!(bundles().get(id.trust_domain()).is_some());
    }
});
