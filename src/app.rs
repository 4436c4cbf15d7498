//! A node's shared state for the edges: settings, the actor node, the store, the token
//! verifier, rate limiters and metrics handle. Built once at start.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use signalgrid_actors::node::Node;
use signalgrid_actors::ports::Store;
use signalgrid_actors::rules::JoinPolicy;
use signalgrid_actors::NodeId;
use signalgrid_cluster::nats::NatsCluster;
use signalgrid_config::Settings;

use crate::auth::Verifier;
use crate::http::rate_limit::RateLimiter;
use crate::ws::connect_rate::ConnectRate;

pub struct App {
    pub settings: Settings,
    pub node_id: NodeId,
    pub node: Node,
    pub store: Arc<dyn Store>,
    pub verifier: Verifier,
    pub policy: JoinPolicy,
    pub rest_limiter: RateLimiter,
    /// WebSocket upgrades per second, node-wide (`limits.connect_rate`, `limits.connect_burst`).
    pub connect_rate: ConnectRate,
    pub metrics: PrometheusHandle,
    /// Open WebSockets (for the connection limit).
    pub ws_open: AtomicUsize,
    /// The cluster connection, when clustered over NATS.
    pub cluster: Option<Arc<NatsCluster>>,
}

/// The join policy the settings describe.
pub fn policy(s: &Settings) -> JoinPolicy {
    JoinPolicy {
        window_before_minutes: s.rooms.join_window_minutes,
        grace_after_minutes: s.rooms.grace_minutes,
        admin_bypass: s.rooms.admin_bypass,
        group_capacity: s.rooms.group_capacity,
        session_ending_minutes: {
            let mut m = s.limits.session_ending_minutes.clone();
            m.sort_unstable_by(|a, b| b.cmp(a));
            m.dedup();
            m
        },
        enforce_window_end: s.rooms.enforce_window_end,
        empty_timeout_ms: s.rooms.empty_timeout_ms,
    }
}
