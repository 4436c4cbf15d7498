//! Caps on open connections, per client IP address and in total, checked at accept before
//! anything is read or authenticated (`http.max_connections_per_ip`, `http.max_connections`;
//! connections from `http.proxy_addresses` count toward the total only).
//!
//! A connection holds its place through a [`ConnGuard`] carried inside its IO object
//! ([`Guarded`]), so the place stays taken for as long as the socket is open: through every
//! HTTP request and, after an upgrade, for the whole life of the WebSocket (hyper moves the
//! IO into the upgraded stream). The guard is dropped just before the socket closes. The
//! same wrapper gives writes their deadline (`http.write_timeout_ms`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use signalgrid_actors::errors::ErrorCode;
use signalgrid_config::{AddressRange, Settings};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::http::error::ApiError;

/// Counter: connections closed at accept, by `reason` (`per_ip`, `total`).
pub const CONNECTIONS_REFUSED: &str = "signalgrid_http_connections_refused_total";
/// Gauge: open connections (plain HTTP and WebSockets).
pub const CONNECTIONS_OPEN: &str = "signalgrid_http_connections";

/// Open connections by client address, and the caps.
#[derive(Debug)]
pub struct ConnCaps {
    open: Mutex<Open>,
    max_total: usize,
    max_per_ip: usize,
    /// Balancers and proxies: their connections count toward the total only.
    proxies: Vec<AddressRange>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerIp,
    Total,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::PerIp => "per_ip",
            Refused::Total => "total",
        }
    }
}

impl ConnCaps {
    /// The caps from `http.max_connections` (or its default) and
    /// `http.max_connections_per_ip`.
    pub fn new(s: &Settings) -> Arc<ConnCaps> {
        Arc::new(ConnCaps {
            open: Mutex::default(),
            max_total: s.http_max_connections(),
            max_per_ip: s.http.max_connections_per_ip,
            proxies: s.http.proxy_addresses.clone(),
        })
    }

    /// Takes a place for a connection from `ip`, or says which cap is reached (the refusal
    /// is counted in `CONNECTIONS_REFUSED`).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let refused = if open.total >= self.max_total {
            Some(Refused::Total)
        } else if open.by_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip
            && !self.proxies.iter().any(|p| p.contains(ip))
        {
            Some(Refused::PerIp)
        } else {
            None
        };
        if let Some(r) = refused {
            metrics::counter!(CONNECTIONS_REFUSED, "reason" => r.label()).increment(1);
            return Err(r);
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_insert(0) += 1;
        metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
        Ok(ConnGuard { caps: self.clone(), ip })
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&ip);
            }
        }
        metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// One connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnGuard {
    caps: Arc<ConnCaps>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.caps.release(self.ip);
    }
}

/// A connection's IO with its place, and the write deadline: a write that makes no progress
/// for `write_stall` (a client that stopped reading) fails with `TimedOut`, which ends the
/// connection. Fields drop in order: the place is free before the socket closes, so a
/// client that sees the close may connect again at once.
pub struct Guarded<IO> {
    _guard: ConnGuard,
    io: IO,
    write_stall: Duration,
    /// Running while a write waits for the client; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> Guarded<IO> {
    pub fn new(io: IO, guard: ConnGuard, write_stall: Duration) -> Guarded<IO> {
        Guarded { _guard: guard, io, write_stall, stalled: None }
    }

    /// Turns a write's result into the deadline's: progress resets it, waiting runs it.
    fn deadline<T>(&mut self, res: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let limit = self.write_stall;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let msg = format!("the client read nothing for {limit:?}");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, msg)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        self.deadline(res, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_flush(cx);
        self.deadline(res, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_shutdown(cx);
        self.deadline(res, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.deadline(res, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The whole HTTP/1.1 answer to a refused plain-HTTP connection: `503 CONNECTION_LIMIT` in
/// the error shape (contract section 5), `Connection: close`. Written without waiting (a
/// freshly accepted socket's send buffer is empty) before the socket is dropped.
pub fn refusal() -> Vec<u8> {
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let body = ApiError::new(ErrorCode::ConnectionLimit).body(&id, &ts).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\
         retry-after: 1\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_in_total() {
        let mut s = Settings::default();
        s.http.max_connections = Some(3);
        s.http.max_connections_per_ip = 2;
        let l = ConnCaps::new(&s);
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::PerIp);
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert!(l.admit(a).is_ok());
    }
}
