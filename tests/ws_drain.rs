//! Drain without a stampede (PROTOCOL.md section 6, "Drain"): a draining node tells its
//! clients NODE_DRAINING (close 1012) in batches, and each node limits the WebSocket upgrades
//! it accepts per second (503 `CONNECT_RATE_LIMITED` with `retry-after`).

mod common;
use common::*;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use signalgrid_actors::identity::Role;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// What a client's socket brought, as its pump reports it.
#[derive(Debug)]
enum Seen {
    Text(Value),
    Pong(Vec<u8>),
    /// The socket ended: the close code, if a close frame came.
    Closed(Option<u16>),
}

/// Reads client `i`'s socket in a task (answering the node's pings) and reports what arrives
/// on `seen`; sends what arrives on the returned channel.
fn pump(i: usize, c: WsClient, seen: mpsc::UnboundedSender<(usize, Seen)>) -> mpsc::UnboundedSender<Message> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let mut ws = c.ws;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(m) => { let _ = ws.send(m).await; }
                    None => return,
                },
                msg = ws.next() => {
                    let s = match msg {
                        Some(Ok(Message::Text(t))) => Seen::Text(serde_json::from_str(&t).unwrap()),
                        Some(Ok(Message::Pong(p))) => Seen::Pong(p.to_vec()),
                        Some(Ok(Message::Close(c))) => Seen::Closed(c.map(|c| u16::from(c.code))),
                        None | Some(Err(_)) => Seen::Closed(None),
                        Some(Ok(_)) => continue,
                    };
                    let end = matches!(s, Seen::Closed(_));
                    let _ = seen.send((i, s));
                    if end {
                        return;
                    }
                }
            }
        }
    });
    tx
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<(usize, Seen)>) -> (usize, Seen) {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("timed out waiting for a client's socket").expect("pumps alive")
}

async fn readyz(node: &TestNode) -> (u16, Value) {
    let res = node.get("/readyz", None).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_tells_its_clients_in_batches() {
    const CLIENTS: usize = 12;
    const BATCH: usize = 5;
    // The interval is far longer than the test: only the first batch can go out.
    let node = TestNode::start_with(|s| {
        s.drain.batch_size = BATCH;
        s.drain.batch_interval_ms = 60_000;
    })
    .await;
    assert_eq!(readyz(&node).await.0, 200);

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut send = Vec::new();
    for i in 0..CLIENTS {
        let c = WsClient::connect(&node, &token(&format!("drain-user-{i}"), Role::Client)).await;
        send.push(pump(i, c, seen_tx.clone()));
    }

    let app = node.server.as_ref().unwrap().app.clone();
    let drain = tokio::spawn(async move { app.node.drain(Duration::from_secs(600)).await });

    // The first batch: NODE_DRAINING, then close 1012.
    let mut told: HashMap<usize, bool> = HashMap::new();
    let mut closed = Vec::new();
    while closed.len() < BATCH {
        match next_seen(&mut seen).await {
            (i, Seen::Text(v)) => {
                assert_eq!(v["event"], "error", "client {i}: {v}");
                assert_eq!(v["data"]["code"], "NODE_DRAINING", "client {i}: {v}");
                told.insert(i, true);
            }
            (i, Seen::Closed(code)) => {
                assert_eq!(code, Some(1012), "client {i}");
                assert!(told.contains_key(&i), "client {i} closed without NODE_DRAINING first");
                closed.push(i);
            }
            (i, other) => panic!("client {i}: unexpected {other:?}"),
        }
    }
    let (status, body) = readyz(&node).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["draining"], true, "{body}");

    // The other clients were not told: each still answers, and nothing else came first.
    let rest: Vec<usize> = (0..CLIENTS).filter(|i| !closed.contains(i)).collect();
    assert_eq!(rest.len(), CLIENTS - BATCH);
    for &i in &rest {
        // A pump whose socket already ended reports that instead (below).
        let _ = send[i].send(Message::Ping(vec![i as u8].into()));
    }
    let mut answered = Vec::new();
    while answered.len() < rest.len() {
        match next_seen(&mut seen).await {
            (i, Seen::Pong(p)) if rest.contains(&i) => {
                assert_eq!(p, vec![i as u8]);
                answered.push(i);
            }
            (i, other) => panic!("client {i} should be open and untold, got {other:?}"),
        }
    }
    assert!(rest.iter().all(|i| !told.contains_key(i)), "{told:?}");
    assert!(!drain.is_finished(), "the drain waits for its next batch");
    assert_eq!(readyz(&node).await.0, 503);
    drain.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_over_the_connect_rate_get_503_with_retry_after() {
    // One upgrade in 100 s after a burst of two: the third is refused whatever the timing.
    let node = TestNode::start_with(|s| {
        s.limits.connect_rate = 0.01;
        s.limits.connect_burst = 2;
    })
    .await;
    let _a = WsClient::connect(&node, &client_token()).await;
    let _b = WsClient::connect(&node, &psy_token()).await;

    let res = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(node.ws_url(&admin())))
        .await
        .expect("upgrade answered");
    let resp = match res {
        Err(WsError::Http(resp)) => resp,
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("upgrade over the connect rate was accepted"),
    };
    assert_eq!(resp.status().as_u16(), 503);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry), "retry-after {retry}");
    let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], "CONNECT_RATE_LIMITED", "{body}");
    assert_eq!(body["error"]["details"]["retryAfterSeconds"], retry, "{body}");
    assert!(body["error"]["requestId"].is_string(), "{body}");
    let refused = metric_at(node.addr, "signalgrid_rate_limited_total", "edge=\"ws_connect\"").await;
    assert!(refused.unwrap_or(0.0) >= 1.0, "refusal counted: {refused:?}");

    // REST is not limited by it.
    assert_eq!(node.get("/healthz", None).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_bounds_the_batches() {
    const CLIENTS: usize = 7;
    // Batches far apart, a deadline of one second: the rest are told together at the
    // deadline, and the drain ends (instead of waiting for its next batches).
    let node = TestNode::start_with(|s| {
        s.drain.batch_size = 3;
        s.drain.batch_interval_ms = 600_000;
    })
    .await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut _send = Vec::new();
    for i in 0..CLIENTS {
        let c = WsClient::connect(&node, &token(&format!("drain-user-{i}"), Role::Client)).await;
        _send.push(pump(i, c, seen_tx.clone()));
    }
    let app = node.server.as_ref().unwrap().app.clone();
    let drain = tokio::spawn(async move { app.node.drain(Duration::from_secs(1)).await });

    let mut told = Vec::new();
    let mut closed = Vec::new();
    while closed.len() < CLIENTS {
        match next_seen(&mut seen).await {
            (i, Seen::Text(v)) => {
                assert_eq!(v["data"]["code"], "NODE_DRAINING", "client {i}: {v}");
                told.push(i);
            }
            (i, Seen::Closed(code)) => {
                assert_eq!(code, Some(1012), "client {i}");
                closed.push(i);
            }
            (i, other) => panic!("client {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(sorted_ids(told), (0..CLIENTS).collect::<Vec<_>>(), "every client told NODE_DRAINING once");
    tokio::time::timeout(WAIT, drain).await.expect("the drain ends at its deadline").unwrap();
}

fn sorted_ids(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}
