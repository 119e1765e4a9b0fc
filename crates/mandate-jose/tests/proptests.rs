#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! Sign-then-verify round trips, and no single flipped bit ever verifies.

use std::sync::OnceLock;

use mandate_jose::{Alg, Rules, SigningKey, verify};
use proptest::prelude::*;
use serde_json::Map;

fn key(alg: Alg) -> &'static SigningKey {
    static ED: OnceLock<SigningKey> = OnceLock::new();
    static ES: OnceLock<SigningKey> = OnceLock::new();
    let cell = if alg == Alg::EdDSA { &ED } else { &ES };
    cell.get_or_init(|| SigningKey::generate(alg, format!("prop-{alg}")).unwrap())
}

fn alg_strategy() -> impl Strategy<Value = Alg> {
    prop_oneof![Just(Alg::EdDSA), Just(Alg::ES256)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sign_then_verify(alg in alg_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let k = key(alg);
        let token = k.sign(Map::new(), &payload).unwrap();
        let v = verify(&token, &k.public_jwk(), alg, &Rules::default()).unwrap();
        prop_assert_eq!(v.payload, payload);
        prop_assert_eq!(v.header.alg, alg);
        prop_assert_eq!(v.header.kid.as_deref(), Some(k.kid()));
    }

    #[test]
    fn a_flipped_bit_never_verifies(
        alg in alg_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        at in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let k = key(alg);
        let token = k.sign(Map::new(), &payload).unwrap();
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // A flip that breaks UTF-8 cannot even be presented as a token.
        if let Ok(s) = String::from_utf8(bytes) {
            let r = verify(&s, &k.public_jwk(), alg, &Rules::default());
            prop_assert!(r.is_err(), "flipped bit {} of byte {} verified", bit, i);
        }
    }
}
