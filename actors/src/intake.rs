//! Flow control from a socket to its ConnectionActor: how many frames read from the client
//! wait for the actor. The socket task reads the next frame only while fewer than `INTAKE`
//! wait, and the actor marks each frame handled. So a client that sends faster than its
//! actor works cannot grow the actor's mailbox (ractor's mailboxes are unbounded), nor
//! provoke more refusals at once than its outbound queue holds.
//!
//! Must not: block the actor, or cost a frame more than one atomic operation on each side
//! (the reader is woken only when it was held back).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Frames of one client that may wait for its ConnectionActor at once.
pub const INTAKE: usize = 128;

#[derive(Debug, Default)]
pub struct Intake {
    waiting: AtomicUsize,
    room: Notify,
}

impl Intake {
    /// The reader handed a frame to the actor.
    pub fn taken(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    /// The actor has handled a frame.
    pub fn handled(&self) {
        if self.waiting.fetch_sub(1, Ordering::AcqRel) == INTAKE {
            self.room.notify_one();
        }
    }

    /// The reader must wait for `room` before it reads another frame.
    pub fn full(&self) -> bool {
        self.waiting.load(Ordering::Acquire) >= INTAKE
    }

    /// Completes once a frame has been handled since the intake was full (or spuriously:
    /// check `full` again).
    pub async fn room(&self) {
        self.room.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_reader_waits_when_full_and_is_woken_by_the_actor() {
        let intake = std::sync::Arc::new(Intake::default());
        for _ in 0..INTAKE {
            assert!(!intake.full());
            intake.taken();
        }
        assert!(intake.full(), "INTAKE frames wait: read no more");
        let waiter = tokio::spawn({
            let intake = intake.clone();
            async move {
                while intake.full() {
                    intake.room().await;
                }
            }
        });
        intake.handled();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.expect("reader woken").unwrap();
        assert!(!intake.full());
    }
}
