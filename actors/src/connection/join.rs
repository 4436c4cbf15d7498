//! The join flow, seat side (PROTOCOL.md section 5): `join-room` checked against the store's
//! session and the join rules, the seat entered into its RoomActor (or the waiting room),
//! and the call record and audit trail written once the seat is in; a host's admit records
//! the join of a waiting seat.

use std::sync::Arc;

use serde_json::json;

use super::{ConnState, Joined, CALL_TIMEOUT, ROOM_RETRIES, ROOM_RETRY_PAUSE};
use crate::errors::ErrorCode;
use crate::identity::{Identity, Role};
use crate::msg::{JoinRequest, LocalConn, RoomMsg, RoomsMsg};
use crate::ports::{LeaveReason, Member};
use crate::room::room_details;
use crate::routing::RoomView;
use crate::session::{now_ms, AuditAction, Session};
use crate::{rules, telemetry, RoomId};

impl ConnState {
    /// `join-room`. Joining the room this connection is already in (a re-join) is checked
    /// like any join and, admitted, answers `room-joined` again with nothing to the others:
    /// the room's membership keeps the same member (its first name too). A refused re-join
    /// takes the connection out of the room (the others get `user-left`): a client told
    /// `error` about the room it is in is no longer in it (docs/protocol.md, "WebSocket").
    pub(super) async fn join(&mut self, room_id: String, user_name: Option<String>) {
        telemetry::ws_event("join-room");
        let room_id: RoomId = room_id.into();
        if let Err(code) = self.try_join(room_id.clone(), user_name).await {
            if self.room.as_ref().is_some_and(|j| j.room_id == room_id) {
                self.leave_current(LeaveReason::Left).await;
            }
            self.error(code, room_details(&room_id));
        }
    }

    async fn try_join(&mut self, room_id: RoomId, user_name: Option<String>) -> Result<(), ErrorCode> {
        let session = match self.ctx.ports.store.session_by_room(&room_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(ErrorCode::SessionNotFound),
            Err(e) => {
                tracing::error!(error = %e, "store lookup for join failed");
                return Err(ErrorCode::StoreUnavailable);
            }
        };
        self.audit(&session.id, AuditAction::JoinAttempt, json!({ "roomId": &*room_id, "socketId": &*self.id }));
        if let Err(code) = rules::check_session(&session, &self.identity, now_ms(), &self.ctx.policy) {
            self.audit(&session.id, AuditAction::Error, json!({ "code": code.as_str(), "roomId": &*room_id }));
            return Err(code);
        }
        let current =
            self.room.as_ref().filter(|j| j.room_id == room_id).map(|j| (j.user_name.clone(), j.joined_at_ms));
        let joined_at_ms = current.as_ref().map_or_else(|| now_ms().timestamp_millis(), |c| c.1);
        let current = current.map(|c| c.0);
        // Only clients wait (hosts never do); a seat already admitted stays in, and one that
        // waits goes on waiting (only a host's `admit` lets it in: shared membership keeps
        // the flag of a member that joins again).
        let here = self.room.as_ref().filter(|j| j.room_id == room_id);
        let (admitted, still_waiting) = (here.is_some_and(|j| !j.waiting), here.is_some_and(|j| j.waiting));
        let waiting = still_waiting || (session.waiting_room && self.identity.role == Role::Client && !admitted);
        let media = self.room.as_ref().filter(|j| j.room_id == room_id).and_then(|j| j.media);
        if self.room.is_some() && current.is_none() {
            self.leave_current(LeaveReason::Left).await;
        }
        let user_name = current.or(user_name).or_else(|| self.identity.name.clone());
        let member = Member {
            conn_id: self.id.clone(),
            user_id: self.identity.user_id.clone(),
            user_name: user_name.unwrap_or_else(|| display_name(&session, &self.identity)),
            user_role: self.identity.role.as_str().to_owned(),
            node_id: self.ctx.node_id.clone(),
            away_since_ms: None,
            media,
            waiting,
            joined_at_ms,
        };
        let capacity = rules::capacity(session.session_type, &self.ctx.policy);
        let name = member.user_name.clone();
        match self.enter_room(&room_id, member, capacity, Some(&session)).await {
            Ok((view, members)) => {
                let chats = self.room.as_ref().filter(|j| j.room_id == room_id).map_or(0, |j| j.chats);
                let mut j = Joined::new(room_id.clone(), session.id.clone(), name, view);
                (j.waiting, j.media, j.chats) = (waiting, media, chats);
                j.joined_at_ms = joined_at_ms;
                self.room = Some(j);
                self.ctx.conns.set_room(&self.id, Some(room_id.clone()));
                if waiting {
                    let meta = json!({ "roomId": &*room_id, "socketId": &*self.id });
                    self.audit(&session.id, AuditAction::Waiting, meta);
                } else {
                    // Alone in the room after the join: of joins racing on any node, exactly
                    // one finds the room empty (shared membership changes by compare-and-set).
                    let first = members.iter().all(|m| m.conn_id == self.id || m.waiting);
                    self.record_join(&session, &room_id, first).await;
                }
                Ok(())
            }
            Err(code) => {
                self.audit(&session.id, AuditAction::Error, json!({ "code": code.as_str(), "roomId": &*room_id }));
                Err(code)
            }
        }
    }

