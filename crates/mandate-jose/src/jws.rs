//! JWS compact serialization (RFC 7515 §7.1), verification with a pinned
//! algorithm.

use ring::{hmac, signature};
use serde_json::{Map, Value};

use crate::error::untrusted;
use crate::json::parse_strict;
use crate::jwk::{Curve, Material};
use crate::{Alg, JoseError, Jwk, b64url_decode};

/// Longest protected-header segment (base64url characters) we decode.
const HEADER_SEGMENT_MAX: usize = 8 * 1024;
/// Longest token [`peek_header`] looks at.
const PEEK_MAX: usize = 1024 * 1024;

/// Header parameters registered by RFC 7515 §4.1; `crit` may not name them.
const REGISTERED: [&str; 11] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
];

/// Header parameters that would make a verifier fetch or trust keys named by
/// the token itself; always refused.
const KEY_SOURCES: [&str; 3] = ["jku", "x5u", "x5c"];

/// A parsed JWS protected header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// `alg`: in a [`Verified`] header this equals the pinned algorithm.
    pub alg: Alg,
    /// `typ`, if present.
    pub typ: Option<String>,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `jwk`, if present (only ever accepted when [`Rules::allow_embedded_jwk`]).
    pub jwk: Option<Value>,
    /// `crit`, empty if absent.
    pub crit: Vec<String>,
    /// The whole header object, as parsed.
    pub raw: Map<String, Value>,
}

/// A verified token: its header and decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The protected header.
    pub header: Header,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

/// What a caller accepts beyond the fixed rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Longest token accepted, in bytes. Default 16 KiB.
    pub max_len: usize,
    /// Accept a `jwk` header (DPoP proofs). It must then be a public key
    /// equal to (same RFC 7638 thumbprint as) the verification key. Default false.
    pub allow_embedded_jwk: bool,
    /// Extension header names the caller understands and may appear in `crit`.
    /// Default empty.
    pub understood_crit: Vec<String>,
    /// When set, `typ` must be present and equal this, ignoring ASCII case
    /// and an `application/` prefix on either side.
    pub typ: Option<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_len: 16 * 1024,
            allow_embedded_jwk: false,
            understood_crit: Vec::new(),
            typ: None,
        }
    }
}

/// Splits into exactly three segments.
fn split3(compact: &str) -> Result<(&str, &str, &str), JoseError> {
    let mut it = compact.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => Err(JoseError::Malformed(
            "a compact JWS has exactly three dot-separated segments".into(),
        )),
    }
}

/// The header without its `alg` resolved, and the raw `alg` string.
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    jwk: Option<Value>,
    crit: Vec<String>,
    raw: Map<String, Value>,
}

impl RawHeader {
    fn into_header(self, alg: Alg) -> Header {
        Header {
            alg,
            typ: self.typ,
            kid: self.kid,
            jwk: self.jwk,
            crit: self.crit,
            raw: self.raw,
        }
    }
}

fn opt_string(raw: &Map<String, Value>, name: &str) -> Result<Option<String>, JoseError> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JoseError::Malformed(format!(
            "header `{name}` must be a string"
        ))),
    }
}

/// Decodes and checks everything about the header that does not depend on
/// the caller's key or rules.
fn parse_header_segment(segment: &str) -> Result<RawHeader, JoseError> {
    if segment.is_empty() {
        return Err(JoseError::Malformed("empty protected header".into()));
    }
    if segment.len() > HEADER_SEGMENT_MAX {
        return Err(JoseError::TooLarge);
    }
    let bytes = b64url_decode(segment)?;
    let Value::Object(raw) = parse_strict(&bytes)? else {
        return Err(JoseError::Malformed(
            "protected header is not a JSON object".into(),
        ));
    };
    let alg = match raw.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(JoseError::Malformed("header `alg` must be a string".into())),
        None => return Err(JoseError::Malformed("header has no `alg`".into())),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(JoseError::HeaderRejected(
            "alg \"none\" is never accepted".into(),
        ));
    }
    if let Some(name) = KEY_SOURCES.iter().find(|n| raw.contains_key(**n)) {
        return Err(JoseError::HeaderRejected(format!(
            "header `{name}` (token-supplied key source) is refused"
        )));
    }
    match raw.get("b64") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Err(JoseError::HeaderRejected(
                "unencoded payloads (`b64: false`) are refused".into(),
            ));
        }
        Some(_) => {
            return Err(JoseError::Malformed(
                "header `b64` must be a boolean".into(),
            ));
        }
    }
    let typ = opt_string(&raw, "typ")?;
    let kid = opt_string(&raw, "kid")?;
    let jwk = match raw.get("jwk") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => {
            return Err(JoseError::Malformed(
                "header `jwk` must be an object".into(),
            ));
        }
    };
    let crit = match raw.get("crit") {
        None => Vec::new(),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(name) = item else {
                    return Err(JoseError::Malformed(
                        "header `crit` must be an array of strings".into(),
                    ));
                };
                if out.contains(name) {
                    return Err(JoseError::Malformed(
                        "header `crit` has a duplicate entry".into(),
                    ));
                }
                out.push(name.clone());
            }
            out
        }
        Some(_) => {
            return Err(JoseError::Malformed(
                "header `crit` must be a non-empty array of strings".into(),
            ));
        }
    };
    Ok(RawHeader {
        alg,
        typ,
        kid,
        jwk,
        crit,
        raw,
    })
}

