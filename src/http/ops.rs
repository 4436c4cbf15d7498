//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the store answers and
//! the node is not draining), `/metrics` (Prometheus text), and the 404 for anything else.

use serde_json::json;
use signalgrid_actors::errors::ErrorCode;
use warp::http::StatusCode;
use warp::reply::Response;

use super::context::{ok, Ctx, Reply};
use super::error::ApiError;

pub async fn healthz(ctx: Ctx) -> Response {
    let body = json!({ "status": "ok", "nodeId": &*ctx.app.node_id });
    ctx.respond("healthz", ok(body))
}

pub async fn readyz(ctx: Ctx) -> Response {
    let store_ok = ctx.app.store.ping().await.is_ok();
    let draining = ctx.app.node.ctx().is_draining();
    let ready = store_ok && !draining;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "ready": ready, "store": store_ok, "draining": draining, "nodeId": &*ctx.app.node_id });
    ctx.respond("readyz", Ok(Reply::Json(status, body)))
}

pub async fn metrics(ctx: Ctx) -> Response {
    let text = ctx.app.metrics.render();
    ctx.respond("metrics", Ok(Reply::Text("text/plain; version=0.0.4", text)))
}

pub async fn not_found(ctx: Ctx) -> Response {
    ctx.respond("not-found", Err(ApiError::new(ErrorCode::NotFound)))
}
