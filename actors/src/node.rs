//! One node's supervision tree and the handle its edges use.
//!
//! ```text
//! Node
//!  ├── ConnectionSupervisor ── ConnectionActor (one per socket)
//!  └── RoomSupervisor ──────── RoomActor (one per room with local members)
//! ```
//! Owns start-up, the shared node context, accepting connections, drain and stop.
//! Must not: know about HTTP, sockets or a particular store (the edges bring those).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorRef};

use crate::connection::{ConnArgs, ConnectionActor};
use crate::connections::ConnectionSupervisor;
pub use crate::ctx::{ConnLimits, NodeCtx};
use crate::errors::ErrorCode;
use crate::identity::Identity;
use crate::intake::Intake;
use crate::msg::{close, Claim, ConnMsg, Origin, ResumeRequest, RoomMsg, RoomsMsg};
use crate::outbound::{self, Outbound, SeatReader};
use crate::ports::{HandOverError, HandOverRequest, HandedOver, Member, Ports, RoomEvent, SeatRoom};
use crate::registry::ConnRegistry;
use crate::rooms::RoomSupervisor;
use crate::rules::JoinPolicy;
use crate::seat::{ResumeFailure, ResumeKeys, TokenClaims};
use crate::session::ClientMeta;
use crate::{new_conn_id, ConnId, NodeId, RoomId};

mod inbound;
pub use inbound::Inbound;

/// What a node is started with, besides its ports.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub policy: JoinPolicy,
    pub limits: ConnLimits,
    pub audit_enabled: bool,
    /// The key resume tokens are signed with (the same on every node of a cluster).
    pub resume_keys: ResumeKeys,
    /// How `Node::drain` lets the clients go (batch size and interval).
    pub drain: signalgrid_config::DrainSettings,
    /// Webhook events are emitted (`webhook`) when set: the most events that may wait in
    /// the store (`webhooks.max_waiting`).
    pub webhooks: Option<u64>,
}

/// What this node reports about itself (presence, admin).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub connections: usize,
    pub rooms: usize,
    pub uptime_secs: u64,
    pub draining: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("actor failed to start: {0}")]
    Spawn(String),
}

/// A running node.
pub struct Node {
    ctx: Arc<NodeCtx>,
    conn_sup: ActorRef<()>,
    room_sup: ActorRef<RoomsMsg>,
    drain: signalgrid_config::DrainSettings,
    /// The sweep that ends calls by themselves (`auto_end`).
    sweeper: tokio::task::JoinHandle<()>,
}

/// How long a drained node goes on forwarding frames for the seats it handed over.
const FORWARD_GRACE: Duration = Duration::from_secs(1);

/// What `connect` and `resume` give the socket edge.
pub struct Connection {
    pub id: ConnId,
    pub actor: ActorRef<ConnMsg>,
    /// The seat's buffer (refusals, acks and closes go through it).
    pub out: Outbound,
    /// What the socket writes.
    pub reader: SeatReader,
}

/// Asks seat `actor` to take a new socket.
async fn attach(
    actor: &ActorRef<ConnMsg>,
    claims: TokenClaims,
    last_seq: u64,
    intake: Arc<Intake>,
    started: std::time::Instant,
    claim: Option<Box<Claim>>,
) -> Result<SeatReader, ResumeFailure> {
    let call = actor.call(
        |reply| ConnMsg::Resume(Box::new(ResumeRequest { claims, last_seq, intake, started, claim, reply })),
        Some(Duration::from_secs(10)),
    );
    match call.await {
        Ok(ractor::rpc::CallResult::Success(res)) => res,
        _ => Err(ResumeFailure::Expired),
    }
}

