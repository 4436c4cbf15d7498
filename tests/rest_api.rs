mod common;
use common::*;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use signalgrid_actors::identity::Role;

const NO_SUCH_SESSION: &str = "0123456789abcdef01234567";

fn stranger() -> String {
    token("stranger-9", Role::Client)
}

/// Sends a request (bounded by WAIT); returns status, x-request-id header and JSON body.
async fn send(req: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let res = tokio::time::timeout(WAIT, req.send()).await.expect("request timed out").expect("request sent");
    let status = res.status().as_u16();
    let rid = res.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, rid, body)
}

/// Asserts the contract's error shape with `code` and `status`; returns the error object.
async fn expect_err(req: reqwest::RequestBuilder, status: u16, code: &str) -> Value {
    let (st, rid, body) = send(req).await;
    assert_eq!(st, status, "status for {code}: {body}");
    assert_eq!(body["success"], false, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["details"].is_object(), "{body}");
    let ts = e["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(ts).expect("timestamp is RFC 3339");
    let rid = rid.expect("x-request-id header on an error");
    assert_eq!(e["requestId"], rid.as_str(), "{body}");
    e.clone()
}

async fn ok_json(req: reqwest::RequestBuilder, status: u16) -> Value {
    let (st, _, body) = send(req).await;
    assert_eq!(st, status, "{body}");
    body
}

fn vc(action: &str, id: &str) -> String {
    format!("/api/video-calls/{action}/{id}")
}

/// The stored session, read as admin.
async fn session_of(node: &TestNode, id: &str) -> Value {
    ok_json(node.get(&format!("/api/sessions/{id}"), Some(&admin())), 200).await
}

async fn new_session(node: &TestNode, f: impl FnOnce(&mut SessionSpec)) -> String {
    let mut spec = SessionSpec::default();
    f(&mut spec);
    let s = node.create_session(&spec).await;
    s["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn config_lists_stun_and_static_turn() {
    let node = TestNode::start_with(|s| {
        s.ice.stun_urls = vec!["stun:a.example:3478".into(), "stun:b.example:3478".into()];
        s.ice.turn_url = Some("turn:turn.example:3478".into());
        s.ice.turn_username = Some("turn-user".into());
        s.ice.turn_password = Some("turn-pass".into());
        s.ice.turn_secret = None;
    })
    .await;
    let v = ok_json(node.get("/api/video-calls/config", Some(&client_token())), 200).await;
    let servers = v["iceServers"].as_array().expect("iceServers");
    assert_eq!(servers.len(), 3, "{v}");
    assert_eq!(servers[0]["urls"], "stun:a.example:3478");
    assert_eq!(servers[1]["urls"], "stun:b.example:3478");
    assert_eq!(servers[2]["urls"], "turn:turn.example:3478");
    assert_eq!(servers[2]["username"], "turn-user");
    assert_eq!(servers[2]["credential"], "turn-pass");
    assert!(v.get("ttl").is_none(), "static credentials carry no ttl: {v}");
    expect_err(node.get("/api/video-calls/config", None), 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn config_time_limited_turn_credentials() {
    let secret = "turn-shared-secret";
    let node = TestNode::start_with(|s| {
        s.ice.stun_urls = vec!["stun:a.example:3478".into()];
        s.ice.turn_url = Some("turn:turn.example:3478".into());
        s.ice.turn_secret = Some(secret.into());
        s.ice.turn_ttl_secs = 3600;
    })
    .await;
    let before = chrono::Utc::now().timestamp();
    let v = ok_json(node.get("/api/video-calls/config", Some(&psy_token())), 200).await;
    let after = chrono::Utc::now().timestamp();
    assert_eq!(v["ttl"], 3600, "{v}");
    let servers = v["iceServers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"], "stun:a.example:3478");
    let turn = servers.iter().find(|s| s["urls"] == "turn:turn.example:3478").expect("a TURN entry");
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').expect("<expiry>:<userId>");
    assert_eq!(user, "psy-1");
    let expiry: i64 = expiry.parse().unwrap();
    assert!((before + 3600..=after + 3600).contains(&expiry), "{expiry}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected.as_str());
}

#[tokio::test]
async fn generate_room_once_and_only_for_participants() {
    let node = TestNode::start().await;
    let id = new_session(&node, |_| {}).await;
    let path = format!("/api/video-calls/generate-room/{id}");
    let first = ok_json(node.post(&path, Some(&client_token())), 200).await;
    let room = first["roomId"].as_str().expect("roomId").to_owned();
    assert!(!room.is_empty());
    assert_eq!(first["sessionId"], id.as_str());
    assert_eq!(first["sessionType"], "Individual");
    assert!(first["sessionDate"].is_string());
    assert_eq!(first["participants"]["client"]["id"], "client-1");
    assert_eq!(first["participants"]["client"]["name"], "Client One");
    assert_eq!(first["participants"]["psychologist"]["id"], "psy-1");
    assert_eq!(first["participants"]["psychologist"]["name"], "Dr. Psy");
    // Later calls, by anyone allowed, return the same room.
    for t in [psy_token(), admin(), client_token()] {
        let again = ok_json(node.post(&path, Some(&t)), 200).await;
        assert_eq!(again["roomId"], room.as_str());
    }
    let s = session_of(&node, &id).await;
    assert_eq!(s["meetingLink"], room.as_str());
    expect_err(node.post(&path, Some(&stranger())), 403, "FORBIDDEN").await;
    // Only the caller is checked: payment, status and time are for joining.
    let pending = new_session(&node, |s| {
        s.payment = "pending";
        s.starts_in = 60 * 24 * 7;
    })
    .await;
    let cancelled = new_session(&node, |s| s.status = "Cancelled").await;
    for sid in [pending, cancelled] {
        let p = format!("/api/video-calls/generate-room/{sid}");
        let v = ok_json(node.post(&p, Some(&psy_token())), 200).await;
        assert!(v["roomId"].as_str().is_some_and(|r| !r.is_empty() && r != room), "{v}");
    }
    expect_err(node.post("/api/video-calls/generate-room/not-an-id", Some(&admin())), 400, "INVALID_SESSION_ID").await;
    expect_err(node.post(&vc("generate-room", NO_SUCH_SESSION), Some(&admin())), 404, "SESSION_NOT_FOUND").await;
}

async fn can_join(node: &TestNode, id: &str, tok: &str) -> Value {
    let v = ok_json(node.get(&vc("can-join", id), Some(tok)), 200).await;
    assert!(v["canJoin"].is_boolean(), "{v}");
    assert!(v.get("reason").is_some() && v.get("minutesUntilSession").is_some(), "{v}");
    v
}

async fn assert_reason(node: &TestNode, id: &str, tok: &str, code: &str) {
    let v = can_join(node, id, tok).await;
    assert_eq!(v["canJoin"], false, "{v}");
    assert_eq!(v["reason"], code, "{v}");
}

#[tokio::test]
async fn can_join_reports_each_rule() {
    let node = TestNode::start().await;
    let c = client_token();
    let ok_id = new_session(&node, |_| {}).await;
    let v = can_join(&node, &ok_id, &c).await;
    assert_eq!(v["canJoin"], true, "{v}");
    assert!(v["reason"].is_null(), "{v}");
    assert_eq!(v["minutesUntilSession"], 0, "{v}");

    assert_reason(&node, "not-an-id", &c, "INVALID_SESSION_ID").await;
    assert_reason(&node, NO_SUCH_SESSION, &c, "SESSION_NOT_FOUND").await;
    assert_reason(&node, &ok_id, &stranger(), "FORBIDDEN").await;
    for status in ["Cancelled", "Completed"] {
        let id = new_session(&node, |s| s.status = status).await;
        assert_reason(&node, &id, &c, "SESSION_CLOSED").await;
    }
    let pending = new_session(&node, |s| s.payment = "pending").await;
    assert_reason(&node, &pending, &c, "PAYMENT_REQUIRED").await;

    let future = new_session(&node, |s| s.starts_in = 120).await;
    assert_reason(&node, &future, &c, "OUTSIDE_TIME_WINDOW").await;
    let m = can_join(&node, &future, &c).await["minutesUntilSession"].as_i64().unwrap();
    assert!((1..=120).contains(&m), "{m}");
    let past = new_session(&node, |s| {
        s.starts_in = -300;
        s.duration = 50;
    })
    .await;
    assert_reason(&node, &past, &psy_token(), "OUTSIDE_TIME_WINDOW").await;

    // The first failing rule of the table gives the code.
    let closed_unpaid = new_session(&node, |s| {
        s.status = "Cancelled";
        s.payment = "pending";
        s.starts_in = 600;
    })
    .await;
    assert_reason(&node, &closed_unpaid, &stranger(), "FORBIDDEN").await;
    assert_reason(&node, &closed_unpaid, &c, "SESSION_CLOSED").await;
    let unpaid_later = new_session(&node, |s| {
        s.payment = "failed";
        s.starts_in = 600;
    })
    .await;
    assert_reason(&node, &unpaid_later, &c, "PAYMENT_REQUIRED").await;

    // Only a missing or bad token is an error.
    expect_err(node.get(&vc("can-join", &ok_id), None), 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn can_join_room_full_counts_admins() {
    let node = TestNode::start().await;
    let (id, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room).await;
    let joined = b.join(&room).await;
    assert_eq!(joined["participants"].as_array().unwrap().len(), 2);
    assert_reason(&node, &id, &admin(), "ROOM_FULL").await;
    // A member asking again is not refused for capacity (a rejoin replaces).
    let v = can_join(&node, &id, &client_token()).await;
    assert_eq!(v["canJoin"], true, "{v}");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn start_is_idempotent_and_applies_join_rules() {
    let node = TestNode::start().await;
    let id = new_session(&node, |_| {}).await;
    let path = format!("/api/video-calls/start/{id}");
    let first = ok_json(node.post(&path, Some(&client_token())), 200).await;
    assert!(first["message"].is_string());
    assert_eq!(first["session"]["id"], id.as_str());
    assert_eq!(first["session"]["status"], "In Progress");
    let started = first["session"]["videoCallStarted"].clone();
    assert!(started.is_string(), "{first}");
    let second = ok_json(node.post(&path, Some(&psy_token())), 200).await;
    assert_eq!(second["session"]["videoCallStarted"], started);
    assert_eq!(second["session"]["status"], "In Progress");
    let s = session_of(&node, &id).await;
    assert_eq!(s["videoCallStarted"], started);
    assert_eq!(s["status"], "In Progress");

    let pending = new_session(&node, |s| s.payment = "pending").await;
    expect_err(node.post(&vc("start", &pending), Some(&client_token())), 402, "PAYMENT_REQUIRED").await;
    let s = session_of(&node, &pending).await;
    assert!(s["videoCallStarted"].is_null(), "a refused start changes nothing: {s}");
    let cancelled = new_session(&node, |s| s.status = "Cancelled").await;
    let future = new_session(&node, |s| s.starts_in = 180).await;
    for (sid, tok, st, code) in [
        (id.as_str(), stranger(), 403, "FORBIDDEN"),
        (cancelled.as_str(), client_token(), 409, "SESSION_CLOSED"),
        (future.as_str(), client_token(), 403, "OUTSIDE_TIME_WINDOW"),
        ("xyz", client_token(), 400, "INVALID_SESSION_ID"),
        (NO_SUCH_SESSION, client_token(), 404, "SESSION_NOT_FOUND"),
    ] {
        let p = format!("/api/video-calls/start/{sid}");
        expect_err(node.post(&p, Some(&tok)), st, code).await;
    }
    // An admin is a participant for start.
    let other = new_session(&node, |_| {}).await;
    let v = ok_json(node.post(&vc("start", &other), Some(&admin())), 200).await;
    assert_eq!(v["session"]["status"], "In Progress");
}

#[tokio::test]
async fn end_requires_start_then_completes_idempotently() {
    let node = TestNode::start().await;
    let id = new_session(&node, |_| {}).await;
    let end = format!("/api/video-calls/end/{id}");
    expect_err(node.post(&end, Some(&client_token())), 409, "CALL_NOT_STARTED").await;
    ok_json(node.post(&vc("start", &id), Some(&client_token())), 200).await;
    expect_err(node.post(&end, Some(&stranger())), 403, "FORBIDDEN").await;
    let v = ok_json(node.post(&end, Some(&psy_token())), 200).await;
    assert!(v["message"].is_string());
    let duration = v["duration"].as_i64().expect("duration in whole minutes");
    assert!(duration >= 0);
    assert_eq!(v["session"]["status"], "Completed");
    assert_eq!(v["session"]["callDuration"], duration);
    let s1 = session_of(&node, &id).await;
    assert_eq!(s1["status"], "Completed");
    assert_eq!(s1["callDuration"], duration);
    let started = chrono::DateTime::parse_from_rfc3339(s1["videoCallStarted"].as_str().unwrap());
    let ended = chrono::DateTime::parse_from_rfc3339(s1["videoCallEnded"].as_str().unwrap());
    assert!(ended.unwrap() >= started.unwrap());
    // Idempotent: same answer, nothing changes.
    let again = ok_json(node.post(&end, Some(&client_token())), 200).await;
    assert_eq!(again["duration"], duration);
    assert_eq!(again["session"]["status"], "Completed");
    let s2 = session_of(&node, &id).await;
    assert_eq!(s2["videoCallEnded"], s1["videoCallEnded"]);
    assert_eq!(s2["callDuration"], s1["callDuration"]);
    // A completed session cannot be started again.
    expect_err(node.post(&vc("start", &id), Some(&client_token())), 409, "SESSION_CLOSED").await;
    expect_err(node.post("/api/video-calls/end/bad", Some(&admin())), 400, "INVALID_SESSION_ID").await;
}

#[tokio::test]
async fn create_session_is_admin_only_and_validated() {
    let node = TestNode::start().await;
    let body = json!({
        "client": {"id": "c-7", "name": "Ann"},
        "psychologist": {"id": "p-7", "name": "Dr. Bo"},
        "sessionDate": "2030-01-02T10:00:00.000Z",
        "durationMinutes": 45,
        "sessionType": "Group",
        "paymentStatus": "pending"
    });
    expect_err(node.post("/api/sessions", Some(&client_token())).json(&body), 403, "FORBIDDEN").await;
    expect_err(node.post("/api/sessions", None).json(&body), 401, "UNAUTHORIZED").await;
    let s = ok_json(node.post("/api/sessions", Some(&admin())).json(&body), 201).await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(s["status"], "Scheduled", "default status: {s}");
    assert_eq!(s["sessionType"], "Group");
    assert_eq!(s["paymentStatus"], "pending");
    assert_eq!(s["durationMinutes"], 45);
    assert_eq!(s["client"]["id"], "c-7");

    let bad = json!({
        "client": {"id": "c-7"},
        "psychologist": {"id": "p-7", "name": "Dr. Bo"},
        "sessionDate": "next tuesday",
        "durationMinutes": 0,
        "sessionType": "Solo",
        "paymentStatus": "paid",
        "status": "Done"
    });
    let e = expect_err(node.post("/api/sessions", Some(&admin())).json(&bad), 400, "VALIDATION_ERROR").await;
    let fields = e["details"]["fields"].as_object().expect("details.fields");
    for f in ["client.name", "sessionDate", "durationMinutes", "sessionType", "status"] {
        assert!(fields.contains_key(f), "{f} missing: {e}");
    }
    for f in ["paymentStatus", "psychologist.id", "psychologist.name"] {
        assert!(!fields.contains_key(f), "{f} is valid: {e}");
    }
    let e = expect_err(
        node.post("/api/sessions", Some(&admin())).header("content-type", "application/json").body("{not json"),
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(e["details"]["fields"].is_object(), "{e}");
    let mut same = body.clone();
    same["psychologist"]["id"] = json!("c-7");
    same["paymentStatus"] = json!("unpaid");
    let e = expect_err(node.post("/api/sessions", Some(&admin())).json(&same), 400, "VALIDATION_ERROR").await;
    let fields = e["details"]["fields"].as_object().unwrap();
    assert!(fields.contains_key("psychologist.id"), "{e}");
    assert!(fields.contains_key("paymentStatus"), "{e}");
    assert!(!fields.contains_key("sessionDate"), "{e}");
}

#[tokio::test]
async fn get_session_access_and_null_video_fields() {
    let node = TestNode::start().await;
    let id = new_session(&node, |_| {}).await;
    let path = format!("/api/sessions/{id}");
    for t in [client_token(), psy_token(), admin()] {
        let s = ok_json(node.get(&path, Some(&t)), 200).await;
        assert_eq!(s["id"], id.as_str());
        for k in ["meetingLink", "videoCallStarted", "videoCallEnded", "callDuration", "lastAccessedAt", "recordingUrl"]
        {
            let v = s.get(k).unwrap_or_else(|| panic!("{k} missing: {s}"));
            assert!(v.is_null(), "{k} should be null: {s}");
        }
    }
    expect_err(node.get(&path, Some(&stranger())), 403, "FORBIDDEN").await;
    expect_err(node.get("/api/sessions/zzz", Some(&admin())), 400, "INVALID_SESSION_ID").await;
    expect_err(node.get(&format!("/api/sessions/{NO_SUCH_SESSION}"), Some(&admin())), 404, "SESSION_NOT_FOUND").await;
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let node = TestNode::start().await;
    let (st, rid, _) =
        send(node.get("/api/video-calls/config", Some(&client_token())).header("x-request-id", "req-ok-42")).await;
    assert_eq!(st, 200);
    assert_eq!(rid.as_deref(), Some("req-ok-42"));
    let e = expect_err(
        node.get("/api/sessions/zzz", Some(&admin())).header("x-request-id", "req-err-43"),
        400,
        "INVALID_SESSION_ID",
    )
    .await;
    assert_eq!(e["requestId"], "req-err-43");
    let (_, r1, _) = send(node.get("/healthz", None)).await;
    let (_, r2, _) = send(node.get("/healthz", None)).await;
    let (r1, r2) = (r1.expect("generated id"), r2.expect("generated id"));
    assert!(!r1.is_empty() && r1 != r2, "{r1} {r2}");
}

#[tokio::test]
async fn unknown_route_and_operational_endpoints() {
    let node = TestNode::start().await;
    expect_err(node.get("/no/such/route", None), 404, "NOT_FOUND").await;
    expect_err(node.get("/api/video-calls/nope", Some(&admin())), 404, "NOT_FOUND").await;
    let h = ok_json(node.get("/healthz", None), 200).await;
    assert!(h.is_object(), "{h}");
    let r = ok_json(node.get("/readyz", None), 200).await;
    assert_eq!(r["ready"], true, "{r}");
    ok_json(node.get("/api/video-calls/config", Some(&client_token())), 200).await;
    let (st, _, text) = send(node.get("/metrics", None)).await;
    assert_eq!(st, 200);
    let text = text.as_str().expect("metrics are text");
    assert!(text.contains("signalgrid_rest_requests_total"), "{text}");
}
