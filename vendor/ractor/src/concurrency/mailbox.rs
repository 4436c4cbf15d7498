// signalgrid patch (see VENDORED.md at the crate root): an unbounded MPSC channel with the
// API ractor uses from `tokio::sync::mpsc::unbounded_channel`, built on `flume`, whose queue
// is a `VecDeque` allocated on first use. tokio's unbounded channel allocates a 32-slot block
// and a 512-byte channel when it is created, so every actor paid about 4.4 KB for its two
// mailboxes at spawn, used or not; a flume channel costs about 150 bytes until it is used,
// and grows only as far as its deepest backlog.

use tokio::sync::mpsc::error::{SendError, TryRecvError};

/// The sending half of an unbounded MPSC channel (cloneable).
pub struct MpscUnboundedSender<T>(flume::Sender<T>);

impl<T> Clone for MpscUnboundedSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> std::fmt::Debug for MpscUnboundedSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpscUnboundedSender").finish()
    }
}

impl<T> MpscUnboundedSender<T> {
    /// Queues `message`; fails, handing it back, once the receiver is closed or dropped.
    pub fn send(&self, message: T) -> Result<(), SendError<T>> {
        self.0.send(message).map_err(|flume::SendError(m)| SendError(m))
    }

    /// Whether the receiver is closed or dropped.
    pub fn is_closed(&self) -> bool {
        self.0.is_disconnected()
    }

    /// Whether both senders feed the same channel.
    pub fn same_channel(&self, other: &Self) -> bool {
        self.0.same_channel(&other.0)
    }
}

/// The receiving half of an unbounded MPSC channel.
pub struct MpscUnboundedReceiver<T>(Option<flume::Receiver<T>>);

impl<T> std::fmt::Debug for MpscUnboundedReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpscUnboundedReceiver").finish()
    }
}

impl<T> MpscUnboundedReceiver<T> {
    /// The next message, or `None` once the channel is closed and empty, or every sender is
    /// gone and it is empty.
    pub async fn recv(&mut self) -> Option<T> {
        match &self.0 {
            Some(rx) => rx.recv_async().await.ok(),
            None => None,
        }
    }

    /// Waits for at least one message, then moves up to `limit` queued messages into `buffer`.
    /// Returns how many were moved: 0 only when the channel is closed and empty, or `limit` is 0.
    pub async fn recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        let Some(first) = self.recv().await else {
            return 0;
        };
        buffer.push(first);
        let mut moved = 1;
        while moved < limit {
            match self.try_recv() {
                Ok(m) => {
                    buffer.push(m);
                    moved += 1;
                }
                Err(_) => break,
            }
        }
        moved
    }

    /// A queued message, if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match &self.0 {
            Some(rx) => rx.try_recv().map_err(|e| match e {
                flume::TryRecvError::Empty => TryRecvError::Empty,
                flume::TryRecvError::Disconnected => TryRecvError::Disconnected,
            }),
            None => Err(TryRecvError::Disconnected),
        }
    }

    /// Closes the channel: what is queued now is dropped here, and later sends fail.
    ///
    /// tokio's `close` keeps the queue for a drain; flume has no receiver-side close, so the
    /// queue is drained and the receiver dropped. ractor refuses sends once an actor is
    /// draining or stopping (`ActorProperties::send_message_unchecked` checks the status), and
    /// closes the ports only when the actor has exited, so only a send that raced the exit
    /// can land between the drain and the drop; such a message is dropped with the channel's
    /// last sender instead of here.
    pub fn close(&mut self) {
        if let Some(rx) = self.0.take() {
            let queued: Vec<T> = rx.drain().collect();
            drop(rx);
            drop(queued);
        }
    }
}

/// An unbounded MPSC channel whose queue is allocated on first use.
pub fn mpsc_unbounded<T>() -> (MpscUnboundedSender<T>, MpscUnboundedReceiver<T>) {
    let (tx, rx) = flume::unbounded();
    (MpscUnboundedSender(tx), MpscUnboundedReceiver(Some(rx)))
}
