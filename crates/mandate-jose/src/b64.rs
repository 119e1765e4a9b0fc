//! Strict base64url (RFC 7515 §2, RFC 4648 §5): URL alphabet, no padding,
//! no whitespace, and no non-zero trailing bits, so every byte string has
//! exactly one encoding.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::JoseError;

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes as base64url without padding.
pub fn b64url_encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

/// Decodes strict base64url: only `A-Z a-z 0-9 - _`, no `=`, canonical.
///
/// The error never echoes the input (it may be key material).
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, JoseError> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(JoseError::Malformed(
            "base64url contains a character outside the URL-safe alphabet".into(),
        ));
    }
    STRICT
        .decode(s)
        .map_err(|_| JoseError::Malformed("invalid base64url".into()))
}
