//! A rolling restart of a three-node cluster under load (issue 9; PROTOCOL.md section 6,
//! docs/cluster.md "A node is stopped or drained"): 50 calls relay numbered ICE candidates
//! both ways at a bounded rate while every node in turn is drained (SIGTERM), its clients
//! resume on the other nodes (round robin over the live ones), and it is started again under
//! the same id. At the end every call is still joined, nobody heard `user-left` or
//! `RESUME_FAILED`, no resume reported `lost`, and every numbered relay arrived at its peer
//! exactly once and in order (those sent while the peer was resuming arrived on its resume).

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use proc::{cmd, NodeProc};
use serde_json::{json, Value};
use signalgrid_actors::identity::Role;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const NODES: [&str; 3] = ["rr-1", "rr-2", "rr-3"];
const PAIRS: usize = 50;
/// Each socket sends one numbered relay per period.
const SEND_EVERY: Duration = Duration::from_millis(200);
/// Hang guard of the whole run (not a timing assertion).
const WHOLE_RUN: Duration = Duration::from_secs(300);

/// A node process of the cluster on `data`, under `id`.
fn start_node(nats: &str, data: &std::path::Path, id: &str) -> NodeProc {
    let mut c = cmd(data);
    c.env("SIGNALGRID_PRESENCE_MS", "200")
        .env("SIGNALGRID_DEAD_AFTER_MS", "1500")
        .env("SIGNALGRID_HTTP_MAX_CONNECTIONS_PER_IP", "1000");
    NodeProc::serve_with(c, &["--nats-url", nats, "--cluster", "rr", "--node-id", id])
}

