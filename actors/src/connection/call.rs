//! The call itself, seat side (PROTOCOL.md section 8): chat, media state, and a host's
//! admit / deny of a waiting client.
//!
//! Chat and media state fan out like relays: through the room's routing view straight to
//! each member's seat buffer (a member on another node: one delivery to that node's inbox,
//! which keeps the per-sender order and holds the frame behind `user-joined`). So a
//! sender's chat lines reach every member in the order it sent them, and in order with its
//! relays. Waiting clients have no route, so they hear nothing of the room.
//!
//! Chat text is never stored or logged: this module hands it only to seat buffers and the
//! bus. The audit trail gets one `chat` entry per participant and room, with the number of
//! messages sent, when the participant leaves the room (`ConnState::leave_current`).

use std::time::Instant;

use serde_json::json;

use super::{ConnState, CALL_TIMEOUT};
use crate::errors::ErrorCode;
use crate::identity::Role;
use crate::msg::RoomMsg;
use crate::ports::Delivery;
use crate::protocol::{MediaState, ServerFrame};
use crate::routing::Route;
use crate::session::{now_ms, AuditAction};
use crate::{rules, telemetry};

/// A seat's chat budget: `limits.chat_per_minute`, sustained and at once.
pub(super) type ChatBudget = governor::DefaultDirectRateLimiter;

pub(super) fn chat_budget(per_minute: u32) -> ChatBudget {
    let n = std::num::NonZeroU32::new(per_minute.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(governor::Quota::per_minute(n))
}

impl ConnState {
    /// Whether this seat's user hosts (may admit and deny): psychologists and admins.
    pub(super) fn is_host(&self) -> bool {
        matches!(self.identity.role, Role::Psychologist | Role::Admin)
    }

    /// Hands `frame` to every other member of the seat's room, on every node.
    fn fan_out(&self, frame: &str) {
        let Some(j) = &self.room else { return };
        j.view.for_each_other(&self.id, |to, route| match route {
            Route::Local(out) => {
                out.send(frame.to_owned());
            }
            Route::Remote(node) => {
                let d = Delivery { room: &j.room_id, from: &self.id, to };
                if let Err(e) = self.ctx.ports.bus.deliver(node, d, frame.to_owned()) {
                    tracing::debug!(error = %e, "cross-node fan-out failed");
                }
            }
        });
    }

    /// `chat-message {text}` (length already checked by the decoder).
    pub(super) fn chat(&mut self, text: &str, received: Instant) {
        telemetry::ws_event("chat-message");
        let Some(j) = self.room.as_ref().filter(|j| !j.waiting) else {
            return self.error(ErrorCode::Forbidden, json!({ "event": "chat-message" }));
        };
        let per_minute = self.ctx.limits.chat_per_minute;
        let budget = self.chat_budget.get_or_insert_with(|| Box::new(chat_budget(per_minute)));
        if let Err(not_until) = budget.check() {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            let retry = wait.as_millis() as u64;
            return self.error(ErrorCode::RateLimited, json!({ "event": "chat-message", "retryAfterMs": retry }));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sent_at = now_ms().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let frame = ServerFrame::ChatMessage {
            id: &id,
            from: &self.id,
            user_id: &self.identity.user_id,
            user_name: &j.user_name,
            text,
            sent_at: &sent_at,
        }
        .encode();
        self.fan_out(&frame);
        if let Some(j) = self.room.as_mut() {
            j.chats += 1;
        }
        self.out.send(ServerFrame::ChatSent { id: &id }.encode());
        tracing::trace!(conn = %self.id, latency_us = received.elapsed().as_micros() as u64, "chat message handed on");
    }

    /// `media-state`: remembered in the room (shared membership), then told to the others.
    /// A waiting client's state is remembered only (the others learn it when it is admitted).
    pub(super) async fn media_state(&mut self, state: MediaState) {
        telemetry::ws_event("media-state");
        let Some(j) = self.room.as_mut() else {
            return self.error(ErrorCode::Forbidden, json!({ "event": "media-state" }));
        };
        j.media = Some(state);
        let (room_id, waiting) = (j.room_id.clone(), j.waiting);
        if let Some(room) = self.ctx.room(&room_id) {
            let conn_id = self.id.clone();
            let _ = room.call(|reply| RoomMsg::Media { conn_id, media: state, reply }, Some(CALL_TIMEOUT)).await;
        }
        if !waiting {
            self.fan_out(&ServerFrame::MediaState { from: &self.id, state }.encode());
        }
    }

    /// `admit` / `deny` of waiting seat `target`, by a host in the room.
    pub(super) async fn settle(&mut self, target: String, admit: bool) {
        telemetry::ws_event(if admit { "admit" } else { "deny" });
        let details = json!({ "socketId": &target });
        let Some(j) = self.room.as_ref().filter(|j| !j.waiting && self.is_host() && *target != *self.id) else {
            return self.error(ErrorCode::NotHost, details);
        };
        let (room_id, session_id) = (j.room_id.clone(), j.session_id.clone());
        // The room's capacity, from the session's type (as the join used).
        let capacity = match self.ctx.ports.store.session(&session_id).await {
            Ok(Some(s)) => rules::capacity(s.session_type, &self.ctx.policy),
            Ok(None) => return self.error(ErrorCode::SessionNotFound, details),
            Err(e) => {
                tracing::error!(session = %session_id, error = %e, "store lookup for admit failed");
                return self.error(ErrorCode::StoreUnavailable, details);
            }
        };
        let Some(room) = self.ctx.room(&room_id) else { return self.error(ErrorCode::PeerNotFound, details) };
        let conn_id: crate::ConnId = target.as_str().into();
        let res = room.call(|reply| RoomMsg::Settle { conn_id, admit, capacity, reply }, Some(CALL_TIMEOUT)).await;
        match res {
            Ok(ractor::rpc::CallResult::Success(Ok(member))) => {
                let action = if admit { AuditAction::Admitted } else { AuditAction::Denied };
                let meta = json!({ "roomId": &*room_id, "socketId": &target, "by": &self.identity.user_id });
                // The entry is about the client; who let them in (or not) is `metadata.by`.
                self.ctx.audit(&session_id, &member.user_id, action, meta, &Default::default());
            }
            Ok(ractor::rpc::CallResult::Success(Err(code))) => self.error(code, details),
            _ => self.error(ErrorCode::Internal, details),
        }
    }
}