/// Reads the protected header **without verifying anything**.
///
/// Only for choosing a verification key by `kid`. Structural checks still
/// apply (three segments, strict base64url, an object without duplicate
/// members, a supported `alg`, no `none`, no `jku`/`x5u`/`x5c`, no
/// `b64: false`); tokens up to 1 MiB are looked at.
pub fn peek_header(compact: &str) -> Result<Header, JoseError> {
    if compact.len() > PEEK_MAX {
        return Err(JoseError::TooLarge);
    }
    let (h, _, _) = split3(compact)?;
    let raw = parse_header_segment(h)?;
    let alg = raw.alg.parse::<Alg>()?;
    Ok(raw.into_header(alg))
}

fn strip_application(s: &str) -> &str {
    const PREFIX: &str = "application/";
    match s.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => s.get(PREFIX.len()..).unwrap_or(s),
        _ => s,
    }
}

fn check_rules(raw: &RawHeader, key: &Jwk, rules: &Rules) -> Result<(), JoseError> {
    if let Some(embedded) = &raw.jwk {
        if !rules.allow_embedded_jwk {
            return Err(JoseError::HeaderRejected(
                "header `jwk` (embedded key) is not allowed here".into(),
            ));
        }
        let embedded = Jwk::from_public_json_beside(embedded, key)
            .map_err(|e| JoseError::HeaderRejected(format!("embedded `jwk`: {e}")))?;
        if embedded.thumbprint() != key.thumbprint() {
            return Err(JoseError::HeaderRejected(
                "embedded `jwk` is not the verification key".into(),
            ));
        }
    }
    for name in &raw.crit {
        if REGISTERED.contains(&name.as_str()) {
            return Err(JoseError::HeaderRejected(format!(
                "`crit` names the registered header {}",
                untrusted(name)
            )));
        }
        if !rules.understood_crit.iter().any(|u| u == name) {
            return Err(JoseError::HeaderRejected(format!(
                "critical header {} is not understood",
                untrusted(name)
            )));
        }
        if !raw.raw.contains_key(name) {
            return Err(JoseError::HeaderRejected(format!(
                "critical header {} is missing",
                untrusted(name)
            )));
        }
    }
    if let Some(want) = &rules.typ {
        let ok = raw.typ.as_deref().is_some_and(|got| {
            strip_application(got).eq_ignore_ascii_case(strip_application(want))
        });
        if !ok {
            return Err(JoseError::HeaderRejected(match &raw.typ {
                Some(got) => format!("typ {} is not the expected type", untrusted(got)),
                None => "typ is missing".into(),
            }));
        }
    }
    Ok(())
}

fn check_signature(key: &Jwk, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), JoseError> {
    let ok = match (alg, &key.material) {
        (Alg::EdDSA, Material::Ed25519 { x, .. }) => {
            sig.len() == 64
                && aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, x)
                    .verify(message, sig)
                    .is_ok()
        }
        (
            Alg::ES256,
            Material::Ec {
                curve: Curve::P256,
                x,
                y,
                ..
            },
        )
        | (
            Alg::ES384,
            Material::Ec {
                curve: Curve::P384,
                x,
                y,
                ..
            },
        ) => {
            let (verifier, sig_len) = if alg == Alg::ES256 {
                (&signature::ECDSA_P256_SHA256_FIXED, 64)
            } else {
                (&signature::ECDSA_P384_SHA384_FIXED, 96)
            };
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(4u8);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            sig.len() == sig_len
                && signature::UnparsedPublicKey::new(verifier, &point)
                    .verify(message, sig)
                    .is_ok()
        }
        (Alg::RS256 | Alg::PS256, Material::Rsa { n, e, .. }) => {
            let params = if alg == Alg::RS256 {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            sig.len() == n.len()
                && signature::RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .verify(params, message, sig)
                .is_ok()
        }
        (Alg::HS256, Material::Oct { .. }) => {
            let secret = key
                .oct_secret()
                .ok_or_else(|| JoseError::KeyRejected("the symmetric key has no secret".into()))?;
            sig.len() == 32
                && hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), message, sig).is_ok()
        }
        _ => {
            return Err(JoseError::KeyRejected(format!(
                "{alg} does not fit the key type"
            )));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(JoseError::BadSignature)
    }
}

