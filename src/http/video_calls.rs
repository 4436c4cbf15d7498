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
use crate::ice::ice_config;

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
