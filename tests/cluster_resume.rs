//! Resume across nodes (PROTOCOL.md sections 6 and 10), on a real nats-server: a seat
//! dropped on one node resumes on another with the same socket id and every owed frame once
//! and in order, its peer (on either node) hears `user-reconnecting` / `user-reconnected` and
//! never `user-left`; a token is good once in the whole cluster; the window runs out the same
//! across nodes; a drained node's seats resume elsewhere with nothing lost; a node killed
//! with kill -9 leaves its seats away (never `user-left`) and they resume with `lost: true`.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::sync::Arc;

use cluster_support::*;
use common::resume::*;
use common::*;
use proc::{cmd, NodeProc};
use serde_json::json;
use signalgrid_actors::identity::Role;

/// An in-process node of cluster `name` (as `cluster_support::node`) with these extra
/// settings (dotted key, value).
async fn node_with(
    nats: &str,
    name: &str,
    data: &Arc<tempfile::TempDir>,
    id: &str,
    extra: &[(&str, &str)],
) -> TestNode {
    let (url, name, id) = (nats.to_owned(), name.to_owned(), id.to_owned());
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(url);
        s.cluster.name = name;
        s.cluster.presence_ms = 200;
        s.cluster.dead_after_ms = 1_500;
        s.node_id = Some(id);
        for (k, v) in &extra {
            s.set(k, v, "test").unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    })
    .await
}

/// A node process of cluster `name` sharing the store in `data`, declared dead
/// `dead_after_ms` after its last heartbeat; its resume window (30 s) outlasts every wait.
fn node_proc(nats: &str, name: &str, data: &std::path::Path, id: &str, dead_after_ms: u64) -> NodeProc {
    let mut c = cmd(data);
    c.env("SIGNALGRID_PRESENCE_MS", "200")
        .env("SIGNALGRID_DEAD_AFTER_MS", dead_after_ms.to_string())
        .env(WINDOW_ENV, "30000");
    NodeProc::serve_with(c, &["--nats-url", nats, "--cluster", name, "--node-id", id])
}

