//! A cluster of node processes reached only through a real nginx with the shipped
//! configuration (deploy/nginx/signalgrid.conf; issue 13 item 1): round robin without sticky
//! sessions puts a call's two parties on different nodes; a node killed with SIGKILL leaves
//! its clients to resume their seats through nginx, which carries them to the survivors
//! (PROTOCOL.md section 6), and new calls go on there; the `X-Forwarded-For` nginx appends
//! is what the nodes key REST rate limits on and what the audit trail records, and a client
//! cannot pick its address by writing the header itself.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/nginx.rs"]
mod nginx;
#[path = "common/proc.rs"]
mod proc;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use cluster_support::*;
use common::resume::{peer_hears, resume_ok};
use common::*;
use nginx::{call_through, Nginx};
use serde_json::{json, Value};

/// A `serve` process of cluster `name` on `data` (one SQLite store shared by the nodes),
/// declared dead 1.5 s after its last heartbeat, with a resume window (30 s) longer than
/// every wait here, and `env` on top.
fn node_proc(nats: &str, name: &str, data: &std::path::Path, id: &str, env: &[(&str, &str)]) -> proc::NodeProc {
    let mut c = proc::cmd(data);
    c.env("SIGNALGRID_PRESENCE_MS", "200")
        .env("SIGNALGRID_DEAD_AFTER_MS", "1500")
        .env(common::resume::WINDOW_ENV, "30000");
    for (k, v) in env {
        c.env(k, v);
    }
    proc::NodeProc::serve_with(c, &["--nats-url", nats, "--cluster", name, "--node-id", id])
}

fn addr(p: &proc::NodeProc) -> SocketAddr {
    p.addr.parse().unwrap()
}

/// An offer from `from` reaches `to`, with `from`'s socket id.
async fn offer_arrives(from: &mut WsClient, to: &mut WsClient) {
    let offer = json!({"type": "offer", "sdp": format!("v=0\r\ns={}\r\n", from.socket_id)});
    from.send("offer", json!({"to": to.socket_id, "offer": offer})).await;
    let got = to.next_event("offer").await;
    assert_eq!((&got["offer"], &got["from"]), (&offer, &json!(from.socket_id)), "{got}");
}

/// Three node processes behind nginx: calls whose parties land on different nodes; one node
/// killed with SIGKILL; its client resumes through nginx on a survivor (`lost: true`, the
/// same socket id), the peer hears it away and back (never `user-left`), the call relays both
/// ways, and new connections and a new call through nginx run on the survivors only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_behind_nginx_leaves_its_clients_to_resume_on_the_survivors() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let ids = ["lbk-1", "lbk-2", "lbk-3"];
    let mut procs: Vec<_> = ids.iter().map(|id| node_proc(&nats.url(), "lbk", data.path(), id, &[])).collect();
    let lb = Nginx::start(&procs.iter().map(addr).collect::<Vec<_>>());

    // Round robin, no stickiness: six connections in a row reach all three nodes.
    let mut probes = Vec::new();
    for _ in 0..6 {
        probes.push(WsClient::connect_url(&format!("{}/ws?token={}", lb.ws(), admin())).await);
    }
    let seen: BTreeSet<_> = probes.iter().map(|c| c.node_id.clone()).collect();
    assert_eq!(seen, ids.iter().map(|s| s.to_string()).collect(), "nginx spreads connections over every node");
    for p in probes {
        p.close().await;
    }

    // Two calls, each with its parties on different nodes (consecutive connections).
    let (_, room1) = call_through(&lb).await;
    let (mut a, mut b) = pair_in_room(&lb.ws(), &lb.ws(), &room1).await;
    assert_ne!(a.node_id, b.node_id, "round robin puts the two parties on different nodes");
    offer_arrives(&mut a, &mut b).await;
    offer_arrives(&mut b, &mut a).await;

    // SIGKILL the node holding `a` (client-1): no close frame, no drain.
    let victim_id = a.node_id.clone();
    let victim = ids.iter().position(|id| *id == victim_id).unwrap();
    procs[victim].kill9();
    let (code, _) = a.closed().await;
    assert_eq!(code, None, "a killed node sends no close frame");
    let seat = a.drop_socket();
    peer_hears(&mut b, "user-reconnecting", &seat.socket_id, "client-1").await;

    // The resume goes to nginx, like the client's first connection did; nginx passes over
    // the dead node (connection refused: the next upstream) and a survivor takes the seat.
    let mut a = resume_ok(&lb.ws(), &seat, true).await;
    assert_ne!(a.node_id, victim_id, "the seat came back on a survivor");
    peer_hears(&mut b, "user-reconnected", &seat.socket_id, "client-1").await;
    offer_arrives(&mut a, &mut b).await;
    offer_arrives(&mut b, &mut a).await;
    marker(&mut b, &mut a, "after-the-kill").await;

    // New connections through nginx land on the survivors only, and a new call runs there
    // with its parties on the two survivors.
    let mut probes = Vec::new();
    for _ in 0..6 {
        probes.push(WsClient::connect_url(&format!("{}/ws?token={}", lb.ws(), admin())).await);
    }
    let seen: BTreeSet<_> = probes.iter().map(|c| c.node_id.clone()).collect();
    let survivors: BTreeSet<_> = ids.iter().filter(|id| **id != victim_id).map(|s| s.to_string()).collect();
    assert_eq!(seen, survivors, "after the kill");
    for p in probes {
        p.close().await;
    }
    let (_, room2) = call_through(&lb).await;
    let (mut c, mut d) = pair_in_room(&lb.ws(), &lb.ws(), &room2).await;
    assert!(survivors.contains(&c.node_id) && survivors.contains(&d.node_id), "{} {}", c.node_id, d.node_id);
    offer_arrives(&mut c, &mut d).await;
    offer_arrives(&mut d, &mut c).await;
}

