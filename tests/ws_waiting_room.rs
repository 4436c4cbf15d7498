//! The waiting room (PROTOCOL.md sections 8 and 10), on one node (on both stores) and across
//! two nodes on a real nats-server: a client of a `waitingRoom` session gets `waiting`, hosts
//! `participant-waiting` (or `room-joined.waiting` when they arrive later); `admit` lets the
//! client in (`room-joined`, `user-joined`), `deny` answers `ADMISSION_DENIED` and the client
//! may wait again; `NOT_HOST`, `PEER_NOT_FOUND` and `ROOM_FULL` on admit; a waiting client
//! hears nothing of the room and keeps its place across a dropped socket; the audit trail
//! has `waiting`, `admitted` and `denied`.

#[path = "common/call.rs"]
mod call;
#[path = "common/cluster.rs"]
mod cluster_support;
mod common;

use std::sync::Arc;

use call::*;
use cluster_support::*;
use common::resume::*;
use common::*;
use serde_json::{json, Value};

/// `c` joins `room` and is told to wait.
async fn waits(c: &mut WsClient, room: &str) {
    c.send("join-room", json!({ "roomId": room })).await;
    let w = c.next_event("waiting").await;
    assert_eq!(w, json!({ "roomId": room }));
}

/// `host` hears that `client` waits.
async fn hears_waiting(host: &mut WsClient, client: &WsClient) {
    let w = host.next_event("participant-waiting").await;
    assert_eq!(w, json!({ "socketId": client.socket_id, "userId": "client-1", "userName": "Client One" }));
}

/// `host` admits `client`: the client's next frame is `room-joined` listing both, the host's
/// `user-joined` for the client; then they reach each other.
async fn admits(host: &mut WsClient, client: &mut WsClient) {
    host.send("admit", json!({ "socketId": client.socket_id })).await;
    let joined = client.next_event("room-joined").await;
    assert_eq!(socket_ids(&joined), sorted(vec![host.socket_id.clone(), client.socket_id.clone()]), "{joined}");
    assert!(joined.get("waiting").is_none(), "a client gets no waiting list: {joined}");
    let uj = host.next_event("user-joined").await;
    assert_eq!(uj["socketId"], client.socket_id.as_str(), "{uj}");
    marker(host, client, "admitted-host").await;
    marker(client, host, "admitted-client").await;
}

