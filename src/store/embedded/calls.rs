//! The embedded store's part in calls that end by themselves (PROTOCOL.md section 8;
//! `signalgrid_actors::auto_end`): `room_idle`, since when each room with a started call
//! has had no member, and the end that says whether this write made it. Each call is one
//! statement or one immediate transaction on the store thread, so node processes sharing
//! the file agree on who ended a call.

use rusqlite::{params, Connection, TransactionBehavior};
use signalgrid_actors::ports::{EndOutcome, OpenCall};
use signalgrid_actors::rules::call_duration_minutes;

use super::sessions::load;
use super::{time, Keyring};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS room_idle (room TEXT PRIMARY KEY, empty_since INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_open_calls ON sessions (video_call_started)
    WHERE video_call_started IS NOT NULL AND video_call_ended IS NULL;
";

/// Ends call `id` at `at` (ms) unless it has ended; true when this transaction ended it.
pub(super) fn end(c: &mut Connection, k: &Keyring, id: &str, at: i64) -> rusqlite::Result<Option<(EndOutcome, bool)>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(s) = load(&tx, k, id)? else { return Ok(None) };
    let Some(started) = s.video_call_started else { return Ok(Some((EndOutcome::NotStarted, false))) };
    let mut ended_here = false;
    if s.video_call_ended.is_none() {
        let at_t = time(Some(at)).unwrap_or(started);
        tx.prepare_cached(
            "UPDATE sessions SET video_call_ended = ?2, call_duration = ?3, status = 'Completed' \
             WHERE id = ?1 AND video_call_ended IS NULL",
        )?
        .execute(params![id, at, call_duration_minutes(started, at_t)])?;
        ended_here = true;
    }
    let s = load(&tx, k, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    tx.commit()?;
    Ok(Some((EndOutcome::Ended(s), ended_here)))
}

/// Records `room` empty since `at` (ms); returns the time kept.
pub(super) fn empty(c: &Connection, room: &str, at: i64, overwrite: bool) -> rusqlite::Result<i64> {
    let sql = if overwrite {
        "INSERT INTO room_idle (room, empty_since) VALUES (?1, ?2) \
         ON CONFLICT (room) DO UPDATE SET empty_since = excluded.empty_since"
    } else {
        "INSERT OR IGNORE INTO room_idle (room, empty_since) VALUES (?1, ?2)"
    };
    c.prepare_cached(sql)?.execute(params![room, at])?;
    c.prepare_cached("SELECT empty_since FROM room_idle WHERE room = ?1")?.query_row([room], |r| r.get(0))
}

pub(super) fn occupied(c: &Connection, room: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM room_idle WHERE room = ?1")?.execute([room]).map(|_| ())
}

pub(super) fn open(c: &Connection, k: &Keyring, max: usize) -> rusqlite::Result<Vec<OpenCall>> {
    let mut q = c.prepare_cached(
        "SELECT s.id, r.empty_since FROM sessions s LEFT JOIN room_idle r ON r.room = s.meeting_link \
         WHERE s.video_call_started IS NOT NULL AND s.video_call_ended IS NULL \
         ORDER BY s.video_call_started LIMIT ?1",
    )?;
    let rows: Vec<(String, Option<i64>)> = q
        .query_map([i64::try_from(max).unwrap_or(i64::MAX)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut calls = Vec::with_capacity(rows.len());
    for (id, since) in rows {
        if let Some(session) = load(c, k, &id)? {
            calls.push(OpenCall { session, empty_since: time(since) });
        }
    }
    Ok(calls)
}
