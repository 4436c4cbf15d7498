//! The outbox side of the MongoDB store: call records queued while MongoDB is away, and
//! their replay, oldest first, once it answers (by the background task every
//! [`RETRY_EVERY`], before the next call record, and at shutdown). The background task also
//! retries start-up for a store that started not ready. Records are written once and in
//! order: replays hold `drain_lock`.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use signalgrid_actors::ports::StoreError;

use super::super::outbox::{OutboxError, OutboxOp};
use super::Inner;

/// How often the background task retries reaching MongoDB and replaying the outbox.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Retries start-up and replays the outbox until the store is dropped.
pub(super) async fn background(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        if !inner.ready.load(Ordering::Acquire) {
            match inner.init().await {
                Ok(()) => tracing::info!(store = %inner.label, "MongoDB reached; store ready"),
                Err(e @ StoreError::Other(_)) => tracing::error!(store = %inner.label, error = %e, "store not ready"),
                Err(e) => tracing::debug!(store = %inner.label, error = %e, "MongoDB still unreachable"),
            }
            continue;
        }
        if !inner.outbox.is_empty() {
            if let Err(e) = inner.drain().await {
                tracing::debug!(store = %inner.label, error = %e, pending = inner.outbox.len(), "outbox replay waits");
            }
        }
    }
}

impl Inner {
    /// Replays the outbox, oldest first, until it is empty or MongoDB stops answering.
    pub(super) async fn drain(&self) -> Result<(), StoreError> {
        let _g = self.drain_lock.lock().await;
        let ob = |e: OutboxError| StoreError::Other(e.to_string());
        loop {
            let (seq, op) = match self.outbox.peek() {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(()),
                Err(e @ OutboxError::Corrupt { seq, .. }) => {
                    tracing::error!(error = %e, "dropping an unreadable outbox entry");
                    self.outbox.remove(seq).map_err(ob)?;
                    continue;
                }
                Err(e) => return Err(ob(e)),
            };
            let res = self.db.apply(&op).await;
            self.note(&res);
            match res {
                Ok(()) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(StoreError::Other(e)) => {
                    tracing::error!(?op, error = %e, "outbox entry cannot be written; dropped");
                }
            }
            self.outbox.remove(seq).map_err(ob)?;
        }
    }

    /// Whether call records must queue behind waiting ones. While MongoDB answers, the
    /// backlog is replayed first (so records stay in order); while it does not, they queue.
    pub(super) async fn must_queue(&self) -> bool {
        if self.outbox.is_empty() {
            return false;
        }
        if self.healthy.load(Ordering::Acquire) {
            let _ = self.drain().await;
        }
        !self.outbox.is_empty()
    }

    /// Writes a call record or audit entry straight to MongoDB, unless earlier ones still
    /// wait in the outbox (then it must queue behind them, in order). `Ok(Ok(v))`: written;
    /// `Ok(Err(cause))`: not written, queue it (`cause` is `Unavailable`); `Err`: any other
    /// error, returned to the caller as is.
    pub(super) async fn write_or_queue<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<Result<T, StoreError>, StoreError> {
        if self.must_queue().await {
            return Ok(Err(unavailable()));
        }
        let res = write.await;
        self.note(&res);
        match res {
            Err(e @ StoreError::Unavailable(_)) => Ok(Err(e)),
            Err(e) => Err(e),
            Ok(v) => Ok(Ok(v)),
        }
    }

    /// Queues a call record; on a full or failing outbox the original error stands.
    pub(super) fn queue(&self, op: OutboxOp, cause: StoreError) -> Result<(), StoreError> {
        match self.outbox.push(&op) {
            Ok(()) => {
                tracing::warn!(
                    ?op,
                    pending = self.outbox.len(),
                    "MongoDB unavailable; call record queued in the outbox"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(?op, error = %e, "call record lost: MongoDB unavailable and outbox unusable");
                Err(cause)
            }
        }
    }
}

pub(super) fn unavailable() -> StoreError {
    StoreError::Unavailable("MongoDB unavailable; earlier call records still wait in the outbox".into())
}
