//! The `sessions` table: reading a row into a [`Session`] (its names opened with the
//! keyring) and the writes of the `Store` calls about sessions (create, generate-room,
//! update, start, access). Runs on the store thread, one statement a call; ending a call is
//! in [`super::calls`].

use rusqlite::{params, Connection, OptionalExtension, Row};
use signalgrid_actors::session::{
    new_object_id, now_ms, NewSession, Party, PaymentStatus, Session, SessionPatch, SessionStatus, SessionType,
};

use super::super::seal::{field, Keyring};
use super::{bad_column, ms, time, unsealable};

macro_rules! columns {
    () => {
        "id, client_id, client_name, psychologist_id, psychologist_name, session_date, \
         duration_minutes, session_type, status, payment_status, meeting_link, is_video_call, video_call_started, \
         video_call_ended, call_duration, recording_enabled, recording_url, last_accessed_at, access_count, created_at, \
         waiting_room"
    };
}

const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM sessions WHERE id = ?1");
const SELECT_BY_ROOM: &str = concat!("SELECT ", columns!(), " FROM sessions WHERE meeting_link = ?1");

/// A session as stored, with its names opened.
fn opened(k: &Keyring, mut s: Session) -> rusqlite::Result<Session> {
    s.client.name = k.open(field::CLIENT_NAME, &s.client.name).map_err(|e| unsealable(2, e))?;
    s.psychologist.name = k.open(field::PSYCHOLOGIST_NAME, &s.psychologist.name).map_err(|e| unsealable(4, e))?;
    Ok(s)
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let kind: String = r.get(7)?;
    let status: String = r.get(8)?;
    let pay: String = r.get(9)?;
    Ok(Session {
        id: r.get(0)?,
        client: Party { id: r.get(1)?, name: r.get(2)? },
        psychologist: Party { id: r.get(3)?, name: r.get(4)? },
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
        waiting_room: r.get(20)?,
    })
}

pub(super) fn load(c: &Connection, k: &Keyring, id: &str) -> rusqlite::Result<Option<Session>> {
    c.prepare_cached(SELECT_BY_ID)?.query_row([id], session_from_row).optional()?.map(|s| opened(k, s)).transpose()
}

pub(super) fn create(c: &Connection, k: &Keyring, n: &NewSession) -> rusqlite::Result<Session> {
    let now = now_ms();
    let id = new_object_id(now);
    c.prepare_cached(
        "INSERT INTO sessions (id, client_id, client_name, psychologist_id, psychologist_name, session_date, \
         duration_minutes, session_type, status, payment_status, created_at, waiting_room) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        id,
        n.client.id,
        k.seal(field::CLIENT_NAME, &n.client.name),
        n.psychologist.id,
        k.seal(field::PSYCHOLOGIST_NAME, &n.psychologist.name),
        ms(n.session_date),
        n.duration_minutes,
        n.session_type.as_str(),
        n.status.as_str(),
        n.payment_status.as_str(),
        ms(now),
        n.waiting_room
    ])?;
    load(c, k, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub(super) fn by_room(c: &Connection, k: &Keyring, room: &str) -> rusqlite::Result<Option<Session>> {
    let s = c.prepare_cached(SELECT_BY_ROOM)?.query_row([room], session_from_row).optional()?;
    s.map(|s| opened(k, s)).transpose()
}

pub(super) fn ensure_room(c: &Connection, k: &Keyring, id: &str, candidate: &str) -> rusqlite::Result<Option<Session>> {
    c.prepare_cached("UPDATE sessions SET meeting_link = ?2 WHERE id = ?1 AND meeting_link IS NULL")?
        .execute(params![id, candidate])?;
    load(c, k, id)
}

pub(super) fn update(c: &Connection, k: &Keyring, id: &str, p: &SessionPatch) -> rusqlite::Result<Option<Session>> {
    c.prepare_cached(
        "UPDATE sessions SET payment_status = COALESCE(?2, payment_status), status = COALESCE(?3, status), \
         session_date = COALESCE(?4, session_date), duration_minutes = COALESCE(?5, duration_minutes), \
         waiting_room = COALESCE(?6, waiting_room) WHERE id = ?1",
    )?
    .execute(params![
        id,
        p.payment_status.map(PaymentStatus::as_str),
        p.status.map(SessionStatus::as_str),
        p.session_date.map(ms),
        p.duration_minutes,
        p.waiting_room
    ])?;
    load(c, k, id)
}

/// Starts call `id` at `at` (ms): the first start is kept.
pub(super) fn mark_started(c: &Connection, k: &Keyring, id: &str, at: i64) -> rusqlite::Result<Option<Session>> {
    c.prepare_cached(
        "UPDATE sessions SET video_call_started = COALESCE(video_call_started, ?2), \
         status = CASE WHEN status IN ('Completed', 'Cancelled') THEN status ELSE 'In Progress' END \
         WHERE id = ?1",
    )?
    .execute(params![id, at])?;
    load(c, k, id)
}

/// Records an access to `id` at `at` (ms).
pub(super) fn touch(c: &Connection, id: &str, at: i64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE sessions SET last_accessed_at = ?2, access_count = access_count + 1 WHERE id = ?1")?
        .execute(params![id, at])
        .map(|_| ())
}
