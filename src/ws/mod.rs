//! The WebSocket edge: `GET /ws` upgrade (token, origin allow-list, connection limit,
//! drain) and, per socket, the task that reads frames, writes the outbound queue and pings.

pub mod socket;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use metrics::counter;
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::identity::Identity;
use signalgrid_actors::telemetry;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::ws::Ws;
use warp::Filter;

use crate::app::App;
use crate::http::context::{Ctx, Reply};
use crate::http::error::ApiError;

/// Holds one of the node's connection slots until dropped.
pub struct Slot(Arc<App>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.ws_open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn acquire(app: &Arc<App>) -> Option<Slot> {
    let max = app.settings.limits.max_connections;
    let mut cur = app.ws_open.load(Ordering::Acquire);
    loop {
        if cur >= max {
            return None;
        }
        match app
            .ws_open
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(Slot(app.clone())),
            Err(now) => cur = now,
        }
    }
}

/// The largest frame the transport reads at all: frames between the configured limit and
/// this get PAYLOAD_TOO_LARGE and the socket stays open; beyond it the socket is closed (1009).
pub fn transport_cap(max_frame: usize) -> usize {
    max_frame.saturating_mul(4).max(1 << 20)
}

fn admit(ctx: &Ctx, query: &HashMap<String, String>) -> Result<(Identity, Slot), ApiError> {
    let app = &ctx.app;
    if app.node.ctx().is_draining() {
        return Err(ErrorCode::NodeDraining.into());
    }
    if let Some(origin) = ctx.headers.get("origin").and_then(|o| o.to_str().ok()) {
        let allowed = &app.settings.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|a| a == origin) {
            return Err(ApiError::new(ErrorCode::OriginNotAllowed)
                .details(serde_json::json!({ "origin": origin })));
        }
    }
    let token = query
        .get("token")
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .or_else(|| ctx.token());
    let who = match token.map(|t| app.verifier.verify(t)) {
        Some(Ok(who)) => who,
        other => {
            counter!(telemetry::AUTH_FAILURES, "edge" => "ws").increment(1);
            let reason = match other {
                Some(Err(e)) => e.to_string(),
                _ => "no token".into(),
            };
            return Err(ApiError::new(ErrorCode::Unauthorized)
                .details(serde_json::json!({ "reason": reason })));
        }
    };
    let slot = acquire(app).ok_or(ErrorCode::ConnectionLimit)?;
    Ok((who, slot))
}

async fn upgrade(ws: Ws, ctx: Ctx, query: HashMap<String, String>) -> Response {
    let res = admit(&ctx, &query).map(|(who, slot)| {
        let app = ctx.app.clone();
        let meta = ctx.meta();
        let cap = transport_cap(app.settings.limits.max_frame_bytes);
        let r = ws
            .max_message_size(cap)
            .max_frame_size(cap)
            .on_upgrade(move |socket| socket::run(socket, app, who, meta, slot));
        Reply::Raw(warp::Reply::into_response(r))
    });
    ctx.respond("ws", res)
}

async fn not_upgrade(ctx: Ctx) -> Response {
    let e = ApiError::new(ErrorCode::BadRequest)
        .message("This endpoint takes WebSocket upgrades only.");
    ctx.respond("ws", Err(e))
}

/// `GET /ws`.
pub fn route(
    ctx: impl Filter<Extract = (Ctx,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let query = warp::query::<HashMap<String, String>>()
        .or(warp::any().map(HashMap::new))
        .unify();
    let up = warp::path!("ws")
        .and(warp::ws())
        .and(ctx.clone())
        .and(query)
        .then(upgrade);
    let plain = warp::path!("ws").and(ctx).then(not_upgrade);
    up.or(plain).unify().boxed()
}
