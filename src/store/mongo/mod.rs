//! The MongoDB store: the platform's `sessions`, `users` and `auditlogs` collections, read
//! and written through the official driver.
//!
//! Owns connecting (a clear error, or starting not-ready with `store.start_unready`), the
//! start-up indexes, and what happens while MongoDB is unreachable: reads fail with
//! `StoreError::Unavailable` (REST answers 503), while call records (start, end, access,
//! audit entries) go to the node's durable [`Outbox`] and are replayed in order by a
//! background task once MongoDB answers. To answer a call record without MongoDB it keeps a
//! bounded cache of the sessions it last saw. It must not decide anything about calls
//! (rules live in the domain) and never holds a std lock across a MongoDB call (only the
//! async `drain_lock`, which orders outbox replays).
//!
//! - [`replay`]: queuing call records in the outbox and replaying them; the background task.
//! - [`records`]: the call records and the session cache that answers them.
//! - [`docs`]: document shapes and conversions.
//! - [`db`]: the driver calls, each one guarded write.
//! - [`audit`]: audit trail pages, counts and purge batches.
//! - [`webhooks`]: the durable webhook queue (no outbox: while MongoDB is away, events
//!   wait in the node's writer, in order, and delivery pauses).
//! - [`reseal`]: the kids in use (checked at start-up) and `rotate-key`'s batches.
//!
//! With keys set, an audit entry's `ipAddress`, `userAgent` and `metadata` are sealed
//! before they reach the outbox or `auditlogs` ([`super::seal`]); the platform's `sessions`
//! and `users` stay exactly as the platform wrote them.

pub mod audit;
pub mod calls;
pub mod db;
pub mod docs;
mod records;
mod replay;
pub mod reseal;
pub mod webhooks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use signalgrid_actors::ports::{EndOutcome, OpenCall, Store, StoreError};
use signalgrid_actors::session::{now_ms, AuditCursor, AuditEntry, AuditFilter, AuditPage, NewSession, Session};
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, WebhookStats};

use self::db::Db;
use super::outbox::Outbox;
use super::seal::Keyring;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub uri: String,
    pub database: String,
    /// Directory of the outbox file.
    pub data_dir: std::path::PathBuf,
    pub start_unready: bool,
    pub outbox_max: usize,
}

/// `Store` over MongoDB with a durable outbox for call records.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    hooks: webhooks::Queue,
    idle: calls::Idle,
    outbox: Outbox,
    cache: Mutex<HashMap<String, Session>>,
    /// Indexes created (start-up finished).
    ready: AtomicBool,
    /// The last MongoDB call answered (false after an `Unavailable`).
    healthy: AtomicBool,
    /// Held while replaying the outbox, so records are written once and in order.
    drain_lock: tokio::sync::Mutex<()>,
    label: String,
}

impl MongoStore {
    /// Connects, creates the indexes and opens the outbox in `data_dir`, without encryption
    /// keys (see [`MongoStore::open_with`]).
    pub async fn open(cfg: &MongoConfig) -> Result<MongoStore, StoreError> {
        MongoStore::open_with(cfg, Arc::new(Keyring::default())).await
    }

    /// Connects, checks that `keys` hold every kid the stored audit fields use (an error
    /// naming the missing kids; [`reseal::check_kids`]), creates the indexes and opens the
    /// outbox in `data_dir`. Unreachable MongoDB is an error unless `start_unready`: then the
    /// store starts not ready (`ping` fails) and keeps trying in the background (a missing
    /// kid found then keeps it not ready, logged as an error).
    pub async fn open_with(cfg: &MongoConfig, keys: Arc<Keyring>) -> Result<MongoStore, StoreError> {
        let options = db::client_options(&cfg.uri).await?;
        let label = format!("MongoDB at {} (database {})", db::hosts(&options), cfg.database);
        let db = Db::new(options, &cfg.database, keys)?;
        let hooks = webhooks::Queue::new(db.client(), &cfg.database);
        let idle = calls::Idle::new(db.client(), &cfg.database);
        let outbox = Outbox::open(&cfg.data_dir, cfg.outbox_max).map_err(|e| StoreError::Other(e.to_string()))?;
        let inner = Arc::new(Inner {
            db,
            hooks,
            idle,
            outbox,
            cache: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            drain_lock: tokio::sync::Mutex::new(()),
            label,
        });
        match inner.init().await {
            Ok(()) => {}
            Err(StoreError::Unavailable(e)) if cfg.start_unready => {
                tracing::warn!(store = %inner.label, error = %e, "MongoDB unreachable; starting not ready");
            }
            Err(StoreError::Unavailable(e)) => {
                return Err(StoreError::Unavailable(format!("{} is unreachable: {e}", inner.label)))
            }
            Err(StoreError::Other(e)) => return Err(StoreError::Other(format!("{}: {e}", inner.label))),
        }
        tokio::spawn(replay::background(Arc::downgrade(&inner)));
        Ok(MongoStore { inner })
    }

    /// Call records waiting in the outbox.
    pub fn outbox_pending(&self) -> usize {
        self.inner.outbox.len()
    }

    pub fn outbox_path(&self) -> &Path {
        self.inner.outbox.path()
    }

    /// Replays the outbox now (what the background task does every half second).
    pub async fn drain_outbox(&self) -> Result<(), StoreError> {
        self.inner.drain().await
    }

    /// The driver's client (tests inspect documents with it).
    pub fn client(&self) -> &mongodb::Client {
        self.inner.db.client()
    }
}