impl Node {
    pub async fn start(cfg: NodeConfig, ports: Ports) -> Result<Node, NodeError> {
        let ctx = Arc::new(NodeCtx {
            node_id: cfg.node_id,
            ports,
            policy: cfg.policy,
            limits: cfg.limits,
            conns: ConnRegistry::default(),
            resume_keys: cfg.resume_keys,
            audit_enabled: cfg.audit_enabled,
            audits: Arc::default(),
            draining: AtomicBool::new(false),
            rooms: OnceLock::new(),
            room_index: RwLock::default(),
            started: std::time::Instant::now(),
            events: crate::webhook::Events::new(cfg.webhooks.is_some(), cfg.webhooks.unwrap_or(0)),
        });
        let spawn_err = |e: ractor::SpawnErr| NodeError::Spawn(e.to_string());
        let (room_sup, _) = Actor::spawn(None, RoomSupervisor, ctx.clone()).await.map_err(spawn_err)?;
        let _ = ctx.rooms.set(room_sup.clone());
        let (conn_sup, _) = Actor::spawn(None, ConnectionSupervisor, ctx.clone()).await.map_err(spawn_err)?;
        let sweeper = crate::auto_end::spawn(&ctx);
        Ok(Node { ctx, conn_sup, room_sup, drain: cfg.drain, sweeper })
    }

    pub fn node_id(&self) -> &NodeId {
        &self.ctx.node_id
    }

    pub fn ctx(&self) -> &Arc<NodeCtx> {
        &self.ctx
    }

    /// Starts the seat of a new socket; its first frame (`connected`) is queued. `failed`:
    /// the client asked to resume and could not (PROTOCOL.md section 6). The socket reads
    /// the client's frames no faster than `intake` lets it, and writes what `reader` gives.
    pub async fn connect(
        &self,
        identity: Identity,
        meta: ClientMeta,
        intake: Arc<Intake>,
        failed: Option<ResumeFailure>,
    ) -> Result<Connection, ErrorCode> {
        if self.ctx.is_draining() {
            return Err(ErrorCode::NodeDraining);
        }
        let (out, reader) = outbound::channel(self.ctx.limits.seat);
        let id = new_conn_id();
        let origin = Origin::New { failed };
        let actor = self.spawn_seat(id.clone(), identity, meta, out.clone(), intake, origin).await?;
        Ok(Connection { id, actor, out, reader })
    }

    async fn spawn_seat(
        &self,
        id: ConnId,
        identity: Identity,
        meta: ClientMeta,
        out: Outbound,
        intake: Arc<Intake>,
        origin: Origin,
    ) -> Result<ActorRef<ConnMsg>, ErrorCode> {
        let args = ConnArgs { id, identity, meta, out, intake, ctx: self.ctx.clone(), origin };
        let (actor, _) =
            Actor::spawn_linked(None, ConnectionActor, args, self.conn_sup.get_cell()).await.map_err(|e| {
                tracing::error!(error = %e, "connection actor failed to start");
                ErrorCode::Internal
            })?;
        Ok(actor)
    }

    /// Resumes seat `token` for a new socket: here if the seat is here, else taken over from
    /// the node that holds it, or from shared membership if that node is gone (then `lost`).
    /// Errors with the `RESUME_FAILED` reason; the seat named is then left as it was.
    pub async fn resume(
        &self,
        identity: Identity,
        meta: ClientMeta,
        intake: Arc<Intake>,
        token: &str,
        last_seq: u64,
    ) -> Result<Connection, ResumeFailure> {
        let started = std::time::Instant::now();
        let res = self.try_resume(identity, meta, intake, token, last_seq, started).await;
        if let Err(f) = &res {
            crate::telemetry::resume(f.as_str());
        }
        res
    }

    async fn try_resume(
        &self,
        identity: Identity,
        meta: ClientMeta,
        intake: Arc<Intake>,
        token: &str,
        last_seq: u64,
        started: std::time::Instant,
    ) -> Result<Connection, ResumeFailure> {
        let claims = self.ctx.resume_keys.verify(token)?;
        if claims.user_id != identity.user_id {
            return Err(ResumeFailure::WrongUser);
        }
        if let Some(c) = self.ctx.conns.get(&claims.conn_id) {
            let reader = attach(&c.actor, claims.clone(), last_seq, intake, started, None).await?;
            return Ok(Connection { id: claims.conn_id, actor: c.actor, out: c.out, reader });
        }
        if self.ctx.is_draining() {
            return Err(ResumeFailure::Expired);
        }
        // The seat is registered here before its old node is asked, so that what that node
        // forwards once it let go of the seat finds it (and waits for its history).
        let out = outbound::claiming(self.ctx.limits.seat);
        let id = claims.conn_id.clone();
        let actor = self
            .spawn_seat(id.clone(), identity.clone(), meta, out.clone(), intake.clone(), Origin::Arriving)
            .await
            .map_err(|_| ResumeFailure::Expired)?;
        let res = match self.claim(&claims, token, last_seq, &identity).await {
            Ok(claim) => attach(&actor, claims, last_seq, intake, started, Some(Box::new(claim))).await,
            Err(f) => Err(f),
        };
        match res {
            Ok(reader) => Ok(Connection { id, actor, out, reader }),
            Err(f) => {
                actor.stop(None);
                Err(f)
            }
        }
    }

