mod common;
use common::*;

use futures_util::StreamExt;
use serde_json::{json, Value};
use signalgrid_actors::identity::Role;
use tokio_tungstenite::tungstenite::Message;

/// The next text frame, unparsed (pings and pongs skipped), so payloads can be compared
/// byte for byte.
async fn next_text(c: &mut WsClient) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Sends `{"event":event,"data":{field:<payload text>,"to":to}}` with the payload text as is.
async fn send_relay_raw(c: &mut WsClient, event: &str, field: &str, payload: &str, to: &str) {
    let frame = format!(r#"{{"event":"{event}","data":{{"{field}":{payload},"to":"{to}"}}}}"#);
    c.send_raw(&frame).await;
}

/// Reads the next frame, which must be `event` from `from` carrying `payload` verbatim.
async fn expect_relay_raw(c: &mut WsClient, event: &str, field: &str, payload: &str, from: &str) {
    let text = next_text(c).await;
    let v: Value = serde_json::from_str(&text).expect("server sent JSON");
    assert_eq!(v["event"], event, "{text}");
    assert_eq!(v["data"]["from"], from, "{text}");
    let sent: Value = serde_json::from_str(payload).unwrap();
    assert_eq!(v["data"][field], sent, "{text}");
    assert!(
        text.contains(&format!("\"{field}\":{payload}")),
        "payload not relayed byte for byte: sent {payload}, got {text}"
    );
}

fn participant<'a>(joined: &'a Value, socket_id: &str) -> &'a Value {
    joined["participants"]
        .as_array()
        .expect("participants is an array")
        .iter()
        .find(|p| p["socketId"] == socket_id)
        .unwrap_or_else(|| panic!("{socket_id} not in {joined}"))
}

