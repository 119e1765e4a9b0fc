//! SPIFFE JWT-SVIDs as OAuth client assertions.
//!
//! ```text
//!   operator config ─► JwtBundle::from_spiffe_bundle_json / from_jwks_json ─► TrustBundles
//!                                                                                 │
//!   client_assertion ─► verify_jwt_svid ── peek kid + sub's trust domain ─► bundle key
//!                            │                                                    │
//!                            └── mandate_jose::verify (alg pinned by the key) ◄───┘
//!                                      │
//!                                      └─► Claims: sub (SPIFFE ID), aud, exp ─► SpiffeId
//! ```
//!
//! Specifications: the SPIFFE ID (`SPIFFE-ID.md` §2), the JWT-SVID (`JWT-SVID.md`) and
//! the SPIFFE Trust Domain and Bundle (`SPIFFE_Trust_Domain_and_Bundle.md` §4).
//!
//! Bundles are configured per deployment; nothing here fetches a bundle, and a token
//! can never name where its keys come from (`jku`/`x5u`/`x5c` are refused by
//! `mandate-jose`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use mandate_jose::{Alg, JoseError, Jwk, Rules};
use serde_json::{Map, Value};

use crate::claims::{Claims, TimeRules};
use crate::error::{TokenError, untrusted};

/// Longest SPIFFE ID, in bytes (SPIFFE-ID §2.3).
const SPIFFE_ID_MAX: usize = 2048;
/// Longest trust domain name, in bytes (a DNS name).
const TRUST_DOMAIN_MAX: usize = 255;
/// Largest bundle document we parse.
const BUNDLE_MAX_BYTES: usize = 1024 * 1024;
/// Most JWK entries in one bundle document.
const BUNDLE_MAX_KEYS: usize = 256;
/// Longest JWT-SVID we look at.
const TOKEN_MAX: usize = 16 * 1024;
/// The URI scheme prefix of every SPIFFE ID.
const SCHEME: &str = "spiffe://";

/// Algorithms accepted on a JWT-SVID: the asymmetric ones `mandate-jose` implements.
///
/// JWT-SVID §2.1 lists RS/ES/PS only; EdDSA is accepted as well because it is our
/// own default signing algorithm and is no weaker. HMAC is never accepted: a bundle
/// holds public keys.
pub const JWT_SVID_ALGS: [Alg; 5] = [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::EdDSA];

// ---------------------------------------------------------------------------
// SPIFFE IDs
// ---------------------------------------------------------------------------

/// Why a string is not a SPIFFE ID or trust domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpiffeIdError(String);

fn id_err(msg: impl Into<String>) -> SpiffeIdError {
    SpiffeIdError(msg.into())
}

/// A trust domain name: lowercase letters, digits, `.`, `-` and `_` (SPIFFE-ID §2.1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name such as `example.org` (no scheme, no port).
    pub fn parse(name: &str) -> Result<TrustDomain, SpiffeIdError> {
        if name.is_empty() {
            return Err(id_err("the trust domain is empty"));
        }
        if name.len() > TRUST_DOMAIN_MAX {
            return Err(id_err(format!(
                "the trust domain is longer than {TRUST_DOMAIN_MAX} bytes"
            )));
        }
        if let Some(c) = name.chars().find(|c| !is_trust_domain_char(*c)) {
            return Err(id_err(match c {
                '@' => "the trust domain may not carry userinfo (`@`)".to_owned(),
                ':' => "the trust domain may not carry a port (`:`)".to_owned(),
                '?' => "a SPIFFE ID may not carry a query".to_owned(),
                '#' => "a SPIFFE ID may not carry a fragment".to_owned(),
                c if c.is_ascii_uppercase() => "the trust domain must be lowercase".to_owned(),
                c => format!(
                    "the trust domain holds the character {}",
                    untrusted(&c.to_string())
                ),
            }));
        }
        Ok(TrustDomain(name.to_owned()))
    }

    /// The name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>`.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::parse(s)
    }
}

