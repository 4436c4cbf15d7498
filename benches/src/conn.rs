//! Opening one connection: TCP + upgrade until `connected`, then `join-room` until
//! `room-joined`, each timed.

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

/// A connection that joined its room.
pub struct Joined {
    pub ws: Ws,
    pub socket_id: String,
    pub connect_ns: u64,
    pub join_ns: u64,
}

/// `{"event","data"}` with the data left raw.
#[derive(Deserialize)]
pub struct Frame<'a> {
    pub event: &'a str,
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorData {
    code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectedData {
    socket_id: String,
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
async fn expect(ws: &mut Ws, event: &str, stage: &str) -> Result<String, String> {
    for _ in 0..MAX_SKIPPED {
        let msg = match tokio::time::timeout(STEP_TIMEOUT, ws.next()).await {
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
        if frame.event == event {
            return Ok(frame.data.map(|d| d.get().to_owned()).unwrap_or_default());
        }
        if frame.event == "error" {
            return Err(error_code(frame.data));
        }
    }
    Err(format!("{stage}_UNEXPECTED_FRAMES"))
}

/// Connects to `url` and joins `room`; errors are codes (the server's, or ours).
pub async fn open(url: &str, room: &str) -> Result<Joined, String> {
    let t0 = Instant::now();
    let up = tokio_tungstenite::connect_async_with_config(url, Some(config()), true);
    let mut ws = match tokio::time::timeout(STEP_TIMEOUT, up).await {
        Err(_) => return Err("CONNECT_TIMEOUT".into()),
        Ok(Err(WsError::Http(res))) => {
            let code = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            return Err(code.unwrap_or_else(|| format!("UPGRADE_HTTP_{}", res.status().as_u16())));
        }
        Ok(Err(WsError::Io(e))) => return Err(format!("CONNECT_IO_{:?}", e.kind())),
        Ok(Err(_)) => return Err("CONNECT_FAILED".into()),
        Ok(Ok((ws, _))) => ws,
    };
    let hello = expect(&mut ws, "connected", "CONNECTED").await?;
    let connect_ns = t0.elapsed().as_nanos() as u64;
    let socket_id = serde_json::from_str::<ConnectedData>(&hello).map_err(|_| "CONNECTED_BAD_FRAME")?.socket_id;
    let join = format!(r#"{{"event":"join-room","data":{{"roomId":{}}}}}"#, serde_json::Value::from(room));
    let t1 = Instant::now();
    ws.send(Message::text(join)).await.map_err(|_| "JOIN_SEND_FAILED")?;
    expect(&mut ws, "room-joined", "JOIN").await?;
    let join_ns = t1.elapsed().as_nanos() as u64;
    Ok(Joined { ws, socket_id, connect_ns, join_ns })
}
