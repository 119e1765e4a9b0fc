//! The one error type of the token service, named by OAuth error codes.
//!
//! Each variant is an OAuth 2.0 / RFC 9449 / RFC 9396 error code; the HTTP layer maps
//! them to status codes and bodies in one place. Messages are written for the client
//! and never carry a token, a key or a secret; anything taken from a request is
//! shortened and escaped first ([`untrusted`]).

/// Why a token request or a token check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `invalid_request`: a parameter is missing, repeated or malformed.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_client`: client authentication failed.
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// `invalid_grant`: the grant (a subject token, a mandate) is invalid, expired or revoked.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client`: the client may not use this grant type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// `invalid_scope`: the scope asked for is wider than allowed.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// `invalid_authorization_details` (RFC 9396).
    #[error("invalid_authorization_details: {0}")]
    InvalidAuthorizationDetails(String),
    /// `invalid_target` (RFC 8707 / RFC 8693): the audience or resource is not allowed.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// `invalid_dpop_proof` (RFC 9449).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// `use_dpop_nonce` (RFC 9449 §8): retry with this server nonce.
    #[error("use_dpop_nonce: the server requires a DPoP nonce")]
    UseDpopNonce { nonce: String },
    /// `invalid_token` (RFC 6750): an access token presented to a resource is bad.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// `temporarily_unavailable`: a dependency (store, ledger) failed; nothing was issued.
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::UnauthorizedClient(_) => "unauthorized_client",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::InvalidAuthorizationDetails(_) => "invalid_authorization_details",
            TokenError::InvalidTarget(_) => "invalid_target",
            TokenError::InvalidDpopProof(_) => "invalid_dpop_proof",
            TokenError::UseDpopNonce { .. } => "use_dpop_nonce",
            TokenError::InvalidToken(_) => "invalid_token",
            TokenError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    /// The human-readable description (`error_description`).
    pub fn description(&self) -> String {
        match self {
            TokenError::InvalidRequest(m)
            | TokenError::InvalidClient(m)
            | TokenError::InvalidGrant(m)
            | TokenError::UnauthorizedClient(m)
            | TokenError::UnsupportedGrantType(m)
            | TokenError::InvalidScope(m)
            | TokenError::InvalidAuthorizationDetails(m)
            | TokenError::InvalidTarget(m)
            | TokenError::InvalidDpopProof(m)
            | TokenError::InvalidToken(m)
            | TokenError::Unavailable(m) => m.clone(),
            TokenError::UseDpopNonce { .. } => "the server requires a DPoP nonce".into(),
        }
    }
}

/// Shortens and escapes a string taken from a request, for use in an error message.
pub fn untrusted(s: &str) -> String {
    const MAX: usize = 60;
    let mut short: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        short.push('…');
    }
    format!("{short:?}")
}
