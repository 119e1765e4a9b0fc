//! SPIFFE IDs and trust domain names from untrusted text (a JWT-SVID's `sub`, the
//! configuration): the strict production parsers refuse or accept, never panic, and
//! what they accept prints back as exactly the input (nothing is normalised).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_token::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        assert_eq!(
            id.to_string(),
            text,
            "a SPIFFE ID does not print back as itself"
        );
        assert!(id.trust_domain().id().is_trust_domain_id());
        assert_eq!(id.is_trust_domain_id(), id.path().is_empty());
    }
    if let Ok(td) = TrustDomain::parse(text) {
        assert_eq!(td.as_str(), text);
        let id = td.id().to_string();
        assert_eq!(
            SpiffeId::parse(&id).map(|i| i.trust_domain().clone()),
            Ok(td)
        );
    }
});
