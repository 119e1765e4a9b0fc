#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

use std::collections::HashMap;
use std::ffi::OsString;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mandate_types::Secret;

use crate::*;

const AAD: &[u8] = b"ten_0193/github";

fn key(id: &str, byte: u8) -> MasterKey {
    MasterKey::new(KeyId::parse(id).unwrap(), [byte; KEY_LEN]).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    move |name| map.get(name).cloned()
}

fn load(value: &str) -> Result<MasterKeys, KeyError> {
    MasterKeys::from_lookup(lookup(&[(MASTER_KEY_VAR, value)])).map(Option::unwrap)
}

// --- sealing ---------------------------------------------------------------------------

#[test]
fn seal_and_open_round_trip_through_the_text_form() {
    let keys = MasterKeys::generate().unwrap();
    for plain in [&b""[..], b"x", b"ghp_0123456789abcdef", &[0u8; 1000]] {
        let sealed = keys.seal(plain, AAD).unwrap();
        let text = sealed.to_string();
        assert!(text.starts_with(&format!("v1.{}.", keys.newest().id())));
        let parsed: Sealed = text.parse().unwrap();
        assert_eq!(parsed, sealed);
        assert_eq!(keys.open(&parsed, AAD).unwrap().expose().as_slice(), plain);
    }
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let keys = MasterKeys::generate().unwrap();
    let a = keys.seal(b"same", AAD).unwrap();
    let b = keys.seal(b"same", AAD).unwrap();
    assert_ne!(a.nonce(), b.nonce());
    assert_ne!(a.ciphertext(), b.ciphertext());
}

#[test]
fn a_value_does_not_open_in_another_row_or_under_another_key() {
    let keys = MasterKeys::new(vec![key("k1", 1)]).unwrap();
    let sealed = keys.seal(b"secret", AAD).unwrap();
    assert!(matches!(
        keys.open(&sealed, b"ten_0193/slack"),
        Err(SealError::Unauthentic)
    ));
    assert!(matches!(
        keys.open(&sealed, b""),
        Err(SealError::Unauthentic)
    ));
    // Same id, other key material (a key replaced without a new id).
    let impostor = MasterKeys::new(vec![key("k1", 2)]).unwrap();
    assert!(matches!(
        impostor.open(&sealed, AAD),
        Err(SealError::Unauthentic)
    ));
    // A key id that is not listed.
    let other = MasterKeys::new(vec![key("k9", 1)]).unwrap();
    let err = other.open(&sealed, AAD).unwrap_err();
    assert!(matches!(&err, SealError::UnknownKey { key_id } if key_id == "k1"));
    assert_eq!(
        err.to_string(),
        "sealed under key `k1`, which is not in the master key list"
    );
}

#[test]
fn relabelling_the_key_id_does_not_open() {
    // Two keys with the same bytes: the key id is authenticated, so moving a value to
    // the other label fails even though the key material would decrypt it.
    let keys = MasterKeys::new(vec![key("k2", 7), key("k1", 7)]).unwrap();
    let sealed = keys.seal(b"secret", AAD).unwrap();
    let text = sealed.to_string().replacen("v1.k2.", "v1.k1.", 1);
    let relabelled: Sealed = text.parse().unwrap();
    assert!(matches!(
        keys.open(&relabelled, AAD),
        Err(SealError::Unauthentic)
    ));
}

#[test]
fn every_flipped_bit_is_caught() {
    let keys = MasterKeys::generate().unwrap();
    let sealed = keys.seal(b"a credential", AAD).unwrap();
    let text = sealed.to_string();
    let fields: Vec<&str> = text.split('.').collect();
    let nonce = URL_SAFE_NO_PAD.decode(fields[2]).unwrap();
    let ct = URL_SAFE_NO_PAD.decode(fields[3]).unwrap();
    // Nonce bits.
    for bit in 0..nonce.len() * 8 {
        let mut n = nonce.clone();
        n[bit / 8] ^= 1 << (bit % 8);
        let t = format!("v1.{}.{}.{}", fields[1], b64(&n), fields[3]);
        let s: Sealed = t.parse().unwrap();
        assert!(matches!(keys.open(&s, AAD), Err(SealError::Unauthentic)));
    }
    // Ciphertext and tag bits (the tag is the last 16 bytes).
    for bit in 0..ct.len() * 8 {
        let mut c = ct.clone();
        c[bit / 8] ^= 1 << (bit % 8);
        let t = format!("v1.{}.{}.{}", fields[1], fields[2], b64(&c));
        let s: Sealed = t.parse().unwrap();
        assert!(
            matches!(keys.open(&s, AAD), Err(SealError::Unauthentic)),
            "bit {bit}"
        );
    }
    // Truncated ciphertext (a byte off the tag) and an extra byte.
    for c in [&ct[..ct.len() - 1], &[ct.as_slice(), &[0]].concat()[..]] {
        let t = format!("v1.{}.{}.{}", fields[1], fields[2], b64(c));
        let s: Sealed = t.parse().unwrap();
        assert!(matches!(keys.open(&s, AAD), Err(SealError::Unauthentic)));
    }
}

