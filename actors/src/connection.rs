//! ConnectionActor: one per seat (see `seat`). Owns the seat's state (which room it is in,
//! whether a socket is attached), the join flow (store lookup, rules, then the RoomActor),
//! relays (routed through the room's view straight to the target's buffer), the call-ended
//! flow, and the seat's life without a socket: away for the resume window, resumed by a new
//! socket here, handed over to another node, or ended when the window runs out
//! (PROTOCOL.md section 6).
//!
//! Split by responsibility: the join flow in `join`, chat, media state and admit/deny in
//! `call`, the seat's life without a socket (resume, hand-over, expiry) in `life`.
//!
//! Must not: read the socket (the edge does, and sends decoded events here) or wait on a
//! slow peer (all sends go to bounded buffers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{json, Value};

use crate::ctx::NodeCtx;
use crate::errors::ErrorCode;
use crate::identity::Identity;
use crate::intake::Intake;
pub use crate::msg::{close, Claim, ConnMsg, Origin, ResumeRequest};
use crate::msg::{RoomMsg, RoomsMsg};
use crate::outbound::Outbound;
use crate::ports::{Delivery, EndOutcome, HandOverRequest, LeaveReason};
use crate::protocol::{relay_frame, ClientEvent, MediaState, RelayKind, Resumed, ServerFrame};
use crate::registry::Gone;
use crate::room::room_details;
use crate::routing::{RoomView, Route};
use crate::session::{now_ms, AuditAction, ClientMeta};
use crate::{telemetry, ConnId, RoomId};

/// Attempts at reaching a room actor that may be restarting, and the pause between them.
const ROOM_RETRIES: usize = 100;
const ROOM_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Longest wait for one answer from a room or the room supervisor.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ConnectionActor;

pub struct ConnArgs {
    pub id: ConnId,
    pub identity: Identity,
    pub meta: ClientMeta,
    pub out: Outbound,
    pub intake: Arc<Intake>,
    pub ctx: Arc<NodeCtx>,
    pub origin: Origin,
}

struct Joined {
    room_id: RoomId,
    session_id: String,
    /// The name the others were given; a re-join keeps it.
    user_name: String,
    /// When the seat joined (Unix ms); a re-join keeps it.
    joined_at_ms: i64,
    view: Arc<RoomView>,
    /// In the waiting room: not in the room yet (no route, hears nothing) until a host
    /// admits the seat.
    waiting: bool,
    /// The last `media-state` sent (carried along when the seat moves node).
    media: Option<MediaState>,
    /// Chat messages sent in this room (the audit trail's count; never their text).
    chats: u64,
}

impl Joined {
    fn new(room_id: RoomId, session_id: String, user_name: String, view: Arc<RoomView>) -> Joined {
        Joined { room_id, session_id, user_name, joined_at_ms: 0, view, waiting: false, media: None, chats: 0 }
    }
}

pub struct ConnState {
    id: ConnId,
    identity: Identity,
    meta: ClientMeta,
    out: Outbound,
    /// Frames read from the socket that wait for this actor (see `Intake`).
    intake: Arc<Intake>,
    ctx: Arc<NodeCtx>,
    room: Option<Joined>,
    /// The attached socket (0: the seat is away).
    socket: u64,
    /// The generation of the last resume token issued; only it resumes.
    generation: u64,
    /// Counts the times the seat went away (to match `Expire`).
    aways: u64,
    /// Why the seat ends once its socket closes (a final disconnect under way).
    ending: Option<LeaveReason>,
    /// The seat went to another node (or never arrived): leave nothing behind.
    moved: bool,
    /// Arriving from another node, until the first `Resume` completes the claim.
    arriving: bool,
    /// Chat messages this seat may still send (`limits.chat_per_minute`); made at the first
    /// chat message (boxed: most seats never chat, and the state lives as long as the seat).
    chat_budget: Option<Box<call::ChatBudget>>,
    /// A hand-over asked for while the seat's socket was still attached, held until that
    /// socket closes (or `HAND_OVER_HOLD` passes). Boxed, as it is rare.
    held_hand_over: Option<Box<HeldHandOver>>,
}

/// A hand-over request and where its answer goes.
type HeldHandOver = (HandOverRequest, life::HandOverReply);