fn is_trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// A SPIFFE ID: `spiffe://<trust domain><path>`, parsed strictly.
///
/// The path is empty (the trust domain itself) or `/`-separated segments of
/// `[A-Za-z0-9._-]`, none empty, `.` or `..`; no trailing `/`, no percent-encoding,
/// no query, fragment, port or userinfo; at most 2048 bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    /// Parses a SPIFFE ID.
    pub fn parse(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.len() > SPIFFE_ID_MAX {
            return Err(id_err(format!(
                "a SPIFFE ID is at most {SPIFFE_ID_MAX} bytes"
            )));
        }
        let Some(rest) = s.strip_prefix(SCHEME) else {
            let lowered_prefix = s.get(..SCHEME.len()).map(str::to_ascii_lowercase);
            return Err(id_err(if lowered_prefix.as_deref() == Some(SCHEME) {
                "the scheme must be written `spiffe` in lowercase"
            } else {
                "a SPIFFE ID starts with `spiffe://`"
            }));
        };
        let (domain, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let trust_domain = TrustDomain::parse(domain)?;
        if !path.is_empty() {
            check_path(path)?;
        }
        Ok(SpiffeId {
            trust_domain,
            path: path.to_owned(),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// True for the trust domain's own ID (no path), which names no workload.
    pub fn is_trust_domain_id(&self) -> bool {
        self.path.is_empty()
    }
}

/// Checks a non-empty path that starts with `/`.
fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.contains('?') {
        return Err(id_err("a SPIFFE ID may not carry a query"));
    }
    if path.contains('#') {
        return Err(id_err("a SPIFFE ID may not carry a fragment"));
    }
    if path.contains('%') {
        return Err(id_err("a SPIFFE ID path may not be percent-encoded"));
    }
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err(id_err("a SPIFFE ID path has an empty segment")),
            "." | ".." => {
                return Err(id_err("a SPIFFE ID path may not hold `.` or `..` segments"));
            }
            _ => {}
        }
        if let Some(c) = segment.chars().find(|c| !is_path_char(*c)) {
            return Err(id_err(format!(
                "a SPIFFE ID path holds the character {}",
                untrusted(&c.to_string())
            )));
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// Why a bundle document was refused. Bundles come from configuration, so these are
/// operator-facing and never reach an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleError(String);

fn bundle_err(msg: impl Into<String>) -> BundleError {
    BundleError(msg.into())
}

/// The JWT authorities of one trust domain: keys by `kid`, plus the bundle's
/// metadata. X.509 authorities are kept as DER for callers that need them; they are
/// never used to verify a JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtBundle {
    trust_domain: TrustDomain,
    // INVARIANT: every kid is non-empty and unique; every key is public.
    keys: Vec<(String, Jwk)>,
    x509_authorities: Vec<Vec<u8>>,
    sequence: Option<u64>,
    refresh_hint: Option<u64>,
}

/// Which document shape is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BundleKind {
    /// A SPIFFE bundle: every key says what it is for in `use`.
    Spiffe,
    /// A plain JWK Set: every signature key is a JWT authority.
    Jwks,
}

impl JwtBundle {
    /// Reads a SPIFFE bundle (Trust Domain and Bundle §4).
    ///
    /// `keys` must be present. `use` must be present on every key: `jwt-svid` keys
    /// need a unique non-empty `kid` and a valid public key; `x509-svid` keys need
    /// exactly one certificate in `x5c`; other uses and unknown key types are skipped
    /// as §4.2 requires. A symmetric key, a private key or a malformed key is an error.
    pub fn from_spiffe_bundle_json(
        trust_domain: TrustDomain,
        bytes: &[u8],
    ) -> Result<JwtBundle, BundleError> {
        parse_bundle(trust_domain, bytes, BundleKind::Spiffe)
    }

    /// Reads a plain JWK Set: every key without `use`, or with `use` `sig` or
    /// `jwt-svid`, is a JWT authority and needs a unique non-empty `kid`; keys for
    /// other uses are skipped.
    pub fn from_jwks_json(
        trust_domain: TrustDomain,
        bytes: &[u8],
    ) -> Result<JwtBundle, BundleError> {
        parse_bundle(trust_domain, bytes, BundleKind::Jwks)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The JWT authority with this `kid`.
    pub fn key(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, jwk)| jwk)
    }

    /// Every JWT authority, in document order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &Jwk)> {
        self.keys.iter().map(|(kid, jwk)| (kid.as_str(), jwk))
    }

    /// How many JWT authorities there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The DER certificates of the `x509-svid` entries (not checked beyond framing).
    pub fn x509_authorities(&self) -> &[Vec<u8>] {
        &self.x509_authorities
    }

    /// `spiffe_sequence`, if the document had one.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// `spiffe_refresh_hint` in seconds, if the document had one.
    pub fn refresh_hint(&self) -> Option<u64> {
        self.refresh_hint
    }
}

