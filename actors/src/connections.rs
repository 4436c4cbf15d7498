//! This node's connections: the registry (id -> queue, actor, room) shared by the actors of
//! the node, and the ConnectionSupervisor that every ConnectionActor is linked to.
//!
//! When a ConnectionActor fails, the supervisor closes its socket with an `error` frame and
//! takes it out of its room, so the room's other members get `user-left`. Overrides ractor's
//! default of stopping the supervisor when a child exits.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::ctx::NodeCtx;
use crate::errors::ErrorCode;
use crate::msg::{close, RoomMsg};
use crate::ports::LeaveReason;
use crate::protocol::ServerFrame;
pub use crate::registry::{ConnEntry, ConnRegistry};

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
