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
    /// More command-line options (TLS).
    extra: Vec<String>,
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
            extra: Vec::new(),
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
            extra: Vec::new(),
            child: None,
        };
        s.spawn();
        s
    }

    /// A server started with these extra options.
    fn start_with_args(name: &str, extra: Vec<String>) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            cluster_port: None,
            routes: Vec::new(),
            dir: Arc::new(tempfile::tempdir().unwrap()),
            name: name.into(),
            auth: None,
            extra,
            child: None,
        };
        s.spawn();
        s
    }

    /// A server that requires a token.
    pub fn start_with_token(token: &str) -> NatsServer {
        NatsServer::start_with_args("token", vec!["--auth".into(), token.into()])
    }

    /// A server that speaks only TLS and requires a client certificate signed by `pki`'s CA.
    pub fn start_with_mutual_tls(pki: &TestPki) -> NatsServer {
        let path = |p: &PathBuf| p.display().to_string();
        let args = [
            "--tlsverify",
            "--tlscert",
            &path(&pki.server_cert),
            "--tlskey",
            &path(&pki.server_key),
            "--tlscacert",
            &path(&pki.ca),
        ]
        .map(str::to_owned);
        NatsServer::start_with_args("tls", args.to_vec())
    }

    /// A server in operator mode: it trusts `operator`'s accounts, and clients prove who
    /// they are with a user JWT signed by an account and its nkey (a `.creds` file).
    pub fn start_with_operator(operator: &crate::common::nats_creds::NatsOperator) -> NatsServer {
        let conf = operator.server_config().display().to_string();
        NatsServer::start_with_args("operator", vec!["-c".into(), conf])
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
        c.args(&self.extra);
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

    /// SIGTERM (a clean shutdown), waited for (bounded).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let ok = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success();
            assert!(ok, "kill -TERM nats-server");
            let deadline = Instant::now() + WAIT;
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("nats-server did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts again (after `kill` or `terminate`) on the same port with the same JetStream
    /// directory.
    pub fn start_again(&mut self) {
        self.spawn();
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

/// Starts a node on `data` with `f`'s settings, expecting start-up to fail (bounded);
/// returns the error it gives.
pub async fn refused_start(data: &std::path::Path, f: impl FnOnce(&mut signalgrid::Settings)) -> String {
    let mut s = super::settings(data);
    f(&mut s);
    let store = Arc::new(signalgrid::store::EmbeddedStore::open(data).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = tokio::time::timeout(WAIT * 3, signalgrid::server::Server::start(s, listener, store))
        .await
        .expect("start-up neither failed nor succeeded");
    started.err().expect("start-up refused").to_string()
}

/// An in-process node of cluster `name` on `nats_url`, sharing `data` (one store file).
pub async fn node(nats_url: &str, name: &str, data: &Arc<tempfile::TempDir>, id: &str) -> TestNode {
    node_with(nats_url, name, data, id, |_| {}).await
}

/// As `node`, with `more` applied to its settings after the cluster's (presence every
/// 200 ms, dead after 1.5 s).
pub async fn node_with(
    nats_url: &str,
    name: &str,
    data: &Arc<tempfile::TempDir>,
    id: &str,
    more: impl FnOnce(&mut signalgrid::Settings),
) -> TestNode {
    let (url, name, id) = (nats_url.to_owned(), name.to_owned(), id.to_owned());
    TestNode::start_in(data.clone(), move |s| {
        s.cluster.nats_url = Some(url);
        s.cluster.name = name;
        s.cluster.presence_ms = 200;
        s.cluster.dead_after_ms = 1_500;
        s.node_id = Some(id);
        more(s);
    })
    .await
}

/// PEM files of a throwaway PKI: a CA, a server certificate for 127.0.0.1 and a client
/// certificate it signed, and a client certificate signed by another CA.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    names: &[&str],
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn test_pki() -> TestPki {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (ours, theirs) = (ca("signalgrid test CA"), ca("some other CA"));
    let (server_cert, server_key) = leaf(&["127.0.0.1", "localhost"], &ours, ServerAuth);
    let (client_cert, client_key) = leaf(&["signalgrid-node"], &ours, ClientAuth);
    let (stranger_cert, stranger_key) = leaf(&["stranger"], &theirs, ClientAuth);
    TestPki {
        ca: write("ca.pem", &ours.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
        stranger_cert: write("stranger.pem", &stranger_cert),
        stranger_key: write("stranger-key.pem", &stranger_key),
        _dir: dir,
    }
}
