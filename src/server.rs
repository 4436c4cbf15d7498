//! Serving a node: builds the `App` (actor node, verifier, limits), runs the accept loop on
//! a listener the caller bound (tests bind port 0), optionally wrapping each stream in TLS,
//! and shuts down in order: stop accepting, drain the node (NODE_DRAINING to every client),
//! finish in-flight requests, flush the store.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use signalgrid_actors::node::{ConnLimits, Node, NodeConfig};
use signalgrid_actors::outbound::SeatLimits;
use signalgrid_actors::ports::{Ports, Store};
use signalgrid_actors::seat::ResumeKeys;
use signalgrid_cluster::nats::NatsCluster;
use signalgrid_cluster::{LocalBus, LocalMembership};
use signalgrid_config::{AddressRange, HttpSettings, Settings};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::app::{policy, App};
use crate::auth::Verifier;
use crate::body_deadline::DeadlineBody;
use crate::conn_caps::{ConnCaps, Guarded};
use crate::http::rate_limit::RateLimiter;
use crate::ws::connect_rate::ConnectRate;

/// The client's address, put on every request for the handlers: the connection's peer, or
/// behind a listed proxy the address its `X-Forwarded-For` names (`forwarded`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no JWT secret configured (VIDEO_CALL_JWT_SECRET or auth.jwt_secret)")]
    NoSecret,
    #[error("JWT public key: {0}")]
    Key(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("node: {0}")]
    Node(String),
    #[error("cluster: {0}")]
    Cluster(String),
}

/// The key resume tokens are signed with: `resume.secret`, else derived from
/// `auth.jwt_secret` (every node of a cluster shares it), else one for this process alone
/// (seats then resume only on the node that holds them; said once in the log when clustered).
fn resume_keys(settings: &Settings) -> ResumeKeys {
    match settings.resume.secret.as_ref().or(settings.auth.jwt_secret.as_ref()) {
        Some(secret) => ResumeKeys::from_secret(secret.as_bytes()),
        None => {
            if settings.cluster.nats_url.is_some() {
                tracing::warn!("neither resume.secret nor auth.jwt_secret is set: seats resume only on their own node");
            }
            ResumeKeys::random()
        }
    }
}

/// How long shutdown waits for clients to leave and requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server.
pub struct Server {
    pub app: Arc<App>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: JoinHandle<JoinSet<()>>,
    /// The webhook deliverer (when `webhooks.urls` is set).
    hooks: Option<crate::webhooks::WebhookTask>,
}

/// Longest TLS handshake (shorter if `http.header_timeout_ms` is).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the kernel queues before they are accepted (a burst of browsers reconnecting
/// after a drain must not hit the default of 128 and wait for TCP's retry).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with a deep accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The node id from settings, or a fresh one.
pub fn node_id(settings: &Settings) -> String {
    settings.node_id.clone().unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
}

