//! Waiting for the file's write lock (docs/storage.md "Maintenance while nodes serve").
//!
//! SQLite lets one connection write at a time; another that wants to write gets "busy" and
//! calls its busy handler until the lock is free or the handler gives up. SQLite's own busy
//! timeout sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms between tries, so a
//! writer that has waited a little polls only every 100 ms, and another process writing
//! batch after batch with short gaps (`store rotate-key`, `store purge`) keeps it out for
//! as long as it runs. [`wait_for_lock`] polls every millisecond instead: a writer gets in
//! within about a millisecond of a gap opening (maintenance batches leave gaps of at least
//! 2 ms, [`crate::store::pace::MIN_PAUSE`]).
//!
//! The write-ahead log only goes back to its start (instead of growing) when a write begins
//! after a checkpoint copied all of it into the file. Batches written back to back, with
//! checkpoints every 500 ms (copying what half a second of batches wrote, while more
//! arrives), grew it to about 1 GB during a rotation of 500,000 entries, and truncating it
//! at the end kept the nodes' writes out for half a second. The maintenance commands
//! therefore checkpoint on their own connection after their own commits whenever the log
//! holds [`MAINTENANCE_CHECKPOINT_PAGES`] or more (SQLite's `wal_autocheckpoint`; passive,
//! no lock held), so that the log is copied in small steps and restarts between them.
//!
//! The checkpoints that keep writers out (`FULL`, `TRUNCATE`: at shutdown, after `store
//! purge` and at the end of `rotate-key`) are preceded by a passive one
//! ([`checkpoint_then`]), which copies the log into the file without taking the lock.

use std::time::Duration;

use rusqlite::Connection;

/// Log pages (4 KiB each, so 16 MiB) past which a maintenance command's commit checkpoints.
pub const MAINTENANCE_CHECKPOINT_PAGES: i64 = 4096;

/// How long a writer sleeps between two tries for the lock.
pub const POLL: Duration = Duration::from_millis(1);

/// Tries before a write gives up with "database is locked" (about 5 s of waiting:
/// `StoreError::Unavailable`).
pub const MAX_POLLS: i32 = 5000;

/// The busy handler of the store's connections: `tries` is how many times it was called
/// already for this wait; sleeps [`POLL`] and asks SQLite to try again, until [`MAX_POLLS`].
pub fn wait_for_lock(tries: i32) -> bool {
    if tries >= MAX_POLLS {
        return false;
    }
    std::thread::sleep(POLL);
    true
}

/// A passive checkpoint (copies what it can of the write-ahead log into the file and syncs
/// it, without blocking writers), then one in `mode` (`FULL` or `TRUNCATE`), which waits
/// for the write lock and keeps writers out while it copies the rest and syncs: after the
/// passive one, only what was written in between.
pub fn checkpoint_then(c: &Connection, mode: &str) -> rusqlite::Result<()> {
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::TransactionBehavior;

    #[test]
    fn polls_until_the_limit_then_gives_up() {
        assert!(wait_for_lock(0));
        assert!(wait_for_lock(MAX_POLLS - 1));
        assert!(!wait_for_lock(MAX_POLLS));
    }

    /// A write that found the lock taken goes through once the holder commits.
    #[test]
    fn a_waiting_writer_gets_in_when_the_holder_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let mut holder = Connection::open(&path).unwrap();
        holder.pragma_update(None, "journal_mode", "WAL").unwrap();
        holder.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        let tx = holder.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let waiter = std::thread::spawn(move || {
            let c = Connection::open(&path).unwrap();
            c.busy_handler(Some(wait_for_lock)).unwrap();
            c.execute("INSERT INTO t VALUES (2)", [])
        });
        tx.commit().unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), 1);
        let n: i64 = holder.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }
}
