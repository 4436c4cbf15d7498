//! Helpers of the server API and time-limit tests: admin requests and what a removed
//! member reads before its socket closes.
#![allow(dead_code)]

use serde_json::{json, Value};

use super::{admin, TestNode, WsClient};

/// `method path` on `node` with `token` (admin's when None); the status and JSON body.
pub async fn api(node: &TestNode, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let admin = admin();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = node.http.request(m, node.url(path)).header("x-auth-token", token.unwrap_or(&admin));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The member is told `error <code>` and closed with 4003; frames before the error may only
/// be `user-left` (its peers removed too, with `reason`) or, before it, `session-ending`.
/// Returns the frames read.
pub async fn removed_with(ws: &mut WsClient, code: &str, peer_reason: &str) -> Vec<Value> {
    let (close, frames) = ws.closed().await;
    let err = frames.iter().position(|f| f["event"] == "error").unwrap_or_else(|| panic!("no error in {frames:?}"));
    assert_eq!(frames[err]["data"]["code"], code, "{frames:?}");
    for (i, f) in frames.iter().enumerate().filter(|(i, _)| *i != err) {
        match f["event"].as_str() {
            Some("user-left") => assert_eq!(f["data"]["reason"], peer_reason, "{f}"),
            Some("session-ending") if i < err => {}
            _ => panic!("unexpected frame around the removal: {f}"),
        }
    }
    assert_eq!(close, Some(4003), "{frames:?}");
    frames
}

/// A session body whose join window (with `rooms.grace_minutes = 0`) ends `secs` seconds
/// from now: `durationMinutes` 1, so `sessionDate` is 60 - `secs` seconds ago.
pub fn ending_in(secs: i64, session_type: &str) -> Value {
    let date = chrono::Utc::now() - chrono::Duration::seconds(60 - secs);
    json!({
        "client": { "id": "client-1", "name": "Client One" },
        "psychologist": { "id": "psy-1", "name": "Dr. Psy" },
        "sessionDate": date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "durationMinutes": 1,
        "sessionType": session_type,
        "paymentStatus": "paid",
    })
}

/// Creates the session `body` (as admin) and its room; returns (session id, room id).
pub async fn session_and_room(node: &TestNode, body: Value) -> (String, String) {
    let (status, s) = api(node, "POST", "/api/sessions", None, Some(body)).await;
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let room = node.room_for(&id, "client-1").await;
    (id, room)
}
