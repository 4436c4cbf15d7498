//! The server API across a cluster (PROTOCOL.md sections 7 and 10), two in-process nodes on a
//! real nats-server: either node lists the rooms of both and shows where each participant
//! is; a kick from one node removes a participant held by the other (`error KICKED`, close
//! 4003, `user-left` reason `kicked`); a close removes everyone and the session stays
//! joinable; a PATCH to `refunded` ejects both participants of a live call, wherever they
//! are, with `PAYMENT_REQUIRED`; unknown rooms and participants are 404, non-admins 403.
//! And the time limits across nodes: each member is warned once, by its own node, when the
//! last threshold comes due during the call, then removed at the window's end.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/server_api.rs"]
mod server_api;

use std::sync::Arc;

use cluster_support::*;
use common::*;
use serde_json::json;
use server_api::*;

async fn two_nodes(nats: &NatsServer, name: &str, extra: &[(&str, &str)]) -> (TestNode, TestNode) {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let url = nats.url();
    let start = |id: &'static str| {
        let (url, name, data) = (url.clone(), name.to_owned(), data.clone());
        let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        async move {
            TestNode::start_in(data, move |s| {
                s.cluster.nats_url = Some(url);
                s.cluster.name = name;
                s.cluster.presence_ms = 200;
                s.cluster.dead_after_ms = 1_500;
                s.node_id = Some(id.into());
                for (k, v) in &extra {
                    s.set(k, v, "test").unwrap();
                }
            })
            .await
        }
    };
    (start("sa-a").await, start("sa-b").await)
}