/// An HTTP client whose connections (to nginx) come from loopback address `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(from.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

/// `GET /api/video-calls/config` through nginx without a token, from `from`, optionally with
/// an `X-Forwarded-For` the client wrote itself: the status (a request without a valid
/// token is rate limited per client address, PROTOCOL.md section 5).
async fn untokened(lb: &Nginx, from: &str, forged: Option<&str>) -> u16 {
    let mut req = client_from(from).get(lb.http("/api/video-calls/config"));
    if let Some(xff) = forged {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A WebSocket through nginx from loopback address `from`.
async fn ws_from(lb: &Nginx, from: &str, token: &str) -> WsClient {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", lb.port).parse().unwrap();
    let tcp = tokio::time::timeout(WAIT, s.connect(addr)).await.expect("connect timed out").unwrap();
    let url = format!("{}/ws?token={token}", lb.ws());
    let (ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)))
            .await
            .expect("upgrade timed out")
            .unwrap();
    WsClient::from_stream(ws).await
}

/// The `ipAddress` of `userId`'s `join_success` in session `session`'s audit trail (read
/// through nginx with `GET /api/audit`), once it is written (audit writes are asynchronous).
async fn audited_join_ip(lb: &Nginx, session: &str, user: &str) -> Value {
    let http = reqwest::Client::new();
    let url = lb.http(&format!("/api/audit?sessionId={session}&action=join_success"));
    let found = async {
        loop {
            let res = http.get(&url).header("x-auth-token", admin()).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            let entries = body["entries"].as_array().cloned().unwrap_or_default();
            if let Some(e) = entries.iter().find(|e| e["userId"] == user) {
                return e["ipAddress"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, found).await.expect("the join is in the audit trail")
}

/// Two node processes that list nginx (127.0.0.1) in `http.proxy_addresses`, reached only
/// through nginx by clients on other loopback addresses: each client address has its own
/// REST budget (one spent leaves the other's whole); an `X-Forwarded-For` written by the
/// client does not move it to another budget (nginx appends the address it saw, and the
/// node reads from the right); the audit trail records each party's own address for its
/// join, whichever node it landed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_nginx_keys_rate_limits_and_the_audit_ip() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let env = [("SIGNALGRID_HTTP_PROXY_ADDRESSES", "127.0.0.1"), ("VIDEO_CALL_RATE_LIMIT", "2")];
    let procs: Vec<_> =
        ["xff-1", "xff-2"].iter().map(|id| node_proc(&nats.url(), "xff", data.path(), id, &env)).collect();
    let lb = Nginx::start(&procs.iter().map(addr).collect::<Vec<_>>());

    // The REST budget is per node and per client address: one node behind nginx would make
    // the counts exact, but round robin sends these to both; each node allows two a minute,
    // so four requests from one address spend it on both nodes.
    for _ in 0..4 {
        assert_eq!(untokened(&lb, "127.0.0.2", None).await, 401);
    }
    assert_eq!(untokened(&lb, "127.0.0.2", None).await, 429);
    assert_eq!(untokened(&lb, "127.0.0.2", None).await, 429);
    // Another address behind the same nginx is another client, on both nodes.
    assert_eq!(untokened(&lb, "127.0.0.3", None).await, 401);
    assert_eq!(untokened(&lb, "127.0.0.3", None).await, 401);
    // A header the client wrote itself is kept at the left of the chain; the node believes
    // what nginx appended (127.0.0.2), so the spent budget stays spent.
    assert_eq!(untokened(&lb, "127.0.0.2", Some("198.51.100.7")).await, 429);
    assert_eq!(untokened(&lb, "127.0.0.2", Some("198.51.100.8")).await, 429);

    // The audit IP of each party's join is its own address, not nginx's.
    let (session, room) = call_through(&lb).await;
    let mut a = ws_from(&lb, "127.0.0.4", &client_token()).await;
    let mut b = ws_from(&lb, "127.0.0.5", &psy_token()).await;
    assert_ne!(a.node_id, b.node_id, "round robin puts the two parties on different nodes");
    a.join(&room).await;
    b.join(&room).await;
    assert_eq!(a.next_event("user-joined").await["socketId"], b.socket_id.as_str());
    assert_eq!(audited_join_ip(&lb, &session, "client-1").await, "127.0.0.4");
    assert_eq!(audited_join_ip(&lb, &session, "psy-1").await, "127.0.0.5");
}
