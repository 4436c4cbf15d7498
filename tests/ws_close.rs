//! Every way the node ends a WebSocket sends a close frame with the documented code first
//! (docs/protocol.md; RFC 6455 7.4.1). Frames that tungstenite's client refuses to send (a
//! header announcing 2^62 bytes, invalid UTF-8, reserved bits or opcodes) are written by
//! hand on a plain TCP socket, which also never answers pings.
mod common;
use common::*;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A frame header as a client sends it (masked), announcing `len` payload bytes.
fn header(fin: bool, rsv: u8, opcode: u8, len: u64, masked: bool) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if masked { 0x80 } else { 0 };
    match len {
        0..=125 => h.push(m | len as u8),
        126..=0xFFFF => {
            h.push(m | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(m | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        h.extend_from_slice(&MASK);
    }
    h
}

/// A whole client frame.
fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(fin, rsv, opcode, payload.len() as u64, true);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// A WebSocket client on a plain TCP socket: frames written as given, pings never answered.
struct Raw {
    rd: OwnedReadHalf,
    wr: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl Raw {
    /// Upgrades and reads the `connected` frame.
    async fn connect(node: &TestNode) -> Raw {
        let tcp = TcpStream::connect(node.addr).await.unwrap();
        let (rd, mut wr) = tcp.into_split();
        let req = format!(
            "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            client_token(),
            node.addr
        );
        wr.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Raw { rd, wr: Some(wr), buf: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(raw.fill().await, "upgrade answered");
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw.buf.drain(..end);
        let (op, hello) = raw.frame().await.expect("connected frame");
        assert_eq!(op, TEXT);
        let v: Value = serde_json::from_slice(&hello).unwrap();
        assert_eq!(v["event"], "connected", "{v}");
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.wr.as_mut().unwrap().write_all(bytes).await.unwrap();
    }

    /// Writes `bytes` from a task, so that reading goes on while the node stops taking them
    /// (its write errors once the node has closed are expected).
    fn send_in_background(&mut self, bytes: Vec<u8>) {
        let mut wr = self.wr.take().unwrap();
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            wr
        });
    }

    /// Reads more; false once the socket ended or failed.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(WAIT, self.rd.read(&mut chunk)).await.expect("the node answers") {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next frame from the node (unmasked, RFC 6455 5.1): opcode and payload; None
    /// when the socket ends first.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (op, short) = (self.buf[0] & 0x0F, u64::from(self.buf[1] & 0x7F));
                let (len, at) = match short {
                    126 if self.buf.len() >= 4 => (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4),
                    127 if self.buf.len() >= 10 => (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()), 10),
                    126 | 127 => (u64::MAX, 0),
                    n => (n, 2),
                };
                if at > 0 && self.buf.len() as u64 >= at as u64 + len {
                    let payload = self.buf[at..at + len as usize].to_vec();
                    self.buf.drain(..at + len as usize);
                    return Some((op, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads until the node's close frame: its code (None if the socket ended without one)
    /// and the text frames before it. Pings are read and not answered.
    async fn closed(&mut self) -> (Option<u16>, Vec<Value>) {
        let mut texts = Vec::new();
        for _ in 0..10_000 {
            match self.frame().await {
                None => return (None, texts),
                Some((CLOSE, p)) => return (p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])), texts),
                Some((TEXT, p)) => texts.push(serde_json::from_slice(&p).unwrap()),
                Some(_) => {}
            }
        }
        panic!("no close after 10000 frames");
    }
}

async fn close_code_after(node: &TestNode, bytes: Vec<u8>) -> Option<u16> {
    let mut raw = Raw::connect(node).await;
    raw.send_in_background(bytes);
    raw.closed().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_and_messages_over_the_transport_cap_are_closed_with_1009() {
    let node = TestNode::start().await;
    let cap = signalgrid::ws::transport_cap(node.server.as_ref().unwrap().app.settings.limits.max_frame_bytes);
    assert_eq!(cap, 1 << 20);
    // A header announcing 2^62 bytes.
    assert_eq!(close_code_after(&node, header(true, 0, TEXT, 1 << 62, true)).await, Some(1009));
    // A 10 MB frame.
    assert_eq!(close_code_after(&node, frame(true, 0, TEXT, &vec![b'a'; 10_000_000])).await, Some(1009));
    // 20 fragments of 64 KiB: each under the cap, the message over it.
    let mut fragments = frame(false, 0, TEXT, &[b'a'; 64 * 1024]);
    for i in 1..20 {
        fragments.extend(frame(i == 19, 0, CONTINUATION, &[b'a'; 64 * 1024]));
    }
    assert_eq!(close_code_after(&node, fragments).await, Some(1009));
    // An offer with a 1 MiB SDP.
    let offer = json!({"event": "offer", "data": {"offer": {"type": "offer", "sdp": "v".repeat(1 << 20)}, "to": "x"}});
    assert_eq!(close_code_after(&node, frame(true, 0, TEXT, offer.to_string().as_bytes())).await, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_closed_with_1007() {
    let node = TestNode::start().await;
    assert_eq!(close_code_after(&node, frame(true, 0, TEXT, b"{\"event\": \"\xff\xfe\"}")).await, Some(1007));
    // Split across fragments, the same.
    let mut split = frame(false, 0, TEXT, b"{\"event\": \"\xc3");
    split.extend(frame(true, 0, CONTINUATION, b"\x28\"}"));
    assert_eq!(close_code_after(&node, split).await, Some(1007));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_closed_with_1002() {
    let node = TestNode::start().await;
    let ping_126 = [0u8; 126];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved bit", frame(true, 0b100, TEXT, b"{}")),
        ("reserved data opcode", frame(true, 0, 0x3, b"{}")),
        ("reserved control opcode", frame(true, 0, 0xB, b"")),
        ("unmasked client frame", [header(true, 0, TEXT, 2, false), b"{}".to_vec()].concat()),
        ("fragmented ping", frame(false, 0, PING, b"")),
        ("ping over 125 bytes", frame(true, 0, PING, &ping_126)),
        ("continuation without a start", frame(true, 0, CONTINUATION, b"{}")),
    ];
    for (what, bytes) in cases {
        assert_eq!(close_code_after(&node, bytes).await, Some(1002), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_in_the_connection_actor_is_closed_with_1011() {
    let node = TestNode::start().await;
    let app = node.server.as_ref().unwrap().app.clone();
    let mut a = WsClient::connect(&node, &client_token()).await;
    assert!(!app.node.inject_conn_fault("no-such-connection"));
    assert!(app.node.inject_conn_fault(&a.socket_id));
    let (code, frames) = a.closed().await;
    assert_eq!(code, Some(1011));
    assert_eq!(frames.last().map(|v| v["data"]["code"].clone()), Some(json!("INTERNAL")), "{frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_its_code() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node).await;
    raw.send(&frame(true, 0, CLOSE, &1000u16.to_be_bytes())).await;
    assert_eq!(raw.closed().await.0, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_no_ping_is_closed_with_1008() {
    let node = TestNode::start_with(|s| s.limits.heartbeat_ms = 200).await;
    let mut raw = Raw::connect(&node).await;
    let (code, texts) = raw.closed().await;
    assert_eq!(code, Some(1008));
    assert_eq!(texts.last().map(|v| v["data"]["code"].clone()), Some(json!("HEARTBEAT_TIMEOUT")), "{texts:?}");
}
