//! This node's connections: the registry (id -> queue, actor, room) shared by the actors of
//! the node, and the ConnectionSupervisor that every ConnectionActor is linked to.
//!
//! When a ConnectionActor fails, the supervisor closes its socket with an `error` frame and
//! takes it out of its room, so the room's other members get `user-left`. Overrides ractor's
//! default of stopping the supervisor when a child exits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::connection::{close, ConnMsg};
use crate::errors::ErrorCode;
use crate::node::NodeCtx;
use crate::outbound::Outbound;
use crate::ports::LeaveReason;
use crate::protocol::ServerFrame;
use crate::room::RoomMsg;
use crate::{ConnId, RoomId};

/// One live connection of this node.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    pub user_id: String,
    pub out: Outbound,
    pub actor: ActorRef<ConnMsg>,
    pub room: Option<RoomId>,
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<ConnId, ConnEntry>,
    by_actor: HashMap<ActorId, ConnId>,
}

/// Node-wide index of live connections.
#[derive(Default)]
pub struct ConnRegistry {
    maps: Mutex<Maps>,
}

impl ConnRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: ConnId, user_id: String, out: Outbound, actor: ActorRef<ConnMsg>) {
        let mut m = self.lock();
        m.by_actor.insert(actor.get_id(), id.clone());
        m.by_id.insert(id, ConnEntry { user_id, out, actor, room: None });
    }

    pub fn get(&self, id: &str) -> Option<ConnEntry> {
        self.lock().by_id.get(id).cloned()
    }

    pub fn set_room(&self, id: &str, room: Option<RoomId>) {
        if let Some(e) = self.lock().by_id.get_mut(id) {
            e.room = room;
        }
    }

    pub fn remove(&self, id: &str) -> Option<ConnEntry> {
        let mut m = self.lock();
        let e = m.by_id.remove(id)?;
        m.by_actor.remove(&e.actor.get_id());
        Some(e)
    }

    fn remove_by_actor(&self, actor: ActorId) -> Option<(ConnId, ConnEntry)> {
        let mut m = self.lock();
        let id = m.by_actor.remove(&actor)?;
        let e = m.by_id.remove(&id)?;
        Some((id, e))
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every connection (for drain and admin).
    pub fn all(&self) -> Vec<(ConnId, ConnEntry)> {
        self.lock().by_id.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

pub struct ConnectionSupervisor;

impl Actor for ConnectionSupervisor {
    type Msg = ();
    type State = Arc<NodeCtx>;
    type Arguments = Arc<NodeCtx>;

    async fn pre_start(&self, _me: ActorRef<()>, ctx: Arc<NodeCtx>) -> Result<Arc<NodeCtx>, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<()>,
        evt: SupervisionEvent,
        ctx: &mut Arc<NodeCtx>,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let Some((conn_id, entry)) = ctx.conns.remove_by_actor(cell.get_id()) else {
                return Ok(());
            };
            tracing::error!(conn = %conn_id, error = %err, "connection actor failed; closing its socket");
            crate::telemetry::connections(-1.0);
            entry.out.send_raw(ServerFrame::error(ErrorCode::Internal, serde_json::json!({})));
            entry.out.close(close::INTERNAL, "internal error");
            if let Some(room_id) = entry.room {
                match ctx.room(&room_id) {
                    Some(room) => {
                        let _ = room.send_message(RoomMsg::Leave { conn_id, reason: LeaveReason::Left, reply: None });
                    }
                    None => {
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            let _ = ctx.ports.membership.leave(&room_id, &[conn_id], LeaveReason::Left).await;
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