/// Waits (bounded) until the node at `addr` answers `/readyz` with 200.
async fn wait_ready(addr: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{addr} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session of `client` and `psy` made through the node at `addr`; returns its room.
async fn call_via(http: &reqwest::Client, addr: &str, client: &str, psy: &str) -> String {
    let spec = SessionSpec { client: client.into(), psychologist: psy.into(), ..SessionSpec::default() };
    call_for(http, &format!("http://{addr}"), &spec).await.1
}

/// The nodes clients may resume on, and a round-robin cursor over them.
struct Live {
    bases: Mutex<Vec<String>>,
    next: AtomicUsize,
}

impl Live {
    fn pick(&self) -> String {
        let bases = self.bases.lock().unwrap();
        bases[self.next.fetch_add(1, Ordering::Relaxed) % bases.len()].clone()
    }
}

/// Where each socket is: its node id, or None while it is away (resuming).
type Positions = Vec<Option<String>>;

/// One socket of a seat: its node id, the first and last relay number sent on it, and the
/// number sent when `NODE_DRAINING` arrived on it.
type SocketLog = (String, Option<(u64, u64)>, Option<u64>);

/// What one socket saw over the run.
#[derive(Debug, Default)]
struct Report {
    who: String,
    sent: u64,
    /// The next relay number expected from the peer (all below it arrived or are missing).
    received: u64,
    /// Relay numbers from the peer that never arrived (skipped over by a later one).
    missing: Vec<u64>,
    /// Per socket this seat had: (node id, relays sent on it: first and last number, the
    /// number sent when `NODE_DRAINING` arrived), for the report of a loss.
    sockets: Vec<SocketLog>,
    /// The peer's count of relays it sent (its final marker).
    peer_sent: Option<u64>,
    resumes: u64,
    reconnecting: u64,
    reconnected: u64,
    user_left: Vec<Value>,
    resume_failed: Vec<Value>,
    /// Anything that breaks the contract: a gap, a duplicate, an unexpected frame or close,
    /// a resume with `lost: true`.
    faults: Vec<String>,
}

/// One socket of a pair: sends a numbered relay to `peer` every `SEND_EVERY` while
/// connected (not after `NODE_DRAINING`), checks the peer's relays arrive in order and once,
/// resumes on a live node when its node closes it, and after `stop` sends its count and
/// reads until the peer's count arrived and matches what it received, and every
/// `user-reconnecting` about the peer was followed by its `user-reconnected` (the two travel
/// apart from the relays, so the last may come after the peer's count). Hands its socket
/// back still open: the caller drops the sockets only once every task ended, so that no
/// socket hears a peer that finished first go away.
async fn run_socket(
    i: usize,
    mut c: WsClient,
    peer: String,
    live: Arc<Live>,
    positions: watch::Sender<Positions>,
    mut stop: watch::Receiver<bool>,
) -> (Report, WsClient) {
    let mut r = Report { who: format!("{} ({})", c.socket_id, jwt_user(i)), ..Report::default() };
    r.sockets.push((c.node_id.clone(), None, None));
    let mut tick = tokio::time::interval(SEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending = true;
    let mut stopping = false;
    let deadline = tokio::time::Instant::now() + WHOLE_RUN;
    loop {
        if stopping && r.peer_sent.is_some_and(|n| n == r.received) && r.reconnecting == r.reconnected {
            return (r, c);
        }
        if tokio::time::Instant::now() > deadline {
            r.faults.push(format!("run out of time (stopping {stopping}, peer sent {:?})", r.peer_sent));
            return (r, c);
        }
        let frame = tokio::select! {
            _ = tick.tick(), if sending && !stopping => {
                let m = json!({"event": "ice-candidate", "data": {"candidate": {"n": r.sent}, "to": peer}});
                if c.ws.send(Message::text(m.to_string())).await.is_ok() {
                    let s = &mut r.sockets.last_mut().unwrap().1;
                    *s = Some((s.map_or(r.sent, |s| s.0), r.sent));
                    r.sent += 1;
                }
                continue;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    let m = json!({"event": "ice-candidate", "data": {"candidate": {"end": r.sent}, "to": peer}});
                    c.ws.send(Message::text(m.to_string())).await.expect("send the final count");
                }
                continue;
            }
            f = tokio::time::timeout(WAIT, c.ws.next()) => f,
        };
        let frame = match frame {
            Err(_) => {
                r.faults.push(format!("no frame for {WAIT:?} (stopping {stopping})"));
                return (r, c);
            }
            Ok(f) => f,
        };
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("server sent JSON");
                if let Some(seq) = v["seq"].as_u64() {
                    if seq <= c.last_seq {
                        r.faults.push(format!("seq went back after {}: {v}", c.last_seq));
                    }
                    c.last_seq = seq;
                }
                let d = &v["data"];
                match v["event"].as_str().unwrap_or("") {
                    "ice-candidate" if d["from"] == peer.as_str() => {
                        if let Some(end) = d["candidate"]["end"].as_u64() {
                            // The peer's last relays come before its count, in order.
                            r.missing.extend(r.received..end);
                            r.received = r.received.max(end);
                            r.peer_sent = Some(end);
                        } else {
                            match d["candidate"]["n"].as_u64() {
                                Some(n) if n >= r.received => {
                                    r.missing.extend(r.received..n);
                                    r.received = n + 1;
                                }
                                _ => r.faults.push(format!("expected relay {} from the peer, got {v}", r.received)),
                            }
                        }
                    }
                    "user-reconnecting" if d["socketId"] == peer.as_str() => r.reconnecting += 1,
                    "user-reconnected" if d["socketId"] == peer.as_str() => r.reconnected += 1,
                    "user-left" => r.user_left.push(v.clone()),
                    "error" if d["code"] == "NODE_DRAINING" => {
                        sending = false;
                        r.sockets.last_mut().unwrap().2 = Some(r.sent);
                    }
                    "error" if d["code"] == "RESUME_FAILED" => r.resume_failed.push(v.clone()),
                    _ => r.faults.push(format!("unexpected frame {v}")),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(frame))) if frame.as_ref().is_some_and(|f| u16::from(f.code) == 1012) => {
                // Drained: resume on a live node.
                positions.send_modify(|p| p[i] = None);
                let seat = c.seat();
                let base = live.pick();
                c = WsClient::resume(&base, &seat).await;
                r.resumes += 1;
                if c.hello["resumed"] != true {
                    r.faults.push(format!("resume at {base} failed: {}", c.hello));
                    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(WAIT, c.ws.next()).await {
                        r.resume_failed.push(serde_json::from_str(&t).unwrap_or(Value::Null));
                    }
                    return (r, c);
                }
                if c.socket_id != seat.socket_id || c.hello["lost"] != false {
                    r.faults.push(format!("resume of {} at {base}: {}", seat.socket_id, c.hello));
                }
                sending = true;
                r.sockets.push((c.node_id.clone(), None, None));
                let node = c.node_id.clone();
                positions.send_modify(|p| p[i] = Some(node));
            }
            other => {
                r.faults.push(format!("socket ended: {other:?}"));
                return (r, c);
            }
        }
    }
}

