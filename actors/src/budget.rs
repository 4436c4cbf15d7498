//! What one client may send: a frame budget and a byte budget, both token buckets. The
//! socket edge charges every frame it reads against them before anything else (size check,
//! decoding), so frames it refuses cost the client as much as frames it relays, and a client
//! over its budget is refused before its frame is decoded.
//!
//! Must not: sleep or block (a refused frame is answered with `RATE_LIMITED` at once), or
//! know about sockets (the edge passes the frame's length and the time it was read).

use std::time::Instant;

use signalgrid_config::LimitSettings;

/// Token bucket: `rate` tokens a second sustained, at most `burst` at once. Starts full.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        let burst = burst.max(1.0);
        Bucket { tokens: burst, rate, burst }
    }

    fn refill(&mut self, secs: f64) {
        self.tokens = (self.tokens + secs * self.rate).min(self.burst);
    }
}

/// One client's send budget (contract: `RATE_LIMITED`; settings `limits.ws_messages_per_sec`,
/// `limits.ws_burst`, `limits.ws_bytes_per_sec`, `limits.ws_burst_bytes`).
#[derive(Debug)]
pub struct Budget {
    frames: Bucket,
    bytes: Bucket,
    last: Instant,
}

impl Budget {
    /// A full budget, as of now.
    pub fn new(l: &LimitSettings) -> Budget {
        Budget {
            frames: Bucket::new(f64::from(l.ws_messages_per_sec), f64::from(l.ws_burst)),
            bytes: Bucket::new(f64::from(l.ws_bytes_per_sec), l.ws_burst_bytes as f64),
            last: Instant::now(),
        }
    }

    /// Charges one frame of `len` payload bytes read at `now`. True when both budgets hold
    /// it (then both are charged); false when either is short (then neither is: a refused
    /// frame costs nothing more, so a client that slows down gets through again).
    pub fn admit(&mut self, len: usize, now: Instant) -> bool {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.frames.refill(secs);
        self.bytes.refill(secs);
        let len = len as f64;
        if self.frames.tokens < 1.0 || self.bytes.tokens < len {
            return false;
        }
        self.frames.tokens -= 1.0;
        self.bytes.tokens -= len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(rate: u32, burst: u32, bytes_rate: u32, burst_bytes: usize) -> LimitSettings {
        LimitSettings {
            ws_messages_per_sec: rate,
            ws_burst: burst,
            ws_bytes_per_sec: bytes_rate,
            ws_burst_bytes: burst_bytes,
            ..LimitSettings::default()
        }
    }

    #[test]
    fn the_frame_burst_passes_then_the_rate_refills() {
        let mut b = Budget::new(&limits(10, 5, 1 << 20, 1 << 20));
        let t0 = b.last;
        assert!((0..5).all(|_| b.admit(10, t0)));
        assert!(!b.admit(10, t0), "burst spent");
        assert!(b.admit(10, t0 + Duration::from_millis(100)), "one token a tenth of a second");
        assert!(!b.admit(10, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn bytes_are_charged_and_a_refusal_charges_nothing() {
        let mut b = Budget::new(&limits(1000, 1000, 1000, 3000));
        let t0 = b.last;
        assert!(b.admit(2500, t0));
        assert!(!b.admit(1000, t0), "500 bytes left");
        assert!(b.admit(500, t0), "the refused frame took nothing");
        assert!(!b.admit(1, t0));
        assert!(b.admit(1000, t0 + Duration::from_secs(1)), "1000 bytes a second");
    }

    #[test]
    fn the_defaults_take_an_ice_burst_and_refuse_a_flood() {
        let l = LimitSettings::default();
        let mut b = Budget::new(&l);
        let t0 = b.last;
        // 600 candidates of 300 bytes, all at once.
        assert!((0..600).all(|_| b.admit(300, t0)));
        // A flood of 60 KB frames at the same instant runs out of bytes within the burst.
        let mut b = Budget::new(&l);
        let passed = (0..5000).filter(|_| b.admit(60_000, t0)).count();
        assert_eq!(passed, l.ws_burst_bytes / 60_000);
    }
}