/// How long a hand-over waits for the seat's old socket to close. The client sent its last
/// frames on that socket before it resumed elsewhere; the socket task hands them to this
/// actor before its `SocketClosed`, so waiting for the close relays them instead of losing
/// them with the actor. Well under the asking node's 1.5 s hand-over timeout (cluster's
/// `HAND_OVER_TIMEOUT`); a socket that never closes (a dead link the node has not noticed)
/// only delays the resume by this much.
const HAND_OVER_HOLD: Duration = Duration::from_millis(500);

impl ConnState {
    fn error(&self, code: ErrorCode, details: Value) {
        telemetry::ws_error(code.as_str());
        self.out.send(ServerFrame::error(code, details));
    }

    fn audit(&self, session_id: &str, action: AuditAction, metadata: Value) {
        self.ctx.audit(session_id, &self.identity.user_id, action, metadata, &self.meta);
    }

    async fn rooms_call<T: Send + 'static>(&self, f: impl FnOnce(RpcReplyPort<T>) -> RoomsMsg) -> Option<T> {
        self.ctx.rooms().call(f, Some(Duration::from_secs(10))).await.ok()?.success_or(()).ok()
    }

    /// Leaves the current room. A room actor that is failing and being restarted drops the
    /// request, so this retries (bounded) until a live room actor confirms the leave.
    async fn leave_current(&mut self, reason: LeaveReason) {
        let Some(j) = self.room.take() else { return };
        self.ctx.conns.set_room(&self.id, None);
        if j.chats > 0 {
            let meta = json!({ "roomId": &*j.room_id, "socketId": &*self.id, "messages": j.chats });
            self.audit(&j.session_id, AuditAction::Chat, meta);
        }
        for _ in 0..ROOM_RETRIES {
            match self.ctx.room(&j.room_id) {
                Some(room) => {
                    let conn_id = self.id.clone();
                    let done =
                        room.call(|r| RoomMsg::Leave { conn_id, reason, reply: Some(r) }, Some(CALL_TIMEOUT)).await;
                    if matches!(done, Ok(ractor::rpc::CallResult::Success(()))) {
                        return;
                    }
                }
                // No room actor here (it stopped for good): nobody else will announce us, so
                // at least take us out of shared membership.
                None => break,
            }
            tokio::time::sleep(ROOM_RETRY_PAUSE).await;
        }
        if let Err(e) = self.ctx.ports.membership.leave(&j.room_id, std::slice::from_ref(&self.id), reason).await {
            tracing::warn!(room = %j.room_id, error = %e, "leave without a room actor failed");
        }
    }

    fn relay(&self, kind: RelayKind, payload: &str, to: &str, received: Instant) {
        let Some(j) = self.room.as_ref().filter(|j| !j.waiting) else {
            return self.error(ErrorCode::PeerNotFound, json!({ "to": to }));
        };
        // The frame is built only once the target is known to be in the room.
        let routed = j.view.with_route(to, |route| match route {
            Route::Local(out) => {
                out.send(relay_frame(kind, payload, &self.id));
            }
            Route::Remote(node) => {
                let delivery = Delivery { room: &j.room_id, from: &self.id, to };
                if let Err(e) = self.ctx.ports.bus.deliver(node, delivery, relay_frame(kind, payload, &self.id)) {
                    // Debug, not warn: a full queue fails every frame of a flood, and the bus
                    // counts each drop (`signalgrid_nats_publish_dropped_total`).
                    tracing::debug!(error = %e, "cross-node relay failed");
                }
            }
        });
        match routed {
            Some(()) => telemetry::relayed(kind, received.elapsed()),
            None => self.error(ErrorCode::PeerNotFound, json!({ "to": to })),
        }
    }

    async fn call_ended(&mut self, room_id: String) {
        telemetry::ws_event("call-ended");
        let Some(j) = self.room.as_ref().filter(|j| *j.room_id == *room_id && !j.waiting) else {
            return self.error(ErrorCode::Forbidden, room_details(&room_id));
        };
        let (session_id, rid) = (j.session_id.clone(), j.room_id.clone());
        let at = now_ms();
        let duration = match self.ctx.ports.store.mark_ended(&session_id, at).await {
            Ok(Some(EndOutcome::Ended(s))) => {
                let duration = s.call_duration.unwrap_or(0);
                if s.video_call_ended == Some(at) {
                    let (store, by) = (&self.ctx.ports.store, Some(self.identity.user_id.as_str()));
                    self.ctx.events.call_ended(store, &session_id, Some(&rid), at, duration, by);
                }
                duration
            }
            Ok(Some(EndOutcome::NotStarted)) => return self.error(ErrorCode::CallNotStarted, room_details(&rid)),
            Ok(None) => return self.error(ErrorCode::SessionNotFound, room_details(&rid)),
            Err(e) => {
                tracing::error!(session = %session_id, error = %e, "recording call end failed");
                return self.error(ErrorCode::StoreUnavailable, room_details(&rid));
            }
        };
        self.audit(
            &session_id,
            AuditAction::CallEnd,
            json!({ "roomId": &*rid, "duration": duration, "via": "call-ended" }),
        );
        let frame = ServerFrame::CallEnded { room_id: &rid, ended_by: &self.identity.user_id, duration }.encode();
        if let Some(room) = self.ctx.room(&rid) {
            let _ = room.send_message(RoomMsg::Broadcast { frame, except: None });
        }
    }

    /// Audits a removal by an operator (`kicked`) or by the session's rules (`ejected`).
    fn audit_removal(&self, reason: LeaveReason, code: ErrorCode) {
        let action = match reason {
            LeaveReason::Kicked | LeaveReason::RoomClosed => AuditAction::Kicked,
            LeaveReason::Ejected => AuditAction::Ejected,
            _ => return,
        };
        if let Some(j) = &self.room {
            let meta = json!({ "roomId": &*j.room_id, "socketId": &*self.id, "code": code.as_str() });
            self.audit(&j.session_id, action, meta);
        }
    }

    /// A client event that waits on the store or the room (a relay waits on nothing, and is
    /// handled without this future).
    async fn room_event(&mut self, event: ClientEvent, received: Instant) {
        match event {
            ClientEvent::Relay { kind, payload, to } => self.relay(kind, payload.get(), &to, received),
            ClientEvent::JoinRoom { room_id, user_name } => self.join(room_id, user_name).await,
            ClientEvent::LeaveRoom { room_id } => {
                telemetry::ws_event("leave-room");
                if self.room.as_ref().is_some_and(|j| *j.room_id == *room_id) {
                    self.leave_current(LeaveReason::Left).await;
                }
            }
            ClientEvent::CallEnded { room_id } => self.call_ended(room_id).await,
            ClientEvent::Ack { seq } => self.out.ack(seq),
            ClientEvent::ChatMessage { text } => self.chat(&text, received),
            ClientEvent::MediaState(state) => self.media_state(state).await,
            ClientEvent::Admit { socket_id } => self.settle(socket_id, true).await,
            ClientEvent::Deny { socket_id } => self.settle(socket_id, false).await,
        }
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnMsg;
    type State = ConnState;
    type Arguments = ConnArgs;

    async fn pre_start(&self, me: ActorRef<ConnMsg>, a: ConnArgs) -> Result<ConnState, ActorProcessingErr> {
        a.ctx.conns.insert(a.id.clone(), a.identity.user_id.clone(), a.out.clone(), me);
        telemetry::connections(1.0);
        let (id, identity, meta, out, intake, ctx) = (a.id, a.identity, a.meta, a.out, a.intake, a.ctx);
        let mut st = ConnState {
            id,
            identity,
            meta,
            out,
            intake,
            ctx,
            room: None,
            socket: 0,
            generation: 0,
            aways: 0,
            ending: None,
            moved: false,
            arriving: false,
            chat_budget: None,
            held_hand_over: None,
        };
        match a.origin {
            Origin::New { failed } => {
                st.socket = st.out.socket();
                let resume = failed.map(|_| Resumed { resumed: false, lost: false });
                let hello = st.hello(resume);
                st.out.send_raw(hello);
                if let Some(f) = failed {
                    st.error(ErrorCode::ResumeFailed, json!({ "reason": f.as_str() }));
                }
            }
            Origin::Arriving => st.arriving = true,
        }
        Ok(st)
    }

    async fn handle(&self, me: ActorRef<ConnMsg>, msg: ConnMsg, st: &mut ConnState) -> Result<(), ActorProcessingErr> {
        match msg {
            // The edge has charged the frame to the client's budget (see `budget`).
            ConnMsg::Client { event, received, len } => {
                match event {
                    ClientEvent::Relay { kind, payload, to } => st.relay(kind, payload.get(), &to, received),
                    // Boxed: the actor's processing loop lives as long as the connection, and
                    // would otherwise reserve, while idle, room for the largest await of a join.
                    other => Box::pin(st.room_event(other, received)).await,
                }
                st.intake.handled(len);
            }
            ConnMsg::Replaced { room_id } => {
                if st.room.as_ref().is_some_and(|j| j.room_id == room_id) {
                    st.room = None;
                    st.ctx.conns.set_room(&st.id, None);
                }
                st.error(ErrorCode::SessionReplaced, room_details(&room_id));
                st.end(&me, LeaveReason::Replaced, close::REPLACED, "session replaced");
            }
            ConnMsg::Admitted { room_id } => Box::pin(st.admitted(&room_id)).await,
            ConnMsg::Denied { room_id } => {
                if st.room.as_ref().is_some_and(|j| j.room_id == room_id && j.waiting) {
                    st.room = None;
                    st.ctx.conns.set_room(&st.id, None);
                    st.error(ErrorCode::AdmissionDenied, room_details(&room_id));
                }
            }
            ConnMsg::Disconnect { code: ErrorCode::NodeDraining, close_code } => {
                // Not the seat's end: its client resumes on another node.
                st.out.send_raw(ServerFrame::error(ErrorCode::NodeDraining, json!({})));
                st.out.close(close_code, ErrorCode::NodeDraining.as_str());
            }
            ConnMsg::Disconnect { code, close_code } => {
                st.error(code, json!({}));
                let reason = match code {
                    ErrorCode::RoomClosed => LeaveReason::RoomClosed,
                    ErrorCode::Kicked => LeaveReason::Kicked,
                    // The session's rules removed it (section 8: time window, PATCH).
                    ErrorCode::OutsideTimeWindow
                    | ErrorCode::PaymentRequired
                    | ErrorCode::SessionClosed
                    | ErrorCode::Forbidden => LeaveReason::Ejected,
                    _ => LeaveReason::Left,
                };
                st.audit_removal(reason, code);
                st.end(&me, reason, close_code, code.as_str());
            }
            ConnMsg::SocketClosed { socket, clean } => {
                if socket == st.socket && st.ending.is_none() {
                    if let Some((req, reply)) = st.held_hand_over.take().map(|h| *h) {
                        // Every frame its client sent on it has been handled: the seat moves.
                        st.out.detach(socket);
                        st.socket = 0;
                        st.complete_hand_over(&me, req, reply);
                        return Ok(());
                    }
                }
                if clean || st.ending.is_some() {
                    if socket == st.socket || st.ending.is_some() {
                        me.stop(Some("socket closed".into()));
                    }
                } else if st.out.detach(socket) {
                    Box::pin(st.go_away(&me)).await;
                }
            }
            ConnMsg::Resume(req) => Box::pin(st.resume(req)).await,
            ConnMsg::HandOver { req, reply } => {
                let req = *req;
                if st.socket != 0 && st.held_hand_over.is_none() {
                    let socket = st.socket;
                    st.held_hand_over = Some(Box::new((req, reply)));
                    me.send_after(HAND_OVER_HOLD, move || ConnMsg::HandOverDue { socket });
                } else {
                    st.complete_hand_over(&me, req, reply);
                }
            }
            ConnMsg::HandOverDue { socket } => {
                if st.socket == socket {
                    if let Some((req, reply)) = st.held_hand_over.take().map(|h| *h) {
                        st.complete_hand_over(&me, req, reply);
                    }
                }
            }
            ConnMsg::Expire { away } => {
                if st.socket == 0 && st.aways == away && !st.arriving {
                    st.ending = Some(LeaveReason::Timeout);
                    me.stop(Some("resume window ran out".into()));
                }
            }
            ConnMsg::InjectFault => panic!("injected fault in connection {}", st.id),
        }
        if st.arriving && st.moved {
            // A claim that did not complete.
            me.stop(Some("claim failed".into()));
        }
        Ok(())
    }

    async fn post_stop(&self, _me: ActorRef<ConnMsg>, st: &mut ConnState) -> Result<(), ActorProcessingErr> {
        if st.socket == 0 && !st.moved && !st.arriving {
            telemetry::seats_away(-1.0);
        }
        // A seat left behind by a node that stops while draining stays in shared
        // membership: its client resumes on another node, which claims it.
        let keep = st.moved || st.arriving || (st.ending.is_none() && st.ctx.is_draining());
        if !keep {
            let reason = st.ending.unwrap_or(LeaveReason::Left);
            Box::pin(st.leave_current(reason)).await;
            st.ctx.conns.gone(st.id.clone(), Gone::Left(reason));
        }
        st.ctx.conns.remove(&st.id);
        telemetry::connections(-1.0);
        Ok(())
    }
}

mod call;
mod join;
mod life;
