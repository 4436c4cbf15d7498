//! RoomActor: one per room with members on this node. Owns the room's membership changes
//! (through the shared `Membership`), tells local members about joins and leaves, and
//! publishes a routing view that connections read to relay without a hop through this actor.
//!
//! Membership is state, not a stream of deltas: every change yields a `RoomSnapshot` with a
//! revision, and `apply` diffs the newest snapshot against the last one to tell local
//! members exactly what changed. Snapshots from this node's own changes, from other nodes
//! (room events on the bus) and from the periodic resync all go through `apply`, so each
//! change is announced once per member, whichever way it arrives first.
//!
//! Shared membership follows the connections here: a member connected to this node that a
//! snapshot drops (its node was taken for dead) is kept and put back at once, and the resync
//! puts back any local member missing from shared membership and removes this node's
//! members that are no longer connected (docs/architecture.md, "Membership converges after
//! faults"). The routing view lives in `view`.
//!
//! The session's rules during the call (time limits, a changed session, removals) live in
//! `limits`.
//!
//! Must not: do store I/O or join checks (the ConnectionActor did those), or block on a
//! slow member (every send is a bounded `try_send`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;

use crate::ctx::NodeCtx;
use crate::errors::ErrorCode;
use crate::msg::{close, ConnMsg};
pub use crate::msg::{JoinRequest, LocalConn, RoomMsg};
use crate::ports::{LeaveReason, Member, MembershipError, RoomEvent, RoomSnapshot};
use crate::protocol::Participant;
use crate::registry::Gone;
use crate::{ConnId, RoomId};

pub use crate::routing::{RoomView, Route};

mod announce;
mod call;
pub mod limits;

/// How often a room re-reads shared membership, to repair lost events.
const RESYNC_EVERY: Duration = Duration::from_secs(5);

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
    revision: u64,
    members: Vec<Member>,
    locals: HashMap<ConnId, LocalConn>,
    /// Capacity from the last join here (used to re-admit a member the cluster dropped).
    capacity: usize,
    /// Has had local members; once it has none again, the actor stops.
    active: bool,
    /// A snapshot dropped a member still connected here: re-read and put it back at once.
    readmit: bool,
    /// The session's time limits and live rule checks (`limits`).
    limits: limits::Limits,
    /// Media states: when shared membership was last written for one, and whether a
    /// `FlushMedia` is due (see `call`).
    media_written: Option<std::time::Instant>,
    media_flush: bool,
}

fn participant(m: &Member) -> Participant {
    Participant {
        socket_id: m.conn_id.to_string(),
        user_id: m.user_id.clone(),
        user_name: m.user_name.clone(),
        user_role: m.user_role.clone(),
        media_state: m.media,
    }
}

