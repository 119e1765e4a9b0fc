#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
//! SPIFFE IDs, bundles (go-spiffe's fixtures) and JWT-SVID client assertions.

mod common;

use mandate_jose::{Alg, SigningKey};
use mandate_token::TokenError;
use mandate_token::spiffe::{JwtBundle, SpiffeId, TrustBundles, TrustDomain, verify_jwt_svid};
use serde_json::{Value, json};

const NOW: i64 = 1_750_000_000;
const AUD: &str = "https://mandate.example/oauth2/token";
const SUB: &str = "spiffe://example.org/agents/reporter";

const VENDORED: [&str; 12] = [
    "LICENSE",
    "JWT-SVID.schema",
    "go-spiffe/LICENSE",
    "go-spiffe/bundle/jwtbundle/testdata/jwks_missing_kid.json",
    "go-spiffe/bundle/jwtbundle/testdata/jwks_valid_1.json",
    "go-spiffe/bundle/jwtbundle/testdata/jwks_valid_2.json",
    "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_missing_kid.json",
    "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_multiple_x509.json",
    "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_no_keys.json",
    "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_valid_1.json",
    "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_valid_2.json",
    "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_valid_with_wit.json",
];

#[test]
fn vendored_copies_exist_and_match_the_source() {
    let mut compared = 0;
    for rel in VENDORED {
        let ours = std::fs::read(common::vendored_dir().join("spiffe").join(rel))
            .unwrap_or_else(|e| panic!("vendored {rel} missing: {e}"));
        assert!(!ours.is_empty(), "{rel}");
        let source = common::shared_dir().join("spiffe").join(rel);
        if source.is_file() {
            let theirs = std::fs::read(&source).unwrap();
            assert!(ours == theirs, "{rel} differs from {}", source.display());
            compared += 1;
        }
    }
    println!(
        "vendored spiffe vectors: {} files, {compared} compared with the shared source",
        VENDORED.len()
    );
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

// ---------------------------------------------------------------------------
// go-spiffe's bundle fixtures, judged as go-spiffe's own tests judge them
// ---------------------------------------------------------------------------

enum Expect {
    /// Loads with this many JWT authorities, X.509 authorities, sequence, refresh hint.
    Ok {
        jwt: usize,
        x509: usize,
        sequence: Option<u64>,
        refresh_hint: Option<u64>,
    },
    /// Refused; the message names this.
    Err(&'static str),
}

#[test]
fn go_spiffe_bundle_fixtures() {
    use Expect::{Err, Ok};
    let jwks = "go-spiffe/bundle/jwtbundle/testdata/";
    let sb = "go-spiffe/bundle/spiffebundle/testdata/";
    let ok = |jwt, x509, sequence, refresh_hint| Ok {
        jwt,
        x509,
        sequence,
        refresh_hint,
    };
    // (file, read as a SPIFFE bundle (true) or a plain JWKS, expectation)
    let cases: Vec<(String, bool, Expect)> = vec![
        (
            format!("{jwks}jwks_valid_1.json"),
            false,
            ok(1, 0, None, None),
        ),
        (
            format!("{jwks}jwks_valid_2.json"),
            false,
            ok(2, 0, None, None),
        ),
        // go-spiffe: "error adding authority 1 of JWKS: keyID cannot be empty"
        (
            format!("{jwks}jwks_missing_kid.json"),
            false,
            Err("key 1: a JWT authority needs a non-empty `kid`"),
        ),
        (
            format!("{sb}spiffebundle_valid_1.json"),
            true,
            ok(1, 1, None, None),
        ),
        (
            format!("{sb}spiffebundle_valid_2.json"),
            true,
            ok(6, 1, Some(1), Some(60)),
        ),
        // `wit-svid` is a use this verifier does not know: skipped (bundle spec §4.2.2).
        (
            format!("{sb}spiffebundle_valid_with_wit.json"),
            true,
            ok(2, 1, Some(1), Some(60)),
        ),
        // go-spiffe: "error adding authority 1 of JWKS: keyID cannot be empty"
        (
            format!("{sb}spiffebundle_missing_kid.json"),
            true,
            Err("key 1: a JWT authority needs a non-empty `kid`"),
        ),
        // go-spiffe: "no authorities found" (`keys` MUST be present, §4.1.3)
        (
            format!("{sb}spiffebundle_no_keys.json"),
            true,
            Err("no `keys`"),
        ),
        // go-spiffe: "expected a single certificate in x509-svid entry 0; got 2"
        (
            format!("{sb}spiffebundle_multiple_x509.json"),
            true,
            Err("key 0: an X.509 authority carries exactly one certificate, found 2"),
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (rel, spiffe, expect) in &cases {
        let bytes = common::spiffe(rel);
        let domain = td("domain.test");
        let got = if *spiffe {
            JwtBundle::from_spiffe_bundle_json(domain, &bytes)
        } else {
            JwtBundle::from_jwks_json(domain, &bytes)
        };
        let good = match (expect, &got) {
            (
                Ok {
                    jwt,
                    x509,
                    sequence,
                    refresh_hint,
                },
                std::result::Result::Ok(b),
            ) => {
                b.len() == *jwt
                    && b.x509_authorities().len() == *x509
                    && b.sequence() == *sequence
                    && b.refresh_hint() == *refresh_hint
                    && b.trust_domain().as_str() == "domain.test"
                    && b.keys().all(|(kid, jwk)| jwk.kid() == Some(kid))
            }
            (Err(needle), std::result::Result::Err(e)) => e.to_string().contains(needle),
            _ => false,
        };
        if good {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("FAILED {rel}: {got:?}");
        }
    }
    println!("spiffe bundles: {passed} passed, {failed} failed");
    assert_eq!(failed, 0);
    assert_eq!(passed, cases.len());

    // The fixtures' keys are addressable by kid.
    let b = JwtBundle::from_spiffe_bundle_json(
        td("domain.test"),
        &common::spiffe(&format!("{sb}spiffebundle_valid_1.json")),
    )
    .unwrap();
    assert!(b.key("C6vs25welZOx6WksNYfbMfiw9l96pMnD").is_some());
    assert!(b.key("nope").is_none());
}

fn x5c_from_fixture() -> Value {
    let doc: Value = serde_json::from_slice(&common::spiffe(
        "go-spiffe/bundle/spiffebundle/testdata/spiffebundle_valid_1.json",
    ))
    .unwrap();
    doc["keys"][0]["x5c"].clone()
}

#[test]
fn hostile_bundles_are_refused() {
    let key = SigningKey::generate(Alg::EdDSA, "k1".into()).unwrap();
    let jwt_key = common::public_jwk(&key, Some("jwt-svid"));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut k = jwt_key.clone();
        f(&mut k);
        json!({ "keys": [k] }).to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        ("not an object", "[]".into()),
        ("not JSON", "{".into()),
        ("duplicate member", r#"{"keys": [], "keys": []}"#.into()),
        ("keys not an array", r#"{"keys": {}}"#.into()),
        ("entry not an object", r#"{"keys": [1]}"#.into()),
        ("missing use", with(&|k| {
            k.as_object_mut().unwrap().remove("use");
        })),
        ("use not a string", with(&|k| k["use"] = json!(1))),
        ("empty kid", with(&|k| k["kid"] = json!(""))),
        ("kid not a string", with(&|k| k["kid"] = json!(7))),
        ("missing kty", with(&|k| {
            k.as_object_mut().unwrap().remove("kty");
        })),
        ("symmetric key", json!({"keys": [{"use": "jwt-svid", "kid": "s", "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}).to_string()),
        ("private key", {
            let mut k = jwt_key.clone();
            k["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
            json!({ "keys": [k] }).to_string()
        }),
        ("bad point", with(&|k| k["x"] = json!("AAAA"))),
        ("alg does not fit", with(&|k| k["alg"] = json!("ES256"))),
        ("duplicate kid", json!({"keys": [jwt_key.clone(), jwt_key.clone()]}).to_string()),
        ("negative sequence", json!({"keys": [], "spiffe_sequence": -1}).to_string()),
        ("string sequence", json!({"keys": [], "spiffe_sequence": "1"}).to_string()),
        ("fractional refresh hint", json!({"keys": [], "spiffe_refresh_hint": 1.5}).to_string()),
        ("x509 without x5c", json!({"keys": [{"use": "x509-svid", "kty": "EC"}]}).to_string()),
        ("x509 with empty x5c", json!({"keys": [{"use": "x509-svid", "x5c": []}]}).to_string()),
        ("x509 x5c not base64", json!({"keys": [{"use": "x509-svid", "x5c": ["%%%"]}]}).to_string()),
        ("x509 x5c not DER", json!({"keys": [{"use": "x509-svid", "x5c": ["aGVsbG8="]}]}).to_string()),
        ("x509 x5c base64url", json!({"keys": [{"use": "x509-svid", "x5c": ["MAA"]}]}).to_string()),
        ("too many keys", json!({"keys": vec![json!({"use": "other"}); 257]}).to_string()),
    ];
    for (name, doc) in &cases {
        let got = JwtBundle::from_spiffe_bundle_json(td("example.org"), doc.as_bytes());
        assert!(got.is_err(), "{name}: {got:?}");
    }
    let oversized = format!(r#"{{"keys": [], "pad": "{}"}}"#, "a".repeat(1024 * 1024));
    assert!(JwtBundle::from_spiffe_bundle_json(td("example.org"), oversized.as_bytes()).is_err());

    // Unknown key types and uses are skipped, not fatal (bundle spec §4.2).
    let lenient = json!({"keys": [
        {"use": "jwt-svid", "kid": "future", "kty": "PQC", "pub": "…"},
        {"use": "jwt-svid", "kid": "p521", "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"use": "wit-svid", "kid": "w", "kty": "EC"},
        {"use": "something-else"},
        jwt_key,
        {"use": "x509-svid", "x5c": x5c_from_fixture()},
    ]});
    let b = JwtBundle::from_spiffe_bundle_json(td("example.org"), lenient.to_string().as_bytes())
        .unwrap();
    assert_eq!(b.len(), 1);
    assert!(b.key("k1").is_some());
    assert_eq!(b.x509_authorities().len(), 1);

    // A plain JWKS: `use: sig` and no `use` are JWT authorities, `enc` is skipped.
    let mut sig = common::public_jwk(&key, Some("sig"));
    sig["kid"] = json!("k-sig");
    let mut bare = common::public_jwk(&key, None);
    bare["kid"] = json!("k-bare");
    let mut enc = common::public_jwk(&key, Some("enc"));
    enc["kid"] = json!("k-enc");
    let doc = json!({"keys": [sig, bare, enc]}).to_string();
    let b = JwtBundle::from_jwks_json(td("example.org"), doc.as_bytes()).unwrap();
    assert_eq!(
        b.keys().map(|(k, _)| k).collect::<Vec<_>>(),
        ["k-sig", "k-bare"]
    );
}

// ---------------------------------------------------------------------------
// SPIFFE IDs
// ---------------------------------------------------------------------------

#[test]
fn spiffe_ids_parse_strictly() {
    for good in [
        "spiffe://example.org",
        "spiffe://example.org/a",
        "spiffe://example.org/ns/prod/sa/agent-1",
        "spiffe://a-b_c.9/A.b-C_d/..a/a..",
        "spiffe://td/x",
    ] {
        let id = SpiffeId::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(id.to_string(), good);
        assert_eq!(good.parse::<SpiffeId>().unwrap(), id);
    }
    let id = SpiffeId::parse("spiffe://example.org/ns/prod").unwrap();
    assert_eq!(id.trust_domain().as_str(), "example.org");
    assert_eq!(id.path(), "/ns/prod");
    assert!(!id.is_trust_domain_id());
    assert!(
        SpiffeId::parse("spiffe://example.org")
            .unwrap()
            .is_trust_domain_id()
    );

    let long_path = format!("spiffe://example.org/{}", "a".repeat(2048));
    let max_path = format!("spiffe://example.org/{}", "a".repeat(2048 - 21));
    assert_eq!(max_path.len(), 2048);
    assert!(SpiffeId::parse(&max_path).is_ok());
    let long_domain = format!("spiffe://{}/a", "a".repeat(256));
    let hostile: Vec<String> = [
        "",
        "spiffe://",
        "spiffe:///path",
        "spiffe:/example.org/a",
        "spiffe:example.org",
        "SPIFFE://example.org/a",
        "Spiffe://example.org/a",
        "https://example.org/a",
        "example.org/a",
        "spiffe://Example.org/a",
        "spiffe://example.org:443/a",
        "spiffe://user@example.org/a",
        "spiffe://user:pw@example.org/a",
        "spiffe://example.org/a?x=1",
        "spiffe://example.org?x=1",
        "spiffe://example.org/a#f",
        "spiffe://example.org#f",
        "spiffe://example.org/",
        "spiffe://example.org/a/",
        "spiffe://example.org//a",
        "spiffe://example.org/./a",
        "spiffe://example.org/a/..",
        "spiffe://example.org/a/../b",
        "spiffe://example.org/a%2Fb",
        "spiffe://example.org/a b",
        "spiffe://example.org/a\u{0}",
        "spiffe://example.org/ä",
        "spiffe://exämple.org/a",
        "spiffe://[::1]/a",
        "spiffe://example.org/a\\b",
        "spiffe://example.org/a*",
        " spiffe://example.org/a",
        "spiffe://example.org/a ",
        "spiffe://example.org/a\n",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([long_path, long_domain])
    .collect();
    for bad in &hostile {
        assert!(SpiffeId::parse(bad).is_err(), "accepted {bad:?}");
    }
    assert!(TrustDomain::parse("example.org").is_ok());
    for bad in [
        "",
        "spiffe://example.org",
        "Example.org",
        "a:1",
        "a/b",
        "a@b",
    ] {
        assert!(TrustDomain::parse(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------
// JWT-SVIDs
// ---------------------------------------------------------------------------

struct Fixture {
    ed: SigningKey,
    es: SigningKey,
    bundles: TrustBundles,
}

fn fixture() -> Fixture {
    let ed = SigningKey::generate(Alg::EdDSA, "ed-1".into()).unwrap();
    let es = SigningKey::generate(Alg::ES256, "es-1".into()).unwrap();
    // An x509-svid entry whose key material is the Ed25519 key, under its own kid.
    let mut x509 = common::public_jwk(&ed, Some("x509-svid"));
    x509["kid"] = json!("x509-kid");
    x509["x5c"] = x5c_from_fixture();
    let doc = json!({
        "spiffe_sequence": 7,
        "spiffe_refresh_hint": 300,
        "keys": [
            common::public_jwk(&ed, Some("jwt-svid")),
            common::public_jwk(&es, Some("jwt-svid")),
            x509,
        ]
    });
    let mut bundles = TrustBundles::new();
    let bundle =
        JwtBundle::from_spiffe_bundle_json(td("example.org"), doc.to_string().as_bytes()).unwrap();
    assert_eq!(bundle.len(), 2);
    bundles.insert(bundle);
    // A second trust domain, with an unrelated key.
    let other = SigningKey::generate(Alg::EdDSA, "other-1".into()).unwrap();
    let doc = json!({"keys": [common::public_jwk(&other, Some("jwt-svid"))]});
    bundles.insert(
        JwtBundle::from_spiffe_bundle_json(td("other.org"), doc.to_string().as_bytes()).unwrap(),
    );
    Fixture { ed, es, bundles }
}

fn claims() -> Value {
    json!({"sub": SUB, "aud": [AUD], "exp": NOW + 300, "iat": NOW})
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut c = claims();
    f(&mut c);
    c
}

fn check(fx: &Fixture, token: &str) -> Result<SpiffeId, TokenError> {
    verify_jwt_svid(token, &fx.bundles, &[AUD], NOW)
}

#[test]
fn minted_jwt_svids_verify() {
    let fx = fixture();
    for key in [&fx.ed, &fx.es] {
        for header in [json!({}), json!({"typ": "JWT"}), json!({"typ": "JOSE"})] {
            let token = common::sign(key, header, &claims());
            let id = check(&fx, &token).unwrap_or_else(|e| panic!("{}: {e}", key.kid()));
            assert_eq!(id.to_string(), SUB);
            assert_eq!(id.trust_domain().as_str(), "example.org");
        }
    }
    // `aud` as a string; one of several accepted audiences; expiry within the skew.
    let token = common::sign(&fx.ed, json!({}), &with(|c| c["aud"] = json!(AUD)));
    assert!(check(&fx, &token).is_ok());
    let token = common::sign(&fx.ed, json!({}), &with(|c| c["aud"] = json!("b")));
    assert!(verify_jwt_svid(&token, &fx.bundles, &["a", "b"], NOW).is_ok());
    let token = common::sign(
        &fx.es,
        json!({}),
        &with(|c| {
            c["exp"] = json!(NOW - 59);
            c["iat"] = json!(NOW - 359);
        }),
    );
    assert!(check(&fx, &token).is_ok());
}

#[test]
fn hostile_jwt_svids_are_refused() {
    let fx = fixture();
    let intruder = SigningKey::generate(Alg::EdDSA, "ed-1".into()).unwrap();
    let ed_header = |extra: Value| {
        let mut h = json!({"alg": "EdDSA", "kid": "ed-1"});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    let good = common::sign(&fx.ed, json!({}), &claims());
    let mut cases: Vec<(&str, String)> = vec![
        // Trust domains.
        (
            "trust domain without a bundle",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["sub"] = json!("spiffe://unknown.org/a")),
            ),
        ),
        (
            "key of another trust domain",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["sub"] = json!("spiffe://other.org/a")),
            ),
        ),
        (
            "intruder key under a known kid",
            common::sign(&intruder, json!({}), &claims()),
        ),
        // kid.
        (
            "kid missing",
            common::forge(&fx.ed, &json!({"alg": "EdDSA"}), &claims()),
        ),
        (
            "kid unknown",
            common::forge(&fx.ed, &json!({"alg": "EdDSA", "kid": "nope"}), &claims()),
        ),
        (
            "kid not a string",
            common::forge(&fx.ed, &json!({"alg": "EdDSA", "kid": 1}), &claims()),
        ),
        (
            "x509-svid key used for a JWT",
            common::forge(
                &fx.ed,
                &json!({"alg": "EdDSA", "kid": "x509-kid"}),
                &claims(),
            ),
        ),
        // alg.
        (
            "alg none",
            format!(
                "{}.",
                &common::forge(&fx.ed, &json!({"alg": "none", "kid": "ed-1"}), &claims())
                    .rsplit_once('.')
                    .unwrap()
                    .0
            ),
        ),
        (
            "alg None",
            common::forge(&fx.ed, &json!({"alg": "None", "kid": "ed-1"}), &claims()),
        ),
        (
            "alg HS256 keyed with the public key",
            common::forge_hs256(
                &common::ed25519_x(&fx.ed),
                &json!({"alg": "HS256", "kid": "ed-1"}),
                &claims(),
            ),
        ),
        (
            "alg ES256 on an Ed25519 key",
            common::forge(&fx.ed, &json!({"alg": "ES256", "kid": "ed-1"}), &claims()),
        ),
        (
            "alg EdDSA on a P-256 key",
            common::forge(&fx.ed, &json!({"alg": "EdDSA", "kid": "es-1"}), &claims()),
        ),
        (
            "alg ES384 on a P-256 key",
            common::forge(&fx.es, &json!({"alg": "ES384", "kid": "es-1"}), &claims()),
        ),
        (
            "alg RS256 on a P-256 key",
            common::forge(&fx.es, &json!({"alg": "RS256", "kid": "es-1"}), &claims()),
        ),
        (
            "alg RS512",
            common::forge(&fx.es, &json!({"alg": "RS512", "kid": "es-1"}), &claims()),
        ),
        // Other header members.
        (
            "typ at+jwt",
            common::sign(&fx.ed, json!({"typ": "at+jwt"}), &claims()),
        ),
        (
            "typ dpop+jwt",
            common::sign(&fx.ed, json!({"typ": "dpop+jwt"}), &claims()),
        ),
        (
            "jku",
            common::forge(
                &fx.ed,
                &ed_header(json!({"jku": "https://evil/jwks"})),
                &claims(),
            ),
        ),
        (
            "x5c",
            common::forge(&fx.ed, &ed_header(json!({"x5c": ["MAA="]})), &claims()),
        ),
        (
            "embedded jwk",
            common::forge(
                &fx.ed,
                &ed_header(json!({"jwk": fx.ed.public_jwk().to_public_json()})),
                &claims(),
            ),
        ),
        (
            "unknown crit",
            common::forge(
                &fx.ed,
                &ed_header(json!({"crit": ["x"], "x": 1})),
                &claims(),
            ),
        ),
        (
            "b64 false",
            common::forge(&fx.ed, &ed_header(json!({"b64": false})), &claims()),
        ),
        // Times.
        (
            "expired",
            common::sign(&fx.ed, json!({}), &with(|c| c["exp"] = json!(NOW - 61))),
        ),
        (
            "exp missing",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
        (
            "exp a string",
            common::sign(&fx.ed, json!({}), &with(|c| c["exp"] = json!("9999999999"))),
        ),
        (
            "nbf in the future",
            common::sign(&fx.ed, json!({}), &with(|c| c["nbf"] = json!(NOW + 61))),
        ),
        (
            "iat in the future",
            common::sign(&fx.ed, json!({}), &with(|c| c["iat"] = json!(NOW + 61))),
        ),
        // Audience.
        (
            "aud missing",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
        ),
        (
            "aud wrong",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["aud"] = json!(["https://other/token"])),
            ),
        ),
        (
            "aud empty",
            common::sign(&fx.ed, json!({}), &with(|c| c["aud"] = json!([]))),
        ),
        (
            "aud prefix",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["aud"] = json!(format!("{AUD}/x"))),
            ),
        ),
        (
            "aud not strings",
            common::sign(&fx.ed, json!({}), &with(|c| c["aud"] = json!([1]))),
        ),
        // Subject.
        (
            "sub missing",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
        ),
        (
            "sub not a SPIFFE ID",
            common::sign(&fx.ed, json!({}), &with(|c| c["sub"] = json!("agent-a"))),
        ),
        (
            "sub https",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["sub"] = json!("https://example.org/a")),
            ),
        ),
        (
            "sub uppercase domain",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["sub"] = json!("spiffe://EXAMPLE.org/a")),
            ),
        ),
        (
            "sub trust domain only",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["sub"] = json!("spiffe://example.org")),
            ),
        ),
        (
            "sub with dot-dot",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["sub"] = json!("spiffe://example.org/a/../b")),
            ),
        ),
        (
            "sub a number",
            common::sign(&fx.ed, json!({}), &with(|c| c["sub"] = json!(5))),
        ),
        ("duplicate sub", {
            let payload = format!(
                r#"{{"sub":"{SUB}","sub":"spiffe://example.org/admin","aud":"{AUD}","exp":{}}}"#,
                NOW + 300
            );
            let header = mandate_jose::b64url_encode(br#"{"alg":"EdDSA","kid":"ed-1"}"#);
            let input = format!(
                "{header}.{}",
                mandate_jose::b64url_encode(payload.as_bytes())
            );
            let sig = fx.ed.sign_input(input.as_bytes()).unwrap();
            format!("{input}.{}", mandate_jose::b64url_encode(&sig))
        }),
        // Integrity.
        ("signature bit flip", common::flip_signature_bit(&good)),
        (
            "payload swapped",
            common::swap_payload(
                &good,
                &with(|c| c["sub"] = json!("spiffe://example.org/admin")),
            ),
        ),
        (
            "signature stripped",
            format!("{}.", good.rsplit_once('.').unwrap().0),
        ),
        ("four segments", format!("{good}.x")),
        ("garbage", "not.a.jwt".into()),
        ("empty", String::new()),
        (
            "oversized",
            common::sign(
                &fx.ed,
                json!({}),
                &with(|c| c["pad"] = json!("a".repeat(20_000))),
            ),
        ),
    ];
    // An ES256 signature under the EdDSA key's kid and vice versa (right alg, wrong key).
    let es_claiming_ed = common::forge(&fx.es, &json!({"alg": "ES256", "kid": "ed-1"}), &claims());
    cases.push(("ES256 signature under an Ed25519 kid", es_claiming_ed));

    for (name, token) in &cases {
        match check(&fx, token) {
            Err(TokenError::InvalidClient(msg)) => {
                assert!(!msg.is_empty(), "{name}");
                assert!(
                    !msg.contains(token.as_str()) || token.is_empty(),
                    "{name} echoes the token"
                );
            }
            other => panic!("{name}: expected invalid_client, got {other:?}"),
        }
    }
    // No accepted audience at all refuses everything.
    assert!(verify_jwt_svid(&good, &fx.bundles, &[], NOW).is_err());
    // No bundles at all refuses everything.
    assert!(verify_jwt_svid(&good, &TrustBundles::new(), &[AUD], NOW).is_err());
    assert!(check(&fx, &good).is_ok(), "the unmodified token is fine");
    println!("hostile JWT-SVIDs: {} refused", cases.len() + 2);
}

#[test]
fn key_alg_pins_the_algorithm() {
    // A bundle key that declares `alg` accepts only that algorithm, even when the
    // key type would allow another (RSA: RS256 vs PS256 is the real case; here the
    // declared alg must simply match the header).
    let ed = SigningKey::generate(Alg::EdDSA, "k".into()).unwrap();
    let mut jwk = common::public_jwk(&ed, Some("jwt-svid"));
    jwk.as_object_mut().unwrap().remove("alg");
    let doc = json!({"keys": [jwk]});
    let mut bundles = TrustBundles::new();
    bundles.insert(
        JwtBundle::from_spiffe_bundle_json(td("example.org"), doc.to_string().as_bytes()).unwrap(),
    );
    // Without `alg` on the key, the header's EdDSA fits the key type and is used.
    let token = common::sign(&ed, json!({}), &claims());
    assert!(verify_jwt_svid(&token, &bundles, &[AUD], NOW).is_ok());
    // But a header alg that does not fit the type is still refused.
    let token = common::forge(&ed, &json!({"alg": "ES256", "kid": "k"}), &claims());
    assert!(verify_jwt_svid(&token, &bundles, &[AUD], NOW).is_err());
}
