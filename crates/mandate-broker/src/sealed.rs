//! Sealed values: AES-256-GCM under a master key, bound to the row they belong to.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_types::Secret;
use ring::aead::{Aad, NONCE_LEN, Nonce};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::keys::{KeyId, MasterKeys};

/// The version tag of the encoding, first field of every sealed string.
const VERSION: &str = "v1";

/// Bytes of the GCM authentication tag appended to the ciphertext.
const TAG_LEN: usize = 16;

/// The largest plaintext sealed (credentials are small; a bound keeps rows small).
pub const MAX_PLAINTEXT: usize = 64 * 1024;

/// Why a value could not be sealed or opened. Says nothing of the plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The stored string is not a sealed value of a known version.
    #[error("malformed sealed value: {reason}")]
    Malformed { reason: &'static str },
    /// It was sealed under a key no longer (or not yet) in the key list.
    #[error("sealed under key `{key_id}`, which is not in the master key list")]
    UnknownKey { key_id: String },
    /// Authentication failed: another key with the same id, another row's value
    /// (associated data differs), or tampering.
    #[error("sealed value does not authenticate (wrong key, wrong row or tampered)")]
    Unauthentic,
    #[error("plaintext of {len} bytes exceeds the {MAX_PLAINTEXT}-byte limit")]
    TooLarge { len: usize },
    #[error("the system random number generator failed")]
    Random,
}

/// A value sealed under one master key: `v1.<key id>.<nonce>.<ciphertext and tag>`,
/// both binary fields in unpadded base64url. Not secret, but useless without the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// The id of the key that sealed it.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The ciphertext with its tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION}.{}.{}.{}",
            self.key_id,
            URL_SAFE_NO_PAD.encode(self.nonce),
            URL_SAFE_NO_PAD.encode(&self.ciphertext)
        )
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl FromStr for Sealed {
    type Err = SealError;

    fn from_str(s: &str) -> Result<Self, SealError> {
        let malformed = |reason| SealError::Malformed { reason };
        let mut fields = s.split('.');
        let (Some(version), Some(kid), Some(nonce), Some(ct), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(malformed("expected four dot-separated fields"));
        };
        if version != VERSION {
            return Err(malformed("unknown version (expected `v1`)"));
        }
        let key_id = KeyId::parse(kid).ok_or(malformed("bad key id"))?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| malformed("nonce is not unpadded base64url"))?
            .try_into()
            .map_err(|_| malformed("nonce is not 96 bits"))?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ct)
            .map_err(|_| malformed("ciphertext is not unpadded base64url"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(malformed("ciphertext shorter than its tag"));
        }
        Ok(Self {
            key_id,
            nonce,
            ciphertext,
        })
    }
}

/// What the cipher authenticates besides the plaintext: the format version, the key id
/// and the caller's row identity, so a value moved to another row (or relabelled with
/// another key id) does not open.
fn associated_data(key_id: &KeyId, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + key_id.as_str().len() + aad.len());
    out.extend_from_slice(b"mandate.sealed.");
    out.extend_from_slice(VERSION.as_bytes());
    out.push(0);
    out.extend_from_slice(key_id.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(aad);
    out
}

impl MasterKeys {
    /// Seals `plaintext` under the newest key with a fresh random 96-bit nonce. `aad`
    /// names the row the value belongs to (e.g. `tenant/name`); opening needs the same.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
            });
        }
        let key = self.newest();
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut in_out = plaintext.to_vec();
        key.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(key.id(), aad)),
                &mut in_out,
            )
            // Only fails for plaintexts beyond GCM's limit (~64 GiB), excluded above.
            .map_err(|_| SealError::TooLarge {
                len: plaintext.len(),
            })?;
        Ok(Sealed {
            key_id: key.id().clone(),
            nonce,
            ciphertext: in_out,
        })
    }

    /// Opens a sealed value with the key it names, checking `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Secret<Vec<u8>>, SealError> {
        let key = self
            .key(sealed.key_id.as_str())
            .ok_or_else(|| SealError::UnknownKey {
                key_id: sealed.key_id.to_string(),
            })?;
        let mut in_out = sealed.ciphertext.clone();
        let len = key
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(associated_data(&sealed.key_id, aad)),
                &mut in_out,
            )
            .map_err(|_| SealError::Unauthentic)?
            .len();
        in_out.truncate(len);
        Ok(Secret::new(in_out))
    }

    /// Whether `sealed` is under a key other than the newest (rotation pending).
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id != *self.newest().id()
    }

    /// Opens `sealed` and seals it again under the newest key, same `aad`.
    pub fn reseal(&self, sealed: &Sealed, aad: &[u8]) -> Result<Sealed, SealError> {
        let plaintext = self.open(sealed, aad)?;
        self.seal(plaintext.expose(), aad)
    }
}
