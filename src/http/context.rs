//! A request's context: its id (kept from `x-request-id` or made), caller address, headers,
//! start time. `respond` turns a handler's result into the response, adds `x-request-id`
//! (and the CORS headers for an allowed origin), logs the request once and records its
//! metrics: every REST answer passes through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, histogram};
use serde_json::Value;
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::identity::Identity;
use signalgrid_actors::session::ClientMeta;
use signalgrid_actors::telemetry;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use crate::app::App;
use crate::server::PeerAddr;

/// What a handler answers on success.
pub enum Reply {
    Json(StatusCode, Value),
    Text(&'static str, String),
    /// A response built elsewhere (the WebSocket upgrade).
    Raw(Response),
}

pub type HandlerResult = Result<Reply, ApiError>;

pub fn ok(v: Value) -> HandlerResult {
    Ok(Reply::Json(StatusCode::OK, v))
}

pub struct Ctx {
    pub app: Arc<App>,
    pub request_id: String,
    pub headers: HeaderMap,
    pub peer: Option<SocketAddr>,
    started: Instant,
}

/// Extracts the context of every request.
pub fn with_ctx(app: Arc<App>) -> impl Filter<Extract = (Ctx,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned().and(warp::ext::optional::<PeerAddr>()).map(
        move |headers: HeaderMap, peer: Option<PeerAddr>| {
            let request_id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 200)
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            Ctx { app: app.clone(), request_id, headers, peer: peer.map(|p| p.0), started: Instant::now() }
        },
    )
}

impl Ctx {
    /// The token from `x-auth-token` or `Authorization: Bearer`.
    pub fn token(&self) -> Option<&str> {
        let h = |n: &str| self.headers.get(n).and_then(|v| v.to_str().ok());
        h("x-auth-token")
            .or_else(|| {
                h("authorization").and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    pub fn meta(&self) -> ClientMeta {
        ClientMeta {
            ip: self.peer.map(|p| p.ip().to_string()),
            user_agent: self.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_owned),
        }
    }

    fn ip_key(&self) -> String {
        format!("ip:{}", self.peer.map(|p| p.ip().to_string()).unwrap_or_default())
    }

    /// Authenticates and applies the rate limit (by user; by IP when the token is bad).
    pub fn caller(&self) -> Result<Identity, ApiError> {
        let verified = match self.token() {
            Some(t) => self.app.verifier.verify(t).map_err(|e| e.to_string()),
            None => Err("no token".to_owned()),
        };
        match verified {
            Ok(who) => {
                if !(who.is_admin() && self.app.settings.limits.exempt_admins) {
                    self.limit(&format!("user:{}", who.user_id))?;
                }
                Ok(who)
            }
            Err(reason) => {
                self.limit(&self.ip_key())?;
                counter!(telemetry::AUTH_FAILURES, "edge" => "rest").increment(1);
                Err(ApiError::new(ErrorCode::Unauthorized).details(serde_json::json!({ "reason": reason })))
            }
        }
    }

    fn limit(&self, key: &str) -> Result<(), ApiError> {
        self.app.rest_limiter.check(key).map_err(|secs| {
            counter!(telemetry::RATE_LIMITED, "edge" => "rest").increment(1);
            let mut e = ApiError::new(ErrorCode::RateLimited).details(serde_json::json!({ "retryAfterSeconds": secs }));
            e.retry_after = Some(secs);
            e
        })
    }

    /// Builds the response, logs the request and records metrics.
    pub fn respond(&self, route: &'static str, result: HandlerResult) -> Response {
        let mut res = match result {
            Ok(Reply::Json(status, body)) => {
                let mut r = warp::reply::json(&body).into_response();
                *r.status_mut() = status;
                r
            }
            Ok(Reply::Text(content_type, body)) => {
                let mut r = Response::new(body.into());
                r.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
                r
            }
            Ok(Reply::Raw(r)) => r,
            Err(e) => self.error_response(&e),
        };
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            res.headers_mut().insert("x-request-id", v);
        }
        super::cors::decorate(&self.app.settings, &self.headers, &mut res);
        let status = res.status().as_u16();
        let elapsed = self.started.elapsed();
        tracing::info!(
            request_id = %self.request_id, route, status, latency_ms = elapsed.as_secs_f64() * 1e3, "request"
        );
        counter!(telemetry::REST_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
        histogram!(telemetry::REST_LATENCY, "route" => route).record(elapsed.as_secs_f64());
        res
    }

    /// The error shape as a response (also used by the WebSocket upgrade).
    pub fn error_response(&self, e: &ApiError) -> Response {
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut r = warp::reply::json(&e.body(&self.request_id, &ts)).into_response();
        *r.status_mut() = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(secs) = e.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from(secs));
        }
        r
    }
}

use warp::Reply as _;
