//! The OpenAPI 3.1 document of the REST API, generated from the code with utoipa and served
//! at `GET /api/openapi.json` (no token; PROTOCOL.md sections 7 and 10). It lists every REST
//! route but `/ws` and OPTIONS preflights; tests/openapi.rs runs schemathesis against a live
//! node with it and checks it names every `warp::path!` route of src/http.
//!
//! How an endpoint is documented (the pattern for a new one, e.g. src/http/rooms.rs):
//! 1. On its handler, `#[utoipa::path(get, path = "/api/rooms/{roomId}", operation_id = "...",
//!    tag = "...", params(...), responses(...), security(("token" = []), ("bearer" = [])))]`
//!    (see `sessions::get`). List every status the handler can answer; an error status has
//!    `body = ErrorBody` and names its codes in `description`. Authenticated endpoints list
//!    401 and 429; those that read the store 503. The `x-request-id` header (every answer)
//!    and `retry-after` (429) are added by `CommonHeaders`, not by hand.
//! 2. Bodies built with `json!` get a `ToSchema` struct in `schemas.rs` mirroring them field
//!    for field; Rust types that are serialized as they are derive `ToSchema` where defined.
//! 3. Add the handler to `paths(...)` below (and a new schema to `components(schemas(...))`
//!    if no path references it), and the route to `ROUTES` in tests/openapi.rs.

pub mod schemas;

use std::sync::OnceLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Type};
use utoipa::{Modify, OpenApi};
use warp::reply::Response;

use super::context::{Ctx, Reply};
use super::{audit, ops, rooms, sessions, video_calls, web};

/// The document, as utoipa assembles it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "signalgrid REST API",
        description = "The REST edge of a signalgrid node (PROTOCOL.md). Every failed answer has the \
            `Error` shape. Authenticated endpoints take a JWT in `x-auth-token` or \
            `Authorization: Bearer`. The WebSocket edge (`/ws`) is described in PROTOCOL.md."
    ),
    paths(
        video_calls::config,
        video_calls::generate_room,
        video_calls::can_join,
        video_calls::start,
        video_calls::end,
        sessions::create,
        sessions::get,
        sessions::patch,
        rooms::list,
        rooms::show,
        rooms::kick,
        rooms::close,
        audit::get,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        web::page,
        web::asset,
        serve,
    ),
    components(schemas(schemas::ErrorBody, schemas::AuditFormat)),
    modifiers(&Security, &CommonHeaders),
    tags(
        (name = "video-calls", description = "The call's REST side: ICE servers, room, start and end."),
        (name = "sessions", description = "The platform's appointments."),
        (name = "rooms", description = "The server API: rooms and their participants across the cluster (admin)."),
        (name = "audit", description = "The audit trail (admin)."),
        (name = "ops", description = "Probes and metrics for operators and load balancers."),
        (name = "web", description = "The web client served by every node."),
    )
)]
pub struct ApiDoc;

/// The two ways a token travels (`Ctx::token`): `x-auth-token: <jwt>` or
/// `Authorization: Bearer <jwt>`. Operations list both as alternatives.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("token", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-auth-token"))));
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Headers every answer carries (`Ctx::respond`): `x-request-id` on all, `retry-after`
/// (whole seconds) on 429.
struct CommonHeaders;

impl Modify for CommonHeaders {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        let integer = || ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).build();
        for item in doc.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    let id = HeaderBuilder::new()
                        .schema(string())
                        .description(Some(
                            "The request's id: the caller's `x-request-id` if it sent one, else a new one.",
                        ))
                        .build();
                    response.headers.insert("x-request-id".into(), id);
                    if status == "429" {
                        let retry = HeaderBuilder::new()
                            .schema(integer())
                            .description(Some("Seconds to wait before trying again."))
                            .build();
                        response.headers.insert("retry-after".into(), retry);
                    }
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        fix_links(&mut doc);
        doc.to_string()
    })
}

/// utoipa 5 writes a Link Object's `operationId` as `operation_id`; OpenAPI (and so
/// schemathesis's stateful phase) reads `operationId`.
fn fix_links(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(links) = m.get_mut("links").and_then(|l| l.as_object_mut()) {
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    if let Some(id) = link.remove("operation_id") {
                        link.insert("operationId".into(), id);
                    }
                }
            }
            m.values_mut().for_each(fix_links);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(fix_links),
        _ => {}
    }
}

/// `GET /api/openapi.json`: the document (no token).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "ops",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object))
)]
pub async fn serve(ctx: Ctx) -> Response {
    ctx.respond("openapi", Ok(Reply::Text("application/json", document().to_owned())))
}
