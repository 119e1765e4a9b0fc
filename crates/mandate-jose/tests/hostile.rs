#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! Our own hostile cases: each must be refused, with the right error.

mod common;

use std::sync::OnceLock;

use mandate_jose::{
    Alg, JoseError, Jwk, Rules, SigningKey, b64url_decode, b64url_encode, peek_header, verify,
};
use serde_json::{Map, Value, json};

fn ed() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate(Alg::EdDSA, "ed-1".into()).unwrap())
}

fn es() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate(Alg::ES256, "es-1".into()).unwrap())
}

/// RFC 7520's 2048-bit RSA public key.
fn rsa_public() -> Jwk {
    let v = common::load("cookbook/jws/4_1.rsa_v15_signature.json");
    Jwk::from_json(&v["input"]["key"]).unwrap().public()
}

fn hmac_key() -> Jwk {
    Jwk::from_json(&json!({"kty": "oct", "k": b64url_encode(&[7u8; 32])})).unwrap()
}

/// A token with exactly this header text, properly signed by `key`.
fn raw_token(key: &SigningKey, header_json: &str, payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header_json.as_bytes()),
        b64url_encode(payload)
    );
    let sig = key.sign_input(input.as_bytes()).unwrap();
    format!("{input}.{}", b64url_encode(&sig))
}

/// An HS256 token over `header_json` with `secret`.
fn hs_token(secret: &[u8], header_json: &str, payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header_json.as_bytes()),
        b64url_encode(payload)
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    format!("{input}.{}", b64url_encode(tag.as_ref()))
}

fn ok_rules() -> Rules {
    Rules::default()
}

fn header_rejected<T: std::fmt::Debug>(r: Result<T, JoseError>) {
    assert!(matches!(r, Err(JoseError::HeaderRejected(_))), "{r:?}");
}

fn malformed<T: std::fmt::Debug>(r: Result<T, JoseError>) {
    assert!(matches!(r, Err(JoseError::Malformed(_))), "{r:?}");
}

#[test]
fn a_good_token_verifies() {
    let t = ed().sign(Map::new(), b"hi").unwrap();
    let v = verify(&t, &ed().public_jwk(), Alg::EdDSA, &ok_rules()).unwrap();
    assert_eq!(v.payload, b"hi");
    assert_eq!(v.header.kid.as_deref(), Some("ed-1"));
    assert_eq!(peek_header(&t).unwrap().kid.as_deref(), Some("ed-1"));
    let t = es().sign(Map::new(), b"hi").unwrap();
    assert!(verify(&t, &es().public_jwk(), Alg::ES256, &ok_rules()).is_ok());
}

