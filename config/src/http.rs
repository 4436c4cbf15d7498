//! `[http]`: what one HTTP connection may hold before any token is looked at (deadlines,
//! connection caps) and which proxies in front of the node are trusted.

use serde::Deserialize;

/// Deadlines and connection caps of the HTTP listener, applied before any authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Time allowed for a request's head, in milliseconds; also how long an idle keep-alive
    /// connection waits for its next request before it is closed.
    pub header_timeout_ms: u64,
    /// Time allowed for a whole request body, in milliseconds, counted from the end of the
    /// head (not per byte: a trickled body is cut).
    pub body_timeout_ms: u64,
    /// Time a write to a client may wait without progress, in milliseconds (a client that
    /// stops reading its answers, or a WebSocket's); then the connection is closed.
    pub write_timeout_ms: u64,
    /// Open connections (plain HTTP and WebSockets) the node holds at once; more are
    /// answered 503 and closed at accept. Unset: `limits.max_connections` + 1,024, room for
    /// REST calls next to a full load of WebSockets (see `Settings::http_max_connections`).
    pub max_connections: Option<usize>,
    /// Open connections one client IP address may hold at once.
    pub max_connections_per_ip: usize,
    /// Load balancers and proxies in front of the node (addresses or CIDR ranges): every
    /// client behind one shares its address, so their connections count only toward
    /// `max_connections`, not the per-address cap; and their `X-Forwarded-For` is believed
    /// for the client's address (rate limits, audit trail). From anywhere else that header
    /// is ignored.
    pub proxy_addresses: Vec<AddressRange>,
}

/// An IP address or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AddressRange {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl AddressRange {
    /// Whether `ip` is in the range (an IPv4 client seen as `::ffff:a.b.c.d` included).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map_or(V6(v6), V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (V4(net), V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (V6(net), V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for AddressRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected an IP address or a CIDR range (got {s:?})");
        let (addr, prefix) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(AddressRange { addr, prefix })
    }
}

impl TryFrom<String> for AddressRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout_ms: 30_000,
            body_timeout_ms: 10_000,
            write_timeout_ms: 30_000,
            max_connections: None,
            max_connections_per_ip: 128,
            proxy_addresses: Vec::new(),
        }
    }
}
