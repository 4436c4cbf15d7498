mod common;
use common::*;

use serde_json::json;
use signalgrid_actors::identity::Role;

/// Two sockets (client-1, psy-1) joined in `room`, the first having seen the second join.
async fn pair(node: &TestNode, room: &str) -> (WsClient, WsClient) {
    let mut a = WsClient::connect(node, &client_token()).await;
    let mut b = WsClient::connect(node, &psy_token()).await;
    a.join(room).await;
    b.join(room).await;
    let uj = a.next_event("user-joined").await;
    assert_eq!(uj["socketId"], b.socket_id.as_str());
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_to_in_another_room_is_peer_not_found() {
    let node = TestNode::start().await;
    let (_, room_a) = node.call().await;
    let (mut a1, _a2) = pair(&node, &room_a).await;
    let spec = SessionSpec { client: "client-2".into(), psychologist: "psy-2".into(), ..SessionSpec::default() };
    let sb = node.create_session(&spec).await;
    let room_b = node.room_for(sb["id"].as_str().unwrap(), "client-2").await;
    let mut victim = WsClient::connect(&node, &token("client-2", Role::Client)).await;
    let mut partner = WsClient::connect(&node, &token("psy-2", Role::Psychologist)).await;
    victim.join(&room_b).await;
    partner.join(&room_b).await;
    victim.next_event("user-joined").await;

    let vid = victim.socket_id.clone();
    for (event, field) in [("offer", "offer"), ("answer", "answer"), ("ice-candidate", "candidate")] {
        a1.send(event, json!({ field: {"forged": true}, "to": vid })).await;
        let e = a1.expect_error("PEER_NOT_FOUND").await;
        assert_eq!(e["details"]["to"], vid.as_str(), "{e}");
    }
    // The victim's next frame is its own partner's marker: nothing forged was delivered.
    marker(&mut partner, &mut victim, "after-forgery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_to_and_relay_before_join_are_peer_not_found() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let (mut a, mut b) = pair(&node, &room).await;
    a.send("offer", json!({"offer": {"sdp": "x"}, "to": "0123456789abcdef0123456789abcdef"})).await;
    a.expect_error("PEER_NOT_FOUND").await;

    // A socket that joined nothing cannot relay, even to a real socket id.
    let mut loner = WsClient::connect(&node, &admin()).await;
    let bid = b.socket_id.clone();
    loner.send("ice-candidate", json!({"candidate": null, "to": bid})).await;
    loner.expect_error("PEER_NOT_FOUND").await;
    loner.send("answer", json!({"answer": {"sdp": "y"}, "to": "nobody"})).await;
    loner.expect_error("PEER_NOT_FOUND").await;
    marker(&mut a, &mut b, "after-loner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_joiner_of_individual_room_gets_room_full() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let (mut a, mut b) = pair(&node, &room).await;
    let mut third = WsClient::connect(&node, &admin()).await;
    third.send("join-room", json!({"roomId": room})).await;
    let e = third.expect_error("ROOM_FULL").await;
    assert_eq!(e["details"]["roomId"], room.as_str(), "{e}");
    // The first two are unaffected: no user-joined leaked, relays still work.
    marker(&mut a, &mut b, "after-full-1").await;
    marker(&mut b, &mut a, "after-full-2").await;
    // The refused joiner is in no room.
    let aid = a.socket_id.clone();
    third.send("offer", json!({"offer": {"sdp": "x"}, "to": aid})).await;
    third.expect_error("PEER_NOT_FOUND").await;
    // Its socket still works: once a member leaves, it can join.
    b.send("leave-room", json!({"roomId": room})).await;
    a.next_event("user-left").await;
    let j = third.join(&room).await;
    assert_eq!(socket_ids(&j), sorted(vec![a.socket_id.clone(), third.socket_id.clone()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_counts_toward_capacity() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut adm = WsClient::connect(&node, &admin()).await;
    a.join(&room).await;
    let j = adm.join(&room).await;
    assert_eq!(j["participants"].as_array().unwrap().len(), 2, "{j}");
    a.next_event("user-joined").await;
    let mut p = WsClient::connect(&node, &psy_token()).await;
    p.send("join-room", json!({"roomId": room})).await;
    p.expect_error("ROOM_FULL").await;
    marker(&mut adm, &mut a, "admin-still-there").await;
    marker(&mut a, &mut adm, "client-still-there").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_by_the_same_user_replaces_the_old_socket() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let (mut old, mut peer) = pair(&node, &room).await;
    let mut new = WsClient::connect(&node, &client_token()).await;
    let j = new.join(&room).await;
    assert_eq!(socket_ids(&j), sorted(vec![new.socket_id.clone(), peer.socket_id.clone()]));

    // The old socket: SESSION_REPLACED next, then closed.
    let e = old.expect_error("SESSION_REPLACED").await;
    assert_eq!(e["details"]["roomId"], room.as_str(), "{e}");
    let (code, rest) = old.closed().await;
    assert!(rest.is_empty(), "frames after SESSION_REPLACED: {rest:?}");
    assert_eq!(code, Some(4001));

    // The peer: user-left (old) and user-joined (new), in either order.
    let mut left = None;
    let mut joined = None;
    for _ in 0..2 {
        let f = peer.next().await;
        match f["event"].as_str() {
            Some("user-left") => left = Some(f["data"].clone()),
            Some("user-joined") => joined = Some(f["data"].clone()),
            _ => panic!("unexpected frame {f}"),
        }
    }
    assert_eq!(
        left.expect("user-left for the old socket"),
        json!({"socketId": old.socket_id, "userId": "client-1", "reason": "replaced"})
    );
    let joined = joined.expect("user-joined for the new socket");
    assert_eq!(joined["socketId"], new.socket_id.as_str());
    assert_eq!(joined["userId"], "client-1");

    // Relays reach the new socket, not the old one.
    marker(&mut peer, &mut new, "to-new").await;
    marker(&mut new, &mut peer, "from-new").await;
    let oid = old.socket_id.clone();
    peer.send("offer", json!({"offer": {"sdp": "x"}, "to": oid})).await;
    peer.expect_error("PEER_NOT_FOUND").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_rules_give_their_codes_and_the_socket_survives() {
    let node = TestNode::start().await;
    let room_of = |spec: SessionSpec| {
        let node = &node;
        async move {
            let s = node.create_session(&spec).await;
            node.room_for(s["id"].as_str().unwrap(), &spec.client).await
        }
    };
    let closed = room_of(SessionSpec { status: "Cancelled", ..SessionSpec::default() }).await;
    let unpaid = room_of(SessionSpec { payment: "pending", ..SessionSpec::default() }).await;
    let later = room_of(SessionSpec { starts_in: 120, ..SessionSpec::default() }).await;
    let (_, good) = node.call().await;

    let mut c = WsClient::connect(&node, &client_token()).await;
    for (room, code) in [(&closed, "SESSION_CLOSED"), (&unpaid, "PAYMENT_REQUIRED"), (&later, "OUTSIDE_TIME_WINDOW")] {
        c.send("join-room", json!({"roomId": room})).await;
        let e = c.expect_error(code).await;
        assert_eq!(e["details"]["roomId"], room.as_str(), "{e}");
        // Still open, and in no room.
        c.send("offer", json!({"offer": {}, "to": "nobody"})).await;
        c.expect_error("PEER_NOT_FOUND").await;
    }
    let j = c.join(&good).await;
    assert_eq!(socket_ids(&j), vec![c.socket_id.clone()]);

    // A stranger's token: FORBIDDEN, and the socket can then join its own session.
    let mut stranger = WsClient::connect(&node, &token("stranger-9", Role::Client)).await;
    stranger.send("join-room", json!({"roomId": good})).await;
    stranger.expect_error("FORBIDDEN").await;
    let own = room_of(SessionSpec { client: "stranger-9".into(), ..SessionSpec::default() }).await;
    let j = stranger.join(&own).await;
    assert_eq!(socket_ids(&j), vec![stranger.socket_id.clone()]);
    // Nothing reached the good room's member.
    let mut p = WsClient::connect(&node, &psy_token()).await;
    p.join(&good).await;
    c.next_event("user-joined").await;
    marker(&mut p, &mut c, "after-stranger").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_rules_apply_in_table_order() {
    let node = TestNode::start().await;
    let s = node
        .create_session(&SessionSpec {
            status: "Cancelled",
            payment: "failed",
            starts_in: 600,
            ..SessionSpec::default()
        })
        .await;
    let all_bad = node.room_for(s["id"].as_str().unwrap(), "client-1").await;
    let s = node.create_session(&SessionSpec { payment: "refunded", starts_in: 600, ..SessionSpec::default() }).await;
    let unpaid_later = node.room_for(s["id"].as_str().unwrap(), "client-1").await;

    let mut stranger = WsClient::connect(&node, &token("stranger-9", Role::Client)).await;
    stranger.send("join-room", json!({"roomId": "unknown-room"})).await;
    stranger.expect_error("SESSION_NOT_FOUND").await;
    stranger.send("join-room", json!({"roomId": all_bad})).await;
    stranger.expect_error("FORBIDDEN").await;

    let mut c = WsClient::connect(&node, &client_token()).await;
    c.send("join-room", json!({"roomId": all_bad})).await;
    c.expect_error("SESSION_CLOSED").await;
    c.send("join-room", json!({"roomId": unpaid_later})).await;
    c.expect_error("PAYMENT_REQUIRED").await;
}