fn parse_bundle(
    trust_domain: TrustDomain,
    bytes: &[u8],
    kind: BundleKind,
) -> Result<JwtBundle, BundleError> {
    if bytes.len() > BUNDLE_MAX_BYTES {
        return Err(bundle_err(format!(
            "the bundle is larger than {BUNDLE_MAX_BYTES} bytes"
        )));
    }
    let doc = mandate_jose::parse_json_strict(bytes)
        .map_err(|e| bundle_err(format!("the bundle is not valid JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(bundle_err("the bundle is not a JSON object"));
    };
    let entries = match doc.get("keys") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(bundle_err("the bundle's `keys` is not an array")),
        None => return Err(bundle_err("the bundle has no `keys` member")),
    };
    if entries.len() > BUNDLE_MAX_KEYS {
        return Err(bundle_err(format!(
            "the bundle has more than {BUNDLE_MAX_KEYS} keys"
        )));
    }
    let mut bundle = JwtBundle {
        trust_domain,
        keys: Vec::new(),
        x509_authorities: Vec::new(),
        sequence: opt_u64(&doc, "spiffe_sequence")?,
        refresh_hint: opt_u64(&doc, "spiffe_refresh_hint")?,
    };
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(bundle_err(format!("key {i} is not a JSON object")));
        };
        let use_ = match entry.get("use") {
            None => None,
            Some(Value::String(u)) => Some(u.as_str()),
            Some(_) => return Err(bundle_err(format!("key {i}: `use` is not a string"))),
        };
        match (kind, use_) {
            (BundleKind::Spiffe, None) => {
                return Err(bundle_err(format!(
                    "key {i} has no `use` (a SPIFFE bundle must say what each key is for)"
                )));
            }
            (BundleKind::Spiffe, Some("jwt-svid"))
            | (BundleKind::Jwks, None | Some("sig" | "jwt-svid")) => {
                add_jwt_authority(&mut bundle, i, entry)?;
            }
            (BundleKind::Spiffe, Some("x509-svid")) => {
                bundle.x509_authorities.push(x509_authority(i, entry)?);
            }
            // Other uses (`wit-svid`, `enc`, …) are not ours to read (§4.2.2).
            (_, Some(_)) => {}
        }
    }
    Ok(bundle)
}

fn opt_u64(doc: &Map<String, Value>, name: &str) -> Result<Option<u64>, BundleError> {
    match doc.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bundle_err(format!("`{name}` is not a non-negative 64-bit integer"))),
        Some(_) => Err(bundle_err(format!("`{name}` is not a number"))),
    }
}

fn add_jwt_authority(
    bundle: &mut JwtBundle,
    i: usize,
    entry: &Map<String, Value>,
) -> Result<(), BundleError> {
    let kid = match entry.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(Value::String(_)) | None => {
            return Err(bundle_err(format!(
                "key {i}: a JWT authority needs a non-empty `kid`"
            )));
        }
        Some(_) => return Err(bundle_err(format!("key {i}: `kid` is not a string"))),
    };
    match entry.get("kty").and_then(Value::as_str) {
        Some("EC" | "RSA" | "OKP") => {}
        Some("oct") => {
            return Err(bundle_err(format!(
                "key {i} ({}): a symmetric key has no place in a trust bundle",
                untrusted(&kid)
            )));
        }
        Some(_) => return Ok(()), // an unknown key type is skipped (§4.2.1)
        None => return Err(bundle_err(format!("key {i}: `kty` is missing"))),
    }
    // `use` was judged above; `mandate-jose` only knows `sig` and would refuse
    // `jwt-svid`, so the member is dropped before the key is parsed.
    let mut jwk_json = entry.clone();
    jwk_json.remove("use");
    let jwk = match Jwk::from_public_json(&Value::Object(jwk_json)) {
        Ok(jwk) => jwk,
        // A curve or algorithm we do not implement: the key cannot verify anything
        // here, so it is skipped as an unknown key type would be.
        Err(JoseError::Unsupported(_)) => return Ok(()),
        Err(e) => {
            return Err(bundle_err(format!("key {i} ({}): {e}", untrusted(&kid))));
        }
    };
    if bundle.keys.iter().any(|(k, _)| *k == kid) {
        return Err(bundle_err(format!(
            "key {i}: the kid {} appears twice",
            untrusted(&kid)
        )));
    }
    bundle.keys.push((kid, jwk));
    Ok(())
}

