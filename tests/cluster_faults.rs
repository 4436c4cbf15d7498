//! Faults and operations of a cluster with real processes: a node killed with kill -9, a
//! node drained (SIGTERM and the admin command), the NATS server restarted mid-call, nodes
//! on two routed NATS servers, and the admin CLI.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::sync::Arc;

use cluster_support::*;
use common::*;
use proc::{cmd, NodeProc};
use serde_json::json;
use signalgrid_actors::identity::Role;

/// A node process of cluster `name` sharing the store in `data`.
fn node_proc(nats: &str, name: &str, data: &std::path::Path, id: &str, dead_after_ms: u64) -> NodeProc {
    let mut c = cmd(data);
    c.env("SIGNALGRID_PRESENCE_MS", "200").env("SIGNALGRID_DEAD_AFTER_MS", dead_after_ms.to_string());
    NodeProc::serve_with(c, &["--nats-url", nats, "--cluster", name, "--node-id", id])
}

/// After `c` got everything it should, a newcomer joins: `c`'s next frame must be that
/// `user-joined` (proves nothing else, e.g. a second `user-left`, was queued before it).
async fn nothing_else_before_a_newcomer(c: &mut WsClient, node: &TestNode, room: &str, user: &str) {
    let mut newcomer = WsClient::connect(node, &token(user, Role::Admin)).await;
    newcomer.join(room).await;
    assert_eq!(c.next_event("user-joined").await["socketId"], newcomer.socket_id.as_str());
}

/// Resume window (ms) of the nodes in the kill -9 test: short, so that the seat's timeout
/// comes within the test's waits.
const SHORT_WINDOW_MS: &str = "2000";

/// An in-process node of cluster `name` (as `cluster_support::node`) with resume window
/// `window_ms`.
async fn node_with_window(
    nats: &str,
    name: &str,
    data: &Arc<tempfile::TempDir>,
    id: &str,
    window_ms: &str,
) -> TestNode {
    let (url, name, id, window) = (nats.to_owned(), name.to_owned(), id.to_owned(), window_ms.to_owned());
    TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(url);
        s.cluster.name = name;
        s.cluster.presence_ms = 200;
        s.cluster.dead_after_ms = 1_500;
        s.node_id = Some(id);
        s.set(resume::WINDOW_KEY, &window, "test").unwrap();
    })
    .await
}

/// A node killed with kill -9: the peer on the surviving node hears `user-reconnecting` for
/// its member once (never `user-left` before the window ends); nobody resumes, so after the
/// window the peer hears `user-left` with reason `timeout`, once, and shared membership no
/// longer lists the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_kill_9_is_noticed_and_its_members_leave_once() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let survivor = node_with_window(&nats.url(), "k9", &data, "survivor", SHORT_WINDOW_MS).await;
    let mut c = cmd(data.path());
    c.env("SIGNALGRID_PRESENCE_MS", "200")
        .env("SIGNALGRID_DEAD_AFTER_MS", "1500")
        .env(resume::WINDOW_ENV, SHORT_WINDOW_MS);
    let mut victim = NodeProc::serve_with(c, &["--nats-url", &nats.url(), "--cluster", "k9", "--node-id", "victim"]);
    let (_, room) = survivor.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&survivor), &format!("ws://{}", victim.addr), &room).await;
    assert_eq!(b.node_id, "victim");
    marker(&mut b, &mut a, "before").await;

    victim.kill9();
    let (code, _) = b.closed().await;
    assert_eq!(code, None, "a killed node sends no close frame");
    resume::peer_hears(&mut a, "user-reconnecting", &b.socket_id, "psy-1").await;
    resume::peer_hears_left(&mut a, &b.socket_id, "psy-1", "timeout").await;
    let listed = admin_room(&nats.url(), "k9", &room);
    assert_eq!(listed, vec![(a.socket_id.clone(), "survivor".to_owned())], "admin room still lists the dead seat");
    nothing_else_before_a_newcomer(&mut a, &survivor, &room, "ops-after").await;
}

