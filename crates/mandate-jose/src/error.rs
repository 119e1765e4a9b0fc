//! The one error type of this crate.

use crate::Alg;

/// Why a JOSE operation failed.
///
/// Messages name members and rules, never key material; strings that come
/// from a token (such as an unknown `alg`) are shortened and escaped before
/// they are stored here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// The input is not well-formed JOSE (segments, base64url, JSON, types).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Well-formed, but uses something this crate deliberately does not do.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The token's `alg` is not the algorithm the caller pinned.
    #[error("algorithm mismatch: expected {expected}, token says {found}")]
    AlgorithmMismatch {
        /// The pinned algorithm.
        expected: Alg,
        /// What the token's header said (shortened, escaped).
        found: String,
    },
    /// The signature or MAC does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The key is unfit: malformed, too weak, inconsistent, or not meant for this use.
    #[error("key rejected: {0}")]
    KeyRejected(String),
    /// The protected header asks for something we refuse.
    #[error("header rejected: {0}")]
    HeaderRejected(String),
    /// The token exceeds the size limit.
    #[error("token too large")]
    TooLarge,
    /// The system random number generator or a signing primitive failed.
    #[error("crypto failure: {0}")]
    Crypto(String),
}

/// Shortens and escapes an untrusted string for use in an error message.
pub(crate) fn untrusted(s: &str) -> String {
    const MAX: usize = 40;
    let mut short: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        short.push('…');
    }
    format!("{short:?}")
}
