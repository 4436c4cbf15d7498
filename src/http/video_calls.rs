//! The five `/api/video-calls` endpoints.

use serde_json::json;
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::identity::Identity;
use signalgrid_actors::ports::EndOutcome;
use signalgrid_actors::protocol::ServerFrame;
use signalgrid_actors::rules;
use signalgrid_actors::session::{now_ms, AuditAction, Session};
use warp::reply::Response;

use super::context::{ok, Ctx};
use super::error::ApiError;
#[allow(unused_imports)] // The schemas are named in the `utoipa::path` attributes.
use super::openapi::schemas::{CallEnded, CallStarted, CanJoin, ErrorBody, GeneratedRoom, IceConfig};
use crate::ice::ice_config;

#[utoipa::path(
    get,
    path = "/api/video-calls/config",
    operation_id = "getIceConfig",
    tag = "video-calls",
    responses(
        (status = 200, description = "The ICE servers, with TURN credentials for this user when configured.", body = IceConfig),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn config(ctx: Ctx) -> Response {
    let res = (|| {
        let who = ctx.caller()?;
        ok(ice_config(&ctx.app.settings.ice, &who.user_id, chrono::Utc::now().timestamp()))
    })();
    ctx.respond("config", res)
}

/// The session, if the caller may act on it: id shape, existence, participant or admin.
async fn accessible(ctx: &Ctx, id: &str, who: &Identity) -> Result<Session, ApiError> {
    if !rules::valid_session_id(id) {
        return Err(ApiError::new(ErrorCode::InvalidSessionId).details(json!({ "sessionId": id })));
    }
    let s = ctx.app.store.session(id).await?.ok_or(ErrorCode::SessionNotFound)?;
    if !rules::may_access(&s, who) {
        return Err(ErrorCode::Forbidden.into());
    }
    Ok(s)
}

/// Answers the session's room, making it on the first call.
#[utoipa::path(
    post,
    path = "/api/video-calls/generate-room/{sessionId}",
    operation_id = "generateRoom",
    tag = "video-calls",
    params(("sessionId" = String, Path, description = "The session id: 24 hexadecimal digits.", pattern = "^[0-9a-fA-F]{24}$")),
    responses(
        (status = 200, description = "The session's room.", body = GeneratedRoom),
        (status = 400, description = "INVALID_SESSION_ID: the id is not 24 hexadecimal digits.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is neither a party of the session nor an admin.", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no session has this id.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn generate_room(id: String, ctx: Ctx) -> Response {
    let res = async {
        let who = ctx.caller()?;
        let s = accessible(&ctx, &id, &who).await?;
        let s = match s.meeting_link {
            Some(_) => s,
            None => {
                let candidate = format!("room-{}", uuid::Uuid::new_v4());
                ctx.app.store.ensure_room(&id, &candidate).await?.ok_or(ErrorCode::SessionNotFound)?
            }
        };
        ok(json!({
            "roomId": s.meeting_link,
            "sessionId": s.id,
            "sessionDate": s.session_date,
            "sessionType": s.session_type,
            "participants": { "client": s.client, "psychologist": s.psychologist },
        }))
    }
    .await;
    ctx.respond("generate-room", res)
}

/// Every join rule, checked without joining: a refusal is `canJoin: false` with its code.
#[utoipa::path(
    get,
    path = "/api/video-calls/can-join/{sessionId}",
    operation_id = "canJoin",
    tag = "video-calls",
    params(("sessionId" = String, Path, description = "The session id (one that is not 24 hexadecimal digits answers `reason: INVALID_SESSION_ID`).")),
    responses(
        (status = 200, description = "The verdict.", body = CanJoin),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn can_join(id: String, ctx: Ctx) -> Response {
    let res = async {
        let who = ctx.caller()?;
        let session = if rules::valid_session_id(&id) { ctx.app.store.session(&id).await? } else { None };
        let others = match session.as_ref().and_then(|s| s.meeting_link.clone()) {
            Some(room) => {
                ctx.app.node.room_members(&room.into()).await.iter().filter(|m| m.user_id != who.user_id).count()
            }
            None => 0,
        };
        let now = now_ms();
        let verdict = rules::check_can_join(&id, session.as_ref(), &who, now, &ctx.app.policy, others);
        ok(json!({
            "canJoin": verdict.is_ok(),
            "reason": verdict.err().map(|c| c.as_str()),
            "minutesUntilSession": session.map(|s| rules::minutes_until(s.session_date, now)),
        }))
    }
    .await;
    ctx.respond("can-join", res)
}

/// Marks the call started (the first start's time is kept), after the session rules.
#[utoipa::path(
    post,
    path = "/api/video-calls/start/{sessionId}",
    operation_id = "startCall",
    tag = "video-calls",
    params(("sessionId" = String, Path, description = "The session id: 24 hexadecimal digits.", pattern = "^[0-9a-fA-F]{24}$")),
    responses(
        (status = 200, description = "The call is started.", body = CallStarted),
        (status = 400, description = "INVALID_SESSION_ID: the id is not 24 hexadecimal digits.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 402, description = "PAYMENT_REQUIRED: the session is not paid (admins too, unless rooms.admin_bypass).", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: not a party of the session; OUTSIDE_TIME_WINDOW: the join window is not open.", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no session has this id.", body = ErrorBody),
        (status = 409, description = "SESSION_CLOSED: the session is cancelled or completed.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn start(id: String, ctx: Ctx) -> Response {
    let res = async {
        let who = ctx.caller()?;
        let s = accessible(&ctx, &id, &who).await?;
        let now = now_ms();
        rules::check_session(&s, &who, now, &ctx.app.policy)?;
        let s = ctx.app.store.mark_started(&id, now).await?.ok_or(ErrorCode::SessionNotFound)?;
        if s.video_call_started == Some(now) {
            let node = ctx.app.node.ctx();
            node.audit(&id, &who.user_id, AuditAction::CallStart, json!({ "via": "rest" }), &ctx.meta());
            let room = s.meeting_link.as_deref().map(signalgrid_actors::RoomId::from);
            node.events.call_started(&ctx.app.store, &id, room.as_ref(), now);
        }
        ok(json!({
            "message": "Video call started",
            "session": { "id": s.id, "status": s.status, "videoCallStarted": s.video_call_started },
        }))
    }
    .await;
    ctx.respond("start", res)
}

/// Ends the call: stores its end and duration, tells the room (`call-ended`).
#[utoipa::path(
    post,
    path = "/api/video-calls/end/{sessionId}",
    operation_id = "endCall",
    tag = "video-calls",
    params(("sessionId" = String, Path, description = "The session id: 24 hexadecimal digits.", pattern = "^[0-9a-fA-F]{24}$")),
    responses(
        (status = 200, description = "The call is ended.", body = CallEnded),
        (status = 400, description = "INVALID_SESSION_ID: the id is not 24 hexadecimal digits.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is neither a party of the session nor an admin.", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no session has this id.", body = ErrorBody),
        (status = 409, description = "CALL_NOT_STARTED: the call was never started.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn end(id: String, ctx: Ctx) -> Response {
    let res = async {
        let who = ctx.caller()?;
        accessible(&ctx, &id, &who).await?;
        let at = now_ms();
        let s = match ctx.app.store.mark_ended(&id, at).await?.ok_or(ErrorCode::SessionNotFound)? {
            EndOutcome::Ended(s) => s,
            EndOutcome::NotStarted => return Err(ErrorCode::CallNotStarted.into()),
        };
        let duration = s.call_duration.unwrap_or(0);
        if s.video_call_ended == Some(at) {
            let room = s.meeting_link.as_deref().map(signalgrid_actors::RoomId::from);
            let by = Some(who.user_id.as_str());
            ctx.app.node.ctx().events.call_ended(&ctx.app.store, &id, room.as_ref(), at, duration, by);
        }
        ctx.app.node.ctx().audit(
            &id,
            &who.user_id,
            AuditAction::CallEnd,
            json!({ "via": "rest", "duration": duration }),
            &ctx.meta(),
        );
        if let Some(room) = &s.meeting_link {
            let frame = ServerFrame::CallEnded { room_id: room, ended_by: &who.user_id, duration }.encode();
            ctx.app.node.broadcast(&room.as_str().into(), frame).await;
        }
        ok(json!({
            "message": "Video call ended",
            "duration": duration,
            "session": { "status": s.status, "callDuration": s.call_duration },
        }))
    }
    .await;
    ctx.respond("end", res)
}
