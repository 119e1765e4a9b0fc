//! DPoP proof verification (RFC 9449) for the token endpoint and for resource servers.
//!
//! ```text
//!   DPoP header value ─► shape, size ─► peek alg + jwk ─► jose::verify (alg pinned,
//!   typ dpop+jwt, embedded jwk = key) ─► claims: jti, htm, htu, iat, ath, nonce
//!   ─► replay cache (jkt, jti) ─► DpopProof { jkt, … }
//! ```
//!
//! A [`DpopProof`] only comes out of [`DpopVerifier::check`], so holding one means every
//! check of RFC 9449 §4.3 passed. Binding it to an access token's `cnf.jkt` is a separate
//! step ([`DpopVerifier::check_bound`]) because only the caller has the verified token.
//!
//! Nonces (§8, §9) are stateless: `base64url(slot || HMAC-SHA256(secret, slot))` where the
//! slot is `now / nonce_lifetime_secs`. Every replica configured with the same secret
//! issues and accepts the same nonces; the current and the previous slot are accepted
//! (and the next one, while it is within `future_skew_secs`, for replicas whose clocks
//! run slightly ahead).
//!
//! The replay cache is in memory and per verifier: with several replicas and no shared
//! state a proof can be replayed once per replica inside its `iat` window (RFC 9449 §11.1
//! accepts this trade-off; require nonces to shorten the window further).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use mandate_jose::{Alg, Jwk, Rules, b64url_decode, b64url_encode, peek_header, verify};
use ring::{digest, hmac};
use serde_json::Value;

use crate::claims::Claims;
use crate::error::{TokenError, untrusted};

/// The `typ` every DPoP proof must carry (RFC 9449 §4.2, §11.5).
const DPOP_TYP: &str = "dpop+jwt";
/// Longest `jti` accepted, in characters (RFC 9449 §11.1: refuse needlessly large ones).
const JTI_MAX_CHARS: usize = 256;
/// Domain separation for the nonce MAC, so the secret cannot be confused with another use.
const NONCE_CONTEXT: &[u8] = b"mandate dpop nonce v1\0";
/// A nonce is the 8-byte big-endian slot followed by the 32-byte MAC.
const NONCE_BYTES: usize = 8 + 32;
/// JWK members that carry private or secret key material (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What a [`DpopVerifier`] accepts. `Debug` hides the nonce secret.
#[derive(Clone)]
pub struct DpopConfig {
    /// Signature algorithms accepted for proofs. Symmetric algorithms are refused even
    /// if listed. Default `[EdDSA, ES256]`.
    pub algs: Vec<Alg>,
    /// How far `iat` may lie in the past, in seconds. Default 60.
    pub max_age_secs: i64,
    /// How far `iat` may lie in the future (client clock ahead), in seconds. Default 5.
    pub future_skew_secs: i64,
    /// Require a server nonce in every proof. Default false.
    pub require_nonce: bool,
    /// The nonce MAC key. Replicas that must accept each other's nonces share it.
    pub nonce_secret: [u8; 32],
    /// Length of a nonce time slot, in seconds; a nonce is accepted for one to two slots.
    /// Default 300.
    pub nonce_lifetime_secs: i64,
    /// Longest proof accepted, in bytes. Default 8 KiB.
    pub max_len: usize,
    /// Most `(jkt, jti)` pairs remembered at once. When full, new proofs are refused
    /// rather than old entries forgotten. Default 65 536.
    pub replay_capacity: usize,
}

impl DpopConfig {
    /// The defaults, with the given nonce secret. There is deliberately no `Default`: a
    /// fixed secret would let anyone mint nonces.
    pub fn new(nonce_secret: [u8; 32]) -> DpopConfig {
        DpopConfig {
            algs: vec![Alg::EdDSA, Alg::ES256],
            max_age_secs: 60,
            future_skew_secs: 5,
            require_nonce: false,
            nonce_secret,
            nonce_lifetime_secs: 300,
            max_len: 8 * 1024,
            replay_capacity: 65_536,
        }
    }
}

