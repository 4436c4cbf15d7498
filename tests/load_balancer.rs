//! signalgrid behind a real nginx with the shipped configuration (deploy/nginx/signalgrid.conf,
//! issue 13 item 1): `nginx -t` accepts it; a two-person call runs through it across two
//! nodes on a real nats-server; a drained node gets no new connections through it. The same
//! with node processes stopped by the operator's `admin drain`: clients resume their seats
//! through nginx on the other node and the call goes on.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/nginx.rs"]
mod nginx;
#[path = "common/proc.rs"]
mod proc;

use std::sync::Arc;

use cluster_support::*;
use common::*;
use nginx::{call_through, Nginx};
use serde_json::{json, Value};

#[test]
fn nginx_accepts_the_shipped_configuration() {
    let ports = [free_port(), free_port(), free_port()];
    let addrs: Vec<_> = ports.iter().map(|p| format!("127.0.0.1:{p}").parse().unwrap()).collect();
    let (ok, out) = nginx::config_test(&addrs);
    assert!(ok, "nginx -t: {out}");
    assert!(out.contains("test is successful"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_runs_through_nginx_and_a_drained_node_gets_no_new_connections() {
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let n1 = node(&nats.url(), "lb", &data, "node-a").await;
    let n2 = node(&nats.url(), "lb", &data, "node-b").await;
    let lb = Nginx::start(&[n1.addr, n2.addr]);

    // Round robin without stickiness: consecutive connections land on both nodes.
    let mut probes = Vec::new();
    for _ in 0..4 {
        probes.push(WsClient::connect_url(&format!("{}/ws?token={}", lb.ws(), client_token())).await);
    }
    let seen = sorted(
        probes.iter().map(|c| c.node_id.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
    );
    assert_eq!(seen, ["node-a", "node-b"], "nginx spreads new connections over both nodes");
    for p in probes {
        p.close().await;
    }

    // A two-person call through nginx: join, offer and answer relayed.
    let (_, room) = call_through(&lb).await;
    let (mut a, mut b) = pair_in_room(&lb.ws(), &lb.ws(), &room).await;
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    a.send("offer", json!({"to": b.socket_id, "offer": offer})).await;
    let got = b.next_event("offer").await;
    assert_eq!((&got["offer"], &got["from"]), (&offer, &json!(a.socket_id)), "{got}");
    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
    b.send("answer", json!({"to": a.socket_id, "answer": answer})).await;
    let got = a.next_event("answer").await;
    assert_eq!((&got["answer"], &got["from"]), (&answer, &json!(b.socket_id)), "{got}");

    // Drain node-a (what SIGTERM and `admin drain` start): its clients are told, its /readyz
    // says 503, and every new WebSocket through nginx lands on node-b.
    n1.server.as_ref().unwrap().app.node.drain(WAIT).await;
    for c in [&mut a, &mut b] {
        if c.node_id == "node-a" {
            let (code, frames) = c.closed().await;
            assert_eq!(code, Some(1012), "{frames:?}");
        }
    }
    let ready = n1.get("/readyz", None).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["draining"], true);
    for _ in 0..6 {
        let c = WsClient::connect_url(&format!("{}/ws?token={}", lb.ws(), psy_token())).await;
        assert_eq!(c.node_id, "node-b", "a new connection after the drain");
        c.close().await;
    }
    let log = lb.error_log();
    assert!(log.contains("upstream server temporarily disabled"), "passive health left node-a out:\n{log}");
}

/// A `serve` process of cluster `name` on `data` (one SQLite store shared by the nodes).
fn node_proc(nats: &str, name: &str, data: &std::path::Path, id: &str) -> proc::NodeProc {
    let mut c = proc::cmd(data);
    c.env("SIGNALGRID_PRESENCE_MS", "200").env("SIGNALGRID_DEAD_AFTER_MS", "1500");
    proc::NodeProc::serve_with(c, &["--nats-url", nats, "--cluster", name, "--node-id", id])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_drain_of_a_node_process_moves_its_clients_through_nginx_to_the_other() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let p1 = node_proc(&nats.url(), "lbp", data.path(), "proc-a");
    let p2 = node_proc(&nats.url(), "lbp", data.path(), "proc-b");
    let lb = Nginx::start(&[p1.addr.parse().unwrap(), p2.addr.parse().unwrap()]);

    let (_, room) = call_through(&lb).await;
    let (mut a, mut b) = pair_in_room(&lb.ws(), &lb.ws(), &room).await;
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    a.send("offer", json!({"to": b.socket_id, "offer": offer})).await;
    assert_eq!(b.next_event("offer").await["offer"], offer);

    // The operator drains proc-a over NATS; it tells its clients to resume elsewhere.
    let out = proc::cmd(data.path())
        .args(["admin", "--nats-url", &nats.url(), "--cluster", "lbp", "drain", "proc-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Whoever was on proc-a resumes its seat through nginx, lands on proc-b and keeps its
    // socket id and room with nothing lost; the other sees it away and back (never
    // `user-left`), and the call goes on.
    assert_ne!(a.node_id, b.node_id, "round robin put the two on different nodes");
    let (mut moved, user, mut stayed) = if a.node_id == "proc-a" { (a, "client-1", b) } else { (b, "psy-1", a) };
    let (code, frames) = moved.closed().await;
    assert_eq!(code, Some(1012), "{frames:?}");
    assert!(frames.iter().any(|f| f["data"]["code"] == "NODE_DRAINING"), "{frames:?}");
    let seat = moved.drop_socket();
    resume::peer_hears(&mut stayed, "user-reconnecting", &seat.socket_id, user).await;
    let mut back = resume::resume_ok(&lb.ws(), &seat, false).await;
    assert_eq!(back.node_id, "proc-b");
    resume::peer_hears(&mut stayed, "user-reconnected", &seat.socket_id, user).await;
    back.send("offer", json!({"to": stayed.socket_id, "offer": offer})).await;
    let got = stayed.next_event("offer").await;
    assert_eq!((&got["offer"], &got["from"]), (&offer, &json!(seat.socket_id)), "{got}");
    marker(&mut stayed, &mut back, "to-the-resumed-seat").await;
    assert!(p1.exited().await.success());

    for _ in 0..4 {
        let c = WsClient::connect_url(&format!("{}/ws?token={}", lb.ws(), admin())).await;
        assert_eq!(c.node_id, "proc-b", "a new connection after the drain");
        c.close().await;
    }
}