/// The user of socket `i` (even: a pair's client, odd: its psychologist).
fn jwt_user(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("rr-c{}", i / 2)
    } else {
        format!("rr-p{}", i / 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_under_load_loses_no_call_and_no_frame() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut procs: Vec<Option<NodeProc>> =
        NODES.iter().map(|id| Some(start_node(&nats.url(), data.path(), id))).collect();
    let bases: Vec<String> = procs.iter().map(|p| format!("ws://{}", p.as_ref().unwrap().addr)).collect();
    for p in &procs {
        wait_ready(&p.as_ref().unwrap().addr).await;
    }

    // 50 calls: pair k's client on node k % 3, its psychologist on node (k / 3) % 3, so
    // that two in three calls span two nodes.
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for k in 0..PAIRS {
        let (cu, pu) = (jwt_user(2 * k), jwt_user(2 * k + 1));
        let room = call_via(&http, &procs[0].as_ref().unwrap().addr, &cu, &pu).await;
        let mut a = WsClient::connect_url(&format!("{}/ws?token={}", bases[k % 3], token(&cu, Role::Client))).await;
        let mut b =
            WsClient::connect_url(&format!("{}/ws?token={}", bases[(k / 3) % 3], token(&pu, Role::Psychologist))).await;
        a.join(&room).await;
        b.join(&room).await;
        assert_eq!(a.next_event("user-joined").await["socketId"], b.socket_id.as_str());
        clients.push(a);
        clients.push(b);
    }
    let ids: Vec<String> = clients.iter().map(|c| c.socket_id.clone()).collect();
    let (positions, mut where_) =
        watch::channel::<Positions>(clients.iter().map(|c| Some(c.node_id.clone())).collect());
    let live = Arc::new(Live { bases: Mutex::new(bases.clone()), next: AtomicUsize::new(0) });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let peer = ids[i ^ 1].clone();
        let (live, positions, stop) = (live.clone(), positions.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(run_socket(i, c, peer, live, positions, stop)));
    }

    for (n, id) in NODES.iter().enumerate() {
        let on_it = where_.borrow().iter().filter(|p| p.as_deref() == Some(*id)).count();
        assert!(on_it > 0, "round {n}: no client on {id} to move");
        live.bases.lock().unwrap().retain(|b| *b != bases[n]);
        let old = procs[n].take().unwrap();
        old.sigterm();
        // Every client of the drained node resumed elsewhere ...
        let moved = tokio::time::timeout(
            WAIT * 2,
            where_.wait_for(|p| p.iter().all(|at| at.as_deref().is_some_and(|at| at != *id))),
        )
        .await
        .map(|r| r.is_ok());
        assert_eq!(moved, Ok(true), "round {n}: the clients of {id} never all resumed: {:?}", *where_.borrow());
        // ... and it exits cleanly; then it starts again under the same id.
        assert!(old.exited().await.success(), "{id} exits with 0 after its drain");
        let again = start_node(&nats.url(), data.path(), id);
        wait_ready(&again.addr).await;
        let base = format!("ws://{}", again.addr);
        live.bases.lock().unwrap().push(base);
        procs[n] = Some(again);
    }

    stop_tx.send(true).unwrap();
    let (mut reports, mut open) = (Vec::new(), Vec::new());
    for t in tasks {
        let (r, c) = tokio::time::timeout(WHOLE_RUN, t).await.expect("a socket's task ends").expect("a socket's task");
        reports.push(r);
        open.push(c);
    }
    drop(open);
    let faults: Vec<(&str, &String)> =
        reports.iter().flat_map(|r| r.faults.iter().map(|f| (r.who.as_str(), f))).collect();
    let left: Vec<&Value> = reports.iter().flat_map(|r| &r.user_left).collect();
    let failed: Vec<&Value> = reports.iter().flat_map(|r| &r.resume_failed).collect();
    let lost: Vec<String> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.peer_sent != Some(r.received) || !r.missing.is_empty())
        .map(|(i, r)| {
            let peer = &reports[i ^ 1];
            format!(
                "{} missed {:?} of {:?} sent by {}; receiver's sockets {:?}; sender's sockets {:?}",
                r.who, r.missing, r.peer_sent, peer.who, r.sockets, peer.sockets
            )
        })
        .collect();
    // One verdict with every kind of failure, so that a failing run shows them all.
    let verdict = format!(
        "{} faults: {faults:#?}\nuser-left heard {} times: {left:?}\nRESUME_FAILED {} times: {failed:?}\n\
         {} sockets missed relays:\n{}",
        faults.len(),
        left.len(),
        failed.len(),
        lost.len(),
        lost.join("\n")
    );
    assert!(faults.is_empty() && left.is_empty() && failed.is_empty() && lost.is_empty(), "{verdict}");
    // Every socket was drained once (its node restarted) and kept relaying.
    let resumes: u64 = reports.iter().map(|r| r.resumes).sum();
    assert!(resumes >= (2 * PAIRS) as u64, "every socket resumed at least once: {resumes}");
    for (i, r) in reports.iter().enumerate() {
        let peer = &reports[i ^ 1];
        assert!(r.sent > 0 && r.received > 0, "{}: sent {} received {}", r.who, r.sent, r.received);
        // A peer that resumed elsewhere before its old node noticed the socket was gone was
        // never away: its peer hears nothing, or away then back (PROTOCOL.md section 10).
        assert_eq!(r.reconnecting, r.reconnected, "{} heard its peer back as often as away", r.who);
        assert!(r.reconnecting <= peer.resumes, "{} heard its peer away at most once per resume", r.who);
    }
}
