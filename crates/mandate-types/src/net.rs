//! What counts as this machine's loopback, in one place: the gateway's DNS-rebinding
//! checks, OAuth redirect URIs, and the `http` exceptions for local issuers and client
//! metadata documents all ask the same question. And which addresses are public, for
//! what Mandate fetches from URLs that strangers choose (client metadata documents).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address: one a URL chosen by a stranger may make
/// us connect to. Refused: unspecified, loopback, private (RFC 1918, IPv6 unique local),
/// shared address space (CGNAT, 100.64.0.0/10), link-local, multicast and broadcast,
/// documentation, benchmarking, IETF protocol assignments and reserved ranges; IPv6
/// outside 2000::/3 (and Teredo, ORCHID, documentation within it). IPv6 forms that
/// carry an IPv4 address — mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16` — are judged by that address; the deprecated compatible form `::a.b.c.d`
/// and local-use NAT64 `64:ff9b:1::/48` are refused.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network", unspecified
        || a == 10                             // private
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a == 127                            // loopback
        || (a == 169 && b == 254)              // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation (TEST-NET-1)
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation (TEST-NET-2)
        || (a == 203 && b == 0 && c == 113)    // documentation (TEST-NET-3)
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        // ::ffff:a.b.c.d (mapped): the IPv4 address it is.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => is_public_v4(embedded(hi, lo)),
        // NAT64, well-known prefix (RFC 6052): reaches the IPv4 address it carries.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded(hi, lo)),
        // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 routes to a.b.c.d.
        [0x2002, hi, lo, ..] => is_public_v4(embedded(hi, lo)),
        // Teredo 2001:0::/32, and the rest of 2001::/23 (IETF protocol assignments:
        // benchmarking, ORCHID, …).
        [0x2001, second, ..] if second < 0x0200 => false,
        // Documentation: 2001:db8::/32 and 3fff::/20.
        [0x2001, 0x0db8, ..] => false,
        [first, ..] if first & 0xfff0 == 0x3ff0 => false,
        // Global unicast is 2000::/3; everything outside it (unspecified, loopback, the
        // compatible form, unique local, link-local, multicast, discard, …) is not public.
        [first, ..] => first & 0xe000 == 0x2000,
    }
}

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
    fn public_addresses() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2001:4860:4860::8888",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public_address(ip), "{public}");
        }
        for internal in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "2002:7f00:0001::1",
            "2002:0a00:0001::1",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "4000::1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(!is_public_address(ip), "{internal}");
        }
    }

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
