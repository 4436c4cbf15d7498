//! Chat and media state (PROTOCOL.md sections 8 and 10), on one node (on both stores) and
//! across two nodes on a real nats-server: `chat-message` reaches every other member in the
//! order it was sent, the sender gets `chat-sent` only; length is counted in code points;
//! `limits.chat_per_minute`; chat text is in neither the database nor the node's log output
//! (the audit trail counts messages only); `media-state` reaches the others (not the sender)
//! and `room-joined` lists each member's last one.

#[path = "common/call.rs"]
mod call;
#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::sync::Arc;

use call::*;
use cluster_support::*;
use common::*;
use serde_json::json;

/// client-1, psy-1 and an admin in one Group room (joined in that order; each has heard of
/// the later ones).
async fn trio(node: &TestNode) -> (String, String, WsClient, WsClient, WsClient) {
    let spec = SessionSpec { session_type: "Group", ..SessionSpec::default() };
    let (session, room) = session_with(node, &spec, false).await;
    let mut a = WsClient::connect(node, &client_token()).await;
    let mut b = WsClient::connect(node, &psy_token()).await;
    let mut c = WsClient::connect(node, &admin()).await;
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    c.join(&room).await;
    a.next_event("user-joined").await;
    b.next_event("user-joined").await;
    (session, room, a, b, c)
}

