//! The embedded store: SQLite (bundled) in `<data_dir>/signalgrid.sqlite3`.
//!
//! WAL mode and a busy timeout let several processes share the file. Every write is one
//! statement or one immediate transaction, so concurrent nodes cannot interleave a
//! read-then-write. Calls run on tokio's blocking pool; the connection is behind a mutex
//! that is never held across an `.await`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use signalgrid_actors::ports::{EndOutcome, Store, StoreError};
use signalgrid_actors::rules::call_duration_minutes;
use signalgrid_actors::session::{
    new_object_id, now_ms, AuditAction, AuditEntry, NewSession, Party, PaymentStatus, Session,
    SessionStatus, SessionType,
};

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
    created_at INTEGER NOT NULL
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
";

const COLUMNS: &str = "id, client_id, client_name, psychologist_id, psychologist_name, session_date, \
    duration_minutes, session_type, status, payment_status, meeting_link, is_video_call, video_call_started, \
    video_call_ended, call_duration, recording_enabled, recording_url, last_accessed_at, access_count, created_at";

/// SQLite-backed `Store`.
#[derive(Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

fn bad_column(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("bad {what}").into(),
    )
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let kind: String = r.get(7)?;
    let status: String = r.get(8)?;
    let pay: String = r.get(9)?;
    Ok(Session {
        id: r.get(0)?,
        client: Party {
            id: r.get(1)?,
            name: r.get(2)?,
        },
        psychologist: Party {
            id: r.get(3)?,
            name: r.get(4)?,
        },
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
    })
}

fn load(c: &Connection, id: &str) -> rusqlite::Result<Option<Session>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from_row,
    )
    .optional()
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store file in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            other(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path)
            .map_err(|e| other(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql_err)?;
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        Ok(EmbeddedStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(other)?
        .map_err(sql_err)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_session(&self, n: NewSession) -> Result<Session, StoreError> {
        self.with(move |c| {
            let now = now_ms();
            let id = new_object_id(now);
            c.execute(
                "INSERT INTO sessions (id, client_id, client_name, psychologist_id, psychologist_name, session_date, \
                 duration_minutes, session_type, status, payment_status, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    id,
                    n.client.id,
                    n.client.name,
                    n.psychologist.id,
                    n.psychologist.name,
                    ms(n.session_date),
                    n.duration_minutes,
                    n.session_type.as_str(),
                    n.status.as_str(),
                    n.payment_status.as_str(),
                    ms(now)
                ],
            )?;
            load(c, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
        .await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| load(c, &id)).await
    }

    async fn session_by_room(&self, room_id: &str) -> Result<Option<Session>, StoreError> {
        let room = room_id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE meeting_link = ?1"),
                [room],
                session_from_row,
            )
            .optional()
        })
        .await
    }

    async fn ensure_room(&self, id: &str, candidate: &str) -> Result<Option<Session>, StoreError> {
        let (id, candidate) = (id.to_owned(), candidate.to_owned());
        self.with(move |c| {
            c.execute(
                "UPDATE sessions SET meeting_link = ?2 WHERE id = ?1 AND meeting_link IS NULL",
                params![id, candidate],
            )?;
            load(c, &id)
        })
        .await
    }

    async fn mark_started(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE sessions SET video_call_started = COALESCE(video_call_started, ?2), \
                 status = CASE WHEN status IN ('Completed', 'Cancelled') THEN status ELSE 'In Progress' END \
                 WHERE id = ?1",
                params![id, ms(at)],
            )?;
            load(c, &id)
        })
        .await
    }

    async fn mark_ended(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<EndOutcome>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(s) = load(&tx, &id)? else { return Ok(None) };
            let Some(started) = s.video_call_started else { return Ok(Some(EndOutcome::NotStarted)) };
            if s.video_call_ended.is_none() {
                tx.execute(
                    "UPDATE sessions SET video_call_ended = ?2, call_duration = ?3, status = 'Completed' WHERE id = ?1",
                    params![id, ms(at), call_duration_minutes(started, at)],
                )?;
            }
            let s = load(&tx, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            tx.commit()?;
            Ok(Some(EndOutcome::Ended(s)))
        })
        .await
    }

    async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE sessions SET last_accessed_at = ?2, access_count = access_count + 1 WHERE id = ?1",
                params![id, ms(at)],
            )
            .map(|_| ())
        })
        .await
    }

    async fn audit(&self, e: AuditEntry) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit_log (session_id, user_id, action, timestamp, metadata, ip_address, user_agent) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.session_id,
                    e.user_id,
                    e.action.as_str(),
                    ms(e.timestamp),
                    e.metadata.to_string(),
                    e.ip_address,
                    e.user_agent
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn audit_trail(&self, session_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let id = session_id.to_owned();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT session_id, user_id, action, timestamp, metadata, ip_address, user_agent \
                 FROM audit_log WHERE session_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([id], |r| {
                let action: String = r.get(2)?;
                let meta: String = r.get(4)?;
                Ok(AuditEntry {
                    session_id: r.get(0)?,
                    user_id: r.get(1)?,
                    action: AuditAction::parse(&action).ok_or_else(|| bad_column(2, "action"))?,
                    timestamp: time(Some(r.get(3)?)).ok_or_else(|| bad_column(3, "timestamp"))?,
                    metadata: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
                    ip_address: r.get(5)?,
                    user_agent: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(())))
            .await
    }
}
