//! A webhook receiver for tests: a real HTTP/1.1 server on 127.0.0.1 (a free port) that
//! records every request (event id, signature, raw body, the status it answered), answers
//! the status it is told, and can go down (port closed, open connections cut) and come
//! back on the same port.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use super::WAIT;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub signature: String,
    pub body: String,
    /// The status this receiver answered.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.answered)
    }

    /// Whether the signature verifies against `secret` (HMAC-SHA256 over "<t>.<body>").
    pub fn verifies(&self, secret: &str) -> bool {
        let Some((t, v1)) = self.signature.split_once(',') else { return false };
        let (Some(t), Some(v1)) = (t.strip_prefix("t="), v1.strip_prefix("v1=")) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{}", self.body).as_bytes());
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        want == v1 && t.parse::<i64>().is_ok()
    }
}

struct Shared {
    status: Mutex<u16>,
    log: Mutex<Vec<Received>>,
    changed: Notify,
}

pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

fn bind(port: u16) -> TcpListener {
    let s = TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.bind(([127, 0, 0, 1], port).into()).unwrap();
    s.listen(128).unwrap()
}

impl Receiver {
    /// Starts answering 200.
    pub async fn start() -> Receiver {
        let listener = bind(0);
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared { status: Mutex::new(200), log: Mutex::new(Vec::new()), changed: Notify::new() });
        let r = Receiver { port, shared, server: Mutex::new(None) };
        r.serve(listener);
        r
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            // Dropped (and so every connection aborted) when this task is aborted.
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(connection(stream, shared.clone()));
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// The status to answer from now on.
    pub fn answer(&self, status: u16) {
        *self.shared.status.lock().unwrap() = status;
    }

    /// Closes the port and cuts open connections.
    pub async fn down(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub fn up(&self) {
        self.serve(bind(self.port));
    }

    pub fn log(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The requests answered 2xx, in order.
    pub fn acked(&self) -> Vec<Received> {
        self.log().into_iter().filter(Received::ok).collect()
    }

    /// Waits (at most `WAIT * 3`) until `done` holds for the log; returns the log.
    pub async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let wait = async {
            loop {
                let changed = self.shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let log = self.log();
                if done(&log) {
                    return log;
                }
                changed.await;
            }
        };
        match tokio::time::timeout(WAIT * 3, wait).await {
            Ok(log) => log,
            Err(_) => panic!("receiver: timed out waiting for {what}; got {:#?}", self.log()),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.server.lock().unwrap().take() {
            t.abort();
        }
    }
}

/// Serves one keep-alive connection: request head, `content-length` body, empty answer.
async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            match read.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        let header = |name: &str| {
            headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let len: usize = header("content-length").parse().unwrap_or(0);
        let mut body = vec![0; len];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let status = *shared.status.lock().unwrap();
        let received = Received {
            id: header("x-signalgrid-event-id"),
            signature: header("x-signalgrid-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
            answered: status,
        };
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        let written = write.write_all(answer.as_bytes()).await;
        shared.log.lock().unwrap().push(received);
        shared.changed.notify_waiters();
        if written.is_err() {
            return;
        }
    }
}
