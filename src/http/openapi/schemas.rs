//! Schemas of the REST bodies that handlers build as JSON values (the error shape, the
//! video-call answers, the audit page, the probes). Types that exist as Rust structs
//! (`Session`, `Party`, the status enums, `AuditAction`) derive `ToSchema` where they are
//! defined; these mirror the `json!` bodies of src/http, field for field. They are never
//! built: they only describe. tests/openapi.rs (schemathesis against a live node) fails
//! when a handler's answer and its schema here part ways.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde_json::Value;
use signalgrid_actors::session::{AuditAction, Party, PaymentStatus, SessionStatus, SessionType};
use utoipa::{IntoParams, ToSchema};

/// The body of every failed REST answer (`success` is always false).
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// The contract's error code (PROTOCOL.md), e.g. `SESSION_NOT_FOUND`.
    #[schema(example = "SESSION_NOT_FOUND")]
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// Developer details, e.g. `fields` of a VALIDATION_ERROR, `retryAfterSeconds` of
    /// RATE_LIMITED, `reason` of UNAUTHORIZED.
    #[schema(value_type = Object)]
    pub details: Value,
    /// When the error was made (ISO 8601, UTC, milliseconds).
    pub timestamp: DateTime<Utc>,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: String,
}

/// `GET /api/video-calls/config`: the ICE servers for `RTCPeerConnection`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct IceConfig {
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid (only with `ice.turn_secret`).
    #[schema(nullable = false, minimum = 0)]
    pub ttl: Option<i64>,
}

/// One ICE server (`RTCIceServer`).
#[derive(ToSchema)]
pub struct IceServer {
    pub urls: String,
    /// TURN only: the static user name, or `<expiry>:<userId>` for time-limited credentials.
    #[schema(nullable = false)]
    pub username: Option<String>,
    /// TURN only.
    #[schema(nullable = false)]
    pub credential: Option<String>,
}

/// `POST /api/video-calls/generate-room/:sessionId`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct GeneratedRoom {
    /// The session's room (`meetingLink`), made on the first call and kept after.
    pub room_id: String,
    pub session_id: String,
    pub session_date: DateTime<Utc>,
    pub session_type: SessionType,
    pub participants: RoomParties,
}

/// The session's two parties.
#[derive(ToSchema)]
pub struct RoomParties {
    pub client: Party,
    pub psychologist: Party,
}

/// `GET /api/video-calls/can-join/:sessionId`: every join rule, checked without joining.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CanJoin {
    pub can_join: bool,
    /// The error code that would refuse the join (null when `canJoin`), e.g.
    /// `OUTSIDE_TIME_WINDOW`, `SESSION_NOT_FOUND`, `INVALID_SESSION_ID`.
    #[schema(required)]
    pub reason: Option<String>,
    /// Whole minutes until the session starts (0 once started); null without a session.
    #[schema(required)]
    pub minutes_until_session: Option<i64>,
}

/// `POST /api/video-calls/start/:sessionId`.
#[derive(ToSchema)]
pub struct CallStarted {
    /// `Video call started`.
    pub message: String,
    pub session: StartedSession,
}

/// The started session, in short.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct StartedSession {
    pub id: String,
    pub status: SessionStatus,
    /// When the call was first started (a second start keeps the first time).
    #[schema(required)]
    pub video_call_started: Option<DateTime<Utc>>,
}

/// `POST /api/video-calls/end/:sessionId`.
#[derive(ToSchema)]
pub struct CallEnded {
    /// `Video call ended`.
    pub message: String,
    /// The call's length in whole minutes.
    pub duration: i64,
    pub session: EndedSession,
}

/// The ended session, in short.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct EndedSession {
    pub status: SessionStatus,
    /// Minutes.
    #[schema(required)]
    pub call_duration: Option<i64>,
}

/// `POST /api/sessions` (admin): a new session. Every bad field is reported at once in
/// `details.fields` of a VALIDATION_ERROR.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct NewSessionBody {
    pub client: NewParty,
    /// Must differ from `client.id`.
    pub psychologist: NewParty,
    /// RFC 3339, e.g. `2026-11-24T10:00:00.000Z`.
    pub session_date: DateTime<Utc>,
    #[schema(minimum = 1, maximum = 1440)]
    pub duration_minutes: i64,
    pub session_type: SessionType,
    pub payment_status: PaymentStatus,
    /// `Scheduled` when absent.
    #[schema(nullable = false)]
    pub status: Option<SessionStatus>,
    /// Clients wait until a host (the psychologist, or an admin) admits them (PROTOCOL.md
    /// section 8). When absent: config `rooms.waiting_room` (false by default).
    #[schema(nullable = false)]
    pub waiting_room: Option<bool>,
}

/// One party of a new session: id and name, each with something besides white space.
#[derive(ToSchema)]
pub struct NewParty {
    #[schema(pattern = r"\S")]
    pub id: String,
    #[schema(pattern = r"\S")]
    pub name: String,
}

/// `GET /api/audit`: one page, newest first.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditEntryBody>,
    /// The `cursor` of the next page; null on the last page.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// One audit entry (also one line of the NDJSON stream).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AuditEntryBody {
    /// ISO 8601, UTC, milliseconds.
    pub timestamp: DateTime<Utc>,
    pub action: AuditAction,
    /// Null for entries about no session (an `audit_read` without a session filter).
    #[schema(required)]
    pub session_id: Option<String>,
    pub user_id: String,
    #[schema(required)]
    pub ip_address: Option<String>,
    #[schema(required)]
    pub user_agent: Option<String>,
    /// What the action carried (e.g. `via`, `duration`, `filters`).
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// `format` of `GET /api/audit`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum AuditFormat {
    /// Cursor pages (the default).
    Json,
    /// Every matching entry, one per line, `limit` and `cursor` ignored.
    Ndjson,
}

/// The filters and paging of `GET /api/audit`; an unknown parameter is a VALIDATION_ERROR.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct AuditParams {
    /// Entries of this session only (1 to 200 characters).
    #[param(min_length = 1, max_length = 200)]
    pub session_id: Option<String>,
    /// Entries by this user only (1 to 200 characters).
    #[param(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    pub action: Option<AuditAction>,
    /// Entries at or after this time (ISO 8601); not after `to`.
    pub from: Option<DateTime<Utc>>,
    /// Entries at or before this time (ISO 8601).
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page; any other value is a VALIDATION_ERROR.
    pub cursor: Option<String>,
    pub format: Option<AuditFormat>,
}

/// `GET /healthz`: the process answers.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub node_id: String,
}

/// `GET /readyz`: ready when the store answers and the node is not draining.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    /// Whether the store answered a ping.
    pub store: bool,
    pub draining: bool,
    pub node_id: String,
}

/// The body of `PATCH /api/sessions/:id`: at least one field; others are refused.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SessionPatchBody {
    #[schema(nullable = false)]
    pub payment_status: Option<PaymentStatus>,
    #[schema(nullable = false)]
    pub status: Option<SessionStatus>,
    /// RFC 3339.
    #[schema(nullable = false)]
    pub session_date: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 1440, nullable = false)]
    pub duration_minutes: Option<i64>,
    /// Clients who join from now on wait for a host to admit them (PROTOCOL.md section 8);
    /// clients already waiting keep waiting, members already in stay.
    #[schema(nullable = false)]
    pub waiting_room: Option<bool>,
}
