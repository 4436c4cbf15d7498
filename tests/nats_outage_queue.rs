//! A NATS outage with relays in flight: the real nats-server is killed while a client on node
//! A keeps relaying large frames to its peer on node B. A's publish queue stays within its
//! byte bound (read from A's own `/metrics`: A is a real process), the relays are dropped and
//! counted, and after NATS returns none of them arrives late: the peer's first relays are
//! the ones sent after the return.

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
use serde_json::json;

/// A's publish queue bound in this test, in bytes (a handful of 60 KB relays).
const QUEUE_BYTES: usize = 256 * 1024;
/// Relays sent during the outage: about 9 MB of 60 KB frames. A's send budget is raised to
/// let them all through (the default byte budget would refuse most of them at the edge,
/// before they reach the publish queue this test is about).
const OUTAGE_RELAYS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_during_an_outage_are_dropped_within_the_bound_and_never_arrive_late() {
    let mut nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let b_node = node(&nats.url(), "oq", &data, "oq-b").await;
    let mut c = cmd(data.path());
    c.env("SIGNALGRID_PRESENCE_MS", "200")
        .env("SIGNALGRID_DEAD_AFTER_MS", "600000")
        .env("SIGNALGRID_PUBLISH_QUEUE_BYTES", QUEUE_BYTES.to_string())
        .env("SIGNALGRID_WS_BYTES_RATE", (64 << 20).to_string())
        .env("SIGNALGRID_WS_BURST_BYTES", (64 << 20).to_string());
    let a_node = NodeProc::serve_with(c, &["--nats-url", &nats.url(), "--cluster", "oq", "--node-id", "oq-a"]);
    let (_, room) = b_node.call().await;
    let (mut a, mut b) = pair_in_room(&format!("ws://{}", a_node.addr), &ws_base(&b_node), &room).await;
    assert_eq!(a.node_id, "oq-a");
    marker(&mut a, &mut b, "before").await;

    nats.kill();
    metric_until(a_node.addr.as_str(), "signalgrid_nats_connected", "", |v| v == 0.0).await;
    let pad = "x".repeat(60_000);
    for i in 0..OUTAGE_RELAYS {
        a.send("ice-candidate", json!({"candidate": {"marker": format!("outage-{i}"), "pad": pad}, "to": b.socket_id}))
            .await;
    }
    // A handled every one of them: each was dropped and counted, none was queued.
    let dropped = "signalgrid_nats_publish_dropped_total";
    metric_until(a_node.addr.as_str(), dropped, "reason=\"disconnected\"", |v| v >= OUTAGE_RELAYS as f64).await;
    let queued = metric_at(&a_node.addr, "signalgrid_nats_publish_queue_bytes", "").await.unwrap_or(0.0);
    assert!(queued <= QUEUE_BYTES as f64, "A queues {queued} bytes, past its bound of {QUEUE_BYTES}");

    nats.restart();
    metric_until(a_node.addr.as_str(), "signalgrid_nats_connected", "", |v| v == 1.0).await;
    // B may resubscribe its inbox after A is back: send markers (bounded) until one arrives.
    // Whatever B's client gets first must be a marker sent after the return.
    let mut arrived = false;
    for attempt in 0..40 {
        a.send("ice-candidate", json!({"candidate": {"marker": format!("after-{attempt}")}, "to": b.socket_id})).await;
        while let Ok(frame) = tokio::time::timeout(Duration::from_millis(500), b.next()).await {
            if frame["event"] != "ice-candidate" {
                continue;
            }
            let tag = frame["data"]["candidate"]["marker"].as_str().unwrap_or_default().to_owned();
            assert!(tag.starts_with("after-"), "a relay from the outage arrived late: {tag}");
            arrived = true;
            break;
        }
        if arrived {
            break;
        }
    }
    assert!(arrived, "relaying never worked again after the outage");
}
