//! A real `signalgrid serve` process for tests: started on a free port, its address read
//! from stderr, stopped with SIGTERM or kill -9, killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use super::{SECRET, WAIT};

pub const BIN: &str = env!("CARGO_BIN_EXE_signalgrid");

/// A command for the binary with a clean environment and the given data directory.
pub fn cmd(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VIDEO_CALL_LOG_LEVEL", "warn")
        .arg("--data-dir")
        .arg(data);
    c
}

pub struct NodeProc {
    pub child: Child,
    pub addr: String,
    pub stderr: mpsc::Receiver<String>,
}

impl NodeProc {
    /// Starts `serve` (with the test secret) and waits for its address.
    pub fn serve(c: Command) -> NodeProc {
        NodeProc::serve_with(c, &[])
    }

    /// The same, with more `serve` flags.
    pub fn serve_with(c: Command, flags: &[&str]) -> NodeProc {
        NodeProc::serve_meanwhile(c, flags, |_| {})
    }

    /// `serve_with`, but `meanwhile` gets the node's log lines first, before the node is up
    /// (to wait for a line and act on it).
    pub fn serve_meanwhile(
        mut c: Command,
        flags: &[&str],
        meanwhile: impl FnOnce(&mpsc::Receiver<String>),
    ) -> NodeProc {
        let mut child = c
            .env("VIDEO_CALL_JWT_SECRET", SECRET)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        meanwhile(&rx);
        let mut addr = None;
        while addr.is_none() {
            let line = rx.recv_timeout(WAIT).expect("serve prints its address");
            addr = line.strip_prefix("signalgrid listening on ").map(str::to_owned);
        }
        NodeProc { child, addr: addr.unwrap(), stderr: rx }
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM");
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exited(mut self) -> ExitStatus {
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        tokio::time::timeout(WAIT * 3, tokio::task::spawn_blocking(move || child.wait().unwrap()))
            .await
            .expect("the node exits")
            .unwrap()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
