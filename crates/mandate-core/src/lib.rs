//! Mandate's use cases, over the storage ports.
//!
//! ```text
//!   HTTP / CLI ──► Service::{authenticate, create_*, request_mandate, consent, complete, revoke, …}
//!                     │  checks who may do what (Principal), validates input once,
//!                     │  applies the lifecycle (mandate-domain), retries lost races
//!                     ▼
//!                  dyn Store (SQLite or PostgreSQL — this crate never knows which)
//!
//!   gateway ─────► calls::Calls::{authenticate, authorize, visible, …}  ─► mandate-policy
//!   server, console ─► calls::Calls::{approvals, proposals}, calls::Broker (the vault)
//!                     │  decisions recorded durably before anything is forwarded
//!                     ▼
//!                  Ledger (group commit) and dyn Store
//! ```
//!
//! Every operation takes the authenticated [`Principal`] and is scoped to its tenant: an
//! id from another tenant is reported exactly like an id that does not exist.

mod accounts;
pub mod activity;
mod attempts;
mod auth;
pub mod calls;
mod catalog;
mod directory;
mod error;
mod external_sign_in;
mod input;
mod ledger;
mod mandates;
mod oauth;
mod policies;
pub mod replay;
pub mod reviews;
mod tokens;
pub mod trace;

use std::sync::Arc;

use mandate_store::Store;
use mandate_types::Clock;

pub use accounts::{ADMIN_GROUP, LOCK_AFTER_FAILURES, SignedIn};
pub use auth::{Bootstrap, IssuedToken, TOKEN_PREFIX};
pub use error::CoreError;
pub use input::{
    AgentUpdate, ConsentRequest, EndRequest, NewAgent, NewHuman, NewTool, NewToolServer,
    ToolServerUpdate, ToolUpdate,
};
pub use ledger::{Ledger, LedgerConfig, Verification, store_key};
pub use mandates::MandateView;
pub use oauth::{
    AuthorizeError, AuthorizeParams, CODE_TTL_SECONDS, ClientMetadata, ConsentChoices,
    MAX_MANDATE_HOURS, MAX_REGISTRATION_BYTES, OfferedTool, PendingAuthorization, RegisteredClient,
    RegistrationError, ValidAuthorization, authorization_response, level,
};
pub use policies::{PolicyAdmin, PolicySummary};
pub use tokens::{
    ACCESS_TOKEN_TYPE, AUTHORIZATION_CODE, Introspection, JWT_TOKEN_TYPE, Presented, REFRESH_TOKEN,
    RevokeRequest, TOKEN_EXCHANGE, TokenConfig, TokenForm, TokenRequest, TokenResponse,
    TokenService,
};

/// The use cases, bound to one store and one clock.
#[derive(Debug, Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policies: PolicyAdmin,
    admins: auth::AdminCache,
    tokens: Option<Arc<TokenService>>,
    client_documents: Option<Arc<mandate_token::ClientMetadataFetcher>>,
}

impl Service {
    /// A service deciding with Mandate's built-in policies only.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            policies: PolicyAdmin::builtin(),
            admins: auth::AdminCache::default(),
            tokens: None,
            client_documents: None,
        }
    }

    /// Serves the token service beside the admin API.
    pub fn with_tokens(mut self, tokens: Arc<TokenService>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Accepts `client_id`s that are Client ID Metadata Document URLs, fetched this way.
    pub fn with_client_metadata_documents(
        mut self,
        fetcher: Arc<mandate_token::ClientMetadataFetcher>,
    ) -> Self {
        self.client_documents = Some(fetcher);
        self
    }

    /// Whether Client ID Metadata Documents are accepted.
    pub fn client_metadata_documents(&self) -> bool {
        self.client_documents.is_some()
    }

    /// The token service, when this server runs one.
    pub fn tokens(&self) -> Option<&Arc<TokenService>> {
        self.tokens.as_ref()
    }

    /// Decides with these policies instead.
    pub fn with_policies(mut self, policies: PolicyAdmin) -> Self {
        self.policies = policies;
        self
    }

    pub fn policies(&self) -> &PolicyAdmin {
        &self.policies
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}
