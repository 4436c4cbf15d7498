//! Calls end by themselves (PROTOCOL.md section 8, last bullet): a started call whose room
//! has had no member for `rooms.empty_timeout_ms`, or whose session's window has ended
//! (scheduled end plus grace, `rules::join_window`), is ended as `call-ended` would end it,
//! with no one as its ender: `videoCallEnded` the moment the last member left (or the
//! window's end), status Completed, an audit `call_end` with `metadata.reason` `empty` or
//! `window_end`, and webhook `call.ended` with `endedBy: null`.
//!
//! How (docs/architecture.md, "Calls that end by themselves"):
//!
//! - **When a room empties, the store learns it.** The RoomActor whose snapshot leaves the
//!   room with no member (waiting and away seats are members) records the time in the store
//!   (`Store::room_empty`, overwriting), and forgets it when the room has members again
//!   (`Store::room_occupied`). The time lives in the store, so it survives the node.
//! - **Every node sweeps** every `sweep_every(timeout)`: the store's started, not ended
//!   calls (`Store::open_calls`), each judged against shared membership. A room that is
//!   empty with no recorded time (its last members were removed by the membership sweep of
//!   a dead node, where no RoomActor was left to notice) gets the sweep's time, unless
//!   another node recorded one first (`room_empty` without overwrite keeps the first).
//! - **Exactly one node records the end**: `Store::mark_ended_once` is the compare-and-set;
//!   only the node whose write ended the call writes the audit entry and the webhook event,
//!   so sweeping nodes need no lock between them.
//!
//! Must not: judge a room whose membership could not be read (NATS away): nothing is ended
//! on a guess.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::ctx::NodeCtx;
use crate::identity::Role;
use crate::ports::{EndOutcome, OpenCall};
use crate::rules;
use crate::session::{now_ms, AuditAction, ClientMeta};
use crate::RoomId;

/// The most open calls one sweep looks at (the oldest first). High on purpose: calls past it
/// would wait until older ones end, so it only bounds a sweep's memory in a runaway case.
const SWEEP_MAX: usize = 100_000;

/// Who an automatic end is recorded under in the audit trail (`userId`).
pub const SYSTEM_USER: &str = "system";

/// Why a call ended by itself: the audit entry's `metadata.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its room had no member for `rooms.empty_timeout_ms`.
    Empty,
    /// Its session's window (scheduled end plus grace) ended.
    WindowEnd,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Empty => "empty",
            EndReason::WindowEnd => "window_end",
        }
    }
}

/// How often a node sweeps for `timeout` (ms): a quarter of it, between 100 ms and 5 s, so an
/// empty call ends at most a quarter of the timeout (or 5 s) after it came due.
pub fn sweep_every(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 4).clamp(100, 5_000))
}

/// Whether `call` is due to end at `now`, and when and why it ended. `empty_since`: since when
/// its room has had no member (None: it has members, or it has no room). `window_end`: the end
/// of its session's window when the time limits are enforced. The window's end wins when it
/// comes before the empty timeout runs out; the ending time is then the earlier of the
/// window's end and the last leave. Never before the call's start.
pub fn due(
    started: DateTime<Utc>,
    empty_since: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    timeout: chrono::Duration,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, EndReason)> {
    let ended = match (empty_since, window_end) {
        (e, Some(w)) if now > w && e.is_none_or(|e| e + timeout > w) => {
            Some((e.map_or(w, |e| e.min(w)), EndReason::WindowEnd))
        }
        (Some(e), _) if now >= e + timeout => Some((e, EndReason::Empty)),
        _ => None,
    };
    ended.map(|(at, why)| (at.max(started), why))
}

/// Starts the node's sweep; it ends when the node's context is dropped or the handle aborted.
pub fn spawn(ctx: &Arc<NodeCtx>) -> tokio::task::JoinHandle<()> {
    let weak: Weak<NodeCtx> = Arc::downgrade(ctx);
    let every = sweep_every(ctx.policy.empty_timeout_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(ctx) = weak.upgrade() else { return };
            if let Err(e) = sweep(&ctx, now_ms()).await {
                tracing::warn!(error = %e, "sweep of calls that end by themselves failed; next round retries");
            }
        }
    })
}

/// One sweep at `now`: ends every open call that is due. Returns how many this node ended.
pub async fn sweep(ctx: &NodeCtx, now: DateTime<Utc>) -> Result<usize, crate::ports::StoreError> {
    let mut ended = 0;
    for call in ctx.ports.store.open_calls(SWEEP_MAX).await? {
        match judge(ctx, call, now).await {
            Ok(true) => ended += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not judge an open call; next round retries"),
        }
    }
    Ok(ended)
}

