//! Client -> server: text frame to [`ClientEvent`].

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::errors::ErrorCode;

/// Which kind of signaling payload a relay carries; also names its payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    Offer,
    Answer,
    IceCandidate,
}

impl RelayKind {
    /// The event name, e.g. `ice-candidate`.
    pub fn event(self) -> &'static str {
        match self {
            RelayKind::Offer => "offer",
            RelayKind::Answer => "answer",
            RelayKind::IceCandidate => "ice-candidate",
        }
    }

    /// The payload's field name inside `data`.
    pub fn field(self) -> &'static str {
        match self {
            RelayKind::Offer => "offer",
            RelayKind::Answer => "answer",
            RelayKind::IceCandidate => "candidate",
        }
    }

    pub const ALL: [RelayKind; 3] = [RelayKind::Offer, RelayKind::Answer, RelayKind::IceCandidate];
}

/// A decoded client event.
#[derive(Debug)]
pub enum ClientEvent {
    JoinRoom {
        room_id: String,
        user_name: Option<String>,
    },
    /// offer / answer / ice-candidate: `payload` is the client's JSON, untouched.
    Relay {
        kind: RelayKind,
        payload: Box<RawValue>,
        to: String,
    },
    LeaveRoom {
        room_id: String,
    },
    /// The client's `duration` is advisory and ignored.
    CallEnded {
        room_id: String,
    },
    /// The client has processed every frame up to `seq` (PROTOCOL.md section 6).
    Ack {
        seq: u64,
    },
    /// A chat line for the room: 1 to [`CHAT_MAX_CHARS`] Unicode code points (checked here).
    ChatMessage {
        text: String,
    },
    /// The sender's microphone, camera and screen share: on (true) or off.
    MediaState(MediaState),
    /// A host lets waiting seat `socket_id` in.
    Admit {
        socket_id: String,
    },
    /// A host turns waiting seat `socket_id` away.
    Deny {
        socket_id: String,
    },
}

/// Longest chat message, in Unicode code points (PROTOCOL.md section 10).
pub const CHAT_MAX_CHARS: usize = 2000;

/// A participant's media: whether audio, video and screen sharing are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
pub struct MediaState {
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
}

/// Why a frame was refused; the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not a JSON object with an event: {0}")]
    Malformed(String),
    #[error("{event}: {reason}")]
    BadData { event: &'static str, reason: String },
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Malformed(_) | DecodeError::BadData { .. } => ErrorCode::BadRequest,
            DecodeError::UnknownEvent(_) => ErrorCode::UnknownEvent,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinData {
    room_id: String,
    #[serde(default)]
    user_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomData {
    room_id: String,
}

#[derive(Deserialize)]
struct ChatData {
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SocketData {
    socket_id: String,
}

#[derive(Deserialize)]
struct AckData {
    seq: u64,
}

#[derive(Deserialize)]
struct OfferData<'a> {
    #[serde(borrow)]
    offer: &'a RawValue,
    to: String,
}
#[derive(Deserialize)]
struct AnswerData<'a> {
    #[serde(borrow)]
    answer: &'a RawValue,
    to: String,
}
#[derive(Deserialize)]
struct CandidateData<'a> {
    #[serde(borrow)]
    candidate: &'a RawValue,
    to: String,
}

fn data<'a, T: Deserialize<'a>>(event: &'static str, raw: Option<&'a RawValue>) -> Result<T, DecodeError> {
    let text = raw.map(RawValue::get).unwrap_or("{}");
    serde_json::from_str(text).map_err(|e| DecodeError::BadData { event, reason: e.to_string() })
}

fn non_empty(event: &'static str, field: &str, v: String) -> Result<String, DecodeError> {
    if v.is_empty() {
        Err(DecodeError::BadData { event, reason: format!("{field} must not be empty") })
    } else {
        Ok(v)
    }
}

/// Decodes one text frame.
pub fn decode(frame: &str) -> Result<ClientEvent, DecodeError> {
    let env: Envelope = serde_json::from_str(frame).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let relay = |kind: RelayKind, payload: &RawValue, to: String| {
        Ok(ClientEvent::Relay { kind, payload: payload.to_owned(), to: non_empty(kind.event(), "to", to)? })
    };
    match env.event.as_ref() {
        "offer" => {
            let d: OfferData = data("offer", env.data)?;
            relay(RelayKind::Offer, d.offer, d.to)
        }
        "answer" => {
            let d: AnswerData = data("answer", env.data)?;
            relay(RelayKind::Answer, d.answer, d.to)
        }
        "ice-candidate" => {
            let d: CandidateData = data("ice-candidate", env.data)?;
            relay(RelayKind::IceCandidate, d.candidate, d.to)
        }
        "join-room" => {
            let d: JoinData = data("join-room", env.data)?;
            Ok(ClientEvent::JoinRoom {
                room_id: non_empty("join-room", "roomId", d.room_id)?,
                user_name: d.user_name.filter(|n| !n.trim().is_empty()),
            })
        }
        "leave-room" => {
            let d: RoomData = data("leave-room", env.data)?;
            Ok(ClientEvent::LeaveRoom { room_id: d.room_id })
        }
        "call-ended" => {
            let d: RoomData = data("call-ended", env.data)?;
            Ok(ClientEvent::CallEnded { room_id: d.room_id })
        }
        "ack" => {
            let d: AckData = data("ack", env.data)?;
            Ok(ClientEvent::Ack { seq: d.seq })
        }
        "chat-message" => {
            let d: ChatData = data("chat-message", env.data)?;
            let n = d.text.chars().count();
            if n == 0 || n > CHAT_MAX_CHARS {
                let reason = format!("text must be 1 to {CHAT_MAX_CHARS} characters, not {n}");
                return Err(DecodeError::BadData { event: "chat-message", reason });
            }
            Ok(ClientEvent::ChatMessage { text: d.text })
        }
        "media-state" => Ok(ClientEvent::MediaState(data("media-state", env.data)?)),
        "admit" => {
            let d: SocketData = data("admit", env.data)?;
            Ok(ClientEvent::Admit { socket_id: non_empty("admit", "socketId", d.socket_id)? })
        }
        "deny" => {
            let d: SocketData = data("deny", env.data)?;
            Ok(ClientEvent::Deny { socket_id: non_empty("deny", "socketId", d.socket_id)? })
        }
        other => Err(DecodeError::UnknownEvent(other.chars().take(64).collect())),
    }
}