impl fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopConfig")
            .field("algs", &self.algs)
            .field("max_age_secs", &self.max_age_secs)
            .field("future_skew_secs", &self.future_skew_secs)
            .field("require_nonce", &self.require_nonce)
            .field("nonce_secret", &"<redacted>")
            .field("nonce_lifetime_secs", &self.nonce_lifetime_secs)
            .field("max_len", &self.max_len)
            .field("replay_capacity", &self.replay_capacity)
            .finish()
    }
}

/// The request a proof arrived with, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpopRequest<'a> {
    /// The HTTP method, compared case-sensitively with `htm`.
    pub method: &'a str,
    /// The request's full external URL (`https://host[:port]/path[?query]`), as the
    /// client addressed it — behind a TLS-terminating proxy, the public one.
    pub url: &'a str,
    /// The access token presented with the request (resource servers). When present,
    /// the proof's `ath` must be its hash; when absent, the proof must not carry `ath`.
    pub access_token: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
}

/// A proof that passed every check. Only [`DpopVerifier::check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    jkt: String,
    jti: String,
    iat: i64,
    jwk: Jwk,
    /// The replay cache's key for `(jkt, jti)`.
    replay: [u8; 32],
    /// Unix seconds after which the proof can no longer be accepted.
    expires: i64,
}

impl DpopProof {
    /// The RFC 7638 thumbprint of the proof key: what `cnf.jkt` binds a token to.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// A fixed-size name of this proof's one use (`base64url(SHA-256(len ‖ jkt ‖ jti))`,
    /// 43 characters, whatever the client sent), for a store that refuses the second
    /// use across replicas.
    pub fn replay_id(&self) -> String {
        b64url_encode(&self.replay)
    }

    /// Unix seconds after which no verifier accepts the proof: its use need not be
    /// remembered longer.
    pub fn expires_at(&self) -> i64 {
        self.expires
    }

    pub fn iat(&self) -> i64 {
        self.iat
    }

    /// The proof's public key.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// Checks DPoP proofs and issues nonces. Shared by reference across threads.
#[derive(Debug)]
pub struct DpopVerifier {
    cfg: DpopConfig,
    nonce_key: hmac::Key,
    replay: Mutex<ReplayCache>,
    keys: Mutex<KeyCache>,
}

impl DpopVerifier {
    pub fn new(cfg: DpopConfig) -> DpopVerifier {
        let nonce_key = hmac::Key::new(hmac::HMAC_SHA256, &cfg.nonce_secret);
        let replay = Mutex::new(ReplayCache::new(cfg.replay_capacity));
        DpopVerifier {
            cfg,
            nonce_key,
            replay,
            keys: Mutex::new(KeyCache::default()),
        }
    }

    pub fn config(&self) -> &DpopConfig {
        &self.cfg
    }

    /// Checks one `DPoP` header value against the request (RFC 9449 §4.3).
    ///
    /// The caller passes the value of the single `DPoP` header and refuses the request
    /// itself when the header is absent or repeated. Errors are `invalid_dpop_proof`,
    /// `use_dpop_nonce` (with the nonce to send back in `DPoP-Nonce`), `invalid_token`
    /// for an empty access token, and `temporarily_unavailable` when the replay cache is
    /// full. The `(jkt, jti)` pair is remembered only when everything else passed.
    pub fn check(&self, proof: &str, req: &DpopRequest<'_>) -> Result<DpopProof, TokenError> {
        check_shape(proof, self.cfg.max_len)?;
        let header = peek_header(proof).map_err(|e| invalid(e.to_string()))?;
        let alg = header.alg;
        if alg == Alg::HS256 {
            return Err(invalid(
                "a DPoP proof must use an asymmetric algorithm, not HS256",
            ));
        }
        if !self.cfg.algs.contains(&alg) {
            return Err(invalid(format!("algorithm {alg} is not accepted for DPoP")));
        }
        let jwk = self.embedded_key(header.jwk.as_ref())?;
        let rules = Rules {
            max_len: self.cfg.max_len,
            allow_embedded_jwk: true,
            understood_crit: Vec::new(),
            typ: Some(DPOP_TYP.into()),
        };
        let verified = verify(proof, &jwk, alg, &rules).map_err(|e| invalid(e.to_string()))?;
        let claims = Claims::from_payload(&verified.payload).map_err(|e| invalid(e.0))?;

        let jti = claims.required_str("jti").map_err(|e| invalid(e.0))?;
        if jti.chars().count() > JTI_MAX_CHARS {
            return Err(invalid(format!(
                "claim `jti` is longer than {JTI_MAX_CHARS} characters"
            )));
        }
        check_htm(&claims, req.method)?;
        check_htu(&claims, req.url)?;
        let iat = self.check_iat(&claims, req.now)?;
        check_ath(&claims, req.access_token)?;
        if self.cfg.require_nonce {
            self.check_nonce(&claims, req.now)?;
        }

        let jkt = jwk.thumbprint();
        let expires = iat
            .saturating_add(self.cfg.max_age_secs)
            .saturating_add(self.cfg.future_skew_secs);
        let replay = replay_key(&jkt, jti);
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(replay, expires, req.now)?;
        Ok(DpopProof {
            jkt,
            jti: jti.to_owned(),
            iat,
            jwk,
            replay,
            expires,
        })
    }

