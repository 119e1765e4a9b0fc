//! The client's address behind proxies the operator trusts (`trusted_proxies`).
//!
//! A request whose connection comes from a trusted proxy is attributed to the address
//! that proxy reported in `X-Forwarded-For`: the header's entries are walked from the
//! right (the one the nearest proxy appended) past every trusted address, and the
//! first one that is not trusted is the client. Anything a client wrote itself sits to
//! the left of what the trusted proxies appended and is never reached while an
//! untrusted address comes first. An entry that is not a bare IP address stops the
//! walk at the last trusted hop (the header is not trusted beyond it). With no trusted
//! proxies (the default) the header is ignored and the connection's peer is the
//! client, as it is for a connection from anywhere else.
//!
//! The address is what the handlers receive as `ConnectInfo` (the registration and
//! sign-in rate limits count per client address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;

/// How many `X-Forwarded-For` entries are walked at most (the rest are not read).
const MAX_HOPS: usize = 32;

/// Networks (`10.0.0.0/8`, `fd00::/8`, or one address) whose connections may name the
/// client in `X-Forwarded-For`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked_v4(net, self.prefix) == masked_v4(ip, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked_v6(net, self.prefix) == masked_v6(ip, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked_v4(ip: Ipv4Addr, prefix: u8) -> u32 {
    let bits = u32::from(ip);
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn masked_v6(ip: Ipv6Addr, prefix: u8) -> u128 {
    let bits = u128::from(ip);
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let written = IpAddr::from_str(addr.trim())
            .map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        // A v4-mapped v6 network (`::ffff:10.0.0.0/104`) is the v4 network it maps.
        let addr = written.to_canonical();
        let prefix = match (written, addr) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or_else(|| {
                format!("`{s}`: a v4-mapped network's prefix length must be 96 to 128")
            })?,
            _ => prefix,
        };
        Ok(Network { addr, prefix })
    }
}

impl TrustedProxies {
    /// Parses the configured list; an entry that is not an address or a network is an
    /// error naming it.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.parse())
            .collect::<Result<Vec<Network>, String>>()
            .map(TrustedProxies)
    }

    /// The list `MANDATE_TRUSTED_PROXIES` names (comma-separated), else the config
    /// file's `trusted_proxies`; an error says which of the two was wrong, and how.
    pub fn settle(
        environment: Option<&str>,
        file: Option<&[String]>,
    ) -> Result<Self, (&'static str, String)> {
        match environment {
            Some(list) => {
                let entries: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect();
                Self::parse(&entries).map_err(|e| ("MANDATE_TRUSTED_PROXIES", e))
            }
            None => Self::parse(file.unwrap_or_default())
                .map_err(|e| ("config key `trusted_proxies`", e)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Every `X-Forwarded-For` line, in order, is one list.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev().take(MAX_HOPS) {
            let Ok(ip) = IpAddr::from_str(entry.trim()) else {
                return client;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let p = proxies(&[
            "10.0.0.0/8",
            "192.168.1.7",
            "fd00::/8",
            "::ffff:172.16.0.0/108",
        ]);
        assert!(p.trusts(ip("10.200.3.4")));
        assert!(!p.trusts(ip("11.0.0.1")));
        assert!(p.trusts(ip("192.168.1.7")));
        assert!(!p.trusts(ip("192.168.1.8")));
        assert!(p.trusts(ip("fd12::1")));
        assert!(!p.trusts(ip("fe80::1")));
        // A v4-mapped v6 address is its v4 address, both ways.
        assert!(p.trusts(ip("::ffff:10.1.2.3")));
        let all = proxies(&["0.0.0.0/0"]);
        assert!(all.trusts(ip("8.8.8.8")));
        assert!(!all.trusts(ip("::1")));
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "example.com",
            "10.0.0.0/8/8",
            "1.2.3.4:80",
        ] {
            let err = TrustedProxies::parse(&[bad.to_owned()]).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = forwarded(&["10.0.0.1, 127.0.0.1"]);
        assert_eq!(p.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // No proxies configured: the header is never read.
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.5"), &h),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        // The client wrote `1.1.1.1` itself; the balancer appended its real address.
        let h = forwarded(&["1.1.1.1, 198.51.100.4, 10.0.0.9"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.4"));
        // Several header lines are one list, in order.
        let h = forwarded(&["1.1.1.1", "198.51.100.4", "10.0.0.9"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.4"));
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(p.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        // Every hop trusted: the leftmost.
        let h = forwarded(&["10.1.1.1, 10.0.0.9"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn hostile_headers_stop_at_the_last_trusted_hop() {
        let p = proxies(&["10.0.0.0/8"]);
        for hostile in [
            "garbage",
            "203.0.113.7:443",
            "[2001:db8::1]",
            "unknown",
            "",
            "1.1.1.1,,",
            "\u{7f}",
        ] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(hostile) {
                h.append("x-forwarded-for", v);
            }
            assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"), "{hostile:?}");
        }
        // Not valid UTF-8: ignored, not a panic.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        // A long chain of trusted hops is walked only so far.
        let long = vec!["10.0.0.1"; 1000].join(",");
        let h = forwarded(&[&format!("198.51.100.4,{long}")]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.1"));
    }
}
