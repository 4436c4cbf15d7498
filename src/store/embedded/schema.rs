//! The store file's tables (`sessions`, `audit_log`, `seal_keys`) as `CREATE … IF NOT
//! EXISTS`, run at every open, and the columns added to files made by older versions. The
//! webhook queue's and idle rooms' tables are in [`super::webhooks`] and [`super::calls`].

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
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

/// Columns added after a store file's tables were first made: added to older files at open.
pub(super) fn add_missing_columns(c: &Connection) -> rusqlite::Result<()> {
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
