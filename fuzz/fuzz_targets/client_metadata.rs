//! A Client ID Metadata Document as its URL answered it (the network fetch aside): the
//! `client_id` URL checks the fetcher makes before any connection, the document read
//! strictly and naming that URL (`mandate_token::client_metadata::parse_document`, what
//! the fetch calls), then validated like a registration
//! (`mandate_core::ClientMetadata::from_fields`, what `document_client` calls). Refused
//! or accepted, never a panic; and what is accepted survives the store's round trip
//! (JSON out, JSON in) unchanged.
//!
//! Input: `client_id NUL document`; an empty client id is `https://app.example/client.json`.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_core::ClientMetadata;
use mandate_token::client_metadata::parse_document;
use mandate_token::{ClientMetadataFetcher, ClientMetadataOptions};

fn fetcher() -> &'static ClientMetadataFetcher {
    static FETCHER: OnceLock<ClientMetadataFetcher> = OnceLock::new();
    FETCHER.get_or_init(
        || match ClientMetadataFetcher::new(ClientMetadataOptions::default()) {
            Ok(f) => f,
            Err(e) => panic!("no fetcher: {e}"),
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let f = common::fields(data, 2);
    let client_id = common::text(&f, 0, "https://app.example/client.json");
    let _ = fetcher().guard_url(client_id);
    let _ = fetcher().names_a_document(client_id);
    let body = f.get(1).copied().unwrap_or_default();
    let Ok(doc) = parse_document(client_id, body) else {
        return;
    };
    if let Ok(metadata) = ClientMetadata::from_fields(&doc) {
        let stored = match serde_json::to_string(&metadata) {
            Ok(s) => s,
            Err(e) => panic!("accepted metadata does not serialise: {e}"),
        };
        let read: Result<ClientMetadata, _> = serde_json::from_str(&stored);
        assert_eq!(
            read.ok().as_ref(),
            Some(&metadata),
            "metadata changed in the store"
        );
    }
});
