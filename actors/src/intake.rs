//! Flow control from a socket to its ConnectionActor: how many frames, and how many bytes,
//! read from the client wait for the actor. The socket task reads the next frame only while
//! fewer than `INTAKE` frames and fewer than `INTAKE_BYTES` bytes wait, and the actor marks
//! each frame handled. So a client that sends faster than its actor works cannot grow the
//! actor's mailbox (ractor's mailboxes are unbounded) past `INTAKE_BYTES` plus one frame,
//! nor provoke more refusals at once than its outbound queue holds.
//!
//! Must not: block the actor, or cost a frame more than two atomic operations on each side
//! (the reader is woken only when it was held back).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Frames of one client that may wait for its ConnectionActor at once.
pub const INTAKE: usize = 128;
/// Bytes (frame payloads) of one client that may wait for its ConnectionActor at once. The
/// reader stops at this mark, so at most this plus one frame (`limits.max_frame_bytes`) wait.
pub const INTAKE_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct Intake {
    waiting: AtomicUsize,
    bytes: AtomicUsize,
    room: Notify,
}

impl Intake {
    /// The reader handed a frame of `len` bytes to the actor.
    pub fn taken(&self, len: usize) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(len, Ordering::AcqRel);
    }

    /// The actor has handled a frame of `len` bytes (as given to `taken`).
    pub fn handled(&self, len: usize) {
        // Saturating: after a resume, frames the old socket read are handed back to the new
        // socket's intake.
        let sub = |n: usize| move |v: usize| Some(v.saturating_sub(n));
        let frames = self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, sub(1)).unwrap_or(0);
        let bytes = self.bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, sub(len)).unwrap_or(0);
        if frames >= INTAKE || bytes >= INTAKE_BYTES {
            self.room.notify_one();
        }
    }

    /// The reader must wait for `room` before it reads another frame.
    pub fn full(&self) -> bool {
        self.waiting.load(Ordering::Acquire) >= INTAKE || self.bytes.load(Ordering::Acquire) >= INTAKE_BYTES
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
            intake.taken(1);
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
        intake.handled(1);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.expect("reader woken").unwrap();
        assert!(!intake.full());
    }

    #[tokio::test]
    async fn bytes_fill_the_intake_before_frames_do() {
        let intake = std::sync::Arc::new(Intake::default());
        intake.taken(INTAKE_BYTES - 1);
        assert!(!intake.full(), "one byte short: the next frame may be read");
        intake.taken(64 * 1024);
        assert!(intake.full(), "two frames, but over the byte mark");
        let waiter = tokio::spawn({
            let intake = intake.clone();
            async move {
                while intake.full() {
                    intake.room().await;
                }
            }
        });
        intake.handled(INTAKE_BYTES - 1);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.expect("reader woken").unwrap();
        assert!(!intake.full());
    }
}