fn participant<'a>(room: &'a serde_json::Value, socket: &str) -> &'a serde_json::Value {
    room["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["socketId"] == socket)
        .unwrap_or_else(|| panic!("{socket} not in {room}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_kick_and_close_from_either_node() {
    let nats = NatsServer::start();
    let (a, b) = two_nodes(&nats, "sapi1", &[]).await;
    let (session, room) = a.call().await;
    let (mut client, mut psy) = pair_in_room(&ws_base(&a), &ws_base(&b), &room).await;

    // Both nodes list the room with both participants and where each one is.
    for node in [&a, &b] {
        let (status, rooms) = api(node, "GET", "/api/rooms", None, None).await;
        assert_eq!(status, 200, "{rooms}");
        let r = rooms.as_array().unwrap().iter().find(|r| r["roomId"] == room.as_str()).expect("room listed");
        assert_eq!(r["sessionId"], session.as_str());
        assert!(r["createdAt"].is_string(), "{r}");
        assert_eq!(participant(r, &client.socket_id)["nodeId"], "sa-a");
        assert_eq!(participant(r, &psy.socket_id)["nodeId"], "sa-b");
    }
    let (status, shown) = api(&b, "GET", &format!("/api/rooms/{room}"), None, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["sessionId"], session.as_str());
    let p = participant(&shown, &client.socket_id);
    assert_eq!(
        (&p["userId"], &p["userRole"], &p["nodeId"], &p["state"]),
        (&json!("client-1"), &json!("client"), &json!("sa-a"), &json!("joined"))
    );
    assert_eq!(shown["participants"].as_array().unwrap().len(), 2);

    // A kick from node A of the participant node B holds.
    let path = format!("/api/rooms/{room}/participants/{}", psy.socket_id);
    let (status, body) = api(&a, "DELETE", &path, None, None).await;
    assert_eq!((status, &body), (200, &json!({ "removed": psy.socket_id })));
    psy.expect_error("KICKED").await;
    assert_eq!(psy.closed().await.0, Some(4003));
    let left = client.next_event("user-left").await;
    assert_eq!((&left["socketId"], &left["reason"]), (&json!(psy.socket_id), &json!("kicked")));
    let (_, shown) = api(&a, "GET", &format!("/api/rooms/{room}"), None, None).await;
    assert_eq!(shown["participants"].as_array().unwrap().len(), 1, "{shown}");
    // Kicking it again: no such participant any more.
    assert_eq!(api(&b, "DELETE", &path, None, None).await.0, 404);

    // Close from node B: everyone out, the session stays joinable.
    let mut psy = WsClient::connect(&b, &psy_token()).await;
    psy.join(&room).await;
    assert_eq!(client.next_event("user-joined").await["socketId"], psy.socket_id.as_str());
    let (status, body) = api(&b, "POST", &format!("/api/rooms/{room}/close"), None, None).await;
    assert_eq!((status, &body), (200, &json!({ "closed": room, "removed": 2 })));
    for ws in [&mut client, &mut psy] {
        removed_with(ws, "ROOM_CLOSED", "room_closed").await;
    }
    let (status, rooms) = api(&a, "GET", "/api/rooms", None, None).await;
    assert_eq!(status, 200);
    assert!(!rooms.as_array().unwrap().iter().any(|r| r["roomId"] == room.as_str()), "{rooms}");
    let mut again = WsClient::connect(&a, &client_token()).await;
    again.join(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_rooms_are_404_and_non_admins_403() {
    let nats = NatsServer::start();
    let (a, b) = two_nodes(&nats, "sapi2", &[]).await;
    let (_, room) = a.call().await;
    let (client, _psy) = pair_in_room(&ws_base(&a), &ws_base(&b), &room).await;
    let kick = format!("/api/rooms/{room}/participants/{}", client.socket_id);
    for (method, path) in [
        ("GET", "/api/rooms/no-such-room".to_owned()),
        ("DELETE", format!("/api/rooms/{room}/participants/no-such-socket")),
        ("DELETE", format!("/api/rooms/no-such-room/participants/{}", client.socket_id)),
        ("POST", "/api/rooms/no-such-room/close".to_owned()),
    ] {
        let (status, body) = api(&b, method, &path, None, None).await;
        assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")), "{method} {path}: {body}");
    }
    for who in [client_token(), psy_token()] {
        for (method, path) in [
            ("GET", "/api/rooms".to_owned()),
            ("GET", format!("/api/rooms/{room}")),
            ("DELETE", kick.clone()),
            ("POST", format!("/api/rooms/{room}/close")),
        ] {
            let (status, body) = api(&a, method, &path, Some(&who), None).await;
            assert_eq!((status, &body["error"]["code"]), (403, &json!("FORBIDDEN")), "{method} {path}: {body}");
        }
    }
    // Nobody was removed by any of that.
    let (_, shown) = api(&a, "GET", &format!("/api/rooms/{room}"), None, None).await;
    assert_eq!(shown["participants"].as_array().unwrap().len(), 2, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refund_ejects_both_participants_wherever_they_are() {
    let nats = NatsServer::start();
    let (a, b) = two_nodes(&nats, "sapi3", &[]).await;
    let (session, room) = a.call().await;
    let (mut client, mut psy) = pair_in_room(&ws_base(&a), &ws_base(&b), &room).await;
    let (status, s) =
        api(&b, "PATCH", &format!("/api/sessions/{session}"), None, Some(json!({ "paymentStatus": "refunded" }))).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!((&s["id"], &s["paymentStatus"]), (&json!(session), &json!("refunded")));
    for ws in [&mut client, &mut psy] {
        removed_with(ws, "PAYMENT_REQUIRED", "ejected").await;
    }
    // Gone from shared membership by the time PATCH answered.
    assert_eq!(api(&a, "GET", &format!("/api/rooms/{room}"), None, None).await.0, 404);
    let mut again = WsClient::connect(&a, &client_token()).await;
    again.send("join-room", json!({ "roomId": room })).await;
    again.expect_error("PAYMENT_REQUIRED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn time_limits_warn_each_member_once_on_its_own_node_then_remove_it() {
    let nats = NatsServer::start();
    // Pings every 60 s: the test clients read nothing (so answer no ping) while they wait.
    let extra =
        [("rooms.grace_minutes", "0"), ("limits.session_ending_minutes", "1"), ("limits.heartbeat_ms", "60000")];
    let (a, b) = two_nodes(&nats, "sapi4", &extra).await;
    // The window ends 63 s from now: the 1-minute warning comes due during the call.
    let ends = tokio::time::Instant::now() + std::time::Duration::from_secs(63);
    let (_, room) = session_and_room(&a, ending_in(63, "Individual")).await;
    let (mut client, mut psy) = pair_in_room(&ws_base(&a), &ws_base(&b), &room).await;
    for ws in [&mut client, &mut psy] {
        assert_eq!(ws.next_event("session-ending").await, json!({ "minutesLeft": 1 }));
    }
    // Waiting for the clock to reach the end (each removal is then awaited as usual). The
    // next thing either hears is its removal: no second warning from the other node.
    tokio::time::sleep_until(ends).await;
    for ws in [&mut client, &mut psy] {
        let frames = removed_with(ws, "OUTSIDE_TIME_WINDOW", "ejected").await;
        assert!(!frames.iter().any(|f| f["event"] == "session-ending"), "warned twice: {frames:?}");
    }
}
