mod common;
use common::*;

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::AuditAction;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = tokio::time::timeout(WAIT, req.send()).await.expect("request timed out").expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_audit_trail_survive_a_restart() {
    let node = TestNode::start().await;
    let (id, room) = node.call().await;
    let (st, started) = send(node.post(&format!("/api/video-calls/start/{id}"), Some(&client_token()))).await;
    assert_eq!(st, 200, "{started}");

    let mut ws = WsClient::connect(&node, &client_token()).await;
    ws.join(&room).await;
    // The connection handles its frames in order: once this relay is refused, the join
    // (call record, access count) has been fully handled.
    ws.send("offer", json!({"offer": {"sdp": "x"}, "to": "no-such-peer"})).await;
    ws.expect_error("PEER_NOT_FOUND").await;

    let (st, ended) = send(node.post(&format!("/api/video-calls/end/{id}"), Some(&psy_token()))).await;
    assert_eq!(st, 200, "{ended}");
    let ce = ws.next_event("call-ended").await;
    assert_eq!(ce["roomId"], room.as_str());
    assert_eq!(ce["endedBy"], "psy-1");

    let path = format!("/api/sessions/{id}");
    let (st, before) = send(node.get(&path, Some(&admin()))).await;
    assert_eq!(st, 200);
    assert_eq!(before["meetingLink"], room.as_str());
    assert_eq!(before["videoCallStarted"], started["session"]["videoCallStarted"]);
    assert!(before["videoCallEnded"].is_string(), "{before}");
    assert_eq!(before["callDuration"], ended["duration"]);
    assert_eq!(before["status"], "Completed");
    assert!(before["accessCount"].as_i64().unwrap() >= 1, "{before}");
    assert!(before["lastAccessedAt"].is_string(), "{before}");

    // Graceful stop (drain, flush) while the client reads its socket to the close.
    let (data, _) = tokio::join!(node.stop(), ws.closed());

    let node = TestNode::start_in(data, |_| {}).await;
    let (st, after) = send(node.get(&path, Some(&psy_token()))).await;
    assert_eq!(st, 200, "{after}");
    assert_eq!(after, before, "the session changed across the restart");
    for k in ["meetingLink", "videoCallStarted", "videoCallEnded", "callDuration", "lastAccessedAt"] {
        assert!(!after[k].is_null(), "{k} lost: {after}");
    }
    assert_eq!(after["status"], "Completed");
    assert!(after["accessCount"].as_i64().unwrap() >= 1);

    // Audit entries are written in the background, and a graceful shutdown waits for them:
    // the reopened store has them all, without waiting.
    let wanted = [AuditAction::JoinAttempt, AuditAction::JoinSuccess, AuditAction::CallStart, AuditAction::CallEnd];
    let trail = node.store.audit_trail(&id).await.expect("audit trail");
    let actions: Vec<_> = trail.iter().map(|e| e.action).collect();
    for w in wanted {
        assert!(actions.contains(&w), "{w:?} missing from {actions:?}");
    }
    let js = trail.iter().find(|e| e.action == AuditAction::JoinSuccess).unwrap();
    assert_eq!(js.user_id, "client-1");
    assert!(trail.iter().all(|e| e.session_id == id));
    let end = trail.iter().find(|e| e.action == AuditAction::CallEnd).unwrap();
    assert_eq!(end.user_id, "psy-1");
}

/// A self-signed certificate for localhost / 127.0.0.1, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

fn connector(der: Vec<u8>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(der)).expect("trust the test certificate");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

async fn tls_connect(node: &TestNode, tls: &TlsConnector, name: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(node.addr)).await.unwrap().unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(WAIT, tls.connect(name, tcp)).await.expect("TLS handshake timed out").expect("TLS handshake")
}

/// Reads one HTTP/1.1 response (headers, and a body of `content-length` bytes).
async fn read_response(io: &mut (impl AsyncRead + Unpin)) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(WAIT, io.read(&mut chunk))
            .await
            .expect("timed out reading the response")
            .expect("read");
        assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn https_and_wss_with_a_self_signed_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(certs.path());
    let node = TestNode::start_with(|s| {
        s.tls.cert_path = Some(cert.clone());
        s.tls.key_path = Some(key.clone());
    })
    .await;
    let tls = connector(der);

    // HTTPS, by name and by IP address.
    for name in ["localhost", "127.0.0.1"] {
        let mut s = tls_connect(&node, &tls, name).await;
        let req = format!(
            "GET /healthz HTTP/1.1\r\nHost: {name}:{}\r\nx-request-id: tls-{name}\r\nConnection: close\r\n\r\n",
            node.addr.port()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains(&format!("x-request-id: tls-{name}")), "{head}");
        let v: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(v["status"], "ok", "{v}");
    }

    // WSS: the upgrade over our own TLS stream; the first frame is `connected`.
    let s = tls_connect(&node, &tls, "localhost").await;
    let url = format!("wss://localhost:{}/ws?token={}", node.addr.port(), client_token());
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, s))
        .await
        .expect("WSS upgrade timed out")
        .expect("WSS upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    let frame = loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for connected")
            .expect("socket ended")
            .expect("socket error");
        match m {
            Message::Text(t) => break serde_json::from_str::<Value>(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert_eq!(frame["event"], "connected", "{frame}");
    assert!(frame["data"]["socketId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(frame["data"]["heartbeatMs"].is_number(), "{frame}");
    let _ = ws.close(None).await;

    // Plain HTTP to the TLS port gets no 200.
    let res = tokio::time::timeout(WAIT, node.http.get(node.url("/healthz")).send())
        .await
        .expect("plain request answered or refused");
    if let Ok(r) = res {
        assert_ne!(r.status(), 200, "plain HTTP was served on the TLS port");
    }
    // And a raw plain request gets no HTTP 200 back either.
    let mut tcp = TcpStream::connect(node.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got)).await.expect("the server answers or closes");
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "plain HTTP was served: {:?}",
        String::from_utf8_lossy(&got)
    );
}