    /// The nonce to hand out now (in `DPoP-Nonce`). Any verifier with the same secret
    /// and lifetime accepts it for one to two lifetimes.
    pub fn nonce(&self, now: i64) -> String {
        let slot = now.div_euclid(self.nonce_lifetime());
        let mut bytes = Vec::with_capacity(NONCE_BYTES);
        bytes.extend_from_slice(&slot.to_be_bytes());
        bytes.extend_from_slice(self.nonce_tag(slot).as_ref());
        b64url_encode(&bytes)
    }

    /// Checks that the proof key is the one the access token is bound to (`cnf.jkt`),
    /// in constant time. A mismatch is `invalid_token`: the token is not usable by the
    /// key that presented it (RFC 9449 §7.1).
    pub fn check_bound(&self, proof: &DpopProof, expected_jkt: &str) -> Result<(), TokenError> {
        if constant_time_eq(proof.jkt.as_bytes(), expected_jkt.as_bytes()) {
            Ok(())
        } else {
            Err(TokenError::InvalidToken(
                "the access token is bound to another DPoP key".into(),
            ))
        }
    }

    /// The proof's key, from the header's `jwk` member: public, and a key its parser
    /// accepts. A client signs every proof with the same key, and parsing it again
    /// would check again that it is a point of its curve (for Ed25519 a square root
    /// in the field: a tenth of a proof's cost), so keys that parsed are kept by the
    /// member's exact JSON text; what differs in any byte is parsed on its own.
    fn embedded_key(&self, jwk: Option<&Value>) -> Result<Jwk, TokenError> {
        let Some(value) = jwk else {
            return Err(invalid("header `jwk` is missing"));
        };
        let Some(members) = value.as_object() else {
            return Err(invalid("header `jwk` is not an object"));
        };
        if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
            return Err(invalid("header `jwk` holds private key material"));
        }
        let text = value.to_string();
        let keys = || self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys().get(&text) {
            return Ok(key);
        }
        let key =
            Jwk::from_public_json(value).map_err(|e| invalid(format!("header `jwk`: {e}")))?;
        keys().insert(text, key.clone());
        Ok(key)
    }

    fn nonce_lifetime(&self) -> i64 {
        self.cfg.nonce_lifetime_secs.max(1)
    }