/// An `x509-svid` entry: exactly one certificate in `x5c`, standard base64 of a DER
/// SEQUENCE. The certificate is not otherwise examined here.
fn x509_authority(i: usize, entry: &Map<String, Value>) -> Result<Vec<u8>, BundleError> {
    let certs = match entry.get("x5c") {
        Some(Value::Array(certs)) => certs,
        Some(_) => return Err(bundle_err(format!("key {i}: `x5c` is not an array"))),
        None => {
            return Err(bundle_err(format!(
                "key {i}: an X.509 authority needs its certificate in `x5c`"
            )));
        }
    };
    let [Value::String(cert)] = certs.as_slice() else {
        return Err(bundle_err(format!(
            "key {i}: an X.509 authority carries exactly one certificate, found {}",
            certs.len()
        )));
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(cert)
        .map_err(|_| bundle_err(format!("key {i}: the `x5c` certificate is not base64")))?;
    if !is_der_sequence(&der) {
        return Err(bundle_err(format!(
            "key {i}: the `x5c` certificate is not a DER SEQUENCE"
        )));
    }
    Ok(der)
}

/// True if `der` is exactly one DER SEQUENCE (tag, definite length, contents).
fn is_der_sequence(der: &[u8]) -> bool {
    let Some((&0x30, rest)) = der.split_first() else {
        return false;
    };
    let Some((&first, rest)) = rest.split_first() else {
        return false;
    };
    let (len, body) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return false;
        }
        let (len_bytes, body) = rest.split_at(n);
        if len_bytes.first() == Some(&0) {
            return false; // not minimal
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return false; // not minimal
        }
        (len, body)
    };
    body.len() == len
}

/// The configured bundles, one per trust domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustBundles {
    by_domain: BTreeMap<TrustDomain, JwtBundle>,
}

impl TrustBundles {
    pub fn new() -> TrustBundles {
        TrustBundles::default()
    }

    /// Adds or replaces the bundle of its trust domain; returns the one replaced.
    pub fn insert(&mut self, bundle: JwtBundle) -> Option<JwtBundle> {
        self.by_domain.insert(bundle.trust_domain.clone(), bundle)
    }

    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<JwtBundle> {
        self.by_domain.remove(trust_domain)
    }

    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&JwtBundle> {
        self.by_domain.get(trust_domain)
    }

    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.by_domain.keys()
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }
}

// ---------------------------------------------------------------------------
// JWT-SVID verification
// ---------------------------------------------------------------------------

fn invalid(msg: impl Into<String>) -> TokenError {
    TokenError::InvalidClient(msg.into())
}

