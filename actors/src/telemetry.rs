//! Metric names and the handles the hot path uses (registered once, not looked up per
//! message). Recording goes through the `metrics` facade; which exporter is installed is the
//! binary's business.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::protocol::RelayKind;

pub const CONNECTIONS: &str = "signalgrid_connections";
pub const ROOMS: &str = "signalgrid_rooms";
pub const MESSAGES_RELAYED: &str = "signalgrid_messages_relayed_total";
pub const RELAY_LATENCY: &str = "signalgrid_relay_latency_seconds";
pub const WS_EVENTS: &str = "signalgrid_ws_events_total";
pub const WS_ERRORS: &str = "signalgrid_ws_errors_total";
pub const SLOW_CONSUMERS: &str = "signalgrid_slow_consumer_disconnects_total";
pub const ROOM_RESTARTS: &str = "signalgrid_room_restarts_total";
pub const REST_REQUESTS: &str = "signalgrid_rest_requests_total";
pub const REST_LATENCY: &str = "signalgrid_rest_latency_seconds";
pub const AUTH_FAILURES: &str = "signalgrid_auth_failures_total";
pub const RATE_LIMITED: &str = "signalgrid_rate_limited_total";
pub const RESUMES: &str = "signalgrid_resumes_total";
pub const SEATS_AWAY: &str = "signalgrid_seats_away";
pub const REPLAYED: &str = "signalgrid_replay_frames_total";
pub const BUFFER_OVERFLOWS: &str = "signalgrid_seat_buffer_overflows_total";
pub const RESUME_LATENCY: &str = "signalgrid_resume_latency_seconds";

struct Hot {
    relayed: [Counter; 3],
    latency: Histogram,
    connections: Gauge,
    rooms: Gauge,
    slow: Counter,
}

fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| Hot {
        relayed: RelayKind::ALL.map(|k| counter!(MESSAGES_RELAYED, "event" => k.event())),
        latency: histogram!(RELAY_LATENCY),
        connections: gauge!(CONNECTIONS),
        rooms: gauge!(ROOMS),
        slow: counter!(SLOW_CONSUMERS),
    })
}

/// One relayed message, and how long it took from socket read to the target's queue.
pub fn relayed(kind: RelayKind, latency: Duration) {
    let h = hot();
    h.relayed[kind as usize].increment(1);
    h.latency.record(latency.as_secs_f64());
}

pub fn connections(delta: f64) {
    hot().connections.increment(delta);
}

pub fn rooms(delta: f64) {
    hot().rooms.increment(delta);
}

pub fn slow_consumer() {
    hot().slow.increment(1);
}

/// A resume attempt, by result: `resumed`, `lost` (resumed, frames may be gone) or the
/// failure's reason.
pub fn resume(result: &'static str) {
    counter!(RESUMES, "result" => result).increment(1);
}

/// Seats without a socket (PROTOCOL.md section 6), up or down.
pub fn seats_away(delta: f64) {
    gauge!(SEATS_AWAY).increment(delta);
}

/// Frames replayed to a resumed socket.
pub fn replayed(n: usize) {
    counter!(REPLAYED).increment(n as u64);
}

/// A seat dropped a frame it owed (its buffer's bounds): its next resume fails.
pub fn seat_buffer_overflow() {
    counter!(BUFFER_OVERFLOWS).increment(1);
}

/// From a resume request to the seat's socket attached, in seconds.
pub fn resume_latency(d: Duration) {
    histogram!(RESUME_LATENCY).record(d.as_secs_f64());
}

/// A client event handled (by event name) or refused (by error code).
pub fn ws_event(event: &'static str) {
    counter!(WS_EVENTS, "event" => event).increment(1);
}

pub fn ws_error(code: &'static str) {
    counter!(WS_ERRORS, "code" => code).increment(1);
}
