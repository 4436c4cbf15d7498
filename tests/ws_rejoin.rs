//! Joining the room you are already in: `room-joined` again, nothing to the others, on one
//! node and across two (docs/protocol.md, "Rules"). "Nothing" is shown with marker frames:
//! the peer's next frame after the re-join is a relay the re-joiner sent after it.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;

use std::sync::Arc;

use cluster_support::*;
use common::*;
use serde_json::{json, Value};

fn participant<'a>(joined: &'a Value, socket_id: &str) -> &'a Value {
    let all = joined["participants"].as_array().expect("participants");
    all.iter().find(|p| p["socketId"] == socket_id).unwrap_or_else(|| panic!("{socket_id} in {joined}"))
}

/// `a` (in `room` with `b`, joined as "Ann") joins `room` again, under another name.
async fn rejoin_is_silent(a: &mut WsClient, b: &mut WsClient, room: &str) {
    a.send("join-room", json!({"roomId": room, "userName": "Someone else"})).await;
    let again = a.next_event("room-joined").await;
    assert_eq!(socket_ids(&again), sorted(vec![a.socket_id.clone(), b.socket_id.clone()]), "{again}");
    assert_eq!(participant(&again, &a.socket_id)["userName"], "Ann", "a re-join keeps the name");

    // The peer's next frame is the re-joiner's relay: no user-left, no user-joined before it.
    marker(a, b, "after-rejoin").await;
    marker(b, a, "back").await;

    // A real leave and join still reach the peer, as the next frames (on two nodes this also
    // waits for every membership change the re-join may have sent the peer's node).
    a.send("leave-room", json!({"roomId": room})).await;
    let left = b.next_event("user-left").await;
    assert_eq!(left["socketId"], a.socket_id.as_str(), "{left}");
    a.join(room).await;
    let joined = b.next_event("user-joined").await;
    assert_eq!(joined["socketId"], a.socket_id.as_str(), "{joined}");
    marker(a, b, "after-leave-and-join").await;
}

async fn join_as_ann(a: &mut WsClient, b: &mut WsClient, room: &str) {
    a.send("join-room", json!({"roomId": room, "userName": "Ann"})).await;
    a.next_event("room-joined").await;
    b.join(room).await;
    assert_eq!(a.next_event("user-joined").await["socketId"], b.socket_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoining_your_room_tells_the_others_nothing() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    join_as_ann(&mut a, &mut b, &room).await;
    rejoin_is_silent(&mut a, &mut b, &room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoining_your_room_tells_a_peer_on_another_node_nothing() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "rejoin", &data, "node-a").await;
    let n2 = node(&nats.url(), "rejoin", &data, "node-b").await;
    let (_, room) = n1.call().await;
    let mut a = WsClient::connect(&n1, &client_token()).await;
    let mut b = WsClient::connect(&n2, &psy_token()).await;
    join_as_ann(&mut a, &mut b, &room).await;
    rejoin_is_silent(&mut a, &mut b, &room).await;
    // And the other way round: the peer on node-b re-joins, node-a's member hears nothing.
    b.send("join-room", json!({"roomId": room})).await;
    b.next_event("room-joined").await;
    marker(&mut b, &mut a, "b-rejoined").await;
}

/// A re-join is checked like any join: once the session is completed it is refused, and the
/// socket leaves the room (the peer gets `user-left`; relays from it find nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rejoin_leaves_the_room() {
    let node = TestNode::start().await;
    let (session, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    join_as_ann(&mut a, &mut b, &room).await;

    let res = node.post(&format!("/api/video-calls/end/{session}"), Some(&admin())).send().await.unwrap();
    assert_eq!(res.status(), 200);
    a.next_event("call-ended").await;
    b.next_event("call-ended").await;

    a.send("join-room", json!({"roomId": room})).await;
    let e = a.expect_error("SESSION_CLOSED").await;
    assert_eq!(e["details"]["roomId"], room.as_str(), "{e}");
    assert_eq!(b.next_event("user-left").await["socketId"], a.socket_id.as_str());
    let to = b.socket_id.clone();
    a.send("offer", json!({"offer": {}, "to": to})).await;
    a.expect_error("PEER_NOT_FOUND").await;
}
