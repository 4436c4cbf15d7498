//! The embedded store: SQLite (bundled) in `<data_dir>/signalgrid.sqlite3`.
//!
//! WAL mode and a busy handler polling for the write lock every millisecond ([`busy`]) let
//! several processes share the file. Every write is one
//! statement or one immediate transaction, so concurrent nodes cannot interleave a
//! read-then-write.
//!
//! One thread owns the connection and serves calls from a queue in arrival order (no pile of
//! blocking-pool threads waiting on a lock). Statements are prepared once and cached. Audit
//! entries that arrive together are written in one transaction (group commit): each caller
//! still gets its answer only once its entry is committed.
//!
//! With keys set (`VIDEO_CALL_ENCRYPTION_KEY`), the participants' names in `sessions` and an
//! audit entry's `ip_address`, `user_agent` and `metadata` are stored sealed
//! ([`super::seal`]); they are opened on the way out, so callers only see plaintext.
//! `secure_delete` is on: deleted and overwritten content is zeroed in the file.
//!
//! - [`schema`]: the tables, made or completed at open.
//! - [`sessions`]: the `sessions` rows and their writes.
//! - [`thread`]: the store thread, its queue and the audit group commit.
//! - [`checkpointer`]: the thread that checkpoints the write-ahead log.
//! - [`calls`]: idle rooms and the end of a call.
//! - [`audit`]: reading, counting and purging the audit trail.
//! - [`busy`]: waiting for the write lock another process holds.
//! - [`webhooks`]: the durable webhook queue.
//! - [`reseal`]: the kids in use (checked at open) and `rotate-key`'s batches.

mod audit;
pub mod busy;
mod calls;
mod checkpointer;
mod reseal;
mod schema;
mod sessions;
mod thread;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use signalgrid_actors::ports::{EndOutcome, OpenCall, Store, StoreError};
use signalgrid_actors::session::{AuditCursor, AuditEntry, AuditFilter, AuditPage, NewSession, Session, SessionPatch};
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, WebhookStats};

use self::thread::Cmd;
use super::seal::{Keyring, SealError};

/// File name of the store inside the data directory.
pub const FILE_NAME: &str = "signalgrid.sqlite3";

/// SQLite-backed `Store`.
#[derive(Clone)]
pub struct EmbeddedStore {
    tx: mpsc::Sender<Cmd>,
    path: PathBuf,
    keys: Arc<Keyring>,
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    sql_err_ref(&e)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

fn bad_column(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("bad {what}").into())
}

