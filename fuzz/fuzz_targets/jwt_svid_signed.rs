//! JWT-SVIDs whose header members and claims the fuzzer chooses, signed by a JWT
//! authority of the `example.org` bundle, so that the production verifier's checks
//! after the signature (`sub` a workload SPIFFE ID of that trust domain, `aud`, `exp`,
//! `nbf`, `iat`, `typ`) run on nearly every input.
//!
//! Input: `flags, header members NUL claims`. flags bit 0: sign with the P-256 key
//! rather than the Ed25519 one.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_token::{JwtBundle, SpiffeId, TrustBundles, TrustDomain, verify_jwt_svid};
use serde_json::{Map, json};

const AUD: &str = "https://mandate.example/oauth2/token";

fn bundles() -> &'static TrustBundles {
    static BUNDLES: OnceLock<TrustBundles> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let mut keys = Vec::new();
        for key in [common::ed25519(), common::es256()] {
            let mut jwk = key.public_jwk().to_public_json();
            if let Some(m) = jwk.as_object_mut() {
                m.insert("use".into(), "jwt-svid".into());
            }
            keys.push(jwk);
        }
        let doc = json!({ "keys": keys }).to_string();
        let bundle = TrustDomain::parse("example.org")
            .map_err(|e| e.to_string())
            .and_then(|td| {
                JwtBundle::from_spiffe_bundle_json(td, doc.as_bytes()).map_err(|e| e.to_string())
            });
        let mut bundles = TrustBundles::new();
        match bundle {
            Ok(b) => bundles.insert(b),
            Err(e) => panic!("fixed bundle refused: {e}"),
        };
        bundles
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = common::fields(rest, 2);
    let key = if flags & 1 == 0 {
        common::ed25519()
    } else {
        common::es256()
    };
    let mut defaults = Map::new();
    defaults.insert("alg".into(), json!(key.alg().as_str()));
    defaults.insert("kid".into(), json!(key.kid()));
    defaults.insert("typ".into(), json!("JWT"));
    let header = common::header_over(defaults, f.first().copied().unwrap_or_default());
    let claims = f.get(1).copied().unwrap_or_default();
    let Some(token) = common::sign_raw(key, &header, claims) else {
        return;
    };
    if let Ok(id) = verify_jwt_svid(&token, bundles(), &[AUD], common::NOW) {
        assert!(
            !id.is_trust_domain_id(),
            "a trust domain ID was accepted as a workload"
        );
        assert_eq!(id.trust_domain().as_str(), "example.org");
        // What came out is a SPIFFE ID that reads back as itself.
        assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
    }
});
