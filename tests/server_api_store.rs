//! The server API on one node, on either store (scripts/test.sh runs this file again with
//! every node on MongoDB): `PATCH /api/sessions/:id` validates, stores and answers the
//! session; a change that closes the session ejects the live call's members with the rule's
//! code while an exempt admin stays and hears `user-left` reason `ejected`; the rooms list
//! shows who is `reconnecting`, and who is `waiting` once PATCH turned the waiting room on.

mod common;
#[path = "common/server_api.rs"]
mod server_api;

use common::*;
use serde_json::json;
use server_api::*;
use signalgrid_actors::identity::Role;

#[tokio::test]
async fn patch_validates_stores_and_guards() {
    let node = TestNode::start().await;
    let (session, _) = node.call().await;
    let path = format!("/api/sessions/{session}");
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let change =
        json!({ "paymentStatus": "pending", "status": "Scheduled", "sessionDate": later, "durationMinutes": 30 });
    let (status, s) = api(&node, "PATCH", &path, None, Some(change)).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!((&s["paymentStatus"], &s["durationMinutes"]), (&json!("pending"), &json!(30)));
    let (_, read) = api(&node, "GET", &path, None, None).await;
    assert_eq!(read, s, "the answer is the stored session");

    let (status, e) = api(&node, "PATCH", &path, None, Some(json!({ "status": "Done", "client": {} }))).await;
    assert_eq!((status, &e["error"]["code"]), (400, &json!("VALIDATION_ERROR")), "{e}");
    assert!(
        e["error"]["details"]["fields"]["status"].is_string() && e["error"]["details"]["fields"]["client"].is_string()
    );
    let (status, e) =
        api(&node, "PATCH", "/api/sessions/0123456789abcdef01234567", None, Some(json!({ "status": "Cancelled" })))
            .await;
    assert_eq!((status, &e["error"]["code"]), (404, &json!("SESSION_NOT_FOUND")), "{e}");
    let (status, e) = api(&node, "PATCH", &path, Some(&client_token()), Some(json!({ "status": "Cancelled" }))).await;
    assert_eq!((status, &e["error"]["code"]), (403, &json!("FORBIDDEN")), "{e}");
    let (_, read) = api(&node, "GET", &path, None, None).await;
    assert_eq!(read["status"], "Scheduled", "a refused PATCH changes nothing");
}

#[tokio::test]
async fn cancelling_ejects_the_call_but_not_an_exempt_admin() {
    let node = TestNode::start_with(|s| s.rooms.admin_bypass = true).await;
    let spec = SessionSpec { session_type: "Group", ..SessionSpec::default() };
    let s = node.create_session(&spec).await;
    let session = s["id"].as_str().unwrap().to_owned();
    let room = node.room_for(&session, "client-1").await;
    let (mut client, mut psy) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let mut ops = WsClient::connect(&node, &token("ops-1", Role::Admin)).await;
    ops.join(&room).await;
    client.next_event("user-joined").await;
    psy.next_event("user-joined").await;

    // A refund: the admin (payment and time exempt here) stays.
    let (status, _) =
        api(&node, "PATCH", &format!("/api/sessions/{session}"), None, Some(json!({ "paymentStatus": "refunded" })))
            .await;
    assert_eq!(status, 200);
    for ws in [&mut client, &mut psy] {
        removed_with(ws, "PAYMENT_REQUIRED", "ejected").await;
    }
    let mut gone = [ops.next_event("user-left").await, ops.next_event("user-left").await];
    gone.sort_by_key(|l| l["socketId"].as_str().unwrap().to_owned());
    let mut want = vec![client.socket_id.clone(), psy.socket_id.clone()];
    want.sort();
    for (l, id) in gone.iter().zip(&want) {
        assert_eq!((&l["socketId"], &l["reason"]), (&json!(id), &json!("ejected")));
    }
    // Cancelled: nobody is exempt from a closed session.
    let (status, _) =
        api(&node, "PATCH", &format!("/api/sessions/{session}"), None, Some(json!({ "status": "Cancelled" }))).await;
    assert_eq!(status, 200);
    removed_with(&mut ops, "SESSION_CLOSED", "ejected").await;
    assert_eq!(api(&node, "GET", "/api/rooms", None, None).await.1, json!([]));
}

