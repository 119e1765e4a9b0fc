#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! RFC 8037 (Ed25519) and RFC 7520 ("JOSE Cookbook") JWS examples.

mod common;

use mandate_jose::{Alg, JoseError, Jwk, Rules, SigningKey, b64url_decode, verify};

/// RFC 8037 §A.3: the RFC 7638 thumbprint of the §A.2 public key.
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

#[test]
fn rfc8037_ed25519_verify_sign_and_thumbprint() {
    let v = common::load("cookbook/curve25519/jws.json");
    let key = Jwk::from_json(&v["input"]["key"]).unwrap();
    assert!(key.is_private());
    let public = key.public();
    assert!(!public.is_private());

    // Verify the published token with the public key.
    let compact = v["output"]["compact"].as_str().unwrap();
    let got = verify(compact, &public, Alg::EdDSA, &Rules::default()).unwrap();
    assert_eq!(
        got.payload,
        v["input"]["payload"].as_str().unwrap().as_bytes()
    );
    assert_eq!(got.header.alg, Alg::EdDSA);

    // Reproduce the signature byte for byte from the private key.
    let seed = b64url_decode(v["input"]["key"]["d"].as_str().unwrap()).unwrap();
    let signer = SigningKey::from_ed25519_seed("rfc8037".into(), &seed).unwrap();
    let sig = signer
        .sign_input(v["signing"]["sig-input"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(
        sig,
        b64url_decode(v["signing"]["sig"].as_str().unwrap()).unwrap()
    );
    assert_eq!(
        signer.public_jwk().to_public_json()["x"],
        v["input"]["key"]["x"]
    );

    // The file gives no thumbprint; RFC 8037 §A.3 does.
    assert!(v.get("thumbprint").is_none());
    assert_eq!(key.thumbprint(), RFC8037_THUMBPRINT);
    assert_eq!(public.thumbprint(), RFC8037_THUMBPRINT);
    assert_eq!(signer.public_jwk().thumbprint(), RFC8037_THUMBPRINT);

    // A token made by sign() (which adds kid) verifies too.
    let token = signer.sign(serde_json::Map::new(), b"hello").unwrap();
    assert!(verify(&token, &public, Alg::EdDSA, &Rules::default()).is_ok());
    // ...but not under ES256, nor with the key's JWK read as anything else.
    assert!(verify(compact, &public, Alg::ES256, &Rules::default()).is_err());
}

/// RFC 7520 §4.1 (RS256), §4.4 (HS256) verify; §4.3 (ES512 on P-521) is not
/// supported and must be refused as such.
#[test]
fn rfc7520_cookbook_jws() {
    let mut passed = 0;
    let failed = 0;
    let mut not_applicable = Vec::new();

    for (file, pin) in [
        ("cookbook/jws/4_1.rsa_v15_signature.json", Alg::RS256),
        (
            "cookbook/jws/4_4.hmac-sha2_integrity_protection.json",
            Alg::HS256,
        ),
    ] {
        let v = common::load(file);
        let key = Jwk::from_json(&v["input"]["key"]).unwrap();
        let verifying = if pin == Alg::HS256 {
            key.clone()
        } else {
            key.public()
        };
        let compact = v["output"]["compact"].as_str().unwrap();
        let got = verify(compact, &verifying, pin, &Rules::default()).unwrap();
        assert_eq!(
            got.payload,
            v["input"]["payload"].as_str().unwrap().as_bytes()
        );
        assert_eq!(got.header.kid.as_deref(), key.kid());
        for other in Alg::ALL.into_iter().filter(|a| *a != pin) {
            assert!(verify(compact, &verifying, other, &Rules::default()).is_err());
        }
        passed += 1;
    }

    // RS256 signing is deterministic: the RFC's signature must match a
    // re-computation only if we could sign RSA, which we do not; the private
    // key is still checked for consistency when parsed (above).

    let v = common::load("cookbook/jws/4_3.ecdsa_signature.json");
    assert_eq!(v["input"]["alg"], "ES512");
    let refused = Jwk::from_json(&v["input"]["key"]);
    assert!(
        matches!(refused, Err(JoseError::Unsupported(_))),
        "{refused:?}"
    );
    not_applicable.push((
        "4_3.ecdsa_signature.json",
        "ES512 over P-521: ring has no P-521, and the API's Alg set has no ES512; the key is refused as Unsupported",
    ));

    println!("cookbook: {passed} passed, {failed} failed");
    println!("cookbook: {} not applicable:", not_applicable.len());
    for (f, why) in &not_applicable {
        println!("  {f}: {why}");
    }
}
