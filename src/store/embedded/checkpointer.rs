//! The checkpointer: a thread with its own connection that copies the write-ahead log back
//! into the database file every [`CHECKPOINT_EVERY`], so the store thread never stops for a
//! checkpoint. Maintenance commands also checkpoint after their own commits
//! ([`super::EmbeddedStore::checkpoint_after_commits`]; why in [`super::busy`]).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

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
pub(super) fn start_checkpointer(conn: &Connection, path: &Path) -> Option<mpsc::Sender<()>> {
    let cp = Connection::open(path).ok()?;
    cp.busy_timeout(Duration::from_secs(1)).ok()?;
    let (alive, stop) = mpsc::channel();
    std::thread::Builder::new().name("signalgrid-checkpoint".into()).spawn(move || checkpointer(cp, stop)).ok()?;
    conn.pragma_update(None, "wal_autocheckpoint", 0).ok()?;
    Some(alive)
}

#[cfg(test)]
mod tests {
    use super::super::{busy, EmbeddedStore};

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
}
