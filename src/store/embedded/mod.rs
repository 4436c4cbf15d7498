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
//! - [`audit`]: reading, counting and purging the audit trail.
//! - [`busy`]: waiting for the write lock another process holds.
//! - [`webhooks`]: the durable webhook queue.
//! - [`reseal`]: the kids in use (checked at open) and `rotate-key`'s batches.

mod audit;
pub mod busy;
mod calls;
mod reseal;
mod webhooks;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use signalgrid_actors::ports::{EndOutcome, OpenCall, Store, StoreError};
use signalgrid_actors::session::{
    new_object_id, now_ms, AuditCursor, AuditEntry, AuditFilter, AuditPage, NewSession, Party, PaymentStatus, Session,
    SessionPatch, SessionStatus, SessionType,
};
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, WebhookStats};

use super::seal::{field, Keyring, SealError};

/// File name of the store inside the data directory.
pub const FILE_NAME: &str = "signalgrid.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_name TEXT NOT NULL,
    psychologist_id TEXT NOT NULL,
    psychologist_name TEXT NOT NULL,
    session_date INTEGER NOT NULL,
    duration_minutes INTEGER NOT NULL,
    session_type TEXT NOT NULL,
    status TEXT NOT NULL,
    payment_status TEXT NOT NULL,
    meeting_link TEXT UNIQUE,
    is_video_call INTEGER NOT NULL DEFAULT 1,
    video_call_started INTEGER,
    video_call_ended INTEGER,
    call_duration INTEGER,
    recording_enabled INTEGER NOT NULL DEFAULT 0,
    recording_url TEXT,
    last_accessed_at INTEGER,
    access_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    waiting_room INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    action TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    ip_address TEXT,
    user_agent TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_by_session ON audit_log (session_id, id);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (timestamp, id);
CREATE TABLE IF NOT EXISTS seal_keys (kid TEXT PRIMARY KEY, first_used INTEGER NOT NULL);
";

macro_rules! columns {
    () => {
        "id, client_id, client_name, psychologist_id, psychologist_name, session_date, \
         duration_minutes, session_type, status, payment_status, meeting_link, is_video_call, video_call_started, \
         video_call_ended, call_duration, recording_enabled, recording_url, last_accessed_at, access_count, created_at, \
         waiting_room"
    };
}

const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM sessions WHERE id = ?1");
const SELECT_BY_ROOM: &str = concat!("SELECT ", columns!(), " FROM sessions WHERE meeting_link = ?1");
const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (session_id, user_id, action, timestamp, metadata, ip_address, user_agent) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Most audit entries written in one transaction.
const AUDIT_BATCH: usize = 256;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;
type AuditDone = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// What the store thread is asked to do.
enum Cmd {
    Call(Job),
    Audit(AuditEntry, AuditDone),
}

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

/// A session as stored, with its names opened.
fn opened(k: &Keyring, mut s: Session) -> rusqlite::Result<Session> {
    s.client.name = k.open(field::CLIENT_NAME, &s.client.name).map_err(|e| unsealable(2, e))?;
    s.psychologist.name = k.open(field::PSYCHOLOGIST_NAME, &s.psychologist.name).map_err(|e| unsealable(4, e))?;
    Ok(s)
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let kind: String = r.get(7)?;
    let status: String = r.get(8)?;
    let pay: String = r.get(9)?;
    Ok(Session {
        id: r.get(0)?,
        client: Party { id: r.get(1)?, name: r.get(2)? },
        psychologist: Party { id: r.get(3)?, name: r.get(4)? },
        session_date: time(Some(r.get(5)?)).ok_or_else(|| bad_column(5, "sessionDate"))?,
        duration_minutes: r.get(6)?,
        session_type: SessionType::parse(&kind).ok_or_else(|| bad_column(7, "sessionType"))?,
        status: SessionStatus::parse(&status).ok_or_else(|| bad_column(8, "status"))?,
        payment_status: PaymentStatus::parse(&pay).ok_or_else(|| bad_column(9, "paymentStatus"))?,
        meeting_link: r.get(10)?,
        is_video_call: r.get(11)?,
        video_call_started: time(r.get(12)?),
        video_call_ended: time(r.get(13)?),
        call_duration: r.get(14)?,
        recording_enabled: r.get(15)?,
        recording_url: r.get(16)?,
        last_accessed_at: time(r.get(17)?),
        access_count: r.get(18)?,
        created_at: time(Some(r.get(19)?)).ok_or_else(|| bad_column(19, "createdAt"))?,
        waiting_room: r.get(20)?,
    })
}

