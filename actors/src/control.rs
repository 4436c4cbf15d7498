//! The server API's side of the domain (PROTOCOL.md sections 7 and 10): list and show rooms,
//! remove a participant, close a room, and apply a changed session to its live call, for
//! the whole cluster from any node.
//!
//! Rooms and their members come from shared membership (`Membership`), the same on every
//! node. A removal is a room event on the bus (`RoomEvent::Remove`, `Close`, `Session`),
//! handled by each node for the seats it holds (`room::limits`); this node's own room
//! actor gets it directly (the bus does not echo). The call then waits, bounded, until
//! shared membership no longer lists those seats; seats still listed after that (their node
//! died, or the event was lost) are taken out of shared membership here, with their reason.
//!
//! Must not: know about HTTP (the edge maps `ControlError` through `ErrorCode`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::ctx::NodeCtx;
use crate::errors::ErrorCode;
use crate::msg::RoomMsg;
use crate::ports::{LeaveReason, Member, MembershipError, RoomEvent, StoreError};
use crate::room::limits::verdict;
use crate::session::Session;
use crate::{ConnId, RoomId};

/// How long a removal waits for the seats' nodes to take them out of shared membership.
const REMOVAL_WAIT: Duration = Duration::from_secs(3);
/// How often it looks meanwhile.
const REMOVAL_POLL: Duration = Duration::from_millis(25);

/// Why a server API request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// No such room with members, or no such participant in it.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A room with members, as the server API shows it.
#[derive(Debug, Clone)]
pub struct RoomInfo {
    pub room_id: RoomId,
    /// The room's session (None if the store has no session with this `meetingLink`).
    pub session: Option<Session>,
    pub members: Vec<Member>,
}

/// A participant's state in a room (PROTOCOL.md section 7): `joined`, `reconnecting` (its
/// seat waits for a resume), or `waiting` (a client in the waiting room, not yet admitted,
/// whether or not its socket is away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantState {
    Joined,
    Reconnecting,
    Waiting,
}

impl ParticipantState {
    /// The state of a member of a room.
    pub fn of(m: &Member) -> ParticipantState {
        if m.waiting {
            ParticipantState::Waiting
        } else if m.is_away() {
            ParticipantState::Reconnecting
        } else {
            ParticipantState::Joined
        }
    }
}

/// The server API's handle on the node (cheap to make: one per request is fine).
#[derive(Clone)]
pub struct RoomControl {
    ctx: Arc<NodeCtx>,
}

impl RoomControl {
    pub fn new(ctx: Arc<NodeCtx>) -> RoomControl {
        RoomControl { ctx }
    }

    /// Every room with members in the cluster, with its session; ordered by room id.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ControlError> {
        let mut ids = self.ctx.ports.membership.rooms().await?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.room(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One room with its members; None when it has none (or never existed).
    pub async fn room(&self, room: &str) -> Result<Option<RoomInfo>, ControlError> {
        let room_id: RoomId = room.into();
        let snap = self.ctx.ports.membership.snapshot(&room_id).await?;
        if snap.members.is_empty() {
            return Ok(None);
        }
        let session = self.ctx.ports.store.session_by_room(room).await?;
        Ok(Some(RoomInfo { room_id, session, members: snap.members }))
    }

    /// Removes participant `conn` from `room`, wherever it is connected: it gets `error
    /// KICKED` and close 4003, the others `user-left` reason `kicked`. Answers once shared
    /// membership no longer lists it. `NotFound` if it is not a member of `room`.
    pub async fn kick(&self, room: &str, conn: &str) -> Result<Member, ControlError> {
        let room_id: RoomId = room.into();
        let snap = self.ctx.ports.membership.snapshot(&room_id).await?;
        let member = snap.members.into_iter().find(|m| &*m.conn_id == conn).ok_or(ControlError::NotFound)?;
        let conns = vec![member.conn_id.clone()];
        self.send(&room_id, RoomEvent::Remove { conns: conns.clone(), code: ErrorCode::Kicked });
        self.wait_gone(&room_id, conns, LeaveReason::Kicked).await;
        Ok(member)
    }

    /// Removes every member of `room` (`error ROOM_CLOSED`, close 4003; `user-left` reason
    /// `room_closed`); the session stays joinable. Returns how many members it had;
    /// `NotFound` if none.
    pub async fn close(&self, room: &str) -> Result<usize, ControlError> {
        let room_id: RoomId = room.into();
        let snap = self.ctx.ports.membership.snapshot(&room_id).await?;
        if snap.members.is_empty() {
            return Err(ControlError::NotFound);
        }
        let conns: Vec<ConnId> = snap.members.iter().map(|m| m.conn_id.clone()).collect();
        self.send(&room_id, RoomEvent::Close);
        self.wait_gone(&room_id, conns.clone(), LeaveReason::RoomClosed).await;
        Ok(conns.len())
    }

    /// `session` changed (a PATCH): every node checks its members of the session's room
    /// against the rules again and removes those that may no longer be in the call, with the
    /// failing rule's code (`user-left` reason `ejected`), and moves the time limits. Returns
    /// the members removed. `before`: the session as it was (to tell whether its window
    /// moved, which applies the time rule even with `rooms.enforce_window_end` off).
    pub async fn session_changed(&self, before: &Session, session: &Session) -> Result<Vec<Member>, ControlError> {
        let Some(room) = session.meeting_link.as_deref() else { return Ok(Vec::new()) };
        let room_id: RoomId = room.into();
        let snap = self.ctx.ports.membership.snapshot(&room_id).await?;
        if snap.members.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let policy = &self.ctx.policy;
        // The verdict every node reaches for its own seats (`RoomState::limits_session`).
        let moved = crate::rules::join_window(before, policy) != crate::rules::join_window(session, policy);
        let time_rule = policy.enforce_window_end || moved;
        let out: Vec<Member> =
            snap.members.into_iter().filter(|m| verdict(session, m, now, policy, time_rule).is_some()).collect();
        self.send(&room_id, RoomEvent::Session(Box::new(session.clone())));
        if !out.is_empty() {
            let conns = out.iter().map(|m| m.conn_id.clone()).collect();
            self.wait_gone(&room_id, conns, LeaveReason::Ejected).await;
        }
        Ok(out)
    }

    /// Hands `event` to this node's room actor, if any, and to the other nodes.
    fn send(&self, room: &RoomId, event: RoomEvent) {
        if let Err(e) = self.ctx.ports.bus.publish(room, &event) {
            tracing::warn!(room = %room, error = %e, "room event not published");
        }
        if let Some(actor) = self.ctx.room(room) {
            let _ = actor.send_message(RoomMsg::Remote(event));
        }
    }

    /// Waits (bounded) until shared membership lists none of `conns` in `room`; removes
    /// those still listed then, for `reason`, and tells the room's nodes.
    async fn wait_gone(&self, room: &RoomId, mut conns: Vec<ConnId>, reason: LeaveReason) {
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        loop {
            if let Ok(snap) = self.ctx.ports.membership.snapshot(room).await {
                conns.retain(|c| snap.members.iter().any(|m| m.conn_id == *c));
            }
            if conns.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(REMOVAL_POLL).await;
        }
        tracing::warn!(room = %room, left = conns.len(), "seats not removed by their nodes; removing them here");
        match self.ctx.ports.membership.leave(room, &conns, reason).await {
            Ok(snap) => self.send(room, RoomEvent::Membership(snap)),
            Err(e) => tracing::warn!(room = %room, error = %e, "seats not removed"),
        }
    }
}