#[test]
fn garbled_sealed_strings_are_refused_with_a_reason() {
    let keys = MasterKeys::generate().unwrap();
    let good = keys.seal(b"x", AAD).unwrap().to_string();
    let fields: Vec<&str> = good.split('.').collect();
    let tag_only = b64(&[0u8; 15]);
    let cases = [
        String::new(),
        "v1".into(),
        "v1.k1".into(),
        fields[..3].join("."),
        format!("{good}.extra"),
        good.replacen("v1.", "v2.", 1),
        good.replacen("v1.", "V1.", 1),
        format!("v1..{}.{}", fields[2], fields[3]),
        format!("v1.k!.{}.{}", fields[2], fields[3]),
        format!("v1.{}.{}.{}", "k".repeat(33), fields[2], fields[3]),
        format!("v1.{}.{}.{}", fields[1], b64(&[0u8; 11]), fields[3]),
        format!("v1.{}.{}.{}", fields[1], b64(&[0u8; 13]), fields[3]),
        format!("v1.{}.{}=.{}", fields[1], fields[2], fields[3]),
        format!("v1.{}.{}.{}", fields[1], fields[2], tag_only),
        format!("v1.{}.{}.{}+", fields[1], fields[2], fields[3]),
        format!("v1.{}.{}.{} ", fields[1], fields[2], fields[3]),
        good[..good.len() - 30].to_owned(),
    ];
    for case in cases {
        let result = case.parse::<Sealed>();
        assert!(
            matches!(result, Err(SealError::Malformed { .. })) || {
                // A cut that still parses must then fail to authenticate.
                matches!(
                    keys.open(&result.unwrap(), AAD),
                    Err(SealError::Unauthentic)
                )
            },
            "{case:?}"
        );
    }
}

#[test]
fn oversized_plaintexts_are_refused() {
    let keys = MasterKeys::generate().unwrap();
    let big = vec![0u8; MAX_PLAINTEXT + 1];
    assert!(matches!(
        keys.seal(&big, AAD),
        Err(SealError::TooLarge { .. })
    ));
}

#[test]
fn rotation_seal_add_newest_open_reseal_drop_open() {
    let keys = MasterKeys::new(vec![key("k1", 1)]).unwrap();
    let old = keys.seal(b"database password", AAD).unwrap();
    assert!(!keys.needs_reseal(&old));

    // k2 becomes the newest: it seals, and k1's values still open.
    let keys = keys.with_newest(key("k2", 2)).unwrap();
    assert_eq!(keys.newest().id().as_str(), "k2");
    assert_eq!(keys.open(&old, AAD).unwrap().expose(), b"database password");
    assert!(keys.needs_reseal(&old));
    assert_eq!(keys.seal(b"new", AAD).unwrap().key_id().as_str(), "k2");

    let new = keys.reseal(&old, AAD).unwrap();
    assert_eq!(new.key_id().as_str(), "k2");
    assert!(!keys.needs_reseal(&new));
    // Resealing checks the row binding too.
    assert!(matches!(
        keys.reseal(&old, b"other/row"),
        Err(SealError::Unauthentic)
    ));

    // k1 retired: the resealed value opens, the old one names a key that is gone.
    let keys = keys.without("k1").unwrap();
    assert_eq!(keys.ids().map(KeyId::as_str).collect::<Vec<_>>(), ["k2"]);
    assert_eq!(keys.open(&new, AAD).unwrap().expose(), b"database password");
    assert!(matches!(
        keys.open(&old, AAD),
        Err(SealError::UnknownKey { .. })
    ));
    // The last key cannot be removed.
    assert!(matches!(keys.without("k2"), Err(KeyError::Empty { .. })));
}

// --- master keys -----------------------------------------------------------------------

#[test]
fn the_key_list_is_newest_first_in_either_base64_alphabet() {
    let k2 = [0xfbu8; 32]; // encodes with `-`/`_` in URL-safe, `+`/`/` in standard
    let k1 = [0x11u8; 32];
    let value = format!("k2:{}, k1:{}", b64(&k2), STANDARD.encode(k1));
    let keys = load(&value).unwrap();
    assert_eq!(
        keys.ids().map(KeyId::as_str).collect::<Vec<_>>(),
        ["k2", "k1"]
    );
    // Sealed under k2 (the first), opened by a list holding only k2's bytes.
    let sealed = keys.seal(b"x", AAD).unwrap();
    let only_k2 = load(&format!("k2:{}", STANDARD.encode(k2))).unwrap();
    assert_eq!(only_k2.open(&sealed, AAD).unwrap().expose(), b"x");
    // Unpadded standard alphabet and padded URL-safe alphabet are both read.
    load(&format!("a:{}", STANDARD.encode(k2).trim_end_matches('='))).unwrap();
    load(&format!("a:{}=", b64(&k1))).unwrap();
}

