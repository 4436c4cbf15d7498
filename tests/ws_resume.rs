//! Resume on one node (PROTOCOL.md sections 6 and 10): `seq` on every frame after
//! `connected`, a dropped socket keeps its seat for the resume window, the resume gets the
//! same socket id and every owed frame once and in order, each way a resume fails (and that
//! it changes nothing), `ack`, `user-left` reasons, capacity while away, and a resume that
//! finds the old socket still open. Runs on either store (SIGNALGRID_TEST_STORE).

mod common;

use common::resume::*;
use common::*;
use serde_json::json;
use signalgrid_actors::identity::Role;

/// A node with these settings (dotted key, value) on top of the test defaults.
async fn node_with(settings: &[(&str, &str)]) -> TestNode {
    let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TestNode::start_with(move |s| {
        for (k, v) in &settings {
            s.set(k, v, "test").unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    })
    .await
}

/// A fresh session on `node`: its client `a` and psychologist `b` in the room (`a` saw `b`
/// join). Returns the room, a and b.
async fn pair(node: &TestNode) -> (String, WsClient, WsClient) {
    let (_, room) = node.call().await;
    let (a, b) = pair_in_room(&ws_base(node), &ws_base(node), &room).await;
    (room, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_brings_a_resume_token_and_the_window_and_no_seq() {
    let node = TestNode::start().await;
    let (ws, _) = tokio_tungstenite::connect_async(node.ws_url(&client_token())).await.expect("connect");
    let mut a = WsClient::unstarted(ws);
    let first = a.next().await;
    assert_eq!(first["event"], "connected", "{first}");
    assert!(first.get("seq").is_none(), "connected carries no seq: {first}");
    let token = first["data"]["resumeToken"].as_str().unwrap_or_else(|| panic!("resumeToken: {first}"));
    assert!(!token.is_empty());
    assert_eq!(first["data"]["resumeWindowMs"], 30_000, "the default window: {first}");
    let b = WsClient::connect(&node, &client_token()).await;
    assert_ne!(b.hello["resumeToken"].as_str(), Some(token), "each connection has its own token");

    let short = node_with(&[(WINDOW_KEY, "4321")]).await;
    let c = WsClient::connect(&short, &client_token()).await;
    assert_eq!(c.hello["resumeWindowMs"], 4321, "{}", c.hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_counts_every_frame_after_connected_from_one_errors_included() {
    let node = TestNode::start().await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.send("no-such-event", json!({})).await;
    let (e, seq) = a.next_seq("error").await;
    assert_eq!((e["code"].as_str(), seq), (Some("UNKNOWN_EVENT"), 1), "an error before any join counts");
    a.send("join-room", json!({"roomId": room})).await;
    assert_eq!(a.next_seq("room-joined").await.1, 2);

    let mut b = WsClient::connect(&node, &psy_token()).await;
    b.send("join-room", json!({"roomId": room})).await;
    assert_eq!(b.next_seq("room-joined").await.1, 1, "seq counts per seat");
    assert_eq!(a.next_seq("user-joined").await.1, 3);
    let to = b.socket_id.clone();
    a.send("offer", json!({"offer": {"sdp": "x"}, "to": to})).await;
    assert_eq!(b.next_seq("offer").await.1, 2);
    let to = a.socket_id.clone();
    b.send("answer", json!({"answer": {"sdp": "y"}, "to": to})).await;
    assert_eq!(a.next_seq("answer").await.1, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_its_seat_and_gets_what_was_sent_meanwhile_once_in_order() {
    let node = TestNode::start().await;
    let (_, a, mut b) = pair(&node).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    // Frames to the away seat are accepted (b hears no PEER_NOT_FOUND: its next frames below
    // are exactly the reconnect and the marker).
    send_numbered(&mut b, &seat.socket_id, "away", 3).await;

    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    assert_eq!(a.node_id, *node.server.as_ref().unwrap().app.node_id);
    // No room-joined: the owed frames come first, consecutive from lastSeq + 1.
    let seqs = receive_numbered(&mut a, &b.socket_id, "away", 3).await;
    assert_eq!(seqs[0], seat.last_seq + 1);
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    // Live again, and nothing more was owed (no duplicate before the marker).
    marker(&mut b, &mut a, "live-to-a").await;
    marker(&mut a, &mut b, "live-to-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_but_not_processed_before_the_drop_come_again_after_the_ack() {
    let node = TestNode::start().await;
    let (_, mut a, mut b) = pair(&node).await;
    let from = b.socket_id.clone();
    send_numbered(&mut b, &a.socket_id, "sent", 4).await;
    let seqs = receive_numbered(&mut a, &from, "sent", 4).await;
    // The client processed (and acked) only the first of the four before its network went.
    a.send("ack", json!({"seq": seqs[0]})).await;
    let mut seat = a.drop_socket();
    seat.last_seq = seqs[0];
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;

    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    for (i, want) in seqs.iter().enumerate().skip(1) {
        let (d, seq) = a.next_seq("ice-candidate").await;
        assert_eq!((seq, &d["candidate"]["n"]), (*want, &json!(i)), "{d}");
        assert_eq!(d["candidate"]["tag"], "sent");
    }
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "nothing-more").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_is_not_answered_and_an_ack_without_an_integer_seq_is_a_bad_request() {
    let node = TestNode::start().await;
    let (_, mut a, mut b) = pair(&node).await;
    marker(&mut b, &mut a, "one").await;
    let acked = a.last_seq;
    a.send("ack", json!({"seq": acked})).await;
    // a's frames are handled in order: its next frame answers the unknown event, so the ack
    // got no answer.
    a.send("no-such-event", json!({})).await;
    a.expect_error("UNKNOWN_EVENT").await;
    for bad in [json!({}), json!({"seq": "1"}), json!({"seq": 1.5}), json!({"seq": null})] {
        a.send("ack", bad.clone()).await;
        let e = a.expect_error("BAD_REQUEST").await;
        assert!(e["message"].is_string(), "ack {bad}: {e}");
    }
    // Still open and in the room.
    marker(&mut b, &mut a, "still-open").await;
    marker(&mut a, &mut b, "still-in-the-room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_or_forged_resume_token_fails_as_unknown_and_changes_nothing() {
    let node = TestNode::start().await;
    let (_, a, mut b) = pair(&node).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;

    let garbage = Seat { resume_token: "not-a-resume-token".into(), ..seat.clone() };
    resume_fails(&ws_base(&node), &garbage, "unknown").await;
    let forged_token = Seat { resume_token: forged(&seat.resume_token), ..seat.clone() };
    resume_fails(&ws_base(&node), &forged_token, "unknown").await;

    // The seat is as it was: the real token still resumes it, and b's next frame is that.
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut a, &mut b, "resumed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_resume_token_fails_as_wrong_user_and_evicts_no_one() {
    let node = TestNode::start().await;
    let (_, mut a, mut b) = pair(&node).await;
    // The psychologist presents the client's token while the client is connected.
    let stolen = Seat { jwt: psy_token(), ..a.seat() };
    resume_fails(&ws_base(&node), &stolen, "wrong_user").await;
    // a was not disturbed and b heard nothing.
    marker(&mut b, &mut a, "a-still-here").await;
    marker(&mut a, &mut b, "b-heard-nothing").await;

    // The token was not used up: a resumes with it after a drop.
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    let stolen = Seat { jwt: psy_token(), ..seat.clone() };
    resume_fails(&ws_base(&node), &stolen, "wrong_user").await;
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_token_works_once_and_seq_continues_across_resumes() {
    let node = TestNode::start().await;
    let (_, a, mut b) = pair(&node).await;
    let first = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &first.socket_id, "client-1").await;
    let mut a = resume_ok(&ws_base(&node), &first, false).await;
    peer_hears(&mut b, "user-reconnected", &first.socket_id, "client-1").await;
    let from = b.socket_id.clone();
    send_numbered(&mut b, &a.socket_id, "between", 2).await;
    let seqs = receive_numbered(&mut a, &from, "between", 2).await;
    assert_eq!(seqs[0], first.last_seq + 1, "seq continues across a resume");

    let second = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &second.socket_id, "client-1").await;
    let used = Seat { last_seq: second.last_seq, ..first.clone() };
    resume_fails(&ws_base(&node), &used, "used").await;
    send_numbered(&mut b, &second.socket_id, "after", 1).await;
    let mut a = resume_ok(&ws_base(&node), &second, false).await;
    let seqs = receive_numbered(&mut a, &from, "after", 1).await;
    assert_eq!(seqs[0], second.last_seq + 1);
    peer_hears(&mut b, "user-reconnected", &second.socket_id, "client-1").await;
    marker(&mut a, &mut b, "after-two-resumes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_seq_ahead_of_what_was_sent_fails_as_ahead() {
    let node = TestNode::start().await;
    let (_, a, mut b) = pair(&node).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    let ahead = Seat { last_seq: seat.last_seq + 5, ..seat.clone() };
    resume_fails(&ws_base(&node), &ahead, "ahead").await;
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "after-ahead").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_away_past_the_window_leaves_with_reason_timeout_and_cannot_resume() {
    let node = node_with(&[(WINDOW_KEY, "1500")]).await;
    let (room, a, mut b) = pair(&node).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    peer_hears_left(&mut b, &seat.socket_id, "client-1", "timeout").await;
    resume_fails(&ws_base(&node), &seat, "expired").await;
    // The seat is free again.
    let mut c = WsClient::connect(&node, &client_token()).await;
    c.join(&room).await;
    assert_eq!(b.next_event("user-joined").await["socketId"], c.socket_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owed_frames_beyond_the_buffer_bound_fail_the_resume_as_overflow() {
    let node = node_with(&[(BUFFER_KEY, "4")]).await;
    let (_, a, mut b) = pair(&node).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    send_numbered(&mut b, &seat.socket_id, "flood", 10).await;
    // Accepted all the same: b's next frame answers its next request, no PEER_NOT_FOUND.
    b.send("no-such-event", json!({})).await;
    b.expect_error("UNKNOWN_EVENT").await;
    resume_fails(&ws_base(&node), &seat, "overflow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_with_1000_or_1001_leaves_at_once_with_reason_left() {
    let node = TestNode::start().await;
    for code in [1000, 1001] {
        let (_, a, mut b) = pair(&node).await;
        let seat = a.close_with(code).await;
        peer_hears_left(&mut b, &seat.socket_id, "client-1", "left").await;
        let mut c = WsClient::resume(&ws_base(&node), &seat).await;
        assert_eq!(c.hello["resumed"], false, "close {code}: {}", c.hello);
        assert_eq!(c.next_event("error").await["code"], "RESUME_FAILED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_close_code_keeps_the_seat_for_a_resume() {
    let node = TestNode::start().await;
    let (_, a, mut b) = pair(&node).await;
    let seat = a.close_with(4000).await;
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "after-4000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_left_says_why_left_kicked_or_replaced() {
    let node = TestNode::start().await;
    let (room, mut a, mut b) = pair(&node).await;
    a.send("leave-room", json!({"roomId": room})).await;
    peer_hears_left(&mut b, &a.socket_id, "client-1", "left").await;

    a.join(&room).await;
    b.next_event("user-joined").await;
    assert!(node.server.as_ref().unwrap().app.node.inbound().kick(&a.socket_id));
    a.expect_error("KICKED").await;
    peer_hears_left(&mut b, &a.socket_id, "client-1", "kicked").await;

    let mut a = WsClient::connect(&node, &client_token()).await;
    a.join(&room).await;
    b.next_event("user-joined").await;
    let mut again = WsClient::connect(&node, &client_token()).await;
    again.join(&room).await;
    a.expect_error("SESSION_REPLACED").await;
    // user-left (old) and user-joined (new) may come in either order.
    let (x, y) = (b.next().await, b.next().await);
    let left = if x["event"] == "user-left" { x } else { y };
    assert_eq!(left["event"], "user-left", "{left}");
    assert_eq!(
        (left["data"]["socketId"].as_str(), left["data"]["reason"].as_str()),
        (Some(&*a.socket_id), Some("replaced"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_holds_while_a_seat_is_away() {
    let node = TestNode::start().await;
    let (room, a, mut b) = pair(&node).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    let mut third = WsClient::connect(&node, &token("ops-third", Role::Admin)).await;
    third.send("join-room", json!({"roomId": room})).await;
    third.expect_error("ROOM_FULL").await;
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "still-two").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_while_the_old_socket_is_open_takes_over_and_closes_it_with_4001() {
    let node = TestNode::start().await;
    let (_, mut old, mut b) = pair(&node).await;
    marker(&mut b, &mut old, "before").await;
    let seat = old.seat();
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    let (code, frames) = old.closed().await;
    assert_eq!(code, Some(4001), "{frames:?}");
    assert!(frames.iter().all(|f| f["data"]["code"] != "SESSION_REPLACED"), "{frames:?}");
    peer_hears_nothing_or_a_reconnect(&mut b, &mut a, "client-1").await;
    marker(&mut b, &mut a, "to-the-new-socket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_from_two_senders_to_an_away_seat_arrive_once_in_order_per_sender() {
    let node = TestNode::start().await;
    let spec = SessionSpec { session_type: "Group", ..SessionSpec::default() };
    let s = node.create_session(&spec).await;
    let room = node.room_for(s["id"].as_str().unwrap(), "client-1").await;
    let (mut a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let mut c = WsClient::connect(&node, &token("ops-c", Role::Admin)).await;
    c.join(&room).await;
    a.next_event("user-joined").await;
    b.next_event("user-joined").await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    peer_hears(&mut c, "user-reconnecting", &seat.socket_id, "client-1").await;
    for i in 0..5 {
        b.send("ice-candidate", json!({"candidate": {"n": i}, "to": seat.socket_id})).await;
        c.send("ice-candidate", json!({"candidate": {"n": i}, "to": seat.socket_id})).await;
    }
    let mut a = resume_ok(&ws_base(&node), &seat, false).await;
    let (mut from_b, mut from_c) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let before = a.last_seq;
        let (d, seq) = a.next_seq("ice-candidate").await;
        assert_eq!(seq, before + 1, "{d}");
        let n = d["candidate"]["n"].as_u64().unwrap();
        match d["from"].as_str() {
            Some(f) if f == b.socket_id => from_b.push(n),
            Some(f) if f == c.socket_id => from_c.push(n),
            _ => panic!("{d}"),
        }
    }
    assert_eq!((from_b, from_c), ((0..5).collect(), (0..5).collect()));
    marker(&mut b, &mut a, "no-duplicates").await;
}
