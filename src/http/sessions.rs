//! `POST /api/sessions` (admin) and `GET /api/sessions/:id`.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use signalgrid_actors::errors::ErrorCode;
use signalgrid_actors::rules;
use signalgrid_actors::session::{NewSession, Party, PaymentStatus, SessionStatus, SessionType};
use warp::http::StatusCode;
use warp::reply::Response;

use super::context::{ok, Ctx, Reply};
use super::error::ApiError;

/// Longest accepted session, in minutes.
const MAX_DURATION_MINUTES: i64 = 24 * 60;

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
    let status = match &v["status"] {
        Value::Null => Some(SessionStatus::Scheduled),
        s => s.as_str().and_then(SessionStatus::parse),
    };
    if status.is_none() {
        note("status", "one of Scheduled, In Progress, Completed, Cancelled");
    }
    let waiting_room = match &v["waitingRoom"] {
        Value::Null => Some(default_waiting_room),
        w => w.as_bool(),
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
    fn accepts_a_good_body() {
        let n = parse_new_session(br#"{"client":{"id":"c","name":"C"},"psychologist":{"id":"p","name":"P"},"sessionDate":"2026-11-24T10:00:00.000Z","durationMinutes":50,"sessionType":"Individual","paymentStatus":"paid"}"#, true)
            .unwrap();
        assert_eq!(n.status, SessionStatus::Scheduled);
        assert!(n.waiting_room, "the configured default");
        assert_eq!(n.duration_minutes, 50);
    }
}
