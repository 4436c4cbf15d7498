//! Join rules, the time window and call duration: pure functions of their inputs.
//!
//! The order of checks is the contract's: the first rule that fails gives the code. Nothing
//! here reads a clock or a store; callers pass `now` and the session.

use chrono::{DateTime, Duration, Utc};

use crate::errors::ErrorCode;
use crate::identity::Identity;
use crate::session::{PaymentStatus, Session, SessionStatus, SessionType};

/// The configurable parts of the rules.
#[derive(Debug, Clone)]
pub struct JoinPolicy {
    /// Joining opens this many minutes before `sessionDate`.
    pub window_before_minutes: i64,
    /// Joining stays open this many minutes after the scheduled end.
    pub grace_after_minutes: i64,
    /// Admins skip payment and time checks.
    pub admin_bypass: bool,
    /// Capacity of a Group room (an Individual room holds 2).
    pub group_capacity: usize,
    /// Members of a live call are warned (`session-ending`) this many minutes before the
    /// window's end (largest first; see `room::limits`).
    pub session_ending_minutes: Vec<u32>,
    /// Members are removed when the window ends during a call (and warned before).
    pub enforce_window_end: bool,
    /// A started call whose room has had no member for this long ends by itself
    /// (`rooms.empty_timeout_ms`, PROTOCOL.md section 8; `crate::auto_end`).
    pub empty_timeout_ms: u64,
}

impl Default for JoinPolicy {
    fn default() -> Self {
        JoinPolicy {
            window_before_minutes: 15,
            grace_after_minutes: 30,
            admin_bypass: false,
            group_capacity: 8,
            session_ending_minutes: vec![10, 5, 1],
            enforce_window_end: true,
            empty_timeout_ms: 120_000,
        }
    }
}

/// True for a 24-hex-digit ObjectId string.
pub fn valid_session_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The session's client, its psychologist, or an admin.
pub fn may_access(session: &Session, who: &Identity) -> bool {
    who.is_admin() || who.user_id == session.client.id || who.user_id == session.psychologist.id
}

/// How many participants a room of this type holds.
pub fn capacity(kind: SessionType, policy: &JoinPolicy) -> usize {
    match kind {
        SessionType::Individual => 2,
        SessionType::Group => policy.group_capacity,
    }
}

/// First and last instant at which joining is allowed.
pub fn join_window(session: &Session, policy: &JoinPolicy) -> (DateTime<Utc>, DateTime<Utc>) {
    let opens = session.session_date - Duration::minutes(policy.window_before_minutes);
    let closes = session.session_date + Duration::minutes(session.duration_minutes.max(0) + policy.grace_after_minutes);
    (opens, closes)
}

/// The session rules after identity: access, status, payment, time (in that order).
pub fn check_session(
    session: &Session,
    who: &Identity,
    now: DateTime<Utc>,
    policy: &JoinPolicy,
) -> Result<(), ErrorCode> {
    if !may_access(session, who) {
        return Err(ErrorCode::Forbidden);
    }
    if matches!(session.status, SessionStatus::Cancelled | SessionStatus::Completed) {
        return Err(ErrorCode::SessionClosed);
    }
    let bypass = who.is_admin() && policy.admin_bypass;
    if !bypass && session.payment_status != PaymentStatus::Paid {
        return Err(ErrorCode::PaymentRequired);
    }
    let (opens, closes) = join_window(session, policy);
    if !bypass && (now < opens || now > closes) {
        return Err(ErrorCode::OutsideTimeWindow);
    }
    Ok(())
}

/// Every rule of the table, for `can-join`: id shape, existence, session rules, capacity.
/// `others_in_room` counts members of the room other than this user (a rejoin replaces).
pub fn check_can_join(
    session_id: &str,
    session: Option<&Session>,
    who: &Identity,
    now: DateTime<Utc>,
    policy: &JoinPolicy,
    others_in_room: usize,
) -> Result<(), ErrorCode> {
    if !valid_session_id(session_id) {
        return Err(ErrorCode::InvalidSessionId);
    }
    let session = session.ok_or(ErrorCode::SessionNotFound)?;
    check_session(session, who, now, policy)?;
    if others_in_room >= capacity(session.session_type, policy) {
        return Err(ErrorCode::RoomFull);
    }
    Ok(())
}

/// Whole minutes until the session starts, rounded up; 0 once it has started.
pub fn minutes_until(session_date: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ms = (session_date - now).num_milliseconds();
    if ms <= 0 {
        0
    } else {
        (ms + 59_999) / 60_000
    }
}

/// Call duration in whole minutes, rounded half up; never negative.
pub fn call_duration_minutes(started: DateTime<Utc>, ended: DateTime<Utc>) -> i64 {
    let ms = (ended - started).num_milliseconds().max(0);
    (ms + 30_000) / 60_000
}

#[cfg(test)]
mod tests;
