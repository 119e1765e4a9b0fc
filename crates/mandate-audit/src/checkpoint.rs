use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SubsecRound as _, Utc};
use mandate_domain::canonical;
use mandate_types::TenantId;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

use crate::Head;

/// A signed statement that a tenant's chain had `hash` at `seq`. Deleting or changing
/// any event up to `seq` — or the tail after it — no longer matches a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub tenant_id: TenantId,
    pub seq: u64,
    pub hash: String,
    pub at: DateTime<Utc>,
    pub key_id: String,
    /// Ed25519 over [`Checkpoint::signed_bytes`], base64url without padding.
    pub signature: String,
}

impl Checkpoint {
    /// The canonical JSON of every member but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        canonical::to_vec(&json!({
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
        }))
    }

    /// Whether the signature is `key`'s over this checkpoint.
    pub fn verify(&self, key: &PublicKey) -> bool {
        if key.key_id != self.key_id {
            return false;
        }
        let Ok(signature) = URL_SAFE_NO_PAD.decode(&self.signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &key.bytes)
            .verify(&self.signed_bytes(), &signature)
            .is_ok()
    }
}

/// A checkpoint signing key's public half, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKey {
    pub key_id: String,
    /// The raw 32-byte Ed25519 public key.
    #[serde(with = "b64")]
    #[schema(value_type = String)]
    pub bytes: Vec<u8>,
}

impl PublicKey {
    pub fn from_bytes(bytes: Vec<u8>) -> PublicKey {
        PublicKey {
            key_id: key_id(&bytes),
            bytes,
        }
    }
}

fn key_id(public: &[u8]) -> String {
    let digest = canonical::hex(&Sha256::digest(public));
    format!("ed25519:{}", digest.get(..16).unwrap_or(&digest))
}

/// The private key that signs checkpoints. Kept by the binary in a file of mode 0600.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a signing key")]
    Generate,
    #[error("the signing key is not an Ed25519 PKCS#8 document")]
    Malformed,
}

impl SigningKey {
    /// A new key, and its PKCS#8 document to store.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), KeyError> {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Malformed)?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref().to_vec());
        Ok(SigningKey { pair, public })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `head` of `tenant` as of `at`.
    pub fn checkpoint(&self, tenant_id: TenantId, head: &Head, at: DateTime<Utc>) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            tenant_id,
            seq: head.seq,
            hash: head.hash.clone(),
            at: at.trunc_subsecs(6),
            key_id: self.public.key_id.clone(),
            signature: String::new(),
        };
        let signature = self.pair.sign(&checkpoint.signed_bytes());
        checkpoint.signature = URL_SAFE_NO_PAD.encode(signature.as_ref());
        checkpoint
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}
