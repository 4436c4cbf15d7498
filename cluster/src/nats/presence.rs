//! Liveness and the sweep that keeps shared membership true to the connections that exist.
//!
//! Every node publishes a heartbeat (its status, with its incarnation) every `presence_ms`;
//! a peer not heard from for `dead_after_ms` is dead. Peers are judged only on a NATS link
//! that has been up for a whole `dead_after` (see `link`): during an outage, and for one
//! `dead_after` after it, nobody is declared dead.
//!
//! The sweep removes from shared membership (1) members of dead nodes and (2) members that
//! claim to be on this node but have no open connection here (`Inbound::holds`): those an
//! earlier run of this node id left when it was killed, and leaves that could not reach
//! NATS. Each changed room's new snapshot is announced, so its other members get one
//! `user-left` each. Part (2) never depends on liveness, so it runs as soon as the node
//! starts and right after every reconnect; the whole sweep runs when a peer goes silent
//! and every `PERIODIC_SWEEP` × `dead_after` (for nodes this one never heard, such as one
//! that died while this node was starting). Every compare-and-set re-checks its decision on
//! the value it replaces, and the sweep stops if the link broke since it decided.
//!
//! Incarnation: a random id per process. A peer whose incarnation changed restarted (its
//! own start-up sweep removes what its earlier run left); a heartbeat with this node's own
//! id and another incarnation means two processes share one id, and part (2) is then held
//! back, since it would remove the other process's members.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The periodic sweep runs every this many `dead_after` periods.
const PERIODIC_SWEEP: u32 = 6;

use async_nats::Client;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use signalgrid_actors::node::Inbound;
use signalgrid_actors::ports::{Bus, LeaveReason, Member, RoomEvent};
use tokio::sync::mpsc;

use super::bus::NatsBus;
use super::membership::{KvMembership, Verdict};
use super::metrics;
use super::subjects::Subjects;

/// What a node says about itself in heartbeats and to `admin nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub node_id: String,
    /// Random, new for every process (absent from nodes older than this field).
    #[serde(default)]
    pub incarnation: String,
    pub address: String,
    pub version: String,
    pub connections: usize,
    pub rooms: usize,
    pub uptime_secs: u64,
    pub draining: bool,
}

/// Peers heard from, and when.
#[derive(Default)]
pub struct Peers {
    seen: Mutex<HashMap<String, (Instant, NodeInfo)>>,
    /// Nodes declared dead, until heard from again.
    dead: Mutex<std::collections::HashSet<String>>,
    /// When another process last sent heartbeats under this node's own id.
    twin: Mutex<Option<Instant>>,
}

impl Peers {
    fn heard(&self, info: NodeInfo) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, before)) = seen.get(&info.node_id) {
            if before.incarnation != info.incarnation {
                tracing::info!(node = %info.node_id, "node restarted (new incarnation)");
            }
        }
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).remove(&info.node_id);
        seen.insert(info.node_id.clone(), (Instant::now(), info));
    }

    /// Whether `node` was declared dead and has not been heard from since.
    pub fn was_seen_dead(&self, node: &str) -> bool {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).contains(node)
    }

    /// A heartbeat with this node's id from another process.
    fn heard_twin(&self, info: &NodeInfo) {
        tracing::error!(node = %info.node_id, address = %info.address, "another process runs with this node id");
        *self.twin.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Another process used this node's id within `period`.
    fn twin_within(&self, period: Duration) -> bool {
        self.twin.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() < period)
    }

    /// Forgets peers silent for `dead_after`, counting silence only from `since` (when the
    /// link last came back: before that nobody could be heard); returns them.
    fn expire(&self, dead_after: Duration, since: Instant) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let dead: Vec<String> =
            seen.iter().filter(|(_, (t, _))| (*t).max(since).elapsed() > dead_after).map(|(k, _)| k.clone()).collect();
        for d in &dead {
            seen.remove(d);
        }
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).extend(dead.iter().cloned());
        dead
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
    pub link: Arc<super::link::Link>,
    pub me: Arc<dyn Fn() -> NodeInfo + Send + Sync>,
    pub every: Duration,
    pub dead_after: Duration,
    /// How long a seat whose node died waits for a resume (`resume.window_ms`).
    pub resume_window: Duration,
    /// The last sweep left seats away that a later sweep must remove when their window ends.
    pub seats_waiting: std::sync::atomic::AtomicBool,
    /// `true` when the NATS connection came back after a loss.
    pub reconnected: mpsc::UnboundedReceiver<()>,
}

