//! Cross-origin use of the REST API from a browser: which origins may call it (the same
//! `allowed_origins` list that guards the WebSocket), the preflight answer, and the headers
//! an allowed origin's responses carry.
//!
//! The platform's pages live on their own origin and load `signalgrid-client.js`, which
//! calls `can-join` and `config` with an `Authorization` header: without these answers the
//! browser would block those calls. Credentials (cookies) are never involved: the token
//! travels in a header, so `Access-Control-Allow-Credentials` is not sent.
//! Must not: decide anything about the caller's identity (that is `Ctx::caller`).

use signalgrid_actors::errors::ErrorCode;
use signalgrid_config::Settings;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::context::{Ctx, HandlerResult, Reply};
use super::error::ApiError;

/// Methods the API answers.
const METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";
/// Request headers a page may send.
const HEADERS: &str = "authorization, content-type, x-auth-token, x-request-id";
/// Response headers a page may read.
const EXPOSED: &str = "x-request-id, retry-after";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// Whether a page of `origin` may use this node: an empty list allows every origin.
pub fn origin_allowed(settings: &Settings, origin: &str) -> bool {
    let allowed = &settings.allowed_origins;
    allowed.is_empty() || allowed.iter().any(|a| a == origin)
}

/// The request's `Origin`, if it has a readable one.
pub fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get("origin").and_then(|o| o.to_str().ok())
}

/// Adds the CORS headers to a response for an allowed origin (nothing otherwise).
pub fn decorate(settings: &Settings, headers: &HeaderMap, res: &mut Response) {
    let Some(origin) = origin(headers).filter(|o| origin_allowed(settings, o)) else { return };
    let Ok(value) = HeaderValue::from_str(origin) else { return };
    let h = res.headers_mut();
    h.insert("access-control-allow-origin", value);
    h.insert("access-control-expose-headers", HeaderValue::from_static(EXPOSED));
    h.append("vary", HeaderValue::from_static("origin"));
}

/// `OPTIONS` on any path: the preflight answer. An origin that is not allowed gets
/// ORIGIN_NOT_ALLOWED (and, having no CORS headers, its browser blocks the call).
pub async fn preflight(ctx: Ctx) -> Response {
    let result: HandlerResult = match origin(&ctx.headers) {
        Some(o) if !origin_allowed(&ctx.app.settings, o) => {
            Err(ApiError::new(ErrorCode::OriginNotAllowed).details(serde_json::json!({ "origin": o })))
        }
        _ => {
            let mut r = Response::new(Default::default());
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            h.insert("access-control-allow-methods", HeaderValue::from_static(METHODS));
            h.insert("access-control-allow-headers", HeaderValue::from_static(HEADERS));
            h.insert("access-control-max-age", HeaderValue::from_static(MAX_AGE));
            Ok(Reply::Raw(r))
        }
    };
    ctx.respond("preflight", result)
}