    fn nonce_tag(&self, slot: i64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.nonce_key);
        ctx.update(NONCE_CONTEXT);
        ctx.update(&slot.to_be_bytes());
        ctx.sign()
    }

    fn check_iat(&self, claims: &Claims, now: i64) -> Result<i64, TokenError> {
        let iat = claims
            .time("iat")
            .map_err(|e| invalid(e.0))?
            .ok_or_else(|| invalid("claim `iat` is missing"))?;
        if iat > now.saturating_add(self.cfg.future_skew_secs) {
            return Err(invalid("claim `iat` is in the future"));
        }
        if now.saturating_sub(iat) > self.cfg.max_age_secs {
            return Err(invalid("the proof is too old (`iat`)"));
        }
        Ok(iat)
    }

    /// Missing, stale and unrecognised nonces all get `use_dpop_nonce` with a fresh
    /// nonce: RFC 9449 §8 uses that code for a nonce mismatch, the exchange then
    /// corrects itself (also across a secret rotation), and a forger learns nothing it
    /// could not get by sending no nonce at all.
    fn check_nonce(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let retry = || TokenError::UseDpopNonce {
            nonce: self.nonce(now),
        };
        let nonce = match claims.str("nonce") {
            Ok(Some(n)) if !n.is_empty() => n,
            Ok(_) => return Err(retry()),
            Err(e) => return Err(invalid(e.0)),
        };
        let Some(slot) = self.nonce_slot(nonce) else {
            tracing::debug!("dpop nonce refused: not issued by this server");
            return Err(retry());
        };
        let lifetime = self.nonce_lifetime();
        let current = now.div_euclid(lifetime);
        let slot_start = slot.saturating_mul(lifetime);
        let fresh = slot == current
            || slot == current.saturating_sub(1)
            || (slot == current.saturating_add(1)
                && slot_start <= now.saturating_add(self.cfg.future_skew_secs));
        if fresh {
            Ok(())
        } else {
            tracing::debug!("dpop nonce refused: stale");
            Err(retry())
        }
    }

    /// The slot of a nonce this secret issued, or `None`.
    fn nonce_slot(&self, nonce: &str) -> Option<i64> {
        let bytes = b64url_decode(nonce).ok()?;
        if bytes.len() != NONCE_BYTES {
            return None;
        }
        let (slot_bytes, tag) = bytes.split_at(8);
        let slot = i64::from_be_bytes(slot_bytes.try_into().ok()?);
        let mut msg = Vec::with_capacity(NONCE_CONTEXT.len() + 8);
        msg.extend_from_slice(NONCE_CONTEXT);
        msg.extend_from_slice(slot_bytes);
        hmac::verify(&self.nonce_key, &msg, tag).ok()?;
        Some(slot)
    }
}

/// `base64url(SHA-256(token))`: the `ath` value for an access token (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    b64url_encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

fn invalid(msg: impl Into<String>) -> TokenError {
    TokenError::InvalidDpopProof(msg.into())
}

/// One compact JWS and nothing else: not empty, within the size limit, only base64url
/// characters and dots. A comma means several `DPoP` header lines were joined.
fn check_shape(proof: &str, max_len: usize) -> Result<(), TokenError> {
    if proof.is_empty() {
        return Err(invalid("the DPoP header is empty"));
    }
    if proof.len() > max_len {
        return Err(invalid(format!("the proof is longer than {max_len} bytes")));
    }
    if proof.contains(',') {
        return Err(invalid("exactly one DPoP proof is allowed"));
    }
    if proof.chars().any(char::is_whitespace) {
        return Err(invalid("the DPoP header holds whitespace"));
    }
    let ok = proof
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(invalid("the DPoP header is not a compact JWS"));
    }
    Ok(())
}

/// The `jwk` header as a public key. `Jwk::from_public_json` already refuses private
/// material; the member check is kept so that a change there cannot let one through.
fn check_htm(claims: &Claims, method: &str) -> Result<(), TokenError> {
    let htm = claims.required_str("htm").map_err(|e| invalid(e.0))?;
    if htm != method {
        return Err(invalid(format!(
            "claim `htm` is {}, not the request method",
            untrusted(htm)
        )));
    }
    Ok(())
}

/// `htu` must carry no query or fragment (RFC 9449 §4.2) and, after normalisation
/// (RFC 3986 §6.2.2, §6.2.3), equal the request URL without its query and fragment.
fn check_htu(claims: &Claims, url: &str) -> Result<(), TokenError> {
    let htu = claims.required_str("htu").map_err(|e| invalid(e.0))?;
    if htu.contains(['?', '#']) {
        return Err(invalid("claim `htu` must not carry a query or fragment"));
    }
    let claimed = normalize_http_uri(htu)
        .map_err(|why| invalid(format!("claim `htu` {}: {why}", untrusted(htu))))?;
    let target = normalize_http_uri(strip_query(url))
        .map_err(|why| invalid(format!("the request URL cannot be compared: {why}")))?;
    if claimed != target {
        return Err(invalid(format!(
            "claim `htu` is {}, not the request URL",
            untrusted(htu)
        )));
    }
    Ok(())
}