/// SIGTERM drains a node: its client gets NODE_DRAINING and close 1012, and its seat is
/// kept (the peer hears `user-reconnecting`, not `user-left`); the client resumes on the
/// other node with the same socket id and nothing lost, the peer hears `user-reconnected`,
/// the call relays both ways, and the drained node exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_and_its_members_resume_elsewhere() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let stays = node(&nats.url(), "dr", &data, "stays").await;
    // A liveness timeout far beyond every wait here: only the drain can make the seat away.
    let leaving = node_proc(&nats.url(), "dr", data.path(), "leaving", 600_000);
    let (_, room) = stays.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&stays), &format!("ws://{}", leaving.addr), &room).await;
    assert_eq!(b.node_id, "leaving");

    leaving.sigterm();
    let (code, frames) = b.closed().await;
    assert!(frames.iter().any(|f| f["data"]["code"] == "NODE_DRAINING"), "{frames:?}");
    assert_eq!(code, Some(1012));
    let seat = b.drop_socket();
    resume::peer_hears(&mut a, "user-reconnecting", &seat.socket_id, "psy-1").await;

    let mut b = resume::resume_ok(&ws_base(&stays), &seat, false).await;
    assert_eq!(b.node_id, "stays");
    resume::peer_hears(&mut a, "user-reconnected", &seat.socket_id, "psy-1").await;
    // Nothing else was queued for either (no user-left): live both ways.
    marker(&mut a, &mut b, "live-to-b").await;
    marker(&mut b, &mut a, "live-to-a").await;
    assert!(leaving.exited().await.success());
    let listed = admin_room(&nats.url(), "dr", &room);
    assert_eq!(listed.len(), 2, "both seats are still in the room: {listed:?}");
    assert!(listed.iter().all(|(_, n)| n == "stays"), "the resumed seat moved to the node it resumed on: {listed:?}");
}

/// `signalgrid admin --json room ROOM`: (socket id, node id) of each member.
fn admin_room(nats: &str, cluster: &str, room: &str) -> Vec<(String, String)> {
    let (ok, out, err) = admin_cli(nats, cluster, &["--json", "room", room]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let members = r["members"].as_array().map(|m| m.iter()).into_iter().flatten();
    let mut out: Vec<(String, String)> = members
        .map(|m| (m["conn_id"].as_str().unwrap().to_owned(), m["node_id"].as_str().unwrap().to_owned()))
        .collect();
    out.sort();
    out
}

fn admin_cli(nats: &str, cluster: &str, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(dir.path()).args(["admin", "--nats-url", nats, "--cluster", cluster]).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_lists_kicks_closes_and_drains() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "adm", &data, "adm-1").await;
    let n2 = node_proc(&nats.url(), "adm", data.path(), "adm-2", 600_000);
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &format!("ws://{}", n2.addr), &room).await;

    let (ok, out, err) = admin_cli(&nats.url(), "adm", &["--json", "nodes"]);
    assert!(ok, "{err}");
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = nodes.as_array().unwrap().iter().map(|n| n["node_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["adm-1", "adm-2"]);
    assert!(
        nodes[0]["connections"].as_u64().unwrap() >= 1 && nodes[0]["address"].as_str().unwrap().starts_with("http://")
    );
    let (ok, table, _) = admin_cli(&nats.url(), "adm", &["nodes"]);
    assert!(ok && table.starts_with("NODE") && table.contains("adm-2"), "{table}");

    let (ok, out, _) = admin_cli(&nats.url(), "adm", &["--json", "rooms"]);
    assert!(ok);
    assert!(out.contains(&room), "{out}");
    let (ok, out, _) = admin_cli(&nats.url(), "adm", &["--json", "room", &room]);
    assert!(ok);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut where_: Vec<(String, String)> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["conn_id"].as_str().unwrap().to_owned(), m["node_id"].as_str().unwrap().to_owned()))
        .collect();
    where_.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(where_, [(a.socket_id.clone(), "adm-1".into()), (b.socket_id.clone(), "adm-2".into())]);

    // kick the member on the other node
    let (ok, out, err) = admin_cli(&nats.url(), "adm", &["kick", &b.socket_id]);
    assert!(ok && out.contains("adm-2"), "{out} {err}");
    let (code, frames) = b.closed().await;
    assert!(frames.iter().any(|f| f["data"]["code"] == "KICKED"), "{frames:?}");
    assert_eq!(code, Some(4003));
    assert_eq!(a.next_event("user-left").await["socketId"], b.socket_id.as_str());
    let (ok, _, _) = admin_cli(&nats.url(), "adm", &["kick", "no-such-connection"]);
    assert!(!ok, "kicking an unknown connection fails");

    // close the room: its members everywhere are disconnected
    let mut b2 = WsClient::connect_url(&n2.ws_url(&psy_token())).await;
    b2.join(&room).await;
    a.next_event("user-joined").await;
    let (ok, _, err) = admin_cli(&nats.url(), "adm", &["close", &room]);
    assert!(ok, "{err}");
    for c in [&mut a, &mut b2] {
        let (code, frames) = c.closed().await;
        assert!(frames.iter().any(|f| f["data"]["code"] == "ROOM_CLOSED"), "{frames:?}");
        assert_eq!(code, Some(4003));
    }

    // drain the process node: it exits cleanly
    let (ok, out, err) = admin_cli(&nats.url(), "adm", &["drain", "adm-2"]);
    assert!(ok && out.contains("adm-2"), "{out} {err}");
    assert!(n2.exited().await.success());
}

