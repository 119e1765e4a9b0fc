//! Attempts counted per key and per minute across every replica sharing the store:
//! dynamic client registrations per client address, console sign-ins per sign-in name
//! and per address. A key's window starts with its first attempt and lasts a minute;
//! one row per key, counted by one conditional write, so N replicas behind a load
//! balancer allow what one would. Keys are kept only as SHA-256 hashes.

use mandate_domain::canonical::hex;
use sha2::{Digest, Sha256};

use crate::{CoreError, Service};

/// How long a key's window lasts.
const WINDOW: chrono::Duration = chrono::Duration::seconds(60);

impl Service {
    /// Counts one attempt under each of `keys` (within `scope`, e.g. `registration`) in
    /// the current minute; `false` when any key is over `per_minute`. A store that does
    /// not answer is an error, never an allowance.
    pub async fn attempt_allowed(
        &self,
        scope: &str,
        keys: &[String],
        per_minute: u32,
    ) -> Result<bool, CoreError> {
        let now = self.clock.now();
        let mut allowed = true;
        for key in keys {
            let count = self
                .store
                .count_attempt(&key_hash(scope, key), now, WINDOW)
                .await?;
            if count == 1 {
                // A window started: those that ended are of no use any more (one
                // indexed delete per new window).
                if let Err(e) = self.store.forget_attempts(now - WINDOW).await {
                    tracing::warn!(error = %e, "old attempt counts could not be deleted");
                }
            }
            allowed &= count <= u64::from(per_minute);
        }
        Ok(allowed)
    }
}

fn key_hash(scope: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::key_hash;

    #[test]
    fn keys_are_hashed_apart_per_scope() {
        assert_ne!(
            key_hash("registration", "10.0.0.1"),
            key_hash("sign-in", "10.0.0.1")
        );
        assert_eq!(key_hash("x", "y").len(), 64);
        assert!(!key_hash("sign-in", "alice@example.com").contains("alice"));
    }
}
