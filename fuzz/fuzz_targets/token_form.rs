//! The body of a request to the token endpoint (`/oauth2/token`, also `/introspect` and
//! `/revoke`), with its `Content-Type` and `DPoP` headers: the production form parser
//! (`mandate_core::TokenForm`, what `mandate-server` calls) reads it into a token
//! request, or refuses it with an OAuth error, never a panic. A form that parses keeps
//! its rule: no parameter but `resource` and `audience` twice.
//!
//! Input: `flags, content type NUL DPoP header NUL second DPoP header NUL body`. flags
//! bit 0: send the first DPoP header, bit 1: the second too. An empty content type is
//! `application/x-www-form-urlencoded`.
#![no_main]

mod common;

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use mandate_core::TokenForm;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let f = common::fields(rest, 4);
    let mut headers = HeaderMap::new();
    let content_type: &[u8] = match f.first() {
        Some(ct) if !ct.is_empty() => ct,
        _ => b"application/x-www-form-urlencoded",
    };
    if let Ok(v) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    for (bit, i) in [(1, 1), (2, 2)] {
        if flags & bit != 0
            && let Some(Ok(v)) = f.get(i).map(|p| HeaderValue::from_bytes(p))
        {
            headers.append("dpop", v);
        }
    }
    let body = f.get(3).copied().unwrap_or_default();
    let Ok(form) = TokenForm::parse(&headers, body) else {
        return;
    };
    if let Ok(request) = form.token_request(&headers) {
        assert_eq!(
            request.grant_type,
            form.get("grant_type").unwrap_or_default()
        );
        assert!(
            request.dpop.is_none() || headers.get_all("dpop").iter().count() == 1,
            "a token request kept one of several DPoP headers"
        );
    }
});