/// While waiting, `client` reaches nobody and nobody reaches it.
async fn waiting_is_outside(host: &mut WsClient, client: &mut WsClient) {
    let (h, c) = (host.socket_id.clone(), client.socket_id.clone());
    client.send("offer", json!({ "offer": { "sdp": "x" }, "to": h })).await;
    client.expect_error("PEER_NOT_FOUND").await;
    client.send("chat-message", json!({ "text": "let me in" })).await;
    client.expect_error("FORBIDDEN").await;
    host.send("offer", json!({ "offer": { "sdp": "x" }, "to": c })).await;
    host.expect_error("PEER_NOT_FOUND").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waits_until_the_host_admits() {
    let node = TestNode::start().await;
    let (session, room) = waiting_call(&node).await;
    let mut host = WsClient::connect(&node, &psy_token()).await;
    let joined = host.join(&room).await;
    assert_eq!(joined["waiting"], json!([]), "a host gets the (empty) waiting list: {joined}");
    let mut client = WsClient::connect(&node, &client_token()).await;
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    waiting_is_outside(&mut host, &mut client).await;
    admits(&mut host, &mut client).await;

    let w = audit_entries(&node, &session, "waiting", 1).await;
    assert_eq!(w[0]["userId"], "client-1", "{w:?}");
    let a = audit_entries(&node, &session, "admitted", 1).await;
    assert_eq!(a[0]["userId"], "client-1", "{a:?}");
    assert_eq!(a[0]["metadata"]["by"], "psy-1", "{a:?}");
    assert_eq!(a[0]["metadata"]["socketId"], client.socket_id.as_str(), "{a:?}");
    // The admitted client joined the call: its join counts.
    audit_entries(&node, &session, "join_success", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_who_arrives_later_finds_the_waiting_list_and_the_client_heard_nothing() {
    let node = TestNode::start().await;
    let (_, room) = waiting_call(&node).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    waits(&mut client, &room).await;
    let mut host = WsClient::connect(&node, &psy_token()).await;
    let joined = host.join(&room).await;
    assert_eq!(socket_ids(&joined), vec![host.socket_id.clone()], "waiting clients are not participants: {joined}");
    assert_eq!(
        joined["waiting"],
        json!([{ "socketId": client.socket_id, "userId": "client-1", "userName": "Client One" }]),
        "{joined}"
    );
    // `admits` checks that the client's next frame is room-joined: no user-joined about the
    // host reached it while it waited.
    admits(&mut host, &mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_client_may_join_again_and_waits_again() {
    let node = TestNode::start().await;
    let (session, room) = waiting_call(&node).await;
    let mut host = WsClient::connect(&node, &psy_token()).await;
    host.join(&room).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;

    host.send("deny", json!({ "socketId": client.socket_id })).await;
    let e = client.expect_error("ADMISSION_DENIED").await;
    assert_eq!(e["details"]["roomId"], room.as_str(), "{e}");
    let left = host.next_event("user-left").await;
    assert_eq!(left, json!({ "socketId": client.socket_id, "userId": "client-1", "reason": "denied" }));
    // Denied is not in the room: chat is refused, the socket stays open.
    client.send("chat-message", json!({ "text": "still here" })).await;
    client.expect_error("FORBIDDEN").await;

    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    admits(&mut host, &mut client).await;
    let d = audit_entries(&node, &session, "denied", 1).await;
    assert_eq!((d[0]["userId"].as_str(), d[0]["metadata"]["by"].as_str()), (Some("client-1"), Some("psy-1")));
    audit_entries(&node, &session, "waiting", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_hosts_admit_and_only_waiting_clients_are_admitted() {
    let node = TestNode::start().await;
    let (_, room) = waiting_call(&node).await;
    let mut outsider = WsClient::connect(&node, &client_token()).await;
    outsider.send("admit", json!({ "socketId": "someone" })).await;
    outsider.expect_error("NOT_HOST").await;
    drop(outsider);

    let mut host = WsClient::connect(&node, &psy_token()).await;
    host.join(&room).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    let (h, c) = (host.socket_id.clone(), client.socket_id.clone());
    // A waiting client admits nobody, itself included.
    client.send("admit", json!({ "socketId": c })).await;
    client.expect_error("NOT_HOST").await;
    // A host does not admit or deny itself, nor a socket that is not waiting.
    host.send("admit", json!({ "socketId": h })).await;
    host.expect_error("NOT_HOST").await;
    host.send("deny", json!({ "socketId": "no-such-socket" })).await;
    host.expect_error("PEER_NOT_FOUND").await;
    for bad in [json!({}), json!({ "socketId": "" }), json!({ "socketId": 7 })] {
        host.send("admit", bad).await;
        host.expect_error("BAD_REQUEST").await;
    }
    admits(&mut host, &mut client).await;
    // Admitted: no longer waiting, and a client is no host.
    host.send("deny", json!({ "socketId": c })).await;
    host.expect_error("PEER_NOT_FOUND").await;
    client.send("deny", json!({ "socketId": h })).await;
    client.expect_error("NOT_HOST").await;
    marker(&mut host, &mut client, "still-in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitting_into_a_full_room_is_room_full_and_the_client_keeps_waiting() {
    let node = TestNode::start().await;
    let (_, room) = waiting_call(&node).await;
    let mut host = WsClient::connect(&node, &psy_token()).await;
    host.join(&room).await;
    let mut ops = WsClient::connect(&node, &admin()).await;
    ops.join(&room).await;
    host.next_event("user-joined").await;
    // Waiting takes no seat: the full room still lets the client wait.
    let mut client = WsClient::connect(&node, &client_token()).await;
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    hears_waiting(&mut ops, &client).await;
    host.send("admit", json!({ "socketId": client.socket_id })).await;
    let e = host.expect_error("ROOM_FULL").await;
    assert_eq!(e["details"]["socketId"], client.socket_id.as_str(), "{e}");

    // A seat frees: the same client, still waiting, is admitted.
    ops.send("leave-room", json!({ "roomId": room })).await;
    host.next_event("user-left").await;
    admits(&mut host, &mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_keeps_its_place_across_a_dropped_socket() {
    let node = TestNode::start().await;
    let (_, room) = waiting_call(&node).await;
    let mut host = WsClient::connect(&node, &psy_token()).await;
    host.join(&room).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    let seat = client.drop_socket();
    let mut client = resume_ok(&ws_base(&node), &seat, false).await;
    admits(&mut host, &mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_is_the_configured_default_for_new_sessions() {
    let node = TestNode::start_with(|s| s.rooms.waiting_room = true).await;
    let s = node.create_session(&SessionSpec::default()).await;
    assert_eq!(s["waitingRoom"], true, "{s}");
    let res = node.get(&format!("/api/sessions/{}", s["id"].as_str().unwrap()), Some(&admin())).send().await.unwrap();
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["waitingRoom"], true, "{got}");
    let (_, room) = session_with(&node, &SessionSpec::default(), false).await;
    let (_a, _b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let mut body = SessionSpec::default().body();
    body["waitingRoom"] = json!("yes");
    let res = node.post("/api/sessions", Some(&admin())).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert!(err["error"]["details"]["fields"]["waitingRoom"].is_string(), "{err}");
}

/// Two in-process nodes of one cluster on a fresh nats-server, sharing one store.
async fn two_nodes(name: &str) -> (NatsServer, TestNode, TestNode) {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let a = node(&nats.url(), name, &data, "wait-a").await;
    let b = node(&nats.url(), name, &data, "wait-b").await;
    (nats, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_room_works_across_nodes() {
    let (_nats, na, nb) = two_nodes("wait2").await;
    let (_, room) = waiting_call(&na).await;
    // Host on a, client on b: participant-waiting crosses, admit crosses back.
    let mut host = WsClient::connect(&na, &psy_token()).await;
    host.join(&room).await;
    let mut client = WsClient::connect(&nb, &client_token()).await;
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    waiting_is_outside(&mut host, &mut client).await;
    // The waiting seat moves to the host's node and back (resumes: hand-overs), still waiting.
    let seat = client.drop_socket();
    let client = resume_ok(&ws_base(&na), &seat, false).await;
    let seat = client.drop_socket();
    let mut client = resume_ok(&ws_base(&nb), &seat, false).await;
    admits(&mut host, &mut client).await;
    // Chat in both directions once in.
    client.send("chat-message", json!({ "text": "hello doctor" })).await;
    client.next_event("chat-sent").await;
    assert_eq!(host.next_event("chat-message").await["text"], "hello doctor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_another_node_finds_the_waiting_list_and_denies() {
    let (_nats, na, nb) = two_nodes("wait3").await;
    let (_, room) = waiting_call(&na).await;
    let mut client = WsClient::connect(&nb, &client_token()).await;
    waits(&mut client, &room).await;
    let mut host = WsClient::connect(&na, &psy_token()).await;
    let joined = host.join(&room).await;
    assert_eq!(joined["waiting"][0]["socketId"], client.socket_id.as_str(), "{joined}");
    host.send("deny", json!({ "socketId": client.socket_id })).await;
    client.expect_error("ADMISSION_DENIED").await;
    assert_eq!(host.next_event("user-left").await["reason"], "denied");
    // Waits again.
    waits(&mut client, &room).await;
    hears_waiting(&mut host, &client).await;
    // Full room across nodes: an admin on b (a host too: it finds the waiting list) takes the
    // second seat; admitting is ROOM_FULL.
    let mut ops = WsClient::connect(&nb, &admin()).await;
    let joined = ops.join(&room).await;
    assert_eq!(joined["waiting"][0]["socketId"], client.socket_id.as_str(), "{joined}");
    host.next_event("user-joined").await;
    host.send("admit", json!({ "socketId": client.socket_id })).await;
    host.expect_error("ROOM_FULL").await;
    ops.send("leave-room", json!({ "roomId": room })).await;
    host.next_event("user-left").await;
    admits(&mut host, &mut client).await;
}
