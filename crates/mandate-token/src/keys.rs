//! The token service's signing keys and the key set every verifier trusts.
//!
//! Each replica signs with its own private key (Ed25519 by default, ES256 on request)
//! and publishes only the public half in the store; the JWKS served at `/oauth2/jwks`
//! and the set verifiers use is the union of the published keys that are not yet
//! retired. A rotation publishes the new key first and keeps the old one published
//! for an overlap window (at least the longest token lifetime), so a token signed just
//! before a rotation still verifies everywhere.
//!
//! A [`KeyRing`] is an immutable snapshot; its owner swaps in a new one when keys change.

use std::collections::HashMap;
use std::sync::Arc;

use mandate_jose::{Alg, Jwk, Rules, SigningKey, peek_header, verify};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::claims::Claims;
use crate::error::TokenError;

/// Why a token could not be verified with the ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The token names a `kid` the ring does not hold: refresh the published keys
    /// (rate-limited) and try once more.
    #[error("the token's key is unknown")]
    UnknownKid,
    /// Anything else: malformed, wrong `typ`, bad signature, refused header.
    #[error("{0}")]
    Rejected(String),
}

/// Signs our tokens and verifies them.
#[derive(Debug, Clone)]
pub struct KeyRing {
    signer: Arc<SigningKey>,
    /// Every published, unretired public key by `kid` (the signer's included).
    trusted: HashMap<String, (Jwk, Alg)>,
}

/// Longest token we sign or accept, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

impl KeyRing {
    /// A ring signing with `signer` and trusting `published` (public JWKs with `kid`
    /// and `alg`); keys without either are skipped with a warning.
    pub fn new(signer: Arc<SigningKey>, published: &[Value]) -> KeyRing {
        let mut trusted = HashMap::new();
        for value in published {
            match Jwk::from_public_json(value) {
                Ok(jwk) => match (jwk.kid().map(str::to_owned), jwk.alg()) {
                    (Some(kid), Some(alg)) => {
                        trusted.insert(kid, (jwk, alg));
                    }
                    _ => tracing::warn!("a published token key lacks `kid` or `alg`; skipped"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "a published token key does not parse; skipped")
                }
            }
        }
        let own = signer.public_jwk();
        trusted.insert(signer.kid().to_owned(), (own, signer.alg()));
        KeyRing { signer, trusted }
    }

    pub fn signer(&self) -> &SigningKey {
        &self.signer
    }

    /// The signing key, shared (to build the next ring with the same signer).
    pub fn signer_arc(&self) -> Arc<SigningKey> {
        self.signer.clone()
    }

    /// Whether the ring holds `kid`.
    pub fn knows(&self, kid: &str) -> bool {
        self.trusted.contains_key(kid)
    }

    /// The JWK Set to publish (public keys only, sorted by `kid`).
    pub fn jwks(&self) -> Value {
        let mut keys: Vec<(&String, Value)> = self
            .trusted
            .iter()
            .map(|(kid, (jwk, _))| {
                let mut public = jwk.to_public_json();
                if let Value::Object(map) = &mut public {
                    map.insert("use".into(), json!("sig"));
                }
                (kid, public)
            })
            .collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        json!({ "keys": keys.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })
    }

    /// Signs `claims` as a JWT with header `typ`.
    pub fn sign<T: Serialize + ?Sized>(&self, typ: &str, claims: &T) -> Result<String, TokenError> {
        let mut header = Map::new();
        header.insert("typ".into(), Value::String(typ.to_owned()));
        let payload = serde_json::to_vec(claims)
            .map_err(|_| TokenError::Unavailable("the token cannot be encoded".into()))?;
        self.signer
            .sign(header, &payload)
            .map_err(|e| TokenError::Unavailable(format!("signing failed: {e}")))
    }

    /// Verifies one of our tokens: size, `kid` known, the algorithm pinned by that
    /// key, `typ` as given, the signature; then parses the claims. No claim is
    /// checked here (see the profile).
    pub fn verify(&self, token: &str, typ: &str) -> Result<Claims, KeyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(KeyError::Rejected("the token is too large".into()));
        }
        let header = peek_header(token).map_err(|e| KeyError::Rejected(e.to_string()))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| KeyError::Rejected("the token has no `kid`".into()))?;
        let (jwk, alg) = self.trusted.get(kid).ok_or(KeyError::UnknownKid)?;
        let rules = Rules {
            max_len: MAX_TOKEN_BYTES,
            typ: Some(typ.to_owned()),
            ..Rules::default()
        };
        let verified =
            verify(token, jwk, *alg, &rules).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Claims::from_payload(&verified.payload).map_err(|e| KeyError::Rejected(e.to_string()))
    }
}

/// A new signing key with a fresh random `kid`.
pub fn generate_signing_key(alg: Alg) -> Result<SigningKey, TokenError> {
    let kid = random_id("k")?;
    SigningKey::generate(alg, kid)
        .map_err(|e| TokenError::Unavailable(format!("key generation failed: {e}")))
}

