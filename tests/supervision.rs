mod common;
use common::*;

use std::sync::Arc;

use serde_json::json;
use signalgrid::app::App;
use signalgrid_actors::RoomId;

/// Waits until the node lists `room` (or no longer does). No event tells a test when a room
/// actor has been forgotten, so this polls, bounded in count and time.
async fn room_listed(app: &Arc<App>, room: &RoomId, want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for _ in 0..1000 {
        let rooms = app.node.rooms().await;
        if rooms.contains(room) == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "room listed: {}, wanted {want}: {rooms:?}", !want);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("room listed: {}, wanted {want}", !want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_actor_panic_is_survived() {
    let node = TestNode::start().await;
    let app = node.server.as_ref().unwrap().app.clone();
    let (_, room) = node.call().await;
    let room_id: RoomId = room.as_str().into();
    let (mut a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    marker(&mut a, &mut b, "before-fault").await;

    assert!(!app.node.inject_room_fault(&"no-such-room".into()).await, "no actor for an unknown room");
    assert!(app.node.inject_room_fault(&room_id).await);

    // Relays still work both ways.
    marker(&mut a, &mut b, "after-fault-1").await;
    marker(&mut b, &mut a, "after-fault-2").await;
    for seq in 0..20 {
        let to = b.socket_id.clone();
        a.send("ice-candidate", json!({"candidate": {"seq": seq}, "to": to})).await;
    }
    for seq in 0..20 {
        let c = b.next_event("ice-candidate").await;
        assert_eq!(c["candidate"]["seq"], seq, "{c}");
    }

    // A leave is still announced.
    b.send("leave-room", json!({"roomId": room})).await;
    let left = a.next_event("user-left").await;
    assert_eq!(left, json!({"socketId": b.socket_id, "userId": "psy-1", "reason": "left"}));

    // A new join into the room still works, with the right members.
    let mut b2 = WsClient::connect(&node, &psy_token()).await;
    let j = b2.join(&room).await;
    assert_eq!(j["roomId"], room.as_str());
    assert_eq!(socket_ids(&j), sorted(vec![a.socket_id.clone(), b2.socket_id.clone()]));
    let uj = a.next_event("user-joined").await;
    assert_eq!(uj["socketId"], b2.socket_id.as_str());
    marker(&mut b2, &mut a, "after-rejoin-1").await;
    marker(&mut a, &mut b2, "after-rejoin-2").await;
    // The old socket left for good: it is not reachable.
    let bid = b.socket_id.clone();
    a.send("offer", json!({"offer": {}, "to": bid})).await;
    a.expect_error("PEER_NOT_FOUND").await;

    let restarts = metric(&node, "signalgrid_room_restarts_total").await;
    assert!(restarts.is_some_and(|v| v >= 1.0), "{restarts:?}");
    let rooms = app.node.rooms().await;
    assert_eq!(rooms.iter().filter(|r| **r == room_id).count(), 1, "{rooms:?}");
    let members = app.node.room_members(&room_id).await;
    assert_eq!(members.len(), 2, "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_is_gone_after_both_members_leave() {
    let node = TestNode::start().await;
    let app = node.server.as_ref().unwrap().app.clone();
    let (_, room) = node.call().await;
    let room_id: RoomId = room.as_str().into();
    let (mut a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    assert!(app.node.rooms().await.contains(&room_id));

    // Also after a restart: the restarted actor must go away like the first one.
    assert!(app.node.inject_room_fault(&room_id).await);
    marker(&mut a, &mut b, "after-fault").await;

    a.send("leave-room", json!({"roomId": room})).await;
    b.next_event("user-left").await;
    b.send("leave-room", json!({"roomId": room})).await;
    // b's next request is handled after its leave finished.
    b.send("call-ended", json!({"roomId": room})).await;
    b.expect_error("FORBIDDEN").await;
    assert!(app.node.room_members(&room_id).await.is_empty());
    room_listed(&app, &room_id, false).await;

    // The room can be used again afterwards.
    let j = a.join(&room).await;
    assert_eq!(socket_ids(&j), vec![a.socket_id.clone()]);
    room_listed(&app, &room_id, true).await;
}
