//! The cluster over NATS: the `Membership` (JetStream KV, compare-and-set) and `Bus` (core
//! NATS) a clustered node is started with, plus liveness (heartbeats, the link state, the
//! sweep that keeps membership true to the connections that exist) and admin
//! request/reply.
//!
//! Start-up: [`NatsCluster::connect`] (connects, creates the membership bucket if missing)
//! gives the ports; the node starts with them; [`NatsCluster::attach`] then starts the tasks
//! that feed the node what arrives (inbox deliveries, room events, admin requests) and the
//! heartbeat. Subjects are listed in [`subjects`] and docs/nats-subjects.md.
//!
//! Requires nats-server 2.10 or newer with JetStream enabled.

pub mod admin;
mod bus;
mod link;
pub mod lock;
mod membership;
mod presence;
pub mod subjects;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use signalgrid_actors::node::Inbound;
use signalgrid_config::ClusterSettings;
use tokio::sync::{mpsc, Notify};

pub use admin::{AdminClient, RoomSummary};
pub use bus::NatsBus;
pub use lock::KvLease;
pub use membership::KvMembership;
pub use presence::NodeInfo;
use subjects::Subjects;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no NATS URL configured")]
    NoUrl,
    #[error("bad NATS URL {0}")]
    BadUrl(String),
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream: {0} (nats-server 2.10 or newer with JetStream enabled, -js, is required)")]
    JetStream(String),
    #[error("no node answered")]
    NoAnswer,
}

/// Cluster metric names.
pub mod metrics {
    pub const FORWARDS_SENT: &str = "signalgrid_cluster_forwards_sent_total";
    pub const FORWARDS_RECEIVED: &str = "signalgrid_cluster_forwards_received_total";
    pub const NATS_ERRORS: &str = "signalgrid_nats_errors_total";
    pub const NATS_RECONNECTS: &str = "signalgrid_nats_reconnects_total";
    pub const CAS_RETRIES: &str = "signalgrid_membership_cas_retries_total";
    pub const DEAD_NODES: &str = "signalgrid_dead_node_cleanups_total";

    pub(crate) fn forward_sent() {
        ::metrics::counter!(FORWARDS_SENT).increment(1);
    }
    pub(crate) fn forward_received() {
        ::metrics::counter!(FORWARDS_RECEIVED).increment(1);
    }
    pub(crate) fn nats_error() {
        ::metrics::counter!(NATS_ERRORS).increment(1);
    }
    pub(crate) fn reconnect() {
        ::metrics::counter!(NATS_RECONNECTS).increment(1);
    }
    pub(crate) fn cas_retry() {
        ::metrics::counter!(CAS_RETRIES).increment(1);
    }
    pub(crate) fn dead_nodes(n: usize) {
        ::metrics::counter!(DEAD_NODES).increment(n as u64);
    }
}

pub(crate) fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, ClusterError> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse::<ServerAddr>().map_err(|_| ClusterError::BadUrl(u.to_owned())))
        .collect()
}

/// Authentication and TLS from the settings.
pub(crate) async fn connect_options(s: &ClusterSettings, name: &str) -> Result<ConnectOptions, ClusterError> {
    let mut o = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2_000)));
    if let (Some(u), Some(p)) = (&s.nats_user, &s.nats_password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &s.nats_token {
        o = o.token(t.clone());
    }
    if let Some(creds) = &s.nats_creds_path {
        o = o.credentials_file(creds).await.map_err(|e| ClusterError::Connect(format!("{}: {e}", creds.display())))?;
    }
    if let Some(ca) = &s.nats_tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(c), Some(k)) = (&s.nats_tls_cert, &s.nats_tls_key) {
        o = o.add_client_certificate(c.clone(), k.clone()).require_tls(true);
    }
    Ok(o)
}

/// How long a starting node waits for JetStream to take the membership bucket. A NATS
/// cluster that has just started elects its JetStream leader first; until then, bucket
/// requests time out.
const JETSTREAM_READY: Duration = Duration::from_secs(30);