/// Sends `ice-candidate`s from `from` to `to` until one arrives (bounded attempts, each
/// awaiting the frame with a timeout): relaying works again.
async fn relay_eventually(from: &mut WsClient, to: &mut WsClient) {
    for attempt in 0..40 {
        from.send("ice-candidate", json!({"candidate": {"attempt": attempt}, "to": to.socket_id})).await;
        let got = tokio::time::timeout(std::time::Duration::from_millis(500), to.ws_next_text()).await;
        if let Ok(Some(v)) = got {
            if v["event"] == "ice-candidate" {
                return;
            }
        }
    }
    panic!("relay never worked again");
}

trait NextText {
    async fn ws_next_text(&mut self) -> Option<serde_json::Value>;
}

impl NextText for WsClient {
    async fn ws_next_text(&mut self) -> Option<serde_json::Value> {
        use futures_util::StreamExt;
        while let Some(Ok(m)) = self.ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                return serde_json::from_str(&t).ok();
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_nats_restart_and_local_rooms_work_meanwhile() {
    let mut nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "rs", &data, "rs-1").await;
    let n2 = node(&nats.url(), "rs", &data, "rs-2").await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    // A second call with both participants on n1.
    let s2 = n1
        .create_session(&SessionSpec { client: "c-loc".into(), psychologist: "p-loc".into(), ..SessionSpec::default() })
        .await;
    let local_room = n1.room_for(s2["id"].as_str().unwrap(), "c-loc").await;
    let mut l1 = WsClient::connect(&n1, &token("c-loc", Role::Client)).await;
    let mut l2 = WsClient::connect(&n1, &token("p-loc", Role::Psychologist)).await;
    l1.join(&local_room).await;
    l2.join(&local_room).await;
    l1.next_event("user-joined").await;

    nats.kill();
    // NATS is away: sockets stay open and the local-only call keeps relaying.
    l2.send("offer", json!({"offer": {"during": "outage"}, "to": l1.socket_id})).await;
    assert_eq!(l1.next_event("offer").await["offer"]["during"], "outage");

    nats.restart();
    relay_eventually(&mut a, &mut b).await;
    relay_eventually(&mut b, &mut a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_that_comes_back_empty_gets_the_membership_back() {
    let mut nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "em", &data, "em-1").await;
    let n2 = node(&nats.url(), "em", &data, "em-2").await;
    let (_, room) = n1.call().await;
    let (mut a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;

    nats.restart_empty();
    relay_eventually(&mut a, &mut b).await;
    relay_eventually(&mut b, &mut a).await;
    // The nodes put their members back into the new bucket (no event says when: bounded poll).
    let app = n1.server.as_ref().unwrap().app.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.node.room_members(&room.as_str().into()).await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "membership never came back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // ... so capacity holds again, and leaving and joining still work across the nodes.
    let mut extra = WsClient::connect(&n2, &admin()).await;
    extra.send("join-room", json!({"roomId": room})).await;
    extra.expect_error("ROOM_FULL").await;
    b.send("leave-room", json!({"roomId": room})).await;
    assert_eq!(next_not_relay(&mut a).await, ("user-left".into(), b.socket_id.clone()));
    b.join(&room).await;
    assert_eq!(next_not_relay(&mut a).await, ("user-joined".into(), b.socket_id.clone()));
}

/// The next frame that is not a late copy from `relay_eventually`'s attempts: its event and
/// socket id.
async fn next_not_relay(c: &mut WsClient) -> (String, String) {
    loop {
        let v = c.next().await;
        if v["event"] != "ice-candidate" {
            return (v["event"].as_str().unwrap().to_owned(), v["data"]["socketId"].as_str().unwrap_or("").to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_two_routed_nats_servers_meet() {
    let (c1, c2) = (free_port(), free_port());
    let s1 = NatsServer::start_with(Some(c1), vec![c2], "s1");
    let s2 = NatsServer::start_with(Some(c2), vec![c1], "s2");
    let data = Arc::new(tempfile::tempdir().unwrap());
    // JetStream needs both servers of the NATS cluster to elect a meta leader: the first
    // node's start waits (bounded) until the bucket can be created.
    let n1 = node(&s1.url(), "rt", &data, "rt-1").await;
    let n2 = node(&s2.url(), "rt", &data, "rt-2").await;
    let (_, room) = n1.call().await;
    let mut a = WsClient::connect(&n1, &client_token()).await;
    let mut b = WsClient::connect(&n2, &psy_token()).await;
    a.join(&room).await;
    let joined = b.join(&room).await;
    assert_eq!(joined["participants"].as_array().unwrap().len(), 2);
    a.next_event("user-joined").await;
    a.send("offer", json!({"offer": {"via": "routes"}, "to": b.socket_id})).await;
    assert_eq!(b.next_event("offer").await["offer"]["via"], "routes");
    b.send("answer", json!({"answer": {"ok": true}, "to": a.socket_id})).await;
    assert_eq!(a.next_event("answer").await["answer"]["ok"], true);
}

/// A node that starts before JetStream is ready (one server of a two-server NATS cluster
/// cannot elect a JetStream leader) waits for it, and serves once the second server is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waits_for_jetstream_to_become_ready() {
    let (c1, c2) = (free_port(), free_port());
    let s1 = NatsServer::start_with(Some(c1), vec![c2], "j1");
    let data = Arc::new(tempfile::tempdir().unwrap());
    let mut s2 = None;
    let mut c = cmd(data.path());
    c.env("SIGNALGRID_PRESENCE_MS", "200");
    let n = NodeProc::serve_meanwhile(c, &["--nats-url", &s1.url(), "--cluster", "js", "--node-id", "j-1"], |log| {
        loop {
            let line = log.recv_timeout(WAIT * 2).expect("the node says it waits for JetStream");
            if line.contains("JetStream not ready yet") {
                break;
            }
        }
        s2 = Some(NatsServer::start_with(Some(c2), vec![c1], "j2"));
    });
    // Up and working: ready, and a join (the session made through a node on the same store).
    let ready = reqwest::get(format!("http://{}/readyz", n.addr)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let (_, room) = TestNode::start_in(data.clone(), |_| {}).await.call().await;
    let mut a = WsClient::connect_url(&n.ws_url(&client_token())).await;
    let joined = a.join(&room).await;
    assert_eq!(joined["participants"].as_array().unwrap().len(), 1, "{joined}");
    drop(s2);
}
