mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signalgrid_config::LimitSettings;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// An upgrade the server must refuse: its HTTP status and JSON body.
async fn refused<R: IntoClientRequest + Unpin>(req: R) -> (u16, Value) {
    let res = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("upgrade answered");
    match res {
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let v = serde_json::from_slice(body).unwrap_or(Value::Null);
            (resp.status().as_u16(), v)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("upgrade was accepted"),
    }
}

/// Reads a client's frames in a task (so that it answers pings) into a channel.
fn pump(mut c: WsClient) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = c.ws.next().await {
            if let Message::Text(t) = msg {
                if tx.send(serde_json::from_str(&t).unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("timed out waiting for a frame").expect("socket ended")
}

fn bad_frames(to: &str) -> Vec<(Message, &'static str)> {
    let big = json!({"event": "ice-candidate",
        "data": {"candidate": {"pad": "a".repeat(70 * 1024)}, "to": to}});
    vec![
        (Message::text(big.to_string()), "PAYLOAD_TOO_LARGE"),
        (Message::text("not json"), "BAD_REQUEST"),
        (Message::text(r#"{"event":"offer","data":{"to":"x"}}"#), "BAD_REQUEST"),
        (Message::text(r#"{"event":"dance","data":{}}"#), "UNKNOWN_EVENT"),
        (Message::binary(vec![0u8, 1, 2, 3]), "BAD_REQUEST"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_never_close_the_socket() {
    let node = TestNode::start().await;
    assert_eq!(node.server.as_ref().unwrap().app.settings.limits.max_frame_bytes, 64 * 1024);
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    // Before joining.
    for (frame, code) in bad_frames(&b.socket_id) {
        a.ws.send(frame).await.unwrap();
        a.expect_error(code).await;
    }
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    // In a room: after each bad frame (the oversize one addressed to b), relays still work
    // and b got nothing else.
    for (frame, code) in bad_frames(&b.socket_id) {
        a.ws.send(frame).await.unwrap();
        a.expect_error(code).await;
        marker(&mut a, &mut b, code).await;
        marker(&mut b, &mut a, code).await;
    }
    a.send("leave-room", json!({"roomId": room})).await;
    b.next_event("user-left").await;
    let j = a.join(&room).await;
    assert_eq!(j["participants"].as_array().unwrap().len(), 2, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_rate_limit() {
    let (rate, burst) = (5u32, 5u32);
    let node = TestNode::start_with(|s| {
        s.limits.ws_messages_per_sec = rate;
        s.limits.ws_burst = burst;
    })
    .await;
    let (_, room) = node.call().await;
    let mut p = WsClient::connect(&node, &psy_token()).await;
    p.join(&room).await;
    let t0 = Instant::now(); // before a's token bucket exists
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.join(&room).await; // one token
    p.next_event("user-joined").await;

    const N: u64 = 20;
    for seq in 0..N {
        let to = p.socket_id.clone();
        a.send("ice-candidate", json!({"candidate": {"seq": seq}, "to": to})).await;
    }
    // Every candidate is either delivered to p or refused to a with RATE_LIMITED.
    let (mut delivered, mut limited) = (Vec::new(), 0u64);
    while (delivered.len() as u64) + limited < N {
        tokio::select! {
            v = a.next() => {
                assert_eq!(v["event"], "error", "{v}");
                assert_eq!(v["data"]["code"], "RATE_LIMITED", "{v}");
                limited += 1;
            }
            v = p.next() => {
                assert_eq!(v["event"], "ice-candidate", "{v}");
                delivered.push(v["data"]["candidate"]["seq"].as_u64().unwrap());
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // p's own request is answered after anything a's actor queued for it: no extra delivery.
    p.send("call-ended", json!({"roomId": "fence"})).await;
    p.expect_error("FORBIDDEN").await;

    assert!(limited >= 1, "20 messages at once with a burst of 5");
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "{delivered:?}");
    // The bucket was full at the join, so the first burst - 1 candidates passed.
    assert_eq!(delivered[..(burst as usize - 1)], [0, 1, 2, 3]);
    // No more than the bucket can hold plus what it refilled meanwhile (join took one).
    let allowance = u64::from(burst) - 1 + (f64::from(rate) * elapsed).ceil() as u64;
    assert!((delivered.len() as u64) <= allowance, "{} delivered, allowance {allowance}", delivered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_frames_count_against_the_rate_limit() {
    let (rate, burst) = (5u32, 5u32);
    let node = TestNode::start_with(|s| {
        s.limits.ws_messages_per_sec = rate;
        s.limits.ws_burst = burst;
    })
    .await;
    let t0 = Instant::now(); // before a's budget exists
    let mut a = WsClient::connect(&node, &client_token()).await;
    // Frames refused before decoding (too large, not JSON, binary) and after (bad fields,
    // unknown event), at once: each is answered once, and only the budget's worth with its
    // own refusal.
    const N: u64 = 200;
    let frames = bad_frames("nobody");
    for i in 0..N as usize {
        a.ws.feed(frames[i % frames.len()].0.clone()).await.unwrap();
    }
    a.ws.flush().await.unwrap();
    let (mut limited, mut refused) = (0u64, 0u64);
    for _ in 0..N {
        let v = a.next().await;
        assert_eq!(v["event"], "error", "{v}");
        if v["data"]["code"] == "RATE_LIMITED" {
            limited += 1;
        } else {
            refused += 1;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(limited >= 1, "{N} refused frames at once with a burst of {burst}");
    let allowance = u64::from(burst) + (f64::from(rate) * elapsed).ceil() as u64;
    assert!(refused <= allowance, "{refused} looked at, allowance {allowance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_pass_an_ice_burst_and_refuse_a_flood() {
    // The node's own defaults for WebSocket limits, not the harness's raised ones.
    let node = TestNode::start_with(|s| {
        s.limits = LimitSettings { rest_per_minute: s.limits.rest_per_minute, ..LimitSettings::default() };
    })
    .await;
    let d = LimitSettings::default();
    let (_, room) = node.call().await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    b.join(&room).await;
    let bid = b.socket_id.clone();
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.join(&room).await;
    b.next_event("user-joined").await;
    let mut brx = pump(b);

    // Right after the join, 600 candidates at once (a mesh group call, several interfaces).
    const ICE: u64 = 600;
    for seq in 0..ICE {
        let candidate = json!({"candidate": format!("candidate:{seq} 1 udp 2122260223 10.0.{}.{} 54321 typ host",
            seq / 250, seq % 250), "sdpMid": "0", "sdpMLineIndex": 0, "seq": seq});
        let frame = json!({"event": "ice-candidate", "data": {"candidate": candidate, "to": bid}});
        a.ws.feed(Message::text(frame.to_string())).await.unwrap();
    }
    a.ws.flush().await.unwrap();
    for seq in 0..ICE {
        let v = recv(&mut brx).await;
        assert_eq!(v["event"], "ice-candidate", "{v}");
        assert_eq!(v["data"]["candidate"]["seq"], seq, "{v}");
    }
    // a's next frame answers its next request: nothing (no RATE_LIMITED) was queued before.
    a.send("call-ended", json!({"roomId": "fence"})).await;
    a.expect_error("FORBIDDEN").await;

    // A flood of 60 KB frames that are not JSON: refused with BAD_REQUEST only as far as
    // the byte budget goes, RATE_LIMITED beyond.
    const FLOOD: u64 = 1000;
    const SIZE: usize = 60_000;
    let t0 = Instant::now();
    let (mut sink, mut stream) = a.ws.split();
    let sender = tokio::spawn(async move {
        let junk = "x".repeat(SIZE);
        for _ in 0..FLOOD {
            sink.feed(Message::text(junk.clone())).await?;
        }
        sink.flush().await
    });
    let (mut limited, mut refused) = (0u64, 0u64);
    while limited + refused < FLOOD {
        let msg = tokio::time::timeout(WAIT, stream.next()).await.expect("an answer per frame");
        let Some(Ok(Message::Text(t))) = msg else { panic!("socket ended: {msg:?}") };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["data"]["code"].as_str() {
            Some("RATE_LIMITED") => limited += 1,
            Some("BAD_REQUEST") => refused += 1,
            _ => panic!("{v}"),
        }
    }
    tokio::time::timeout(WAIT, sender).await.expect("all sent").unwrap().expect("a stays connected");
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(limited >= 1, "{} MB at once", FLOOD * SIZE as u64 / 1_000_000);
    let bytes = d.ws_burst_bytes as f64 + f64::from(d.ws_bytes_per_sec) * elapsed;
    let allowance = (bytes / SIZE as f64).ceil() as u64;
    assert!(refused <= allowance, "{refused} frames of {SIZE} bytes looked at, allowance {allowance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list() {
    let node = TestNode::start_with(|s| {
        s.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let mut req = node.ws_url(&client_token()).into_client_request().unwrap();
    req.headers_mut().insert("origin", HeaderValue::from_static("https://evil.example"));
    let (status, body) = refused(req).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "ORIGIN_NOT_ALLOWED", "{body}");

    let mut req = node.ws_url(&client_token()).into_client_request().unwrap();
    req.headers_mut().insert("origin", HeaderValue::from_static("https://app.example"));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .expect("allowed origin connects");
    let first = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    let Some(Ok(Message::Text(t))) = first else { panic!("{first:?}") };
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["event"], "connected", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_then_frees_a_slot() {
    let node = TestNode::start_with(|s| s.limits.max_connections = 2).await;
    let c1 = WsClient::connect(&node, &client_token()).await;
    let mut c2 = WsClient::connect(&node, &psy_token()).await;
    let (status, body) = refused(node.ws_url(&admin())).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "CONNECTION_LIMIT", "{body}");

    // Close c1 and wait until the server has dropped it.
    let mut ws = c1.ws;
    let _ = ws.close(None).await;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "server closes after the client's close");

    // The slot frees once the server notices; retry, bounded in count and time.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut c3 = None;
    for _ in 0..200 {
        match tokio_tungstenite::connect_async(node.ws_url(&admin())).await {
            Ok((ws, _)) => {
                c3 = Some(ws);
                break;
            }
            Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 503),
            Err(e) => panic!("{e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
    let ws = c3.expect("a new connection is accepted after one closed");
    let mut c3 = WsClient::unstarted(ws);
    c3.next_event("connected").await;
    // c2 was never disturbed.
    let (_, room) = node.call().await;
    c2.join(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_without_hurting_the_sender() {
    // A small queue, so that the slow reader overflows soon; still more than the intake
    // (the refusals the sender can be owed at once). Its seat then waits a short resume
    // window (PROTOCOL.md section 6) and leaves with reason timeout.
    let node = TestNode::start_with(|s| {
        s.resume.window_ms = 300;
        s.limits.outbound_queue = 2 * signalgrid_actors::intake::INTAKE;
        s.limits.ws_messages_per_sec = 1_000_000;
        s.limits.ws_burst = 1_000_000;
        s.limits.ws_bytes_per_sec = 1 << 30;
        s.limits.ws_burst_bytes = 1 << 30;
    })
    .await;
    let (_, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    // From here on, a does not read its socket.
    let aid = a.socket_id.clone();
    let bid = b.socket_id.clone();
    let (mut sink, mut stream) = b.ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let (aid, stop) = (aid.clone(), stop.clone());
        async move {
            let pad = "x".repeat(32 * 1024);
            let mut sent = 0;
            while sent < 2000 && !stop.load(Ordering::Acquire) {
                let c = json!({"event": "ice-candidate",
                    "data": {"candidate": {"seq": sent, "pad": pad}, "to": aid}});
                sink.send(Message::text(c.to_string())).await?;
                sent += 1;
            }
            Ok::<_, WsError>((sink, sent))
        }
    });
    // b keeps reading: the node must disconnect a (b hears it is reconnecting), and once
    // a's window is over, b sees it leave.
    let mut others = 0;
    let mut reconnecting = false;
    loop {
        let msg = tokio::time::timeout(WAIT * 2, stream.next())
            .await
            .expect("b never saw user-left for the slow reader")
            .expect("b's socket ended")
            .expect("b's socket failed");
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["event"] == "user-reconnecting" {
            assert_eq!(v["data"]["socketId"], aid.as_str(), "{v}");
            reconnecting = true;
            continue;
        }
        if v["event"] == "user-left" {
            assert_eq!(v["data"]["socketId"], aid.as_str(), "{v}");
            assert_eq!(v["data"]["reason"], "timeout", "{v}");
            assert!(reconnecting, "user-reconnecting came first");
            break;
        }
        // Relays sent after a left are refused.
        assert_eq!(v["data"]["code"], "PEER_NOT_FOUND", "{v}");
        others += 1;
        assert!(others <= 2000, "more frames than b sent");
    }
    stop.store(true, Ordering::Release);
    // b goes on reading until its sender has stopped: frames it sent before the stop are
    // still on their way and each earns a refusal. Were b to stop reading, its own queue
    // would overflow and the node would rightly drop b as a slow reader.
    let mut sender = sender;
    let (sink, sent) = tokio::time::timeout(WAIT * 3, async {
        loop {
            tokio::select! {
                done = &mut sender => break done.unwrap().expect("b was not disconnected"),
                msg = stream.next() => {
                    let msg = msg.expect("b's socket ended").expect("b's socket failed");
                    if let Message::Text(t) = msg {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        assert_eq!(v["data"]["code"], "PEER_NOT_FOUND", "{v}");
                    }
                }
            }
        }
    })
    .await
    .expect("b's sends never block");
    assert!(sent >= 1);

    // b is still connected and can join again.
    let mut b = WsClient::unstarted(sink.reunite(stream).unwrap());
    b.socket_id = bid.clone();
    b.send("join-room", json!({"roomId": room})).await;
    let mut bounded = 0;
    let j = loop {
        let v = b.next().await;
        if v["event"] == "room-joined" {
            break v["data"].clone();
        }
        assert_eq!(v["data"]["code"], "PEER_NOT_FOUND", "{v}");
        bounded += 1;
        assert!(bounded <= 2000);
    };
    let ids: Vec<&Value> = j["participants"].as_array().unwrap().iter().map(|p| &p["socketId"]).collect();
    assert_eq!(ids, vec![&Value::from(bid)]);

    let slow = metric(&node, "signalgrid_slow_consumer_disconnects_total").await;
    assert!(slow.is_some_and(|v| v >= 1.0), "{slow:?}");
    // a's socket was closed by the node, which says why once a reads again.
    assert_eq!(a.closed().await.0, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_answers_pings_is_closed_and_can_resume() {
    let node = TestNode::start_with(|s| s.limits.heartbeat_ms = 200).await;
    let (_, room) = node.call().await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    b.join(&room).await;
    let bid = b.socket_id.clone();
    let mut brx = pump(b); // b keeps reading, so it answers pings
    let mut a = WsClient::connect(&node, &client_token()).await;
    let j = a.join(&room).await;
    assert_eq!(j["participants"].as_array().unwrap().len(), 2, "{j}");
    // From here on, a does not read its socket, so it answers no ping.
    let uj = recv(&mut brx).await;
    assert_eq!(uj["event"], "user-joined", "{uj}");
    assert_eq!(uj["data"]["socketId"], a.socket_id.as_str());
    // A heartbeat timeout starts the resume window (PROTOCOL.md section 6): b hears that a
    // is reconnecting, not that it left.
    let away = recv(&mut brx).await;
    assert_eq!(away["event"], "user-reconnecting", "{away}");
    assert_eq!(away["data"], json!({"socketId": a.socket_id, "userId": "client-1"}));
    // a's socket was closed by the server (why: when a reads again); b, which answers pings,
    // is still in.
    let (code, frames) = a.closed().await;
    assert_eq!(code, Some(1008));
    assert_eq!(frames.last().unwrap()["data"]["code"], "HEARTBEAT_TIMEOUT", "{frames:?}");
    // a comes back with its seat: same socket, b hears it is back.
    let seat = a.seat();
    let c = WsClient::resume(&ws_base(&node), &seat).await;
    assert_eq!(c.hello["resumed"], true, "{}", c.hello);
    assert_eq!(c.socket_id, seat.socket_id);
    let back = recv(&mut brx).await;
    assert_eq!(back["event"], "user-reconnected", "{back}");
    assert_eq!(back["data"]["socketId"], seat.socket_id.as_str());
    let _ = bid;
}