fn tls_acceptor(settings: &Settings) -> Result<Option<TlsAcceptor>, StartError> {
    let (Some(cert), Some(key)) = (&settings.tls.cert_path, &settings.tls.key_path) else {
        return Ok(None);
    };
    let err = |what: &str, e: &dyn std::fmt::Display| StartError::Tls(format!("{what}: {e}"));
    let cert_pem = std::fs::read(cert).map_err(|e| err(&cert.display().to_string(), &e))?;
    let key_pem = std::fs::read(key).map_err(|e| err(&key.display().to_string(), &e))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("certificate", &e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| err("key", &e))?
        .ok_or_else(|| StartError::Tls("no private key in key file".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate/key", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(cfg))))
}

fn verifier(settings: &Settings) -> Result<Verifier, StartError> {
    let secret = settings.auth.jwt_secret.as_deref().ok_or(StartError::NoSecret)?;
    let v =
        Verifier::new(secret, settings.auth.leeway_secs).with_claims(&settings.auth.audience, &settings.auth.issuer);
    match (&settings.auth.public_key_path, &settings.auth.public_key_alg) {
        (Some(path), Some(alg)) => {
            let pem = std::fs::read(path).map_err(|e| StartError::Key(format!("{}: {e}", path.display())))?;
            v.with_public_key(&pem, alg).map_err(|e| StartError::Key(e.to_string()))
        }
        _ => Ok(v),
    }
}

impl Server {
    /// Starts a node serving on `listener`: alone (in-process membership) or, with
    /// `cluster.nats_url` set, as part of a cluster over NATS.
    pub async fn start(settings: Settings, listener: TcpListener, store: Arc<dyn Store>) -> Result<Server, StartError> {
        let node_id = node_id(&settings);
        let Some(_) = &settings.cluster.nats_url else {
            let ports = Ports { store, membership: Arc::new(LocalMembership::new()), bus: Arc::new(LocalBus) };
            return Server::start_with(settings, listener, ports, node_id, None).await;
        };
        let cluster =
            NatsCluster::connect(&settings.cluster, &node_id).await.map_err(|e| StartError::Cluster(e.to_string()))?;
        let cluster = Arc::new(cluster);
        let ports = Ports { store, membership: cluster.membership(), bus: cluster.bus() };
        Server::start_with(settings, listener, ports, node_id, Some(cluster)).await
    }

    async fn start_with(
        settings: Settings,
        listener: TcpListener,
        ports: Ports,
        node_id: String,
        cluster: Option<Arc<NatsCluster>>,
    ) -> Result<Server, StartError> {
        let verifier = verifier(&settings)?;
        let tls = tls_acceptor(&settings)?;
        let node_id: signalgrid_actors::NodeId = node_id.into();
        let cfg = NodeConfig {
            node_id: node_id.clone(),
            policy: policy(&settings),
            limits: ConnLimits {
                heartbeat_ms: settings.limits.heartbeat_ms,
                resume_window_ms: settings.resume.window_ms,
                seat: SeatLimits {
                    queue: settings.limits.outbound_queue,
                    frames: settings.resume.buffer_frames,
                    bytes: settings.resume.buffer_bytes,
                },
                chat_per_minute: settings.limits.chat_per_minute,
            },
            audit_enabled: settings.log.audit_enabled,
            resume_keys: resume_keys(&settings),
            drain: settings.drain.clone(),
            webhooks: settings.webhooks.enabled().then_some(settings.webhooks.max_waiting),
        };
        let store = ports.store.clone();
        let node = Node::start(cfg, ports).await.map_err(|e| StartError::Node(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| StartError::Node(e.to_string()))?;
        if let Some(c) = &cluster {
            let scheme = if settings.tls.cert_path.is_some() { "https" } else { "http" };
            c.attach(node.inbound(), format!("{scheme}://{addr}"));
        }
        let app = Arc::new(App {
            policy: policy(&settings),
            rest_limiter: RateLimiter::new(settings.limits.rest_per_minute),
            connect_rate: ConnectRate::new(settings.limits.connect_rate, settings.limits.connect_burst),
            settings,
            node_id,
            node,
            store,
            verifier,
            metrics: crate::telemetry::metrics(),
            ws_open: AtomicUsize::new(0),
            cluster,
        });
        let (stop, stop_rx) = watch::channel(false);
        let routes = crate::http::routes(app.clone());
        let caps = ConnCaps::new(&app.settings);
        let http = app.settings.http.clone();
        let minimise = app.settings.privacy.minimise_logs;
        let accept = tokio::spawn(accept_loop(listener, routes, tls, caps, http, minimise, stop_rx));
        let stored = app.node.ctx().events.stored();
        let hooks = crate::webhooks::start(app.store.clone(), &app.settings.webhooks, &app.node_id, stored);
        let clustered = app.cluster.is_some();
        tracing::info!(%addr, node = %app.node_id, tls = app.settings.tls.cert_path.is_some(), clustered, "signalgrid node serving");
        Ok(Server { app, addr, stop, accept, hooks })
    }

    /// Completes when an operator asked this node to drain (admin over NATS); never for a
    /// node that is not clustered.
    pub async fn drain_requested(&self) {
        match &self.app.cluster {
            Some(c) => c.drain_requested().await,
            None => std::future::pending().await,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: stop accepting, drain, finish requests, flush the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let in_flight = self.accept.await.ok();
        self.app.node.drain(DRAIN_TIMEOUT).await;
        if let Some(mut tasks) = in_flight {
            let all_done = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(DRAIN_TIMEOUT, all_done).await.is_err() {
                tracing::warn!("some HTTP requests did not finish before shutdown");
            }
        }
        if !self.app.node.ctx().audits_settled(DRAIN_TIMEOUT).await {
            tracing::warn!("some audit entries were still being written at shutdown");
        }
        if !self.app.node.ctx().events.settled(DRAIN_TIMEOUT).await {
            tracing::warn!("some webhook events were still being queued at shutdown");
        }
        if let Some(h) = self.hooks {
            h.stop().await;
        }
        if let Some(c) = &self.app.cluster {
            c.close().await;
        }
        if let Err(e) = self.app.store.flush().await {
            tracing::error!(error = %e, "store flush at shutdown failed");
        }
        self.app.node.stop();
        tracing::info!(node = %self.app.node_id, "signalgrid node stopped");
    }
}

/// Accepts connections until `stop`. Each takes a place under the connection caps first; a
/// connection past a cap is answered `503 CONNECTION_LIMIT` (plain HTTP) and closed.
async fn accept_loop(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    tls: Option<TlsAcceptor>,
    caps: Arc<ConnCaps>,
    http: HttpSettings,
    minimise_logs: bool,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let timeouts = Timeouts {
        header: Duration::from_millis(http.header_timeout_ms),
        body: Duration::from_millis(http.body_timeout_ms),
        write: Duration::from_millis(http.write_timeout_ms),
    };
    let proxies: Arc<[AddressRange]> = http.proxy_addresses.clone().into();
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shown = Logged::new(peer, minimise_logs);
        let guard = match caps.admit(peer.ip()) {
            Ok(g) => g,
            Err(cap) => {
                if tls.is_none() {
                    // Unread request bytes would turn the close into a reset that loses
                    // the answer: take what has arrived (best effort, no waiting).
                    let _ = tcp.try_read(&mut [0u8; 4096]);
                    let _ = tcp.try_write(&crate::conn_caps::refusal());
                }
                tracing::debug!(peer = %shown, ?cap, "connection refused: connection cap reached");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tcp = Guarded::new(tcp, guard, timeouts.write);
        let routes = routes.clone();
        let stop = stop.clone();
        let proxies = proxies.clone();
        match tls.clone() {
            None => {
                conns.spawn(serve_conn(tcp, peer, shown, routes, timeouts, proxies.clone(), stop));
            }
            Some(acceptor) => {
                conns.spawn(async move {
                    let limit = timeouts.header.min(TLS_HANDSHAKE_TIMEOUT);
                    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_conn(stream, peer, shown, routes, timeouts, proxies, stop).await,
                        Ok(Err(e)) => tracing::debug!(peer = %shown, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(peer = %shown, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    conns
}

/// A connection's address as the node's log lines show it: hidden under
/// `privacy.minimise_logs` (on by default), where log lines name people by id only.
#[derive(Debug, Clone, Copy)]
struct Logged(Option<SocketAddr>);

impl Logged {
    fn new(peer: SocketAddr, minimise: bool) -> Logged {
        Logged((!minimise).then_some(peer))
    }
}

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("<minimised>"),
        }
    }
}

/// The deadlines of one HTTP connection's phases (`http.*_timeout_ms`).
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// For a request head, and for the wait between keep-alive requests (hyper runs its
    /// head timer from the moment it waits for a head).
    header: Duration,
    /// For a whole request body, from the end of its head.
    body: Duration,
    /// For a write to make progress (a client that stops reading its answers).
    write: Duration,
}

/// Serves one HTTP/1.1 connection (which may upgrade to a WebSocket). On shutdown, a
/// connection between requests closes and one mid-request finishes it first.
async fn serve_conn<IO>(
    io: IO,
    peer: SocketAddr,
    shown: Logged,
    routes: BoxedFilter<(Response,)>,
    timeouts: Timeouts,
    proxies: Arc<[AddressRange]>,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = warp::service(routes);
    let handler = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let client = crate::forwarded::client_addr(peer, req.headers(), &proxies);
        req.extensions_mut().insert(PeerAddr(client));
        if crate::ws::wants_upgrade(req.headers()) {
            // The `/ws` route does the WebSocket handshake itself (with its own buffer sizes).
            let up = hyper::upgrade::on(&mut req);
            req.extensions_mut().insert(crate::ws::PendingUpgrade::new(up));
        }
        let req = req.map(|body| DeadlineBody::new(body, timeouts.body));
        let mut svc = svc.clone();
        async move { svc.call(req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .serve_connection(TokioIo::new(io), handler)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let res = tokio::select! {
        res = conn.as_mut() => res,
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(peer = %shown, error = %e, "HTTP connection ended with an error");
    }
}
