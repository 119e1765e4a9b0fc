//! The small value types every layer of Mandate shares.
//!
//! ```text
//!   mandate-types  ──►  mandate-domain  ──►  mandate-store  ──►  mandate-core  ──►  mandate-server  ──►  mandate
//!   (ids, clock,        (entities,           (ports +            (use cases)       (HTTP)              (binary)
//!    secrets, enums)     lifecycle)           conformance)
//! ```
//!
//! Nothing here performs I/O. Identifiers are newtypes so that an agent id can never be
//! passed where a human id is expected; they are parsed once, at the edge.

mod clock;
mod id;
mod levels;
mod name;
pub mod net;
mod secret;
mod time;

pub use clock::{Clock, FixedClock, SystemClock};
pub use id::{
    AgentId, ApiTokenId, ApprovalId, ConsentId, HumanId, IdError, IdText, MandateId, ProposalId,
    TenantId, ToolId, ToolServerId,
};
pub use levels::{DataClass, MandateMode, RiskTier, UnknownLevel};
pub use name::is_plain_name;
pub use secret::Secret;
pub use time::{TimeText, serialize_time};
