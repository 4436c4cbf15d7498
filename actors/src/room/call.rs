//! The call itself, room side (PROTOCOL.md section 8): the waiting room and media state.
//!
//! Waiting clients are members of shared membership with `waiting: true`, so every node's
//! hosts see them (`participant-waiting`, `room-joined.waiting`) and a host on any node can
//! settle them. They take no seat (capacity counts the others), have no route (nobody
//! reaches them; they hear nothing of the room), and are never announced to non-hosts. A
//! host's `admit` / `deny` is one compare-and-set (`Membership::settle_waiting`); every node
//! learns the outcome from the snapshot it writes: the waiting seat's own node sends it
//! `room-joined` (admitted) or `ADMISSION_DENIED` (denied, through its ConnectionActor), and
//! the others hear `user-joined` (or, hosts only, `user-left` reason `denied`).
//!
//! Media states live on each `Member` too, so that `room-joined` lists them on every node.
//! Shared membership is written at most once per `MEDIA_WRITE_EVERY` per room; a change
//! that comes sooner waits for `FlushMedia` (the others already heard it as `media-state`).

use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::{participant, RoomMsg, RoomState};
use crate::errors::ErrorCode;
use crate::msg::ConnMsg;
use crate::ports::{Member, MembershipError, RoomEvent};
use crate::protocol::{MediaState, Participant, ServerFrame, Waiter};
use crate::ConnId;

/// Shortest interval between two media-state writes of one room to shared membership.
const MEDIA_WRITE_EVERY: Duration = Duration::from_millis(500);

/// A waiting member as hosts see it.
pub(super) fn waiter(m: &Member) -> Waiter {
    Waiter { socket_id: m.conn_id.to_string(), user_id: m.user_id.clone(), user_name: m.user_name.clone() }
}

impl RoomState {
    /// Sends to the local hosts that are in the room.
    pub(super) fn tell_hosts(&self, frame: &str) {
        for l in self.locals.values().filter(|l| !l.member.waiting && l.member.is_host()) {
            l.out.send(frame.to_owned());
        }
    }

    /// What `joiner` hears when it joins a room of `members`: `waiting` for a waiting client,
    /// otherwise `room-joined` with the members in the room (and, for a host, the waiting list).
    pub(super) fn room_joined(&self, members: &[Member], joiner: &Member) -> String {
        if joiner.waiting {
            return ServerFrame::Waiting { room_id: &self.room_id }.encode();
        }
        // A local member's media state may not be in shared membership yet (see `media`).
        let participants: Vec<Participant> = members
            .iter()
            .filter(|m| !m.waiting)
            .map(|m| {
                let mut p = participant(m);
                if let Some(l) = self.locals.get(&m.conn_id) {
                    p.media_state = l.member.media.or(p.media_state);
                }
                p
            })
            .collect();
        let waiting: Option<Vec<Waiter>> =
            joiner.is_host().then(|| members.iter().filter(|m| m.waiting).map(waiter).collect());
        ServerFrame::RoomJoined { room_id: &self.room_id, participants: &participants, waiting: waiting.as_deref() }
            .encode()
    }

    /// A waiting member was admitted: a local one hears `room-joined` (its actor first learns
    /// it is in), the local others `user-joined`.
    pub(super) fn announce_admitted(&self, m: &Member) {
        if let Some(l) = self.locals.get(&m.conn_id) {
            let _ = l.actor.send_message(ConnMsg::Admitted { room_id: self.room_id.clone() });
            l.out.send(self.room_joined(&self.members, m));
        }
        self.tell_locals(&ServerFrame::UserJoined(&participant(m)).encode(), &[&m.conn_id]);
    }

    /// Admits (`admit`, within `capacity`) or denies waiting member `conn`; answers it as it
    /// was.
    pub(super) async fn settle(&mut self, conn: &ConnId, admit: bool, capacity: usize) -> Result<Member, ErrorCode> {
        let waiting = |st: &Self| st.members.iter().find(|m| m.conn_id == *conn && m.waiting).cloned();
        if waiting(self).is_none() {
            self.resync().await;
        }
        let Some(member) = waiting(self) else { return Err(ErrorCode::PeerNotFound) };
        match self.ctx.ports.membership.settle_waiting(&self.room_id, conn, admit, capacity).await {
            Ok(snap) => {
                self.publish(&RoomEvent::Membership(snap.clone()));
                self.apply(snap, None);
                Ok(member)
            }
            Err(MembershipError::NotWaiting) => Err(ErrorCode::PeerNotFound),
            Err(MembershipError::Full) => Err(ErrorCode::RoomFull),
            Err(MembershipError::Unavailable(e)) => {
                tracing::warn!(room = %self.room_id, error = %e, "could not settle a waiting member");
                Err(ErrorCode::ClusterUnavailable)
            }
        }
    }

    /// Local member `conn` sent `media-state`: remembered now, written soon.
    pub(super) async fn media(&mut self, me: &ActorRef<RoomMsg>, conn: &ConnId, media: MediaState) {
        let Some(l) = self.locals.get_mut(conn) else { return };
        if l.member.media == Some(media) {
            return;
        }
        l.member.media = Some(media);
        match self.media_written.map(|t| t.elapsed()) {
            Some(since) if since < MEDIA_WRITE_EVERY => {
                if !self.media_flush {
                    self.media_flush = true;
                    me.send_after(MEDIA_WRITE_EVERY - since, || RoomMsg::FlushMedia);
                }
            }
            _ => self.flush_media().await,
        }
    }

    /// Writes the local members whose media state shared membership does not have yet.
    pub(super) async fn flush_media(&mut self) {
        self.media_flush = false;
        self.media_written = Some(Instant::now());
        let stale: Vec<Member> = self
            .locals
            .values()
            .filter(|l| self.members.iter().any(|m| m.conn_id == l.member.conn_id && m.media != l.member.media))
            .map(|l| (*l.member).clone())
            .collect();
        for m in stale {
            // An update in place (same connection): no capacity involved.
            match self.ctx.ports.membership.join(&self.room_id, m, usize::MAX).await {
                Ok(snap) => {
                    self.publish(&RoomEvent::Membership(snap.clone()));
                    self.apply(snap, None);
                }
                Err(e) => tracing::warn!(room = %self.room_id, error = %e, "media state not shared"),
            }
        }
    }
}
