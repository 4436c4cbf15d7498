//! A tiny HTTP/1.1 client (keep-alive, JSON bodies, Content-Length or chunked replies) and
//! the REST setup of a run: one session per pair, and its room.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use signalgrid_actors::identity::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::target::Target;

/// Upper bound of one request (connect, write, read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply body accepted.
const MAX_BODY: usize = 1 << 20;

/// One keep-alive connection to a node.
pub struct Http {
    host: String,
    addr: std::net::SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

/// A reply: status and JSON body (Null when empty or not JSON).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The contract's error code, if the body is an error.
    pub fn code(&self) -> String {
        self.body["error"]["code"].as_str().map(str::to_owned).unwrap_or_else(|| format!("HTTP_{}", self.status))
    }
}

impl Http {
    pub fn new(target: &Target) -> Http {
        Http { host: target.host.clone(), addr: target.addr, conn: None }
    }

    /// Sends a request, reconnecting once if a kept-alive connection turned out closed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\nx-auth-token: {token}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n",
            host = self.host,
            len = body.len()
        );
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            let res = tokio::time::timeout(REQUEST_TIMEOUT, self.once(&head, &body)).await;
            match res {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => {
                    self.conn = None;
                    if !(reused && attempt == 0) {
                        return Err(e);
                    }
                }
                Err(_) => {
                    self.conn = None;
                    return Err("request timed out".into());
                }
            }
        }
        Err("request failed twice".into())
    }

    async fn once(&mut self, head: &str, body: &str) -> Result<Reply, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).await.map_err(|e| format!("connect {}: {e}", self.host))?;
            s.set_nodelay(true).ok();
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("just set");
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
        conn.get_mut().write_all(&out).await.map_err(|e| format!("write: {e}"))?;
        let (reply, keep) = read_reply(conn).await?;
        if !keep {
            self.conn = None;
        }
        Ok(reply)
    }
}

async fn read_line(r: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed".into());
    }
    if line.len() > 16 * 1024 {
        return Err("header line too long".into());
    }
    Ok(line.trim_end().to_owned())
}

/// Reads one reply; also says whether the connection may be reused.
async fn read_reply(r: &mut BufReader<TcpStream>) -> Result<(Reply, bool), String> {
    let status_line = read_line(r).await?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut keep = !status_line.starts_with("HTTP/1.0");
    for _ in 0..200 {
        let line = read_line(r).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        for _ in 0..10_000 {
            let size_line = read_line(r).await?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16).map_err(|_| "bad chunk size")?;
            if size == 0 {
                // Trailers (if any) up to the empty line.
                while !read_line(r).await?.is_empty() {}
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err("reply body too large".into());
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await.map_err(|e| format!("read: {e}"))?;
            read_line(r).await.ok(); // CRLF after the chunk
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err("reply body too large".into());
        }
        body.resize(n, 0);
        r.read_exact(&mut body).await.map_err(|e| format!("read: {e}"))?;
    } else {
        keep = false;
        r.take(MAX_BODY as u64).read_to_end(&mut body).await.map_err(|e| format!("read: {e}"))?;
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((Reply { status, body }, keep))
}

/// One pair's identities and room.
#[derive(Debug, Clone)]
pub struct PairSpec {
    pub client_token: String,
    pub psy_token: String,
    pub room_id: String,
}

/// Users of pair `i` in run `tag`.
fn users(tag: &str, i: usize) -> (String, String) {
    (format!("load-{tag}-c{i}"), format!("load-{tag}-p{i}"))
}

/// Creates pair `i`'s session (as admin) and its room (as the client).
async fn make_pair(
    http: &mut Http,
    secret: &str,
    admin: &str,
    tag: &str,
    i: usize,
    ttl: i64,
) -> Result<PairSpec, String> {
    let (client, psy) = users(tag, i);
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = json!({
        "client": { "id": client, "name": format!("Load Client {i}") },
        "psychologist": { "id": psy, "name": format!("Load Psy {i}") },
        "sessionDate": date,
        "durationMinutes": 120,
        "sessionType": "Individual",
        "paymentStatus": "paid",
    });
    let r = http.request("POST", "/api/sessions", admin, Some(&body)).await?;
    if r.status != 201 {
        return Err(r.code());
    }
    let id = r.body["id"].as_str().ok_or("session without id")?.to_owned();
    let client_token = signalgrid::auth::mint(secret, &client, Role::Client, None, ttl);
    let path = format!("/api/video-calls/generate-room/{id}");
    let r = http.request("POST", &path, &client_token, None).await?;
    if r.status != 200 {
        return Err(r.code());
    }
    let room_id = r.body["roomId"].as_str().ok_or("generate-room without roomId")?.to_owned();
    Ok(PairSpec {
        client_token,
        psy_token: signalgrid::auth::mint(secret, &psy, Role::Psychologist, None, ttl),
        room_id,
    })
}

/// Creates `pairs` sessions and rooms with `workers` keep-alive connections; the pairs that
/// failed are reported as error codes.
pub async fn setup(
    target: &Target,
    secret: &str,
    tag: &str,
    pairs: usize,
    workers: usize,
    ttl: i64,
) -> (Vec<PairSpec>, Vec<String>) {
    let admin = signalgrid::auth::mint(secret, &format!("load-{tag}-admin"), Role::Admin, None, ttl);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(workers));
    let mut tasks = Vec::new();
    for _ in 0..workers.min(pairs) {
        let (next, gate, admin) = (next.clone(), gate.clone(), admin.clone());
        let (secret, tag) = (secret.to_owned(), tag.to_owned());
        let mut http = Http::new(target);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= pairs {
                    break;
                }
                done.push(make_pair(&mut http, &secret, &admin, &tag, i, ttl).await);
            }
            done
        }));
    }
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for t in tasks {
        for r in t.await.unwrap_or_default() {
            match r {
                Ok(p) => ok.push(p),
                Err(e) => errors.push(format!("SETUP_{e}")),
            }
        }
    }
    (ok, errors)
}
