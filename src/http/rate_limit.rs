//! Per-key request rate limit (token bucket: `per_minute` requests a minute, bursting to the
//! same number), keyed by user id or, before authentication, by client IP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle, full ones are swept.
const SWEEP_AT: usize = 10_000;

pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute: f64::from(per_minute.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` says when to retry.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let rate = self.per_minute / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT && !map.contains_key(key) {
            let cap = self.per_minute;
            map.retain(|_, (tokens, last)| *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < cap);
        }
        let (tokens, last) = map.entry(key.to_owned()).or_insert((self.per_minute, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(self.per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_limit_then_refuses_then_refills() {
        let rl = RateLimiter::new(3);
        let t = Instant::now();
        for _ in 0..3 {
            rl.check_at("u", t).unwrap();
        }
        let wait = rl.check_at("u", t).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        rl.check_at("other", t).unwrap();
        rl.check_at("u", t + Duration::from_secs(21)).unwrap();
    }
}
