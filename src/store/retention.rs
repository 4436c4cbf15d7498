//! Retention (PROTOCOL.md section 9): audit entries older than `retention.audit_days` are
//! deleted in bounded batches, by hand (`signalgrid store purge`) or periodically by one node
//! of a cluster at a time.
//!
//! One at a time: a clustered node purges only while it holds the cluster's `retention` lock
//! (a JetStream KV key with a TTL, [`KvLease`]), which it takes when free and renews while it
//! runs, also between batches of a long purge. A node without NATS purges on its own.
//! Batches are single store calls, so the store serves joins between them, and they are
//! paced ([`Pacer`]): on the embedded store a pause as long as the batch follows each one
//! by default, so that other nodes sharing the file get its write lock in between.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use signalgrid_actors::ports::{Store, StoreError};
use signalgrid_actors::session::AuditFilter;
use signalgrid_cluster::nats::KvLease;
use signalgrid_config::RetentionSettings;

use super::pace::{Pace, Pacer};

/// The lock's key in the cluster's lock bucket.
pub const LOCK_KEY: &str = "retention";
/// The lock's TTL: a holder that stops renewing loses it this long after its last renewal.
pub const LOCK_TTL: Duration = Duration::from_secs(30);

/// The oldest timestamp kept at `now` (None: `audit_days` 0 keeps everything).
pub fn cutoff(days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - chrono::Duration::days(i64::from(days)))
}

/// How many entries are older than `before` (what a purge would remove).
pub async fn expired(store: &dyn Store, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let to = before - chrono::Duration::milliseconds(1);
    store.audit_count(&AuditFilter { to: Some(to), ..AuditFilter::default() }).await
}

/// What one purge round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Another node holds the lock (or NATS did not answer): nothing was done here.
    NotLeader,
    /// This node purged (or was the only one): entries removed.
    Purged(u64),
}

/// Purges entries before `before` in batches of `batch` and returns the count; `pacer`
/// pauses between batches. With a `lease`, it is renewed between batches once a third of
/// its TTL has passed, and the purge stops after the batch during which the lock was lost.
pub async fn purge_before(
    store: &dyn Store,
    before: DateTime<Utc>,
    batch: usize,
    pacer: &mut Pacer,
    mut lease: Option<&mut KvLease>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    let mut renewed = tokio::time::Instant::now();
    loop {
        let started = tokio::time::Instant::now();
        let n = store.purge_audit(before, batch).await?;
        total += n;
        if (n as usize) < batch {
            return Ok(total);
        }
        pacer.rest(started.elapsed()).await;
        if let Some(l) = lease.as_deref_mut() {
            if renewed.elapsed() >= l.ttl() / 3 {
                renewed = tokio::time::Instant::now();
                if !matches!(l.hold().await, Ok(true)) {
                    tracing::warn!(removed = total, "retention lock lost during a purge; stopping");
                    return Ok(total);
                }
            }
        }
    }
}

/// Deletes webhook events delivered or given up before `before`, in batches of `batch`
/// paced by `pacer`; returns the count.
pub async fn purge_webhooks_before(
    store: &dyn Store,
    before: DateTime<Utc>,
    batch: usize,
    pacer: &mut Pacer,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let started = tokio::time::Instant::now();
        let n = store.purge_webhooks(before, batch).await?;
        total += n;
        if (n as usize) < batch {
            return Ok(total);
        }
        pacer.rest(started.elapsed()).await;
    }
}

/// The periodic purge of one node.
pub struct Purger {
    pub store: Arc<dyn Store>,
    pub settings: RetentionSettings,
    /// Pauses between batches ([`Pace::default_for`] the node's store).
    pub pace: Pace,
    /// The cluster lock; None on a node without NATS.
    pub lease: Option<KvLease>,
}

impl Purger {
    /// One round at `now`: take or renew the lock, then purge if this node holds it (audit
    /// entries, then finished webhook events; the count is the audit entries').
    pub async fn round(&mut self, now: DateTime<Utc>) -> Result<Round, StoreError> {
        if !self.hold().await {
            return Ok(Round::NotLeader);
        }
        let mut n = 0;
        let mut pacer = Pacer::new(self.pace);
        if let Some(before) = cutoff(self.settings.audit_days, now) {
            n = purge_before(&*self.store, before, self.settings.purge_batch, &mut pacer, self.lease.as_mut()).await?;
        }
        if let Some(before) = cutoff(self.settings.webhook_days, now) {
            let hooks = purge_webhooks_before(&*self.store, before, self.settings.purge_batch, &mut pacer).await?;
            if hooks > 0 {
                tracing::info!(removed = hooks, "finished webhook events purged");
            }
        }
        Ok(Round::Purged(n))
    }

    /// Takes or renews the lock (always true without a cluster).
    async fn hold(&mut self) -> bool {
        let Some(l) = &mut self.lease else { return true };
        match l.hold().await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "retention lock unknown (NATS); not purging this round");
                false
            }
        }
    }

    /// Runs rounds every `purge_every_secs`, renewing the lock in between, until `stop`.
    pub async fn run(mut self, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop;
        let every = Duration::from_secs(self.settings.purge_every_secs);
        let renew = LOCK_TTL / 3;
        let mut next_purge = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_purge {
                next_purge = tokio::time::Instant::now() + every;
                match self.round(Utc::now()).await {
                    Ok(Round::Purged(n)) => tracing::info!(removed = n, "retention purge done"),
                    Ok(Round::NotLeader) => tracing::info!("retention purge left to the node holding the lock"),
                    Err(e) => tracing::warn!(error = %e, "retention purge failed; retried next round"),
                }
            } else if let Some(l) = &mut self.lease {
                let _ = l.hold().await;
            }
            let wake = next_purge.min(tokio::time::Instant::now() + renew);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.changed() => break,
            }
        }
        if let Some(l) = &mut self.lease {
            l.release().await;
        }
    }
}
