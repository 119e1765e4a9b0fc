//! A console sign-in through an external identity provider, held between its redirect
//! and its callback in the store, so that whichever replica the callback reaches
//! finishes it (no sticky sessions needed behind a load balancer).
//!
//! The browser holds only a random handle (a cookie). The store keeps a record under
//! one hash of it, its contents (the OAuth `state`, OIDC `nonce`, PKCE verifier and
//! where to go next) sealed with AES-256-GCM under a key derived from another hash of
//! it: the store alone can neither read a held sign-in nor finish one. The record is
//! used once ([`OnceKind::ConsoleSignIn`]: one conditional write, so two callbacks
//! carrying the same cookie cannot both take it) and expires with the flow.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use mandate_store::{OnceKind, OnceRecord};
use mandate_types::Secret;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest, Sha256};

use crate::{CoreError, Service};

/// Domain separation of the two hashes of a handle.
const KEY_LABEL: &[u8] = b"mandate console sign-in key\0";
const ID_LABEL: &[u8] = b"mandate console sign-in id\0";
/// The largest sealed record accepted back from the store.
const MAX_SEALED: usize = 16 * 1024;

impl Service {
    /// Holds `secrets` for the sign-in the browser knows as `handle`, for `ttl`, under
    /// tenant `tenant` (by name). Refused ([`CoreError::Unauthenticated`]) when the
    /// configured tenant does not exist.
    pub async fn hold_external_sign_in(
        &self,
        tenant: &str,
        handle: &str,
        secrets: &Secret<String>,
        ttl: Duration,
    ) -> Result<(), CoreError> {
        let Some(tenant) = self.store.tenant_by_name(tenant).await? else {
            tracing::warn!(
                "external console sign-in refused: the configured tenant does not exist"
            );
            return Err(CoreError::Unauthenticated);
        };
        let id = record_id(handle);
        let data = seal(handle, &id, secrets.expose())?;
        self.store
            .put_once(&OnceRecord {
                kind: OnceKind::ConsoleSignIn,
                key_hash: id,
                tenant_id: tenant.id,
                data,
                expires_at: self.clock.now() + ttl,
                used_at: None,
            })
            .await?;
        Ok(())
    }

    /// The secrets held for `handle`, once, while the flow lasts: `None` when there is
    /// none (never started, taken already, expired, or not sealed by this handle).
    pub async fn take_external_sign_in(
        &self,
        handle: &str,
    ) -> Result<Option<Secret<String>>, CoreError> {
        let id = record_id(handle);
        let taken = self
            .store
            .use_once(OnceKind::ConsoleSignIn, &id, self.clock.now())
            .await?;
        let Some((record, true)) = taken else {
            return Ok(None);
        };
        let opened = open(handle, &id, &record.data);
        if opened.is_none() {
            tracing::warn!("a held console sign-in could not be opened with its handle");
        }
        Ok(opened.map(Secret::new))
    }
}

fn digest(label: &[u8], handle: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(label);
    hash.update(handle.as_bytes());
    hash.finalize().into()
}

/// The record's key in the store: lowercase hex.
fn record_id(handle: &str) -> String {
    digest(ID_LABEL, handle)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key(handle: &str) -> Result<LessSafeKey, CoreError> {
    UnboundKey::new(&AES_256_GCM, &digest(KEY_LABEL, handle))
        .map(LessSafeKey::new)
        .map_err(|_| CoreError::Internal("the sign-in key cannot be made".into()))
}

/// base64url(nonce ‖ ciphertext ‖ tag), bound to the record's id.
fn seal(handle: &str, id: &str, plain: &str) -> Result<String, CoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CoreError::Internal("no randomness for a sign-in".into()))?;
    let mut sealed = plain.as_bytes().to_vec();
    key(handle)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| CoreError::Internal("a sign-in cannot be sealed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

fn open(handle: &str, id: &str, data: &str) -> Option<String> {
    if data.len() > MAX_SEALED {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(data).ok()?;
    let (nonce, sealed) = bytes.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut sealed = sealed.to_vec();
    let plain = key(handle)
        .ok()?
        .open_in_place(nonce, Aad::from(id.as_bytes()), &mut sealed)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_handle_opens_what_it_sealed() {
        let handle = "h-0123456789abcdef0123456789abcdef";
        let id = record_id(handle);
        assert_eq!(id.len(), 64);
        assert_ne!(id, record_id("h-other"), "another handle, another record");
        let sealed = seal(handle, &id, r#"{"state":"s3cret"}"#).unwrap();
        assert!(
            !sealed.contains("s3cret"),
            "the store never sees the secrets"
        );
        assert_eq!(
            open(handle, &id, &sealed).as_deref(),
            Some(r#"{"state":"s3cret"}"#)
        );
        assert_ne!(
            sealed,
            seal(handle, &id, r#"{"state":"s3cret"}"#).unwrap(),
            "a fresh nonce each time"
        );

        // Another handle, another record's id, any flipped byte, truncation, garbage.
        assert_eq!(open("h-other", &id, &sealed), None);
        assert_eq!(open(handle, &record_id("h-other"), &sealed), None);
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..raw.len() {
            let mut flipped = raw.clone();
            flipped[i] ^= 0x01;
            assert_eq!(
                open(handle, &id, &URL_SAFE_NO_PAD.encode(&flipped)),
                None,
                "byte {i}"
            );
        }
        for bad in [
            "",
            "AAAA",
            "!!!",
            &sealed[..sealed.len() - 4],
            &"A".repeat(MAX_SEALED + 1),
        ] {
            assert_eq!(open(handle, &id, bad), None, "{bad:.20}");
        }
    }
}
