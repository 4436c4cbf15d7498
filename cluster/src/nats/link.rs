//! The state of this node's NATS connection, as the client's connection events report it:
//! whether it is up, since when, and an epoch that grows with every loss and every return.
//!
//! Liveness is judged only on a link that has been up for a whole `dead_after` period: a
//! peer's silence while this node could not hear anyone proves nothing. A sweep notes the
//! epoch when it decides and checks it again before each compare-and-set, so a decision made
//! before an outage is never applied after it (docs/cluster.md, "When things go wrong").

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by the connection's event callback (writer) and the presence task (reader).
#[derive(Debug)]
pub(crate) struct Link {
    up: AtomicBool,
    epoch: AtomicU64,
    since: Mutex<Instant>,
}

impl Default for Link {
    /// Up since now (made right after the first connection succeeded).
    fn default() -> Self {
        Link { up: AtomicBool::new(true), epoch: AtomicU64::new(0), since: Mutex::new(Instant::now()) }
    }
}

impl Link {
    /// The connection was lost.
    pub fn lost(&self) {
        self.up.store(false, Ordering::Release);
        super::metrics::connected(false);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The connection is back.
    pub fn back(&self) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
        super::metrics::connected(true);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// When the connection last came back (or first connected).
    pub fn since(&self) -> Instant {
        *self.since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes with every loss and every return of the connection.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Up, without a break, for at least `period`: long enough to have heard every live
    /// peer's heartbeats (`period` is `dead_after`).
    pub fn trusted(&self, period: Duration) -> bool {
        self.is_up() && self.since().elapsed() >= period
    }

    /// Still the connection of `epoch`, up and trusted: a decision taken then still holds.
    pub fn unchanged(&self, epoch: u64, period: Duration) -> bool {
        self.epoch() == epoch && self.trusted(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_trusted_only_after_a_whole_period_up_and_any_break_changes_the_epoch() {
        let link = Link::default();
        let e0 = link.epoch();
        assert!(link.trusted(Duration::ZERO));
        assert!(!link.trusted(Duration::from_secs(3600)), "just connected");
        link.lost();
        assert!(!link.is_up() && !link.trusted(Duration::ZERO));
        link.back();
        assert!(link.trusted(Duration::ZERO));
        assert!(!link.unchanged(e0, Duration::ZERO), "a decision from before the outage no longer holds");
        assert!(link.unchanged(link.epoch(), Duration::ZERO));
    }
}
