//! The routing view a RoomActor publishes: who is in the room and how to reach them, read
//! on every relay without a hop through the actor, and the flags that keep frames from other
//! nodes in order behind announcements (docs/architecture.md, "Across nodes").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

use crate::outbound::Outbound;
use crate::{ConnId, NodeId};

/// Where a member's frames go.
#[derive(Debug, Clone)]
pub enum Route {
    Local(Outbound),
    Remote(NodeId),
}

/// The room's routing table: connection id -> route. Written by the RoomActor on every
/// membership change (before the change is announced to local members, under
/// `RoomView::announcing`), read by ConnectionActors on every relay and by the node's inbox
/// for frames from other nodes.
#[derive(Debug, Default)]
pub struct RoomView {
    routes: RwLock<HashMap<ConnId, Route>>,
    /// Sequence number of the last frame from another node queued to the RoomActor
    /// (`RoomMsg::Deliver`), and of the last one it handed on. While they differ, later frames
    /// queue behind, so none overtakes another. Sequence numbers rather than a count: if the
    /// actor fails with frames in its mailbox, those are lost, and the first frame the
    /// restarted actor hands on brings `handed` level again.
    queued: AtomicU64,
    handed: AtomicU64,
    /// Set while the RoomActor announces a change whose routes are already published (see
    /// `RoomView::announcing`).
    announcing: AtomicBool,
}

/// Clears `RoomView::announcing` when the announcement is done, or its handler panicked.
pub(crate) struct Announcing<'a>(&'a RoomView);

impl Drop for Announcing<'_> {
    fn drop(&mut self) {
        self.0.announcing.store(false, Ordering::Release);
    }
}

impl RoomView {
    /// Whether this node has a route for member `conn`.
    pub fn has(&self, conn: &str) -> bool {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).contains_key(conn)
    }

    /// Whether `from` and `to` are both members this node has routes for.
    fn contains(&self, from: &str, to: &str) -> bool {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.contains_key(from) && routes.contains_key(to)
    }

    /// A frame from another node, from `from` to local connection `to`, may go straight to
    /// its target: both are members here, and neither an announcement nor an earlier frame
    /// is waiting in the RoomActor.
    pub fn direct(&self, from: &str, to: &str) -> bool {
        // Routes first: if they hold a member that the change being announced added, the flag
        // (set before they were published) is seen set below.
        self.contains(from, to)
            && !self.announcing.load(Ordering::Acquire)
            && self.handed.load(Ordering::Acquire) == self.queued.load(Ordering::Acquire)
    }

    /// The RoomActor is about to publish routes for a change and then tell local members
    /// about it. Routes go first, so that a member who hears of a newcomer can reach them at
    /// once. Until the guard drops, frames from other nodes take the ordered path instead,
    /// so that a newcomer's frame cannot reach a member before `user-joined` about them.
    pub(crate) fn announcing(&self) -> Announcing<'_> {
        self.announcing.store(true, Ordering::Release);
        Announcing(self)
    }

    /// A frame is about to be queued to the RoomActor: its sequence number.
    pub(crate) fn hold(&self) -> u64 {
        self.queued.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The frame numbered `seq` was handed on (or dropped): every frame before it is done too.
    pub(crate) fn release(&self, seq: u64) {
        self.handed.fetch_max(seq, Ordering::AcqRel);
    }

    /// Runs `f` on the route to `to`, if `to` is in the room.
    pub fn with_route<R>(&self, to: &str, f: impl FnOnce(&Route) -> R) -> Option<R> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.get(to).map(f)
    }

    /// Runs `f` on every member's route but `except`'s (a fan-out: chat, media state).
    pub fn for_each_other(&self, except: &str, mut f: impl FnMut(&ConnId, &Route)) {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        for (id, route) in routes.iter().filter(|(id, _)| ***id != *except) {
            f(id, route);
        }
    }

    pub(super) fn replace(&self, routes: HashMap<ConnId, Route>) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }
}

#[cfg(test)]
mod tests {
    use super::{RoomView, Route};

    /// A view with a remote member "alice" and a local one, "bob".
    fn view_with(member: &str) -> RoomView {
        let view = RoomView::default();
        let (out, _rx) = crate::outbound::channel(crate::outbound::SeatLimits::queue_only(4));
        let routes = [(member.into(), Route::Remote("node-b".into())), ("bob".into(), Route::Local(out))];
        view.replace(routes.into_iter().collect());
        view
    }

    #[test]
    fn frames_go_direct_only_from_announced_senders_with_nothing_queued() {
        let view = view_with("alice");
        assert!(view.direct("alice", "bob"));
        assert!(!view.direct("mallory", "bob"), "a sender this node has not announced is never direct");
        assert!(!view.direct("alice", "carol"), "nor a frame to a connection outside the room");
        let (first, second) = (view.hold(), view.hold());
        assert!(!view.direct("alice", "bob"), "queued frames first");
        view.release(first);
        assert!(!view.direct("alice", "bob"), "one frame is still queued");
        view.release(second);
        assert!(view.direct("alice", "bob"));
    }

    #[test]
    fn frames_take_the_ordered_path_while_a_change_is_announced() {
        let view = view_with("alice");
        let announcing = view.announcing();
        assert!(!view.direct("alice", "bob"), "routes are ahead of what members were told");
        drop(announcing);
        assert!(view.direct("alice", "bob"));
        let panicked = std::panic::catch_unwind(|| {
            let _announcing = view.announcing();
            panic!("a handler fails mid-announcement");
        });
        assert!(panicked.is_err());
        assert!(view.direct("alice", "bob"), "a failed announcement does not leave the room on the slow path");
    }

    #[test]
    fn frames_lost_with_a_failed_room_do_not_hold_later_ones_forever() {
        let view = view_with("alice");
        // Queued to an actor that then failed: never handed on.
        let _lost = view.hold();
        assert!(!view.direct("alice", "bob"));
        // The restarted actor hands on the next frame queued to it.
        let next = view.hold();
        view.release(next);
        assert!(view.direct("alice", "bob"));
    }
}