    /// Asks the room to admit us; retries (bounded) while a failed room actor is replaced.
    /// `session`: the session the join was checked against; None when the seat is already a
    /// member (it arrives from another node), so the room sends it no `room-joined`.
    pub(super) async fn enter_room(
        &self,
        room_id: &RoomId,
        member: Member,
        capacity: usize,
        session: Option<&Session>,
    ) -> Result<(Arc<RoomView>, Vec<Member>), ErrorCode> {
        let resume = session.is_none();
        let me = self.ctx.conns.get(&self.id).map(|c| c.actor.clone()).ok_or(ErrorCode::Internal)?;
        for _ in 0..ROOM_RETRIES {
            let rid = room_id.clone();
            if let Some(Some((room, view))) =
                self.rooms_call(|reply| RoomsMsg::GetOrSpawn { room_id: rid, reply }).await
            {
                let conn = LocalConn { out: self.out.clone(), actor: me.clone(), member: Box::new(member.clone()) };
                let m = member.clone();
                let session = session.map(|s| Box::new(s.clone()));
                let res = room
                    .call(
                        |reply| {
                            RoomMsg::Join(Box::new(JoinRequest { member: m, conn, capacity, resume, session, reply }))
                        },
                        Some(CALL_TIMEOUT),
                    )
                    .await;
                if let Ok(ractor::rpc::CallResult::Success(res)) = res {
                    return res.map(|members| (view, members));
                }
            }
            tokio::time::sleep(ROOM_RETRY_PAUSE).await;
        }
        Err(ErrorCode::Internal)
    }

    /// The call record: the first join starts the call; every join counts as an access.
    /// `first`: this join found the room empty, so it, and no join racing with it, records
    /// the start in the audit trail (two joins in one millisecond would otherwise both see
    /// their own time stored).
    async fn record_join(&self, session: &Session, room_id: &str, first: bool) {
        let store = &self.ctx.ports.store;
        let now = now_ms();
        if session.video_call_started.is_none() {
            match store.mark_started(&session.id, now).await {
                Ok(Some(s)) if first && s.video_call_started.is_some() => {
                    self.audit(&session.id, AuditAction::CallStart, json!({ "roomId": room_id, "via": "join-room" }));
                    self.ctx.events.call_started(store, &session.id, Some(&RoomId::from(room_id)), now);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(session = %session.id, error = %e, "recording call start failed")
                }
            }
        }
        if let Err(e) = store.touch(&session.id, now).await {
            tracing::warn!(session = %session.id, error = %e, "recording access failed");
        }
        self.audit(&session.id, AuditAction::JoinSuccess, json!({ "roomId": room_id, "socketId": &*self.id }));
    }

    /// A host admitted this waiting seat: the call record counts it as joined now.
    pub(super) async fn admitted(&mut self, room_id: &RoomId) {
        let Some(j) = self.room.as_mut().filter(|j| j.room_id == *room_id && j.waiting) else { return };
        j.waiting = false;
        let session_id = j.session_id.clone();
        match self.ctx.ports.store.session(&session_id).await {
            Ok(Some(session)) => self.record_join(&session, room_id, false).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(session = %session_id, error = %e, "recording an admitted join failed"),
        }
    }
}

/// The name a participant shows when neither the frame nor the token gave one.
fn display_name(session: &Session, who: &Identity) -> String {
    if who.user_id == session.client.id {
        session.client.name.clone()
    } else if who.user_id == session.psychologist.id {
        session.psychologist.name.clone()
    } else {
        who.role.as_str().to_owned()
    }
}
