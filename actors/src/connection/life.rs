//! A seat's life without a socket (PROTOCOL.md section 6): going away, the window, being
//! resumed here, handed to another node, or claimed from one.

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use serde_json::json;

use super::{ConnMsg, ConnState, Joined, ResumeRequest};
use crate::msg::RoomMsg;
use crate::outbound::SeatReader;
use crate::ports::{Delivery, HandOverRequest, HandedOver, LeaveReason, Member, SeatRoom};
use crate::protocol::{Resumed, ServerFrame};
use crate::registry::Gone;
use crate::seat::{ResumeFailure, TokenClaims};
use crate::session::AuditAction;
use crate::telemetry;

/// Where a hand-over's answer goes.
pub(super) type HandOverReply = RpcReplyPort<Result<HandedOver, ResumeFailure>>;

impl ConnState {
    /// The `connected` frame of a new socket, with a new resume token (the generation moves
    /// on: every earlier token of this seat is used up).
    pub(super) fn hello(&mut self, resume: Option<Resumed>) -> String {
        self.generation += 1;
        let claims = TokenClaims {
            conn_id: self.id.clone(),
            node_id: self.ctx.node_id.clone(),
            user_id: self.identity.user_id.clone(),
            generation: self.generation,
        };
        let token = self.ctx.resume_keys.issue(&claims);
        let l = &self.ctx.limits;
        ServerFrame::Connected {
            socket_id: &self.id,
            node_id: &self.ctx.node_id,
            heartbeat_ms: l.heartbeat_ms,
            resume_token: &token,
            resume_window_ms: l.resume_window_ms,
            resume,
        }
        .encode()
    }

    /// Ends the seat for `reason`: closes its socket with `code` (after the frames before),
    /// or stops at once when it has none.
    pub(super) fn end(&mut self, me: &ActorRef<ConnMsg>, reason: LeaveReason, code: u16, why: &'static str) {
        self.ending = Some(reason);
        if self.socket == 0 || !self.out.close(code, why) {
            me.stop(Some(why.into()));
        }
    }

    /// The socket went without a clean close: the seat keeps its place for the window and
    /// its peers hear `user-reconnecting`.
    pub(super) async fn go_away(&mut self, me: &ActorRef<ConnMsg>) {
        self.socket = 0;
        self.aways += 1;
        telemetry::seats_away(1.0);
        self.set_away(true).await;
        let away = self.aways;
        let window = Duration::from_millis(self.ctx.limits.resume_window_ms);
        me.send_after(window, move || ConnMsg::Expire { away });
    }

    /// Tells the room (and through it shared membership) that the seat is away or back.
    async fn set_away(&self, away: bool) {
        let Some(j) = &self.room else { return };
        if let Some(room) = self.ctx.room(&j.room_id) {
            let conn_id = self.id.clone();
            let _ = room.call(|reply| RoomMsg::Away { conn_id, away, reply }, Some(super::CALL_TIMEOUT)).await;
        }
    }

    /// A socket on this node resumes the seat (or completes a claim from another node).
    pub(super) async fn resume(&mut self, req: Box<ResumeRequest>) {
        let ResumeRequest { claims, last_seq, intake, started, claim, reply } = *req;
        let res = match claim {
            Some(claim) if self.arriving => self.complete_claim(*claim, last_seq).await,
            Some(_) => Err(ResumeFailure::Used),
            None => self.take_back(&claims, last_seq),
        };
        match res {
            Ok((reader, lost)) => {
                let was_away = self.socket == 0;
                self.socket = reader.socket();
                self.intake = intake;
                if was_away {
                    telemetry::seats_away(-1.0);
                    self.set_away(false).await;
                }
                telemetry::resume(if lost { "lost" } else { "resumed" });
                telemetry::resume_latency(started.elapsed());
                if let Some(j) = &self.room {
                    let meta = json!({ "roomId": &*j.room_id, "socketId": &*self.id, "lost": lost });
                    self.audit(&j.session_id.clone(), AuditAction::Resumed, meta);
                }
                let _ = reply.send(Ok(reader));
            }
            // Counted by `Node::resume`, which the failure reaches.
            Err(f) => {
                let _ = reply.send(Err(f));
            }
        }
    }

    /// The checks a resume token must pass against this seat.
    fn check(&self, claims: &TokenClaims, user_id: &str) -> Result<(), ResumeFailure> {
        if claims.user_id != user_id || self.identity.user_id != user_id {
            return Err(ResumeFailure::WrongUser);
        }
        if claims.generation != self.generation || self.ending.is_some() || self.moved {
            return Err(ResumeFailure::Used);
        }
        Ok(())
    }

