//! The WebSocket transport's buffers (vendored tungstenite, vendor/tungstenite/VENDORED.md):
//! an idle client socket holds no read buffer and no write buffer; frames that arrive in
//! pieces, with the socket going idle in between, are still read whole and in order; and a
//! write the peer is slow to take goes out whole.
//!
//! The server side of each socket is a `WebSocketStream` with the node's own settings
//! (`signalgrid::ws::socket_config`) over an in-memory duplex pipe; the client side writes
//! raw masked frames (RFC 6455 section 5.2) so that the pieces fall where the test says.
//! Each test runs unconstrained by tokio's cooperative budget, so that a poll that should
//! read a piece is never turned away early.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Counts, per thread, the bytes allocated and not yet freed on that thread (the memory
/// test runs on one thread, so the other test's allocations do not count).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
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

/// The length of a client frame's header: 2 bytes, the extended length, the 4-byte mask.
fn header_len(f: &[u8]) -> usize {
    match f[1] & 0x7f {
        126 => 8,
        127 => 14,
        _ => 6,
    }
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

async fn next(ws: &mut WebSocketStream<DuplexStream>) -> Option<Message> {
    match tokio::time::timeout(BOUND, ws.next()).await.expect("a frame in time") {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => panic!("read failed: {e}"),
        None => None,
    }
}

#[tokio::test]
async fn frames_in_pieces_with_idle_reads_between_are_read_whole_and_in_order() {
    tokio::task::unconstrained(async {
        let (mut client, io) = tokio::io::duplex(256 * 1024);
        let mut ws = server(io).await;
        let large: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let frames = [
            (masked(0x1, b"{\"type\":\"ping\"}"), Message::text("{\"type\":\"ping\"}")),
            (masked(0x9, b""), Message::Ping(Default::default())),
            (masked(0x1, large.as_bytes()), Message::text(large.clone())),
            (masked(0x1, b"last"), Message::text("last")),
        ];
        // Every frame is cut after each byte of its header (first byte, length, extended
        // length, mask), in the middle of its payload, and at its end; the server reads
        // until it would block after each piece.
        for (n, (f, want)) in frames.iter().enumerate() {
            let header = header_len(f);
            let mut cuts: Vec<usize> = (1..=header).collect();
            cuts.extend([header + (f.len() - header) / 2, f.len()]);
            cuts.dedup();
            let mut from = 0;
            for &to in &cuts {
                client.write_all(&f[from..to]).await.expect("write a piece");
                from = to;
                if to < f.len() {
                    go_idle(&mut ws);
                }
            }
            assert_eq!(next(&mut ws).await.as_ref(), Some(want), "frame {n} read whole");
            go_idle(&mut ws);
        }
        // The ping is answered with a pong (tungstenite writes it on the next read).
        let mut pong = [0u8; 2];
        client.read_exact(&mut pong).await.expect("pong");
        assert_eq!(pong, [0x8a, 0x00], "an empty pong");
        // Two frames in one write are two messages.
        let mut both = masked(0x1, b"one");
        both.extend(masked(0x1, b"two"));
        client.write_all(&both).await.expect("write two");
        assert_eq!(next(&mut ws).await, Some(Message::text("one")));
        assert_eq!(next(&mut ws).await, Some(Message::text("two")));
        go_idle(&mut ws);
        // Writes go out whole after the buffers were given back.
        for reply in ["first reply", "second reply"] {
            tokio::time::timeout(BOUND, ws.send(Message::text(reply))).await.expect("in time").expect("send");
            let mut head = [0u8; 2];
            client.read_exact(&mut head).await.expect("reply header");
            assert_eq!(head, [0x81, reply.len() as u8], "an unmasked text frame from the server");
            let mut body = vec![0u8; reply.len()];
            client.read_exact(&mut body).await.expect("reply body");
            assert_eq!(body, reply.as_bytes());
        }
        // The close handshake still works from an idle socket: the close is read, answered
        // with the same code, and the stream ends.
        client.write_all(&masked(0x8, &1000u16.to_be_bytes())).await.expect("close");
        assert!(matches!(next(&mut ws).await, Some(Message::Close(Some(c))) if u16::from(c.code) == 1000));
        assert_eq!(next(&mut ws).await, None, "the stream ends after the close");
        let mut close = [0u8; 4];
        client.read_exact(&mut close).await.expect("the close answered");
        assert_eq!(close, [0x88, 0x02, 0x03, 0xe8]);
    })
    .await;
}

/// A frame larger than the pipe holds is written in many steps, each of which would block
/// until the client reads; every byte of it arrives, in order.
#[tokio::test]
async fn a_write_the_client_is_slow_to_take_arrives_whole() {
    tokio::task::unconstrained(async {
        let (mut client, io) = tokio::io::duplex(64);
        let mut ws = server(io).await;
        let text: String = (0..10_000).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
        let send = async {
            tokio::time::timeout(BOUND, ws.send(Message::text(text.clone()))).await.expect("in time").expect("send");
        };
        let receive = async {
            let mut head = [0u8; 4];
            client.read_exact(&mut head).await.expect("header");
            assert_eq!(head[..2], [0x81, 126], "a text frame with a 16-bit length");
            assert_eq!(u16::from_be_bytes([head[2], head[3]]) as usize, text.len());
            let mut body = vec![0u8; text.len()];
            tokio::time::timeout(BOUND, client.read_exact(&mut body)).await.expect("in time").expect("body");
            body
        };
        let ((), body) = tokio::join!(send, receive);
        assert_eq!(body, text.as_bytes());
    })
    .await;
}

/// Live heap bytes per idle server socket that has read a 1 KiB frame and written one:
/// with the buffers given back, what is left is the stream's own state (a few hundred
/// bytes); holding them would be at least the 2 KiB read buffer and the 1 KiB written.
#[tokio::test(flavor = "current_thread")]
async fn an_idle_socket_holds_no_read_or_write_buffer() {
    tokio::task::unconstrained(async {
        const SOCKETS: usize = 64;
        let payload = vec![b'x'; 1024];
        let mut pairs = Vec::new();
        for _ in 0..SOCKETS {
            let (client, io) = tokio::io::duplex(8 * 1024);
            pairs.push((client, server(io).await));
        }
        for (client, ws) in pairs.iter_mut() {
            client.write_all(&masked(0x1, &payload)).await.expect("write");
            assert!(matches!(next(ws).await, Some(Message::Text(t)) if t.len() == payload.len()));
            go_idle(ws);
            let text = String::from_utf8(payload.clone()).expect("ascii");
            tokio::time::timeout(BOUND, ws.send(Message::text(text))).await.expect("in time").expect("send");
            let mut back = vec![0u8; 4 + payload.len()];
            client.read_exact(&mut back).await.expect("the frame came out");
        }
        let (clients, servers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let before = LIVE.with(Cell::get);
        drop(servers);
        let freed = before - LIVE.with(Cell::get);
        drop(clients);
        let per_socket = freed / SOCKETS as isize;
        println!("an idle server socket held {per_socket} bytes");
        assert!(per_socket > 0, "dropping the sockets freed their state");
        assert!(per_socket < 1024, "an idle socket holds {per_socket} bytes: a buffer was kept");
    })
    .await;
}