/// A value of column `i` that does not open (its message names the kid).
fn unsealable(i: usize, e: SealError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

/// Copies a rusqlite error into a `StoreError` (one per waiting caller).
fn sql_err_ref(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store file in `data_dir`, without encryption keys:
    /// values are written as plaintext, and a file holding sealed values does not open.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(data_dir, Arc::new(Keyring::default()))
    }

    /// Opens (creating if needed) the store file in `data_dir`; `keys` seal and open the
    /// values about people. Fails, naming the kids, when stored values are sealed with a
    /// kid `keys` lacks ([`reseal::check_kids`]: the file's list of kids in use, and the
    /// newest rows).
    pub fn open_with(data_dir: &Path, keys: Arc<Keyring>) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| other(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|e| other(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_handler(Some(busy::wait_for_lock)).map_err(sql_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql_err)?;
        // What is deleted or overwritten (purged entries, values replaced by `rotate-key`,
        // plaintext from before keys were set) is zeroed in the file, not left in free space.
        conn.pragma_update(None, "secure_delete", "ON").map_err(sql_err)?;
        conn.execute_batch(schema::SCHEMA).map_err(sql_err)?;
        schema::add_missing_columns(&conn).map_err(sql_err)?;
        conn.execute_batch(webhooks::SCHEMA).map_err(sql_err)?;
        conn.execute_batch(calls::SCHEMA).map_err(sql_err)?;
        reseal::check_kids(&conn, &keys).map_err(|e| match e {
            reseal::CheckError::Sql(e) => sql_err(e),
            reseal::CheckError::Seal(e) => StoreError::from(e),
        })?;
        let alive = checkpointer::start_checkpointer(&conn, &path);
        let (tx, rx) = mpsc::channel();
        let thread_keys = keys.clone();
        std::thread::Builder::new()
            .name("signalgrid-store".into())
            .spawn(move || thread::serve(conn, thread_keys, rx, alive))
            .map_err(|e| other(format!("cannot start the store thread: {e}")))?;
        Ok(EmbeddedStore { tx, path, keys })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes this connection checkpoint (passively, after its own commits, on its store
    /// thread) whenever the write-ahead log holds [`busy::MAINTENANCE_CHECKPOINT_PAGES`] or
    /// more: for `store rotate-key` and `store purge`, whose batches would otherwise grow the
    /// log faster than the background checkpoints can reset it (see [`busy`]).
    pub async fn checkpoint_after_commits(&self) -> Result<(), StoreError> {
        self.with(|c| c.pragma_update(None, "wal_autocheckpoint", busy::MAINTENANCE_CHECKPOINT_PAGES)).await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_session(&self, n: NewSession) -> Result<Session, StoreError> {
        let k = self.keys.clone();
        self.with(move |c| sessions::create(c, &k, &n)).await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let (id, k) = (id.to_owned(), self.keys.clone());
        self.with(move |c| sessions::load(c, &k, &id)).await
    }

    async fn session_by_room(&self, room_id: &str) -> Result<Option<Session>, StoreError> {
        let (room, k) = (room_id.to_owned(), self.keys.clone());
        self.with(move |c| sessions::by_room(c, &k, &room)).await
    }

    async fn ensure_room(&self, id: &str, candidate: &str) -> Result<Option<Session>, StoreError> {
        let (id, candidate, k) = (id.to_owned(), candidate.to_owned(), self.keys.clone());
        self.with(move |c| sessions::ensure_room(c, &k, &id, &candidate)).await
    }

    async fn update_session(&self, id: &str, patch: &SessionPatch) -> Result<Option<Session>, StoreError> {
        let (id, p, k) = (id.to_owned(), patch.clone(), self.keys.clone());
        self.with(move |c| sessions::update(c, &k, &id, &p)).await
    }

    async fn mark_started(&self, id: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        let (id, k) = (id.to_owned(), self.keys.clone());
        self.with(move |c| sessions::mark_started(c, &k, &id, ms(at))).await
    }

    async fn mark_ended(&self, id: &str, at: DateTime<Utc>) -> Result<Option<EndOutcome>, StoreError> {
        let (id, k) = (id.to_owned(), self.keys.clone());
        self.with(move |c| calls::end(c, &k, &id, ms(at)).map(|o| o.map(|(end, _)| end))).await
    }

    async fn mark_ended_once(&self, id: &str, at: DateTime<Utc>) -> Result<Option<(EndOutcome, bool)>, StoreError> {
        let (id, k) = (id.to_owned(), self.keys.clone());
        self.with(move |c| calls::end(c, &k, &id, ms(at))).await
    }

    async fn room_empty(&self, room: &str, at: DateTime<Utc>, overwrite: bool) -> Result<DateTime<Utc>, StoreError> {
        let room = room.to_owned();
        let kept = self.with(move |c| calls::empty(c, &room, ms(at), overwrite)).await?;
        Ok(time(Some(kept)).unwrap_or(at))
    }

    async fn room_occupied(&self, room: &str) -> Result<(), StoreError> {
        let room = room.to_owned();
        self.with(move |c| calls::occupied(c, &room)).await
    }

    async fn open_calls(&self, max: usize) -> Result<Vec<OpenCall>, StoreError> {
        let k = self.keys.clone();
        self.with(move |c| calls::open(c, &k, max)).await
    }

    async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| sessions::touch(c, &id, ms(at))).await
    }

    async fn audit(&self, e: AuditEntry) -> Result<(), StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.tx.send(Cmd::Audit(e, done)).map_err(|_| other("store thread stopped"))?;
        answer.await.map_err(|_| other("audit write failed"))?
    }

    async fn audit_trail(&self, session_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let (id, k) = (session_id.to_owned(), self.keys.clone());
        self.with(move |c| {
            let sql = format!("SELECT {} FROM audit_log WHERE session_id = ?1 ORDER BY id", audit::ENTRY_COLUMNS);
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map([id], |r| audit::entry_from_row(r, &k))?;
            rows.collect()
        })
        .await
    }

    async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let (f, a, k) = (filter.clone(), after.cloned(), self.keys.clone());
        self.with(move |c| audit::page(c, &k, &f, a.as_ref(), limit)).await
    }

    async fn audit_count(&self, filter: &AuditFilter) -> Result<u64, StoreError> {
        let f = filter.clone();
        self.with(move |c| audit::count(c, &f)).await
    }

    async fn purge_audit(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
        let before = ms(before);
        self.with(move |c| audit::purge(c, before, max)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    /// A passive checkpoint, then a full one: the full one keeps other writers out while it
    /// copies and syncs, so the passive one (which does not) copies most of the log first.
    async fn flush(&self) -> Result<(), StoreError> {
        self.with(|c| busy::checkpoint_then(c, "FULL")).await
    }

    async fn enqueue_webhooks(&self, events: Vec<QueuedEvent>, max_waiting: u64) -> Result<usize, StoreError> {
        self.with(move |c| webhooks::enqueue(c, &events, max_waiting)).await
    }

    async fn claim_webhooks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let owner = owner.to_owned();
        self.with(move |c| webhooks::claim(c, &owner, ms(now), ms(lease_until), max)).await
    }

    async fn webhook_attempted(
        &self,
        id: &str,
        owner: &str,
        attempt: Attempt,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.with(move |c| webhooks::attempted(c, &id, &owner, &attempt, ms(now))).await
    }

    async fn webhook_stats(&self) -> Result<WebhookStats, StoreError> {
        self.with(|c| webhooks::stats(c)).await
    }

    async fn purge_webhooks(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
        let before = ms(before);
        self.with(move |c| webhooks::purge(c, before, max)).await
    }
}
