//! Opening one connection: TCP + upgrade until `connected`, then `join-room` until
//! `room-joined`, each timed; and resuming a seat on a new socket (PROTOCOL.md section 6).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upper bound of each step (upgrade, first frame, join).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames skipped while waiting for an expected one (e.g. `user-joined` of the peer).
const MAX_SKIPPED: usize = 64;

/// Most upgrades refused with 503 `CONNECT_RATE_LIMITED` that one connect waits out.
const RATE_LIMITED_RETRIES: u32 = 20;

/// A connection that joined its room.
pub struct Joined {
    pub ws: Ws,
    pub socket_id: String,
    /// The JWT it connected with (a resume needs it again).
    pub token: String,
    /// Index into the run's `--url`s of the node it is on.
    pub url_index: usize,
    /// `resumeToken` of its `connected` (empty if the node sent none).
    pub resume_token: String,
    /// Highest `seq` received so far (0: none).
    pub last_seq: u64,
    pub connect_ns: u64,
    pub join_ns: u64,
}

/// `{"event","data","seq"}` with the data left raw; `seq` is absent on `connected`.
#[derive(Deserialize)]
pub struct Frame<'a> {
    pub event: &'a str,
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
    #[serde(default)]
    pub seq: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorData {
    code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectedData {
    socket_id: String,
    #[serde(default)]
    resume_token: String,
    #[serde(default)]
    resumed: bool,
    #[serde(default)]
    lost: bool,
}

/// A seat taken back on a new socket.
pub struct Resumed {
    pub ws: Ws,
    pub resume_token: String,
    /// `lost: true`: frames owed to the seat may be gone (its node died).
    pub lost: bool,
}

/// Why a resume did not give the seat back.
#[derive(Debug)]
pub enum ResumeError {
    /// The node answered `connected` with `resumed: false` and `RESUME_FAILED` (reason).
    Failed(String),
    /// The upgrade was refused or the socket failed before `connected` (a code): try
    /// another node.
    Unreachable(String),
}

/// The error code of an `error` frame's data.
pub fn error_code(data: Option<&RawValue>) -> String {
    data.and_then(|d| serde_json::from_str::<ErrorData>(d.get()).ok())
        .map(|d| d.code)
        .unwrap_or_else(|| "ERROR_WITHOUT_CODE".into())
}

/// The generator's own sockets: tungstenite zero-fills its whole read buffer before every
/// read, so a small one keeps the generator's CPU (which the server shares) low.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(16 * 1024)
}

/// Waits for a text frame with `event` and returns its raw data; an `error` frame, a close,
/// or too many other frames end the wait with a code.
async fn expect(ws: &mut Ws, event: &str, stage: &str, last_seq: &mut u64) -> Result<String, String> {
    expect_within(ws, event, stage, last_seq, STEP_TIMEOUT).await
}

/// `expect` with its own bound for each frame.
async fn expect_within(
    ws: &mut Ws,
    event: &str,
    stage: &str,
    last_seq: &mut u64,
    wait: Duration,
) -> Result<String, String> {
    for _ in 0..MAX_SKIPPED {
        let msg = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Err(format!("{stage}_TIMEOUT")),
            Ok(None) | Ok(Some(Err(_))) => return Err(format!("{stage}_CLOSED")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return Err(format!("{stage}_CLOSED")),
            _ => continue,
        };
        let frame: Frame = serde_json::from_str(&text).map_err(|_| format!("{stage}_BAD_FRAME"))?;
        if let Some(seq) = frame.seq {
            *last_seq = (*last_seq).max(seq);
        }
        if frame.event == event {
            return Ok(frame.data.map(|d| d.get().to_owned()).unwrap_or_default());
        }
        if frame.event == "error" {
            return Err(error_code(frame.data));
        }
    }
    Err(format!("{stage}_UNEXPECTED_FRAMES"))
}

/// A refused or failed upgrade: a code, and the `retry-after` of a 503.
pub struct UpgradeError {
    pub code: String,
    pub retry_after: Option<Duration>,
}

/// One WebSocket upgrade, within `STEP_TIMEOUT`.
async fn upgrade_once(url: &str) -> Result<Ws, UpgradeError> {
    let up = tokio_tungstenite::connect_async_with_config(url, Some(config()), true);
    let fail = |code: String| UpgradeError { code, retry_after: None };
    match tokio::time::timeout(STEP_TIMEOUT, up).await {
        Err(_) => Err(fail("CONNECT_TIMEOUT".into())),
        Ok(Err(WsError::Http(res))) => {
            let code = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)));
            Err(UpgradeError {
                code: code.unwrap_or_else(|| format!("UPGRADE_HTTP_{}", res.status().as_u16())),
                retry_after,
            })
        }
        Ok(Err(WsError::Io(e))) => Err(fail(format!("CONNECT_IO_{:?}", e.kind()))),
        Ok(Err(_)) => Err(fail("CONNECT_FAILED".into())),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// The wait before retrying an upgrade refused with `retry-after`: that long plus up to
