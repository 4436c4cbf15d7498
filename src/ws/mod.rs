//! The WebSocket edge: `GET /ws` upgrade (drain, connect rate, origin allow-list, token,
//! connection limit) and, per socket, the task that reads frames, writes the outbound queue and pings.

pub mod connect_rate;
pub mod socket;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use warp::http::{HeaderMap, HeaderValue, StatusCode};

use metrics::counter;
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::identity::Identity;
use signalgrid_actors::telemetry;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use crate::app::App;
use crate::http::context::{Ctx, Reply};
use crate::http::error::ApiError;

/// An upgraded socket, as the socket task sees it.
pub type WsStream = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The connection's pending HTTP upgrade. `serve_conn` takes it from hyper for every request
/// that asks for `Upgrade: websocket` and puts it on the request; the `/ws` route takes it
/// once the handshake and admission pass.
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<OnUpgrade>>>);

impl PendingUpgrade {
    pub fn new(up: OnUpgrade) -> PendingUpgrade {
        PendingUpgrade(Arc::new(Mutex::new(Some(up))))
    }

    fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Whether a request asks to upgrade to a WebSocket (`Upgrade: websocket`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Read buffer of a socket (bytes), zero-filled before each read and held only while the socket
/// has something to read (an idle socket gives it back). 2 KiB relays as fast as 4 KiB here
/// (docs/benchmarks.md); a larger frame is read in several steps.
const READ_BUFFER: usize = 2 * 1024;
/// Frames are written out once this much is buffered (and on every flush).
const WRITE_BUFFER: usize = 8 * 1024;

/// The RFC 6455 key GUID.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A valid WebSocket handshake request (RFC 6455 4.2.1), with its pending upgrade.
struct Handshake {
    key: HeaderValue,
    upgrade: PendingUpgrade,
}

fn handshake(headers: &HeaderMap, upgrade: Option<PendingUpgrade>) -> Option<Handshake> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let conn_upgrade = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !conn_upgrade || !wants_upgrade(headers) || h("sec-websocket-version") != Some("13") {
        return None;
    }
    let key = headers.get("sec-websocket-key")?.clone();
    Some(Handshake { key, upgrade: upgrade? })
}

/// Filters WebSocket handshakes (GET with the upgrade headers); anything else is rejected
/// and falls through to the plain `/ws` answer.
fn ws_handshake() -> impl Filter<Extract = (Handshake,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PendingUpgrade>())
        .and_then(|headers: HeaderMap, up: Option<PendingUpgrade>| async move {
            handshake(&headers, up).ok_or_else(warp::reject)
        })
}

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
        match app.ws_open.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
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

/// The WebSocket settings of every client socket: a read buffer of `READ_BUFFER` bytes, frames
/// written out at `WRITE_BUFFER` bytes or on a flush, and [`transport_cap`] of `max_frame`
/// (bytes) as the largest message and frame. tungstenite (vendored,
/// vendor/tungstenite/VENDORED.md) takes the read buffer only while the socket has something
/// to read and the write buffer only while something waits to be written.
pub fn socket_config(max_frame: usize) -> WebSocketConfig {
    let cap = transport_cap(max_frame);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap))
}

fn admit(ctx: &Ctx, query: &HashMap<String, String>) -> Result<(Identity, Slot), ApiError> {
    let app = &ctx.app;
    if app.node.ctx().is_draining() {
        return Err(ErrorCode::NodeDraining.into());
    }
    // Before the token is verified: a refusal costs the node next to nothing.
    if let Err(secs) = app.connect_rate.check() {
        counter!(telemetry::RATE_LIMITED, "edge" => "ws_connect").increment(1);
        let mut e =
            ApiError::new(ErrorCode::ConnectRateLimited).details(serde_json::json!({ "retryAfterSeconds": secs }));
        e.retry_after = Some(secs);
        return Err(e);
    }
    if let Some(origin) = crate::http::cors::origin(&ctx.headers) {
        if !crate::http::cors::origin_allowed(&app.settings, origin) {
            return Err(ApiError::new(ErrorCode::OriginNotAllowed).details(serde_json::json!({ "origin": origin })));
        }
    }
    let token = query.get("token").map(String::as_str).filter(|t| !t.is_empty()).or_else(|| ctx.token());
    let who = match token.map(|t| app.verifier.verify(t)) {
        Some(Ok(who)) => who,
        other => {
            counter!(telemetry::AUTH_FAILURES, "edge" => "ws").increment(1);
            let reason = match other {
                Some(Err(e)) => e.to_string(),
                _ => "no token".into(),
            };
            return Err(ApiError::new(ErrorCode::Unauthorized).details(serde_json::json!({ "reason": reason })));
        }
    };
    let slot = acquire(app).ok_or(ErrorCode::ConnectionLimit)?;
    Ok((who, slot))
}

/// `resume` and `lastSeq` (PROTOCOL.md section 6): `lastSeq` defaults to 0 and must be a
/// whole number.
fn resume_params(query: &HashMap<String, String>) -> Result<Option<(String, u64)>, ApiError> {
    let Some(token) = query.get("resume").filter(|t| !t.is_empty()) else { return Ok(None) };
    let last_seq = match query.get("lastSeq").map(|v| v.trim()) {
        None | Some("") => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            ApiError::new(ErrorCode::BadRequest)
                .details(serde_json::json!({ "reason": "lastSeq must be a non-negative integer" }))
        })?,
    };
    Ok(Some((token.clone(), last_seq)))
}

async fn upgrade(hs: Handshake, ctx: Ctx, query: HashMap<String, String>) -> Response {
    let res = resume_params(&query).and_then(|resume| admit(&ctx, &query).map(|(who, slot)| (who, slot, resume)));
    let res = res.map(|(who, slot, resume)| {
        let app = ctx.app.clone();
        let meta = ctx.meta();
        let config = socket_config(app.settings.limits.max_frame_bytes);
        match hs.upgrade.take() {
            Some(on_upgrade) => {
                // One allocation carries what only the start needs (see `socket::serve`).
                let start = socket::Start { on_upgrade, config, app, who, meta, slot, resume };
                tokio::spawn(socket::serve(Box::new(start)));
            }
            None => tracing::debug!("websocket upgrade already taken"),
        }
        let mut r = Response::default();
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert("connection", HeaderValue::from_static("upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept_key(hs.key.as_bytes())) {
            h.insert("sec-websocket-accept", v);
        }
        Reply::Raw(r)
    });
    ctx.respond("ws", res)
}

async fn not_upgrade(ctx: Ctx) -> Response {
    let e = ApiError::new(ErrorCode::BadRequest).message("This endpoint takes WebSocket upgrades only.");
    ctx.respond("ws", Err(e))
}

/// `GET /ws`.
pub fn route(
    ctx: impl Filter<Extract = (Ctx,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let query = warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify();
    let up = warp::path!("ws").and(ws_handshake()).and(ctx.clone()).and(query).then(upgrade);
    let plain = warp::path!("ws").and(ctx).then(not_upgrade);
    up.or(plain).unify().boxed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
