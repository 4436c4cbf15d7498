//! Cluster test support: real `nats-server` processes (JetStream on) on free loopback ports,
//! which tests start, kill and restart; nodes of one cluster (in-process or real processes).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{TestNode, WAIT};

/// The nats-server binary: $SIGNALGRID_NATS_SERVER, else the one scripts/test.sh installs.
pub fn nats_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SIGNALGRID_NATS_SERVER") {
        return p.into();
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/nats-server");
    assert!(local.exists(), "nats-server not found: run scripts/test.sh (it installs nats-server 2.10+ into .tools/)");
    local
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (bounded) until something accepts TCP connections on `port`.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One nats-server with JetStream, killed on drop.
pub struct NatsServer {
    pub port: u16,
    pub cluster_port: Option<u16>,
    routes: Vec<u16>,
    dir: Arc<tempfile::TempDir>,
    name: String,
    /// `--user`/`--pass` the server requires, if any.
    auth: Option<(String, String)>,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_with(None, Vec::new(), "n1")
    }

    /// A server of a NATS cluster: `cluster_port` for routes, `routes` to the others.
    pub fn start_with(cluster_port: Option<u16>, routes: Vec<u16>, name: &str) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            cluster_port,
            routes,
            dir: Arc::new(tempfile::tempdir().unwrap()),
            name: name.into(),
            auth: None,
            child: None,
        };
        s.spawn();
        s
    }

    /// A server that requires a user and password.
    pub fn start_with_auth(user: &str, pass: &str) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            cluster_port: None,
            routes: Vec::new(),
            dir: Arc::new(tempfile::tempdir().unwrap()),
            name: "auth".into(),
            auth: Some((user.into(), pass.into())),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut c = Command::new(nats_bin());
        c.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "--server_name", &self.name])
            .arg("-sd")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((u, p)) = &self.auth {
            c.args(["--user", u, "--pass", p]);
        }
        if let Some(cp) = self.cluster_port {
            c.args(["--cluster_name", "sgtest", "--cluster", &format!("nats://127.0.0.1:{cp}")]);
            if !self.routes.is_empty() {
                let routes: Vec<String> = self.routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
                c.args(["--routes", &routes.join(",")]);
            }
        }
        self.child = Some(c.spawn().expect("start nats-server"));
        wait_port(self.port);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same JetStream directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts again on the same port with an empty JetStream directory (all streams and
    /// buckets lost).
    pub fn restart_empty(&mut self) {
        self.kill();
        self.dir = Arc::new(tempfile::tempdir().unwrap());
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-process node of cluster `name` on `nats_url`, sharing `data` (one store file).
pub async fn node(nats_url: &str, name: &str, data: &Arc<tempfile::TempDir>, id: &str) -> TestNode {
    let (url, name, id) = (nats_url.to_owned(), name.to_owned(), id.to_owned());
    TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(url);
        s.cluster.name = name;
        s.cluster.presence_ms = 200;
        s.cluster.dead_after_ms = 1_500;
        s.node_id = Some(id);
    })
    .await
}
