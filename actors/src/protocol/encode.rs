//! Server -> client: events as JSON text.

use serde::Serialize;
use serde_json::json;

use super::{MediaState, RelayKind};
use crate::errors::ErrorCode;
use crate::ports::LeaveReason;

/// How a resume attempt went, as `connected` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// The seat was taken back (same `socketId`).
    pub resumed: bool,
    /// Frames addressed to the seat may be gone (its node died).
    pub lost: bool,
}

/// A room member as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub socket_id: String,
    pub user_id: String,
    pub user_name: String,
    pub user_role: String,
    /// The member's last `media-state`, once it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_state: Option<MediaState>,
}

/// A client in the waiting room, as hosts see it (`participant-waiting`,
/// `room-joined.waiting`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiter {
    pub socket_id: String,
    pub user_id: String,
    pub user_name: String,
}

/// Server events other than relays (those use [`relay_frame`]).
pub enum ServerFrame<'a> {
    /// The first frame of every socket (not numbered). `resume` is set when the client asked
    /// to resume (PROTOCOL.md section 6).
    Connected {
        socket_id: &'a str,
        node_id: &'a str,
        heartbeat_ms: u64,
        resume_token: &'a str,
        resume_window_ms: u64,
        resume: Option<Resumed>,
    },
    /// `waiting`: the waiting list, sent to hosts only (None for everyone else).
    RoomJoined {
        room_id: &'a str,
        participants: &'a [Participant],
        waiting: Option<&'a [Waiter]>,
    },
    /// To a client who must wait for a host: `join-room` put it in the waiting room.
    Waiting {
        room_id: &'a str,
    },
    /// To hosts: a client waits to be admitted.
    ParticipantWaiting(&'a Waiter),
    /// A chat line from member `from` (never to its sender). `sent_at`: ISO 8601.
    ChatMessage {
        id: &'a str,
        from: &'a str,
        user_id: &'a str,
        user_name: &'a str,
        text: &'a str,
        sent_at: &'a str,
    },
    /// To the sender of a chat line: it was handed on under `id`.
    ChatSent {
        id: &'a str,
    },
    /// Member `from`'s media changed (never to its sender).
    MediaState {
        from: &'a str,
        state: MediaState,
    },
    UserJoined(&'a Participant),
    UserLeft {
        socket_id: &'a str,
        user_id: &'a str,
        reason: LeaveReason,
    },
    /// A member's seat lost its socket and waits for a resume.
    UserReconnecting {
        socket_id: &'a str,
        user_id: &'a str,
    },
    /// A member's seat resumed.
    UserReconnected {
        socket_id: &'a str,
        user_id: &'a str,
    },
    CallEnded {
        room_id: &'a str,
        ended_by: &'a str,
        duration: i64,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        details: serde_json::Value,
    },
    /// The session's join window ends in `minutes_left` whole minutes (rounded up); at its
    /// end the members are removed (PROTOCOL.md section 8).
    SessionEnding {
        minutes_left: i64,
    },
}

impl ServerFrame<'_> {
    /// Encodes to the `{"event","data"}` text.
    pub fn encode(&self) -> String {
        let (event, data) = match self {
            ServerFrame::Connected { socket_id, node_id, heartbeat_ms, resume_token, resume_window_ms, resume } => {
                let mut d = json!({
                    "socketId": socket_id,
                    "nodeId": node_id,
                    "heartbeatMs": heartbeat_ms,
                    "resumeToken": resume_token,
                    "resumeWindowMs": resume_window_ms,
                });
                if let Some(r) = resume {
                    d["resumed"] = json!(r.resumed);
                    d["lost"] = json!(r.lost);
                }
                ("connected", d)
            }
            ServerFrame::RoomJoined { room_id, participants, waiting } => {
                let mut d = json!({"roomId": room_id, "participants": participants});
                if let Some(w) = waiting {
                    d["waiting"] = json!(w);
                }
                ("room-joined", d)
            }
            ServerFrame::Waiting { room_id } => ("waiting", json!({"roomId": room_id})),
            ServerFrame::ParticipantWaiting(w) => ("participant-waiting", json!(w)),
            ServerFrame::ChatMessage { id, from, user_id, user_name, text, sent_at } => (
                "chat-message",
                json!({"id": id, "from": from, "userId": user_id, "userName": user_name, "text": text, "sentAt": sent_at}),
            ),
            ServerFrame::ChatSent { id } => ("chat-sent", json!({"id": id})),
            ServerFrame::MediaState { from, state } => (
                "media-state",
                json!({"from": from, "audio": state.audio, "video": state.video, "screen": state.screen}),
            ),
            ServerFrame::UserJoined(p) => ("user-joined", json!(p)),
            ServerFrame::UserLeft { socket_id, user_id, reason } => {
                ("user-left", json!({"socketId": socket_id, "userId": user_id, "reason": reason.as_str()}))
            }
            ServerFrame::UserReconnecting { socket_id, user_id } => {
                ("user-reconnecting", json!({"socketId": socket_id, "userId": user_id}))
            }
            ServerFrame::UserReconnected { socket_id, user_id } => {
                ("user-reconnected", json!({"socketId": socket_id, "userId": user_id}))
            }
            ServerFrame::CallEnded { room_id, ended_by, duration } => {
                ("call-ended", json!({"roomId": room_id, "endedBy": ended_by, "duration": duration}))
            }
            ServerFrame::Error { code, message, details } => {
                ("error", json!({"message": message, "code": code.as_str(), "details": details}))
            }
            ServerFrame::SessionEnding { minutes_left } => ("session-ending", json!({"minutesLeft": minutes_left})),
        };
        json!({"event": event, "data": data}).to_string()
    }

    /// An `error` frame with the code's default message.
    pub fn error(code: ErrorCode, details: serde_json::Value) -> String {
        ServerFrame::Error { code, message: code.default_message(), details }.encode()
    }
}

/// Encodes a relay (`offer`/`answer`/`ice-candidate`) around the client's raw payload, with
/// `from`. `from` must be a JSON-safe id (ours are hex); the payload is copied verbatim.
pub fn relay_frame(kind: RelayKind, payload: &str, from: &str) -> String {
    debug_assert!(from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let event = kind.event();
    let field = kind.field();
    // Room for the `"seq":N` the seat's buffer adds.
    let mut s = String::with_capacity(64 + event.len() + field.len() + payload.len() + from.len());
    s.push_str("{\"event\":\"");
    s.push_str(event);
    s.push_str("\",\"data\":{\"");
    s.push_str(field);
    s.push_str("\":");
    s.push_str(payload);
    s.push_str(",\"from\":\"");
    s.push_str(from);
    s.push_str("\"}}");
    s
}
