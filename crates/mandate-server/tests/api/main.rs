#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]
//! The admin API driven in-process against a real SQLite store: the mandate lifecycle,
//! hostile input, and the ops endpoints. One test binary, so it links once.

mod audit;
mod bad_input;
mod catalog;
mod console;
mod console_admin;
mod console_reviews;
mod lifecycle;
mod mcp_input_required;
mod oauth_authorize;
mod oauth_id_jag;
mod oauth_offer;
mod oauth_reconsent;
mod oauth_refresh;
mod ops;
mod policies;
mod revocation_race;
mod support;
mod tokens;