/// half of it (at least 50 ms) of random jitter, so refused clients do not come back together.
pub fn retry_delay(retry_after: Duration) -> Duration {
    let spread = (retry_after / 2).max(Duration::from_millis(50));
    retry_after + spread.mul_f64(fastrand::f64())
}

/// Upgrades, waiting out 503 `CONNECT_RATE_LIMITED` refusals (their `retry-after` plus
/// jitter, at most `RATE_LIMITED_RETRIES` times); other refusals are returned at once.
pub async fn upgrade(url: &str) -> Result<Ws, UpgradeError> {
    let mut tries = 0;
    loop {
        match upgrade_once(url).await {
            Err(e) if e.code == "CONNECT_RATE_LIMITED" && tries < RATE_LIMITED_RETRIES => {
                tries += 1;
                tokio::time::sleep(retry_delay(e.retry_after.unwrap_or(Duration::from_secs(1)))).await;
            }
            other => return other,
        }
    }
}

/// Connects to `url` (a node's `/ws?token=` URL; `url_index` says which node) with `token`
/// and joins `room`; errors are codes (the server's, or ours).
pub async fn open(url: &str, token: &str, url_index: usize, room: &str) -> Result<Joined, String> {
    let t0 = Instant::now();
    let mut ws = upgrade(url).await.map_err(|e| e.code)?;
    let mut last_seq = 0;
    let hello = expect(&mut ws, "connected", "CONNECTED", &mut last_seq).await?;
    let connect_ns = t0.elapsed().as_nanos() as u64;
    let hello = serde_json::from_str::<ConnectedData>(&hello).map_err(|_| "CONNECTED_BAD_FRAME")?;
    let join = format!(r#"{{"event":"join-room","data":{{"roomId":{}}}}}"#, serde_json::Value::from(room));
    let t1 = Instant::now();
    ws.send(Message::text(join)).await.map_err(|_| "JOIN_SEND_FAILED")?;
    expect(&mut ws, "room-joined", "JOIN", &mut last_seq).await?;
    let join_ns = t1.elapsed().as_nanos() as u64;
    Ok(Joined {
        ws,
        socket_id: hello.socket_id,
        token: token.to_owned(),
        url_index,
        resume_token: hello.resume_token,
        last_seq,
        connect_ns,
        join_ns,
    })
}

/// Resumes seat `socket_id` on the node of `url` (`/ws?token=`), with its `resume_token`
/// and the last `seq` processed. Success: `connected` with the same socket id and
/// `resumed: true`; the replayed frames are left on the socket for the caller. `wait` bounds
/// the wait for `connected` after the upgrade: a node may take long to claim a seat, and a
/// client that gives up meanwhile finds its token used when it tries again.
pub async fn resume(
    url: &str,
    socket_id: &str,
    resume_token: &str,
    last_seq: u64,
    wait: Duration,
) -> Result<Resumed, ResumeError> {
    let url = format!("{url}&resume={}&lastSeq={last_seq}", encode_query(resume_token));
    let mut ws = upgrade(&url).await.map_err(|e| ResumeError::Unreachable(e.code))?;
    let mut seen = 0;
    let hello = expect_within(&mut ws, "connected", "RESUME_CONNECTED", &mut seen, wait)
        .await
        .map_err(ResumeError::Unreachable)?;
    let hello = serde_json::from_str::<ConnectedData>(&hello)
        .map_err(|_| ResumeError::Unreachable("RESUME_BAD_FRAME".into()))?;
    if hello.resumed && hello.socket_id == socket_id {
        return Ok(Resumed { ws, resume_token: hello.resume_token, lost: hello.lost });
    }
    // Not resumed: the next frame says why (`RESUME_FAILED` with `details.reason`).
    let reason = match tokio::time::timeout(STEP_TIMEOUT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<serde_json::Value>(&t)
            .ok()
            .and_then(|v| v["data"]["details"]["reason"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "no_reason".into()),
        _ => "no_error_frame".into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Err(ResumeError::Failed(reason))
}

/// Percent-encodes a query value (resume tokens are opaque).
fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
