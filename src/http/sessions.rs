//! `POST /api/sessions` (admin), `GET /api/sessions/:id` and `PATCH /api/sessions/:id`
//! (admin; the server API, PROTOCOL.md section 7).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use signalgrid_actors::control::RoomControl;
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::rules;
use signalgrid_actors::session::{NewSession, Party, PaymentStatus, SessionPatch, SessionStatus, SessionType};
use warp::http::StatusCode;
use warp::reply::Response;

use super::context::{ok, Ctx, Reply};
use super::error::ApiError;
#[allow(unused_imports)] // The schemas are named in the `utoipa::path` attributes.
use super::openapi::schemas::{ErrorBody, NewSessionBody, SessionPatchBody};
#[allow(unused_imports)]
use signalgrid_actors::session::Session;

/// Longest accepted session, in minutes.
const MAX_DURATION_MINUTES: i64 = 24 * 60;

/// Creates a session (admin); the id is made by the store.
#[utoipa::path(
    post,
    path = "/api/sessions",
    operation_id = "createSession",
    tag = "sessions",
    request_body(content = NewSessionBody, description = "The new session (at most 64 KiB).", content_type = "application/json"),
    responses(
        (status = 201, description = "The stored session.", body = Session, links(
            ("GetSession" = (operation_id = "getSession", parameters(("sessionId" = "$response.body#/id")))),
            ("GenerateRoom" = (operation_id = "generateRoom", parameters(("sessionId" = "$response.body#/id")))),
            ("CanJoin" = (operation_id = "canJoin", parameters(("sessionId" = "$response.body#/id")))),
            ("StartCall" = (operation_id = "startCall", parameters(("sessionId" = "$response.body#/id")))),
            ("EndCall" = (operation_id = "endCall", parameters(("sessionId" = "$response.body#/id")))),
        )),
        (status = 400, description = "VALIDATION_ERROR: a field is missing or not valid (each one named in `details.fields`), or the body is not JSON; BAD_REQUEST: the body did not arrive in full, in time.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE: the body is larger than 64 KiB.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn create(ctx: Ctx, body: Bytes) -> Response {
    let res = async {
        let who = ctx.caller()?;
        if !who.is_admin() {
            return Err(ApiError::new(ErrorCode::Forbidden).message("Only an admin may create sessions."));
        }
        let new = parse_new_session(&body, ctx.app.settings.rooms.waiting_room)?;
        let s = ctx.app.store.create_session(new).await?;
        Ok(Reply::Json(StatusCode::CREATED, json!(s)))
    }
    .await;
    ctx.respond("sessions-create", res)
}

/// A session, for its parties and admins.
#[utoipa::path(
    get,
    path = "/api/sessions/{sessionId}",
    operation_id = "getSession",
    tag = "sessions",
    params(("sessionId" = String, Path, description = "The session id: 24 hexadecimal digits.", pattern = "^[0-9a-fA-F]{24}$")),
    responses(
        (status = 200, description = "The stored session.", body = Session),
        (status = 400, description = "INVALID_SESSION_ID: the id is not 24 hexadecimal digits.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is neither a party of the session nor an admin.", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no session has this id.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
pub async fn get(id: String, ctx: Ctx) -> Response {
    let res = async {
        let who = ctx.caller()?;
        if !rules::valid_session_id(&id) {
            return Err(ApiError::new(ErrorCode::InvalidSessionId).details(json!({ "sessionId": id })));
        }
        let s = ctx.app.store.session(&id).await?.ok_or(ErrorCode::SessionNotFound)?;
        if !rules::may_access(&s, &who) {
            return Err(ErrorCode::Forbidden.into());
        }
        ok(json!(s))
    }
    .await;
    ctx.respond("sessions-get", res)
}

#[utoipa::path(
    patch,
    path = "/api/sessions/{sessionId}",
    operation_id = "patchSession",
    tag = "sessions",
    params(("sessionId" = String, Path, description = "The session id: 24 hexadecimal digits.", pattern = "^[0-9a-fA-F]{24}$")),
    request_body(content = SessionPatchBody, description = "At least one of the fields.", content_type = "application/json"),
    responses(
        (status = 200, description = "The stored session; if it can no longer be joined its members were removed (`user-left` reason `ejected`).", body = Session),
        (status = 400, description = "INVALID_SESSION_ID: the id is not 24 hexadecimal digits; VALIDATION_ERROR: an unknown or invalid field, or no field; BAD_REQUEST: the body did not arrive in full, in time.", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no token, or one that is expired or not valid.", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the caller is not an admin.", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND: no session has this id.", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE: the body is larger than 64 KiB.", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests of this user (or of this address, before sign-in).", body = ErrorBody),
        (status = 503, description = "STORE_UNAVAILABLE: the store did not answer.", body = ErrorBody),
    ),
    security(("token" = []), ("bearer" = []))
)]
/// `PATCH /api/sessions/:id` (admin): changes `paymentStatus`, `status`, `sessionDate`,
/// `durationMinutes`, `waitingRoom` (validated as on `POST`; other fields are
/// `VALIDATION_ERROR`; `waitingRoom` applies to joins from then on: clients already waiting
/// keep waiting, members already in stay) and
/// answers `200` with the stored session. When the session can no longer be joined
/// (cancelled, completed, not paid, its window moved away from now), the members of its
/// live call are removed at once, on every node, with that rule's code (`user-left` reason
/// `ejected`); the answer comes once they are out (bounded wait).
pub async fn patch(id: String, ctx: Ctx, body: Bytes) -> Response {
    let res = async {
        let who = ctx.caller()?;
        if !who.is_admin() {
            return Err(ApiError::new(ErrorCode::Forbidden).message("Only an admin may change sessions."));
        }
        if !rules::valid_session_id(&id) {
            return Err(ApiError::new(ErrorCode::InvalidSessionId).details(json!({ "sessionId": id })));
        }
        let patch = parse_patch(&body)?;
        let before = ctx.app.store.session(&id).await?.ok_or(ErrorCode::SessionNotFound)?;
        let after = ctx.app.store.update_session(&id, &patch).await?.ok_or(ErrorCode::SessionNotFound)?;
        let control = RoomControl::new(ctx.app.node.ctx().clone());
        match control.session_changed(&before, &after).await {
            Ok(ejected) if !ejected.is_empty() => {
                tracing::info!(session = %id, ejected = ejected.len(), "session changed: members removed")
            }
            Ok(_) => {}
            // Stored: the rooms' own checks catch up (the next join or time limit).
            Err(e) => tracing::warn!(session = %id, error = %e, "session changed; its call not checked"),
        }
        ok(json!(after))
    }
    .await;
    ctx.respond("sessions-patch", res)
}

/// The body of `PATCH /api/sessions/:id`: a JSON object with at least one of the fields it
/// may change; every bad or unknown field goes into `details.fields`.
pub fn parse_patch(body: &[u8]) -> Result<SessionPatch, ApiError> {
    let mut bad = Map::new();
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(obj) = v.as_object() else {
        bad.insert("body".into(), json!("a JSON object"));
        return Err(ApiError::new(ErrorCode::ValidationError).details(json!({ "fields": bad })));
    };
    let mut p = SessionPatch::default();
    for (k, val) in obj {
        match k.as_str() {
            "paymentStatus" => match val.as_str().and_then(PaymentStatus::parse) {
                Some(x) => p.payment_status = Some(x),
                None => {
                    bad.insert(k.clone(), json!("one of paid, pending, failed, refunded"));
                }
            },
            "status" => match val.as_str().and_then(SessionStatus::parse) {
                Some(x) => p.status = Some(x),
                None => {
                    bad.insert(k.clone(), json!("one of Scheduled, In Progress, Completed, Cancelled"));
                }
            },
            "sessionDate" => match val.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
                Some(d) => p.session_date = Some(d.with_timezone(&Utc)),
                None => {
                    bad.insert(k.clone(), json!("an RFC 3339 date-time such as 2026-11-24T10:00:00.000Z"));
                }
            },
            "durationMinutes" => match val.as_i64().filter(|d| (1..=MAX_DURATION_MINUTES).contains(d)) {
                Some(d) => p.duration_minutes = Some(d),
                None => {
                    bad.insert(k.clone(), json!("a whole number of minutes from 1 to 1440"));
                }
            },
            "waitingRoom" => match val.as_bool() {
                Some(w) => p.waiting_room = Some(w),
                None => {
                    bad.insert(k.clone(), json!("true or false"));
                }
            },
            _ => {
                bad.insert(k.clone(), json!("not a field PATCH changes"));
            }
        }
    }
    if bad.is_empty() && p == SessionPatch::default() {
        bad.insert(
            "body".into(),
            json!("at least one of paymentStatus, status, sessionDate, durationMinutes, waitingRoom"),
        );
    }
    if bad.is_empty() {
        Ok(p)
    } else {
        Err(ApiError::new(ErrorCode::ValidationError).details(json!({ "fields": bad })))
    }
}

/// Validates the body, collecting every bad field into `details.fields`. `waitingRoom` is
/// optional (a boolean); `default_waiting_room` (config `rooms.waiting_room`) when absent.
pub fn parse_new_session(body: &[u8], default_waiting_room: bool) -> Result<NewSession, ApiError> {
    let invalid =
        |fields: Map<String, Value>| ApiError::new(ErrorCode::ValidationError).details(json!({ "fields": fields }));
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let mut f = Map::new();
        f.insert("body".into(), json!(format!("not a JSON object: {e}")));
        invalid(f)
    })?;
    let mut bad = Map::new();
    let mut note = |field: &str, why: &str| {
        bad.insert(field.to_owned(), json!(why));
    };
    let party = |key: &str, note: &mut dyn FnMut(&str, &str)| -> Option<Party> {
        let p = &v[key];
        let id = p["id"].as_str().map(str::trim).filter(|s| !s.is_empty());
        let name = p["name"].as_str().map(str::trim).filter(|s| !s.is_empty());
        if id.is_none() {
            note(&format!("{key}.id"), "required, a non-empty string");
        }
        if name.is_none() {
            note(&format!("{key}.name"), "required, a non-empty string");
        }
        Some(Party { id: id?.to_owned(), name: name?.to_owned() })
    };
    let client = party("client", &mut note);
    let psychologist = party("psychologist", &mut note);
    let date =
        v["sessionDate"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|d| d.with_timezone(&Utc));
    if date.is_none() {
        note("sessionDate", "required, an RFC 3339 date-time such as 2026-11-24T10:00:00.000Z");
    }
    let duration = v["durationMinutes"].as_i64().filter(|d| (1..=MAX_DURATION_MINUTES).contains(d));
    if duration.is_none() {
        note("durationMinutes", "required, a whole number of minutes from 1 to 1440");
    }
    let kind = v["sessionType"].as_str().and_then(SessionType::parse);
    if kind.is_none() {
        note("sessionType", "required, Individual or Group");
    }
    let pay = v["paymentStatus"].as_str().and_then(PaymentStatus::parse);
    if pay.is_none() {
        note("paymentStatus", "required, one of paid, pending, failed, refunded");
    }
    // Absent means the default; an explicit null is refused like any other wrong value (the
    // OpenAPI document says these fields are not nullable).
    let status = match v.get("status") {
        None => Some(SessionStatus::Scheduled),
        Some(s) => s.as_str().and_then(SessionStatus::parse),
    };
    if status.is_none() {
        note("status", "one of Scheduled, In Progress, Completed, Cancelled");
    }
    let waiting_room = match v.get("waitingRoom") {
        None => Some(default_waiting_room),
        Some(w) => w.as_bool(),
    };
    if waiting_room.is_none() {
        note("waitingRoom", "true or false");
    }
    if let (Some(c), Some(p)) = (&client, &psychologist) {
        if c.id == p.id {
            note("psychologist.id", "must differ from client.id");
        }
    }
    match (client, psychologist, date, duration, kind, pay, status, waiting_room) {
        (
            Some(client),
            Some(psychologist),
            Some(session_date),
            Some(duration_minutes),
            Some(session_type),
            Some(payment_status),
            Some(status),
            Some(waiting_room),
        ) if bad.is_empty() => Ok(NewSession {
            client,
            psychologist,
            session_date,
            duration_minutes,
            session_type,
            payment_status,
            status,
            waiting_room,
        }),
        _ => Err(invalid(bad)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_bad_field() {
        let e = parse_new_session(br#"{"client":{"id":"c"},"sessionDate":"tomorrow","durationMinutes":0,"sessionType":"Solo","paymentStatus":"paid","status":"Done","waitingRoom":"yes"}"#, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        let fields = e.details["fields"].as_object().unwrap();
        for f in [
            "client.name",
            "psychologist.id",
            "psychologist.name",
            "sessionDate",
            "durationMinutes",
            "sessionType",
            "status",
            "waitingRoom",
        ] {
            assert!(fields.contains_key(f), "{f} missing from {fields:?}");
        }
        assert!(!fields.contains_key("paymentStatus"));
    }

    #[test]
    fn patch_bodies_are_validated() {
        let p = parse_patch(br#"{"paymentStatus":"refunded","durationMinutes":30}"#).unwrap();
        assert_eq!(p.payment_status, Some(PaymentStatus::Refunded));
        assert_eq!(p.duration_minutes, Some(30));
        let e = parse_patch(br#"{"status":"Done","sessionDate":"soon","client":{},"durationMinutes":0}"#).unwrap_err();
        let fields = e.details["fields"].as_object().unwrap();
        for f in ["status", "sessionDate", "client", "durationMinutes"] {
            assert!(fields.contains_key(f), "{f} missing from {fields:?}");
        }
        assert!(parse_patch(b"{}").is_err());
        assert!(parse_patch(b"[1]").is_err());
    }

    #[test]
    fn an_explicit_null_is_not_an_absent_field() {
        let e = parse_new_session(br#"{"client":{"id":"c","name":"C"},"psychologist":{"id":"p","name":"P"},"sessionDate":"2026-11-24T10:00:00.000Z","durationMinutes":50,"sessionType":"Individual","paymentStatus":"paid","status":null,"waitingRoom":null}"#, true)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        let fields = e.details["fields"].as_object().unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["status", "waitingRoom"], "{fields:?}");
    }

    #[test]
    fn accepts_a_good_body() {
        let n = parse_new_session(br#"{"client":{"id":"c","name":"C"},"psychologist":{"id":"p","name":"P"},"sessionDate":"2026-11-24T10:00:00.000Z","durationMinutes":50,"sessionType":"Individual","paymentStatus":"paid"}"#, true)
            .unwrap();
        assert_eq!(n.status, SessionStatus::Scheduled);
        assert!(n.waiting_room, "the configured default");
        assert_eq!(n.duration_minutes, 50);
    }
}
