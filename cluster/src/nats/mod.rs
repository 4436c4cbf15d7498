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
pub use membership::{KvMembership, Verdict};
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
    /// Gauge: bytes waiting in the publish queue (summed over the nodes of one process).
    pub const PUBLISH_QUEUE_BYTES: &str = "signalgrid_nats_publish_queue_bytes";
    /// Frames for other nodes dropped, by `reason`: `queue_full`, `disconnected` (a relay
    /// while NATS is away), `stale` (a relay older than `cluster.queue.relay_max_age_ms`).
    pub const PUBLISH_DROPPED: &str = "signalgrid_nats_publish_dropped_total";
    /// Gauge: 1 while the NATS client is connected, 0 while it reconnects.
    pub const CONNECTED: &str = "signalgrid_nats_connected";
    pub const DROP_QUEUE_FULL: &str = "queue_full";
    pub const DROP_DISCONNECTED: &str = "disconnected";
    pub const DROP_STALE: &str = "stale";

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
    pub(crate) fn queued_bytes(delta: f64) {
        ::metrics::gauge!(PUBLISH_QUEUE_BYTES).increment(delta);
    }
    pub(crate) fn dropped(reason: &'static str) {
        ::metrics::counter!(PUBLISH_DROPPED, "reason" => reason).increment(1);
    }
    pub(crate) fn connected(up: bool) {
        ::metrics::gauge!(CONNECTED).set(if up { 1.0 } else { 0.0 });
    }
    pub(crate) fn dead_nodes(n: usize) {
        ::metrics::counter!(DEAD_NODES).increment(n as u64);
    }
}

/// The NATS server addresses of `urls` (comma-separated), without the credentials they may
/// carry (`nats://user:password@host`, `nats://token@host`), and those credentials (the
/// first URL's that has any). async-nats prints server addresses in its debug lines and
/// ignores URL credentials, so they go to `ConnectOptions` instead, never into an address.
pub(crate) fn server_addrs(urls: &str) -> Result<(Vec<ServerAddr>, Option<UrlAuth>), ClusterError> {
    let mut auth = None;
    let mut addrs = Vec::new();
    for u in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let bad = || ClusterError::BadUrl(signalgrid_config::redact_url(u));
        let addr = u.parse::<ServerAddr>().map_err(|_| bad())?;
        if auth.is_none() {
            auth = match (addr.username(), addr.password()) {
                (Some(user), Some(pass)) => Some(UrlAuth::UserPassword(user.to_owned(), pass.to_owned())),
                (Some(token), None) => Some(UrlAuth::Token(token.to_owned())),
                _ => None,
            };
        }
        let mut url = addr.into_inner();
        url.set_username("").map_err(|_| bad())?;
        url.set_password(None).map_err(|_| bad())?;
        addrs.push(ServerAddr::from_url(url).map_err(|_| bad())?);
    }
    Ok((addrs, auth))
}

/// Credentials found in a NATS URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum UrlAuth {
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for UrlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlAuth::UserPassword(user, _) => write!(f, "UserPassword({user:?}, <redacted>)"),
            UrlAuth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// Commands the NATS client buffers (its own queue, in front of the socket). While NATS is
/// away the client reads none of them, so this bounds what it holds: at most 128 frames,
/// 8 MiB of 64 KiB frames (the library's default, 2,048, would be 128 MiB).
const CLIENT_CAPACITY: usize = 128;

/// Authentication and TLS from the settings, and the servers to connect to. Credentials in
/// `nats_url` apply when the settings give none (`nats_user`/`nats_password`, `nats_token`).
pub(crate) async fn connect_options(
    s: &ClusterSettings,
    name: &str,
) -> Result<(ConnectOptions, Vec<ServerAddr>), ClusterError> {
    let url = s.nats_url.as_deref().ok_or(ClusterError::NoUrl)?;
    let (addrs, url_auth) = server_addrs(url)?;
    let mut o = ConnectOptions::new()
        .name(name)
        .client_capacity(CLIENT_CAPACITY)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2_000)));
    if let (Some(u), Some(p)) = (&s.nats_user, &s.nats_password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &s.nats_token {
        o = o.token(t.clone());
    }
    let configured = s.nats_user.is_some() || s.nats_token.is_some();
    match url_auth {
        Some(UrlAuth::UserPassword(u, p)) if !configured => o = o.user_and_password(u, p),
        Some(UrlAuth::Token(t)) if !configured => o = o.token(t),
        _ => {}
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
    Ok((o, addrs))
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
    queue: bus::PublishQueue,
    watch_rx: mpsc::UnboundedReceiver<bus::Watch>,
    reconnected: mpsc::UnboundedReceiver<()>,
}

impl NatsCluster {
    /// Connects and makes sure the membership bucket exists.
    pub async fn connect(settings: &ClusterSettings, node_id: &str) -> Result<NatsCluster, ClusterError> {
        let (reconnected_tx, reconnected) = mpsc::unbounded_channel();
        let was_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let link = Arc::new(link::Link::default());
        let events = link.clone();
        let (opts, addrs) = connect_options(settings, node_id).await?;
        let opts = opts.no_echo().event_callback(move |event| {
            let tx = reconnected_tx.clone();
            let back = match event {
                Event::Disconnected => {
                    metrics::nats_error();
                    tracing::warn!("NATS connection lost; reconnecting (relays to other nodes are dropped meanwhile)");
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
        let client = opts.connect(addrs).await.map_err(|e| ClusterError::Connect(e.to_string()))?;
        let subjects = Subjects::new(&settings.name);
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        let kv = wait_for_bucket(&js, &subjects.rooms_bucket()).await?;
        // The link counts as up from here: the connection and the bucket both answered.
        link.back();
        let peers: Arc<presence::Peers> = Arc::default();
        let (bus, queue, watch_rx) =
            NatsBus::new(client.clone(), subjects.clone(), &settings.queue, link.clone(), peers.clone());
        Ok(NatsCluster {
            client,
            subjects,
            settings: settings.clone(),
            node_id: node_id.to_owned(),
            incarnation: uuid::Uuid::new_v4().simple().to_string(),
            link,
            bus: Arc::new(bus),
            membership: Arc::new(KvMembership::new(kv)),
            peers,
            drain: Arc::new(Notify::new()),
            pending: std::sync::Mutex::new(Some(Pending { queue, watch_rx, reconnected })),
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
        tokio::spawn(bus::publisher(self.client.clone(), p.queue));
        tokio::spawn(bus::inbox(self.client.clone(), self.subjects.inbox(&self.node_id), inbound.clone()));
        tokio::spawn(bus::seat_responder(self.client.clone(), self.subjects.seat(&self.node_id), inbound.clone()));
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
            resume_window: inbound.resume_window(),
            seats_waiting: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_leave_the_addresses() {
        let (addrs, auth) = server_addrs("nats://u:pw-1@127.0.0.1:4222, nats://127.0.0.1:4223").unwrap();
        assert_eq!(auth, Some(UrlAuth::UserPassword("u".into(), "pw-1".into())));
        assert!(addrs.iter().all(|a| a.username().is_none() && a.password().is_none()));
        assert!(!format!("{addrs:?}{auth:?}").contains("pw-1"));
        let (_, auth) = server_addrs("nats://tok-1@127.0.0.1:4222").unwrap();
        assert_eq!(auth, Some(UrlAuth::Token("tok-1".into())));
        let err = server_addrs("nats://u:pw-2@[bad").unwrap_err().to_string();
        assert!(!err.contains("pw-2"), "{err}");
    }
}
