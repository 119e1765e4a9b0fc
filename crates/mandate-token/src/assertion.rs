//! `private_key_jwt` client authentication (RFC 7523 §3, RFC 7521 §4.2): the agent
//! signs a short-lived JWT with one of its registered keys.

use mandate_jose::{Jwk, Rules, peek_header, verify};
use serde_json::Value;

use crate::claims::{Claims, TimeRules};
use crate::error::{TokenError, untrusted};

/// The `client_assertion_type` for JWT assertions.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest assertion lifetime we accept (`exp` − now), seconds: an hour, what stock
/// clients such as authlib sign (their `jti` is remembered until `exp`, so a longer
/// lifetime never opens a replay).
pub const MAX_ASSERTION_LIFETIME: i64 = 3_600;
/// Longest assertion we read, bytes.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// A verified client assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `iss` = `sub`: the client id (an agent id).
    pub client_id: String,
    pub jti: String,
    /// `exp`, Unix seconds: how long the `jti` must be remembered.
    pub expires_at: i64,
}

/// Reads `iss` from an assertion that has NOT been verified yet, only to choose
/// whose keys to verify it with (and which kind of assertion it is). Nothing read
/// here is trusted; the caller verifies before using anything.
pub fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    let bad = |m: &str| TokenError::InvalidClient(format!("the client assertion is {m}"));
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(bad("too large"));
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a compact JWS"));
    };
    let bytes = mandate_jose::b64url_decode(payload).map_err(|_| bad("not base64url"))?;
    let claims = Claims::from_payload(&bytes).map_err(|_| bad("not a JSON claims set"))?;
    claims
        .required_str("iss")
        .map(str::to_owned)
        .map_err(|_| bad("missing `iss`"))
}

/// Verifies a `private_key_jwt` assertion from `client_id` against its registered
/// public JWKs. The key is chosen by `kid` when the header has one (else each key is
/// tried), and the algorithm is pinned by the key. `iss` and `sub` must equal the
/// client id, `aud` must name one of `audiences`, `exp` must be within
/// [`MAX_ASSERTION_LIFETIME`], `jti` must be present (the caller records it to refuse
/// a replay).
pub fn verify_private_key_jwt(
    token: &str,
    client_id: &str,
    keys: &[Value],
    audiences: &[&str],
    now: i64,
) -> Result<Assertion, TokenError> {
    verify_client_assertion(token, client_id, &ClientKeys::parse(keys), audiences, now)
}

/// A client's registered public JWKs, parsed and checked once (a key that does not
/// parse as a public JWK is left out, as if it were not registered), so that a caller
/// that keeps them verifies assertions without parsing the keys again.
#[derive(Debug, Clone, Default)]
pub struct ClientKeys {
    keys: Vec<Jwk>,
}

impl ClientKeys {
    pub fn parse(keys: &[Value]) -> ClientKeys {
        ClientKeys {
            keys: keys
                .iter()
                .filter_map(|value| Jwk::from_public_json(value).ok())
                .collect(),
        }
    }
}

