//! Mandate's domain model (PRODUCT.md §2) and the mandate lifecycle.
//!
//! ```text
//!             consent (all required consenters, same terms hash)
//!   requested ───────────────────────────────────────────────► active ──► completed
//!       │  │                                                     │  │
//!       │  └── deny (any required consenter) ──► denied          │  └──► revoked
//!       │                                                        │
//!       └──────────────── expiry ─────────────► expired ◄────────┘
//! ```
//!
//! [`Mandate::apply`] is the one place where a mandate changes status; every other
//! transition is an [`LifecycleError::Illegal`]. The terms a human consents to are hashed with a
//! canonical JSON encoding ([`canonical`]); a consent records that hash, and a mandate only
//! becomes active when every required consenter agreed to the very terms it carries.

mod approval;
pub mod canonical;
mod compensation;
mod grant;
mod mandate;
mod principal;
mod tool;

pub use approval::{Approval, ApprovalStatus, HeldCall, Proposal, ProposalStatus};
pub use compensation::{
    ArgumentSource, Compensation, MAX_COMPENSATION_ARGUMENTS, MAX_POINTER_LEN, is_json_pointer,
};
pub use grant::Grant;
pub use mandate::{
    ApprovalRules, ArgumentConstraint, Budgets, Consent, ConsentChannel, ConsentDecision,
    LifecycleError, MAX_DELEGATION_DEPTH, Mandate, MandateEvent, MandateStatus, MandateTerms,
    Scope, TermsError, TermsHash, ToolGrant, Usage, scope_covers,
};
pub use principal::{
    Agent, AgentCredentials, AgentStatus, FederatedIdentity, Human, Principal, Tenant,
};
pub use tool::{Tool, ToolAnnotations, ToolServer, ToolServerTransport};