/// `ensure_bucket`, retried until JetStream answers (bounded by `JETSTREAM_READY`).
async fn wait_for_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, ClusterError> {
    let deadline = tokio::time::Instant::now() + JETSTREAM_READY;
    let mut pause = Duration::from_millis(200);
    loop {
        match ensure_bucket(js, bucket).await {
            Ok(kv) => return Ok(kv),
            Err(e) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %e, "JetStream not ready yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The membership bucket, created if missing (first node of a cluster, or a NATS server that
/// came back without its JetStream data).
pub(crate) async fn ensure_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, ClusterError> {
    match js.get_key_value(bucket).await {
        Ok(kv) => Ok(kv),
        Err(_) => js
            .create_key_value(kv::Config { bucket: bucket.to_owned(), history: 1, ..Default::default() })
            .await
            .map_err(|e| ClusterError::JetStream(e.to_string())),
    }
}

/// A node's connection to its cluster.
pub struct NatsCluster {
    client: Client,
    subjects: Subjects,
    settings: ClusterSettings,
    node_id: String,
    /// Random, new for every process: tells this run of `node_id` from an earlier one
    /// (heartbeats carry it; see `presence`).
    incarnation: String,
    /// The NATS connection's state, kept by its event callback.
    link: Arc<link::Link>,
    bus: Arc<NatsBus>,
    membership: Arc<KvMembership>,
    peers: Arc<presence::Peers>,
    drain: Arc<Notify>,
    pending: std::sync::Mutex<Option<Pending>>,
}

/// What `attach` consumes.
struct Pending {
    out_rx: mpsc::Receiver<bus::Outgoing>,
    watch_rx: mpsc::UnboundedReceiver<bus::Watch>,
    reconnected: mpsc::UnboundedReceiver<()>,
}

impl NatsCluster {
    /// Connects and makes sure the membership bucket exists.
    pub async fn connect(settings: &ClusterSettings, node_id: &str) -> Result<NatsCluster, ClusterError> {
        let url = settings.nats_url.clone().ok_or(ClusterError::NoUrl)?;
        let (reconnected_tx, reconnected) = mpsc::unbounded_channel();
        let was_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let link = Arc::new(link::Link::default());
        let events = link.clone();
        let opts = connect_options(settings, node_id).await?.no_echo().event_callback(move |event| {
            let tx = reconnected_tx.clone();
            let back = match event {
                Event::Disconnected => {
                    metrics::nats_error();
                    tracing::warn!("NATS connection lost; reconnecting");
                    was_down.store(true, std::sync::atomic::Ordering::Release);
                    events.lost();
                    false
                }
                Event::Connected if was_down.swap(false, std::sync::atomic::Ordering::AcqRel) => {
                    tracing::info!("NATS connection back");
                    events.back();
                    true
                }
                _ => false,
            };
            async move {
                if back {
                    let _ = tx.send(());
                }
            }
        });
        let client = opts.connect(server_addrs(&url)?).await.map_err(|e| ClusterError::Connect(e.to_string()))?;
        let subjects = Subjects::new(&settings.name);
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        let kv = wait_for_bucket(&js, &subjects.rooms_bucket()).await?;
        let (bus, out_rx, watch_rx) = NatsBus::new(subjects.clone());
        // The link counts as up from here: the connection and the bucket both answered.
        link.back();
        Ok(NatsCluster {
            client,
            subjects,
            settings: settings.clone(),
            node_id: node_id.to_owned(),
            incarnation: uuid::Uuid::new_v4().simple().to_string(),
            link,
            bus: Arc::new(bus),
            membership: Arc::new(KvMembership::new(kv)),
            peers: Arc::default(),
            drain: Arc::new(Notify::new()),
            pending: std::sync::Mutex::new(Some(Pending { out_rx, watch_rx, reconnected })),
        })
    }

    pub fn bus(&self) -> Arc<NatsBus> {
        self.bus.clone()
    }

    pub fn membership(&self) -> Arc<KvMembership> {
        self.membership.clone()
    }

    /// Starts feeding the node: inbox, room events, heartbeats and sweeps, admin.
    /// `address` is where clients reach this node (reported to `admin nodes`).
    pub fn attach(&self, inbound: Inbound, address: String) {
        let Some(p) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let incarnation = self.incarnation.clone();
        let status = inbound.clone();
        let me: Arc<dyn Fn() -> NodeInfo + Send + Sync> = Arc::new(move || {
            let s = status.status();
            NodeInfo {
                node_id: s.node_id,
                incarnation: incarnation.clone(),
                address: address.clone(),
                version: version.clone(),
                connections: s.connections,
                rooms: s.rooms,
                uptime_secs: s.uptime_secs,
                draining: s.draining,
            }
        });
        tokio::spawn(bus::publisher(self.client.clone(), p.out_rx));
        tokio::spawn(bus::inbox(self.client.clone(), self.subjects.inbox(&self.node_id), inbound.clone()));
        tokio::spawn(bus::room_watcher(self.client.clone(), self.subjects.clone(), inbound.clone(), p.watch_rx));
        tokio::spawn(presence::listen(
            self.client.clone(),
            self.subjects.presence(),
            self.node_id.clone(),
            self.incarnation.clone(),
            self.peers.clone(),
        ));
        let mut js = jetstream::new(self.client.clone());
        js.set_timeout(Duration::from_secs(3));
        let task = presence::PresenceTask {
            js,
            bucket: self.subjects.rooms_bucket(),
            client: self.client.clone(),
            subjects: self.subjects.clone(),
            inbound: inbound.clone(),
            membership: (*self.membership).clone(),
            bus: self.bus.clone(),
            peers: self.peers.clone(),
            link: self.link.clone(),
            me: me.clone(),
            every: Duration::from_millis(self.settings.presence_ms),
            dead_after: Duration::from_millis(self.settings.dead_after_ms),
            reconnected: p.reconnected,
        };
        tokio::spawn(task.run());
        let responders = admin::Responders {
            client: self.client.clone(),
            subjects: self.subjects.clone(),
            inbound,
            membership: (*self.membership).clone(),
            bus: self.bus.clone(),
            me,
            drain: self.drain.clone(),
        };
        tokio::spawn(responders.run());
    }

    /// A handle on the cluster-wide lock `key` (in the cluster's lock bucket), held by this
    /// node's id; see [`lock`]. Creates the bucket with `ttl` if missing.
    pub async fn lease(&self, key: &str, ttl: Duration) -> Result<KvLease, ClusterError> {
        let mut js = jetstream::new(self.client.clone());
        js.set_timeout(Duration::from_secs(3));
        KvLease::open(&js, &self.subjects.locks_bucket(), key, &self.node_id, ttl).await
    }

    /// Completes when an operator asked this node to drain.
    pub async fn drain_requested(&self) {
        self.drain.notified().await
    }

    /// Flushes what is queued for NATS (call after the node drained).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.client.flush()).await;
    }
}