/// [`verify_private_key_jwt`] against keys parsed before.
pub fn verify_client_assertion(
    token: &str,
    client_id: &str,
    keys: &ClientKeys,
    audiences: &[&str],
    now: i64,
) -> Result<Assertion, TokenError> {
    let bad = |m: String| TokenError::InvalidClient(m);
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(bad("the client assertion is too large".into()));
    }
    let header = peek_header(token).map_err(|e| bad(format!("the client assertion is {e}")))?;
    let mut candidates = Vec::new();
    for jwk in &keys.keys {
        if let Some(kid) = &header.kid
            && jwk.kid() != Some(kid.as_str())
        {
            continue;
        }
        let alg = match jwk.alg() {
            Some(alg) => alg,
            None if jwk.allowed_algs().contains(&header.alg) => header.alg,
            None => continue,
        };
        candidates.push((jwk, alg));
    }
    if candidates.is_empty() {
        return Err(bad(match &header.kid {
            Some(kid) => format!("no registered key of the client has kid {}", untrusted(kid)),
            None => "no registered key of the client fits the assertion's algorithm".into(),
        }));
    }
    let rules = Rules {
        max_len: MAX_ASSERTION_BYTES,
        ..Rules::default()
    };
    let mut last = String::from("the client assertion's signature does not verify");
    let mut verified = None;
    for (jwk, alg) in &candidates {
        match verify(token, jwk, *alg, &rules) {
            Ok(v) => {
                verified = Some(v);
                break;
            }
            Err(e) => last = format!("the client assertion is refused: {e}"),
        }
    }
    let verified = verified.ok_or_else(|| bad(last))?;
    let claims = Claims::from_payload(&verified.payload)
        .map_err(|e| bad(format!("the client assertion {e}")))?;
    let cl = |e: crate::claims::ClaimError| bad(format!("client assertion: {e}"));
    let iss = claims.required_str("iss").map_err(cl)?;
    let sub = claims.required_str("sub").map_err(cl)?;
    if iss != client_id || sub != client_id {
        return Err(bad(
            "client assertion: `iss` and `sub` must both be the client id".into(),
        ));
    }
    claims.expect_audience(audiences).map_err(cl)?;
    let mut rules = TimeRules::at(now);
    rules.max_lifetime = Some(MAX_ASSERTION_LIFETIME);
    claims.check_times(&rules).map_err(cl)?;
    let jti = claims.required_str("jti").map_err(cl)?;
    if jti.len() > 256 {
        return Err(bad("client assertion: `jti` is too long".into()));
    }
    Ok(Assertion {
        client_id: client_id.to_owned(),
        jti: jti.to_owned(),
        expires_at: claims.time("exp").map_err(cl)?.unwrap_or(now),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;
    use mandate_jose::{Alg, SigningKey};
    use serde_json::{Map, json};

    const AUD: &str = "https://as/oauth2/token";

    fn sign(key: &SigningKey, claims: Value) -> String {
        let Value::Object(map) = claims else {
            unreachable!()
        };
        key.sign(Map::new(), &serde_json::to_vec(&map).unwrap())
            .unwrap()
    }

    fn claims(client: &str, now: i64) -> Value {
        json!({"iss": client, "sub": client, "aud": AUD, "exp": now + 60, "iat": now, "jti": "j1"})
    }

    #[test]
    fn a_registered_key_authenticates_and_others_do_not() {
        let key = SigningKey::generate(Alg::ES256, "k1".into()).unwrap();
        let other = SigningKey::generate(Alg::ES256, "k1".into()).unwrap();
        let keys = [key.public_jwk().to_public_json()];
        let t = sign(&key, claims("agt_a", 1000));
        let a = verify_private_key_jwt(&t, "agt_a", &keys, &[AUD], 1000).unwrap();
        assert_eq!(a.jti, "j1");
        assert_eq!(unverified_issuer(&t).unwrap(), "agt_a");
        let forged = sign(&other, claims("agt_a", 1000));
        assert!(verify_private_key_jwt(&forged, "agt_a", &keys, &[AUD], 1000).is_err());
        assert!(verify_private_key_jwt(&t, "agt_b", &keys, &[AUD], 1000).is_err());
        assert!(verify_private_key_jwt(&t, "agt_a", &[], &[AUD], 1000).is_err());
    }

    #[test]
    fn claims_are_enforced() {
        let key = SigningKey::generate(Alg::EdDSA, "k".into()).unwrap();
        let keys = [key.public_jwk().to_public_json()];
        let ok = |c: Value| verify_private_key_jwt(&sign(&key, c), "agt_a", &keys, &[AUD], 1000);
        let mut c = claims("agt_a", 1000);
        c["aud"] = json!("https://other/token");
        assert!(ok(c).is_err(), "aud");
        let mut c = claims("agt_a", 1000);
        c["sub"] = json!("agt_b");
        assert!(ok(c).is_err(), "sub");
        let mut c = claims("agt_a", 1000);
        c["exp"] = json!(1000 + MAX_ASSERTION_LIFETIME + 61);
        assert!(ok(c).is_err(), "lifetime");
        let mut c = claims("agt_a", 1000);
        c["exp"] = json!(900);
        assert!(ok(c).is_err(), "expired");
        let mut c = claims("agt_a", 1000);
        c.as_object_mut().unwrap().remove("jti");
        assert!(ok(c).is_err(), "jti");
        let mut c = claims("agt_a", 1000);
        c.as_object_mut().unwrap().remove("exp");
        assert!(ok(c).is_err(), "exp");
        assert!(ok(claims("agt_a", 1000)).is_ok());
    }

    #[test]
    fn hostile_assertions() {
        let key = SigningKey::generate(Alg::EdDSA, "k".into()).unwrap();
        let keys = [key.public_jwk().to_public_json()];
        let good = sign(&key, claims("agt_a", 1000));
        let (_, rest) = good.split_once('.').unwrap();
        for header in [
            json!({"alg": "none", "kid": "k"}),
            json!({"alg": "HS256", "kid": "k"}),
            json!({"alg": "ES256", "kid": "k"}),
            json!({"alg": "EdDSA", "kid": "k", "jku": "https://evil/jwks"}),
            json!({"alg": "EdDSA", "kid": "k", "jwk": key.public_jwk().to_public_json()}),
            json!({"alg": "EdDSA", "kid": "k", "crit": ["x"], "x": 1}),
            json!({"alg": "EdDSA", "kid": "other"}),
        ] {
            let h = mandate_jose::b64url_encode(header.to_string().as_bytes());
            let t = format!("{h}.{rest}");
            let r = verify_private_key_jwt(&t, "agt_a", &keys, &[AUD], 1000);
            assert!(matches!(r, Err(TokenError::InvalidClient(_))), "{header}");
        }
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "....",
            &"x".repeat(MAX_ASSERTION_BYTES + 1),
        ] {
            assert!(unverified_issuer(junk).is_err());
            assert!(verify_private_key_jwt(junk, "agt_a", &keys, &[AUD], 1000).is_err());
        }
    }
}
