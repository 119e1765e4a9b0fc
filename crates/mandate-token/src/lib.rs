//! The token service's rules, without storage or HTTP serving.
//!
//! ```text
//!   client assertion ─► assertion / spiffe / federation ─► which agent
//!   DPoP proof       ─► dpop::check (htm, htu, iat window, jti replay, ath, nonce) ─► jkt
//!   task token       ◄─ keys::KeyRing::sign(profile::TaskToken)   (RFC 9068, at+jwt)
//!   presented token  ─► KeyRing::verify + TaskToken::from_claims ─► RevocationList
//!   console sign-in  ─► oidc::RelyingParty (code + PKCE) ─► federation keys ─► VerifiedIdToken
//!   ID-JAG grant     ─► idjag::EnterpriseIdps (an IdP's keys, typ, aud, client_id, resource) ─► IdJag
//! ```
//!
//! Every token is verified (signature with a pinned algorithm, via `mandate-jose`)
//! before any of its claims is read.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod claims;
pub mod client_metadata;
pub mod dpop;
pub mod error;
pub mod federation;
pub mod idjag;
pub mod keys;
pub mod oidc;
pub mod profile;
pub mod revocation;
pub mod spiffe;
pub mod upstream;

pub use assertion::{
    Assertion, ClientKeys, JWT_BEARER, unverified_issuer, verify_client_assertion,
    verify_private_key_jwt,
};
pub use claims::{ClaimError, Claims, TimeRules};
pub use client_metadata::{
    ClientMetadataFetcher, ClientMetadataOptions, InternalAddress, Lookup, Resolver, SystemResolver,
};
pub use dpop::{DpopConfig, DpopProof, DpopRequest, DpopVerifier, access_token_hash};
pub use error::{TokenError, untrusted};
pub use federation::{FederatedIssuer, Federation, FederationConfigError, FederationOptions};
pub use idjag::{
    EnterpriseIdp, EnterpriseIdps, ID_JAG_TYP, IdJag, IdJagExpect, JWT_BEARER_GRANT, PersonMapping,
    narrow_by_assertion,
};
pub use keys::{KeyError, KeyRing, generate_signing_key, random_id, time_ordered_id};
pub use oidc::{
    Authorization, ClientAuth, OidcError, RelyingParty, RelyingPartyConfig, VerifiedIdToken,
};
pub use profile::{
    ACCESS_TOKEN_TYP, Expect, MANDATE_DETAILS_TYPE, REQUEST_MANDATES_SCOPE, TaskToken,
    scope_is_subset,
};
pub use revocation::RevocationList;
pub use spiffe::{
    BundleError, JwtBundle, SpiffeId, SpiffeIdError, TrustBundles, TrustDomain, verify_jwt_svid,
};
