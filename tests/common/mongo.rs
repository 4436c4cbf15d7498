//! MongoDB test support: real `secantusd-py` servers (MongoDB wire-compatible) on free
//! loopback ports, which tests start, kill (-9) and restart on the same port; and the one
//! shared server a test process uses when its nodes run on the Mongo store
//! (SIGNALGRID_TEST_STORE=mongo), one database per node data directory.
//!
//! Every server runs under a small `sh` watchdog that reads our end of a pipe: when the test
//! process ends (even without running destructors) the pipe closes and the watchdog kills
//! the server, so no server outlives its test. Must not touch servers it did not start.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::WAIT;

/// secantusd-py: $SIGNALGRID_SECANTUSD, else the one scripts/test.sh installs.
pub fn secantusd_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SIGNALGRID_SECANTUSD") {
        return p.into();
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/secantusd-py");
    assert!(local.exists(), "secantusd-py not found: run scripts/test.sh (it installs secantusdb into .tools/)");
    local
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One secantusd server; killed on drop.
pub struct MongoServer {
    pub port: u16,
    /// WiredTiger directory, or None for `:memory:` (data lost on kill).
    storage: Option<PathBuf>,
    child: Option<(Child, ChildStdin)>,
}

impl MongoServer {
    /// A server with in-memory storage.
    pub fn start() -> MongoServer {
        MongoServer::spawn_new(None)
    }

    /// A server whose data lives in `dir` and survives kill/restart.
    pub fn start_in(dir: &Path) -> MongoServer {
        MongoServer::spawn_new(Some(dir.to_owned()))
    }

    fn spawn_new(storage: Option<PathBuf>) -> MongoServer {
        let mut s = MongoServer { port: free_port(), storage, child: None };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        // A persistent server fsyncs its log on commit: a kill -9 must not lose what it
        // acknowledged (without it secantusd may come back without the latest writes).
        let (storage, sync) = match &self.storage {
            Some(p) => (p.display().to_string(), Some("--sync-on-commit")),
            None => (":memory:".to_owned(), None),
        };
        // The watchdog: run the server in the background, wait for our pipe to close, kill it.
        let script = r#""$@" & c=$!; read _ignored; kill -9 "$c" 2>/dev/null; wait "$c""#;
        let mut child = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(secantusd_bin())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--cache-size", "64M"])
            .args(["--log-level", "ERROR", "--storage-path", &storage])
            .args(sync)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start secantusd-py");
        let stdin = child.stdin.take().expect("watchdog pipe");
        self.child = Some((child, stdin));
        self.wait_accepting();
    }

    /// Waits (bounded) until the server accepts TCP connections.
    fn wait_accepting(&self) {
        let deadline = Instant::now() + WAIT * 2;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "secantusd did not listen on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mongodb://127.0.0.1:<port>/`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// kill -9 (the watchdog does it when its pipe closes); returns once the server is gone.
    pub fn kill(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let deadline = Instant::now() + WAIT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// Starts again on the same port (same storage directory, if any).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The test process's shared in-memory server (started on first use; the watchdog ends it
/// with the process).
pub fn shared() -> &'static MongoServer {
    static SHARED: OnceLock<MongoServer> = OnceLock::new();
    SHARED.get_or_init(MongoServer::start)
}

/// Whether this run puts test nodes on MongoDB (SIGNALGRID_TEST_STORE=mongo).
pub fn nodes_on_mongo() -> bool {
    std::env::var("SIGNALGRID_TEST_STORE").is_ok_and(|v| v.eq_ignore_ascii_case("mongo"))
}

/// The database of the nodes using data directory `dir`: nodes sharing a data directory
/// (a cluster in one test, or a node and its restart) share a database, like they share the
/// embedded store's file.
pub fn database_for(dir: &Path) -> String {
    let mut h = DefaultHasher::new();
    dir.hash(&mut h);
    format!("sgtest_{:016x}", h.finish())
}

/// A fresh database name.
pub fn fresh_database() -> String {
    format!("sgtest_{}", uuid::Uuid::new_v4().simple())
}