#[test]
fn alg_none_in_any_spelling() {
    let keys = [
        (ed().public_jwk(), Alg::EdDSA),
        (es().public_jwk(), Alg::ES256),
        (rsa_public(), Alg::RS256),
        (hmac_key(), Alg::HS256),
    ];
    for none in ["none", "None", "NONE", "nOnE"] {
        let h = b64url_encode(format!(r#"{{"alg":"{none}"}}"#).as_bytes());
        for token in [
            format!("{h}.{}.", b64url_encode(b"x")),
            format!("{h}.{}.AAAA", b64url_encode(b"x")),
        ] {
            for (key, pin) in &keys {
                header_rejected(verify(&token, key, *pin, &ok_rules()));
            }
            header_rejected(peek_header(&token));
        }
        header_rejected(none.parse::<Alg>());
    }
}

#[test]
fn hs256_with_a_public_key_as_the_secret() {
    // The classic confusion: sign HS256 with the server's public key bytes.
    let rsa = rsa_public();
    let ec = es().public_jwk();
    for (key, pin) in [(rsa, Alg::RS256), (ec, Alg::ES256)] {
        let public_json = serde_json::to_vec(&key.to_public_json()).unwrap();
        let mut secrets = vec![public_json];
        for m in ["n", "x"] {
            if let Some(s) = key.to_public_json()[m].as_str() {
                secrets.push(b64url_decode(s).unwrap());
                secrets.push(s.as_bytes().to_vec());
            }
        }
        for secret in secrets {
            let t = hs_token(&secret, r#"{"alg":"HS256"}"#, b"admin");
            let r = verify(&t, &key, pin, &ok_rules());
            assert!(
                matches!(r, Err(JoseError::AlgorithmMismatch { expected, ref found }) if expected == pin && found.contains("HS256")),
                "{r:?}"
            );
            // Even if a careless caller pins HS256, a public key is no HMAC key.
            let r = verify(&t, &key, Alg::HS256, &ok_rules());
            assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
        }
    }
}

#[test]
fn eddsa_and_ecdsa_do_not_mix() {
    let ed_token = ed().sign(Map::new(), b"p").unwrap();
    let es_token = es().sign(Map::new(), b"p").unwrap();
    // Token alg differs from the pin.
    let r = verify(&ed_token, &es().public_jwk(), Alg::ES256, &ok_rules());
    assert!(
        matches!(r, Err(JoseError::AlgorithmMismatch { .. })),
        "{r:?}"
    );
    let r = verify(&es_token, &ed().public_jwk(), Alg::EdDSA, &ok_rules());
    assert!(
        matches!(r, Err(JoseError::AlgorithmMismatch { .. })),
        "{r:?}"
    );
    // Pin does not fit the key.
    let r = verify(&ed_token, &ed().public_jwk(), Alg::ES256, &ok_rules());
    assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
    let r = verify(&es_token, &es().public_jwk(), Alg::EdDSA, &ok_rules());
    assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
    let r = verify(&es_token, &es().public_jwk(), Alg::ES384, &ok_rules());
    assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
    // A header claiming ES256 over an Ed25519 signature.
    let forged = raw_token(ed(), r#"{"alg":"ES256","kid":"es-1"}"#, b"p");
    let r = verify(&forged, &es().public_jwk(), Alg::ES256, &ok_rules());
    assert_eq!(r.unwrap_err(), JoseError::BadSignature);
}

#[test]
fn kid_injection() {
    let victim = ed().public_jwk();
    let attacker = SigningKey::generate(Alg::EdDSA, "ed-1".into()).unwrap();
    // The attacker names the victim's kid: only the signature decides.
    let t = attacker.sign(Map::new(), b"p").unwrap();
    assert_eq!(peek_header(&t).unwrap().kid.as_deref(), Some("ed-1"));
    assert_eq!(
        verify(&t, &victim, Alg::EdDSA, &ok_rules()).unwrap_err(),
        JoseError::BadSignature
    );
    // Hostile kid strings are returned verbatim, never interpreted.
    for kid in ["../../../dev/null", "' OR '1'='1", "\u{0}", "a\"b"] {
        // sign() sets kid itself, so build the header by hand.
        let hdr = json!({"alg": "EdDSA", "kid": kid}).to_string();
        let t = raw_token(ed(), &hdr, b"p");
        let v = verify(&t, &victim, Alg::EdDSA, &ok_rules()).unwrap();
        assert_eq!(v.header.kid.as_deref(), Some(kid));
    }
    // kid of the wrong type.
    for kid in ["1", "null", "[\"a\"]", "{}"] {
        let t = raw_token(ed(), &format!(r#"{{"alg":"EdDSA","kid":{kid}}}"#), b"p");
        malformed(verify(&t, &victim, Alg::EdDSA, &ok_rules()));
        malformed(peek_header(&t));
    }
}

#[test]
fn key_source_headers_are_refused() {
    let key = ed().public_jwk();
    let jwk = key.to_public_json().to_string();
    for extra in [
        r#""jku":"https://attacker.example/keys""#.to_owned(),
        r#""x5u":"https://attacker.example/cert""#.to_owned(),
        r#""x5c":["MIIB"]"#.to_owned(),
    ] {
        // Even correctly signed by the right key.
        let t = raw_token(ed(), &format!(r#"{{"alg":"EdDSA",{extra}}}"#), b"p");
        header_rejected(verify(&t, &key, Alg::EdDSA, &ok_rules()));
        let allow = Rules {
            allow_embedded_jwk: true,
            ..Rules::default()
        };
        header_rejected(verify(&t, &key, Alg::EdDSA, &allow));
        header_rejected(peek_header(&t));
    }
    // Embedded jwk: refused by default, even when it is the right key.
    let t = raw_token(ed(), &format!(r#"{{"alg":"EdDSA","jwk":{jwk}}}"#), b"p");
    header_rejected(verify(&t, &key, Alg::EdDSA, &ok_rules()));
    // Allowed (DPoP): the right key passes...
    let dpop = Rules {
        allow_embedded_jwk: true,
        ..Rules::default()
    };
    assert!(verify(&t, &key, Alg::EdDSA, &dpop).is_ok());
    // ...an attacker's key that is not the verification key does not...
    let attacker = SigningKey::generate(Alg::EdDSA, "x".into()).unwrap();
    let ajwk = attacker.public_jwk().to_public_json().to_string();
    let t = raw_token(
        &attacker,
        &format!(r#"{{"alg":"EdDSA","jwk":{ajwk}}}"#),
        b"p",
    );
    header_rejected(verify(&t, &key, Alg::EdDSA, &dpop));
    // ...nor an embedded private key, nor garbage.
    let ed_priv =
        Jwk::from_json(&common::load("cookbook/curve25519/jws.json")["input"]["key"]).unwrap();
    let seed = b64url_decode(
        common::load("cookbook/curve25519/jws.json")["input"]["key"]["d"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let signer = SigningKey::from_ed25519_seed("s".into(), &seed).unwrap();
    let priv_json = common::load("cookbook/curve25519/jws.json")["input"]["key"].to_string();
    let t = raw_token(
        &signer,
        &format!(r#"{{"alg":"EdDSA","jwk":{priv_json}}}"#),
        b"p",
    );
    header_rejected(verify(&t, &ed_priv.public(), Alg::EdDSA, &dpop));
    let t = raw_token(ed(), r#"{"alg":"EdDSA","jwk":{"kty":"EC"}}"#, b"p");
    header_rejected(verify(&t, &key, Alg::EdDSA, &dpop));
    let t = raw_token(ed(), r#"{"alg":"EdDSA","jwk":"nope"}"#, b"p");
    malformed(verify(&t, &key, Alg::EdDSA, &dpop));
    // sign() refuses to put them in.
    for name in ["jku", "x5u", "x5c"] {
        let mut h = Map::new();
        h.insert(name.into(), "x".into());
        header_rejected(ed().sign(h, b"p"));
    }
    let mut h = Map::new();
    h.insert("jwk".into(), attacker.public_jwk().to_public_json());
    header_rejected(ed().sign(h, b"p"));
    let mut h = Map::new();
    h.insert("jwk".into(), ed().public_jwk().to_public_json());
    let t = ed().sign(h, b"p").unwrap();
    assert!(verify(&t, &key, Alg::EdDSA, &dpop).is_ok());
}

#[test]
fn crit_handling() {
    let key = ed().public_jwk();
    let understood = Rules {
        understood_crit: vec!["exp-ext".into()],
        ..Rules::default()
    };
    let unknown = raw_token(
        ed(),
        r#"{"alg":"EdDSA","crit":["exp-ext"],"exp-ext":1}"#,
        b"p",
    );
    header_rejected(verify(&unknown, &key, Alg::EdDSA, &ok_rules()));
    assert!(verify(&unknown, &key, Alg::EdDSA, &understood).is_ok());
    // Listed but absent.
    let absent = raw_token(ed(), r#"{"alg":"EdDSA","crit":["exp-ext"]}"#, b"p");
    header_rejected(verify(&absent, &key, Alg::EdDSA, &understood));
    // Registered names may not be critical.
    let reg = raw_token(ed(), r#"{"alg":"EdDSA","crit":["alg"]}"#, b"p");
    let alg_understood = Rules {
        understood_crit: vec!["alg".into()],
        ..Rules::default()
    };
    header_rejected(verify(&reg, &key, Alg::EdDSA, &alg_understood));
    // Shape errors.
    for crit in ["[]", "\"exp-ext\"", "[1]", "[\"a\",\"a\"]"] {
        let t = raw_token(
            ed(),
            &format!(r#"{{"alg":"EdDSA","crit":{crit},"a":1}}"#),
            b"p",
        );
        malformed(verify(&t, &key, Alg::EdDSA, &understood));
    }
}

#[test]
fn unencoded_payload_refused() {
    let key = ed().public_jwk();
    let b64_understood = Rules {
        understood_crit: vec!["b64".into()],
        ..Rules::default()
    };
    for h in [
        r#"{"alg":"EdDSA","b64":false,"crit":["b64"]}"#,
        r#"{"alg":"EdDSA","b64":false}"#,
    ] {
        let t = raw_token(ed(), h, b"p");
        header_rejected(verify(&t, &key, Alg::EdDSA, &b64_understood));
        header_rejected(verify(&t, &key, Alg::EdDSA, &ok_rules()));
    }
    let t = raw_token(ed(), r#"{"alg":"EdDSA","b64":"false"}"#, b"p");
    malformed(verify(&t, &key, Alg::EdDSA, &ok_rules()));
    let mut h = Map::new();
    h.insert("b64".into(), false.into());
    header_rejected(ed().sign(h, b"p"));
}

#[test]
fn typ_must_match_when_asked() {
    let key = ed().public_jwk();
    let dpop = Rules {
        typ: Some("dpop+jwt".into()),
        ..Rules::default()
    };
    for good in [
        "dpop+jwt",
        "DPoP+JWT",
        "application/dpop+jwt",
        "Application/DPOP+JWT",
    ] {
        let t = raw_token(ed(), &format!(r#"{{"alg":"EdDSA","typ":"{good}"}}"#), b"p");
        assert!(verify(&t, &key, Alg::EdDSA, &dpop).is_ok(), "{good}");
    }
    for bad in [
        "JWT",
        "at+jwt",
        "dpop+jwt ",
        "application/jwt",
        "text/dpop+jwt",
    ] {
        let t = raw_token(ed(), &format!(r#"{{"alg":"EdDSA","typ":"{bad}"}}"#), b"p");
        header_rejected(verify(&t, &key, Alg::EdDSA, &dpop));
    }
    let t = raw_token(ed(), r#"{"alg":"EdDSA"}"#, b"p");
    header_rejected(verify(&t, &key, Alg::EdDSA, &dpop));
    let t = raw_token(ed(), r#"{"alg":"EdDSA","typ":7}"#, b"p");
    malformed(verify(&t, &key, Alg::EdDSA, &dpop));
}

#[test]
fn base64url_must_be_strict() {
    let key = ed().public_jwk();
    let good = ed().sign(Map::new(), b"payload!").unwrap();
    assert!(verify(&good, &key, Alg::EdDSA, &ok_rules()).is_ok());
    let parts: Vec<&str> = good.split('.').collect();
    let variants = [
        // padding on each segment
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        // standard-alphabet characters
        format!("{}.{}.{}", parts[0].replace('-', "+"), parts[1], parts[2]),
        format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}/", parts[0], parts[1], parts[2]),
        // other junk
        format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
        format!("{}.{}.%{}", parts[0], parts[1], parts[2]),
        format!("{}.{} .{}", parts[0], parts[1], parts[2]),
    ];
    for v in &variants {
        if v == &good {
            continue;
        }
        malformed(verify(v, &key, Alg::EdDSA, &ok_rules()));
    }
    // Non-canonical trailing bits: "AB" decodes like "AA" in lax decoders.
    malformed(b64url_decode("AB"));
    assert_eq!(b64url_decode("AA").unwrap(), vec![0]);
    malformed(b64url_decode("A"));
    malformed(b64url_decode("AA=="));
}

#[test]
fn segment_count() {
    let key = ed().public_jwk();
    let good = ed().sign(Map::new(), b"p").unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}", parts[0], parts[2]),
        format!("{good}."),
        format!("{good}.{}", parts[2]),
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[0], parts[1], parts[2], parts[2]
        ),
        parts[0].to_owned(),
        String::new(),
        "..".to_owned(),
    ] {
        malformed(verify(&bad, &key, Alg::EdDSA, &ok_rules()));
    }
}

#[test]
fn header_must_be_a_json_object() {
    let key = ed().public_jwk();
    for h in [
        "[]",
        "\"EdDSA\"",
        "null",
        "1",
        "true",
        "",
        "{",
        "{\"alg\":\"EdDSA\"} x",
        "\u{feff}{\"alg\":\"EdDSA\"}",
    ] {
        let t = raw_token(ed(), h, b"p");
        malformed(verify(&t, &key, Alg::EdDSA, &ok_rules()));
    }
    // Not UTF-8.
    let input = format!(
        "{}.{}",
        b64url_encode(b"{\"alg\":\"EdDSA\xff\"}"),
        b64url_encode(b"p")
    );
    let sig = ed().sign_input(input.as_bytes()).unwrap();
    malformed(verify(
        &format!("{input}.{}", b64url_encode(&sig)),
        &key,
        Alg::EdDSA,
        &ok_rules(),
    ));
    // alg missing or not a string.
    for h in [
        r#"{}"#,
        r#"{"alg":1}"#,
        r#"{"alg":["EdDSA"]}"#,
        r#"{"ALG":"EdDSA"}"#,
    ] {
        let t = raw_token(ed(), h, b"p");
        malformed(verify(&t, &key, Alg::EdDSA, &ok_rules()));
    }
}

#[test]
fn duplicate_header_members() {
    let key = ed().public_jwk();
    for h in [
        r#"{"alg":"EdDSA","alg":"EdDSA"}"#,
        r#"{"alg":"none","alg":"EdDSA"}"#,
        r#"{"alg":"EdDSA","alg":"none"}"#,
        r#"{"alg":"EdDSA","kid":"a","kid":"b"}"#,
        r#"{"alg":"EdDSA","\u0061lg":"EdDSA"}"#,
        r#"{"alg":"EdDSA","x":{"y":1,"y":2}}"#,
        r#"{"alg":"EdDSA","x":[{"y":1,"y":2}]}"#,
    ] {
        let t = raw_token(ed(), h, b"p");
        let r = verify(&t, &key, Alg::EdDSA, &ok_rules());
        assert!(
            matches!(r, Err(JoseError::Malformed(ref m)) if m.contains("duplicate")),
            "{h}: {r:?}"
        );
        malformed(peek_header(&t));
    }
}

#[test]
fn sizes_are_bounded() {
    let key = ed().public_jwk();
    let big = ed().sign(Map::new(), &vec![b'a'; 20_000]).unwrap();
    assert_eq!(
        verify(&big, &key, Alg::EdDSA, &ok_rules()).unwrap_err(),
        JoseError::TooLarge
    );
    let roomy = Rules {
        max_len: 64 * 1024,
        ..Rules::default()
    };
    assert!(verify(&big, &key, Alg::EdDSA, &roomy).is_ok());
    let small = ed().sign(Map::new(), b"p").unwrap();
    let tight = Rules {
        max_len: small.len() - 1,
        ..Rules::default()
    };
    assert_eq!(
        verify(&small, &key, Alg::EdDSA, &tight).unwrap_err(),
        JoseError::TooLarge
    );
    // A huge header is refused before it is decoded, even by peek.
    let mut h = Map::new();
    h.insert("pad".into(), "x".repeat(10_000).into());
    let t = ed().sign(h, b"p").unwrap();
    assert_eq!(peek_header(&t).unwrap_err(), JoseError::TooLarge);
    assert_eq!(
        verify(&t, &key, Alg::EdDSA, &roomy).unwrap_err(),
        JoseError::TooLarge
    );
    let huge = "a".repeat(2 * 1024 * 1024);
    assert_eq!(peek_header(&huge).unwrap_err(), JoseError::TooLarge);
}

#[test]
fn empty_or_wrong_length_signature() {
    let key = es().public_jwk();
    let good = es().sign(Map::new(), b"p").unwrap();
    let (input, sig) = good.rsplit_once('.').unwrap();
    malformed(verify(&format!("{input}."), &key, Alg::ES256, &ok_rules()));
    let sig = b64url_decode(sig).unwrap();
    for bad in [
        &sig[..63],
        &[sig.as_slice(), &[0]].concat()[..],
        &[0u8; 64][..],
    ] {
        let t = format!("{input}.{}", b64url_encode(bad));
        assert_eq!(
            verify(&t, &key, Alg::ES256, &ok_rules()).unwrap_err(),
            JoseError::BadSignature
        );
    }
}

#[test]
fn surrounding_whitespace() {
    let key = ed().public_jwk();
    let good = ed().sign(Map::new(), b"p").unwrap();
    for bad in [
        format!("{good} "),
        format!("{good}\n"),
        format!("{good}\r\n"),
        format!(" {good}"),
        format!("\t{good}"),
        format!("{good}\u{0}"),
    ] {
        malformed(verify(&bad, &key, Alg::EdDSA, &ok_rules()));
    }
}

#[test]
fn unsupported_and_unknown_algs() {
    let key = rsa_public();
    for alg in [
        "RS384", "PS512", "ES512", "HS512", "rs256", "Rs256", "EdDSA ", "ED25519",
    ] {
        let h = format!(r#"{{"alg":"{alg}"}}"#);
        let t = hs_token(b"whatever-whatever-whatever-whatever", &h, b"p");
        let r = verify(&t, &key, Alg::RS256, &ok_rules());
        assert!(
            matches!(r, Err(JoseError::AlgorithmMismatch { .. })),
            "{alg}: {r:?}"
        );
        assert!(
            matches!(peek_header(&t), Err(JoseError::Unsupported(_))),
            "{alg}"
        );
    }
}

#[test]
fn key_refusals() {
    // Off-curve P-256 point (y changed).
    let es_pub = es().public_jwk().to_public_json();
    let mut off = es_pub.clone();
    let mut y = b64url_decode(off["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    off["y"] = b64url_encode(&y).into();
    assert!(matches!(
        Jwk::from_json(&off),
        Err(JoseError::KeyRejected(_))
    ));
    // Wrong lengths, leading zero stripped.
    let mut short = es_pub.clone();
    short["x"] = b64url_encode(&[1u8; 31]).into();
    assert!(matches!(
        Jwk::from_json(&short),
        Err(JoseError::KeyRejected(_))
    ));
    // crv/alg mismatch.
    let mut mism = es_pub.clone();
    mism["alg"] = "ES384".into();
    assert!(matches!(
        Jwk::from_json(&mism),
        Err(JoseError::KeyRejected(_))
    ));
    let mut mism = es_pub.clone();
    mism["alg"] = "EdDSA".into();
    assert!(matches!(
        Jwk::from_json(&mism),
        Err(JoseError::KeyRejected(_))
    ));
    let mut none = es_pub.clone();
    none["alg"] = "none".into();
    assert!(Jwk::from_json(&none).is_err());
    // Ed25519: small-order point, wrong length, X25519.
    let mut id = [0u8; 32];
    id[0] = 1;
    let okp = |x: &[u8], crv: &str| json!({"kty":"OKP","crv":crv,"x":b64url_encode(x)});
    assert!(matches!(
        Jwk::from_json(&okp(&id, "Ed25519")),
        Err(JoseError::KeyRejected(_))
    ));
    assert!(matches!(
        Jwk::from_json(&okp(&[9u8; 31], "Ed25519")),
        Err(JoseError::KeyRejected(_))
    ));
    assert!(matches!(
        Jwk::from_json(&okp(&[9u8; 32], "X25519")),
        Err(JoseError::Unsupported(_))
    ));
    // A private part that does not match the public part.
    let mut rfc = common::load("cookbook/curve25519/jws.json")["input"]["key"].clone();
    rfc["d"] = b64url_encode(&[3u8; 32]).into();
    assert!(matches!(
        Jwk::from_json(&rfc),
        Err(JoseError::KeyRejected(_))
    ));
    // Private where public is expected.
    let rfc = common::load("cookbook/curve25519/jws.json")["input"]["key"].clone();
    assert!(Jwk::from_json(&rfc).is_ok());
    assert!(matches!(
        Jwk::from_public_json(&rfc),
        Err(JoseError::KeyRejected(_))
    ));
    assert!(Jwk::from_public_json(&Jwk::from_json(&rfc).unwrap().to_public_json()).is_ok());
    // Short RSA.
    let set = &common::load("wycheproof/json_web_key_test.json")["testGroups"];
    let small = set
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["comment"] == "keysize_too_small")
        .unwrap();
    let r = Jwk::from_json(&small["public"]["keys"][0]);
    assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
    // RSA n with a leading zero octet, even e, multi-prime.
    let rsa = rsa_public().to_public_json();
    let mut lz = rsa.clone();
    let n = b64url_decode(rsa["n"].as_str().unwrap()).unwrap();
    lz["n"] = b64url_encode(&[&[0u8][..], &n].concat()).into();
    assert!(matches!(
        Jwk::from_json(&lz),
        Err(JoseError::KeyRejected(_))
    ));
    let mut even_e = rsa.clone();
    even_e["e"] = "AQAA".into();
    assert!(matches!(
        Jwk::from_json(&even_e),
        Err(JoseError::KeyRejected(_))
    ));
    let mut oth = rsa.clone();
    oth["oth"] = json!([]);
    assert!(matches!(
        Jwk::from_json(&oth),
        Err(JoseError::Unsupported(_))
    ));
    // Foreign material, wrong types, not an object.
    let mut foreign = es_pub.clone();
    foreign["k"] = "AAAA".into();
    assert!(matches!(
        Jwk::from_json(&foreign),
        Err(JoseError::KeyRejected(_))
    ));
    let mut typed = es_pub.clone();
    typed["kid"] = 5.into();
    assert!(matches!(
        Jwk::from_json(&typed),
        Err(JoseError::Malformed(_))
    ));
    assert!(matches!(
        Jwk::from_json(&json!([])),
        Err(JoseError::Malformed(_))
    ));
    assert!(matches!(
        Jwk::from_json(&json!({"kty":"foo"})),
        Err(JoseError::Unsupported(_))
    ));
    // Padding in a key member.
    let mut padded = es_pub.clone();
    padded["x"] = format!("{}=", padded["x"].as_str().unwrap()).into();
    assert!(matches!(
        Jwk::from_json(&padded),
        Err(JoseError::Malformed(_))
    ));
    // Duplicate key_ops; use/key_ops contradiction.
    let mut ops = es_pub.clone();
    ops["key_ops"] = json!(["verify", "verify"]);
    assert!(Jwk::from_json(&ops).is_err());
    let mut ops = es_pub;
    ops["use"] = "enc".into();
    ops["key_ops"] = json!(["verify"]);
    assert!(Jwk::from_json(&ops).is_err());
    // Short HMAC key.
    let r = Jwk::from_json(&json!({"kty":"oct","k":b64url_encode(&[1u8; 31])}));
    assert!(matches!(r, Err(JoseError::KeyRejected(_))));
}

#[test]
fn key_use_restrictions_apply_at_verify() {
    let t = es().sign(Map::new(), b"p").unwrap();
    let mut enc = es().public_jwk().to_public_json();
    enc["use"] = "enc".into();
    let r = verify(&t, &Jwk::from_json(&enc).unwrap(), Alg::ES256, &ok_rules());
    assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
    let mut ops = es().public_jwk().to_public_json();
    ops.as_object_mut().unwrap().remove("use");
    ops["key_ops"] = json!(["encrypt"]);
    let r = verify(&t, &Jwk::from_json(&ops).unwrap(), Alg::ES256, &ok_rules());
    assert!(matches!(r, Err(JoseError::KeyRejected(_))), "{r:?}");
    // An oct key stripped by public() cannot verify.
    let k = hmac_key();
    let ht = hs_token(&[7u8; 32], r#"{"alg":"HS256"}"#, b"p");
    assert!(verify(&ht, &k, Alg::HS256, &ok_rules()).is_ok());
    assert!(matches!(
        verify(&ht, &k.public(), Alg::HS256, &ok_rules()),
        Err(JoseError::KeyRejected(_))
    ));
}

#[test]
fn no_key_material_leaks() {
    let rfc = common::load("cookbook/curve25519/jws.json")["input"]["key"].clone();
    let d = rfc["d"].as_str().unwrap().to_owned();
    let jwk = Jwk::from_json(&rfc).unwrap();
    assert!(!format!("{jwk:?}").contains(&d));
    assert!(!jwk.to_public_json().to_string().contains(&d));
    assert!(jwk.to_public_json().get("d").is_none());
    assert!(!jwk.public().is_private());

    let rsa_priv = common::load("cookbook/jws/4_1.rsa_v15_signature.json")["input"]["key"].clone();
    let rsa = Jwk::from_json(&rsa_priv).unwrap();
    assert!(rsa.is_private());
    let out = rsa.to_public_json();
    for m in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(out.get(m).is_none(), "{m}");
        let secret = rsa_priv
            .get(m)
            .and_then(Value::as_str)
            .unwrap_or("no-such-thing");
        assert!(!format!("{rsa:?}").contains(secret), "{m}");
    }
    let k = hmac_key();
    assert!(k.to_public_json().get("k").is_none());
    assert!(!format!("{k:?}").contains(&b64url_encode(&[7u8; 32])));

    let sk = SigningKey::generate(Alg::ES256, "dbg".into()).unwrap();
    let dbg = format!("{sk:?}");
    assert!(dbg.contains("dbg") && dbg.contains("ES256"));
    assert!(!dbg.contains(&format!("{:?}", sk.pkcs8())));
    assert!(!dbg.contains(&b64url_encode(sk.pkcs8())));
    let seed = b64url_decode(&d).unwrap();
    let sk = SigningKey::from_ed25519_seed("s".into(), &seed).unwrap();
    let dbg = format!("{sk:?}");
    assert!(!dbg.contains(&d) && !dbg.contains(&format!("{seed:?}")));
    // Errors do not echo key members either.
    let mut bad = rfc.clone();
    bad["d"] = format!("{d}!").into();
    let e = Jwk::from_json(&bad).unwrap_err().to_string();
    assert!(!e.contains(&d), "{e}");
}

#[test]
fn pkcs8_round_trip_and_thumbprints() {
    for alg in [Alg::EdDSA, Alg::ES256] {
        let k = SigningKey::generate(alg, "k1".into()).unwrap();
        let again = SigningKey::from_pkcs8(alg, "k1".into(), k.pkcs8()).unwrap();
        assert_eq!(k.public_jwk(), again.public_jwk());
        assert_eq!(again.alg(), alg);
        assert_eq!(again.kid(), "k1");
        let t = again.sign(Map::new(), b"x").unwrap();
        assert!(verify(&t, &k.public_jwk(), alg, &ok_rules()).is_ok());
        // The public JWK round-trips and keeps its thumbprint.
        let j = k.public_jwk();
        assert_eq!(j.kid(), Some("k1"));
        assert_eq!(j.alg(), Some(alg));
        let back = Jwk::from_public_json(&j.to_public_json()).unwrap();
        assert_eq!(back.thumbprint(), j.thumbprint());
        // Wrong algorithm for the document.
        let other = if alg == Alg::EdDSA {
            Alg::ES256
        } else {
            Alg::EdDSA
        };
        assert!(SigningKey::from_pkcs8(other, "k1".into(), k.pkcs8()).is_err());
    }
    for alg in [Alg::RS256, Alg::PS256, Alg::HS256, Alg::ES384] {
        assert!(matches!(
            SigningKey::generate(alg, "k".into()),
            Err(JoseError::Unsupported(_))
        ));
    }
    assert!(SigningKey::generate(Alg::EdDSA, String::new()).is_err());
    // Thumbprint ignores optional members.
    let mut j = es().public_jwk().to_public_json();
    let t1 = Jwk::from_json(&j).unwrap().thumbprint();
    j["kid"] = "another".into();
    j.as_object_mut().unwrap().remove("alg");
    assert_eq!(Jwk::from_json(&j).unwrap().thumbprint(), t1);
    // Alg names round-trip.
    for a in Alg::ALL {
        assert_eq!(a.as_str().parse::<Alg>().unwrap(), a);
        assert_eq!(a.to_string(), a.as_str());
    }
}