#[test]
fn a_bare_key_gets_an_id_from_its_digest() {
    let bytes = [0x42u8; 32];
    let keys = load(&b64(&bytes)).unwrap();
    let id = keys.newest().id().as_str().to_owned();
    assert_eq!(id.len(), 13);
    assert!(id.starts_with('k'));
    // Deterministic: the same key always gets the same id (sealed values keep opening).
    assert_eq!(
        load(&STANDARD.encode(bytes))
            .unwrap()
            .newest()
            .id()
            .as_str(),
        id
    );
    assert_ne!(
        load(&b64(&[0x43u8; 32])).unwrap().newest().id().as_str(),
        id
    );
}

#[test]
fn bad_key_lists_are_refused_without_echoing_key_material() {
    let good = b64(&[9u8; 32]);
    let short = b64(&[0xabu8; 31]);
    let long = b64(&[0xabu8; 33]);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "holds no master key"),
        (" , ,".into(), "holds no master key"),
        (format!("k1:{short}"), "entry 1: the key is 31 bytes"),
        (
            format!("k1:{good},k2:{long}"),
            "entry 2: the key is 33 bytes",
        ),
        ("k1:not base64!!".into(), "entry 1: the key is not base64"),
        (format!("k1:{good}*"), "entry 1: the key is not base64"),
        (format!("k.1:{good}"), "entry 1: the key id is malformed"),
        (format!(":{good}"), "entry 1: the key id is malformed"),
        (
            format!("{}:{good}", "k".repeat(33)),
            "entry 1: the key id is malformed",
        ),
        (
            format!("k1:{good},k1:{good}"),
            "key id `k1` is listed twice",
        ),
        (format!("{good},{good}"), "is listed twice"),
    ];
    for (value, expected) in cases {
        let err = load(&value).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{value:?}: {message}");
        assert!(message.contains(MASTER_KEY_VAR), "{message}");
        for secret in [&good, &short, &long] {
            assert!(!message.contains(secret.as_str()), "{message}");
            assert!(!format!("{err:?}").contains(secret.as_str()));
        }
    }
}

#[test]
fn environment_selection() {
    let good = format!("k1:{}", b64(&[1u8; 32]));
    assert!(MasterKeys::from_lookup(lookup(&[])).unwrap().is_none());
    let both = MasterKeys::from_lookup(lookup(&[
        (MASTER_KEY_VAR, good.as_str()),
        (MASTER_KEY_FILE_VAR, "/nonexistent"),
    ]))
    .unwrap_err();
    assert!(matches!(both, KeyError::BothSet));
    let missing =
        MasterKeys::from_lookup(lookup(&[(MASTER_KEY_FILE_VAR, "/nonexistent/keys")])).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("cannot read the master key file `/nonexistent/keys`"),
        "{missing}"
    );
}

#[cfg(unix)]
#[test]
fn the_key_file_has_comments_and_must_be_private() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.keys");
    let k2 = b64(&[2u8; 32]);
    let k1 = b64(&[1u8; 32]);
    std::fs::write(
        &path,
        format!("# rotated 2026-11-23\nk2:{k2}\n\n  # old key, remove after reseal\nk1:{k1}\n"),
    )
    .unwrap();
    let vars = [(MASTER_KEY_FILE_VAR, path.to_str().unwrap())];

    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = MasterKeys::from_lookup(lookup(&vars)).unwrap_err();
        assert!(
            matches!(err, KeyError::OpenPermissions { mode: m, .. } if m == mode),
            "{mode:o}: {err}"
        );
        assert!(err.to_string().contains("make it 0600 or 0400"));
    }
    for mode in [0o600, 0o400] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let keys = MasterKeys::from_lookup(lookup(&vars)).unwrap().unwrap();
        assert_eq!(
            keys.ids().map(KeyId::as_str).collect::<Vec<_>>(),
            ["k2", "k1"]
        );
    }

    // Errors name the file and the line's entry number, not the key.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &path,
        format!("# only comment\nk2:{k2}\nk1:{}\n", &k1[..20]),
    )
    .unwrap();
    let err = MasterKeys::from_lookup(lookup(&vars))
        .unwrap_err()
        .to_string();
    assert!(err.contains("master.keys`, entry 2: the key is"), "{err}");
    assert!(!err.contains(&k1[..20]));
    std::fs::write(&path, "# nothing here\n\n").unwrap();
    let err = MasterKeys::from_lookup(lookup(&vars))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no master key"), "{err}");
}

