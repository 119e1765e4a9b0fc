//! Mandate's policy decision point — the only crate that knows Cedar.
//!
//! ```text
//!   PolicySource (files)  ──compile──►  CompiledSet  ──decide_call──►  Decision
//!   Mandate schema + built-ins           validated whole,   decide_access (AuthZEN)
//!                                        indexed by scope   search (AuthZEN)
//! ```
//!
//! A set is compiled whole or refused with every problem located (file, line,
//! column); the running set is swapped atomically ([`Pdp`]). Decisions fail closed: a
//! request that cannot be put to Cedar denies, and a `forbid` that cannot be evaluated
//! counts as holding.

mod authzen;
mod builtin;
mod cache;
mod call;
mod compile;
mod engine;
mod grant;
mod index;
mod parts;
mod pdp;
mod source;

pub use authzen::{
    AccessRequest, ActionRef, BadRequest, Batch, MAX_EVALUATIONS, MAX_PAGE, PageRequest, Search,
    SearchKind, SearchPage, Semantic, Target, parse_evaluation, parse_evaluations, parse_search,
};
pub use call::{CallAction, CallRequest, ScopeMatch, match_scope, tool_name};
pub use compile::{
    BUILTIN_POLICIES, BUILTIN_PREFIX, BUILTIN_SCHEMA, CompiledSet, PolicyInfo, Remedy,
};
pub use engine::{Cause, Decision, Lookup};
pub use grant::{GrantAction, GrantRequest};
pub use pdp::Pdp;
pub use source::{MAX_FILE_BYTES, MAX_FILES, PolicySetError, PolicySource, Problem, SourceFile};
