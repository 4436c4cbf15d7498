//! RoomActor: one per room with members on this node. Owns the room's membership changes
//! (through the shared `Membership`), tells members about joins and leaves, and publishes a
//! routing view that connections read to relay without a round trip through this actor.
//!
//! Must not: do store I/O or rule checks (the ConnectionActor did those before asking to
//! join), or block on a slow member (every send is a bounded `try_send`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use crate::connection::ConnMsg;
use crate::errors::ErrorCode;
use crate::node::NodeCtx;
use crate::outbound::Outbound;
use crate::ports::{Member, MembershipError};
use crate::protocol::{Participant, ServerFrame};
use crate::{ConnId, NodeId, RoomId};

/// Where a member's frames go.
#[derive(Debug, Clone)]
pub enum Route {
    Local(Outbound),
    Remote(NodeId),
}

/// The room's routing table: connection id -> route. Written by the RoomActor on every
/// membership change, read by ConnectionActors on every relay.
#[derive(Debug, Default)]
pub struct RoomView {
    routes: RwLock<HashMap<ConnId, Route>>,
}

impl RoomView {
    /// Runs `f` on the route to `to`, if `to` is in the room.
    pub fn with_route<R>(&self, to: &str, f: impl FnOnce(&Route) -> R) -> Option<R> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.get(to).map(f)
    }

    fn replace(&self, routes: HashMap<ConnId, Route>) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// Members that can be reached right now.
    pub fn len(&self) -> usize {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A member connected to this node.
#[derive(Debug, Clone)]
pub struct LocalConn {
    pub out: Outbound,
    pub actor: ActorRef<ConnMsg>,
}

pub enum RoomMsg {
    /// Admit a member (rules already checked). Replies after `room-joined` is queued to the
    /// joiner and `user-joined` to the others.
    Join {
        member: Member,
        conn: LocalConn,
        /// How many members the room holds (from the session's type).
        capacity: usize,
        reply: RpcReplyPort<Result<Vec<Member>, ErrorCode>>,
    },
    /// A connection leaves (leave-room, close, or a second room).
    Leave {
        conn_id: ConnId,
        reply: Option<RpcReplyPort<()>>,
    },
    /// Send a frame to every member (on every node), except `except`.
    Broadcast {
        frame: String,
        except: Option<ConnId>,
    },
    /// The room's members, as shared membership has them.
    Members(RpcReplyPort<Vec<Member>>),
    /// Test hook: panic inside the handler, to exercise supervision.
    InjectFault,
}

pub struct RoomActor;

pub struct RoomArgs {
    pub room_id: RoomId,
    pub view: Arc<RoomView>,
    pub ctx: Arc<NodeCtx>,
    /// A restart after a failure: stop at once if no local member is left.
    pub restart: bool,
}

pub struct RoomState {
    room_id: RoomId,
    view: Arc<RoomView>,
    ctx: Arc<NodeCtx>,
    members: Vec<Member>,
    locals: HashMap<ConnId, LocalConn>,
}

fn participant(m: &Member) -> Participant {
    Participant {
        socket_id: m.conn_id.to_string(),
        user_id: m.user_id.clone(),
        user_name: m.user_name.clone(),
        user_role: m.user_role.clone(),
    }
}

impl RoomState {
    fn publish_view(&self) {
        let routes = self
            .members
            .iter()
            .filter_map(|m| {
                let route = match self.locals.get(&m.conn_id) {
                    Some(l) => Route::Local(l.out.clone()),
                    None if m.node_id != self.ctx.node_id => Route::Remote(m.node_id.clone()),
                    None => return None,
                };
                Some((m.conn_id.clone(), route))
            })
            .collect();
        self.view.replace(routes);
    }

    /// Sends to local members and, through the bus, to members on other nodes.
    fn broadcast(&self, frame: String, except: &[&ConnId]) {
        for (id, l) in &self.locals {
            if !except.contains(&id) {
                l.out.send(frame.clone());
            }
        }
        if self.members.iter().any(|m| m.node_id != self.ctx.node_id) {
            if let Err(e) =
                self.ctx
                    .ports
                    .bus
                    .broadcast(&self.room_id, frame, except.first().copied())
            {
                tracing::warn!(room = %self.room_id, error = %e, "room broadcast to other nodes failed");
            }
        }
    }

    async fn join(
        &mut self,
        member: Member,
        conn: LocalConn,
        capacity: usize,
    ) -> Result<Vec<Member>, ErrorCode> {
        let outcome = match self
            .ctx
            .ports
            .membership
            .join(&self.room_id, member.clone(), capacity)
            .await
        {
            Ok(o) => o,
            Err(MembershipError::Full) => return Err(ErrorCode::RoomFull),
            Err(MembershipError::Unavailable(e)) => {
                tracing::error!(room = %self.room_id, error = %e, "membership unavailable");
                return Err(ErrorCode::Internal);
            }
        };
        self.members = outcome.members;
        let joiner = conn.out.clone();
        self.locals.insert(member.conn_id.clone(), conn);
        if let Some(old) = &outcome.replaced {
            if let Some(l) = self.locals.remove(&old.conn_id) {
                let _ = l.actor.send_message(ConnMsg::Replaced {
                    room_id: self.room_id.clone(),
                });
            }
        }
        self.publish_view();
        let participants: Vec<Participant> = self.members.iter().map(participant).collect();
        joiner.send(
            ServerFrame::RoomJoined {
                room_id: &self.room_id,
                participants: &participants,
            }
            .encode(),
        );
        if let Some(old) = &outcome.replaced {
            let left = ServerFrame::UserLeft {
                socket_id: &old.conn_id,
                user_id: &old.user_id,
            }
            .encode();
            self.broadcast(left, &[&member.conn_id, &old.conn_id]);
        }
        self.broadcast(
            ServerFrame::UserJoined(&participant(&member)).encode(),
            &[&member.conn_id],
        );
        Ok(self.members.clone())
    }

    async fn leave(&mut self, conn_id: &ConnId) {
        let removed = match self
            .ctx
            .ports
            .membership
            .leave(&self.room_id, conn_id)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(room = %self.room_id, error = %e, "membership leave failed");
                self.members.iter().find(|m| &m.conn_id == conn_id).cloned()
            }
        };
        self.locals.remove(conn_id);
        self.members.retain(|m| &m.conn_id != conn_id);
        self.publish_view();
        if let Some(m) = removed {
            self.broadcast(
                ServerFrame::UserLeft {
                    socket_id: &m.conn_id,
                    user_id: &m.user_id,
                }
                .encode(),
                &[],
            );
        }
    }
}

impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    /// Starts from shared membership, so that a restarted room knows its members again.
    async fn pre_start(
        &self,
        _me: ActorRef<RoomMsg>,
        args: RoomArgs,
    ) -> Result<RoomState, ActorProcessingErr> {
        let mut st = RoomState {
            room_id: args.room_id,
            view: args.view,
            ctx: args.ctx,
            members: Vec::new(),
            locals: HashMap::new(),
        };
        let members = st
            .ctx
            .ports
            .membership
            .members(&st.room_id)
            .await
            .unwrap_or_default();
        for m in members {
            if m.node_id != st.ctx.node_id {
                st.members.push(m);
            } else if let Some(c) = st.ctx.conns.get(&m.conn_id) {
                st.locals.insert(
                    m.conn_id.clone(),
                    LocalConn {
                        out: c.out.clone(),
                        actor: c.actor.clone(),
                    },
                );
                st.members.push(m);
            } else {
                let _ = st.ctx.ports.membership.leave(&st.room_id, &m.conn_id).await;
            }
        }
        st.publish_view();
        if args.restart && st.locals.is_empty() {
            _me.stop(Some("no local members after restart".into()));
        }
        Ok(st)
    }

    async fn handle(
        &self,
        me: ActorRef<RoomMsg>,
        msg: RoomMsg,
        st: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RoomMsg::Join {
                member,
                conn,
                capacity,
                reply,
            } => {
                let res = st.join(member, conn, capacity).await;
                let _ = reply.send(res);
            }
            RoomMsg::Leave { conn_id, reply } => {
                st.leave(&conn_id).await;
                if let Some(r) = reply {
                    let _ = r.send(());
                }
                if st.locals.is_empty() {
                    me.stop(Some("empty".into()));
                }
            }
            RoomMsg::Broadcast { frame, except } => {
                let except: Vec<&ConnId> = except.iter().collect();
                st.broadcast(frame, &except);
            }
            RoomMsg::Members(reply) => {
                let _ = reply.send(st.members.clone());
            }
            RoomMsg::InjectFault => panic!("injected fault in room {}", st.room_id),
        }
        Ok(())
    }
}

/// Details for an error frame about a room.
pub fn room_details(room_id: &str) -> serde_json::Value {
    json!({ "roomId": room_id })
}