/// Verifies a compact JWS with `key`, the algorithm pinned to `alg`.
///
/// In order: size limit; the key must fit `alg` (type, curve, its own `alg`,
/// `use`, `key_ops`); exactly three segments; the header must decode to a
/// JSON object without duplicates whose `alg` equals `alg` (`none` never);
/// `jku`/`x5u`/`x5c` refused, `jwk` unless allowed, `crit` unless
/// understood, `b64: false` always; `typ` as the rules say; the payload and a
/// non-empty signature must be strict base64url; then the signature.
pub fn verify(compact: &str, key: &Jwk, alg: Alg, rules: &Rules) -> Result<Verified, JoseError> {
    if compact.len() > rules.max_len {
        return Err(JoseError::TooLarge);
    }
    key.check_for_verify(alg)?;
    let (h, p, s) = split3(compact)?;
    let raw = parse_header_segment(h)?;
    if raw.alg != alg.as_str() {
        return Err(JoseError::AlgorithmMismatch {
            expected: alg,
            found: untrusted(&raw.alg),
        });
    }
    check_rules(&raw, key, rules)?;
    if s.is_empty() {
        return Err(JoseError::Malformed("empty signature".into()));
    }
    let payload = b64url_decode(p)?;
    let sig = b64url_decode(s)?;
    let signing_input = compact
        .rsplit_once('.')
        .map(|(input, _)| input)
        .ok_or_else(|| JoseError::Malformed("no signature segment".into()))?;
    check_signature(key, alg, signing_input.as_bytes(), &sig)?;
    Ok(Verified {
        header: raw.into_header(alg),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::check_signature;
    use crate::{Alg, Jwk, b64url_encode};

    type Outcome = Result<(), String>;

    /// A hex string of the vector file as bytes; a malformed one fails the test.
    fn unhex(s: &str) -> Result<Vec<u8>, String> {
        if !s.len().is_multiple_of(2) {
            return Err(format!("odd-length hex {s}"));
        }
        s.as_bytes()
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                    .ok_or_else(|| format!("not hex: {s}"))
            })
            .collect()
    }

    /// A string member of the vector file, as hex bytes.
    fn hex_member(v: &Value, name: &str) -> Result<Vec<u8>, String> {
        unhex(
            v[name]
                .as_str()
                .ok_or_else(|| format!("no `{name}` in {v}"))?,
        )
    }

    /// Wycheproof's Ed25519 vectors (151: malleable and non-canonical signatures,
    /// wrong lengths, edge-case messages) against the verification every EdDSA JWS
    /// takes; a key the JWK import refuses verifies nothing.
    #[test]
    fn wycheproof_ed25519_signatures() -> Outcome {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/wycheproof/ed25519_test.json"
        );
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let vectors: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let groups = vectors["testGroups"].as_array().ok_or("no testGroups")?;
        let (mut valid, mut invalid) = (0, 0);
        for group in groups {
            let pk = hex_member(&group["publicKey"], "pk")?;
            let key = Jwk::from_public_json(
                &json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(&pk)}),
            );
            for test in group["tests"].as_array().ok_or("a group without tests")? {
                let (msg, sig) = (hex_member(test, "msg")?, hex_member(test, "sig")?);
                let accepted = key
                    .as_ref()
                    .is_ok_and(|k| check_signature(k, Alg::EdDSA, &msg, &sig).is_ok());
                let want = match test["result"].as_str() {
                    Some("valid") => true,
                    Some("invalid") => false,
                    other => return Err(format!("tcId {}: result {other:?}", test["tcId"])),
                };
                if accepted != want {
                    return Err(format!(
                        "tcId {} ({}): accepted {accepted}, expected {want}",
                        test["tcId"], test["comment"]
                    ));
                }
                if want {
                    valid += 1;
                } else {
                    invalid += 1;
                }
            }
        }
        if (valid, invalid) == (88, 63) {
            Ok(())
        } else {
            Err(format!(
                "{valid} valid and {invalid} invalid cases, expected 88 and 63"
            ))
        }
    }
}
