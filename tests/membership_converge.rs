//! Shared membership converges to the connections that exist, after any fault: a NATS
//! outage longer than the liveness timeout (repeated), a node killed with kill -9 and
//! started again at once under the same `--node-id`, and a leave made while NATS was away.
//! A live member is never removed; a gone one always is, and its peers are told.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::sync::Arc;
use std::time::Duration;

use cluster_support::*;
use common::*;
use proc::{cmd, NodeProc};
use serde_json::{json, Value};
use signalgrid_actors::identity::Role;

/// Heartbeat period of every node here.
const PRESENCE_MS: u64 = 200;
/// Liveness timeout of the nodes whose judgement the outage test puts to the test.
const DEAD_AFTER_MS: u64 = 1_500;

/// An in-process node of cluster `name` with liveness timeout `dead_after_ms`.
async fn node_with(nats: &str, name: &str, data: &Arc<tempfile::TempDir>, id: &str, dead_after_ms: u64) -> TestNode {
    let (url, name, id) = (nats.to_owned(), name.to_owned(), id.to_owned());
    TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(url);
        s.cluster.name = name;
        s.cluster.presence_ms = PRESENCE_MS;
        s.cluster.dead_after_ms = dead_after_ms;
        s.node_id = Some(id);
    })
    .await
}

/// The room's members in shared membership (read through `node`), sorted socket ids.
async fn members(node: &TestNode, room: &str) -> Vec<String> {
    let app = &node.server.as_ref().unwrap().app;
    sorted(app.node.room_members(&room.into()).await.into_iter().map(|m| m.conn_id.to_string()).collect())
}

/// Sends tagged `ice-candidate`s from `from` to `to` until one arrives (bounded attempts,
/// each awaited with a timeout). Returns every other frame `to` got meanwhile, apart from
/// late copies of earlier attempts: after a fault that left the room intact, none.
async fn relay_works(from: &mut WsClient, to: &mut WsClient, tag: &str) -> Vec<Value> {
    let mut other = Vec::new();
    let to_id = to.socket_id.clone();
    for attempt in 0..40 {
        let tag = format!("{tag}-{attempt}");
        from.send("ice-candidate", json!({"candidate": {"tag": tag}, "to": to_id})).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(v) = tokio::time::timeout_at(deadline, to.next()).await {
            if v["event"] != "ice-candidate" {
                other.push(v);
            } else if v["data"]["candidate"]["tag"] == tag.as_str() {
                return other;
            }
        }
    }
    panic!("relay never worked again; other frames: {other:?}");
}

/// Two nodes, a call across them. Six times: stop the NATS server (kill -9, or SIGTERM on
/// every other round), keep it away for longer than the liveness timeout, start it again on
/// the same port. After each outage,
/// neither participant heard anything but relays, shared membership lists both, and relays
/// work both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_longer_than_the_liveness_timeout_never_removes_a_live_member() {
    let mut nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node_with(&nats.url(), "ou", &data, "ou-1", DEAD_AFTER_MS).await;
    let n2 = node_with(&nats.url(), "ou", &data, "ou-2", DEAD_AFTER_MS).await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    let both = sorted(vec![a.socket_id.clone(), b.socket_id.clone()]);
    // The outage lengths differ, so that it ends at different points of the nodes' liveness
    // and sweep cycles; all are longer than the liveness timeout.
    let outages_ms = [300, 600, 900, 1_200, 1_500, 2_000].map(|extra| DEAD_AFTER_MS + extra);
    for (round, outage) in outages_ms.into_iter().enumerate() {
        let (lost1, lost2) = (nats_errors(&n1).await, nats_errors(&n2).await);
        let (back1, back2) = (reconnects(&n1).await, reconnects(&n2).await);
        if round % 2 == 0 {
            nats.kill();
        } else {
            nats.terminate();
        }
        // Both nodes noticed the loss ...
        metric_until(n1.addr, "signalgrid_nats_errors_total", "", |v| v > lost1).await;
        metric_until(n2.addr, "signalgrid_nats_errors_total", "", |v| v > lost2).await;
        // ... and NATS stays away this long: the fault itself, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(outage)).await;
        nats.start_again();
        // Both nodes handled the reconnect (after any sweep that was under way).
        metric_until(n1.addr, "signalgrid_nats_reconnects_total", "", |v| v > back1).await;
        metric_until(n2.addr, "signalgrid_nats_reconnects_total", "", |v| v > back2).await;

        // Each side reads until a relay from the other arrives; the last relay goes to `b`
        // again, so that anything the server told `b` about its own relays is read too.
        let mut heard = relay_works(&mut a, &mut b, &format!("{round}a")).await;
        heard.extend(relay_works(&mut b, &mut a, &format!("{round}b")).await);
        heard.extend(relay_works(&mut a, &mut b, &format!("{round}c")).await);
        assert!(heard.is_empty(), "round {round}: the participants heard {heard:?}");
        assert_eq!(members(&n1, &room).await, both, "round {round}: shared membership lost a member");
    }
    // Both seats are still taken, as every node sees it.
    let mut extra = WsClient::connect(&n2, &token("ops-1", Role::Admin)).await;
    extra.send("join-room", json!({"roomId": room})).await;
    extra.expect_error("ROOM_FULL").await;
    assert_eq!(members(&n2, &room).await, both);
}

