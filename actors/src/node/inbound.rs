//! What arrives at a node from other nodes: relayed frames, room events, hand-over requests,
//! membership checks and the operator's kick. The cluster layer holds an [`Inbound`].

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use super::{NodeCtx, NodeId, NodeStatus};
use crate::errors::ErrorCode;
use crate::msg::{close, ConnMsg, RoomMsg};
use crate::ports::{Delivery, HandOverRequest, HandedOver, LeaveReason, RoomEvent};
use crate::registry::Gone;
use crate::routing::RoomView;
use crate::seat::ResumeFailure;

/// How a frame from another node reaches its target (see `Inbound::deliver`).
enum Path {
    /// Straight to the target's queue.
    Direct,
    /// Through the RoomActor, behind what it is doing: (actor, view, sequence number).
    Ordered(ActorRef<RoomMsg>, Arc<RoomView>, u64),
    /// The room has no members on this node.
    NoRoom,
}

/// The entry points for what arrives from other nodes; the cluster layer holds one.
#[derive(Clone)]
pub struct Inbound {
    pub(super) ctx: Arc<NodeCtx>,
}

impl Inbound {
    /// A relayed frame for a connection of this node; false if it is not here.
    ///
    /// Room events and deliveries travel on different subscriptions, so a frame from a
    /// member who just joined on another node can arrive before the room event announcing
    /// them. Such a frame (and any after it, until it is handed on) goes through the
    /// RoomActor, which re-reads membership first: members see `user-joined` before the
    /// newcomer's first frame, as on one node. Once the sender is announced, frames go
    /// straight to the target's queue.
    pub fn deliver(&self, d: Delivery<'_>, frame: String) -> bool {
        let Some(c) = self.ctx.conns.get(d.to) else {
            // A seat that moved on a resume: its peers' nodes may not route there yet.
            if let Some(Gone::Moved(node)) = self.ctx.conns.what_became(d.to) {
                if node != self.ctx.node_id {
                    // As the seat's own forward: straight into its buffer there, which may
                    // still be waiting for its history.
                    let fwd = Delivery { room: d.room, from: d.to, to: d.to };
                    return self.ctx.ports.bus.deliver(&node, fwd, frame).is_ok();
                }
            }
            return false;
        };
        if d.from == d.to {
            // Forwarded by the seat's old node after a hand-over: straight into its buffer.
            c.out.send(frame);
            return true;
        }
        // Only the rare path (a member not announced yet, or frames queued before this one)
        // takes the room's actor and view.
        let path = self.ctx.with_room(d.room, |r| match r {
            None => Path::NoRoom,
            Some((_, view)) if view.direct(d.from, d.to) => Path::Direct,
            Some((room, view)) => Path::Ordered(room.clone(), view.clone(), view.hold()),
        });
        match path {
            Path::Direct => {
                c.out.send(frame);
            }
            Path::Ordered(room, view, seq) => {
                let msg = RoomMsg::Deliver { from: d.from.into(), to: d.to.into(), frame, seq };
                if room.send_message(msg).is_err() {
                    // The actor is gone, and with it every frame queued to it before this one.
                    view.release(seq);
                    tracing::debug!(room = d.room, "room stopped; frame dropped");
                }
            }
            // The seat is between nodes (its room here stopped, or is not joined yet): its
            // buffer forwards the frame, or keeps it behind the seat's history.
            Path::NoRoom if c.out.is_moving() => {
                c.out.send(frame);
            }
            // `to` is not in that room here: rooms stay isolated on the receiving side too.
            Path::NoRoom => tracing::debug!(room = d.room, to = d.to, "frame for a room with no members here dropped"),
        }
        true
    }

    /// An event about a room; ignored if the room has no members here.
    pub fn room_event(&self, room: &str, event: RoomEvent) {
        if let Some(actor) = self.ctx.room(room) {
            let _ = actor.send_message(RoomMsg::Remote(event));
        }
    }

    /// Every local room re-reads shared membership (after the cluster connection came back,
    /// or a node died).
    pub fn resync_all(&self) {
        for room in self.ctx.local_rooms() {
            if let Some(actor) = self.ctx.room(&room) {
                let _ = actor.send_message(RoomMsg::Resync);
            }
        }
    }

    /// Whether shared membership may rightly list connection `conn` of this node in `room`:
    /// the connection is open here, and the room has its RoomActor here (which keeps its
    /// own members exact on every resync) or the connection's last join was into `room`.
    /// False means the entry is a ghost: left by an earlier run of this node id, or by a
    /// leave that could not reach shared membership.
    ///
    /// Safe against a join under way: a connection is registered before it can join, and a
    /// room's actor is indexed before it writes the join to shared membership.
    pub fn holds(&self, room: &str, conn: &str) -> bool {
        match self.ctx.conns.get(conn) {
            None => false,
            Some(c) => c.room.as_deref() == Some(room) || self.ctx.room(room).is_some(),
        }
    }

    /// Another node asks for seat `req.conn_id` (a resume that arrived there). The seat
    /// checks the token; `Expired` if it is not on this node.
    pub async fn hand_over(&self, req: HandOverRequest) -> Result<HandedOver, ResumeFailure> {
        let Some(c) = self.ctx.conns.get(&req.conn_id) else { return Err(ResumeFailure::Expired) };
        let req = Box::new(req);
        match c.actor.call(|reply| ConnMsg::HandOver { req, reply }, Some(Duration::from_secs(5))).await {
            Ok(ractor::rpc::CallResult::Success(res)) => res,
            _ => Err(ResumeFailure::Expired),
        }
    }

    /// How long a seat waits for a resume (`resume.window_ms`).
    pub fn resume_window(&self) -> Duration {
        Duration::from_millis(self.ctx.limits.resume_window_ms)
    }

    /// Why seat `conn` of this node is no longer in `room`, if it left (a leave that could
    /// not reach shared membership is then removed with its reason, not taken for a lost
    /// socket): it is here but in no or another room, or it ended recently.
    pub fn left(&self, room: &str, conn: &str) -> Option<LeaveReason> {
        if let Some(c) = self.ctx.conns.get(conn) {
            return (c.room.as_deref() != Some(room)).then_some(LeaveReason::Left);
        }
        match self.ctx.conns.what_became(conn) {
            Some(Gone::Left(r)) => Some(r),
            _ => None,
        }
    }

    /// Disconnects a connection of this node (operator's kick); false if it is not here.
    pub fn kick(&self, conn: &str) -> bool {
        match self.ctx.conns.get(conn) {
            Some(c) => {
                c.actor.send_message(ConnMsg::Disconnect { code: ErrorCode::Kicked, close_code: close::KICKED }).is_ok()
            }
            None => false,
        }
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.ctx.node_id.to_string(),
            connections: self.ctx.conns.len(),
            rooms: self.ctx.local_rooms().len(),
            uptime_secs: self.ctx.started.elapsed().as_secs(),
            draining: self.ctx.is_draining(),
        }
    }

    pub fn node_id(&self) -> &NodeId {
        &self.ctx.node_id
    }
}