    /// The room of seat `conn` and its entry in shared membership: one read when a room of
    /// this node lists it (the seat's peer is here, the usual case), else a walk of every
    /// room.
    async fn find_seat(&self, conn: &ConnId) -> Result<Option<(RoomId, Member)>, crate::ports::MembershipError> {
        if let Some(room) = self.ctx.room_listing(conn) {
            let snap = self.ctx.ports.membership.snapshot(&room).await?;
            if let Some(m) = snap.members.into_iter().find(|m| m.conn_id == *conn) {
                return Ok(Some((room, m)));
            }
        }
        self.ctx.ports.membership.find(conn).await
    }

    /// Takes seat `claims.conn_id` from its node, or from shared membership if no node
    /// holds it any more.
    async fn claim(
        &self,
        claims: &TokenClaims,
        token: &str,
        last_seq: u64,
        identity: &Identity,
    ) -> Result<Claim, ResumeFailure> {
        let req = |_: ()| HandOverRequest {
            conn_id: claims.conn_id.clone(),
            token: token.to_owned(),
            last_seq,
            user_id: identity.user_id.clone(),
            to_node: self.ctx.node_id.clone(),
        };
        let bus = &self.ctx.ports.bus;
        if claims.node_id != self.ctx.node_id {
            match bus.hand_over(&claims.node_id, req(())).await {
                Ok(handed) => return Ok(Claim { handed, lost: false }),
                // Not there (gone, or its node restarted under the same id): shared
                // membership says whether it still waits somewhere.
                Err(HandOverError::Refused(ResumeFailure::Expired)) | Err(HandOverError::Unreachable) => {}
                Err(HandOverError::Refused(f)) => return Err(f),
            }
        }
        // Its node is gone (or is this node, restarted): the seat lives on in shared
        // membership only, if its window has not run out.
        let found = self.find_seat(&claims.conn_id).await.map_err(|e| {
            tracing::warn!(error = %e, "membership unavailable for a resume");
            ResumeFailure::Expired
        })?;
        let Some((room_id, member)) = found else { return Err(ResumeFailure::Expired) };
        if member.user_id != claims.user_id {
            return Err(ResumeFailure::WrongUser);
        }
        if member.node_id != claims.node_id && member.node_id != self.ctx.node_id {
            // It moved since this token was issued: ask its new node, which checks the token.
            return match bus.hand_over(&member.node_id, req(())).await {
                Ok(handed) => Ok(Claim { handed, lost: false }),
                Err(HandOverError::Refused(f)) => Err(f),
                Err(HandOverError::Unreachable) => Err(ResumeFailure::Used),
            };
        }
        let session_id = match self.ctx.ports.store.session_by_room(&room_id).await {
            Ok(Some(s)) => s.id,
            _ => return Err(ResumeFailure::Expired),
        };
        let handed = HandedOver {
            next_seq: last_seq + 1,
            frames: Vec::new(),
            room: Some(SeatRoom { room_id, session_id, member }),
            generation: claims.generation + 1,
        };
        Ok(Claim { handed, lost: true })
    }

    /// The handle the cluster layer uses for what arrives from other nodes.
    pub fn inbound(&self) -> Inbound {
        Inbound { ctx: self.ctx.clone() }
    }

    /// Rooms with local members.
    pub async fn rooms(&self) -> Vec<RoomId> {
        self.ctx.local_rooms()
    }

