//! The client's address behind a trusted load balancer: `X-Forwarded-For` is believed only
//! on connections from `http.proxy_addresses`, and then read from the right, skipping the
//! listed proxies (a client can put anything at the left end of the header; only what the
//! proxies appended is theirs). From any other address the header is ignored.
//!
//! The address found here is what rate limits key on and what the audit trail records
//! (`PeerAddr`, set once per request by the server).

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use signalgrid_config::AddressRange;

/// The address a request comes from: `peer` itself, unless `peer` is one of `proxies` and
/// the request carries `X-Forwarded-For`; then the rightmost address in that header that is
/// not a listed proxy (port 0: a forwarded port is not known). A header that cannot be read
/// (not ASCII, an entry that is not an IP address) leaves `peer`, so a mangled header never
/// lets a client pick its own address.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, proxies: &[AddressRange]) -> SocketAddr {
    let trusted = |ip: IpAddr| proxies.iter().any(|p| p.contains(ip));
    if !trusted(peer.ip()) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else { return peer };
        for hop in value.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return peer,
            }
        }
    }
    // Right to left: the first hop no listed proxy vouches for is the client. When every hop
    // is a proxy, the leftmost is as far as the chain goes.
    let client = hops.iter().rev().find(|ip| !trusted(**ip)).or(hops.first());
    client.map_or(peer, |ip| SocketAddr::new(ip.to_canonical(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ranges(s: &[&str]) -> Vec<AddressRange> {
        s.iter().map(|r| r.parse().unwrap()).collect()
    }

    #[test]
    fn the_header_is_believed_only_from_a_listed_proxy_and_read_from_the_right() {
        let lb: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let proxies = ranges(&["10.0.0.0/8"]);
        let at = |h: &[&str]| client_addr(lb, &headers(h), &proxies).ip().to_string();
        assert_eq!(at(&["203.0.113.7"]), "203.0.113.7");
        // A client-supplied entry at the left is not believed over what the proxy appended.
        assert_eq!(at(&["1.2.3.4, 203.0.113.7"]), "203.0.113.7");
        // Listed proxies in the chain are skipped; several header lines are one list.
        assert_eq!(at(&["203.0.113.7, 10.1.1.1", "10.2.2.2"]), "203.0.113.7");
        assert_eq!(at(&["10.1.1.1"]), "10.1.1.1", "only proxies: the leftmost");
        assert_eq!(at(&[]), "10.0.0.5", "no header: the proxy itself");
        assert_eq!(at(&["not-an-ip"]), "10.0.0.5", "a mangled header changes nothing");
        assert_eq!(at(&["::ffff:203.0.113.7"]), "203.0.113.7");

        let stranger: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert_eq!(client_addr(stranger, &headers(&["203.0.113.7"]), &proxies), stranger, "not a proxy: ignored");
        assert_eq!(client_addr(lb, &headers(&["203.0.113.7"]), &[]), lb, "no proxies listed: ignored");
    }
}
