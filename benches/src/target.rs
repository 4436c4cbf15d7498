//! The nodes a run talks to: `--url` parsed, resolved, and refused unless loopback.

use std::net::SocketAddr;

/// One node.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` as given (also the HTTP Host header).
    pub host: String,
    /// Where it resolved to (loopback); every connection goes there.
    pub addr: SocketAddr,
}

impl Target {
    /// Accepts `http://host:port`, `ws://host:port`, or `host:port`; a path is ignored.
    pub async fn parse(url: &str) -> Result<Target, String> {
        let rest = match url.split_once("://") {
            Some(("http" | "ws", rest)) => rest,
            Some((scheme, _)) => return Err(format!("{url}: scheme {scheme} not supported (http or ws)")),
            None => url,
        };
        let host = rest.split('/').next().unwrap_or("").to_owned();
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host(&with_port).await.map_err(|e| format!("{url}: {e}"))?.collect();
        if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(format!("{url}: only loopback addresses are accepted (resolved to {addrs:?})"));
        }
        Ok(Target { host: with_port, addr: addrs[0] })
    }

    /// The WebSocket URL with a token.
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={}", self.addr, token)
    }
}