#[test]
fn keys_never_print() {
    let keys = MasterKeys::new(vec![key("k1", 0xaa)]).unwrap();
    let shown = format!("{keys:?} {:?}", keys.newest());
    assert!(shown.contains("k1"));
    let entry = keys.newest().to_entry();
    let encoded = entry.expose().split_once(':').unwrap().1.to_owned();
    assert!(!shown.contains(&encoded));
    assert!(!format!("{entry:?} {entry}").contains(&encoded));
    // The entry reads back as the same key.
    let again = load(entry.expose()).unwrap();
    let sealed = keys.seal(b"x", AAD).unwrap();
    assert_eq!(again.open(&sealed, AAD).unwrap().expose(), b"x");
    let sealed_debug = format!("{sealed:?}");
    assert!(sealed_debug.contains("k1"));
    let opened = keys.open(&sealed, AAD).unwrap();
    assert_eq!(format!("{opened:?}"), "Secret(<redacted>)");
}

// --- injection -------------------------------------------------------------------------

fn injection(json: &str) -> Result<Injection, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn credentials_become_sensitive_headers() {
    let secret = Secret::new("s3cr3t-value".to_owned());

    let (name, value) = injection(r#"{"kind":"header","name":"X-Api-Key"}"#)
        .unwrap()
        .header(&secret)
        .unwrap();
    assert_eq!(name.as_str(), "x-api-key");
    assert_eq!(value.to_str().unwrap(), "s3cr3t-value");
    assert!(value.is_sensitive());
    assert!(!format!("{value:?}").contains("s3cr3t"));

    let (name, value) = injection(r#"{"kind":"bearer"}"#)
        .unwrap()
        .header(&secret)
        .unwrap();
    assert_eq!(name, http::header::AUTHORIZATION);
    assert_eq!(value.to_str().unwrap(), "Bearer s3cr3t-value");
    assert!(value.is_sensitive());

    // RFC 7617 §2 example: Aladdin / open sesame.
    let (name, value) = injection(r#"{"kind":"basic","username":"Aladdin"}"#)
        .unwrap()
        .header(&Secret::new("open sesame".to_owned()))
        .unwrap();
    assert_eq!(name, http::header::AUTHORIZATION);
    assert_eq!(
        value.to_str().unwrap(),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert!(value.is_sensitive());
}

#[test]
fn secrets_that_would_split_a_header_are_refused() {
    let all = [
        Injection::Bearer,
        injection(r#"{"kind":"header","name":"x-token"}"#).unwrap(),
        injection(r#"{"kind":"basic","username":"u"}"#).unwrap(),
    ];
    for inj in &all {
        for bad in [
            "a\r\nX-Evil: 1",
            "a\nb",
            "a\rb",
            "a\0b",
            "tab\there",
            "del\x7f",
        ] {
            let err = inj.header(&Secret::new(bad.to_owned())).unwrap_err();
            assert_eq!(err, InjectionError::ControlCharacter, "{inj:?} {bad:?}");
            assert!(!err.to_string().contains(bad));
        }
        assert_eq!(
            inj.header(&Secret::new(String::new())).unwrap_err(),
            InjectionError::Empty
        );
    }
}

#[test]
fn injection_configs_are_parsed_strictly() {
    for reserved in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "connection",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "proxy-authorization",
        "Content-Type",
    ] {
        let err = injection(&format!(r#"{{"kind":"header","name":"{reserved}"}}"#)).unwrap_err();
        assert!(
            err.to_string().contains("cannot carry a credential"),
            "{err}"
        );
    }
    for invalid in ["", "x token", "x:token", "x\\r\\ny", ":authority", "ü"] {
        let err = injection(&format!(r#"{{"kind":"header","name":"{invalid}"}}"#)).unwrap_err();
        assert!(
            err.to_string().contains("not a valid HTTP header name"),
            "{invalid:?}: {err}"
        );
    }
    for bad_user in ["", "a:b", "a\\nb"] {
        let err = injection(&format!(r#"{{"kind":"basic","username":"{bad_user}"}}"#)).unwrap_err();
        assert!(err.to_string().contains("basic-auth username"), "{err}");
    }
    // Unknown kinds and fields are refused; a config round-trips.
    assert!(injection(r#"{"kind":"cookie"}"#).is_err());
    assert!(injection(r#"{"kind":"header","name":"x-a","extra":1}"#).is_err());
    assert!(injection(r#"{"kind":"basic"}"#).is_err());
    let inj = injection(r#"{"kind":"header","name":"X-Api-Key"}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&inj).unwrap(),
        r#"{"kind":"header","name":"x-api-key"}"#
    );
}
