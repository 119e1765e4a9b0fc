//! Our own signing keys: Ed25519 (the default) or ECDSA P-256.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde_json::{Map, Value};

use crate::jwk::{ec_public, ed25519_public};
use crate::{Alg, JoseError, Jwk, b64url_encode};

/// PKCS#8 v1 prefix for an Ed25519 private key (RFC 8410 §7): the 32-byte
/// seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

enum Inner {
    /// aws-lc's Ed25519: it signs in about 10 µs where ring takes 25 on this
    /// class of machine (the token path signs once per token).
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    Es256(signature::EcdsaKeyPair),
}

/// A private signing key with its `kid`. `Debug` shows the algorithm, the
/// `kid` and the public thumbprint, never key bytes.
pub struct SigningKey {
    alg: Alg,
    kid: String,
    pkcs8: Vec<u8>,
    inner: Inner,
    public: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("thumbprint", &self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        wipe(&mut self.pkcs8);
    }
}

/// Overwrites private key bytes before their memory is given back.
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(bytes);
}

fn check_kid(kid: &str) -> Result<(), JoseError> {
    if kid.is_empty() || kid.len() > 256 {
        return Err(JoseError::KeyRejected(
            "kid must be 1 to 256 bytes long".into(),
        ));
    }
    Ok(())
}

impl SigningKey {
    /// Generates a fresh key: `EdDSA` or `ES256`.
    pub fn generate(alg: Alg, kid: String) -> Result<SigningKey, JoseError> {
        check_kid(&kid)?;
        fn failed<E>(_: E) -> JoseError {
            JoseError::Crypto("key generation failed".into())
        }
        let doc = match alg {
            Alg::EdDSA => aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .map(|doc| doc.as_ref().to_vec())
            .map_err(failed),
            Alg::ES256 => signature::EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map(|doc| doc.as_ref().to_vec())
            .map_err(failed),
            other => {
                return Err(JoseError::Unsupported(format!(
                    "signing with {other}; only EdDSA and ES256"
                )));
            }
        };
        let mut doc = doc?;
        let key = SigningKey::from_pkcs8(alg, kid, &doc);
        wipe(&mut doc);
        key
    }

    /// Loads a PKCS#8 document (v1 or v2 for Ed25519).
    pub fn from_pkcs8(alg: Alg, kid: String, der: &[u8]) -> Result<SigningKey, JoseError> {
        check_kid(&kid)?;
        let inner = match alg {
            Alg::EdDSA => Inner::Ed25519(
                aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(
                    |_| JoseError::KeyRejected("not an Ed25519 PKCS#8 private key".into()),
                )?,
            ),
            Alg::ES256 => Inner::Es256(
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(|_| JoseError::KeyRejected("not a P-256 PKCS#8 private key".into()))?,
            ),
            other => {
                return Err(JoseError::Unsupported(format!(
                    "signing with {other}; only EdDSA and ES256"
                )));
            }
        };
        let material = match &inner {
            Inner::Ed25519(kp) => {
                use aws_lc_rs::signature::KeyPair as _;
                let x: [u8; 32] = kp.public_key().as_ref().try_into().map_err(|_| {
                    JoseError::KeyRejected("unexpected Ed25519 public key size".into())
                })?;
                ed25519_public(x)
            }
            Inner::Es256(kp) => ec_public(true, kp.public_key().as_ref()).ok_or_else(|| {
                JoseError::KeyRejected("unexpected P-256 public key encoding".into())
            })?,
        };
        let public = Jwk::from_parts(material, kid.clone(), alg);
        Ok(SigningKey {
            alg,
            kid,
            pkcs8: der.to_vec(),
            inner,
            public,
        })
    }

    /// An Ed25519 key from its 32-byte seed (the JWK `d`, RFC 8037).
    pub fn from_ed25519_seed(kid: String, seed: &[u8]) -> Result<SigningKey, JoseError> {
        if seed.len() != 32 {
            return Err(JoseError::KeyRejected(
                "an Ed25519 seed is exactly 32 bytes".into(),
            ));
        }
        let mut der = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len());
        der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        der.extend_from_slice(seed);
        let key = SigningKey::from_pkcs8(Alg::EdDSA, kid, &der);
        wipe(&mut der);
        key
    }

    /// The PKCS#8 document, to store in a file only the owner can read.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// `EdDSA` or `ES256`.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The key ID put into every header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `alg` and `use: "sig"`.
    pub fn public_jwk(&self) -> Jwk {
        self.public.clone()
    }

    /// Signs `payload` as a compact JWS. `alg` and `kid` are set here,
    /// replacing any given. Refused in `header`: `jku`, `x5u`, `x5c`,
    /// `b64` other than `true`, and a `jwk` that is not this key's public key.
    pub fn sign(&self, header: Map<String, Value>, payload: &[u8]) -> Result<String, JoseError> {
        let mut header = header;
        for name in ["jku", "x5u", "x5c"] {
            if header.contains_key(name) {
                return Err(JoseError::HeaderRejected(format!(
                    "header `{name}` is refused"
                )));
            }
        }
        if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
            return Err(JoseError::HeaderRejected(
                "unencoded payloads (`b64`) are refused".into(),
            ));
        }
        if let Some(j) = header.get("jwk") {
            let embedded = Jwk::from_public_json(j)
                .map_err(|e| JoseError::HeaderRejected(format!("embedded `jwk`: {e}")))?;
            if embedded.thumbprint() != self.public.thumbprint() {
                return Err(JoseError::HeaderRejected(
                    "embedded `jwk` is not this key's public key".into(),
                ));
            }
        }
        header.insert("alg".into(), Value::String(self.alg.as_str().into()));
        header.insert("kid".into(), Value::String(self.kid.clone()));
        let header_json = serde_json::to_vec(&Value::Object(header))
            .map_err(|_| JoseError::Malformed("header cannot be serialized".into()))?;
        let mut token = b64url_encode(&header_json);
        token.push('.');
        token.push_str(&b64url_encode(payload));
        let sig = self.sign_input(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64url_encode(&sig));
        Ok(token)
    }

    /// The raw signature over a JWS signing input (`header.payload` in
    /// base64url). For reproducing published vectors; use [`SigningKey::sign`]
    /// to make tokens.
    pub fn sign_input(&self, signing_input: &[u8]) -> Result<Vec<u8>, JoseError> {
        match &self.inner {
            Inner::Ed25519(kp) => Ok(kp.sign(signing_input).as_ref().to_vec()),
            Inner::Es256(kp) => kp
                .sign(&SystemRandom::new(), signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JoseError::Crypto("ECDSA signing failed".into())),
        }
    }
}