    fn take_back(&mut self, claims: &TokenClaims, last_seq: u64) -> Result<(SeatReader, bool), ResumeFailure> {
        self.check(claims, &claims.user_id)?;
        // Checked before the token is used up: a failed resume changes nothing.
        self.out.check_resume(last_seq)?;
        let hello = self.hello(Some(Resumed { resumed: true, lost: false }));
        let reader = self.out.attach(last_seq, hello)?;
        Ok((reader, false))
    }

    /// Puts a seat that arrives from another node in its room here (shared membership now
    /// says this node holds it) and attaches the socket.
    async fn complete_claim(
        &mut self,
        claim: super::Claim,
        last_seq: u64,
    ) -> Result<(SeatReader, bool), ResumeFailure> {
        let super::Claim { handed, lost } = claim;
        self.arriving = false;
        self.generation = handed.generation.saturating_sub(1);
        self.out.install(handed.next_seq, handed.frames);
        if let Some(r) = handed.room {
            let mut member = r.member;
            member.node_id = self.ctx.node_id.clone();
            member.away_since_ms = None;
            let (user_name, waiting, media) = (member.user_name.clone(), member.waiting, member.media);
            let joined_at_ms = member.joined_at_ms;
            match self.enter_room(&r.room_id, member, usize::MAX, None).await {
                Ok((view, _)) => {
                    let mut j = Joined::new(r.room_id.clone(), r.session_id, user_name, view);
                    (j.waiting, j.media, j.joined_at_ms) = (waiting, media, joined_at_ms);
                    self.room = Some(j);
                    self.ctx.conns.set_room(&self.id, Some(r.room_id));
                }
                Err(code) => {
                    tracing::warn!(conn = %self.id, code = code.as_str(), "resumed seat could not take its room back");
                    self.moved = true;
                    return Err(ResumeFailure::Expired);
                }
            }
        }
        let hello = self.hello(Some(Resumed { resumed: true, lost }));
        match self.out.attach(last_seq, hello) {
            Ok(reader) => {
                // Counted away until now (see `resume`).
                telemetry::seats_away(1.0);
                Ok((reader, lost))
            }
            Err(f) => {
                self.moved = true;
                Err(f)
            }
        }
    }

    /// Answers a hand-over (see `hand_over`) and, when the seat moved, stops this actor.
    pub(super) fn complete_hand_over(&mut self, me: &ActorRef<ConnMsg>, req: HandOverRequest, reply: HandOverReply) {
        let res = self.hand_over(req);
        let moved = res.is_ok();
        let _ = reply.send(res);
        if moved {
            me.stop(Some("seat handed over".into()));
        }
    }

    /// Gives the seat to node `req.to_node`: its history, its room, and from now on every
    /// frame still sent here (forwarded over the bus until the room routes to the new node).
    pub(super) fn hand_over(&mut self, req: HandOverRequest) -> Result<HandedOver, ResumeFailure> {
        let claims = self.ctx.resume_keys.verify(&req.token)?;
        if claims.conn_id != self.id {
            return Err(ResumeFailure::Unknown);
        }
        self.check(&claims, &req.user_id)?;
        self.out.check_resume(req.last_seq)?;
        let bus = self.ctx.ports.bus.clone();
        let (to, conn) = (req.to_node.clone(), self.id.clone());
        let room = self.room.as_ref().map(|j| j.room_id.clone()).unwrap_or_else(|| Arc::from(""));
        let forward = Arc::new(move |frame: String| {
            let d = Delivery { room: &room, from: &conn, to: &conn };
            if let Err(e) = bus.deliver(&to, d, frame) {
                tracing::debug!(error = %e, "frame for a moved seat not forwarded");
            }
        });
        let (next_seq, frames) = self.out.forward(req.last_seq, forward)?;
        let room = self.room.as_ref().map(|j| SeatRoom {
            room_id: j.room_id.clone(),
            session_id: j.session_id.clone(),
            member: Member {
                conn_id: self.id.clone(),
                user_id: self.identity.user_id.clone(),
                user_name: j.user_name.clone(),
                user_role: self.identity.role.as_str().to_owned(),
                node_id: req.to_node.clone(),
                away_since_ms: None,
                media: j.media,
                waiting: j.waiting,
                joined_at_ms: j.joined_at_ms,
            },
        });
        if let Some(j) = self.room.as_mut().filter(|j| j.chats > 0) {
            // This node's count of the seat's chat messages (the new node counts on).
            let meta = json!({ "roomId": &*j.room_id, "socketId": &*self.id, "messages": j.chats });
            let session_id = j.session_id.clone();
            j.chats = 0;
            self.audit(&session_id, AuditAction::Chat, meta);
        }
        if self.socket == 0 {
            telemetry::seats_away(-1.0);
        } else {
            // The client resumed elsewhere while this socket still looked open.
            self.socket = 0;
        }
        self.moved = true;
        self.ctx.conns.gone(self.id.clone(), Gone::Moved(req.to_node.clone()));
        Ok(HandedOver { next_seq, frames, room, generation: self.generation + 1 })
    }
}