async fn nats_errors(n: &TestNode) -> f64 {
    metric(n, "signalgrid_nats_errors_total").await.unwrap_or(0.0)
}

async fn reconnects(n: &TestNode) -> f64 {
    metric(n, "signalgrid_nats_reconnects_total").await.unwrap_or(0.0)
}

/// Resume window (ms) of the nodes in the restart test: short, so that the old seat's
/// timeout comes within the test's waits.
const SHORT_WINDOW_MS: u64 = 2_000;

/// A node killed with kill -9 and started again at once with the same `--node-id` (what
/// systemd's `Restart=` or a StatefulSet does) cleans up what its earlier run left: the seat
/// of the dead connection is away (the peer gets `user-reconnecting`), and as nobody resumes
/// it, it is removed after the resume window (`user-left`, reason `timeout`). No ghost is
/// left: membership and `admin room` no longer list it, a third party can join, and the
/// psychologist can call again once reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_the_same_id_leaves_no_ghost() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    // n1's liveness timeout is far beyond every wait here: n1 never declares rs-2 dead, so
    // only the restarted node's own clean-up can make the dead connection's seat away and
    // remove it. rs-2's own (1.5 s) sets how often it sweeps while a seat waits.
    let n1 = node_window(&nats.url(), "rs", &data, "rs-1", 600_000, SHORT_WINDOW_MS).await;
    let restarted = || {
        let mut c = cmd(data.path());
        c.env("SIGNALGRID_PRESENCE_MS", PRESENCE_MS.to_string())
            .env("SIGNALGRID_DEAD_AFTER_MS", DEAD_AFTER_MS.to_string())
            .env(common::resume::WINDOW_ENV, SHORT_WINDOW_MS.to_string());
        NodeProc::serve_with(c, &["--nats-url", &nats.url(), "--cluster", "rs", "--node-id", "rs-2"])
    };
    let mut n2 = restarted();
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &format!("ws://{}", n2.addr), &room).await;
    assert_eq!(b.node_id, "rs-2");

    n2.kill9();
    let n2 = restarted();
    // The psychologist's old socket is gone with its process.
    let (code, _) = b.closed().await;
    assert_eq!(code, None, "a killed node sends no close frame");
    common::resume::peer_hears(&mut a, "user-reconnecting", &b.socket_id, "psy-1").await;
    common::resume::peer_hears_left(&mut a, &b.socket_id, "psy-1", "timeout").await;
    assert_eq!(members(&n1, &room).await, vec![a.socket_id.clone()]);
    let listed = admin_room(&nats.url(), "rs", &room);
    assert_eq!(listed, vec![(a.socket_id.clone(), "rs-1".to_owned())], "admin room lists the dead connection");

    // The seat is free: a third party joins (not ROOM_FULL), then leaves.
    let mut ops = WsClient::connect_url(&n2.ws_url(&token("ops-2", Role::Admin))).await;
    let joined = ops.join(&room).await;
    assert_eq!(socket_ids(&joined), sorted(vec![a.socket_id.clone(), ops.socket_id.clone()]));
    assert_eq!(a.next_event("user-joined").await["socketId"], ops.socket_id.as_str());
    ops.send("leave-room", json!({"roomId": room})).await;
    common::resume::peer_hears_left(&mut a, &ops.socket_id, "ops-2", "left").await;

    // The psychologist comes back through the restarted node and the call goes on.
    let mut b = WsClient::connect_url(&n2.ws_url(&psy_token())).await;
    b.join(&room).await;
    assert_eq!(a.next_event("user-joined").await["socketId"], b.socket_id.as_str());
    a.send("offer", json!({"offer": {"sdp": "again"}, "to": b.socket_id})).await;
    assert_eq!(b.next_event("offer").await["offer"]["sdp"], "again");
    b.send("answer", json!({"answer": {"sdp": "yes"}, "to": a.socket_id})).await;
    assert_eq!(a.next_event("answer").await["answer"]["sdp"], "yes");
}