/// Listens to other nodes' heartbeats.
pub(crate) async fn listen(client: Client, subject: String, my_id: String, my_incarnation: String, peers: Arc<Peers>) {
    let Ok(mut sub) = client.subscribe(subject).await else {
        tracing::error!("cannot subscribe to presence");
        return;
    };
    while let Some(msg) = sub.next().await {
        if let Ok(info) = serde_json::from_slice::<NodeInfo>(&msg.payload) {
            if info.node_id != my_id {
                peers.heard(info);
            } else if info.incarnation != my_incarnation {
                peers.heard_twin(&info);
            }
        }
    }
}

/// Publishes this node's heartbeat every `every`, on its own task: a long sweep (one read
/// per room with members) never delays it, so peers never take a busy node for a dead one.
async fn beat(client: Client, subject: String, me: Arc<dyn Fn() -> NodeInfo + Send + Sync>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Ok(bytes) = serde_json::to_vec(&me()) else { continue };
        if client.publish(subject.clone(), bytes.into()).await.is_err() {
            metrics::nats_error();
        }
    }
}

/// Which members a sweep removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Only this node's members with no open connection here.
    Own,
    /// Those, and members of nodes that are not alive.
    All,
}

impl PresenceTask {
    /// Removes the members `scope` covers and announces each changed room; false if the
    /// sweep could not finish (NATS unreachable, or the link broke while it ran).
    async fn sweep(&self, scope: Scope) -> bool {
        let me = self.inbound.node_id().to_string();
        let (peers, link, inbound) = (&self.peers, &self.link, &self.inbound);
        let (epoch, dead_after) = (link.epoch(), self.dead_after);
        // Another process with this id: its members are not ours to judge.
        let own = !peers.twin_within(dead_after);
        let gone = |room: &str, m: &Member| {
            if *m.node_id == *me {
                own && !inbound.holds(room, &m.conn_id)
            } else {
                scope == Scope::All && !peers.is_alive(&m.node_id)
            }
        };
        let now = chrono::Utc::now().timestamp_millis();
        let window = self.resume_window.as_millis() as i64;
        let waiting = std::sync::atomic::AtomicBool::new(false);
        // A seat whose socket went with its node is away for the resume window (its client
        // may resume on any node), then removed (PROTOCOL.md section 6).
        let judge = |room: &str, m: &Member| {
            if !gone(room, m) {
                return Verdict::Keep;
            }
            // A seat of this node that left while shared membership was out of reach.
            if *m.node_id == *me {
                if let Some(reason) = inbound.left(room, &m.conn_id) {
                    return Verdict::Remove(reason);
                }
            }
            match m.away_since_ms {
                Some(since) if now - since >= window => Verdict::Remove(LeaveReason::Timeout),
                Some(_) => {
                    waiting.store(true, std::sync::atomic::Ordering::Relaxed);
                    Verdict::Keep
                }
                None => {
                    waiting.store(true, std::sync::atomic::Ordering::Relaxed);
                    Verdict::Away(now)
                }
            }
        };
        let still_valid = || match scope {
            Scope::Own => link.epoch() == epoch,
            Scope::All => link.unchanged(epoch, dead_after),
        };
        let (changed, error) = self.membership.sweep(judge, still_valid).await;
        self.seats_waiting.store(waiting.into_inner(), std::sync::atomic::Ordering::Relaxed);
        for (room, snap) in changed {
            let event = RoomEvent::Membership(snap);
            let _ = self.bus.publish(&room, &event);
            self.inbound.room_event(&room, event);
        }
        match error {
            None => true,
            Some(e) => {
                tracing::warn!(error = %e, ?scope, "membership sweep did not finish; retrying");
                false
            }
        }
    }