impl RoomState {
    fn publish_view(&self) {
        // Waiting members have no route: nobody reaches them, and they hear nothing.
        let routes = self
            .members
            .iter()
            .filter(|m| !m.waiting)
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

    /// Sends to local members (not waiting ones) except `except`.
    fn tell_locals(&self, frame: &str, except: &[&ConnId]) {
        for (id, l) in &self.locals {
            if !except.contains(&id) && !l.member.waiting {
                l.out.send(frame.to_owned());
            }
        }
    }

    fn publish(&self, event: &RoomEvent) {
        if let Err(e) = self.ctx.ports.bus.publish(&self.room_id, event) {
            tracing::warn!(room = %self.room_id, error = %e, "room event not published");
        }
    }

    /// Moves to `snap` if it is newer, telling local members what changed. `joiner` gets
    /// `room-joined` instead of notifications.
    fn apply(&mut self, snap: RoomSnapshot, joiner: Option<&ConnId>) {
        if snap.revision <= self.revision && joiner.is_none() {
            return;
        }
        self.apply_any(snap, joiner);
    }

    /// `apply` without the revision check: for a change made only here, and for the state
    /// read from shared membership itself, which is authoritative even when its revision went
    /// backwards (a NATS server that lost its data starts revisions anew).
    fn apply_any(&mut self, snap: RoomSnapshot, joiner: Option<&ConnId>) {
        let view = self.view.clone();
        let _announcing = view.announcing();
        let change = self.update(snap);
        self.announce(&change, joiner);
    }

    /// Admits the member of a `JoinRequest` and answers it.
    async fn answer_join(&mut self, req: Box<JoinRequest>) {
        let JoinRequest { member, conn, capacity, resume, reply, .. } = *req;
        let res = self.join(member, conn, capacity, resume).await;
        let _ = reply.send(res);
    }

    async fn join(
        &mut self,
        member: Member,
        conn: LocalConn,
        capacity: usize,
        resume: bool,
    ) -> Result<Vec<Member>, ErrorCode> {
        if capacity != usize::MAX {
            self.capacity = capacity;
        }
        let snap = match self.ctx.ports.membership.join(&self.room_id, member.clone(), capacity).await {
            Ok(s) => s,
            Err(MembershipError::Full) => return Err(ErrorCode::RoomFull),
            Err(MembershipError::Unavailable(e)) => {
                tracing::error!(room = %self.room_id, error = %e, "membership unavailable");
                return Err(ErrorCode::ClusterUnavailable);
            }
            Err(MembershipError::NotWaiting) => return Err(ErrorCode::Internal),
        };
        let view = self.view.clone();
        let _announcing = view.announcing();
        let joiner = conn.out.clone();
        self.locals.insert(member.conn_id.clone(), conn);
        let joined = self.room_joined(&snap.members, &member);
        let event = RoomEvent::Membership(snap.clone());
        // Routes first: whoever hears of the joiner (here or on another node) can reach them.
        let change = self.update(snap);
        // `room-joined` before anything else reaches the joiner: before the room event
        // leaves this node, and before the local members hear of them.
        if !resume {
            joiner.send(joined);
        }
        self.publish(&event);
        self.announce(&change, Some(&member.conn_id));
        Ok(self.members.clone())
    }

    async fn leave(&mut self, conn_ids: &[ConnId], reason: LeaveReason) {
        for c in conn_ids {
            self.locals.remove(c);
        }
        match self.ctx.ports.membership.leave(&self.room_id, conn_ids, reason).await {
            Ok(snap) => {
                self.publish(&RoomEvent::Membership(snap.clone()));
                self.apply(snap, None);
            }
            Err(e) => {
                // Shared membership is unreachable: announce the leave here anyway; the
                // resync removes it from shared membership once it is back.
                tracing::warn!(room = %self.room_id, error = %e, "membership leave failed; announcing locally");
                let members = self.members.iter().filter(|m| !conn_ids.contains(&m.conn_id)).cloned().collect();
                let departed =
                    conn_ids.iter().map(|c| crate::ports::Departure { conn_id: c.clone(), reason }).collect();
                self.apply_any(RoomSnapshot { revision: self.revision, members, departed }, None);
            }
        }
    }

    /// Marks local seat `conn_id` away (or back) in shared membership and tells the others.
    async fn set_away(&mut self, conn_id: &ConnId, away: bool) {
        let Some(l) = self.locals.get_mut(conn_id) else { return };
        if l.member.is_away() == away {
            return;
        }
        l.member.away_since_ms = away.then(|| chrono::Utc::now().timestamp_millis());
        let member = (*l.member).clone();
        match self.ctx.ports.membership.join(&self.room_id, member.clone(), usize::MAX).await {
            Ok(snap) => {
                self.publish(&RoomEvent::Membership(snap.clone()));
                self.apply(snap, None);
            }
            Err(e) => {
                // Shared membership is unreachable: tell the members here; the resync puts the
                // seat's state into shared membership once it is back.
                tracing::warn!(room = %self.room_id, error = %e, "seat state not shared; announcing locally");
                let members = self
                    .members
                    .iter()
                    .map(|m| if m.conn_id == *conn_id { member.clone() } else { m.clone() })
                    .collect();
                self.apply_any(RoomSnapshot { revision: self.revision, members, departed: Vec::new() }, None);
            }
        }
    }

    /// Re-reads shared membership; removes this node's members that are no longer
    /// connected and re-admits connected ones the cluster dropped. False if shared
    /// membership could not be read.
    async fn resync(&mut self) -> bool {
        let Ok(snap) = self.ctx.ports.membership.snapshot(&self.room_id).await else { return false };
        if snap.revision < self.revision {
            self.restore().await;
            return true;
        }
        let gone: Vec<ConnId> = snap
            .members
            .iter()
            .filter(|m| m.node_id == self.ctx.node_id && !self.locals.contains_key(&m.conn_id))
            .map(|m| m.conn_id.clone())
            .collect();
        // Every member connected here belongs in shared membership, whether or not the last
        // snapshot this room applied still listed it, and as present or away as it is here
        // (other nodes mark this node's seats away while they cannot hear it).
        let missing: Vec<Member> = self
            .locals
            .values()
            .filter(|l| {
                !snap.members.iter().any(|s| s.conn_id == l.member.conn_id && s.is_away() == l.member.is_away())
            })
            .map(|l| (*l.member).clone())
            .collect();
        // Seats here are as this node knows them: announce no false away (put right below).
        let mut snap = snap;
        for m in snap.members.iter_mut() {
            if let Some(l) = self.locals.get(&m.conn_id) {
                m.away_since_ms = l.member.away_since_ms;
            }
        }
        self.apply_any(snap, None);
        // `missing` below covers what this snapshot dropped.
        self.readmit = false;
        if !gone.is_empty() {
            self.leave(&gone, LeaveReason::Left).await;
        }
        for m in missing {
            match self.ctx.ports.membership.join(&self.room_id, m.clone(), self.capacity.max(1)).await {
                Ok(snap) => {
                    self.publish(&RoomEvent::Membership(snap.clone()));
                    self.apply(snap, None);
                }
                Err(MembershipError::Full) => {
                    tracing::warn!(room = %self.room_id, conn = %m.conn_id, "could not re-admit member: room full");
                    if let Some(l) = self.locals.remove(&m.conn_id) {
                        let _ = l
                            .actor
                            .send_message(ConnMsg::Disconnect { code: ErrorCode::RoomFull, close_code: close::POLICY });
                    }
                }
                Err(e) => {
                    // NATS went away again: the next resync tries again.
                    tracing::warn!(room = %self.room_id, conn = %m.conn_id, error = %e, "could not re-admit member");
                }
            }
        }
        true
    }

    /// Hands on a frame from another node behind what came before it (see `RoomMsg::Deliver`).
    async fn deliver(&mut self, from: &str, to: &str, frame: String, seq: u64) {
        // Both ends must be in the room (a waiting target may have been admitted by a
        // change this node has not applied yet: re-read, so that `room-joined` goes first).
        let known = |st: &Self| {
            let member = |c: &str| st.members.iter().any(|m| *m.conn_id == *c && !m.waiting);
            member(from) && (member(to) || !st.locals.contains_key(to))
        };
        // If membership cannot be read, the frame goes on anyway: the sending node checked
        // that its sender is in the room.
        if known(self) || !self.resync().await || known(self) {
            match self.locals.get(to) {
                Some(l) => {
                    l.out.send(frame);
                }
                None => match self.ctx.conns.what_became(to) {
                    // Its seat moved on a resume while the frame waited here: it follows.
                    Some(Gone::Moved(node)) => {
                        let d = crate::ports::Delivery { room: &self.room_id, from: to, to };
                        if let Err(e) = self.ctx.ports.bus.deliver(&node, d, frame) {
                            tracing::debug!(room = %self.room_id, error = %e, "frame for a moved seat not forwarded");
                        }
                    }
                    _ => tracing::debug!(room = %self.room_id, to, "frame to a connection not in the room dropped"),
                },
            }
        } else {
            tracing::debug!(room = %self.room_id, from, "frame from a connection no longer in the room dropped");
        }
        self.view.release(seq);
    }

    /// Starts from shared membership, so that a restarted room knows its members again.
    async fn init(&mut self, restart: bool) {
        if let Ok(snap) = self.ctx.ports.membership.snapshot(&self.room_id).await {
            for m in snap.members.iter().filter(|m| m.node_id == self.ctx.node_id) {
                if let Some(c) = self.ctx.conns.get(&m.conn_id) {
                    let local = LocalConn { out: c.out, actor: c.actor, member: Box::new(m.clone()) };
                    self.locals.insert(m.conn_id.clone(), local);
                }
            }
            // Waiting members take no seat.
            self.capacity = snap.members.iter().filter(|m| !m.waiting).count().max(2);
            self.revision = snap.revision;
            self.members = snap.members;
            self.publish_view();
            // What this node emits for the room starts with everyone already in it
            // (`webhook`: each node's copy of the stream is complete, in order).
            let (store, empty) = (&self.ctx.ports.store, self.members.is_empty());
            self.ctx.events.room_changed(store, &self.room_id, true, empty, &[], &self.members, &[], &[], &[]);
        }
        self.active = !self.locals.is_empty();
        if restart {
            self.resync().await;
        }
    }

    /// Shared membership went back in time (a NATS server that lost its data): put back
    /// every member this node knew, through the same compare-and-set as a join, so that
    /// nobody is announced as gone. Their own nodes do the same; the union wins.
    async fn restore(&mut self) {
        tracing::warn!(room = %self.room_id, "shared membership lost this room; restoring it");
        let mut last = None;
        for m in self.members.clone() {
            match self.ctx.ports.membership.join(&self.room_id, m, self.capacity.max(self.members.len())).await {
                Ok(snap) => last = Some(snap),
                Err(e) => tracing::warn!(room = %self.room_id, error = %e, "could not restore a member"),
            }
        }
        if let Some(snap) = last {
            self.publish(&RoomEvent::Membership(snap.clone()));
            self.apply_any(snap, None);
        }
    }

    fn close(&mut self) {
        for l in self.locals.values() {
            let _ =
                l.actor.send_message(ConnMsg::Disconnect { code: ErrorCode::RoomClosed, close_code: close::KICKED });
        }
    }
}

impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    /// Watches the room's events and queues `Init`, which loads it.
    async fn pre_start(&self, me: ActorRef<RoomMsg>, args: RoomArgs) -> Result<RoomState, ActorProcessingErr> {
        let st = RoomState {
            room_id: args.room_id,
            view: args.view,
            ctx: args.ctx,
            revision: 0,
            members: Vec::new(),
            locals: HashMap::new(),
            capacity: 0,
            active: false,
            readmit: false,
            limits: limits::Limits::default(),
            media_written: None,
            media_flush: false,
        };
        // Watch before reading, so that no change falls between the read and the events.
        st.ctx.ports.bus.watch_room(&st.room_id);
        // The read itself is the first message, not part of the start: the RoomSupervisor
        // waits for `pre_start`, and must not wait for shared membership (other rooms'
        // joins would queue behind it). Every later message finds the room loaded.
        me.send_message(RoomMsg::Init { restart: args.restart })?;
        me.send_interval(RESYNC_EVERY, || RoomMsg::Resync);
        Ok(st)
    }

