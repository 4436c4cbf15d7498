//! A room's live checks of its session (PROTOCOL.md sections 7, 8 and 10): the time limits
//! (`session-ending {minutesLeft}` warnings at `policy.session_ending_minutes` before the
//! end of the join window, removal with `OUTSIDE_TIME_WINDOW` at its end), the session's
//! rules again when the session changes (`PATCH /api/sessions/:id`: cancelled, unpaid,
//! moved), and removals an operator asked for (kick).
//!
//! Each node handles its own members only (the room's `locals`), so a member is warned and
//! removed once, by the node that holds its seat, even in a cluster. One timer per room:
//! the next instant something comes due; a `LimitsTick` with an older generation does
//! nothing. A seat that arrives from another node (a resume) is not warned again about
//! what its old node already told it.
//!
//! Must not: read the store on the actor's own time (the one lookup, for a room that has
//! no session yet, runs in a task and comes back as a message).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use ractor::ActorRef;

use super::RoomState;
use crate::errors::ErrorCode;
use crate::identity::{Identity, Role};
use crate::msg::{close, ConnMsg, RoomMsg};
use crate::ports::{Member, RoomEvent};
use crate::protocol::ServerFrame;
use crate::rules::{self, JoinPolicy};
use crate::session::Session;
use crate::ConnId;

/// The room's time-limit state.
#[derive(Default)]
pub(super) struct Limits {
    /// The session, as last seen (a join, a change, or the lookup).
    session: Option<Session>,
    /// Per local member: the smallest threshold (minutes) it was warned about.
    warned: HashMap<ConnId, u32>,
    /// Local members already told to go (not told twice while they leave).
    removed: HashSet<ConnId>,
    /// Counts schedules; only the latest timer's tick counts.
    generation: u64,
    timer: Option<tokio::task::JoinHandle<()>>,
    looking_up: bool,
}

impl Drop for Limits {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// The identity member `m` joined with (its role as the token said).
pub fn identity_of(m: &Member) -> Option<Identity> {
    Some(Identity { user_id: m.user_id.clone(), role: Role::parse(&m.user_role)?, name: None })
}

/// Admins skip the time limits when `rooms.admin_bypass` says so.
fn exempt(m: &Member, policy: &JoinPolicy) -> bool {
    policy.admin_bypass && m.user_role == Role::Admin.as_str()
}

/// Why member `m` may no longer be in a call of `session` at `now`: the code of the first
/// join rule it fails (SESSION_CLOSED, PAYMENT_REQUIRED, OUTSIDE_TIME_WINDOW, ...), or None.
/// `time_rule`: false leaves the time window out.
pub fn verdict(
    session: &Session,
    m: &Member,
    now: DateTime<Utc>,
    policy: &JoinPolicy,
    time_rule: bool,
) -> Option<ErrorCode> {
    let who = identity_of(m)?;
    match rules::check_session(session, &who, now, policy) {
        Ok(()) => None,
        Err(ErrorCode::OutsideTimeWindow) if !time_rule => None,
        Err(code) => Some(code),
    }
}

/// The smallest of `thresholds` (minutes before `end`) that has come due at `now`.
pub fn due(thresholds: &[u32], end: DateTime<Utc>, now: DateTime<Utc>) -> Option<u32> {
    thresholds.iter().copied().filter(|m| end - Duration::minutes(i64::from(*m)) <= now).min()
}

/// Whole minutes from `now` to `end`, rounded up (0 once it has passed).
pub fn minutes_left(end: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ms = (end - now).num_milliseconds();
    if ms <= 0 {
        0
    } else {
        (ms + 59_999) / 60_000
    }
}

/// The next instant after `now` at which something is due: a threshold not yet due, or
/// the first millisecond past `end` (the window's last instant is still inside it).
pub fn next_due(thresholds: &[u32], end: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let after_end = end + Duration::milliseconds(1);
    thresholds
        .iter()
        .map(|m| end - Duration::minutes(i64::from(*m)))
        .chain(std::iter::once(after_end))
        .filter(|t| *t > now)
        .min()
}

impl RoomState {
    fn window_end(&self, s: &Session) -> DateTime<Utc> {
        rules::join_window(s, &self.ctx.policy).1
    }

    /// After a join of local seat `conn` (if it got in): keeps the session it was checked
    /// against, warns the joiner at once about a threshold already past (`resume`: a seat
    /// arriving from another node was told there, so it is only noted), and reschedules.
    pub(super) fn limits_joined(
        &mut self,
        me: &ActorRef<RoomMsg>,
        conn: &ConnId,
        session: Option<Box<Session>>,
        resume: bool,
    ) {
        if let Some(s) = session {
            self.limits.session = Some(*s);
        }
        if self.locals.contains_key(conn) {
            if self.limits.session.is_none() {
                self.limits_lookup(me);
            }
            if resume {
                let due = self
                    .limits
                    .session
                    .as_ref()
                    .and_then(|s| due(&self.ctx.policy.session_ending_minutes, self.window_end(s), Utc::now()));
                if let Some(d) = due {
                    self.limits.warned.insert(conn.clone(), d);
                }
            } else {
                self.warn(conn, Utc::now());
            }
        }
        self.limits_schedule(me);
    }

    /// The room's session changed (or was looked up): members that may no longer be in the
    /// call are removed with the failing rule's code; a window that moved starts the
    /// warnings afresh. With `rooms.enforce_window_end` off, the time rule applies only when
    /// the window moved.
    pub(super) fn limits_session(&mut self, me: &ActorRef<RoomMsg>, session: Session) {
        let policy = &self.ctx.policy;
        let moved = self
            .limits
            .session
            .as_ref()
            .is_some_and(|old| rules::join_window(old, policy) != rules::join_window(&session, policy));
        if moved {
            self.limits.warned.clear();
        }
        let time_rule = policy.enforce_window_end || moved;
        self.limits.session = Some(session);
        self.limits_check(me, time_rule);
    }