fn check_ath(claims: &Claims, access_token: Option<&str>) -> Result<(), TokenError> {
    let ath = claims.str("ath").map_err(|e| invalid(e.0))?;
    match (access_token, ath) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(invalid(
            "claim `ath` is present but no access token was presented",
        )),
        (Some(""), _) => Err(TokenError::InvalidToken("the access token is empty".into())),
        (Some(_), None) => Err(invalid("claim `ath` is missing")),
        (Some(token), Some(ath)) => {
            let want = access_token_hash(token);
            if constant_time_eq(ath.as_bytes(), want.as_bytes()) {
                Ok(())
            } else {
                Err(invalid("claim `ath` does not match the access token"))
            }
        }
    }
}

fn strip_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url.get(..end).unwrap_or(url)
}

/// Normalises an absolute `http`/`https` URI without query or fragment: scheme and host
/// lowercased, default or empty port removed, percent-escapes uppercased and unreserved
/// characters decoded, dot segments removed, empty path made `/`.
///
/// Refused: other schemes, userinfo (RFC 9110 §4.2.4), an empty host, percent-escapes in
/// the host, a port that is not a number up to 65535, control characters, spaces and
/// non-ASCII characters.
fn normalize_http_uri(uri: &str) -> Result<String, &'static str> {
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("holds a space, a control or a non-ASCII character");
    }
    let (scheme, rest) = uri.split_once("://").ok_or("is not an absolute URI")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err("is not an http or https URI"),
    };
    let path_start = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    if authority.contains('@') {
        return Err("carries userinfo");
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err("has no host");
    }
    if host.contains('%') {
        return Err("has a percent-escape in the host");
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("has a port that is not a number");
            }
            let n: u16 = p.parse().map_err(|_| "has a port above 65535")?;
            (n != default_port).then_some(n)
        }
    };
    let path = remove_dot_segments(&normalize_percent(path)?);
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&path);
    }
    Ok(out)
}

/// Splits `host[:port]`, with IPv6 literals in brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or("has an unclosed IPv6 literal")?;
        let (host, rest) = authority.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err("has text after the IPv6 literal"),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) if !port.contains(':') => Ok((host, Some(port))),
            Some(_) => Err("has more than one port separator"),
            None => Ok((authority, None)),
        }
    }
}

