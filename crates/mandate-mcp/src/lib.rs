//! The Model Context Protocol as the gateway speaks it.
//!
//! ```text
//!   client ──JSON-RPC over Streamable HTTP──► gateway ──► Upstream (HttpUpstream | StdioUpstream)
//!            jsonrpc::Message, revision,                     one session per server, ids and
//!            sse (encode)                                    progress tokens rewritten, events
//!                                                            handed back to the caller
//! ```
//!
//! Nothing here decides anything: the gateway (`mandate-gateway`) calls in here after
//! the decision.

#![forbid(unsafe_code)]

pub mod announce;
pub mod jsonrpc;
pub mod revision;
pub mod sse;
pub mod upstream;

pub use announce::{Announcement, Heard, ListKind};
pub use jsonrpc::{Malformed, Message, Refusal, code, refusal};
pub use upstream::{
    ExtraHeaders, HttpUpstream, Limits, Outcome, StdioOptions, StdioUpstream, Upstream,
    UpstreamError,
};
