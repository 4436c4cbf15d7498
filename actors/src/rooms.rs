//! RoomSupervisor: the registry of this node's RoomActors and their supervisor.
//!
//! Spawns a room on first use, forgets it when it stops (its last local member left), and
//! restarts it when it fails: the new RoomActor rebuilds from shared membership and keeps
//! the same routing view, so members keep relaying. Overrides ractor's default of stopping
//! the supervisor when a child exits.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};

use crate::ctx::NodeCtx;
use crate::msg::RoomMsg;
pub use crate::msg::RoomsMsg;
use crate::room::{RoomActor, RoomArgs};
use crate::routing::RoomView;
use crate::telemetry;
use crate::RoomId;

pub struct RoomSupervisor;

struct Entry {
    actor: ActorRef<RoomMsg>,
    view: Arc<RoomView>,
}

pub struct RoomsState {
    ctx: Arc<NodeCtx>,
    rooms: HashMap<RoomId, Entry>,
    by_actor: HashMap<ActorId, RoomId>,
}

impl RoomsState {
    async fn spawn(
        &mut self,
        me: &ActorCell,
        room_id: RoomId,
        view: Arc<RoomView>,
        restart: bool,
    ) -> Option<ActorRef<RoomMsg>> {
        let args = RoomArgs { room_id: room_id.clone(), view: view.clone(), ctx: self.ctx.clone(), restart };
        match Actor::spawn_linked(None, RoomActor, args, me.clone()).await {
            Ok((actor, _)) => {
                if let Some(old) =
                    self.rooms.insert(room_id.clone(), Entry { actor: actor.clone(), view: view.clone() })
                {
                    self.by_actor.remove(&old.actor.get_id());
                } else {
                    telemetry::rooms(1.0);
                }
                self.by_actor.insert(actor.get_id(), room_id.clone());
                self.ctx.index_room(room_id, actor.clone(), view);
                Some(actor)
            }
            Err(e) => {
                tracing::error!(room = %room_id, error = %e, "room actor failed to start");
                None
            }
        }
    }

    fn forget(&mut self, id: ActorId) -> Option<RoomId> {
        let room_id = self.by_actor.remove(&id)?;
        if self.rooms.get(&room_id).is_some_and(|e| e.actor.get_id() == id) {
            self.rooms.remove(&room_id);
            self.ctx.unindex_room(&room_id, id);
            telemetry::rooms(-1.0);
        }
        Some(room_id)
    }
}

fn running(a: &ActorRef<RoomMsg>) -> bool {
    matches!(a.get_status(), ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading)
}

impl Actor for RoomSupervisor {
    type Msg = RoomsMsg;
    type State = RoomsState;
    type Arguments = Arc<NodeCtx>;

    async fn pre_start(&self, _me: ActorRef<RoomsMsg>, ctx: Arc<NodeCtx>) -> Result<RoomsState, ActorProcessingErr> {
        Ok(RoomsState { ctx, rooms: HashMap::new(), by_actor: HashMap::new() })
    }

    async fn handle(
        &self,
        me: ActorRef<RoomsMsg>,
        msg: RoomsMsg,
        st: &mut RoomsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RoomsMsg::GetOrSpawn { room_id, reply } => {
                let found =
                    st.rooms.get(&room_id).filter(|e| running(&e.actor)).map(|e| (e.actor.clone(), e.view.clone()));
                let answer = match found {
                    Some(pair) => Some(pair),
                    None => {
                        let view = Arc::new(RoomView::default());
                        st.spawn(&me.get_cell(), room_id, view.clone(), false).await.map(|a| (a, view))
                    }
                };
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RoomsMsg>,
        evt: SupervisionEvent,
        st: &mut RoomsState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                st.forget(cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let id = cell.get_id();
                // A failed room actor skips post_stop: stop watching its room for it.
                if let Some(room) = st.by_actor.get(&id) {
                    st.ctx.ports.bus.unwatch_room(room);
                }
                let current = st.by_actor.get(&id).cloned();
                if let Some(room_id) = current {
                    let view = st.rooms.get(&room_id).filter(|e| e.actor.get_id() == id).map(|e| e.view.clone());
                    if let Some(view) = view {
                        tracing::error!(room = %room_id, error = %err, "room actor failed; restarting");
                        metrics::counter!(telemetry::ROOM_RESTARTS).increment(1);
                        if st.spawn(&me.get_cell(), room_id.clone(), view, true).await.is_none() {
                            st.forget(id);
                        }
                    } else {
                        st.by_actor.remove(&id);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
