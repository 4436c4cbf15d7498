//! The embedded store's webhook queue (PROTOCOL.md section 7): the `webhook_events` table,
//! ordered within a room by `created_at` (ms), then by row id (`seq`, never reused), and `webhook_rooms`, the rooms that are live
//! (a `room.started` kept, its `room.finished` not yet). Every call is one immediate
//! transaction on the store thread, so several node processes sharing the file never both
//! keep one event or both claim one.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, Rule, WebhookStats};

use super::time;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    room TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    acked TEXT NOT NULL DEFAULT '[]',
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_waiting ON webhook_events (room, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS webhook_waiting_by_time ON webhook_events (room, created_at, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS webhook_finished ON webhook_events (finished_at) WHERE state <> 0;
CREATE TABLE IF NOT EXISTS webhook_rooms (room TEXT PRIMARY KEY, started_at INTEGER NOT NULL);
";

/// `state`: waiting, delivered, given up.
const WAITING: i64 = 0;
const DELIVERED: i64 = 1;
const GIVEN_UP: i64 = 2;

fn insert(c: &Connection, e: &QueuedEvent, body: &str) -> rusqlite::Result<usize> {
    let at = e.created_at.timestamp_millis();
    c.prepare_cached(
        "INSERT OR IGNORE INTO webhook_events (id, room, kind, created_at, body, next_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
    )?
    .execute(params![e.id, e.room, e.kind, at, body])
}

fn exists(c: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("SELECT 1 FROM webhook_events WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Keeps each event by its rule, in order; returns how many were dropped for the bound.
pub(super) fn enqueue(c: &mut Connection, events: &[QueuedEvent], max_waiting: u64) -> rusqlite::Result<usize> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut waiting: u64 =
        tx.prepare_cached("SELECT COUNT(*) FROM webhook_events WHERE state = 0")?.query_row([], |r| r.get(0))?;
    let mut dropped = 0;
    for e in events {
        if exists(&tx, &e.id)? {
            continue;
        }
        if waiting >= max_waiting {
            dropped += 1;
            continue;
        }
        let at = e.created_at.timestamp_millis();
        let body = match e.rule {
            Rule::Unique => e.body.to_string(),
            Rule::RoomStarted => {
                let live = tx
                    .prepare_cached("INSERT OR IGNORE INTO webhook_rooms (room, started_at) VALUES (?1, ?2)")?
                    .execute(params![e.room, at])?;
                if live == 0 {
                    continue;
                }
                e.body.to_string()
            }
            Rule::RoomFinished => {
                let started: Option<i64> = tx
                    .prepare_cached("SELECT started_at FROM webhook_rooms WHERE room = ?1")?
                    .query_row([&e.room], |r| r.get(0))
                    .optional()?;
                let Some(started) = started else { continue };
                tx.prepare_cached("DELETE FROM webhook_rooms WHERE room = ?1")?.execute([&e.room])?;
                let mut body = e.body.clone();
                body["data"]["durationSeconds"] = ((at - started).max(0) / 1000).into();
                body.to_string()
            }
        };
        waiting += insert(&tx, e, &body)? as u64;
    }
    tx.commit()?;
    Ok(dropped)
}

/// Claims the due heads of rooms (see `Store::claim_webhooks`).
pub(super) fn claim(
    c: &mut Connection,
    owner: &str,
    now: i64,
    lease_until: i64,
    max: usize,
) -> rusqlite::Result<Vec<ClaimedEvent>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claimed = {
        let mut st = tx.prepare_cached(
            "SELECT e.seq, e.id, e.room, e.created_at, e.body, e.attempts, e.acked FROM webhook_events e \
             WHERE e.state = 0 AND e.next_at <= ?1 AND e.lease_until <= ?1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_events o WHERE o.room = e.room AND o.state = 0 AND \
             (o.created_at < e.created_at OR (o.created_at = e.created_at AND o.seq < e.seq))) \
             ORDER BY e.created_at, e.seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![now, max as i64], |r| {
            let acked: String = r.get(6)?;
            Ok((
                r.get::<_, i64>(0)?,
                ClaimedEvent {
                    id: r.get(1)?,
                    room: r.get(2)?,
                    created_at: time(Some(r.get(3)?)).unwrap_or_default(),
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                    acked: serde_json::from_str(&acked).unwrap_or_default(),
                },
            ))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    {
        let mut st =
            tx.prepare_cached("UPDATE webhook_events SET lease_until = ?2, lease_owner = ?3 WHERE seq = ?1")?;
        for (seq, _) in &claimed {
            st.execute(params![seq, lease_until, owner])?;
        }
    }
    tx.commit()?;
    Ok(claimed.into_iter().map(|(_, e)| e).collect())
}

/// Records an attempt's outcome and releases the claim.
pub(super) fn attempted(c: &Connection, id: &str, owner: &str, attempt: &Attempt, now: i64) -> rusqlite::Result<()> {
    match attempt {
        Attempt::Delivered | Attempt::GiveUp => {
            let state = if *attempt == Attempt::Delivered { DELIVERED } else { GIVEN_UP };
            c.prepare_cached(
                "UPDATE webhook_events SET state = ?2, finished_at = ?3, attempts = attempts + 1, \
                 lease_until = 0, lease_owner = NULL WHERE id = ?1 AND state = ?4",
            )?
            .execute(params![id, state, now, WAITING])?;
        }
        Attempt::Retry { next_at, acked } => {
            let acked = serde_json::to_string(acked).unwrap_or_else(|_| "[]".into());
            c.prepare_cached(
                "UPDATE webhook_events SET attempts = attempts + 1, next_at = ?3, acked = ?4, lease_until = 0, \
                 lease_owner = NULL WHERE id = ?1 AND lease_owner = ?2 AND state = 0",
            )?
            .execute(params![id, owner, next_at.timestamp_millis(), acked])?;
        }
    }
    Ok(())
}

pub(super) fn stats(c: &Connection) -> rusqlite::Result<WebhookStats> {
    c.prepare_cached("SELECT COUNT(*), MIN(created_at) FROM webhook_events WHERE state = 0")?
        .query_row([], |r| Ok(WebhookStats { waiting: r.get(0)?, oldest: time(r.get(1)?) }))
}

/// Deletes up to `max` finished events finished before `before` (Unix ms).
pub(super) fn purge(c: &Connection, before: i64, max: usize) -> rusqlite::Result<u64> {
    let n = c
        .prepare_cached(
            "DELETE FROM webhook_events WHERE seq IN (SELECT seq FROM webhook_events \
             WHERE state <> 0 AND finished_at < ?1 ORDER BY finished_at LIMIT ?2)",
        )?
        .execute(params![before, max as i64])?;
    Ok(n as u64)
}
