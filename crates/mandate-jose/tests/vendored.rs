#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! The vendored vectors in `tests/vectors/` are byte-for-byte copies of the
//! shared conformance files, licenses included.

mod common;

const VENDORED: [&str; 9] = [
    "wycheproof/LICENSE",
    "wycheproof/ed25519_test.json",
    "wycheproof/json_web_signature_test.json",
    "wycheproof/json_web_key_test.json",
    "cookbook/LICENSE",
    "cookbook/curve25519/jws.json",
    "cookbook/jws/4_1.rsa_v15_signature.json",
    "cookbook/jws/4_3.ecdsa_signature.json",
    "cookbook/jws/4_4.hmac-sha2_integrity_protection.json",
];

#[test]
fn vendored_copies_exist_and_match_the_source() {
    let mut compared = 0;
    for rel in VENDORED {
        let ours = std::fs::read(common::vendored_dir().join(rel))
            .unwrap_or_else(|e| panic!("vendored {rel} missing: {e}"));
        assert!(!ours.is_empty(), "{rel}");
        let source = common::shared_dir().join(rel);
        if source.is_file() {
            let theirs = std::fs::read(&source).unwrap();
            assert!(ours == theirs, "{rel} differs from {}", source.display());
            compared += 1;
        }
    }
    println!(
        "vendored vectors: {} files, {compared} compared with the shared source",
        VENDORED.len()
    );
}
