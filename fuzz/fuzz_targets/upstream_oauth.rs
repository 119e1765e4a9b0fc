//! What an upstream service's OAuth provider answers Mandate when a person connects
//! (`mandate_token::upstream`): its authorization server metadata (RFC 8414) and its
//! token responses (RFC 6749 §5.1, §5.2). Refused or accepted, never a panic; what is
//! accepted is usable as parsed: endpoints under the URL policy, a bearer token that
//! can be a header value, a positive lifetime.
//!
//! Input: `metadata NUL token-response NUL status` (status a decimal number, default
//! 200).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_token::upstream::{Metadata, TokenSet};

const ISSUER: &str = "https://as.example";

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(3, |b| *b == 0);
    let metadata = fields.next().unwrap_or_default();
    let token = fields.next().unwrap_or_default();
    let status = fields
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(200);
    for loopback in [false, true] {
        if let Ok(m) = Metadata::parse(metadata, ISSUER, loopback) {
            for url in [
                Some(&m.authorization_endpoint),
                Some(&m.token_endpoint),
                m.revocation_endpoint.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(
                    url.scheme() == "https" || (loopback && url.scheme() == "http"),
                    "an endpoint outside the URL policy: {url}"
                );
            }
        }
    }
    if let Ok(t) = TokenSet::parse(status, token) {
        assert_eq!(status, 200, "a token from an error answer");
        let value = format!("Bearer {}", t.access_token.expose());
        assert!(
            http::HeaderValue::from_str(&value).is_ok(),
            "an access token that cannot be a header"
        );
        assert!(
            t.expires_in.is_none_or(|s| s > 0),
            "a lifetime that is not positive"
        );
    }
});