impl Inner {
    async fn init(&self) -> Result<(), StoreError> {
        let res = async {
            self.db.ping().await?;
            reseal::check_kids(&self.db).await?;
            self.db.create_indexes().await?;
            self.hooks.create_indexes().await
        }
        .await;
        self.note(&res);
        if res.is_ok() {
            self.ready.store(true, Ordering::Release);
        }
        res
    }

    /// Remembers whether MongoDB answered.
    fn note<T>(&self, res: &Result<T, StoreError>) {
        match res {
            Ok(_) => self.healthy.store(true, Ordering::Release),
            Err(StoreError::Unavailable(_)) => self.healthy.store(false, Ordering::Release),
            Err(StoreError::Other(_)) => {}
        }
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError> {
        let res = self.inner.db.create_session(new, now_ms()).await;
        self.inner.note(&res);
        let s = res?;
        self.inner.remember(&s);
        Ok(s)
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let res = self.inner.db.session(id).await;
        self.inner.note(&res);
        let s = res?;
        s.iter().for_each(|s| self.inner.remember(s));
        Ok(s)
    }

    async fn session_by_room(&self, room_id: &str) -> Result<Option<Session>, StoreError> {
        let res = self.inner.db.session_by_room(room_id).await;
        self.inner.note(&res);
        let s = res?;
        s.iter().for_each(|s| self.inner.remember(s));
        Ok(s)
    }

    async fn ensure_room(&self, id: &str, candidate: &str) -> Result<Option<Session>, StoreError> {
        let res = self.inner.db.ensure_room(id, candidate).await;
        self.inner.note(&res);
        let s = res?;
        s.iter().for_each(|s| self.inner.remember(s));
        Ok(s)
    }

    async fn update_session(
        &self,
        id: &str,
        patch: &signalgrid_actors::session::SessionPatch,
    ) -> Result<Option<Session>, StoreError> {
        let res = self.inner.db.update_session(id, patch).await;
        self.inner.note(&res);
        let s = res?;
        s.iter().for_each(|s| self.inner.remember(s));
        Ok(s)
    }

    async fn mark_started(&self, id: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        self.inner.mark_started(id, at).await
    }

    async fn mark_ended(&self, id: &str, at: DateTime<Utc>) -> Result<Option<EndOutcome>, StoreError> {
        self.inner.mark_ended(id, at).await
    }

    async fn mark_ended_once(&self, id: &str, at: DateTime<Utc>) -> Result<Option<(EndOutcome, bool)>, StoreError> {
        self.inner.end_once(id, at).await
    }

    async fn room_empty(&self, room: &str, at: DateTime<Utc>, overwrite: bool) -> Result<DateTime<Utc>, StoreError> {
        let res = self.inner.idle.empty(room, at, overwrite).await;
        self.inner.note(&res);
        res
    }

    async fn room_occupied(&self, room: &str) -> Result<(), StoreError> {
        let res = self.inner.idle.occupied(room).await;
        self.inner.note(&res);
        res
    }

    async fn open_calls(&self, max: usize) -> Result<Vec<OpenCall>, StoreError> {
        self.inner.open_calls(max).await
    }

    async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch(id, at).await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.inner.audit(entry).await
    }

    async fn audit_trail(&self, session_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let res = self.inner.db.audit_trail(session_id).await;
        self.inner.note(&res);
        res
    }

    async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let res = audit::page(self.inner.db.audit_logs(), self.inner.db.keys(), filter, after, limit).await;
        self.inner.note(&res);
        res
    }

    async fn audit_count(&self, filter: &AuditFilter) -> Result<u64, StoreError> {
        let res = audit::count(self.inner.db.audit_logs(), filter).await;
        self.inner.note(&res);
        res
    }

    async fn purge_audit(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
        let res = audit::purge(self.inner.db.audit_logs(), before, max).await;
        self.inner.note(&res);
        res
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.inner.ready.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(format!("{} not reached yet", self.inner.label)));
        }
        let res = self.inner.db.ping().await;
        self.inner.note(&res);
        res
    }

    async fn enqueue_webhooks(&self, events: Vec<QueuedEvent>, max_waiting: u64) -> Result<usize, StoreError> {
        let res = self.inner.hooks.enqueue(&events, max_waiting).await;
        self.inner.note(&res);
        res
    }

    async fn claim_webhooks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let res = self.inner.hooks.claim(owner, now, lease_until, max).await;
        self.inner.note(&res);
        res
    }

    async fn webhook_attempted(
        &self,
        id: &str,
        owner: &str,
        attempt: Attempt,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let res = self.inner.hooks.attempted(id, owner, attempt, now).await;
        self.inner.note(&res);
        res
    }

    async fn webhook_stats(&self) -> Result<WebhookStats, StoreError> {
        let res = self.inner.hooks.stats().await;
        self.inner.note(&res);
        res
    }

    async fn purge_webhooks(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
        let res = self.inner.hooks.purge(before, max).await;
        self.inner.note(&res);
        res
    }

    /// Outbox records are on disk already; this replays what it can before shutdown.
    async fn flush(&self) -> Result<(), StoreError> {
        if !self.inner.outbox.is_empty() {
            if let Err(e) = self.inner.drain().await {
                tracing::warn!(pending = self.inner.outbox.len(), error = %e, "outbox not empty at shutdown; it is replayed at the next start");
            }
        }
        Ok(())
    }
}
