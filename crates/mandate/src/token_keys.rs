//! This replica's token-signing key and DPoP nonce secret, kept in files of mode 0600
//! under the data directory (never in the store; only public keys are published).
//!
//! `DATA/token-signing-key.json`: `{"kid", "alg", "created_at", "pkcs8"}` (PKCS#8 in
//! base64url). A key older than the rotation age is replaced on start and by the
//! hourly check; the replacement is written to a temporary file (0600) and renamed
//! over the old one, so a crash leaves one whole key.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use mandate_core::TokenService;
use mandate_jose::{Alg, SigningKey, b64url_decode, b64url_encode};
use serde::{Deserialize, Serialize};

const KEY_FILE: &str = "token-signing-key.json";
const NONCE_FILE: &str = "dpop-nonce-key";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kid: String,
    alg: String,
    created_at: DateTime<Utc>,
    pkcs8: String,
}

/// A signing key and when it was made.
pub struct LoadedKey {
    pub key: SigningKey,
    pub created_at: DateTime<Utc>,
    /// The key this one replaced just now, if any: retire it after the overlap.
    pub replaced: Option<String>,
}

fn alg_named(name: &str) -> anyhow::Result<Alg> {
    match name {
        "EdDSA" => Ok(Alg::EdDSA),
        "ES256" => Ok(Alg::ES256),
        other => anyhow::bail!("unsupported token signing algorithm `{other}`"),
    }
}

/// Loads `DATA/token-signing-key.json`, creating it on first start and replacing it
/// when it is older than `max_age` or of another algorithm than `alg`.
pub fn load_or_rotate(
    data_dir: &Path,
    alg: &str,
    max_age: chrono::Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<LoadedKey> {
    let path = data_dir.join(KEY_FILE);
    let wanted = alg_named(alg)?;
    let current = match std::fs::read(&path) {
        Ok(bytes) => {
            let file: KeyFile = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a token key file", path.display()))?;
            let der = b64url_decode(&file.pkcs8)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let key = SigningKey::from_pkcs8(alg_named(&file.alg)?, file.kid.clone(), &der)
                .map_err(|e| anyhow::anyhow!("{} holds no valid key: {e}", path.display()))?;
            Some((key, file.created_at))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match current {
        Some((key, created_at)) if key.alg() == wanted && now - created_at < max_age => {
            Ok(LoadedKey {
                key,
                created_at,
                replaced: None,
            })
        }
        previous => {
            let key = mandate_token::generate_signing_key(wanted)
                .map_err(|e| anyhow::anyhow!("cannot generate a token signing key: {e}"))?;
            let file = KeyFile {
                kid: key.kid().to_owned(),
                alg: key.alg().as_str().to_owned(),
                created_at: now,
                pkcs8: b64url_encode(key.pkcs8()),
            };
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let tmp = data_dir.join(format!("{KEY_FILE}.new"));
            let _ = std::fs::remove_file(&tmp);
            crate::serve::write_private(&tmp, &serde_json::to_vec(&file)?)?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
            let replaced = previous.map(|(old, _)| old.kid().to_owned());
            tracing::info!(kid = key.kid(), replaced = ?replaced, "token signing key created");
            Ok(LoadedKey {
                key,
                created_at: now,
                replaced,
            })
        }
    }
}

/// `DATA/dpop-nonce-key`: 32 random bytes, created on first start.
pub fn nonce_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(NONCE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use ring::rand::SecureRandom as _;
            let mut secret = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            crate::serve::write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Checks hourly whether the key is due for rotation; rotates through the service
/// (publish the new key, retire the old one after the overlap).
pub async fn rotate_when_due(
    tokens: Arc<TokenService>,
    data_dir: std::path::PathBuf,
    alg: String,
    max_age: chrono::Duration,
    mut created_at: DateTime<Utc>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3_600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Utc::now();
        if now - created_at < max_age {
            continue;
        }
        match load_or_rotate(&data_dir, &alg, max_age, now) {
            Ok(loaded) if loaded.replaced.is_some() => {
                created_at = loaded.created_at;
                if let Err(e) = tokens.rotate(loaded.key).await {
                    tracing::warn!(error = %e, "token key rotation failed; will retry");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "token key rotation failed; will retry"),
        }
    }
}
