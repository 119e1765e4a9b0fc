//! The token service's rules, without storage or HTTP serving.
//!
//! ```text
//!   client assertion ─► assertion::{private_key_jwt, spiffe, federation} ─► which agent
//!   DPoP proof       ─► dpop::check (htm, htu, iat window, jti replay, ath, nonce) ─► jkt
//!   task token       ◄─ keys::KeyRing::sign(profile::AccessClaims)   (RFC 9068, at+jwt)
//!   presented token  ─► profile::verify (signature, typ, iss, aud, exp) ─► revocation list
//! ```
//!
//! Every token is verified (signature with a pinned algorithm, via `mandate-jose`)
//! before any of its claims is read.
#![forbid(unsafe_code)]

pub mod claims;
pub mod error;

pub use claims::{ClaimError, Claims, TimeRules};
pub use error::{TokenError, untrusted};