/// Columns added after a store file's tables were first made: added to older files at open.
fn add_missing_columns(c: &Connection) -> rusqlite::Result<()> {
    let mut have = Vec::new();
    let mut q = c.prepare("SELECT name FROM pragma_table_info('sessions')")?;
    for name in q.query_map([], |r| r.get::<_, String>(0))? {
        have.push(name?);
    }
    if !have.iter().any(|n| n == "waiting_room") {
        c.execute_batch("ALTER TABLE sessions ADD COLUMN waiting_room INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

fn load(c: &Connection, k: &Keyring, id: &str) -> rusqlite::Result<Option<Session>> {
    c.prepare_cached(SELECT_BY_ID)?.query_row([id], session_from_row).optional()?.map(|s| opened(k, s)).transpose()
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

/// Writes the queued audit entries in one transaction and answers their callers.
fn write_audits(c: &mut Connection, k: &Keyring, batch: &mut Vec<(AuditEntry, AuditDone)>) {
    if batch.is_empty() {
        return;
    }
    let res = (|| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(INSERT_AUDIT)?;
            for (e, _) in batch.iter() {
                st.execute(params![
                    e.session_id,
                    e.user_id,
                    e.action.as_str(),
                    ms(e.timestamp),
                    k.seal(field::METADATA, &e.metadata.to_string()),
                    k.seal_opt(field::IP_ADDRESS, e.ip_address.as_deref()),
                    k.seal_opt(field::USER_AGENT, e.user_agent.as_deref())
                ])?;
            }
        }
        tx.commit()
    })();
    for (_, done) in batch.drain(..) {
        let _ = done.send(res.as_ref().map(|_| ()).map_err(sql_err_ref));
    }
}

/// How often the checkpointer copies the write-ahead log back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints on its own connection and thread, so that the store thread never stops for
/// a checkpoint's copy and fsync (SQLite would otherwise run one inside whichever commit
/// finds the log past 1,000 pages). A passive checkpoint does not block readers or writers.
fn checkpointer(conn: Connection, alive: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = alive.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Starts the checkpointer and turns off the store connection's own checkpoints; if the
/// checkpointer cannot start, the store connection keeps checkpointing itself.
fn start_checkpointer(conn: &Connection, path: &Path) -> Option<mpsc::Sender<()>> {
    let cp = Connection::open(path).ok()?;
    cp.busy_timeout(Duration::from_secs(1)).ok()?;
    let (alive, stop) = mpsc::channel();
    std::thread::Builder::new().name("signalgrid-checkpoint".into()).spawn(move || checkpointer(cp, stop)).ok()?;
    conn.pragma_update(None, "wal_autocheckpoint", 0).ok()?;
    Some(alive)
}

/// The store thread: serves the queue in order until every handle is gone. Audit entries
/// are held back only while more commands are already queued, and are written before the
/// next other call (so a caller never sees the store out of order).
fn serve(mut conn: Connection, k: Arc<Keyring>, rx: mpsc::Receiver<Cmd>, alive: Option<mpsc::Sender<()>>) {
    // Dropped when this thread ends, which stops the checkpointer.
    let _alive = alive;
    let mut audits = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Audit(e, done) => {
                    audits.push((e, done));
                    if audits.len() >= AUDIT_BATCH {
                        write_audits(&mut conn, &k, &mut audits);
                    }
                }
                Cmd::Call(job) => {
                    write_audits(&mut conn, &k, &mut audits);
                    // A panicking call drops its answer channel; the caller sees an error.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            }
            next = rx.try_recv().ok();
        }
        write_audits(&mut conn, &k, &mut audits);
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
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        add_missing_columns(&conn).map_err(sql_err)?;
        conn.execute_batch(webhooks::SCHEMA).map_err(sql_err)?;
        conn.execute_batch(calls::SCHEMA).map_err(sql_err)?;
        reseal::check_kids(&conn, &keys).map_err(|e| match e {
            reseal::CheckError::Sql(e) => sql_err(e),
            reseal::CheckError::Seal(e) => StoreError::from(e),
        })?;
        let alive = start_checkpointer(&conn, &path);
        let (tx, rx) = mpsc::channel();
        let thread_keys = keys.clone();
        std::thread::Builder::new()
            .name("signalgrid-store".into())
            .spawn(move || serve(conn, thread_keys, rx, alive))
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

    /// Runs `f` with the connection on the store thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = done.send(f(c));
        });
        self.tx.send(Cmd::Call(job)).map_err(|_| other("store thread stopped"))?;
        answer.await.map_err(|_| other("store call failed"))?.map_err(sql_err)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_session(&self, n: NewSession) -> Result<Session, StoreError> {
        let k = self.keys.clone();
        self.with(move |c| {
            let now = now_ms();
            let id = new_object_id(now);
            c.prepare_cached(
                "INSERT INTO sessions (id, client_id, client_name, psychologist_id, psychologist_name, session_date, \
                 duration_minutes, session_type, status, payment_status, created_at, waiting_room) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                id,
                n.client.id,
                k.seal(field::CLIENT_NAME, &n.client.name),
                n.psychologist.id,
                k.seal(field::PSYCHOLOGIST_NAME, &n.psychologist.name),
                ms(n.session_date),
                n.duration_minutes,
                n.session_type.as_str(),
                n.status.as_str(),
                n.payment_status.as_str(),
                ms(now),
                n.waiting_room
            ])?;
            load(c, &k, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
        .await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let (id, k) = (id.to_owned(), self.keys.clone());
        self.with(move |c| load(c, &k, &id)).await
    }

    async fn session_by_room(&self, room_id: &str) -> Result<Option<Session>, StoreError> {
        let (room, k) = (room_id.to_owned(), self.keys.clone());
        self.with(move |c| {
            let s = c.prepare_cached(SELECT_BY_ROOM)?.query_row([room], session_from_row).optional()?;
            s.map(|s| opened(&k, s)).transpose()
        })
        .await
    }

    async fn ensure_room(&self, id: &str, candidate: &str) -> Result<Option<Session>, StoreError> {
        let (id, candidate, k) = (id.to_owned(), candidate.to_owned(), self.keys.clone());
        self.with(move |c| {
            c.prepare_cached("UPDATE sessions SET meeting_link = ?2 WHERE id = ?1 AND meeting_link IS NULL")?
                .execute(params![id, candidate])?;
            load(c, &k, &id)
        })
        .await
    }

    async fn update_session(&self, id: &str, patch: &SessionPatch) -> Result<Option<Session>, StoreError> {
        let (id, p, k) = (id.to_owned(), patch.clone(), self.keys.clone());
        self.with(move |c| {
            c.prepare_cached(
                "UPDATE sessions SET payment_status = COALESCE(?2, payment_status), status = COALESCE(?3, status), \
                 session_date = COALESCE(?4, session_date), duration_minutes = COALESCE(?5, duration_minutes), \
                 waiting_room = COALESCE(?6, waiting_room) WHERE id = ?1",
            )?
            .execute(params![
                id,
                p.payment_status.map(PaymentStatus::as_str),
                p.status.map(SessionStatus::as_str),
                p.session_date.map(ms),
                p.duration_minutes,
                p.waiting_room
            ])?;
            load(c, &k, &id)
        })
        .await
    }

    async fn mark_started(&self, id: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        let (id, k) = (id.to_owned(), self.keys.clone());
        self.with(move |c| {
            c.prepare_cached(
                "UPDATE sessions SET video_call_started = COALESCE(video_call_started, ?2), \
                 status = CASE WHEN status IN ('Completed', 'Cancelled') THEN status ELSE 'In Progress' END \
                 WHERE id = ?1",
            )?
            .execute(params![id, ms(at)])?;
            load(c, &k, &id)
        })
        .await
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
        self.with(move |c| {
            c.prepare_cached(
                "UPDATE sessions SET last_accessed_at = ?2, access_count = access_count + 1 WHERE id = ?1",
            )?
            .execute(params![id, ms(at)])
            .map(|_| ())
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use signalgrid_actors::session::AuditAction;

    fn entry(session: &str, n: usize) -> AuditEntry {
        AuditEntry {
            session_id: session.to_owned(),
            user_id: format!("u{n}"),
            action: AuditAction::JoinAttempt,
            timestamp: Utc::now(),
            metadata: serde_json::json!({ "n": n }),
            ip_address: None,
            user_agent: None,
        }
    }

    /// A store opened for a maintenance command checkpoints after its own commits once the
    /// log holds 16 MiB; a node's store leaves checkpoints to its checkpointer thread.
    #[tokio::test]
    async fn maintenance_stores_checkpoint_after_their_commits_and_nodes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let pages = |s: &EmbeddedStore| {
            let s = s.clone();
            async move { s.with(|c| c.pragma_query_value(None, "wal_autocheckpoint", |r| r.get::<_, i64>(0))).await }
        };
        assert_eq!(pages(&store).await.unwrap(), 0);
        store.checkpoint_after_commits().await.unwrap();
        assert_eq!(pages(&store).await.unwrap(), busy::MAINTENANCE_CHECKPOINT_PAGES);
    }

    /// Entries sent together are committed (in batches) before their callers are answered,
    /// and reads queued after them see them.
    #[tokio::test]
    async fn concurrent_audits_are_all_written_before_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut writes = tokio::task::JoinSet::new();
        for n in 0..600 {
            let store = store.clone();
            writes.spawn(async move { store.audit(entry("s1", n)).await });
        }
        while let Some(res) =
            tokio::time::timeout(Duration::from_secs(30), writes.join_next()).await.expect("audit writes finish")
        {
            res.unwrap().unwrap();
        }
        let trail = store.audit_trail("s1").await.unwrap();
        assert_eq!(trail.len(), 600);
        let mut seen: Vec<usize> = trail.iter().map(|e| e.metadata["n"].as_u64().unwrap() as usize).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..600).collect::<Vec<_>>());
        assert!(store.audit_trail("other").await.unwrap().is_empty());
    }
}
