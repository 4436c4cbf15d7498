//! The contract's error codes: one enum, with the HTTP status and the message a person reads.
//!
//! Every failure that reaches a client (REST or WebSocket) is one of these; the edges only
//! choose the shape (full REST error object, or the WebSocket `error` frame).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    InvalidSessionId,
    SessionNotFound,
    Forbidden,
    SessionClosed,
    PaymentRequired,
    OutsideTimeWindow,
    RoomFull,
    RoomClosed,
    Kicked,
    ClusterUnavailable,
    ValidationError,
    RateLimited,
    NotFound,
    MethodNotAllowed,
    CallNotStarted,
    PeerNotFound,
    SessionReplaced,
    PayloadTooLarge,
    BadRequest,
    UnknownEvent,
    NodeDraining,
    ConnectionLimit,
    ConnectRateLimited,
    OriginNotAllowed,
    SlowConsumer,
    HeartbeatTimeout,
    ResumeFailed,
    AdmissionDenied,
    NotHost,
    StoreUnavailable,
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `ROOM_FULL`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Unauthorized => "UNAUTHORIZED",
            InvalidSessionId => "INVALID_SESSION_ID",
            SessionNotFound => "SESSION_NOT_FOUND",
            Forbidden => "FORBIDDEN",
            SessionClosed => "SESSION_CLOSED",
            PaymentRequired => "PAYMENT_REQUIRED",
            OutsideTimeWindow => "OUTSIDE_TIME_WINDOW",
            RoomFull => "ROOM_FULL",
            RoomClosed => "ROOM_CLOSED",
            Kicked => "KICKED",
            ClusterUnavailable => "CLUSTER_UNAVAILABLE",
            ValidationError => "VALIDATION_ERROR",
            RateLimited => "RATE_LIMITED",
            NotFound => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            CallNotStarted => "CALL_NOT_STARTED",
            PeerNotFound => "PEER_NOT_FOUND",
            SessionReplaced => "SESSION_REPLACED",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            BadRequest => "BAD_REQUEST",
            UnknownEvent => "UNKNOWN_EVENT",
            NodeDraining => "NODE_DRAINING",
            ConnectionLimit => "CONNECTION_LIMIT",
            ConnectRateLimited => "CONNECT_RATE_LIMITED",
            OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
            SlowConsumer => "SLOW_CONSUMER",
            HeartbeatTimeout => "HEARTBEAT_TIMEOUT",
            ResumeFailed => "RESUME_FAILED",
            AdmissionDenied => "ADMISSION_DENIED",
            NotHost => "NOT_HOST",
            StoreUnavailable => "STORE_UNAVAILABLE",
            Internal => "INTERNAL",
        }
    }

    /// The HTTP status a REST answer with this code carries.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            Unauthorized => 401,
            InvalidSessionId | ValidationError | BadRequest | UnknownEvent => 400,
            PaymentRequired => 402,
            Forbidden | OutsideTimeWindow | OriginNotAllowed | AdmissionDenied | NotHost => 403,
            SessionNotFound | NotFound | PeerNotFound => 404,
            MethodNotAllowed => 405,
            SessionClosed | RoomFull | CallNotStarted | SessionReplaced | ResumeFailed => 409,
            RoomClosed | Kicked => 410,
            PayloadTooLarge => 413,
            RateLimited => 429,
            NodeDraining | ConnectionLimit | ConnectRateLimited | StoreUnavailable | ClusterUnavailable => 503,
            SlowConsumer | HeartbeatTimeout | Internal => 500,
        }
    }

    /// A sentence for a person (the caller may replace it with a more precise one).
    pub fn default_message(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Unauthorized => "Your sign-in is missing or has expired. Please sign in again.",
            InvalidSessionId => "That session id is not valid.",
            SessionNotFound => "This session could not be found.",
            Forbidden => "You are not a participant of this session.",
            SessionClosed => "This session has been cancelled or has already ended.",
            PaymentRequired => "Payment for this session has not been confirmed yet.",
            OutsideTimeWindow => "This call is not open right now. You can join shortly before the session starts.",
            RoomFull => "This call already has all its participants.",
            RoomClosed => "This call was closed by an operator.",
            Kicked => "You were disconnected by an operator.",
            ClusterUnavailable => "The call service is reconnecting. Please try again in a moment.",
            ValidationError => "Some fields of the request are not valid.",
            RateLimited => "Too many requests. Please wait a moment and try again.",
            NotFound => "Nothing is here.",
            MethodNotAllowed => "That method is not allowed here.",
            CallNotStarted => "The call has not been started.",
            PeerNotFound => "That participant is not in your call.",
            SessionReplaced => "You joined this call from another window or device.",
            PayloadTooLarge => "The message is too large.",
            BadRequest => "The message could not be understood.",
            UnknownEvent => "Unknown event.",
            NodeDraining => "This server is restarting. Reconnecting...",
            ConnectionLimit => "The server is at its connection limit. Please try again shortly.",
            ConnectRateLimited => "Many connections are arriving at once. Reconnecting shortly...",
            OriginNotAllowed => "This page is not allowed to connect.",
            SlowConsumer => "The connection could not keep up and was closed.",
            HeartbeatTimeout => "The connection stopped answering and was closed.",
            ResumeFailed => "The call could not be resumed; joining it again.",
            AdmissionDenied => "The host did not let you into this call.",
            NotHost => "Only the session's host can do that.",
            StoreUnavailable => "The service is temporarily unavailable. Please try again.",
            Internal => "Something went wrong on our side.",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server API's failures (`control`).
impl From<&crate::control::ControlError> for ErrorCode {
    fn from(e: &crate::control::ControlError) -> ErrorCode {
        use crate::control::ControlError as E;
        use crate::ports::StoreError as S;
        match e {
            E::NotFound => ErrorCode::NotFound,
            E::Membership(_) => ErrorCode::ClusterUnavailable,
            E::Store(S::Unavailable(_)) => ErrorCode::StoreUnavailable,
            E::Store(S::Other(_)) => ErrorCode::Internal,
        }
    }
}
