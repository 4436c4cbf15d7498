//! The REST edge on warp: routes, the request context, the error shape, rate limits.
//!
//! Every route ends in a handler that answers (never rejects), through `Ctx::respond`, so
//! that every answer, errors and the 404 included, has the error shape and `x-request-id`.

pub mod audit;
pub mod context;
pub mod cors;
pub mod error;
pub mod openapi;
pub mod ops;
pub mod rate_limit;
pub mod rooms;
pub mod sessions;
pub mod video_calls;
pub mod web;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Buf, Filter};

use crate::app::App;
use context::with_ctx;

/// Largest REST request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads the body up to `MAX_BODY_BYTES`. A declared `Content-Length` past it is refused
/// before anything is read (PAYLOAD_TOO_LARGE, 413), as is a longer body; a body that breaks
/// off or misses `http.body_timeout_ms` is BAD_REQUEST (400), and hyper then closes the
/// connection, whose body was not read to its end.
async fn read_limited<S, B>(declared: Option<u64>, s: S) -> Result<Bytes, error::ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    use signalgrid_actors::errors::ErrorCode;
    let too_large = || error::ApiError::new(ErrorCode::PayloadTooLarge);
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut s = std::pin::pin!(s);
    let mut buf = Vec::new();
    while let Some(chunk) = s.next().await {
        let mut chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "request body not read");
            error::ApiError::new(ErrorCode::BadRequest).message("The request body did not arrive in full, in time.")
        })?;
        if buf.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            buf.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(buf))
}

/// All routes of a node.
pub fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let ctx = with_ctx(app.clone());
    let config =
        warp::path!("api" / "video-calls" / "config").and(warp::get()).and(ctx.clone()).then(video_calls::config);
    let generate = warp::path!("api" / "video-calls" / "generate-room" / String)
        .and(warp::post())
        .and(ctx.clone())
        .then(video_calls::generate_room);
    let can_join = warp::path!("api" / "video-calls" / "can-join" / String)
        .and(warp::get())
        .and(ctx.clone())
        .then(video_calls::can_join);
    let start = warp::path!("api" / "video-calls" / "start" / String)
        .and(warp::post())
        .and(ctx.clone())
        .then(video_calls::start);
    let end =
        warp::path!("api" / "video-calls" / "end" / String).and(warp::post()).and(ctx.clone()).then(video_calls::end);
    let create = warp::path!("api" / "sessions")
        .and(warp::post())
        .and(ctx.clone())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(|ctx: context::Ctx, declared: Option<u64>, body| async move {
            match read_limited(declared, body).await {
                Ok(b) => sessions::create(ctx, b).await,
                Err(e) => ctx.respond("sessions-create", Err(e)),
            }
        });
    let get = warp::path!("api" / "sessions" / String).and(warp::get()).and(ctx.clone()).then(sessions::get);
    let patch = warp::path!("api" / "sessions" / String)
        .and(warp::patch())
        .and(ctx.clone())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(|id: String, ctx: context::Ctx, declared: Option<u64>, body| async move {
            match read_limited(declared, body).await {
                Ok(b) => sessions::patch(id, ctx, b).await,
                Err(e) => ctx.respond("sessions-patch", Err(e)),
            }
        });
    let rooms = rooms_routes(&ctx);
    let audit = warp::path!("api" / "audit")
        .and(warp::get())
        .and(warp::query::<Vec<(String, String)>>().map(Some).or(warp::any().map(|| None)).unify())
        .and(ctx.clone())
        .then(audit::get);
    let openapi = warp::path!("api" / "openapi.json").and(warp::get()).and(ctx.clone()).then(openapi::serve);
    let healthz = warp::path!("healthz").and(ctx.clone()).then(ops::healthz);
    let readyz = warp::path!("readyz").and(ctx.clone()).then(ops::readyz);
    let metrics = warp::path!("metrics").and(ctx.clone()).then(ops::metrics);
    let ws = crate::ws::route(ctx.clone());
    let preflight = warp::options().and(ctx.clone()).then(cors::preflight);
    let fallback = ctx.then(ops::not_found);
    config
        .or(generate)
        .unify()
        .or(can_join)
        .unify()
        .or(start)
        .unify()
        .or(end)
        .unify()
        .or(create)
        .unify()
        .or(get)
        .unify()
        .or(patch)
        .unify()
        .or(rooms)
        .unify()
        .or(audit)
        .unify()
        .or(openapi)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(ws)
        .unify()
        .or(preflight)
        .unify()
        .or(web::routes(with_ctx(app.clone())))
        .unify()
        .or(fallback)
        .unify()
        .boxed()
}

/// The server API's room routes (`rooms`).
fn rooms_routes(
    ctx: &(impl Filter<Extract = (context::Ctx,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static),
) -> BoxedFilter<(Response,)> {
    let list = warp::path!("api" / "rooms").and(warp::get()).and(ctx.clone()).then(rooms::list);
    let show = warp::path!("api" / "rooms" / String).and(warp::get()).and(ctx.clone()).then(rooms::show);
    let kick = warp::path!("api" / "rooms" / String / "participants" / String)
        .and(warp::delete())
        .and(ctx.clone())
        .then(rooms::kick);
    let close = warp::path!("api" / "rooms" / String / "close").and(warp::post()).and(ctx.clone()).then(rooms::close);
    list.or(show).unify().or(kick).unify().or(close).unify().boxed()
}
