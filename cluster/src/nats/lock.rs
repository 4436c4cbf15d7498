//! A leadership lock for work that one node of a cluster does at a time (retention purges):
//! one JetStream KV key in the cluster's lock bucket, whose every entry expires after the
//! bucket's `max_age` (the lock's TTL).
//!
//! Taking it is create-if-absent (`kv.create`, which fails when the key holds a value);
//! keeping it is compare-and-set on the revision the holder last wrote (`kv.update`), so a
//! holder that stalled past the TTL, whose key another node has since taken, learns it lost
//! the lock on its next renewal instead of writing over the new holder. A holder that dies
//! leaves the key to expire, after which another node takes it. Releasing deletes the key
//! only at the holder's own revision.
//!
//! Must not: decide what the work is or when it runs (the caller does, between renewals).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::ClusterError;

/// One node's handle on one lock key.
pub struct KvLease {
    kv: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
    /// The revision this node last wrote, while it holds the lock.
    revision: Option<u64>,
}

/// The lock bucket, created with `max_age = ttl` if missing. The TTL is the bucket's: one
/// created earlier keeps its own (all of a cluster's locks share one TTL).
async fn bucket(js: &jetstream::Context, name: &str, ttl: Duration) -> Result<kv::Store, ClusterError> {
    match js.get_key_value(name).await {
        Ok(kv) => Ok(kv),
        Err(_) => js
            .create_key_value(kv::Config { bucket: name.to_owned(), history: 1, max_age: ttl, ..Default::default() })
            .await
            .map_err(|e| ClusterError::JetStream(e.to_string())),
    }
}

impl KvLease {
    /// A handle on lock `key` in bucket `bucket` for `holder` (a node id), with the bucket
    /// created if missing. Holds nothing until [`KvLease::hold`].
    pub async fn open(
        js: &jetstream::Context,
        bucket_name: &str,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<KvLease, ClusterError> {
        let kv = bucket(js, bucket_name, ttl).await?;
        Ok(KvLease { kv, key: key.to_owned(), holder: holder.to_owned(), ttl, revision: None })
    }

    /// The lock's TTL: renew well within it (a third is the usual pace).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether this node held the lock at its last [`KvLease::hold`].
    pub fn held(&self) -> bool {
        self.revision.is_some()
    }

    /// Takes the lock if it is free, or renews it if this node holds it. Returns whether this
    /// node holds it now. `Err` means NATS did not answer: the caller must then act as if it
    /// did not hold the lock (the lock state is unknown; it is kept for the next attempt).
    pub async fn hold(&mut self) -> Result<bool, ClusterError> {
        let value = Bytes::from(self.holder.clone());
        if let Some(rev) = self.revision {
            match self.kv.update(&self.key, value.clone(), rev).await {
                Ok(next) => {
                    self.revision = Some(next);
                    return Ok(true);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    // Expired (then taken by another node, or free again): try afresh.
                    self.revision = None;
                }
                Err(e) => return Err(ClusterError::JetStream(e.to_string())),
            }
        }
        match self.kv.create(&self.key, value).await {
            Ok(rev) => {
                self.revision = Some(rev);
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(ClusterError::JetStream(e.to_string())),
        }
    }

    /// Gives the lock up at once (on shutdown), if this node holds it: another node may
    /// take it without waiting for the TTL.
    pub async fn release(&mut self) {
        if let Some(rev) = self.revision.take() {
            if let Err(e) = self.kv.delete_expect_revision(&self.key, Some(rev)).await {
                tracing::debug!(key = %self.key, error = %e, "lock not released; it expires after its TTL");
            }
        }
    }

    /// The holder named in the key now (None when free), for operators and tests.
    pub async fn holder(&self) -> Result<Option<String>, ClusterError> {
        let entry = self.kv.entry(&self.key).await.map_err(|e| ClusterError::JetStream(e.to_string()))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put).map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }
}
