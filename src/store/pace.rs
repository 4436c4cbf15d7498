//! Pacing of the store's maintenance batches (`store rotate-key`, `store purge` and a node's
//! periodic purge; PROTOCOL.md section 9, docs/storage.md "Maintenance while nodes serve").
//!
//! On the embedded store every batch is one write transaction, and SQLite lets one writer
//! at a time into the file: while a batch runs, the nodes sharing the file wait for it
//! (their connections poll for the lock every millisecond, see the embedded store's busy
//! handler). Back to back, batches would leave them only microseconds between two batches.
//! A [`Pace`] therefore pauses after each batch in proportion to the time the batch took,
//! so that the batches hold the store at most a given share of the time (the *duty cycle*),
//! and at least [`MIN_PAUSE`], long enough for a waiting writer's next poll to land in it.

use std::time::Duration;

use signalgrid_config::Settings;

/// The duty cycle used on the embedded store unless one is given: batches hold the file's
/// write lock at most half of the time.
pub const EMBEDDED_MAX_DUTY: f64 = 0.5;

/// The smallest duty cycle accepted (a batch of 5 ms is then followed by about 0.5 s of pause).
pub const MIN_DUTY: f64 = 0.01;

/// The shortest pause after a batch when pacing: two polls of a waiting writer (they poll
/// every millisecond), so that one of them finds the lock free.
pub const MIN_PAUSE: Duration = Duration::from_millis(2);

/// A duty cycle out of range (`--max-duty`).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("the duty cycle must be a fraction from {MIN_DUTY} to 1 (got {0})")]
pub struct BadDuty(pub f64);

/// How much of the time maintenance batches may hold the store: a fraction in
/// [`MIN_DUTY`]..=1. 1 means no pause at all (batches back to back).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    max_duty: f64,
}

impl Pace {
    /// Batches back to back (the MongoDB default: its writes do not queue on one lock).
    pub const UNPACED: Pace = Pace { max_duty: 1.0 };

    /// A pace holding the store at most `max_duty` of the time. Error: `max_duty` outside
    /// [`MIN_DUTY`]..=1 (or not a number).
    pub fn new(max_duty: f64) -> Result<Pace, BadDuty> {
        if (MIN_DUTY..=1.0).contains(&max_duty) {
            Ok(Pace { max_duty })
        } else {
            Err(BadDuty(max_duty))
        }
    }

    /// The default for the store `settings` select: [`EMBEDDED_MAX_DUTY`] on the embedded
    /// store, [`Pace::UNPACED`] on MongoDB.
    pub fn default_for(settings: &Settings) -> Pace {
        if settings.store.mongodb_uri.is_some() {
            Pace::UNPACED
        } else {
            Pace { max_duty: EMBEDDED_MAX_DUTY }
        }
    }

    /// `max_duty`, or `default` when it is None; the error of [`Pace::new`].
    pub fn or_default(max_duty: Option<f64>, default: Pace) -> Result<Pace, BadDuty> {
        max_duty.map_or(Ok(default), Pace::new)
    }

    /// The fraction of the time batches may hold the store, 0.01 to 1.
    pub fn max_duty(&self) -> f64 {
        self.max_duty
    }

    /// The pause after a batch that took `held`: `held × (1 − d) / d` for a duty cycle `d`,
    /// at least [`MIN_PAUSE`]; zero when `d` is 1.
    pub fn pause_after(&self, held: Duration) -> Duration {
        if self.max_duty >= 1.0 {
            return Duration::ZERO;
        }
        held.mul_f64((1.0 - self.max_duty) / self.max_duty).max(MIN_PAUSE)
    }
}

/// Applies a [`Pace`] between batches and adds up the pauses.
#[derive(Debug)]
pub struct Pacer {
    pace: Pace,
    paused: Duration,
}

impl Pacer {
    pub fn new(pace: Pace) -> Pacer {
        Pacer { pace, paused: Duration::ZERO }
    }

    /// Sleeps the pause due after a batch that took `held` (call it only when another batch
    /// follows).
    pub async fn rest(&mut self, held: Duration) {
        let pause = self.pace.pause_after(held);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
            self.paused += pause;
        }
    }

    /// The pauses so far (as planned; the sleeps themselves may overrun by up to a
    /// millisecond or so each).
    pub fn paused(&self) -> Duration {
        self.paused
    }

    pub fn pace(&self) -> Pace {
        self.pace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_pause_keeps_the_batches_to_the_duty_cycle() {
        let half = Pace::new(0.5).unwrap();
        assert_eq!(half.pause_after(ms(6)), ms(6), "half the time: pause as long as the batch");
        let quarter = Pace::new(0.25).unwrap();
        assert_eq!(quarter.pause_after(ms(4)), ms(12), "a quarter: three times the batch");
        let most = Pace::new(0.8).unwrap();
        assert_eq!(most.pause_after(ms(40)), ms(10));
        let held = ms(7);
        let p = Pace::new(0.3).unwrap().pause_after(held);
        let duty = held.as_secs_f64() / (held + p).as_secs_f64();
        assert!((duty - 0.3).abs() < 1e-6, "{duty} (to the nanosecond)");
    }

    #[test]
    fn short_batches_still_leave_a_gap_a_poll_can_find_and_duty_one_never_pauses() {
        let half = Pace::new(0.5).unwrap();
        assert_eq!(half.pause_after(Duration::from_micros(300)), MIN_PAUSE);
        assert_eq!(half.pause_after(Duration::ZERO), MIN_PAUSE);
        assert_eq!(Pace::new(1.0).unwrap().pause_after(ms(50)), Duration::ZERO);
        assert_eq!(Pace::UNPACED.pause_after(ms(50)), Duration::ZERO);
    }

    #[test]
    fn duty_cycles_outside_a_hundredth_to_one_are_refused() {
        for bad in [0.0, -0.5, 0.009, 1.01, f64::NAN, f64::INFINITY] {
            assert!(Pace::new(bad).is_err(), "{bad}");
        }
        assert_eq!(Pace::new(0.01).unwrap().max_duty(), 0.01);
        assert_eq!(Pace::or_default(None, Pace::UNPACED), Ok(Pace::UNPACED));
        assert_eq!(Pace::or_default(Some(0.4), Pace::UNPACED).unwrap().max_duty(), 0.4);
        assert_eq!(Pace::or_default(Some(2.0), Pace::UNPACED), Err(BadDuty(2.0)));
    }

    #[test]
    fn the_embedded_store_is_paced_by_default_and_mongodb_is_not() {
        let mut s = Settings::default();
        assert_eq!(Pace::default_for(&s).max_duty(), EMBEDDED_MAX_DUTY);
        s.store.mongodb_uri = Some("mongodb://127.0.0.1:1".into());
        assert_eq!(Pace::default_for(&s), Pace::UNPACED);
    }

    #[tokio::test]
    async fn a_pacer_adds_up_its_pauses() {
        let mut p = Pacer::new(Pace::new(0.5).unwrap());
        p.rest(ms(5)).await;
        p.rest(Duration::from_micros(100)).await;
        assert_eq!(p.paused(), ms(7));
        let mut none = Pacer::new(Pace::UNPACED);
        none.rest(ms(5)).await;
        assert_eq!(none.paused(), Duration::ZERO);
    }
}