/// Percent-encoding normalisation (RFC 3986 §6.2.2.1, §6.2.2.2): escapes of unreserved
/// characters are decoded, the others written with uppercase hex digits.
fn normalize_percent(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|h| char::from(*h).to_digit(16));
        let lo = bytes.get(i + 2).and_then(|l| char::from(*l).to_digit(16));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err("has a malformed percent-escape");
        };
        let decoded = u8::try_from(hi * 16 + lo).map_err(|_| "has a malformed percent-escape")?;
        if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(decoded));
        } else {
            out.push_str(&format!("%{decoded:02X}"));
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4, on a path that starts with `/` or is empty.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(seg) = parts.next() {
        let last = parts.peek().is_none();
        match seg {
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash {
        out.push('/');
    }
    out
}

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// SHA-256 over the length-prefixed thumbprint and `jti`: fixed-size entries whatever the
/// client sends (RFC 9449 §11.1).
fn replay_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(jkt.len() as u64).to_be_bytes());
    ctx.update(jkt.as_bytes());
    ctx.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// Proof keys that parsed, by the exact JSON text of their `jwk` member: only public
/// keys, at most [`KeyCache::CAPACITY`] of them (emptied when full, so a client with
/// ever new keys costs what it did without the cache).
#[derive(Debug, Default)]
struct KeyCache {
    keys: HashMap<String, Jwk>,
}

impl KeyCache {
    const CAPACITY: usize = 4_096;

    fn get(&self, text: &str) -> Option<Jwk> {
        self.keys.get(text).cloned()
    }

    fn insert(&mut self, text: String, key: Jwk) {
        if self.keys.len() >= Self::CAPACITY {
            self.keys.clear();
        }
        self.keys.insert(text, key);
    }
}

/// The `(jkt, jti)` pairs seen, each until its proof can no longer be accepted.
///
/// INVARIANT: an entry is purged only once `high_water` (the latest `now` seen) is past
/// its expiry, and a proof whose expiry is already behind `high_water` is refused, so a
/// caller passing an earlier `now` cannot slip a purged proof back in.
#[derive(Debug)]
struct ReplayCache {
    capacity: usize,
    seen: HashSet<[u8; 32]>,
    by_expiry: BinaryHeap<Reverse<(i64, [u8; 32])>>,
    high_water: i64,
}

impl ReplayCache {
    fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            seen: HashSet::new(),
            by_expiry: BinaryHeap::new(),
            high_water: i64::MIN,
        }
    }

    fn insert(&mut self, key: [u8; 32], expires: i64, now: i64) -> Result<(), TokenError> {
        self.high_water = self.high_water.max(now);
        while let Some(Reverse((exp, old))) = self.by_expiry.peek().copied() {
            if exp >= self.high_water {
                break;
            }
            self.by_expiry.pop();
            self.seen.remove(&old);
        }
        if expires < self.high_water {
            return Err(invalid("the proof is too old (`iat`)"));
        }
        if self.seen.contains(&key) {
            return Err(invalid("the proof has been used before (`jti`)"));
        }
        if self.seen.len() >= self.capacity {
            tracing::warn!(
                capacity = self.capacity,
                "dpop replay cache full; refusing proofs"
            );
            return Err(TokenError::Unavailable(
                "too many recent DPoP proofs; retry shortly".into(),
            ));
        }
        self.seen.insert(key);
        self.by_expiry.push(Reverse((expires, key)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_normalisation() {
        let n = |s: &str| normalize_http_uri(s);
        let same = [
            (
                "https://server.example.com/token",
                "https://server.example.com/token",
            ),
            (
                "HTTPS://Server.Example.COM/token",
                "https://server.example.com/token",
            ),
            (
                "https://server.example.com:443/token",
                "https://server.example.com/token",
            ),
            (
                "https://server.example.com:/token",
                "https://server.example.com/token",
            ),
            ("http://a.example:80", "http://a.example/"),
            ("https://a.example", "https://a.example/"),
            ("https://a.example:8443/x", "https://a.example:8443/x"),
            ("https://a.example:08443/x", "https://a.example:8443/x"),
            (
                "https://a.example/%7euser/%2f",
                "https://a.example/~user/%2F",
            ),
            ("https://a.example/a/./b/../c", "https://a.example/a/c"),
            ("https://a.example/a/b/..", "https://a.example/a/"),
            ("https://[::1]:443/x", "https://[::1]/x"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ];
        for (input, want) in same {
            assert_eq!(n(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "ftp://a.example/",
            "https://user@a.example/",
            "https:///x",
            "https://a.example:99999/",
            "https://a.example:8a/",
            "https://a.example/%zz",
            "https://a.example/%4",
            "https://a.example/ x",
            "https://a%2e.example/",
            "https://a.example/é",
            "a.example/x",
            "https://[::1/x",
            "https://a:1:2/x",
        ] {
            assert!(n(bad).is_err(), "{bad}");
        }
        assert_ne!(n("https://a.example/x"), n("https://a.example/X"));
        assert_ne!(n("https://a.example/x"), n("http://a.example/x"));
        assert_ne!(n("https://a.example/x"), n("https://a.example/x/"));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn replay_cache_purges_and_fails_closed() {
        let mut c = ReplayCache::new(2);
        assert!(c.insert([1; 32], 100, 50).is_ok());
        assert!(c.insert([1; 32], 100, 50).is_err(), "replay");
        assert!(c.insert([2; 32], 120, 50).is_ok());
        assert!(matches!(
            c.insert([3; 32], 120, 60),
            Err(TokenError::Unavailable(_))
        ));
        // At 101 the first entry has expired and makes room.
        assert!(c.insert([3; 32], 160, 101).is_ok());
        // An earlier `now` cannot bring back an entry that was purged.
        assert!(c.insert([1; 32], 100, 90).is_err());
    }

    #[test]
    fn replay_keys_do_not_collide_across_the_separator() {
        assert_ne!(replay_key("ab", "c"), replay_key("a", "bc"));
    }
}
