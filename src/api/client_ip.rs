//! The client address of a request, which rate limiting, the audit trail,
//! the detectors and the admin allow-list all use.
//!
//! `X-Forwarded-For` is believed only when the TCP peer is in
//! `TRUSTED_PROXIES`. The client is then the rightmost address of the chain
//! that is not itself a trusted proxy: every address to its left was written
//! by a party that is not trusted, so the client could have forged it.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// Returns the client address of a request from `peer`.
///
/// Falls back to `peer` when the peer is not trusted, when the header is
/// missing, or when any element of the chain is not a plain IP address (a
/// malformed chain cannot be trusted in part).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let Some(chain) = forwarded_chain(headers) else {
        return peer;
    };

    // Walk from the proxy nearest to us towards the client.
    let mut client = peer;
    for address in chain.iter().rev() {
        client = *address;
        if !is_trusted(client, trusted_proxies) {
            break;
        }
    }
    client
}

fn is_trusted(address: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|network| network.contains(&address))
}

/// Parses every `X-Forwarded-For` header, in order, into one chain.
/// Returns `None` when the header is absent, empty or malformed.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(FORWARDED_FOR) {
        let text = value.to_str().ok()?;
        for item in text.split(',') {
            chain.push(parse_address(item.trim())?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// Accepts a bare IPv4 or IPv6 address, or an IPv6 address in brackets as
/// some proxies write it.
fn parse_address(item: &str) -> Option<IpAddr> {
    let bare = item
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(item);
    bare.parse::<IpAddr>().ok().map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|item| item.parse().unwrap()).collect()
    }

    fn forwarded(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn client_ip_cases() {
        let proxies = nets(&["10.0.0.0/8", "fd00::/8"]);
        let cases: [(&str, &str, &[&'static str], &str); 12] = [
            (
                "untrusted peer ignores header",
                "203.0.113.9",
                &["198.51.100.1"],
                "203.0.113.9",
            ),
            ("trusted peer, one hop", "10.0.0.2", &["198.51.100.1"], "198.51.100.1"),
            (
                "spoofed left part skipped",
                "10.0.0.2",
                &["1.2.3.4, 198.51.100.1"],
                "198.51.100.1",
            ),
            (
                "chain through trusted proxies",
                "10.0.0.2",
                &["198.51.100.1, 10.1.1.1, 10.2.2.2"],
                "198.51.100.1",
            ),
            (
                "several headers form one chain",
                "10.0.0.2",
                &["198.51.100.1", "10.1.1.1"],
                "198.51.100.1",
            ),
            (
                "all trusted gives leftmost",
                "10.0.0.2",
                &["10.9.9.9, 10.1.1.1"],
                "10.9.9.9",
            ),
            (
                "garbage falls back to peer",
                "10.0.0.2",
                &["not-an-address"],
                "10.0.0.2",
            ),
            (
                "one bad element falls back to peer",
                "10.0.0.2",
                &["198.51.100.1, 1.2.3.4:80"],
                "10.0.0.2",
            ),
            ("empty header falls back to peer", "10.0.0.2", &[""], "10.0.0.2"),
            ("no header gives peer", "10.0.0.2", &[], "10.0.0.2"),
            ("bracketed IPv6", "fd00::1", &["[2001:db8::7]"], "2001:db8::7"),
            (
                "IPv4-mapped peer is trusted",
                "::ffff:10.0.0.2",
                &["198.51.100.1"],
                "198.51.100.1",
            ),
        ];
        for (name, peer, header_values, expected) in cases {
            let headers = forwarded(header_values);
            assert_eq!(client_ip(ip(peer), &headers, &proxies), ip(expected), "{name}");
        }
    }

    #[test]
    fn no_trusted_proxies_ignores_header() {
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &headers, &[]), ip("10.0.0.2"));
    }
}