async fn session(node: &TestNode, id: &str) -> Value {
    let res = node.get(&format!("/api/sessions/{id}"), Some(&admin())).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_two_client_call() {
    let node = TestNode::start().await;
    let (session_id, room) = node.call().await;
    let app = node.server.as_ref().unwrap().app.clone();

    // connect: the first frame is `connected {socketId, nodeId, heartbeatMs}`.
    let (ws, _) = tokio_tungstenite::connect_async(node.ws_url(&client_token())).await.expect("connect");
    let mut a = WsClient::unstarted(ws);
    let first: Value = serde_json::from_str(&next_text(&mut a).await).unwrap();
    assert_eq!(first["event"], "connected", "{first}");
    let hello = &first["data"];
    a.socket_id = hello["socketId"].as_str().expect("socketId").to_owned();
    assert!(!a.socket_id.is_empty());
    assert_eq!(hello["nodeId"], &*app.node_id);
    assert_eq!(hello["heartbeatMs"], app.settings.limits.heartbeat_ms);
    let mut b = WsClient::connect(&node, &psy_token()).await;
    assert_ne!(a.socket_id, b.socket_id);

    // join: room-joined lists everyone, the joiner included; the earlier member gets
    // user-joined; the joiner gets none about itself.
    let ja = a.join(&room).await;
    assert_eq!(ja["roomId"], room.as_str());
    assert_eq!(ja["participants"].as_array().unwrap().len(), 1, "{ja}");
    b.send("join-room", json!({"roomId": room, "userName": "Dr. P", "userId": "someone-else"})).await;
    let jb = b.next_event("room-joined").await;
    assert_eq!(jb["roomId"], room.as_str());
    assert_eq!(jb["participants"].as_array().unwrap().len(), 2, "{jb}");
    let pa = participant(&jb, &a.socket_id);
    assert_eq!(pa["userId"], "client-1");
    assert_eq!(pa["userRole"], "client");
    assert!(pa["userName"].as_str().is_some_and(|n| !n.is_empty()), "{pa}");
    let pb = participant(&jb, &b.socket_id);
    assert_eq!(pb["userId"], "psy-1", "identity comes from the token");
    assert_eq!(pb["userRole"], "psychologist");
    assert_eq!(pb["userName"], "Dr. P");
    let uj = a.next_event("user-joined").await;
    assert_eq!(&uj, pb, "user-joined carries the joiner as room-joined lists it");
    marker(&mut a, &mut b, "no-self-user-joined").await;

    // offer / answer / ice-candidate both ways, payload byte for byte, unknown fields kept.
    let offer = r#"{"type":"offer","sdp":"v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\n","x-tool":{"n":1.50,"list":[1, 2 ,3],"u":"\u00e9"}}"#;
    let answer = r#"{"type":"answer","sdp":"v=0\r\n","extra":[null,{"k":"v"}]}"#;
    let cand = r#"{"candidate":"candidate:1 1 UDP 2122 192.0.2.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abc","custom":{"deep":true}}"#;
    let (ida, idb) = (a.socket_id.clone(), b.socket_id.clone());
    send_relay_raw(&mut a, "offer", "offer", offer, &idb).await;
    expect_relay_raw(&mut b, "offer", "offer", offer, &ida).await;
    send_relay_raw(&mut b, "answer", "answer", answer, &ida).await;
    expect_relay_raw(&mut a, "answer", "answer", answer, &idb).await;
    send_relay_raw(&mut a, "ice-candidate", "candidate", cand, &idb).await;
    expect_relay_raw(&mut b, "ice-candidate", "candidate", cand, &ida).await;
    send_relay_raw(&mut b, "offer", "offer", offer, &ida).await;
    expect_relay_raw(&mut a, "offer", "offer", offer, &idb).await;
    send_relay_raw(&mut a, "answer", "answer", answer, &idb).await;
    expect_relay_raw(&mut b, "answer", "answer", answer, &ida).await;
    send_relay_raw(&mut b, "ice-candidate", "candidate", cand, &ida).await;
    expect_relay_raw(&mut a, "ice-candidate", "candidate", cand, &idb).await;
    // End of candidates: `candidate: null` is relayed as null.
    send_relay_raw(&mut a, "ice-candidate", "candidate", "null", &idb).await;
    let end = b.next_event("ice-candidate").await;
    assert!(end.as_object().unwrap().contains_key("candidate"), "{end}");
    assert!(end["candidate"].is_null(), "{end}");
    assert_eq!(end["from"], ida.as_str());

    // Order per sender is kept.
    for seq in 0..50 {
        a.send("ice-candidate", json!({"candidate": {"candidate": "c", "seq": seq}, "to": idb})).await;
    }
    for seq in 0..50 {
        let c = b.next_event("ice-candidate").await;
        assert_eq!(c["candidate"]["seq"], seq, "out of order: {c}");
        assert_eq!(c["from"], ida.as_str());
    }

    // leave-room: the other gets user-left {socketId, userId, reason: left}.
    b.send("leave-room", json!({"roomId": room})).await;
    let left = a.next_event("user-left").await;
    assert_eq!(left, json!({"socketId": idb, "userId": "psy-1", "reason": "left"}));
    b.send("offer", json!({"offer": {"sdp": "x"}, "to": ida})).await;
    b.expect_error("PEER_NOT_FOUND").await;

    // Rejoin.
    let jb = b.join(&room).await;
    assert_eq!(jb["participants"].as_array().unwrap().len(), 2, "{jb}");
    participant(&jb, &ida);
    let uj = a.next_event("user-joined").await;
    assert_eq!(uj["socketId"], idb.as_str());
    marker(&mut b, &mut a, "after-rejoin").await;

    // Closing a socket (1000) is a leave.
    b.close().await;
    let left = a.next_event("user-left").await;
    assert_eq!(left, json!({"socketId": idb, "userId": "psy-1", "reason": "left"}));

    // call-ended: everyone in the room, the sender included; the session is completed.
    let mut b2 = WsClient::connect(&node, &psy_token()).await;
    b2.join(&room).await;
    let uj = a.next_event("user-joined").await;
    assert_eq!(uj["socketId"], b2.socket_id.as_str());
    b2.send("call-ended", json!({"roomId": room, "duration": 999})).await;
    let mut durations = Vec::new();
    for c in [&mut a, &mut b2] {
        let ended = c.next_event("call-ended").await;
        assert_eq!(ended["roomId"], room.as_str(), "{ended}");
        assert_eq!(ended["endedBy"], "psy-1", "{ended}");
        assert!(ended["duration"].is_i64(), "{ended}");
        durations.push(ended["duration"].clone());
    }
    assert_eq!(durations[0], durations[1]);
    assert_ne!(durations[0], 999, "the client's duration is advisory");
    let s = session(&node, &session_id).await;
    assert!(s["videoCallEnded"].is_string(), "{s}");
    assert!(s["callDuration"].is_number(), "{s}");
    assert_eq!(s["callDuration"], durations[0], "{s}");
    assert_eq!(s["status"], "Completed", "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_ended_from_outside_the_room_is_forbidden() {
    let node = TestNode::start().await;
    let (session_id, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    // A join records the access after room-joined; a request of the same socket is handled
    // after that, so its answer says the join is fully done.
    for c in [&mut a, &mut b] {
        c.send("call-ended", json!({"roomId": "settle"})).await;
        c.expect_error("FORBIDDEN").await;
    }
    let before = session(&node, &session_id).await;

    // An admin socket that did not join, and a participant's socket in another room.
    let mut outsider = WsClient::connect(&node, &admin()).await;
    outsider.send("call-ended", json!({"roomId": room, "duration": 5})).await;
    outsider.expect_error("FORBIDDEN").await;
    let (_, other_room) = node.call().await;
    let mut elsewhere = WsClient::connect(&node, &token("client-1", Role::Client)).await;
    elsewhere.join(&other_room).await;
    elsewhere.send("call-ended", json!({"roomId": room})).await;
    elsewhere.expect_error("FORBIDDEN").await;

    // Nothing reached the room's members, and the session is unchanged.
    marker(&mut a, &mut b, "after-forbidden-1").await;
    marker(&mut b, &mut a, "after-forbidden-2").await;
    let after = session(&node, &session_id).await;
    assert_eq!(before, after);
    assert!(after["videoCallEnded"].is_null(), "{after}");
    assert_ne!(after["status"], "Completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_unknown_room_is_session_not_found() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.send("join-room", json!({"roomId": "no-such-room-42"})).await;
    let e = a.expect_error("SESSION_NOT_FOUND").await;
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    // The socket still works and was not put anywhere.
    let j = a.join(&room).await;
    assert_eq!(j["participants"].as_array().unwrap().len(), 1, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_second_room_leaves_the_first() {
    let node = TestNode::start().await;
    let (_, room1) = node.call().await;
    let (_, room2) = node.call().await;
    assert_ne!(room1, room2);
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room1).await;
    b.join(&room1).await;
    a.next_event("user-joined").await;

    let j2 = a.join(&room2).await;
    assert_eq!(j2["roomId"], room2.as_str());
    let ps = j2["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 1, "{j2}");
    assert_eq!(ps[0]["socketId"], a.socket_id.as_str());
    let left = b.next_event("user-left").await;
    assert_eq!(left, json!({"socketId": a.socket_id, "userId": "client-1", "reason": "left"}));

    // a is no longer reachable from room1, nor can it reach room1.
    let ida = a.socket_id.clone();
    b.send("offer", json!({"offer": {"sdp": "x"}, "to": ida})).await;
    b.expect_error("PEER_NOT_FOUND").await;
    let idb = b.socket_id.clone();
    a.send("offer", json!({"offer": {"sdp": "x"}, "to": idb})).await;
    a.expect_error("PEER_NOT_FOUND").await;

    // room1 still works for a newcomer.
    let mut c = WsClient::connect(&node, &client_token()).await;
    let j = c.join(&room1).await;
    assert_eq!(j["participants"].as_array().unwrap().len(), 2, "{j}");
    participant(&j, &idb);
    let uj = b.next_event("user-joined").await;
    assert_eq!(uj["socketId"], c.socket_id.as_str());
}
