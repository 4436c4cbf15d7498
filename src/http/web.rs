//! The web client, served by every node: the call page at `GET /call/:sessionId` and its
//! static files under `GET /web/…` (the ES module client library, the page's script and
//! style). The files are embedded in the binary, so `serve` needs nothing on disk.

use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::context::{Ctx, Reply};
use super::error::ApiError;
#[allow(unused_imports)] // The schemas are named in the `utoipa::path` attributes.
use super::openapi::schemas::ErrorBody;
use signalgrid_actors::errors::ErrorCode;

const CALL_HTML: &str = include_str!("../../web/call.html");
const CALL_JS: &str = include_str!("../../web/call.js");
const CALL_CSS: &str = include_str!("../../web/call.css");
const CALL_CHAT_JS: &str = include_str!("../../web/call-chat.js");
const CALL_LOBBY_JS: &str = include_str!("../../web/call-lobby.js");
const CALL_ERRORS_JS: &str = include_str!("../../web/call-errors.js");
const CLIENT_JS: &str = include_str!("../../web/signalgrid-client.js");
const ERRORS_JS: &str = include_str!("../../web/signalgrid-errors.js");
const STATS_JS: &str = include_str!("../../web/signalgrid-stats.js");
const PEERS_JS: &str = include_str!("../../web/signalgrid-peers.js");
const REST_JS: &str = include_str!("../../web/signalgrid-rest.js");
const RESUME_JS: &str = include_str!("../../web/signalgrid-resume.js");
const MEDIA_JS: &str = include_str!("../../web/signalgrid-media.js");
const CALL_FEATURES_JS: &str = include_str!("../../web/signalgrid-call.js");
const LOBBY_JS: &str = include_str!("../../web/signalgrid-lobby.js");
const CHAT_JS: &str = include_str!("../../web/signalgrid-chat.js");

/// The static files: name under `/web/`, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    ("signalgrid-client.js", "text/javascript; charset=utf-8", CLIENT_JS),
    ("signalgrid-errors.js", "text/javascript; charset=utf-8", ERRORS_JS),
    ("signalgrid-stats.js", "text/javascript; charset=utf-8", STATS_JS),
    ("signalgrid-peers.js", "text/javascript; charset=utf-8", PEERS_JS),
    ("signalgrid-rest.js", "text/javascript; charset=utf-8", REST_JS),
    ("signalgrid-resume.js", "text/javascript; charset=utf-8", RESUME_JS),
    ("signalgrid-media.js", "text/javascript; charset=utf-8", MEDIA_JS),
    ("signalgrid-call.js", "text/javascript; charset=utf-8", CALL_FEATURES_JS),
    ("signalgrid-lobby.js", "text/javascript; charset=utf-8", LOBBY_JS),
    ("signalgrid-chat.js", "text/javascript; charset=utf-8", CHAT_JS),
    ("call.js", "text/javascript; charset=utf-8", CALL_JS),
    ("call-chat.js", "text/javascript; charset=utf-8", CALL_CHAT_JS),
    ("call-lobby.js", "text/javascript; charset=utf-8", CALL_LOBBY_JS),
    ("call-errors.js", "text/javascript; charset=utf-8", CALL_ERRORS_JS),
    ("call.css", "text/css; charset=utf-8", CALL_CSS),
];

/// The page's policy: scripts and styles from this node only; connections to any http(s)
/// or ws(s) endpoint (the library may reconnect through another node of the cluster);
/// media from the page's own streams.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
    connect-src 'self' http: https: ws: wss:; object-src 'none'; base-uri 'none'";

fn file(body: &'static str, content_type: &'static str, page: bool) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if page {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        // Camera, microphone and screen capture for this origin (and its frames when the
        // platform embeds the page with `allow="camera; microphone; display-capture"`).
        h.insert("permissions-policy", HeaderValue::from_static("camera=*, microphone=*, display-capture=*"));
    }
    r
}

#[utoipa::path(
    get,
    path = "/call/{sessionId}",
    operation_id = "callPage",
    tag = "web",
    params(("sessionId" = String, Path, description = "Read by the page itself; any value gets the page, which checks it through `can-join`.", example = "6650a1b2c3d4e5f6a7b8c9d0")),
    responses((status = 200, description = "The call page.", content_type = "text/html; charset=utf-8", body = String))
)]
pub(crate) async fn page(_session_id: String, ctx: Ctx) -> Response {
    // The session id is read by the page itself from its path; the page checks it through
    // `can-join`, so an unknown id shows the friendly error rather than a 404.
    ctx.respond("web-call", Ok(Reply::Raw(file(CALL_HTML, "text/html; charset=utf-8", true))))
}

#[utoipa::path(
    get,
    path = "/web/{file}",
    operation_id = "webAsset",
    tag = "web",
    params(("file" = String, Path, description = "A file of the web client, e.g. `signalgrid-client.js`.", example = "signalgrid-client.js")),
    responses(
        (status = 200, description = "The file.", content(
            ("text/javascript; charset=utf-8"),
            ("text/css; charset=utf-8"),
        )),
        (status = 404, description = "NOT_FOUND: no such file.", body = ErrorBody),
    )
)]
pub(crate) async fn asset(name: String, ctx: Ctx) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => ctx.respond("web-asset", Ok(Reply::Raw(file(body, ct, false)))),
        None => ctx.respond("web-asset", Err(ApiError::new(ErrorCode::NotFound))),
    }
}

/// `GET /call/:sessionId` and `GET /web/:file`.
pub fn routes(
    ctx: impl Filter<Extract = (Ctx,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let call = warp::path!("call" / String).and(warp::get()).and(ctx.clone()).then(page);
    let assets = warp::path!("web" / String).and(warp::get()).and(ctx).then(asset);
    call.or(assets).unify().boxed()
}