/// Ends `call` if it is due; true when this node's write ended it.
async fn judge(ctx: &NodeCtx, call: OpenCall, now: DateTime<Utc>) -> Result<bool, crate::ports::StoreError> {
    let OpenCall { session, empty_since } = call;
    let Some(started) = session.video_call_started else { return Ok(false) };
    let room = session.meeting_link.as_deref().map(RoomId::from);
    // Admins who skip the time rules (`rooms.admin_bypass`) may stay past the window: while
    // one is in the room, the window's end does not end the call.
    let mut may_stay = false;
    let empty_since = match &room {
        None => None,
        Some(r) => match ctx.ports.membership.snapshot(r).await {
            Ok(snap) if snap.members.is_empty() => match empty_since {
                Some(t) => Some(t),
                None => Some(ctx.ports.store.room_empty(r, now, false).await?),
            },
            Ok(snap) => {
                may_stay = ctx.policy.admin_bypass && snap.members.iter().any(|m| m.user_role == Role::Admin.as_str());
                None
            }
            Err(e) => {
                tracing::debug!(room = %r, error = %e, "membership unreadable; the call is not judged");
                return Ok(false);
            }
        },
    };
    let window_end = (ctx.policy.enforce_window_end && !may_stay).then(|| rules::join_window(&session, &ctx.policy).1);
    let timeout = chrono::Duration::milliseconds(i64::try_from(ctx.policy.empty_timeout_ms).unwrap_or(i64::MAX));
    let Some((at, reason)) = due(started, empty_since, window_end, timeout, now) else { return Ok(false) };
    let Some((EndOutcome::Ended(s), true)) = ctx.ports.store.mark_ended_once(&session.id, at).await? else {
        return Ok(false);
    };
    let duration = s.call_duration.unwrap_or(0);
    tracing::info!(session = %s.id, reason = reason.as_str(), "call ended by itself");
    let metadata = json!({ "roomId": room.as_deref(), "reason": reason.as_str(), "duration": duration, "via": "auto" });
    ctx.audit(&s.id, SYSTEM_USER, AuditAction::CallEnd, metadata, &ClientMeta::default());
    ctx.events.call_ended(&ctx.ports.store, &s.id, room.as_ref(), at, duration, None);
    if let Some(r) = &room {
        // The room's record has served; a room with members keeps none.
        if let Err(e) = ctx.ports.store.room_occupied(r).await {
            tracing::debug!(room = %r, error = %e, "could not forget the room's empty time");
        }
    }
    Ok(true)
}

/// What a RoomActor tells the store when its room empties (`emptied`) or fills again, in a
/// task so that the actor never waits for the store.
pub(crate) fn record(ctx: &NodeCtx, room: &RoomId, emptied: bool) {
    let (store, room) = (ctx.ports.store.clone(), room.clone());
    let at = now_ms();
    tokio::spawn(async move {
        let res = if emptied {
            store.room_empty(&room, at, true).await.map(|_| ())
        } else {
            store.room_occupied(&room).await
        };
        if let Err(e) = res {
            tracing::warn!(room = %room, error = %e, "could not record whether the room is empty; the sweep will");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn empty_for_the_timeout_ends_at_the_last_leave() {
        let d = chrono::Duration::milliseconds(1000);
        assert_eq!(due(t(0), Some(t(100)), None, d, t(1099)), None);
        assert_eq!(due(t(0), Some(t(100)), None, d, t(1100)), Some((t(100), EndReason::Empty)));
        assert_eq!(due(t(0), None, None, d, t(99_999)), None, "members present");
    }

    #[test]
    fn window_end_comes_first_when_sooner() {
        let d = chrono::Duration::milliseconds(1000);
        assert_eq!(due(t(0), None, Some(t(500)), d, t(501)), Some((t(500), EndReason::WindowEnd)));
        assert_eq!(due(t(0), Some(t(300)), Some(t(500)), d, t(501)), Some((t(300), EndReason::WindowEnd)));
        assert_eq!(due(t(0), Some(t(0)), Some(t(5000)), d, t(1000)), Some((t(0), EndReason::Empty)));
        assert_eq!(
            due(t(600), None, Some(t(500)), d, t(601)),
            Some((t(600), EndReason::WindowEnd)),
            "not before start"
        );
    }
}