/// Verifies a JWT-SVID presented as a client assertion and returns its SPIFFE ID.
///
/// The header is peeked for `kid`, and the unverified payload for `sub`'s trust
/// domain, only to pick the bundle key; then the signature is verified with the
/// algorithm pinned by that key (its own `alg`, or the header's if it fits the key's
/// type and is one of [`JWT_SVID_ALGS`]). After that the verified claims must hold
/// a workload SPIFFE ID in `sub` (the same as peeked), an `aud` naming one of
/// `audience`, and an unexpired `exp` (60 s skew; `nbf`/`iat` checked if present).
/// `typ`, if present, must be `JWT` or `JOSE`.
pub fn verify_jwt_svid(
    token: &str,
    bundles: &TrustBundles,
    audience: &[&str],
    now: i64,
) -> Result<SpiffeId, TokenError> {
    if token.len() > TOKEN_MAX {
        return Err(invalid("the JWT-SVID is too large"));
    }
    let header = mandate_jose::peek_header(token)
        .map_err(|e| invalid(format!("the JWT-SVID is malformed: {e}")))?;
    if !JWT_SVID_ALGS.contains(&header.alg) {
        return Err(invalid(format!(
            "the JWT-SVID algorithm {} is not accepted",
            header.alg
        )));
    }
    if let Some(typ) = &header.typ
        && !typ.eq_ignore_ascii_case("JWT")
        && !typ.eq_ignore_ascii_case("JOSE")
    {
        return Err(invalid(format!(
            "the JWT-SVID `typ` {} is neither JWT nor JOSE",
            untrusted(typ)
        )));
    }
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| invalid("the JWT-SVID header has no `kid`"))?;

    // Unverified: read only to choose the trust domain's bundle.
    let claimed = unverified_claim_str(token, "sub")
        .map_err(|m| invalid(format!("the JWT-SVID {m}")))?
        .ok_or_else(|| invalid("the JWT-SVID has no `sub`"))?;
    let claimed = SpiffeId::parse(&claimed)
        .map_err(|e| invalid(format!("the JWT-SVID `sub` is not a SPIFFE ID: {e}")))?;
    let bundle = bundles.get(claimed.trust_domain()).ok_or_else(|| {
        invalid(format!(
            "no trust bundle for the trust domain {}",
            untrusted(claimed.trust_domain().as_str())
        ))
    })?;
    let key = bundle.key(kid).ok_or_else(|| {
        invalid(format!(
            "the kid {} is not a JWT authority of trust domain {}",
            untrusted(kid),
            untrusted(claimed.trust_domain().as_str())
        ))
    })?;
    let alg = pin_alg(header.alg, key, &JWT_SVID_ALGS)
        .map_err(|m| invalid(format!("the JWT-SVID {m}")))?;
    let verified = mandate_jose::verify(token, key, alg, &Rules::default())
        .map_err(|e| invalid(format!("the JWT-SVID does not verify: {e}")))?;

    let claims = Claims::from_payload(&verified.payload)
        .map_err(|e| invalid(format!("the JWT-SVID {e}")))?;
    let claim_err = |e: crate::claims::ClaimError| invalid(format!("the JWT-SVID: {e}"));
    let sub = claims.required_str("sub").map_err(claim_err)?;
    let id = SpiffeId::parse(sub)
        .map_err(|e| invalid(format!("the JWT-SVID `sub` is not a SPIFFE ID: {e}")))?;
    if id != claimed {
        // Unreachable with one payload, kept so the key choice can never drift
        // from the identity returned.
        return Err(invalid("the JWT-SVID `sub` changed under verification"));
    }
    if id.is_trust_domain_id() {
        return Err(invalid(
            "the JWT-SVID `sub` names a trust domain, not a workload",
        ));
    }
    claims.expect_audience(audience).map_err(claim_err)?;
    claims.check_times(&TimeRules::at(now)).map_err(claim_err)?;
    Ok(id)
}

/// The algorithm to verify with: the header's `alg`, only if `permitted` holds it,
/// the key's own `alg` (when it has one) equals it, and it fits the key's type.
pub(crate) fn pin_alg(header_alg: Alg, key: &Jwk, permitted: &[Alg]) -> Result<Alg, String> {
    if !permitted.contains(&header_alg) {
        return Err(format!("algorithm {header_alg} is not accepted"));
    }
    if let Some(own) = key.alg()
        && own != header_alg
    {
        return Err(format!(
            "algorithm {header_alg} is not the key's algorithm {own}"
        ));
    }
    if !key.allowed_algs().contains(&header_alg) {
        return Err(format!("algorithm {header_alg} does not fit the key"));
    }
    Ok(header_alg)
}

/// A string claim from the payload of a token that has **not** been verified.
///
/// Only for choosing which keys to verify with; never for a decision. `Ok(None)`
/// if the claim is absent; an error if the payload is not a JSON object or the claim
/// is not a string.
pub(crate) fn unverified_claim_str(token: &str, name: &str) -> Result<Option<String>, String> {
    let mut segments = token.split('.');
    let payload = match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(_), Some(p), Some(_), None) => p,
        _ => return Err("is not a compact JWS".into()),
    };
    let bytes =
        mandate_jose::b64url_decode(payload).map_err(|_| "payload is not base64url".to_owned())?;
    let Ok(Value::Object(map)) = mandate_jose::parse_json_strict(&bytes) else {
        return Err("payload is not a JSON object".into());
    };
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("claim `{name}` is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_framing() {
        assert!(is_der_sequence(&[0x30, 0x00]));
        assert!(is_der_sequence(&[0x30, 0x02, 1, 2]));
        assert!(!is_der_sequence(&[0x30, 0x03, 1, 2]));
        assert!(!is_der_sequence(&[0x31, 0x00]));
        assert!(!is_der_sequence(&[0x30, 0x81, 0x02, 1, 2]), "non-minimal");
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        assert!(is_der_sequence(&long));
        assert!(!is_der_sequence(&[]));
    }

    #[test]
    fn trust_domain_id_round_trips() {
        let td = TrustDomain::parse("example.org").unwrap_or_else(|_| TrustDomain(String::new()));
        assert_eq!(td.id().to_string(), "spiffe://example.org");
        assert!(td.id().is_trust_domain_id());
    }
}