    pub async fn run(mut self) {
        let heart = tokio::spawn(beat(self.client.clone(), self.subjects.presence(), self.me.clone(), self.every));
        self.watch().await;
        heart.abort();
    }

    /// Judges peers and sweeps, every heartbeat period and after every reconnect; ends when
    /// the connection is gone for good.
    async fn watch(&mut self) {
        let mut tick = tokio::time::interval(self.every);
        let mut last_sweep = Instant::now();
        // What an earlier run of this node id left is removed at once.
        let mut own_due = true;
        let mut all_due = false;
        loop {
            tokio::select! {
                // A reconnect first: the room resyncs and the own clean-up are due at once.
                biased;
                back = self.reconnected.recv() => {
                    if back.is_none() { return; }
                    metrics::reconnect();
                    if let Err(e) = super::ensure_bucket(&self.js, &self.bucket).await {
                        tracing::error!(error = %e, "membership bucket unavailable after reconnect");
                    }
                    self.inbound.resync_all();
                    own_due = true;
                }
                _ = tick.tick() => {}
            }
            if !self.link.trusted(self.dead_after) {
                if own_due && self.link.is_up() {
                    own_due = !self.sweep(Scope::Own).await;
                }
                continue;
            }
            let dead = self.peers.expire(self.dead_after, self.link.since());
            if !dead.is_empty() {
                tracing::warn!(nodes = ?dead, "nodes stopped answering; their seats wait for a resume");
                metrics::dead_nodes(dead.len());
                all_due = true;
            }
            let now = Instant::now();
            let period = if self.seats_waiting.load(std::sync::atomic::Ordering::Relaxed) {
                // Away seats of dead nodes are removed within a `dead_after` of their window's end.
                self.dead_after
            } else {
                self.dead_after * PERIODIC_SWEEP
            };
            if all_due || own_due || now.duration_since(last_sweep) >= period {
                last_sweep = now;
                let done = self.sweep(Scope::All).await;
                all_due = !done;
                own_due = !done;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: &str, incarnation: &str) -> NodeInfo {
        NodeInfo {
            node_id: node.into(),
            incarnation: incarnation.into(),
            address: String::new(),
            version: String::new(),
            connections: 0,
            rooms: 0,
            uptime_secs: 0,
            draining: false,
        }
    }

    #[test]
    fn silence_counts_only_from_when_the_link_came_back() {
        let peers = Peers::default();
        peers.heard(info("b", "1"));
        let long_ago = Instant::now();
        // Time passes on the clock (not a synchronisation): b is silent for 30 ms.
        std::thread::sleep(Duration::from_millis(30));
        // The link came back after b's last heartbeat: b's silence before that proves nothing.
        let back = Instant::now() + Duration::from_secs(60);
        assert!(peers.expire(Duration::from_millis(20), back).is_empty());
        assert!(peers.is_alive("b"));
        // The link has been up all along: b is silent for longer than allowed.
        assert_eq!(peers.expire(Duration::from_millis(20), long_ago), vec!["b".to_owned()]);
        assert!(!peers.is_alive("b"));
    }

    #[test]
    fn a_heartbeat_with_this_nodes_id_marks_a_twin() {
        let peers = Peers::default();
        assert!(!peers.twin_within(Duration::from_secs(5)));
        peers.heard_twin(&info("me", "other-process"));
        assert!(peers.twin_within(Duration::from_secs(5)));
    }
}
