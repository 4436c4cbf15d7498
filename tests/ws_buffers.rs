//! The WebSocket transport's buffers (vendored tungstenite, vendor/tungstenite/VENDORED.md):
//! an idle client socket holds no read buffer and no write buffer, and frames that arrive in
//! pieces, with the socket going idle in between, are still read whole and in order.
//!
//! The server side of each socket is a `WebSocketStream` with the node's own settings
//! (`signalgrid::ws::socket_config`) over an in-memory duplex pipe; the client side writes
//! raw masked frames (RFC 6455 section 5.2) so that the pieces fall where the test says.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Counts the bytes this test process has allocated and not freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bound on every await here; a hang is a failure, not a wait.
const BOUND: Duration = Duration::from_secs(10);
/// The node's default largest frame (`limits.max_frame_bytes`).
const MAX_FRAME: usize = 64 * 1024;

/// A client-to-server frame: FIN, the opcode, the mask bit and length, a mask, and the
/// masked payload (RFC 6455 section 5.2).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

async fn server(io: DuplexStream) -> WebSocketStream<DuplexStream> {
    WebSocketStream::from_raw_socket(io, Role::Server, Some(signalgrid::ws::socket_config(MAX_FRAME))).await
}

/// Polls the server's stream once, so that it reads until the pipe is empty (the read that
/// would block), as a socket task does between frames.
fn go_idle(ws: &mut WebSocketStream<DuplexStream>) {
    let polled = ws.next().now_or_never();
    assert!(polled.is_none(), "no whole frame was sent, so none is read: {polled:?}");
}

#[tokio::test]
async fn frames_in_pieces_with_idle_reads_between_are_read_whole_and_in_order() {
    let (mut client, io) = tokio::io::duplex(256 * 1024);
    let mut ws = server(io).await;
    let large: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let frames = [masked(0x1, b"{\"type\":\"ping\"}"), masked(0x1, large.as_bytes()), masked(0x1, b"third")];
    // Every split: one byte of the header, the rest of the header, a part of the payload,
    // the rest; the server reads until it would block after each piece.
    for (n, f) in frames.iter().enumerate() {
        let header = if f[1] & 0x7f == 126 { 8 } else { 6 };
        let cuts = [1, header, header + (f.len() - header) / 2, f.len()];
        let mut from = 0;
        for &to in &cuts {
            client.write_all(&f[from..to]).await.expect("write a piece");
            from = to;
            if to < f.len() {
                go_idle(&mut ws);
            }
        }
        let got = tokio::time::timeout(BOUND, ws.next()).await.expect("a frame in time");
        let text = match got {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("frame {n}: expected text, got {other:?}"),
        };
        let want = match n {
            0 => "{\"type\":\"ping\"}",
            1 => large.as_str(),
            _ => "third",
        };
        assert_eq!(text, want, "frame {n} read whole");
        go_idle(&mut ws);
    }
    // Two frames in one write are two messages, and writes go out whole after a release.
    let mut both = masked(0x1, b"one");
    both.extend(masked(0x1, b"two"));
    client.write_all(&both).await.expect("write two");
    for want in ["one", "two"] {
        let got = tokio::time::timeout(BOUND, ws.next()).await.expect("in time");
        assert!(matches!(&got, Some(Ok(Message::Text(t))) if t.as_str() == want), "{want}: {got:?}");
    }
    for reply in ["first reply", "second reply"] {
        tokio::time::timeout(BOUND, ws.send(Message::text(reply))).await.expect("in time").expect("send");
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.expect("reply header");
        assert_eq!(head, [0x81, reply.len() as u8], "an unmasked text frame from the server");
        let mut body = vec![0u8; reply.len()];
        client.read_exact(&mut body).await.expect("reply body");
        assert_eq!(body, reply.as_bytes());
    }
}

/// Live heap bytes per idle server socket that has read a 1 KiB frame and written one:
/// with the buffers given back, what is left is the stream's own state (a few hundred
/// bytes); holding them would be at least the 2 KiB read buffer and the 1 KiB written.
#[tokio::test(flavor = "current_thread")]
async fn an_idle_socket_holds_no_read_or_write_buffer() {
    const SOCKETS: usize = 64;
    let payload = vec![b'x'; 1024];
    let mut pairs = Vec::new();
    for _ in 0..SOCKETS {
        let (client, io) = tokio::io::duplex(8 * 1024);
        pairs.push((client, server(io).await));
    }
    for (client, ws) in pairs.iter_mut() {
        client.write_all(&masked(0x1, &payload)).await.expect("write");
        let got = tokio::time::timeout(BOUND, ws.next()).await.expect("in time");
        assert!(matches!(&got, Some(Ok(Message::Text(t))) if t.len() == payload.len()), "{got:?}");
        go_idle(ws);
        let text = String::from_utf8(payload.clone()).expect("ascii");
        tokio::time::timeout(BOUND, ws.send(Message::text(text))).await.expect("in time").expect("send");
        let mut back = vec![0u8; 4 + payload.len()];
        client.read_exact(&mut back).await.expect("the frame came out");
    }
    let (clients, servers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let before = LIVE.load(Ordering::SeqCst);
    drop(servers);
    let freed = before - LIVE.load(Ordering::SeqCst);
    drop(clients);
    let per_socket = freed / SOCKETS as isize;
    println!("an idle server socket held {per_socket} bytes");
    assert!(per_socket > 0, "dropping the sockets freed their state");
    assert!(per_socket < 1024, "an idle socket holds {per_socket} bytes: a buffer was kept");
}