/// `a` (client-1) on `origin`, its peer `b` on `peer_node`: a drops, b sends three frames to
/// the away seat, a resumes on `target`. Checks the resume, the replay, the peer's view and
/// capacity meanwhile.
async fn drop_and_resume(origin: &TestNode, peer_node: &TestNode, target: &TestNode, target_id: &str) {
    let (_, room) = origin.call().await;
    let (a, mut b) = pair_in_room(&ws_base(origin), &ws_base(peer_node), &room).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    send_numbered(&mut b, &seat.socket_id, "away", 3).await;
    // Capacity holds while the seat is away, on every node.
    let mut third = WsClient::connect(target, &token("ops-third", Role::Admin)).await;
    third.send("join-room", json!({"roomId": room})).await;
    third.expect_error("ROOM_FULL").await;

    let mut a = resume_ok(&ws_base(target), &seat, false).await;
    assert_eq!(a.node_id, target_id, "a resumed connected carries the new node's id");
    let seqs = receive_numbered(&mut a, &b.socket_id, "away", 3).await;
    assert_eq!(seqs[0], seat.last_seq + 1);
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    // Nothing more owed, nothing else heard (no user-left): live both ways.
    marker(&mut b, &mut a, "live-to-a").await;
    marker(&mut a, &mut b, "live-to-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_dropped_on_one_node_resumes_on_another_with_a_peer_there() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "rx", &data, "rx-1").await;
    let n2 = node(&nats.url(), "rx", &data, "rx-2").await;
    drop_and_resume(&n1, &n2, &n2, "rx-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_dropped_on_one_node_resumes_on_another_with_a_peer_left_behind() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "ry", &data, "ry-1").await;
    let n2 = node(&nats.url(), "ry", &data, "ry-2").await;
    drop_and_resume(&n1, &n1, &n2, "ry-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_token_is_good_once_in_the_whole_cluster_and_for_its_user_only() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "ru", &data, "ru-1").await;
    let n2 = node(&nats.url(), "ru", &data, "ru-2").await;
    let (_, room) = n1.call().await;
    let (a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    let first = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &first.socket_id, "client-1").await;
    let a = resume_ok(&ws_base(&n2), &first, false).await;
    peer_hears(&mut b, "user-reconnected", &first.socket_id, "client-1").await;

    let second = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &second.socket_id, "client-1").await;
    resume_fails(&ws_base(&n1), &Seat { last_seq: second.last_seq, ..first.clone() }, "used").await;
    resume_fails(&ws_base(&n1), &Seat { jwt: psy_token(), ..second.clone() }, "wrong_user").await;
    resume_fails(&ws_base(&n2), &Seat { resume_token: forged(&second.resume_token), ..second.clone() }, "unknown")
        .await;
    resume_fails(&ws_base(&n1), &Seat { last_seq: second.last_seq + 3, ..second.clone() }, "ahead").await;
    // None of that changed the seat: back on the first node with the right token.
    let mut a = resume_ok(&ws_base(&n1), &second, false).await;
    assert_eq!(a.node_id, "ru-1");
    peer_hears(&mut b, "user-reconnected", &second.socket_id, "client-1").await;
    marker(&mut b, &mut a, "home-again").await;
    marker(&mut a, &mut b, "heard-nothing-else").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_on_another_node_while_the_old_socket_is_open_closes_it_with_4001() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "ro", &data, "ro-1").await;
    let n2 = node(&nats.url(), "ro", &data, "ro-2").await;
    let (_, room) = n1.call().await;
    let (mut old, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    marker(&mut b, &mut old, "before").await;
    let seat = old.seat();
    let mut a = resume_ok(&ws_base(&n2), &seat, false).await;
    let (code, frames) = old.closed().await;
    assert_eq!(code, Some(4001), "{frames:?}");
    assert!(frames.iter().all(|f| f["data"]["code"] != "SESSION_REPLACED"), "{frames:?}");
    peer_hears_nothing_or_a_reconnect(&mut b, &mut a, "client-1").await;
    marker(&mut b, &mut a, "to-the-new-socket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_away_past_the_window_leaves_for_a_peer_on_another_node_with_reason_timeout() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node_with(&nats.url(), "rt", &data, "rt-1", &[(WINDOW_KEY, "1500")]).await;
    let n2 = node_with(&nats.url(), "rt", &data, "rt-2", &[(WINDOW_KEY, "1500")]).await;
    let (_, room) = n1.call().await;
    let (a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    peer_hears_left(&mut b, &seat.socket_id, "client-1", "timeout").await;
    resume_fails(&ws_base(&n2), &seat, "expired").await;
}

/// A draining node (SIGTERM) tells its clients NODE_DRAINING and closes them with 1012; the
/// seat is kept: it resumes on the other node with nothing lost, and the peer never hears
/// `user-left`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_seat_resumes_on_another_node_with_nothing_lost() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let stays = node(&nats.url(), "rd", &data, "rd-stays").await;
    // A liveness timeout far beyond every wait here: only the drain can make the seat away.
    let leaving = node_proc(&nats.url(), "rd", data.path(), "rd-leaving", 600_000);
    let (_, room) = stays.call().await;
    let (mut a, mut b) = pair_in_room(&format!("ws://{}", leaving.addr), &ws_base(&stays), &room).await;
    assert_eq!(a.node_id, "rd-leaving");
    let from = b.socket_id.clone();
    send_numbered(&mut b, &a.socket_id, "before", 2).await;
    receive_numbered(&mut a, &from, "before", 2).await;

    leaving.sigterm();
    let (code, frames) = a.closed().await;
    assert!(frames.iter().any(|f| f["data"]["code"] == "NODE_DRAINING"), "{frames:?}");
    assert_eq!(code, Some(1012));
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;
    send_numbered(&mut b, &seat.socket_id, "away", 3).await;

    let mut a = resume_ok(&ws_base(&stays), &seat, false).await;
    assert_eq!(a.node_id, "rd-stays");
    receive_numbered(&mut a, &from, "away", 3).await;
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "live-to-a").await;
    marker(&mut a, &mut b, "live-to-b").await;
    assert!(leaving.exited().await.success());
}

/// A node killed with kill -9: its seat becomes away for the peer on the surviving node
/// (`user-reconnecting`, never `user-left`), and resumes there with `lost: true` and the same
/// socket id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_seat_becomes_away_and_resumes_elsewhere_with_lost() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let survivor = node(&nats.url(), "rk", &data, "rk-survivor").await;
    let mut victim = node_proc(&nats.url(), "rk", data.path(), "rk-victim", 1_500);
    let (_, room) = survivor.call().await;
    let (mut a, mut b) = pair_in_room(&format!("ws://{}", victim.addr), &ws_base(&survivor), &room).await;
    assert_eq!(a.node_id, "rk-victim");
    marker(&mut b, &mut a, "before").await;

    victim.kill9();
    let (code, _) = a.closed().await;
    assert_eq!(code, None, "a killed node sends no close frame");
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;

    let mut a = resume_ok(&ws_base(&survivor), &seat, true).await;
    assert_eq!(a.node_id, "rk-survivor");
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    marker(&mut b, &mut a, "live-to-a").await;
    marker(&mut a, &mut b, "live-to-b").await;
    // Still two seats in the room.
    let mut third = WsClient::connect(&survivor, &token("ops-third", Role::Admin)).await;
    third.send("join-room", json!({"roomId": room})).await;
    third.expect_error("ROOM_FULL").await;
}
