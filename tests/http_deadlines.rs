//! Unauthenticated connections cannot hold a node: every phase of an HTTP request has a
//! deadline (head, body, the idle wait between keep-alive requests), a body declared past
//! the REST limit is refused before it is read, and open connections are capped per client
//! address and in total, WebSockets included. Raw TCP sockets, some bound to other loopback
//! addresses (127.0.0.2, 127.0.0.3) to be other clients. Behind a listed proxy,
//! `X-Forwarded-For` gives the client's address for rate limits and the audit trail.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `node` from loopback address `from` (`127.0.0.x`).
async fn connect_from(node: &TestNode, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    tokio::time::timeout(WAIT, s.connect(node.addr)).await.expect("connect timed out").unwrap()
}

/// Everything the node sends until it closes the connection (bounded by `WAIT`: a
/// connection the node never closes fails the test).
async fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the node never closed the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /healthz` on its own connection from `from`; the status line's code.
async fn healthz_from(node: &TestNode, from: &str) -> String {
    let mut s = connect_from(node, from).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut s).await;
    answer.split(' ').nth(1).unwrap_or("closed").to_owned()
}

/// A connection from `from` is answered `503 CONNECTION_LIMIT` and closed at once. (It sends
/// nothing: a request the node never read could turn the close into a reset.)
async fn refused_from(node: &TestNode, from: &str) {
    let mut s = connect_from(node, from).await;
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"CONNECTION_LIMIT\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_at_its_deadline() {
    let node = TestNode::start_with(|s| s.http.body_timeout_ms = 300).await;
    let mut s = connect_from(&node, "127.0.0.1").await;
    let head =
        "POST /api/sessions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // The slow client: one byte every 100 ms, for far longer than the wait below.
    let trickle = tokio::spawn(async move {
        for _ in 0..60_000 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, rd.read_to_end(&mut out)).await;
    trickle.abort();
    let _ = read.expect("the node never cut the trickled body");
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"BAD_REQUEST\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_past_the_limit_is_refused_before_it_is_read() {
    let node = TestNode::start().await;
    let mut s = connect_from(&node, "127.0.0.1").await;
    let head =
        "POST /api/sessions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    // No body at all: the answer must not wait for one.
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"PAYLOAD_TOO_LARGE\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let node = TestNode::start_with(|s| s.http.header_timeout_ms = 300).await;
    // Connected, never a byte.
    let mut silent = connect_from(&node, "127.0.0.1").await;
    // One request answered, then idle between keep-alive requests.
    let mut idle = connect_from(&node, "127.0.0.1").await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(WAIT, idle.read_exact(&mut first)).await.unwrap().unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    until_closed(&mut silent).await;
    until_closed(&mut idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_at_the_write_deadline() {
    let node = TestNode::start_with(|s| {
        s.http.write_timeout_ms = 300;
        s.http.max_connections_per_ip = 1;
    })
    .await;
    // Pipelined requests for an 18 KB script, whose answers (about 18 MB) are never read:
    // far more than the socket buffers hold, so the node's writes stop making progress.
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let stalled = tokio::time::timeout(WAIT, s.connect(node.addr)).await.unwrap().unwrap();
    let (_rd, mut wr) = stalled.into_split();
    let requests = "GET /web/call.js HTTP/1.1\r\nhost: x\r\n\r\n".repeat(1_000);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(requests.as_bytes()).await;
        wr
    });
    // 127.0.0.5 may hold one connection: it is refused until the node gives up on the
    // stalled one (bounded attempts, each a fresh connection).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut probe = connect_from(&node, "127.0.0.5").await;
        probe.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.ok();
        let answer = until_closed(&mut probe).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(tokio::time::Instant::now() < deadline, "the node never closed the connection that stopped reading");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_client_address_and_in_total() {
    let node = TestNode::start_with(|s| {
        s.http.max_connections_per_ip = 3;
        s.http.max_connections = Some(4);
    })
    .await;
    // 127.0.0.1 holds three: a WebSocket (it counts as long as it is open) and two silent
    // connections.
    let ws = WsClient::connect(&node, &client_token()).await;
    let mut hogs = vec![connect_from(&node, "127.0.0.1").await, connect_from(&node, "127.0.0.1").await];
    refused_from(&node, "127.0.0.1").await;
    // Another address is not held back by 127.0.0.1's cap...
    let mut other = connect_from(&node, "127.0.0.2").await;
    other.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(WAIT, other.read_exact(&mut first)).await.unwrap().unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // ... but with it open, the node holds its total of four.
    refused_from(&node, "127.0.0.3").await;
    drop(other);

    // The hogs end their connections (a request with `connection: close`, then the node's
    // close): their places are free when the close arrives, and 127.0.0.1 is served again.
    for h in &mut hogs {
        h.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        assert!(until_closed(h).await.starts_with("HTTP/1.1 200"));
    }
    assert_eq!(healthz_from(&node, "127.0.0.1").await, "200");
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_proxy_is_held_to_the_total_cap_only() {
    let node = TestNode::start_with(|s| {
        s.http.max_connections_per_ip = 1;
        s.http.proxy_addresses = vec!["127.0.0.6".parse().unwrap()];
    })
    .await;
    // The balancer at 127.0.0.6 carries many clients; 127.0.0.7 is one client.
    let _held = [connect_from(&node, "127.0.0.6").await, connect_from(&node, "127.0.0.7").await];
    assert_eq!(healthz_from(&node, "127.0.0.6").await, "200");
    refused_from(&node, "127.0.0.7").await;
}

/// `GET /api/video-calls/config` with no token from `from`, with `X-Forwarded-For: xff`;
/// the status code (a bad-token request is rate limited per client address).
async fn untokened_from(node: &TestNode, from: &str, xff: &str) -> u16 {
    let http = reqwest::Client::builder().local_address(from.parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let res = http.get(node.url("/api/video-calls/config")).header("x-forwarded-for", xff).send().await.unwrap();
    res.status().as_u16()
}

#[tokio::test]
async fn x_forwarded_for_is_believed_from_a_listed_proxy_only() {
    let node = TestNode::start_with(|s| {
        s.http.proxy_addresses = vec!["127.0.0.8".parse().unwrap()];
        s.limits.rest_per_minute = 2;
    })
    .await;
    // Through the balancer at 127.0.0.8, each forwarded client has its own REST budget: the
    // first spends it, the second is untouched.
    for _ in 0..2 {
        assert_eq!(untokened_from(&node, "127.0.0.8", "198.51.100.1").await, 401);
    }
    assert_eq!(untokened_from(&node, "127.0.0.8", "198.51.100.1").await, 429);
    assert_eq!(untokened_from(&node, "127.0.0.8", "198.51.100.2").await, 401);
    // A client-written entry at the left end is not believed over the one the proxy added.
    assert_eq!(untokened_from(&node, "127.0.0.8", "198.51.100.2, 198.51.100.1").await, 429);
    // From an address that is not a listed proxy, the header is ignored: 127.0.0.9 is one
    // client whatever it claims.
    for _ in 0..2 {
        assert_eq!(untokened_from(&node, "127.0.0.9", "198.51.100.3").await, 401);
    }
    assert_eq!(untokened_from(&node, "127.0.0.9", "198.51.100.4").await, 429);

    // The audit trail records the forwarded address of a WebSocket join through the proxy.
    let (session, room) = node.call().await;
    let url = node.ws_url(&client_token());
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut().insert("x-forwarded-for", "203.0.113.50".parse().unwrap());
    let tcp = connect_from(&node, "127.0.0.8").await;
    let (ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp)))
            .await
            .expect("upgrade timed out")
            .unwrap();
    let mut c = WsClient::from_stream(ws).await;
    c.join(&room).await;
    // A graceful stop waits for audit writes under way.
    let store = node.store.clone();
    c.close().await;
    node.stop().await;
    let trail = signalgrid_actors::ports::Store::audit_trail(&*store, &session).await.unwrap();
    let joined =
        trail.iter().find(|e| e.action == signalgrid_actors::session::AuditAction::JoinSuccess).expect("a join");
    assert_eq!(joined.ip_address.as_deref(), Some("203.0.113.50"));
}
