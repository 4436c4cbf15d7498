//! The embedded store's side of sealing at rest: which kids its values use (checked when the
//! file opens) and `rotate-key`'s batches (PROTOCOL.md section 9; docs/security.md).
//!
//! The table `seal_keys` lists every kid that may have sealed a value in the file: a store
//! opened with keys adds its first kid before it writes anything, and `rotate-key` removes
//! the others only after a full scan found no value left under them. At open, the kids of
//! that list and of the newest 1,000 audit entries and sessions (values a node still running
//! with an older first key may have written meanwhile) must all be configured.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, TransactionBehavior};
use signalgrid_actors::ports::StoreError;
use signalgrid_actors::session::now_ms;

use super::super::seal::{field, kid_of, Keyring, Reseal, RotateBatch, RotateCounts, Rows, SealError};
use super::{ms, EmbeddedStore};

/// Rows of each table whose kids are read at open besides the list.
const SAMPLE: i64 = 1000;

/// Why the check at open failed.
#[derive(Debug)]
pub(super) enum CheckError {
    Sql(rusqlite::Error),
    Seal(SealError),
}

impl From<rusqlite::Error> for CheckError {
    fn from(e: rusqlite::Error) -> Self {
        CheckError::Sql(e)
    }
}

/// Fails naming the kids of stored values that `k` lacks; then records `k`'s first kid as
/// in use.
pub(super) fn check_kids(c: &Connection, k: &Keyring) -> Result<(), CheckError> {
    let mut kids: Vec<String> = Vec::new();
    let mut collect = |sql: &str, cols: usize| -> rusqlite::Result<()> {
        let mut st = c.prepare(sql)?;
        let mut rows = st.query([SAMPLE])?;
        while let Some(r) = rows.next()? {
            for i in 0..cols {
                if let Some(kid) = r.get::<_, Option<String>>(i)?.as_deref().and_then(kid_of) {
                    kids.push(kid.to_owned());
                }
            }
        }
        Ok(())
    };
    let mut st = c.prepare("SELECT kid FROM seal_keys")?;
    let listed: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    for t in SEALED {
        collect(&format!("SELECT {} FROM {} ORDER BY {} DESC LIMIT ?1", t.names(), t.table, t.key), t.columns.len())?;
    }
    kids.extend(listed);
    k.check_known(kids.iter().map(String::as_str)).map_err(CheckError::Seal)?;
    if let Some(kid) = k.current_kid() {
        c.execute("INSERT OR IGNORE INTO seal_keys (kid, first_used) VALUES (?1, ?2)", params![kid, ms(now_ms())])?;
    }
    Ok(())
}

/// `Some(new)` for a value to rewrite (counted), None to keep.
fn reseal_value(
    k: &Keyring,
    name: &str,
    v: Option<&str>,
    counts: &mut RotateCounts,
) -> Result<Option<String>, SealError> {
    let Some(v) = v else { return Ok(None) };
    let new = k.reseal(name, v)?;
    if new.is_some() {
        counts.note(v);
    }
    Ok(new)
}

fn seal_err(i: usize, e: SealError) -> rusqlite::Error {
    super::unsealable(i, e)
}

/// A table with sealed columns: its row key, and each column with the field name its values
/// are sealed under (the associated data, `seal::field`).
struct Sealed {
    table: &'static str,
    key: &'static str,
    columns: &'static [(&'static str, &'static str)],
}

const AUDIT: Sealed = Sealed {
    table: "audit_log",
    key: "id",
    columns: &[("metadata", field::METADATA), ("ip_address", field::IP_ADDRESS), ("user_agent", field::USER_AGENT)],
};

const SESSIONS: Sealed = Sealed {
    table: "sessions",
    key: "rowid",
    columns: &[("client_name", field::CLIENT_NAME), ("psychologist_name", field::PSYCHOLOGIST_NAME)],
};

/// Every table with sealed values (docs/storage.md lists them).
const SEALED: [&Sealed; 2] = [&AUDIT, &SESSIONS];

impl Sealed {
    fn names(&self) -> String {
        self.columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
    }
}

