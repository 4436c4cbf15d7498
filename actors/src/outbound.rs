//! The bounded queue between a connection's producers (its actor, rooms, relays) and the
//! task that writes its socket.
//!
//! A full queue never blocks a producer and never grows: the client is marked as a slow
//! consumer and its writer is told to disconnect it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::telemetry;

/// One item for the socket writer: 24 bytes, the size of a `String`, so that the queue's
/// first block (32 slots, allocated with the queue) is 800 bytes instead of 1,056.
#[derive(Debug)]
pub enum Out {
    /// A text frame, already encoded.
    Text(String),
    /// Close the socket (after the frames queued before it). Boxed to keep `Out` small: a
    /// socket is closed once.
    Close(Box<Closing>),
}

/// A close frame's code (RFC 6455 7.4.1) and reason.
#[derive(Debug)]
pub struct Closing {
    pub code: u16,
    pub reason: &'static str,
}

#[derive(Debug, Default)]
struct Shared {
    overflowed: AtomicBool,
    kill: Notify,
}

/// Producer side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Out>,
    shared: Arc<Shared>,
}

/// Writer side, owned by the socket task.
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::Receiver<Out>,
    shared: Arc<Shared>,
}

/// Makes a queue of `capacity` frames.
pub fn channel(capacity: usize) -> (Outbound, OutboundRx) {
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Arc::new(Shared::default());
    (Outbound { tx, shared: shared.clone() }, OutboundRx { rx, shared })
}

impl Outbound {
    /// Queues a frame. Returns false if the client is gone or too slow (then it is being
    /// disconnected and the frame is dropped).
    pub fn send(&self, frame: String) -> bool {
        self.push(Out::Text(frame))
    }

    /// Queues a close after the frames already queued.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        self.push(Out::Close(Box::new(Closing { code, reason })))
    }

    fn push(&self, item: Out) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                    telemetry::slow_consumer();
                    self.shared.kill.notify_one();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// True once the queue overflowed.
    pub fn is_overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }
}

/// Completes when the queue overflowed: the writer must disconnect the client.
#[derive(Debug, Clone)]
pub struct OverflowSignal(Arc<Shared>);

impl OverflowSignal {
    pub async fn fired(&self) {
        if self.0.overflowed.load(Ordering::Acquire) {
            return;
        }
        self.0.kill.notified().await
    }
}

impl OutboundRx {
    /// The next item; None when every producer is gone.
    pub async fn recv(&mut self) -> Option<Out> {
        self.rx.recv().await
    }

    /// A handle that completes when a producer finds the queue full.
    pub fn overflow_signal(&self) -> OverflowSignal {
        OverflowSignal(self.shared.clone())
    }

    /// Items waiting right now (for batching writes).
    pub fn try_recv(&mut self) -> Option<Out> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_marks_overflow_and_wakes_writer() {
        let (tx, rx) = channel(2);
        assert!(tx.send("a".into()));
        assert!(tx.send("b".into()));
        assert!(!tx.send("c".into()), "third frame does not fit");
        assert!(tx.is_overflowed());
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.overflow_signal().fired())
            .await
            .expect("writer is told");
    }
}