/// `prefix` + 16 random bytes in base64url (unguessable ids: `jti`s, `kid`s).
pub fn random_id(prefix: &str) -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    getrandom(&mut bytes)?;
    Ok(format!("{prefix}{}", mandate_jose::b64url_encode(&bytes)))
}

/// `prefix` + the time in milliseconds (12 hex digits, so ids sort by time) + 16
/// random bytes in base64url: as unguessable as [`random_id`], and ids made close in
/// time sit close together in a database index, so a batch of new grants writes a few
/// of the index's pages instead of one page each. For ids that name something created
/// at `at`, where the time is no secret (a token's `jti`: its `iat` says as much).
pub fn time_ordered_id(
    prefix: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    getrandom(&mut bytes)?;
    // 48 bits of milliseconds run to the year 10889; before 1970 counts as 0.
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xffff_ffff_ffff;
    Ok(format!(
        "{prefix}{millis:012x}{}",
        mandate_jose::b64url_encode(&bytes)
    ))
}

fn getrandom(buf: &mut [u8]) -> Result<(), TokenError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| TokenError::Unavailable("the system random generator failed".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    fn ring_with(alg: Alg) -> (KeyRing, Arc<SigningKey>) {
        let key = Arc::new(generate_signing_key(alg).unwrap());
        (KeyRing::new(key.clone(), &[]), key)
    }

    #[test]
    fn time_ordered_ids_sort_by_time_and_stay_unguessable() {
        let t0 = chrono::DateTime::from_timestamp_millis(1_765_000_000_123).unwrap();
        let ids: Vec<String> = (0..40)
            .map(|i| time_ordered_id("t", t0 + chrono::Duration::milliseconds(i * 997)).unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "later ids sort after earlier ones");
        assert!(
            ids.iter()
                .all(|id| id.len() == 1 + 12 + 22 && id.starts_with('t'))
        );
        let same_ms: std::collections::HashSet<String> = (0..1000)
            .map(|_| time_ordered_id("t", t0).unwrap())
            .collect();
        assert_eq!(
            same_ms.len(),
            1000,
            "the random part tells ids of one millisecond apart"
        );
        assert!(ids[0].starts_with(&format!("t{:012x}", 1_765_000_000_123u64)));
        let before_1970 = chrono::DateTime::from_timestamp_millis(-5).unwrap();
        assert!(
            time_ordered_id("t", before_1970)
                .unwrap()
                .starts_with("t000000000000")
        );
    }

    #[test]
    fn signs_and_verifies_each_algorithm() {
        for alg in [Alg::EdDSA, Alg::ES256] {
            let (ring, _) = ring_with(alg);
            let mut claims = Map::new();
            claims.insert("sub".into(), json!("hum_1"));
            let token = ring.sign("at+jwt", &claims).unwrap();
            let back = ring.verify(&token, "at+jwt").unwrap();
            assert_eq!(back.str("sub").unwrap(), Some("hum_1"));
            assert!(ring.verify(&token, "dpop+jwt").is_err(), "typ is pinned");
        }
    }

    #[test]
    fn another_replicas_key_verifies_once_published_and_not_before() {
        let (a, _) = ring_with(Alg::EdDSA);
        let (b_alone, b_key) = ring_with(Alg::EdDSA);
        let token = a.sign("at+jwt", &Map::new()).unwrap();
        assert_eq!(b_alone.verify(&token, "at+jwt"), Err(KeyError::UnknownKid));
        let published = a.signer().public_jwk().to_public_json();
        let b = KeyRing::new(b_key, &[published]);
        assert!(b.verify(&token, "at+jwt").is_ok());
        assert_eq!(b.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(!b.jwks().to_string().contains("\"d\""), "public keys only");
    }

    #[test]
    fn tampering_and_confusion_are_refused() {
        let (ring, _) = ring_with(Alg::EdDSA);
        let token = ring.sign("at+jwt", &Map::new()).unwrap();
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(matches!(
            ring.verify(&flipped, "at+jwt"),
            Err(KeyError::Rejected(_))
        ));
        // Same kid, header re-labelled HS256 / none: the key pins the algorithm.
        let (_, payload_sig) = token.split_once('.').unwrap();
        let kid = ring.signer().kid();
        for alg in ["HS256", "none", "ES256"] {
            let header = mandate_jose::b64url_encode(
                json!({"alg": alg, "typ": "at+jwt", "kid": kid})
                    .to_string()
                    .as_bytes(),
            );
            let forged = format!("{header}.{payload_sig}");
            assert!(
                matches!(ring.verify(&forged, "at+jwt"), Err(KeyError::Rejected(_))),
                "{alg}"
            );
        }
        assert!(
            ring.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), "at+jwt")
                .is_err()
        );
    }
}