    /// A room's members across the cluster.
    pub async fn room_members(&self, room: &RoomId) -> Vec<Member> {
        self.ctx.ports.membership.snapshot(room).await.map(|s| s.members).unwrap_or_default()
    }

    /// Sends a frame to every member of a room (on every node).
    pub async fn broadcast(&self, room: &RoomId, frame: String) {
        match self.ctx.room(room) {
            Some(actor) => {
                let _ = actor.send_message(RoomMsg::Broadcast { frame, except: None });
            }
            None => {
                let event = RoomEvent::Frame { frame, except: None };
                if let Err(e) = self.ctx.ports.bus.publish(room, &event) {
                    tracing::warn!(room = %room, error = %e, "room broadcast not published");
                }
            }
        }
    }

    /// Disconnects every member of a room, on every node (operator's close).
    pub fn close_room(&self, room: &RoomId) {
        if let Some(actor) = self.ctx.room(room) {
            let _ = actor.send_message(RoomMsg::Remote(RoomEvent::Close));
        }
        if let Err(e) = self.ctx.ports.bus.publish(room, &RoomEvent::Close) {
            tracing::warn!(room = %room, error = %e, "room close not published");
        }
    }

    /// Test hook: makes the room's actor panic. Returns false if the room has no actor here.
    #[doc(hidden)]
    pub async fn inject_room_fault(&self, room: &RoomId) -> bool {
        self.ctx.room(room).is_some_and(|a| a.send_message(RoomMsg::InjectFault).is_ok())
    }

    /// Test hook: makes the connection's actor panic (its supervisor then closes the socket
    /// with 1011). Returns false if the connection is not on this node.
    #[doc(hidden)]
    pub fn inject_conn_fault(&self, conn: &str) -> bool {
        self.ctx.conns.get(conn).is_some_and(|c| c.actor.send_message(ConnMsg::InjectFault).is_ok())
    }

    /// Stops taking connections and joins, tells every client NODE_DRAINING (close 1012:
    /// resume on another node; the seats wait there for a resume), and waits (up to
    /// `timeout`, counted from the call) until every seat has been handed over or has left.
    ///
    /// Clients are told in batches of `drain.batch_size`, `drain.batch_interval_ms` apart, so
    /// that the other nodes are not hit by all of them at once. Sockets not told when
    /// `timeout` runs out are told together.
    pub async fn drain(&self, timeout: Duration) {
        self.ctx.draining.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + timeout;
        let batch = self.drain.batch_size.max(1);
        let interval = Duration::from_millis(self.drain.batch_interval_ms);
        // Re-read every round: a connection that passed `connect` just before the flag was set
        // registers late and is told in a later batch.
        let mut told = std::collections::HashSet::new();
        loop {
            let last_chance = tokio::time::Instant::now() >= deadline;
            let next: Vec<_> = self.ctx.conns.all().into_iter().filter(|(id, _)| !told.contains(id)).collect();
            let take = if last_chance { next.len() } else { batch.min(next.len()) };
            for (id, c) in next.into_iter().take(take) {
                let _ = c
                    .actor
                    .send_message(ConnMsg::Disconnect { code: ErrorCode::NodeDraining, close_code: close::RESTART });
                told.insert(id);
            }
            let left = self.ctx.conns.all().iter().any(|(id, _)| !told.contains(id));
            if !left || last_chance {
                break;
            }
            tracing::info!(
                told = told.len(),
                "drain: batch of clients told NODE_DRAINING; next batch after the interval"
            );
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + interval)).await;
        }
        while !self.ctx.conns.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !told.is_empty() {
            // Frames other nodes sent here before they heard where the seats went are
            // forwarded for a moment longer (see `Inbound::deliver`).
            let grace = tokio::time::Instant::now() + FORWARD_GRACE;
            tokio::time::sleep_until(grace.min(deadline.max(tokio::time::Instant::now()))).await;
        }
        // Seats still here (their clients did not resume elsewhere in time) stay in shared
        // membership when the node stops: another node claims them on resume.
    }

    /// Stops the supervision tree.
    pub fn stop(&self) {
        self.sweeper.abort();
        self.conn_sup.stop(None);
        self.room_sup.stop(None);
    }
}
