//! The server API's rooms (PROTOCOL.md sections 7 and 10), admin only, any node answering
//! for the whole cluster (`signalgrid_actors::control`):
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/rooms` | `200 [RoomSummary]`: rooms with members, ordered by room id |
//! | `GET /api/rooms/:roomId` | `200 RoomDetails`; `404 NOT_FOUND` when it has no members |
//! | `DELETE /api/rooms/:roomId/participants/:socketId` | `200 {removed: socketId}`; `404 NOT_FOUND` |
//! | `POST /api/rooms/:roomId/close` | `200 {closed: roomId, removed: n}`; `404 NOT_FOUND` |
//!
//! Non-admins get `403 FORBIDDEN`; a bad token `401 UNAUTHORIZED`. The request and response
//! types are named structs so that the OpenAPI document can describe them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signalgrid_actors::control::{ControlError, ParticipantState, RoomControl, RoomInfo};
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::ports::Member;
use warp::reply::Response;

use super::context::{ok, Ctx};
use super::error::ApiError;
#[allow(unused_imports)] // named in the `utoipa::path` attributes
use super::openapi::schemas::ErrorBody;

/// A participant of a room.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(rename_all = "camelCase")]
pub struct RoomParticipant {
    pub socket_id: String,
    pub user_id: String,
    pub user_name: String,
    /// `client`, `psychologist` or `admin`.
    pub user_role: String,
    /// The node holding the participant's seat.
    pub node_id: String,
    /// `joined`; `reconnecting` while its seat waits for a resume; `waiting` for a client in
    /// the waiting room, not yet admitted.
    pub state: ParticipantState,
}

/// A room as `GET /api/rooms/:roomId` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(rename_all = "camelCase")]
pub struct RoomDetails {
    pub room_id: String,
    /// The session whose `meetingLink` the room is; null if the store has none.
    pub session_id: Option<String>,
    pub participants: Vec<RoomParticipant>,
}

/// A room as `GET /api/rooms` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(rename_all = "camelCase")]
pub struct RoomSummary {
    pub room_id: String,
    pub session_id: Option<String>,
    pub participants: Vec<RoomParticipant>,
    /// When the call in this room started: its first join (the session's
    /// `videoCallStarted`); null if not recorded.
    pub created_at: Option<DateTime<Utc>>,
}

/// `DELETE /api/rooms/:roomId/participants/:socketId` answers this.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(rename_all = "camelCase")]
pub struct Removed {
    /// The socket id removed.
    pub removed: String,
}

/// `POST /api/rooms/:roomId/close` answers this.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(rename_all = "camelCase")]
pub struct Closed {
    pub closed: String,
    /// How many participants were removed.
    pub removed: usize,
}

impl From<&Member> for RoomParticipant {
    fn from(m: &Member) -> RoomParticipant {
        RoomParticipant {
            socket_id: m.conn_id.to_string(),
            user_id: m.user_id.clone(),
            user_name: m.user_name.clone(),
            user_role: m.user_role.clone(),
            node_id: m.node_id.to_string(),
            state: ParticipantState::of(m),
        }
    }
}

/// Every member, waiting clients included (state `waiting`, PROTOCOL.md section 7).
fn participants(r: &RoomInfo) -> Vec<RoomParticipant> {
    r.members.iter().map(RoomParticipant::from).collect()
}

fn control_error(e: ControlError) -> ApiError {
    if !matches!(e, ControlError::NotFound) {
        tracing::warn!(error = %e, "server API request failed");
    }
    ApiError::new(ErrorCode::from(&e))
}

/// The caller, who must be an admin (`403 FORBIDDEN` otherwise).
fn admin(ctx: &Ctx) -> Result<RoomControl, ApiError> {
    let who = ctx.caller()?;
    if !who.is_admin() {
        return Err(ApiError::new(ErrorCode::Forbidden).message("Only an admin may use the server API."));
    }
    Ok(RoomControl::new(ctx.app.node.ctx().clone()))
}

fn not_found(what: serde_json::Value) -> ApiError {
    ApiError::new(ErrorCode::NotFound).details(what)
}

/// `GET /api/rooms`.
#[utoipa::path(
    get,
    path = "/api/rooms",
    operation_id = "listRooms",
    tag = "rooms",
    responses(
        (status = 200, description = "Every room with members, in the whole cluster, ordered by room id.", body = Vec<RoomSummary>),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "CLUSTER_UNAVAILABLE or STORE_UNAVAILABLE: shared membership or the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn list(ctx: Ctx) -> Response {
    let res = async {
        let control = admin(&ctx)?;
        let rooms = control.rooms().await.map_err(control_error)?;
        let out: Vec<RoomSummary> = rooms
            .iter()
            .map(|r| RoomSummary {
                room_id: r.room_id.to_string(),
                session_id: r.session.as_ref().map(|s| s.id.clone()),
                participants: participants(r),
                created_at: r.session.as_ref().and_then(|s| s.video_call_started),
            })
            .collect();
        ok(serde_json::to_value(out).unwrap_or_default())
    }
    .await;
    ctx.respond("rooms-list", res)
}

/// `GET /api/rooms/:roomId`.
#[utoipa::path(
    get,
    path = "/api/rooms/{roomId}",
    operation_id = "getRoom",
    tag = "rooms",
    params(("roomId" = String, Path, description = "The room id (the session's meetingLink).")),
    responses(
        (status = 200, description = "The room and its participants, wherever they are connected.", body = RoomDetails),
        (status = 404, description = "NOT_FOUND: the room has no members.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "CLUSTER_UNAVAILABLE or STORE_UNAVAILABLE: shared membership or the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn show(room: String, ctx: Ctx) -> Response {
    let res = async {
        let control = admin(&ctx)?;
        let r = control.room(&room).await.map_err(control_error)?;
        let r = r.ok_or_else(|| not_found(serde_json::json!({ "roomId": room })))?;
        let out = RoomDetails {
            room_id: r.room_id.to_string(),
            session_id: r.session.as_ref().map(|s| s.id.clone()),
            participants: participants(&r),
        };
        ok(serde_json::to_value(out).unwrap_or_default())
    }
    .await;
    ctx.respond("rooms-get", res)
}

/// `DELETE /api/rooms/:roomId/participants/:socketId`.
#[utoipa::path(
    delete,
    path = "/api/rooms/{roomId}/participants/{socketId}",
    operation_id = "removeParticipant",
    tag = "rooms",
    params(
        ("roomId" = String, Path, description = "The room id."),
        ("socketId" = String, Path, description = "The participant's socket id."),
    ),
    responses(
        (status = 200, description = "Removed: it got `error KICKED` and close 4003; the others `user-left` reason `kicked`.", body = Removed),
        (status = 404, description = "NOT_FOUND: no such room, or no such participant in it.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "CLUSTER_UNAVAILABLE or STORE_UNAVAILABLE: shared membership or the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn kick(room: String, socket: String, ctx: Ctx) -> Response {
    let res = async {
        let control = admin(&ctx)?;
        let m = control.kick(&room, &socket).await.map_err(|e| match e {
            ControlError::NotFound => not_found(serde_json::json!({ "roomId": room, "socketId": socket })),
            e => control_error(e),
        })?;
        ok(serde_json::to_value(Removed { removed: m.conn_id.to_string() }).unwrap_or_default())
    }
    .await;
    ctx.respond("rooms-kick", res)
}

/// `POST /api/rooms/:roomId/close`.
#[utoipa::path(
    post,
    path = "/api/rooms/{roomId}/close",
    operation_id = "closeRoom",
    tag = "rooms",
    params(("roomId" = String, Path, description = "The room id.")),
    responses(
        (status = 200, description = "Every member got `error ROOM_CLOSED` and close 4003; the session stays joinable.", body = Closed),
        (status = 404, description = "NOT_FOUND: the room has no members.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "CLUSTER_UNAVAILABLE or STORE_UNAVAILABLE: shared membership or the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn close(room: String, ctx: Ctx) -> Response {
    let res = async {
        let control = admin(&ctx)?;
        let removed = control.close(&room).await.map_err(|e| match e {
            ControlError::NotFound => not_found(serde_json::json!({ "roomId": room })),
            e => control_error(e),
        })?;
        ok(serde_json::to_value(Closed { closed: room.clone(), removed }).unwrap_or_default())
    }
    .await;
    ctx.respond("rooms-close", res)
}
