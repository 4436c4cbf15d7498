//! The durable outbox: call records (start, end, access, audit entries) that a remote store
//! could not take, kept in order in a small SQLite file on the node until they are written.
//!
//! Owns the queue (bounded by `store.outbox_max`), its file and the process-wide gauge
//! `signalgrid_store_outbox_pending`. It does not know how to write a record to a store: the
//! store that owns it replays entries (oldest first) and removes each one once written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// File name of the outbox inside the data directory.
pub const FILE_NAME: &str = "signalgrid-outbox.sqlite3";

/// The gauge: call records waiting in outboxes of this process.
pub const PENDING_GAUGE: &str = "signalgrid_store_outbox_pending";

/// Sum over every outbox of the process (tests run several nodes in one process).
static PROCESS_PENDING: AtomicI64 = AtomicI64::new(0);

fn publish(delta: i64) {
    let total = PROCESS_PENDING.fetch_add(delta, Ordering::AcqRel) + delta;
    metrics::gauge!(PENDING_GAUGE).set(total.max(0) as f64);
}

/// One call record that waits to be written. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxOp {
    Start {
        session_id: String,
        at_ms: i64,
    },
    End {
        session_id: String,
        at_ms: i64,
    },
    Touch {
        session_id: String,
        at_ms: i64,
    },
    /// An audit entry with the document id it was given when first tried (so a replay of a
    /// write that did land is recognised as a duplicate, not written twice).
    Audit {
        doc_id: String,
        session_id: String,
        user_id: String,
        action: String,
        timestamp_ms: i64,
        metadata: serde_json::Value,
        ip_address: Option<String>,
        user_agent: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox full ({0} call records wait)")]
    Full(usize),
    #[error("outbox {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("outbox entry {seq} unreadable: {source}")]
    Corrupt {
        seq: i64,
        #[source]
        source: serde_json::Error,
    },
}

/// A bounded, durable FIFO of [`OutboxOp`]s.
pub struct Outbox {
    conn: Mutex<Connection>,
    path: PathBuf,
    max: usize,
    len: AtomicUsize,
}

impl Outbox {
    /// Opens (creating if needed) `<data_dir>/signalgrid-outbox.sqlite3`. Entries left by an
    /// earlier run are kept and count as pending.
    pub fn open(data_dir: &Path, max: usize) -> Result<Outbox, OutboxError> {
        let path = data_dir.join(FILE_NAME);
        let err = |source| OutboxError::Sqlite { path: path.clone(), source };
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return Err(err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))));
        }
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
        )
        .map_err(err)?;
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)).map_err(err)?;
        let n = n.max(0) as usize;
        publish(n as i64);
        Ok(Outbox { conn: Mutex::new(conn), path, max, len: AtomicUsize::new(n) })
    }

    fn err(&self, source: rusqlite::Error) -> OutboxError {
        OutboxError::Sqlite { path: self.path.clone(), source }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records wait.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a record (durably: it is on disk when this returns).
    pub fn push(&self, op: &OutboxOp) -> Result<(), OutboxError> {
        let n = self.len();
        if n >= self.max {
            return Err(OutboxError::Full(n));
        }
        let body = serde_json::to_string(op).expect("outbox entries serialise");
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        c.execute("INSERT INTO outbox (body) VALUES (?1)", params![body]).map_err(|e| self.err(e))?;
        self.len.fetch_add(1, Ordering::AcqRel);
        publish(1);
        Ok(())
    }

    /// The oldest record and its sequence number.
    pub fn peek(&self) -> Result<Option<(i64, OutboxOp)>, OutboxError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let row: Option<(i64, String)> = c
            .query_row("SELECT seq, body FROM outbox ORDER BY seq LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some((seq, body)) => match serde_json::from_str(&body) {
                Ok(op) => Ok(Some((seq, op))),
                Err(source) => Err(OutboxError::Corrupt { seq, source }),
            },
        }
    }

    /// Removes a record once written (or found unreadable).
    pub fn remove(&self, seq: i64) -> Result<(), OutboxError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.execute("DELETE FROM outbox WHERE seq = ?1", params![seq]).map_err(|e| self.err(e))?;
        if n > 0 {
            self.len.fetch_sub(1, Ordering::AcqRel);
            publish(-1);
        }
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        publish(-(self.len() as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: &str) -> OutboxOp {
        OutboxOp::Start { session_id: id.into(), at_ms: 1 }
    }

    #[test]
    fn fifo_bounded_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = Outbox::open(dir.path(), 2).unwrap();
            o.push(&start("a")).unwrap();
            o.push(&start("b")).unwrap();
            assert!(matches!(o.push(&start("c")), Err(OutboxError::Full(2))));
            assert_eq!(o.len(), 2);
        }
        let o = Outbox::open(dir.path(), 2).unwrap();
        assert_eq!(o.len(), 2);
        let (seq, op) = o.peek().unwrap().unwrap();
        assert_eq!(op, start("a"));
        o.remove(seq).unwrap();
        assert_eq!(o.peek().unwrap().unwrap().1, start("b"));
        assert_eq!(o.len(), 1);
    }
}
