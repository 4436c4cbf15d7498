//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the store answers and
//! the node is not draining), `/metrics` (Prometheus text), and the 404 for anything else.

use serde_json::json;
use signalgrid_actors::errors::ErrorCode;
use warp::http::StatusCode;
use warp::reply::Response;

use super::context::{ok, Ctx, Reply};
use super::error::ApiError;
#[allow(unused_imports)] // The schemas are named in the `utoipa::path` attributes.
use super::openapi::schemas::{Health, Readiness};

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "ops",
    responses((status = 200, description = "The process answers.", body = Health))
)]
pub async fn healthz(ctx: Ctx) -> Response {
    let body = json!({ "status": "ok", "nodeId": &*ctx.app.node_id });
    ctx.respond("healthz", ok(body))
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready: the store answers and the node is not draining.", body = Readiness),
        (status = 503, description = "Not ready (the same body, `ready: false`): take the node out of rotation.", body = Readiness),
    )
)]
pub async fn readyz(ctx: Ctx) -> Response {
    let store_ok = ctx.app.store.ping().await.is_ok();
    let draining = ctx.app.node.ctx().is_draining();
    let ready = store_ok && !draining;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "ready": ready, "store": store_ok, "draining": draining, "nodeId": &*ctx.app.node_id });
    ctx.respond("readyz", Ok(Reply::Json(status, body)))
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text exposition.", content_type = "text/plain; version=0.0.4", body = String))
)]
pub async fn metrics(ctx: Ctx) -> Response {
    let text = ctx.app.metrics.render();
    ctx.respond("metrics", Ok(Reply::Text("text/plain; version=0.0.4", text)))
}

pub async fn not_found(ctx: Ctx) -> Response {
    ctx.respond("not-found", Err(ApiError::new(ErrorCode::NotFound)))
}
