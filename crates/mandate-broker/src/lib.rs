//! The credential broker: secrets sealed at rest, injected into upstream requests, and
//! dynamic credentials that live and die with a mandate.
//!
//! ```text
//!   operator ──secret──► MasterKeys::seal(plain, aad = "tenant/name") ──► Sealed ──text──► Vault (store)
//!                                                                                            │
//!   upstream ◄── Injection::header(secret) ◄── MasterKeys::open(sealed, aad) ◄───────────────┘
//!              (Header | Bearer | Basic; value marked sensitive)
//!
//!   mandate active ──► PostgresRoles::create_for_mandate ──► role LOGIN VALID UNTIL expiry
//!   mandate ends   ──► PostgresRoles::drop_for_mandate   ──► sessions terminated, role dropped
//! ```
//!
//! A secret in the clear only ever lives in a [`mandate_types::Secret`], which prints as
//! `<redacted>`: no error, `Debug` output or log line of this crate carries a secret, a
//! key or a password.
//!
//! # Sealing format
//!
//! AES-256-GCM with a random 96-bit nonce per value (ring's `SystemRandom`), under the
//! newest master key. A [`Sealed`] value is stored as text:
//!
//! ```text
//! v1.<key id>.<nonce: 12 bytes, base64url>.<ciphertext ‖ 16-byte tag, base64url>
//! ```
//!
//! (base64url without padding). The associated data authenticated with it is
//! `"mandate.sealed.v1" 0x00 <key id> 0x00 <caller's aad>`: the caller passes the row's
//! identity (e.g. `ten_…/github-token`), so a ciphertext copied into another row, or
//! relabelled with another key id, does not open. Random nonces bound a key to about
//! 2³² seals, far beyond any vault; rotate long before.
//!
//! # Master keys
//!
//! Set exactly one of:
//!
//! - `MANDATE_MASTER_KEY`: entries separated by commas, **newest first**, each
//!   `<key id>:<base64 of 32 bytes>` — e.g. `k2:3q2-7w…,k1:yv66vg…`. A key id is 1 to 32
//!   characters of `A-Z a-z 0-9 _ -`. The key may be standard or URL-safe base64,
//!   padded or not (`openssl rand -base64 32` works). An entry may omit its id
//!   (`<base64>` alone); its id is then `k` and the first 12 hex digits of the key's
//!   SHA-256.
//! - `MANDATE_MASTER_KEY_FILE`: a file of the same entries, one per line, newest first;
//!   blank lines and lines starting with `#` are skipped. On unix the file must not be
//!   accessible by group or others (mode `0600` or `0400`), or loading fails.
//!
//! Both set is an error; neither is `Ok(None)` from [`MasterKeys::from_env`] (the
//! caller decides). Errors name the entry by position, never echo key material.
//!
//! # Rotation
//!
//! 1. Generate a key and list it **first** (`k2:…,k1:…`); restart or reload. New seals
//!    use `k2`; values under `k1` still open.
//! 2. Reseal: for each stored value with [`MasterKeys::needs_reseal`], store
//!    [`MasterKeys::reseal`]'s result by compare-and-swap (the vault's
//!    `replace_sealed`), so a concurrent update is never overwritten.
//! 3. When no value names `k1` any more, remove it from the list.
//!
//! # Dynamic credentials
//!
//! [`postgres_roles::PostgresRoles`] creates a PostgreSQL login role per mandate, valid
//! until the mandate's expiry and member of the configured roles, and drops it (ending
//! its sessions) when the mandate ends.

mod inject;
mod keys;
pub mod postgres_roles;
mod sealed;

pub use inject::{
    BasicUsername, CredentialHeader, Injection, InjectionConfigError, InjectionError,
};
pub use keys::{
    KEY_LEN, KeyError, KeyId, MASTER_KEY_FILE_VAR, MASTER_KEY_VAR, MasterKey, MasterKeys,
};
pub use sealed::{MAX_PLAINTEXT, SealError, Sealed};

#[cfg(test)]
mod tests;