/// One batch of `t`'s rows after key `after`, in one immediate transaction: each value not
/// sealed with the current key is re-sealed with it.
fn batch(c: &mut Connection, k: &Keyring, t: &Sealed, after: i64, max: usize) -> rusqlite::Result<RotateBatch> {
    let (table, key) = (t.table, t.key);
    let read = format!("SELECT {key}, {} FROM {table} WHERE {key} > ?1 ORDER BY {key} LIMIT ?2", t.names());
    let sets: Vec<String> =
        t.columns.iter().enumerate().map(|(i, (col, _))| format!("{col} = COALESCE(?{}, {col})", i + 2)).collect();
    let write = format!("UPDATE {table} SET {} WHERE {key} = ?1", sets.join(", "));
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = RotateBatch::default();
    {
        let mut read = tx.prepare_cached(&read)?;
        let mut write = tx.prepare_cached(&write)?;
        let mut rows = read.query(params![after, max as i64])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let c = &mut out.counts;
            c.rows += 1;
            let mut values = vec![Value::Integer(id)];
            let mut changed = false;
            for (i, (_, name)) in t.columns.iter().enumerate() {
                let new = reseal_value(k, name, r.get::<_, Option<String>>(i + 1)?.as_deref(), c)
                    .map_err(|e| seal_err(i + 1, e))?;
                changed |= new.is_some();
                values.push(new.map_or(Value::Null, Value::Text));
            }
            if changed {
                write.execute(params_from_iter(values))?;
                c.rows_changed += 1;
            }
            out.next = Some(id.to_string());
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Rows with a value not sealed with the kid whose prefix (`sg1:<kid>:`) is `prefix`.
fn not_current(c: &Connection, prefix: &str) -> rusqlite::Result<u64> {
    let n = prefix.len() as i64;
    let counts: Vec<String> = SEALED
        .iter()
        .map(|t| {
            let off: Vec<String> = t
                .columns
                .iter()
                .map(|(col, _)| format!("({col} IS NOT NULL AND substr({col}, 1, ?2) <> ?1)"))
                .collect();
            format!("(SELECT COUNT(*) FROM {} WHERE {})", t.table, off.join(" OR "))
        })
        .collect();
    let sql = format!("SELECT {}", counts.join(" + "));
    c.query_row(&sql, params![prefix, n], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

#[async_trait]
impl Reseal for EmbeddedStore {
    fn rows(&self) -> &'static [Rows] {
        &[Rows::Audit, Rows::Sessions]
    }

    async fn reseal_batch(&self, rows: Rows, after: Option<String>, max: usize) -> Result<RotateBatch, StoreError> {
        if !self.keys.is_enabled() {
            return Err(SealError::NoKeys.into());
        }
        let after = after.and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
        let k = self.keys.clone();
        self.with(move |c| match rows {
            Rows::Audit => batch(c, &k, &AUDIT, after, max),
            Rows::Sessions => batch(c, &k, &SESSIONS, after, max),
        })
        .await
    }

    async fn not_current(&self) -> Result<u64, StoreError> {
        let kid = self.keys.current_kid().ok_or(SealError::NoKeys)?;
        let prefix = format!("{}{kid}:", super::super::seal::PREFIX);
        self.with(move |c| not_current(c, &prefix)).await
    }

    /// Checkpoints and truncates the write-ahead log, whose old frames still hold the
    /// values as they were before the rotation (a passive checkpoint first, so that the
    /// truncating one, which keeps the nodes' writes out, has little left to copy).
    async fn scrub(&self) -> Result<(), StoreError> {
        self.with(|c| super::busy::checkpoint_then(c, "TRUNCATE")).await
    }

    async fn retire_other_kids(&self) -> Result<Vec<String>, StoreError> {
        let kid = self.keys.current_kid().ok_or(SealError::NoKeys)?.to_owned();
        self.with(move |c| {
            let mut st = c.prepare("DELETE FROM seal_keys WHERE kid <> ?1 RETURNING kid")?;
            let gone = st.query_map([kid], |r| r.get(0))?.collect();
            gone
        })
        .await
    }
}