/// `node_with`, with resume window `window_ms`.
async fn node_window(
    nats: &str,
    name: &str,
    data: &Arc<tempfile::TempDir>,
    id: &str,
    dead_after_ms: u64,
    window_ms: u64,
) -> TestNode {
    let (url, name, id) = (nats.to_owned(), name.to_owned(), id.to_owned());
    TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(url);
        s.cluster.name = name;
        s.cluster.presence_ms = PRESENCE_MS;
        s.cluster.dead_after_ms = dead_after_ms;
        s.node_id = Some(id);
        s.set(common::resume::WINDOW_KEY, &window_ms.to_string(), "test").unwrap();
    })
    .await
}

/// `signalgrid admin --json room ROOM`: (socket id, node id) of each member.
fn admin_room(nats: &str, cluster: &str, room: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let args = ["admin", "--nats-url", nats, "--cluster", cluster, "--json", "room", room];
    let out = cmd(dir.path()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = r["members"].as_array().unwrap().iter();
    members.map(|m| (m["conn_id"].as_str().unwrap().to_owned(), m["node_id"].as_str().unwrap().to_owned())).collect()
}

/// A participant who leaves (`leave-room`) while NATS is away leaves a member in shared
/// membership that no connection in the room backs (its node could not write the leave, and
/// its room stopped). When NATS is back, its node removes it, and the peer on the other
/// node gets `user-left` with reason `left` (a leave, not a lost socket: no
/// `user-reconnecting`, no wait for the resume window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_made_during_an_outage_reaches_the_peers_when_nats_is_back() {
    let mut nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    // No node is declared dead here: the leave itself must be what reaches the peer.
    let n1 = node_with(&nats.url(), "lv", &data, "lv-1", 600_000).await;
    let n2 = node_with(&nats.url(), "lv", &data, "lv-2", 600_000).await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    let gone = b.socket_id.clone();

    let lost = nats_errors(&n2).await;
    nats.kill();
    metric_until(n2.addr, "signalgrid_nats_errors_total", "", |v| v > lost).await;
    b.send("leave-room", json!({"roomId": room})).await;
    // The member is gone from its node's room (the room with it) while NATS is still away.
    let app2 = &n2.server.as_ref().unwrap().app;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !app2.node.rooms().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the room never stopped on its node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.restart();
    common::resume::peer_hears_left(&mut a, &gone, "psy-1", "left").await;
    assert_eq!(members(&n1, &room).await, vec![a.socket_id.clone()]);
    // Nothing else was owed to `a` (no late user-reconnecting or second user-left): the
    // leaver, still connected, joins again, and that is `a`'s next frame.
    b.join(&room).await;
    assert_eq!(a.next_event("user-joined").await["socketId"], gone.as_str());
}
