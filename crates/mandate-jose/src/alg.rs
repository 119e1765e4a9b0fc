//! The signature algorithms this crate knows.

use std::fmt;
use std::str::FromStr;

use crate::JoseError;
use crate::error::untrusted;

/// A JWS algorithm, by its JOSE name (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// Deliberately a closed, small set. `none` is not representable.
#[allow(
    clippy::upper_case_acronyms,
    reason = "the variants are the registered JOSE names"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA P-256 with SHA-256, fixed-length `r || s` signature.
    ES256,
    /// ECDSA P-384 with SHA-384, fixed-length `r || s` signature.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    PS256,
    /// HMAC-SHA-256.
    HS256,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 6] = [
        Alg::EdDSA,
        Alg::ES256,
        Alg::ES384,
        Alg::RS256,
        Alg::PS256,
        Alg::HS256,
    ];

    /// The JOSE name, e.g. `"ES256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::HS256 => "HS256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Registered JWS algorithms that we know of but refuse to implement.
const KNOWN_UNSUPPORTED: [&str; 8] = [
    "HS384", "HS512", "RS384", "RS512", "PS384", "PS512", "ES512", "ES256K",
];

impl FromStr for Alg {
    type Err = JoseError;

    /// Exact, case-sensitive JOSE names. `none` in any spelling is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(alg) = Alg::ALL.into_iter().find(|a| a.as_str() == s) {
            return Ok(alg);
        }
        if s.eq_ignore_ascii_case("none") {
            return Err(JoseError::HeaderRejected(
                "alg \"none\" is never accepted".into(),
            ));
        }
        if KNOWN_UNSUPPORTED.contains(&s) {
            return Err(JoseError::Unsupported(format!(
                "algorithm {} is deliberately not supported",
                untrusted(s)
            )));
        }
        Err(JoseError::Unsupported(format!(
            "unknown algorithm {}",
            untrusted(s)
        )))
    }
}