#[tokio::test]
async fn a_seat_waiting_for_its_resume_is_listed_reconnecting() {
    let node = TestNode::start().await;
    let (session, room) = node.call().await;
    let (client, mut psy) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let seat = client.drop_socket();
    assert_eq!(psy.next_event("user-reconnecting").await["socketId"], seat.socket_id.as_str());
    let (status, rooms) = api(&node, "GET", "/api/rooms", None, None).await;
    assert_eq!(status, 200, "{rooms}");
    let r = &rooms[0];
    assert_eq!((&r["roomId"], &r["sessionId"]), (&json!(room), &json!(session)));
    let states: Vec<(String, String)> = r["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["socketId"].as_str().unwrap().to_owned(), p["state"].as_str().unwrap().to_owned()))
        .collect();
    assert!(states.contains(&(seat.socket_id.clone(), "reconnecting".into())), "{states:?}");
    assert!(states.contains(&(psy.socket_id.clone(), "joined".into())), "{states:?}");
    // A kick of the away seat removes it all the same.
    let path = format!("/api/rooms/{room}/participants/{}", seat.socket_id);
    assert_eq!(api(&node, "DELETE", &path, None, None).await.0, 200);
    let left = psy.next_event("user-left").await;
    assert_eq!((&left["socketId"], &left["reason"]), (&json!(seat.socket_id), &json!("kicked")));
}

/// `PATCH /api/sessions/:id` turns the waiting room on (PROTOCOL.md section 8): the client
/// who joins next waits, and `GET /api/rooms/:roomId` lists it with state `waiting` (section
/// 7) next to the `joined` host; turned off again, the next client joins at once. A
/// `waitingRoom` that is not a boolean is a VALIDATION_ERROR.
#[tokio::test]
async fn patch_turns_the_waiting_room_on_and_waiting_clients_are_listed_waiting() {
    let node = TestNode::start().await;
    let (session, room) = node.call().await;
    let path = format!("/api/sessions/{session}");
    let (status, s) = api(&node, "PATCH", &path, None, Some(json!({ "waitingRoom": true }))).await;
    assert_eq!((status, &s["waitingRoom"]), (200, &json!(true)), "{s}");
    let (_, read) = api(&node, "GET", &path, None, None).await;
    assert_eq!(read["waitingRoom"], true, "stored: {read}");
    let (status, e) = api(&node, "PATCH", &path, None, Some(json!({ "waitingRoom": "yes" }))).await;
    assert_eq!((status, &e["error"]["code"]), (400, &json!("VALIDATION_ERROR")), "{e}");
    assert!(e["error"]["details"]["fields"]["waitingRoom"].is_string(), "{e}");

    let mut host = WsClient::connect(&node, &psy_token()).await;
    host.join(&room).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    client.send("join-room", json!({ "roomId": room })).await;
    client.next_event("waiting").await;
    host.next_event("participant-waiting").await;
    let (status, r) = api(&node, "GET", &format!("/api/rooms/{room}"), None, None).await;
    assert_eq!(status, 200, "{r}");
    let states: Vec<(String, String)> = r["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["socketId"].as_str().unwrap().to_owned(), p["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(states.len(), 2, "{r}");
    assert!(states.contains(&(client.socket_id.clone(), "waiting".into())), "{states:?}");
    assert!(states.contains(&(host.socket_id.clone(), "joined".into())), "{states:?}");

    // Off again: the next client joins without waiting.
    client.send("leave-room", json!({ "roomId": room })).await;
    host.next_event("user-left").await;
    let (status, s) = api(&node, "PATCH", &path, None, Some(json!({ "waitingRoom": false }))).await;
    assert_eq!((status, &s["waitingRoom"]), (200, &json!(false)), "{s}");
    client.join(&room).await;
    host.next_event("user-joined").await;
}
