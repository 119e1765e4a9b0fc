//! The audit ledger's model: what an event is, how it is encoded and chained, how the
//! chain is checkpointed and verified. No I/O: the stores keep events, the writer in
//! `mandate-core` appends them, and this crate says what is correct.
//!
//! ```text
//!   NewEvent ──Event::chain(head, new, at)──► Event { seq = head.seq + 1,
//!                                                     prev_hash = head.hash,
//!                                                     hash = sha256(canonical(event − hash)) }
//!   every N events / T seconds: SigningKey::checkpoint(tenant, head) ──► Checkpoint (Ed25519)
//!   ChainVerifier: push(event)… in seq order, then finish(checkpoints, keys)
//!                  ──► Verified { events, checkpoints, head } | Broken { first bad seq }
//! ```
//!
//! The canonical encoding is the event as JSON with object keys sorted by code point, no
//! insignificant whitespace, integers as integers, times as RFC 3339 UTC with at most
//! microsecond precision, and the `hash` member left out (`mandate_domain::canonical`).
//! Changing any byte of any stored member changes the hash of that event; changing the
//! hash as well breaks the next event's `prev_hash`, and, for the chain's tail, the
//! signed checkpoint.

mod checkpoint;
mod event;
mod verify;

pub use checkpoint::{Checkpoint, KeyError, PublicKey, SigningKey};
pub use event::{Event, EventKind, GENESIS_HASH, Head, NewEvent, SCHEMA_VERSION, UnknownKind};
pub use verify::{Broken, ChainVerifier, Verified};

#[cfg(test)]
mod tests;
