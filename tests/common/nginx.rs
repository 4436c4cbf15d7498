//! A real nginx (Debian's package) in front of test nodes, with the configuration shipped in
//! deploy/nginx/signalgrid.conf: the test fills in the upstream addresses and the listen port,
//! and runs nginx in the foreground (`daemon off`, one process) on a free loopback port, with
//! its pid, logs and temp files in a temp dir. Killed on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::cluster_support::{free_port, wait_port};

/// The shipped configuration (an http-context file).
pub const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/signalgrid.conf");

/// nginx: `SIGNALGRID_NGINX`, else Debian's /usr/sbin/nginx (scripts/test.sh installs it).
pub fn nginx_bin() -> PathBuf {
    let p = PathBuf::from(std::env::var("SIGNALGRID_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into()));
    assert!(p.exists(), "nginx not found at {} (scripts/test.sh installs Debian's nginx)", p.display());
    p
}

/// The shipped configuration with `nodeN:8080` replaced by `upstreams[N-1]` (lines naming
/// more nodes than given are dropped) and `listen 80;` by `listen 127.0.0.1:{port};`.
pub fn fill(shipped: &str, upstreams: &[SocketAddr], port: u16) -> String {
    let mut out = String::new();
    let mut filled = 0;
    for line in shipped.lines() {
        let mut line = line.to_owned();
        if let Some(n) = (1..=9).find(|n| line.contains(&format!("server node{n}:8080 "))) {
            let Some(addr) = upstreams.get(n - 1) else { continue };
            line = line.replace(&format!("node{n}:8080"), &addr.to_string());
            filled += 1;
        }
        if line.trim() == "listen 80;" {
            line = line.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(filled, upstreams.len(), "the shipped config names node1..node{}", upstreams.len());
    assert!(out.contains(&format!("listen 127.0.0.1:{port};")), "the shipped config listens on 80");
    out
}

/// A main nginx.conf in `dir` around `site` (the filled shipped file).
fn main_conf(dir: &Path, site: &str) -> PathBuf {
    let d = dir.display();
    std::fs::write(dir.join("signalgrid.conf"), site).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         include {d}/signalgrid.conf;\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn command(dir: &Path, conf: &Path) -> Command {
    let mut c = Command::new(nginx_bin());
    c.arg("-p").arg(dir).arg("-e").arg(dir.join("error.log")).arg("-c").arg(conf);
    c
}

/// `nginx -t` on the shipped configuration filled with `upstreams`: (passed, its output).
pub fn config_test(upstreams: &[SocketAddr]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let site = fill(&std::fs::read_to_string(SHIPPED).unwrap(), upstreams, free_port());
    let conf = main_conf(dir.path(), &site);
    let out = command(dir.path(), &conf).arg("-t").output().expect("run nginx -t");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A running nginx in front of `upstreams`.
pub struct Nginx {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(upstreams: &[SocketAddr]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let site = fill(&std::fs::read_to_string(SHIPPED).unwrap(), upstreams, port);
        let conf = main_conf(dir.path(), &site);
        let child =
            command(dir.path(), &conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn nginx");
        let n = Nginx { port, child, dir };
        wait_port(port);
        n
    }

    /// `127.0.0.1:port`: where clients reach the cluster (e.g. a browser test's page
    /// address in place of a node's).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh session created, and its room generated, through the load balancer's REST
/// (`lb`): (session id, room id).
pub async fn call_through(lb: &Nginx) -> (String, String) {
    super::common::call_at(&lb.http("")).await
}
