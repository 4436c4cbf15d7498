//! `[limits]`: what one client may do and hold (rates, sizes, queues, connections).

use serde::Deserialize;

/// Limits per client and per node (PROTOCOL.md sections 4 and 8).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// REST requests per minute per user (or per IP before authentication).
    pub rest_per_minute: u32,
    /// Admin tokens are operators and the platform's back end: not rate limited unless false.
    pub exempt_admins: bool,
    /// Concurrent WebSocket connections a node accepts.
    pub max_connections: usize,
    /// Largest WebSocket frame accepted, in bytes; larger ones get PAYLOAD_TOO_LARGE.
    pub max_frame_bytes: usize,
    /// Sustained frames per second a WebSocket client may send. Every frame counts, refused
    /// ones (too large, not JSON, binary, unknown event) included; protects the node's CPU.
    pub ws_messages_per_sec: u32,
    /// Frames a client may send at once above the sustained rate: an ICE gathering burst
    /// (mesh group calls, hosts with several interfaces) must pass.
    pub ws_burst: u32,
    /// Sustained bytes per second a WebSocket client may send (every frame's payload counts);
    /// protects bandwidth and the time spent reading frames only to refuse them.
    pub ws_bytes_per_sec: u32,
    /// Bytes a client may send at once above `ws_bytes_per_sec`; at least `max_frame_bytes`,
    /// so that one frame of the largest accepted size always fits.
    pub ws_burst_bytes: usize,
    /// Frames queued for one client before it counts as too slow and is disconnected. Holds
    /// at least a peer's whole frame burst (`ws_burst`), which may arrive before the client's
    /// writer runs once.
    pub outbound_queue: usize,
    /// Interval of server pings; two missed pongs close the socket.
    pub heartbeat_ms: u64,
    /// WebSocket upgrades the node accepts per second, sustained (all clients together; a
    /// fraction is allowed, down to 0.001: 0.5 is one every two seconds); more are refused with HTTP 503
    /// `CONNECT_RATE_LIMITED` and a `retry-after`. Spreads the clients of a drained or dead
    /// node over the time they take to come back.
    pub connect_rate: f64,
    /// Upgrades accepted at once above `connect_rate` (a full bucket at start); 1 to 1,000,000.
    pub connect_burst: u32,
    /// Minutes before the end of a session's join window at which its members get
    /// `session-ending {minutesLeft}` (PROTOCOL.md section 8); empty: no warnings.
    pub session_ending_minutes: Vec<u32>,
    /// Chat messages (`chat-message`) a WebSocket client may send per minute, sustained and
    /// at once; more are refused with `RATE_LIMITED` (PROTOCOL.md section 8). 1 or more.
    pub chat_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            rest_per_minute: 100,
            exempt_admins: true,
            max_connections: 10_000,
            max_frame_bytes: 64 * 1024,
            ws_messages_per_sec: 100,
            ws_burst: 1_000,
            ws_bytes_per_sec: 256 * 1024,
            ws_burst_bytes: 1024 * 1024,
            outbound_queue: 1024,
            heartbeat_ms: 25_000,
            connect_rate: 1_000.0,
            connect_burst: 2_000,
            session_ending_minutes: vec![10, 5, 1],
            chat_per_minute: 60,
        }
    }
}
