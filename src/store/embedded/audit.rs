//! The embedded store's audit trail queries: pages newest first by (timestamp, row id),
//! counts, and bounded purge batches. Runs on the store thread (see the parent module);
//! does no I/O of its own beyond the connection it is given.

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, Row};
use signalgrid_actors::session::{AuditAction, AuditCursor, AuditEntry, AuditFilter, AuditPage};

use super::super::seal::{field, Keyring};
use super::{bad_column, time, unsealable};

/// The columns `entry_from_row` reads, in order.
pub(super) const ENTRY_COLUMNS: &str = "session_id, user_id, action, timestamp, metadata, ip_address, user_agent";

/// Reads an entry from a row selected with `ENTRY_COLUMNS` first, its sealed values opened
/// with `k`.
pub(super) fn entry_from_row(r: &Row<'_>, k: &Keyring) -> rusqlite::Result<AuditEntry> {
    let action: String = r.get(2)?;
    let meta = k.open(field::METADATA, &r.get::<_, String>(4)?).map_err(|e| unsealable(4, e))?;
    let ip = k.open_opt(field::IP_ADDRESS, r.get::<_, Option<String>>(5)?.as_deref()).map_err(|e| unsealable(5, e))?;
    let ua = k.open_opt(field::USER_AGENT, r.get::<_, Option<String>>(6)?.as_deref()).map_err(|e| unsealable(6, e))?;
    Ok(AuditEntry {
        session_id: r.get(0)?,
        user_id: r.get(1)?,
        action: AuditAction::parse(&action).ok_or_else(|| bad_column(2, "action"))?,
        timestamp: time(Some(r.get(3)?)).ok_or_else(|| bad_column(3, "timestamp"))?,
        metadata: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
        ip_address: ip,
        user_agent: ua,
    })
}

/// The `WHERE` clause (without the keyword; `1` when empty) and its parameters.
fn conditions(f: &AuditFilter, after: Option<&AuditCursor>) -> (String, Vec<Sql>) {
    let mut sql = vec!["1".to_owned()];
    let mut args = Vec::new();
    let mut push = |cond: &str, v: Sql, args: &mut Vec<Sql>| {
        args.push(v);
        sql.push(cond.replace('?', &format!("?{}", args.len())));
    };
    if let Some(s) = &f.session_id {
        push("session_id = ?", Sql::Text(s.clone()), &mut args);
    }
    if let Some(u) = &f.user_id {
        push("user_id = ?", Sql::Text(u.clone()), &mut args);
    }
    if let Some(a) = f.action {
        push("action = ?", Sql::Text(a.as_str().to_owned()), &mut args);
    }
    if let Some(t) = f.from {
        push("timestamp >= ?", Sql::Integer(t.timestamp_millis()), &mut args);
    }
    if let Some(t) = f.to {
        push("timestamp <= ?", Sql::Integer(t.timestamp_millis()), &mut args);
    }
    if let Some(c) = after {
        // A cursor from another store kind has no row id: it then stands after every entry
        // of its millisecond.
        let id = c.id.parse::<i64>().unwrap_or(i64::MAX);
        args.push(Sql::Integer(c.timestamp_ms));
        args.push(Sql::Integer(id));
        let (t, i) = (args.len() - 1, args.len());
        sql.push(format!("(timestamp < ?{t} OR (timestamp = ?{t} AND id < ?{i}))"));
    }
    (sql.join(" AND "), args)
}

/// One page, newest first; reads one entry more than `limit` to know whether more follow.
pub(super) fn page(
    c: &Connection,
    k: &Keyring,
    f: &AuditFilter,
    after: Option<&AuditCursor>,
    limit: usize,
) -> rusqlite::Result<AuditPage> {
    let (cond, args) = conditions(f, after);
    let sql = format!(
        "SELECT {ENTRY_COLUMNS}, id FROM audit_log WHERE {cond} ORDER BY timestamp DESC, id DESC LIMIT {}",
        limit.saturating_add(1)
    );
    let mut st = c.prepare_cached(&sql)?;
    let mut rows = st.query(params_from_iter(args))?;
    let mut out = AuditPage::default();
    let mut last = None;
    while let Some(r) = rows.next()? {
        if out.entries.len() == limit {
            out.next = last;
            break;
        }
        let e = entry_from_row(r, k)?;
        last = Some(AuditCursor { timestamp_ms: e.timestamp.timestamp_millis(), id: r.get::<_, i64>(7)?.to_string() });
        out.entries.push(e);
    }
    Ok(out)
}

pub(super) fn count(c: &Connection, f: &AuditFilter) -> rusqlite::Result<u64> {
    let (cond, args) = conditions(f, None);
    let sql = format!("SELECT COUNT(*) FROM audit_log WHERE {cond}");
    c.prepare_cached(&sql)?.query_row(params_from_iter(args), |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// Deletes up to `max` of the oldest entries before `before_ms`, in one statement.
pub(super) fn purge(c: &Connection, before_ms: i64, max: usize) -> rusqlite::Result<u64> {
    c.prepare_cached(
        "DELETE FROM audit_log WHERE id IN \
         (SELECT id FROM audit_log WHERE timestamp < ?1 ORDER BY timestamp, id LIMIT ?2)",
    )?
    .execute(rusqlite::params![before_ms, max as i64])
    .map(|n| n as u64)
}