/// `from` sends `texts`; each of `to` hears them as `chat-message`, in order, and `from`
/// hears `chat-sent` for each, with the same ids. Returns the ids.
async fn chat_goes_around(from: &mut WsClient, to: &mut [&mut WsClient], texts: &[String], name: &str) -> Vec<String> {
    for t in texts {
        from.send("chat-message", json!({ "text": t })).await;
    }
    let mut ids = Vec::new();
    for _ in texts {
        let sent = from.next_event("chat-sent").await;
        ids.push(sent["id"].as_str().expect("chat-sent.id").to_owned());
    }
    for peer in to.iter_mut() {
        for (i, t) in texts.iter().enumerate() {
            let m = peer.next_event("chat-message").await;
            assert_eq!(m["text"], t.as_str(), "in order: {m}");
            assert_eq!(m["id"], ids[i].as_str(), "{m}");
            assert_eq!(m["from"], from.socket_id.as_str(), "{m}");
            assert_eq!(m["userName"], name, "{m}");
            let sent_at = m["sentAt"].as_str().expect("sentAt");
            assert!(chrono::DateTime::parse_from_rfc3339(sent_at).is_ok(), "ISO 8601: {m}");
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_every_other_member_in_order_and_the_sender_gets_chat_sent() {
    let node = TestNode::start().await;
    let (_, _, mut a, mut b, mut c) = trio(&node).await;
    let texts: Vec<String> = (0..20).map(|i| format!("line {i} from the client")).collect();
    let ids = chat_goes_around(&mut a, &mut [&mut b, &mut c], &texts, "Client One").await;
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len(), "ids are unique");
    // The sender's next frame is a marker: it never got its own chat-message.
    marker(&mut b, &mut a, "after-chat").await;
    // And the others' replies come back the same way.
    let reply = vec!["a reply".to_owned()];
    chat_goes_around(&mut b, &mut [&mut a, &mut c], &reply, "Dr. Psy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_length_is_counted_in_code_points_and_needs_a_room() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.send("chat-message", json!({ "text": "hello" })).await;
    a.expect_error("FORBIDDEN").await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;

    for bad in [json!({ "text": "" }), json!({ "text": "é".repeat(2001) }), json!({ "text": 5 }), json!({})] {
        a.send("chat-message", bad.clone()).await;
        a.expect_error("BAD_REQUEST").await;
    }
    // 2000 code points of 4 bytes each: 8000 bytes, still one message.
    let longest = "😀".repeat(2000);
    let ids = chat_goes_around(&mut a, &mut [&mut b], &[longest], "Client One").await;
    assert_eq!(ids.len(), 1);
    // Refused lines reached nobody: the peer's next frame is a marker.
    marker(&mut a, &mut b, "after-refusals").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_beyond_chat_per_minute_is_rate_limited() {
    let node = TestNode::start_with(|s| s.limits.chat_per_minute = 3).await;
    let (_, room) = node.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let texts: Vec<String> = (0..3).map(|i| format!("allowed {i}")).collect();
    chat_goes_around(&mut a, &mut [&mut b], &texts, "Client One").await;
    a.send("chat-message", json!({ "text": "one too many" })).await;
    let e = a.expect_error("RATE_LIMITED").await;
    assert!(e["details"]["retryAfterMs"].as_u64().is_some(), "{e}");
    marker(&mut a, &mut b, "only-three").await;
    // Relays are not chat: they still pass.
    marker(&mut b, &mut a, "relays-pass").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_text_is_not_stored_and_the_audit_trail_counts_messages() {
    let node = TestNode::start().await;
    let (session, room) = node.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let secret = format!("private-{}", uuid::Uuid::new_v4().simple());
    let texts: Vec<String> = (0..3).map(|i| format!("{secret} {i}")).collect();
    chat_goes_around(&mut a, &mut [&mut b], &texts, "Client One").await;
    a.send("leave-room", json!({ "roomId": room })).await;
    b.next_event("user-left").await;

    let chat = audit_entries(&node, &session, "chat", 1).await;
    assert_eq!(chat.len(), 1, "{chat:?}");
    assert_eq!(chat[0]["userId"], "client-1");
    assert_eq!(chat[0]["metadata"]["messages"], 3, "{chat:?}");
    assert_eq!(chat[0]["metadata"]["roomId"], room.as_str());
    // The search finds what is stored (the room id is), and no chat text.
    assert!(store_contains(&node, &room).await, "the store search works");
    assert!(!store_contains(&node, &secret).await, "chat text reached the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_text_never_reaches_the_log_output() {
    let data = tempfile::tempdir().unwrap();
    let mut c = proc::cmd(data.path());
    c.env("VIDEO_CALL_LOG_LEVEL", "trace");
    let node = proc::NodeProc::serve(c);
    let (_, room) = call_at(&format!("http://{}", node.addr)).await;

    let ws = format!("ws://{}", node.addr);
    let (mut a, mut b) = pair_in_room(&ws, &ws, &room).await;
    let secret = format!("confidential-{}", uuid::Uuid::new_v4().simple());
    chat_goes_around(&mut a, &mut [&mut b], &[format!("{secret} one")], "Client One").await;
    chat_goes_around(&mut b, &mut [&mut a], &[format!("{secret} two")], "Dr. Psy").await;
    // A refused one too (too long): its text is not in the error's details nor the log.
    a.send("chat-message", json!({ "text": format!("{secret}{}", "x".repeat(2000)) })).await;
    let e = a.expect_error("BAD_REQUEST").await;
    assert!(!e.to_string().contains(&secret), "{e}");
    a.close().await;
    b.close().await;
    node.sigterm();
    let stderr = std::mem::replace(&mut { node }.stderr, std::sync::mpsc::channel().1);
    let output: Vec<String> = stderr.into_iter().collect();
    assert!(output.iter().any(|l| l.contains("TRACE") || l.contains("trace")), "the node logged at trace level");
    if let Some(line) = output.iter().find(|l| l.contains(&secret)) {
        panic!("chat text in the node's output: {line}");
    }
    assert!(!files_contain(data.path(), secret.as_bytes()), "chat text in the data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_state_reaches_the_others_and_room_joined_lists_it() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut lone = WsClient::connect(&node, &client_token()).await;
    lone.send("media-state", json!({ "audio": true, "video": true, "screen": false })).await;
    lone.expect_error("FORBIDDEN").await;
    drop(lone);

    let (mut a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    for bad in [json!({ "audio": "no", "video": true, "screen": false }), json!({ "audio": true })] {
        a.send("media-state", bad).await;
        a.expect_error("BAD_REQUEST").await;
    }
    a.send("media-state", json!({ "audio": false, "video": true, "screen": false })).await;
    let m = b.next_event("media-state").await;
    assert_eq!(m, json!({ "from": a.socket_id, "audio": false, "video": true, "screen": false }));
    // Not echoed to its sender.
    marker(&mut b, &mut a, "not-echoed").await;

    // A member who joins later finds it in room-joined; a member who sent none has none.
    b.send("leave-room", json!({ "roomId": room })).await;
    a.next_event("user-left").await;
    let joined = b.join(&room).await;
    let pa = joined["participants"].as_array().unwrap().iter().find(|p| p["socketId"] == a.socket_id.as_str());
    assert_eq!(pa.unwrap()["mediaState"], json!({ "audio": false, "video": true, "screen": false }), "{joined}");
    let pb = joined["participants"].as_array().unwrap().iter().find(|p| p["socketId"] == b.socket_id.as_str());
    assert!(pb.unwrap().get("mediaState").is_none(), "{joined}");
}

/// Two in-process nodes of one cluster on a fresh nats-server, sharing one store.
async fn two_nodes(name: &str) -> (NatsServer, TestNode, TestNode) {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let a = node(&nats.url(), name, &data, "chat-a").await;
    let b = node(&nats.url(), name, &data, "chat-b").await;
    (nats, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_media_state_across_nodes() {
    let (_nats, na, nb) = two_nodes("chat2").await;
    let (_, room) = na.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&na), &ws_base(&nb), &room).await;
    let texts: Vec<String> = (0..30).map(|i| format!("across {i}")).collect();
    chat_goes_around(&mut a, &mut [&mut b], &texts, "Client One").await;
    chat_goes_around(&mut b, &mut [&mut a], &texts, "Dr. Psy").await;
    marker(&mut b, &mut a, "not-echoed-a").await;
    marker(&mut a, &mut b, "not-echoed-b").await;

    a.send("media-state", json!({ "audio": true, "video": false, "screen": true })).await;
    let m = b.next_event("media-state").await;
    assert_eq!(m, json!({ "from": a.socket_id, "audio": true, "video": false, "screen": true }));
    // b's node learns a's media state from shared membership.
    b.send("leave-room", json!({ "roomId": room })).await;
    a.next_event("user-left").await;
    let joined = b.join(&room).await;
    let pa = joined["participants"].as_array().unwrap().iter().find(|p| p["socketId"] == a.socket_id.as_str());
    assert_eq!(pa.unwrap()["mediaState"], json!({ "audio": true, "video": false, "screen": true }), "{joined}");
}
