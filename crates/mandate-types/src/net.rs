//! What counts as this machine's loopback, in one place: the gateway's DNS-rebinding
//! checks, OAuth redirect URIs, and the `http` exceptions for local issuers and client
//! metadata documents all ask the same question.

use std::net::IpAddr;

/// Whether `host` — a URL's host or a `Host` header's name, IPv6 with or without
/// brackets — is a loopback IP literal (`127.0.0.0/8`, `::1`). Never a name: a name can
/// resolve anywhere.
pub fn is_loopback_literal(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// [`is_loopback_literal`], or the name `localhost` (any case), which RFC 6761 reserves
/// for loopback.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || is_loopback_literal(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_literals_and_names() {
        for good in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
        ] {
            assert!(is_loopback_literal(good), "{good}");
            assert!(is_loopback_host(good), "{good}");
        }
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("LocalHost"));
        assert!(!is_loopback_literal("localhost"), "a name is not a literal");
        for bad in [
            "",
            "[]",
            "[::1",
            "::1]",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "[::ffff:10.0.0.1]",
            "localhost.evil.example",
            "evil-localhost",
            "127.0.0.1.evil.example",
            "127.0.0.1:80",
            "2130706433",
            "0x7f000001",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
