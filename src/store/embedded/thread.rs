//! The store thread: it owns the connection and serves the queue of calls in arrival order
//! ([`EmbeddedStore::with`] puts a call on it). Audit entries that arrive together are
//! written in one transaction (group commit); each caller is answered once its entry is
//! committed, and entries are written before the next other call, so no caller sees the
//! store out of order.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, TransactionBehavior};
use signalgrid_actors::ports::StoreError;
use signalgrid_actors::session::AuditEntry;

use super::super::seal::{field, Keyring};
use super::{ms, other, sql_err, sql_err_ref, EmbeddedStore};

const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (session_id, user_id, action, timestamp, metadata, ip_address, user_agent) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Most audit entries written in one transaction.
const AUDIT_BATCH: usize = 256;

pub(super) type Job = Box<dyn FnOnce(&mut Connection) + Send>;
pub(super) type AuditDone = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// What the store thread is asked to do.
pub(super) enum Cmd {
    Call(Job),
    Audit(AuditEntry, AuditDone),
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

/// The store thread: serves the queue in order until every handle is gone. Audit entries
/// are held back only while more commands are already queued, and are written before the
/// next other call (so a caller never sees the store out of order).
pub(super) fn serve(mut conn: Connection, k: Arc<Keyring>, rx: mpsc::Receiver<Cmd>, alive: Option<mpsc::Sender<()>>) {
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
    /// Runs `f` with the connection on the store thread.
    pub(super) async fn with<T: Send + 'static>(
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use signalgrid_actors::ports::Store;
    use signalgrid_actors::session::{AuditAction, AuditEntry};

    use super::EmbeddedStore;

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
