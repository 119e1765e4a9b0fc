//! The OAuth authorization server's front half: client registration (RFC 7591) and the
//! authorization endpoint whose consent screen is the mandate. The token endpoint's
//! `authorization_code` grant lives with the other grants (`tokens/code.rs`).

mod authorize;
mod register;

pub use authorize::{
    AuthorizeError, AuthorizeParams, CODE_TTL_SECONDS, ConsentChoices, MAX_MANDATE_HOURS,
    OfferedTool, PendingAuthorization, ValidAuthorization, authorization_response, level,
};
pub(crate) use authorize::{CodeGrant, sha256_hex};
pub use register::{ClientMetadata, MAX_REGISTRATION_BYTES, RegisteredClient, RegistrationError};
