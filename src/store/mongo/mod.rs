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
pub mod reseal;
pub mod webhooks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use signalgrid_actors::ports::{EndOutcome, OpenCall, Store, StoreError};
use signalgrid_actors::rules::call_duration_minutes;
use signalgrid_actors::session::{
    now_ms, AuditCursor, AuditEntry, AuditFilter, AuditPage, NewSession, Session, SessionStatus,
};
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, WebhookStats};

use self::db::Db;
use super::outbox::{Outbox, OutboxOp};
use super::seal::Keyring;

/// How often the background task retries reaching MongoDB and replaying the outbox.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// Sessions remembered for answering call records while MongoDB is away.
const CACHE_MAX: usize = 10_000;

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
        tokio::spawn(background(Arc::downgrade(&inner)));
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

/// Retries start-up and replays the outbox until the store is dropped.
async fn background(inner: Weak<Inner>) {
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

    fn remember(&self, s: &Session) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= CACHE_MAX && !c.contains_key(&s.id) {
            c.clear();
        }
        c.insert(s.id.clone(), s.clone());
    }

    fn cached(&self, id: &str) -> Option<Session> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Replays the outbox, oldest first, until it is empty or MongoDB stops answering.
    async fn drain(&self) -> Result<(), StoreError> {
        let _g = self.drain_lock.lock().await;
        let ob = |e: super::outbox::OutboxError| StoreError::Other(e.to_string());
        loop {
            let (seq, op) = match self.outbox.peek() {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(()),
                Err(e @ super::outbox::OutboxError::Corrupt { seq, .. }) => {
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
    async fn must_queue(&self) -> bool {
        if self.outbox.is_empty() {
            return false;
        }
        if self.healthy.load(Ordering::Acquire) {
            let _ = self.drain().await;
        }
        !self.outbox.is_empty()
    }

    /// Queues a call record; on a full or failing outbox the original error stands.
    fn queue(&self, op: OutboxOp, cause: StoreError) -> Result<(), StoreError> {
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

fn unavailable() -> StoreError {
    StoreError::Unavailable("MongoDB unavailable; earlier call records still wait in the outbox".into())
}

/// A direct call's error: `Unavailable` lets the record queue, anything else is returned.
fn queueable<T>(res: Result<T, StoreError>) -> Result<Result<T, StoreError>, StoreError> {
    match res {
        Err(e @ StoreError::Unavailable(_)) => Ok(Err(e)),
        Err(e) => Err(e),
        Ok(v) => Ok(Ok(v)),
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
        let inner = &self.inner;
        let cause = if inner.must_queue().await {
            unavailable()
        } else {
            let res = inner.db.mark_started(id, at).await;
            inner.note(&res);
            match queueable(res)? {
                Ok(s) => {
                    s.iter().for_each(|s| inner.remember(s));
                    return Ok(s);
                }
                Err(e) => e,
            }
        };
        let op = OutboxOp::Start { session_id: id.to_owned(), at_ms: at.timestamp_millis() };
        // Without a session seen before, the record still queues but the caller hears 503.
        let Some(mut s) = inner.cached(id) else {
            inner.queue(op, cause.clone())?;
            return Err(cause);
        };
        inner.queue(op, cause)?;
        s.video_call_started.get_or_insert(at);
        if !matches!(s.status, SessionStatus::Completed | SessionStatus::Cancelled) {
            s.status = SessionStatus::InProgress;
        }
        inner.remember(&s);
        Ok(Some(s))
    }

    async fn mark_ended(&self, id: &str, at: DateTime<Utc>) -> Result<Option<EndOutcome>, StoreError> {
        let inner = &self.inner;
        let cause = if inner.must_queue().await {
            unavailable()
        } else {
            let res = inner.db.mark_ended(id, at).await;
            inner.note(&res);
            match queueable(res)? {
                Ok(out) => {
                    if let Some(EndOutcome::Ended(s)) = &out {
                        inner.remember(s);
                    }
                    return Ok(out);
                }
                Err(e) => e,
            }
        };
        let op = OutboxOp::End { session_id: id.to_owned(), at_ms: at.timestamp_millis() };
        // Only a call this node saw start can be answered without MongoDB. The end is queued
        // all the same, so the record is not lost (replayed, it changes nothing if the call
        // never started or has ended already); the caller hears 503.
        let Some(mut s) = inner.cached(id).filter(|s| s.video_call_started.is_some()) else {
            inner.queue(op, cause.clone())?;
            return Err(cause);
        };
        if s.video_call_ended.is_none() {
            inner.queue(op, cause)?;
            let started = s.video_call_started.unwrap_or(at);
            s.video_call_ended = Some(at);
            s.call_duration = Some(call_duration_minutes(started, at));
            s.status = SessionStatus::Completed;
            inner.remember(&s);
        }
        Ok(Some(EndOutcome::Ended(s)))
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
        let inner = &self.inner;
        let cause = if inner.must_queue().await {
            unavailable()
        } else {
            let res = inner.db.touch(id, at).await;
            inner.note(&res);
            match queueable(res)? {
                Ok(()) => return Ok(()),
                Err(e) => e,
            }
        };
        inner.queue(OutboxOp::Touch { session_id: id.to_owned(), at_ms: at.timestamp_millis() }, cause)?;
        if let Some(mut s) = inner.cached(id) {
            s.last_accessed_at = Some(s.last_accessed_at.map_or(at, |t| t.max(at)));
            s.access_count += 1;
            inner.remember(&s);
        }
        Ok(())
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let inner = &self.inner;
        let op = docs::audit_op(&entry, inner.db.keys());
        let cause = if inner.must_queue().await {
            unavailable()
        } else {
            let res = inner.db.audit(&op).await;
            inner.note(&res);
            match queueable(res)? {
                Ok(()) => return Ok(()),
                Err(e) => e,
            }
        };
        inner.queue(op, cause)
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
