//! How a RoomActor moves to a new membership snapshot: the diff against the last one
//! (`update`, which also republishes the routing view) and what local members are told about
//! it (`announce`). Only this file turns a diff into `user-*` frames.

use super::call::waiter;
use super::{participant, RoomState};
use crate::msg::ConnMsg;
use crate::ports::{LeaveReason, Member, RoomSnapshot};
use crate::protocol::ServerFrame;
use crate::ConnId;

/// What a new snapshot changed.
pub(super) struct Change {
    /// Who left, and why.
    removed: Vec<(Member, LeaveReason)>,
    added: Vec<Member>,
    /// Members whose seat went away, and members whose seat came back.
    away: Vec<Member>,
    /// With the time each went away (Unix ms).
    back: Vec<(Member, i64)>,
    /// Waiting members a host admitted (in the room from now on).
    admitted: Vec<Member>,
}

impl RoomState {
    /// Moves to `snap` and publishes its routes; returns who left and who came.
    pub(super) fn update(&mut self, snap: RoomSnapshot) -> Change {
        let old = std::mem::replace(&mut self.members, snap.members);
        self.revision = snap.revision;
        let departed = snap.departed;
        let reason = |o: &Member, members: &[Member]| {
            departed.iter().find(|d| d.conn_id == o.conn_id).map(|d| d.reason).unwrap_or(if o.is_away() {
                LeaveReason::Timeout
            } else if members.iter().any(|m| m.user_id == o.user_id) {
                LeaveReason::Replaced
            } else {
                LeaveReason::Left
            })
        };
        let removed: Vec<(Member, LeaveReason)> = old
            .iter()
            .filter(|o| !self.members.iter().any(|m| m.conn_id == o.conn_id))
            .map(|o| (o.clone(), reason(o, &self.members)))
            .collect();
        let added: Vec<Member> =
            self.members.iter().filter(|m| !old.iter().any(|o| o.conn_id == m.conn_id)).cloned().collect();
        let (mut away, mut back, mut admitted) = (Vec::new(), Vec::new(), Vec::new());
        for m in &self.members {
            if let Some(o) = old.iter().find(|o| o.conn_id == m.conn_id) {
                if o.waiting && !m.waiting {
                    admitted.push(m.clone());
                    if let Some(l) = self.locals.get_mut(&m.conn_id) {
                        l.member.waiting = false;
                    }
                }
                if m.waiting {
                    continue;
                }
                match (o.is_away(), m.is_away()) {
                    (false, true) => away.push(m.clone()),
                    (true, false) => back.push((m.clone(), o.away_since_ms.unwrap_or_default())),
                    _ => {}
                }
            }
        }
        for (r, reason) in &removed {
            if let Some(l) = self.locals.remove(&r.conn_id) {
                if *reason == LeaveReason::Denied {
                    let _ = l.actor.send_message(ConnMsg::Denied { room_id: self.room_id.clone() });
                } else if self.members.iter().any(|m| m.user_id == r.user_id) {
                    let _ = l.actor.send_message(ConnMsg::Replaced { room_id: self.room_id.clone() });
                } else {
                    // Dropped by the cluster (e.g. thought dead during an outage) while still
                    // connected here: keep it, and put it back into shared membership.
                    self.locals.insert(r.conn_id.clone(), l);
                    self.readmit = true;
                }
            }
        }
        // A seat that moved to another node (a resume there) is no longer local; what is
        // still sent to it here is forwarded by its buffer.
        let me = &self.ctx.node_id;
        let moved: Vec<ConnId> = self
            .members
            .iter()
            .filter(|m| m.node_id != *me && self.locals.contains_key(&m.conn_id))
            .map(|m| m.conn_id.clone())
            .collect();
        for c in moved {
            self.locals.remove(&c);
        }
        self.publish_view();
        // A member kept because it is still connected here has not left (it is put back).
        let gone: Vec<_> = removed.iter().filter(|(r, _)| !self.locals.contains_key(&r.conn_id)).cloned().collect();
        let empty = self.members.is_empty() && gone.len() == removed.len();
        if empty != old.is_empty() {
            // Calls end by themselves once their room has been empty long enough.
            crate::auto_end::record(&self.ctx, &self.room_id, empty);
        }
        if self.ctx.events.enabled() {
            let store = &self.ctx.ports.store;
            let r = &self.room_id;
            self.ctx.events.room_changed(store, r, old.is_empty(), empty, &gone, &added, &admitted, &away, &back);
        }
        Change { removed, added, away, back, admitted }
    }

    /// Tells local members (but `joiner`) what changed.
    pub(super) fn announce(&self, change: &Change, joiner: Option<&ConnId>) {
        let quiet: Vec<&ConnId> = joiner.into_iter().collect();
        for (r, reason) in change.removed.iter().filter(|(r, _)| !self.locals.contains_key(&r.conn_id)) {
            let frame = ServerFrame::UserLeft { socket_id: &r.conn_id, user_id: &r.user_id, reason: *reason };
            if r.waiting {
                // Only hosts knew of a waiting client: it leaves their waiting list.
                self.tell_hosts(&frame.encode());
            } else {
                self.tell_locals(&frame.encode(), &quiet);
            }
        }
        for a in &change.added {
            if a.waiting {
                self.tell_hosts(&ServerFrame::ParticipantWaiting(&waiter(a)).encode());
                continue;
            }
            let mut except = quiet.clone();
            except.push(&a.conn_id);
            self.tell_locals(&ServerFrame::UserJoined(&participant(a)).encode(), &except);
        }
        for m in &change.away {
            let frame = ServerFrame::UserReconnecting { socket_id: &m.conn_id, user_id: &m.user_id };
            self.tell_locals(&frame.encode(), &[&m.conn_id]);
        }
        for (m, _) in &change.back {
            let frame = ServerFrame::UserReconnected { socket_id: &m.conn_id, user_id: &m.user_id };
            self.tell_locals(&frame.encode(), &[&m.conn_id]);
        }
        for m in &change.admitted {
            self.announce_admitted(m);
        }
    }
}
