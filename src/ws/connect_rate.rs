//! The node's WebSocket connect rate (PROTOCOL.md section 6, "Drain"): upgrades accepted per
//! second, all clients together, so that the clients of a drained or dead node arriving at
//! once are spread over time instead of all being served in the same instant.
//!
//! Settings `limits.connect_rate` (per second, sustained) and `limits.connect_burst` (at
//! once, the bucket's size; full at start). A GCRA limiter from the `governor` crate.
//! Must not: wait (a refused upgrade is answered at once, with when to come back).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota};

/// The node's one connect-rate limiter.
pub struct ConnectRate(DefaultDirectRateLimiter);

impl ConnectRate {
    /// `rate` upgrades a second sustained (a fraction allowed: 0.01 is one every 100 s), at
    /// most `burst` at once. Outside what the settings' validation lets through (rate at
    /// least 0.001, burst 1 to 1,000,000) the values are clamped into that range, and a rate
    /// faster than one upgrade a nanosecond is taken as that.
    pub fn new(rate: f64, burst: u32) -> ConnectRate {
        let slowest = Duration::from_secs(1000);
        let period = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(slowest).clamp(Duration::from_nanos(1), slowest);
        let burst = NonZeroU32::new(burst.min(1_000_000)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).expect("period is not zero").allow_burst(burst);
        ConnectRate(DefaultDirectRateLimiter::direct(quota))
    }

    /// Takes one upgrade from the bucket; `Err(seconds)` when it is empty: whole seconds
    /// (at least 1) until the next upgrade would be accepted, for `retry-after`.
    pub fn check(&self) -> Result<(), u64> {
        self.0.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.0.clock().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectRate;

    #[test]
    fn burst_then_refused_with_a_wait_of_whole_seconds() {
        let r = ConnectRate::new(1.0, 2);
        r.check().unwrap();
        r.check().unwrap();
        let wait = r.check().unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");

        let slow = ConnectRate::new(0.01, 1);
        slow.check().unwrap();
        let wait = slow.check().unwrap_err();
        assert!((99..=100).contains(&wait), "one upgrade every 100 s: {wait}");
    }
}