    /// A timer came due.
    pub(super) fn limits_tick(&mut self, me: &ActorRef<RoomMsg>, generation: u64) {
        if generation == self.limits.generation {
            self.limits_check(me, self.ctx.policy.enforce_window_end);
        }
    }

    /// Removes the local members the session's rules no longer admit, warns the others
    /// about a threshold that came due, and reschedules.
    fn limits_check(&mut self, me: &ActorRef<RoomMsg>, time_rule: bool) {
        let locals = &self.locals;
        self.limits.warned.retain(|c, _| locals.contains_key(c));
        self.limits.removed.retain(|c| locals.contains_key(c));
        let Some(session) = self.limits.session.clone() else { return };
        let now = Utc::now();
        let verdicts: Vec<(ConnId, Option<ErrorCode>)> = self
            .locals
            .iter()
            .map(|(id, l)| (id.clone(), verdict(&session, &l.member, now, &self.ctx.policy, time_rule)))
            .collect();
        for (id, v) in verdicts {
            match v {
                Some(code) => self.remove_local(&id, code),
                None => self.warn(&id, now),
            }
        }
        self.limits_schedule(me);
    }

    /// Sends local member `conn` one `session-ending` if a threshold it was not told about
    /// has come due.
    fn warn(&mut self, conn: &ConnId, now: DateTime<Utc>) {
        let policy = &self.ctx.policy;
        let (Some(s), Some(l)) = (&self.limits.session, self.locals.get(conn)) else { return };
        if !policy.enforce_window_end || exempt(&l.member, policy) || self.limits.removed.contains(conn) {
            return;
        }
        let end = self.window_end(s);
        if now > end {
            return;
        }
        let Some(d) = due(&policy.session_ending_minutes, end, now) else { return };
        if self.limits.warned.get(conn).is_some_and(|w| *w <= d) {
            return;
        }
        l.out.send(ServerFrame::SessionEnding { minutes_left: minutes_left(end, now) }.encode());
        self.limits.warned.insert(conn.clone(), d);
    }

    /// Tells local member `conn` to go: `error <code>`, close 4003, and it leaves the room
    /// (`user-left` reason `kicked`, `room_closed` or `ejected`, from the code).
    pub(super) fn remove_local(&mut self, conn: &ConnId, code: ErrorCode) {
        let Some(l) = self.locals.get(conn) else { return };
        if self.limits.removed.insert(conn.clone()) {
            let _ = l.actor.send_message(ConnMsg::Disconnect { code, close_code: close::KICKED });
        }
    }

    /// Arms the one timer for the next thing due (nothing while no member is here, no
    /// session is known, or the window's end is not enforced).
    fn limits_schedule(&mut self, me: &ActorRef<RoomMsg>) {
        self.limits.generation += 1;
        if let Some(t) = self.limits.timer.take() {
            t.abort();
        }
        let Some(s) = &self.limits.session else { return };
        if !self.ctx.policy.enforce_window_end || self.locals.is_empty() {
            return;
        }
        let now = Utc::now();
        let Some(at) = next_due(&self.ctx.policy.session_ending_minutes, self.window_end(s), now) else { return };
        let delay = (at - now).to_std().unwrap_or_default();
        let (me, generation) = (me.clone(), self.limits.generation);
        self.limits.timer = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.send_message(RoomMsg::LimitsTick { generation });
        }));
    }

    /// Looks the room's session up in a task (a room restarted, or entered only by seats
    /// arriving from other nodes); it comes back as a session change.
    pub(super) fn limits_lookup(&mut self, me: &ActorRef<RoomMsg>) {
        if self.limits.looking_up || self.limits.session.is_some() {
            return;
        }
        self.limits.looking_up = true;
        let (store, room, me) = (self.ctx.ports.store.clone(), self.room_id.clone(), me.clone());
        tokio::spawn(async move {
            match store.session_by_room(&room).await {
                Ok(Some(s)) => {
                    let _ = me.send_message(RoomMsg::Remote(RoomEvent::Session(Box::new(s))));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(room = %room, error = %e, "session of a room not read; no time limits here"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn end() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 11, 20, 0).unwrap()
    }

    #[test]
    fn thresholds_come_due_in_order_and_the_end_is_one_ms_past_the_window() {
        let t = [10, 5, 1];
        let at = |secs: i64| end() + Duration::seconds(secs);
        assert_eq!(due(&t, end(), at(-601)), None);
        assert_eq!(due(&t, end(), at(-600)), Some(10));
        assert_eq!(due(&t, end(), at(-299)), Some(5));
        assert_eq!(due(&t, end(), at(-5)), Some(1));
        assert_eq!(next_due(&t, end(), at(-3600)), Some(at(-600)));
        assert_eq!(next_due(&t, end(), at(-600)), Some(at(-300)));
        assert_eq!(next_due(&t, end(), at(-30)), Some(end() + Duration::milliseconds(1)));
        assert_eq!(next_due(&t, end(), end() + Duration::milliseconds(1)), None);
        assert_eq!(next_due(&[], end(), at(-30)), Some(end() + Duration::milliseconds(1)));
    }

    #[test]
    fn minutes_left_rounds_up() {
        assert_eq!(minutes_left(end(), end() - Duration::milliseconds(299_999)), 5);
        assert_eq!(minutes_left(end(), end() - Duration::seconds(420)), 7);
        assert_eq!(minutes_left(end(), end() - Duration::seconds(5)), 1);
        assert_eq!(minutes_left(end(), end()), 0);
    }
}
