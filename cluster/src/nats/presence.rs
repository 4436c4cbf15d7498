//! Liveness: every node publishes a heartbeat (its status) every `presence_ms`; a node not
//! heard from for `dead_after_ms` is dead. Then (and periodically) a sweep removes dead
//! nodes' members from shared membership and announces the change, so the rooms' other
//! members get one `user-left` each. After a NATS outage every peer gets a fresh grace
//! period, so nobody is swept for heartbeats that could not arrive.
//!
//! A node sweeps at once when a peer it heard goes silent. The periodic sweep (every
//! `PERIODIC_SWEEP` × `dead_after`) is for members of nodes it never heard, such as one that
//! died while this node was starting. It reads every room with members, so it runs
//! rarely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The periodic sweep runs every this many `dead_after` periods.
const PERIODIC_SWEEP: u32 = 6;

use async_nats::Client;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use signalgrid_actors::node::Inbound;
use signalgrid_actors::ports::{Bus, RoomEvent};
use tokio::sync::mpsc;

use super::bus::NatsBus;
use super::membership::KvMembership;
use super::metrics;
use super::subjects::Subjects;

/// What a node says about itself in heartbeats and to `admin nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub node_id: String,
    pub address: String,
    pub version: String,
    pub connections: usize,
    pub rooms: usize,
    pub uptime_secs: u64,
    pub draining: bool,
}

/// Peers heard from, and since when this node may judge them.
#[derive(Default)]
pub struct Peers {
    seen: Mutex<HashMap<String, (Instant, NodeInfo)>>,
}

impl Peers {
    fn heard(&self, info: NodeInfo) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(info.node_id.clone(), (Instant::now(), info));
    }

    /// Forgets peers silent for `dead_after`; returns them.
    fn expire(&self, dead_after: Duration) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let dead: Vec<String> =
            seen.iter().filter(|(_, (t, _))| t.elapsed() > dead_after).map(|(k, _)| k.clone()).collect();
        for d in &dead {
            seen.remove(d);
        }
        dead
    }

    /// Gives every known peer a fresh start (after this node could not hear them).
    fn refresh_all(&self) {
        for (t, _) in self.seen.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
            *t = Instant::now();
        }
    }

    pub fn is_alive(&self, node: &str) -> bool {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).contains_key(node)
    }
}

/// What the presence task needs.
pub(crate) struct PresenceTask {
    pub js: async_nats::jetstream::Context,
    /// The membership bucket, recreated after a reconnect if NATS lost it.
    pub bucket: String,
    pub client: Client,
    pub subjects: Subjects,
    pub inbound: Inbound,
    pub membership: KvMembership,
    pub bus: Arc<NatsBus>,
    pub peers: Arc<Peers>,
    pub me: Arc<dyn Fn() -> NodeInfo + Send + Sync>,
    pub every: Duration,
    pub dead_after: Duration,
    /// `true` when the NATS connection came back after a loss.
    pub reconnected: mpsc::UnboundedReceiver<()>,
}

/// Listens to other nodes' heartbeats.
pub(crate) async fn listen(client: Client, subject: String, my_id: String, peers: Arc<Peers>) {
    let Ok(mut sub) = client.subscribe(subject).await else {
        tracing::error!("cannot subscribe to presence");
        return;
    };
    while let Some(msg) = sub.next().await {
        if let Ok(info) = serde_json::from_slice::<NodeInfo>(&msg.payload) {
            if info.node_id != my_id {
                peers.heard(info);
            }
        }
    }
}

impl PresenceTask {
    async fn beat(&self) {
        let info = (self.me)();
        if let Ok(bytes) = serde_json::to_vec(&info) {
            if self.client.publish(self.subjects.presence(), bytes.into()).await.is_err() {
                metrics::nats_error();
            }
        }
    }

    /// Removes members of nodes that are not alive, and announces each changed room.
    async fn sweep(&self) {
        let me = self.inbound.node_id().to_string();
        let peers = self.peers.clone();
        match self.membership.sweep(|n| n == me || peers.is_alive(n)).await {
            Ok(changed) => {
                for (room, snap) in changed {
                    let event = RoomEvent::Membership(snap);
                    let _ = self.bus.publish(&room, &event);
                    self.inbound.room_event(&room, event);
                }
            }
            Err(e) => tracing::warn!(error = %e, "dead-node sweep failed"),
        }
    }

    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.every);
        let started = Instant::now();
        let mut grace_until = started + self.dead_after;
        let mut last_sweep = started;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                back = self.reconnected.recv() => {
                    if back.is_none() { return; }
                    metrics::reconnect();
                    if let Err(e) = super::ensure_bucket(&self.js, &self.bucket).await {
                        tracing::error!(error = %e, "membership bucket unavailable after reconnect");
                    }
                    self.peers.refresh_all();
                    grace_until = Instant::now() + self.dead_after;
                    self.inbound.resync_all();
                }
            }
            self.beat().await;
            let dead = self.peers.expire(self.dead_after);
            let now = Instant::now();
            if now < grace_until {
                continue;
            }
            if !dead.is_empty() {
                tracing::warn!(nodes = ?dead, "nodes stopped answering; removing their members");
                metrics::dead_nodes(dead.len());
            }
            if !dead.is_empty() || now.duration_since(last_sweep) >= self.dead_after * PERIODIC_SWEEP {
                last_sweep = now;
                self.sweep().await;
            }
        }
    }
}