    async fn handle(&self, me: ActorRef<RoomMsg>, msg: RoomMsg, st: &mut RoomState) -> Result<(), ActorProcessingErr> {
        // A room started for a join stops when that join fails, or when no join came by the
        // first resync; an active room stops when its last local member is gone.
        let settles = matches!(msg, RoomMsg::Join(_) | RoomMsg::Resync);
        match msg {
            // The arms that await are boxed: the processing loop lives as long as the room,
            // and would otherwise reserve, while idle, room for its largest await.
            RoomMsg::Join(mut req) => {
                let (conn, session, resume) = (req.member.conn_id.clone(), req.session.take(), req.resume);
                Box::pin(st.answer_join(req)).await;
                st.limits_joined(&me, &conn, session, resume);
            }
            RoomMsg::Leave { conn_id, reason, reply } => {
                Box::pin(st.leave(&[conn_id], reason)).await;
                if let Some(r) = reply {
                    let _ = r.send(());
                }
            }
            RoomMsg::Away { conn_id, away, reply } => {
                Box::pin(st.set_away(&conn_id, away)).await;
                let _ = reply.send(());
            }
            RoomMsg::Settle { conn_id, admit, capacity, reply } => {
                let res = Box::pin(st.settle(&conn_id, admit, capacity)).await;
                let _ = reply.send(res);
            }
            RoomMsg::Media { conn_id, media, reply } => {
                Box::pin(st.media(&me, &conn_id, media)).await;
                let _ = reply.send(());
            }
            RoomMsg::FlushMedia => Box::pin(st.flush_media()).await,
            RoomMsg::Broadcast { frame, except } => {
                let skip: Vec<&ConnId> = except.iter().collect();
                st.tell_locals(&frame, &skip);
                st.publish(&RoomEvent::Frame { frame, except });
            }
            RoomMsg::Remote(RoomEvent::Membership(snap)) => st.apply(snap, None),
            RoomMsg::Remote(RoomEvent::Frame { frame, except }) => {
                let except: Vec<&ConnId> = except.iter().collect();
                st.tell_locals(&frame, &except);
            }
            RoomMsg::Remote(RoomEvent::Close) => st.close(),
            RoomMsg::Remote(RoomEvent::Remove { conns, code }) => {
                for c in &conns {
                    st.remove_local(c, code);
                }
            }
            RoomMsg::Remote(RoomEvent::Session(s)) => st.limits_session(&me, *s),
            RoomMsg::LimitsTick { generation } => st.limits_tick(&me, generation),
            RoomMsg::Init { restart } => {
                Box::pin(st.init(restart)).await;
                if !st.locals.is_empty() {
                    st.limits_lookup(&me);
                }
                if restart && st.locals.is_empty() {
                    me.stop(Some("no local members after restart".into()));
                }
            }
            RoomMsg::Resync => {
                Box::pin(st.resync()).await;
            }
            RoomMsg::Deliver { from, to, frame, seq } => Box::pin(st.deliver(&from, &to, frame, seq)).await,
            RoomMsg::InjectFault => panic!("injected fault in room {}", st.room_id),
        }
        if st.readmit {
            // Once: the resync clears the flag whether or not the member could be put back.
            st.readmit = false;
            let _ = me.send_message(RoomMsg::Resync);
        }
        st.active |= !st.locals.is_empty();
        if st.locals.is_empty() && (st.active || settles) {
            me.stop(Some("no local members".into()));
        }
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<RoomMsg>, st: &mut RoomState) -> Result<(), ActorProcessingErr> {
        st.ctx.ports.bus.unwatch_room(&st.room_id);
        Ok(())
    }
}

/// Details for an error frame about a room.
pub fn room_details(room_id: &str) -> serde_json::Value {
    json!({ "roomId": room_id })
}
