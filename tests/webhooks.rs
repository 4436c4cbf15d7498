//! Webhooks (PROTOCOL.md section 7) against a real receiver on 127.0.0.1
//! (tests/common/receiver.rs): a call across two nodes of a cluster (real nats-server, one
//! shared store) gives exactly the expected events, in order, once each, every one signed;
//! a receiver that fails, then is down, then comes back gets every event, in order; events
//! waiting when a node process is killed (kill -9) arrive after its restart. Runs on the
//! embedded store, or on MongoDB with SIGNALGRID_TEST_STORE=mongo.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;
#[path = "common/receiver.rs"]
mod receiver;

use std::sync::Arc;
use std::time::Duration;

use cluster_support::{node_with, NatsServer};
#[allow(unused_imports)]
use common::*;
use receiver::{Received, Receiver};
use serde_json::{json, Value};
use signalgrid::Settings;
use signalgrid_actors::ports::Store;

const HOOK_SECRET: &str = "whsec-test-0123456789abcdef";

fn hooks(s: &mut Settings, url: &str) {
    s.webhooks.urls = vec![url.to_owned()];
    s.webhooks.secret = Some(HOOK_SECRET.into());
    s.webhooks.retry_initial_ms = 50;
    s.webhooks.retry_max_ms = 200;
    s.webhooks.poll_ms = 50;
    s.webhooks.timeout_ms = 2_000;
}

fn kinds(log: &[Received]) -> Vec<String> {
    log.iter().map(Received::kind).collect()
}

fn acked_kinds(log: &[Received]) -> Vec<String> {
    kinds(&log.iter().filter(|r| r.ok()).cloned().collect::<Vec<_>>())
}

/// The events of one call in which the client joins, then the psychologist, then the client
/// leaves, then the psychologist (`ended`: with a `call-ended` before the leaves).
fn call_events(ended: bool) -> Vec<String> {
    let mut v = vec!["room.started", "participant.joined", "call.started", "participant.joined"];
    if ended {
        v.push("call.ended");
    }
    v.extend(["participant.left", "participant.left", "room.finished"]);
    v.into_iter().map(str::to_owned).collect()
}

/// Every event is signed, well formed, and acknowledged once: each id's requests are
/// failures followed by exactly one 2xx, with the same body every time.
fn check_deliveries(log: &[Received]) {
    for r in log {
        assert!(r.verifies(HOOK_SECRET), "signature does not verify: {r:?}");
        let v = r.json();
        assert_eq!(v["id"], r.id.as_str(), "x-signalgrid-event-id is the body's id");
        assert!(v["createdAt"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
        assert!(v["data"].is_object());
    }
    let mut ids: Vec<&str> = log.iter().map(|r| r.id.as_str()).collect();
    ids.dedup();
    for id in ids {
        let tries: Vec<&Received> = log.iter().filter(|r| r.id == id).collect();
        let oks = tries.iter().filter(|r| r.ok()).count();
        assert_eq!(oks, 1, "event {id} acknowledged {oks} times: {tries:#?}");
        assert!(tries.last().unwrap().ok(), "nothing after the acknowledged attempt of {id}");
        assert!(tries.iter().all(|r| r.body == tries[0].body), "retries send the same body");
    }
}

/// Waits (bounded) until the store holds `n` waiting events.
async fn waiting(store: &Arc<dyn Store>, n: u64) {
    let wait = async {
        while store.webhook_stats().await.unwrap().waiting != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(WAIT * 3, wait).await.is_err() {
        panic!("the webhook queue never held {n}: {:?}", store.webhook_stats().await);
    }
}

async fn drained(store: &Arc<dyn Store>) {
    waiting(store, 0).await;
}

fn app_store(n: &TestNode) -> Arc<dyn Store> {
    n.server.as_ref().unwrap().app.store.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_across_two_nodes_gives_each_event_once_in_order() {
    let rx = Receiver::start().await;
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let (url, hook) = (nats.url(), rx.url());
    let start = |id: &'static str| node_with(&url, "wh", &data, id, |s| hooks(s, &hook));
    let n1 = start("n1").await;
    let n2 = start("n2").await;
    let (session, room) = n1.call().await;

    let mut a = WsClient::connect(&n1, &client_token()).await;
    a.join(&room).await;
    rx.until("the call's start", |l| l.len() >= 3).await;
    let mut b = WsClient::connect(&n2, &psy_token()).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    rx.until("the second join", |l| l.len() >= 4).await;
    a.send("call-ended", json!({ "roomId": room })).await;
    a.next_event("call-ended").await;
    b.next_event("call-ended").await;
    rx.until("call.ended", |l| l.len() >= 5).await;
    a.send("leave-room", json!({ "roomId": room })).await;
    b.next_event("user-left").await;
    rx.until("the first leave", |l| l.len() >= 6).await;
    b.send("leave-room", json!({ "roomId": room })).await;
    rx.until("room.finished", |l| l.iter().any(|r| r.kind() == "room.finished")).await;
    drained(&app_store(&n1)).await;

    let log = rx.log();
    assert_eq!(kinds(&log), call_events(true), "{log:#?}");
    check_deliveries(&log);
    let data: Vec<Value> = log.iter().map(|r| r.json()["data"].clone()).collect();
    for d in &data {
        assert_eq!(d["sessionId"], session.as_str());
        assert_eq!(d["roomId"], room.as_str());
    }
    let seat = |d: &Value| (d["socketId"].clone(), d["userId"].clone(), d["role"].clone(), d["nodeId"].clone());
    assert_eq!(seat(&data[1]), (json!(a.socket_id), json!("client-1"), json!("client"), json!("n1")));
    assert_eq!(seat(&data[3]), (json!(b.socket_id), json!("psy-1"), json!("psychologist"), json!("n2")));
    assert!(data[2]["startedAt"].is_string());
    assert_eq!(data[4]["endedBy"], "client-1");
    assert!(data[4]["durationMinutes"].is_i64() && data[4]["endedAt"].is_string());
    assert_eq!((data[5]["socketId"].clone(), data[5]["reason"].clone()), (json!(a.socket_id), json!("left")));
    assert_eq!((data[6]["socketId"].clone(), data[6]["reason"].clone()), (json!(b.socket_id), json!("left")));
    for d in [&data[5], &data[6], &data[7]] {
        assert!(d["durationSeconds"].is_i64(), "{d}");
    }
    a.close().await;
    b.close().await;
    n2.stop().await;
    n1.stop().await;
}

/// A call on one node, each step awaited; returns the socket ids (client, psychologist).
async fn call_on(base: &str, room: &str) -> (String, String) {
    let mut a = WsClient::connect_url(&format!("{base}/ws?token={}", client_token())).await;
    let mut b = WsClient::connect_url(&format!("{base}/ws?token={}", psy_token())).await;
    a.join(room).await;
    // The client's actor has finished its join (the call's start recorded, `call.started`
    // emitted) once it answers its next frame.
    a.send("join-room", json!({ "roomId": "no-such-room" })).await;
    a.expect_error("SESSION_NOT_FOUND").await;
    b.join(room).await;
    a.next_event("user-joined").await;
    a.send("leave-room", json!({ "roomId": room })).await;
    b.next_event("user-left").await;
    let ids = (a.socket_id.clone(), b.socket_id.clone());
    b.send("leave-room", json!({ "roomId": room })).await;
    // Both close cleanly afterwards; they are in no room any more.
    a.close().await;
    b.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_then_absent_receiver_gets_every_event_in_order_when_back() {
    let rx = Receiver::start().await;
    rx.answer(500);
    let url = rx.url();
    let node = TestNode::start_with(|s| hooks(s, &url)).await;
    let (_, room) = node.call().await;
    call_on(&ws_base(&node), &room).await;
    // Only the room's first event is attempted while it is refused: the others wait for it.
    let log = rx.until("three refused attempts", |l| l.len() >= 3).await;
    assert!(log.iter().all(|r| r.kind() == "room.started" && !r.ok()), "{log:#?}");

    rx.down().await;
    metric_until(node.addr, signalgrid::webhooks::FAILED_ATTEMPTS, "reason=\"connect\"", |v| v >= 1.0).await;
    waiting(&app_store(&node), 7).await;

    rx.answer(200);
    rx.up();
    rx.until("every event", |l| l.iter().filter(|r| r.ok()).count() >= 7).await;
    drained(&app_store(&node)).await;
    let log = rx.log();
    assert_eq!(acked_kinds(&log), call_events(false), "{log:#?}");
    check_deliveries(&log);
    metric_until(node.addr, signalgrid::webhooks::DELIVERED, "", |v| v >= 7.0).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_waiting_when_a_node_is_killed_arrive_after_its_restart() {
    let rx = Receiver::start().await;
    rx.answer(503);
    let dir = tempfile::tempdir().unwrap();
    let mongo_db = common::mongo::nodes_on_mongo().then(|| common::mongo::database_for(dir.path()));
    let bin = || {
        let mut c = proc::cmd(dir.path());
        c.env("SIGNALGRID_WEBHOOK_URLS", rx.url())
            .env("SIGNALGRID_WEBHOOK_SECRET", HOOK_SECRET)
            .env("SIGNALGRID_WEBHOOK_RETRY_INITIAL_MS", "50")
            .env("SIGNALGRID_WEBHOOK_RETRY_MAX_MS", "200")
            .env("SIGNALGRID_WEBHOOK_POLL_MS", "50")
            // The killed node's claim (this times the URLs, plus 5 s) runs out sooner.
            .env("SIGNALGRID_WEBHOOK_TIMEOUT_MS", "1000");
        if let Some(db) = &mongo_db {
            c.env("SIGNALGRID_MONGODB_URI", common::mongo::shared().uri()).env("SIGNALGRID_MONGODB_DATABASE", db);
        }
        c
    };
    // The test's own view of the node's store (the same file, or the same database).
    let mut s = common::settings(dir.path());
    if let Some(db) = &mongo_db {
        s.store.mongodb_uri = Some(common::mongo::shared().uri());
        s.store.mongodb_database = db.clone();
    }

    let mut node = proc::NodeProc::serve(bin());
    let base = format!("http://{}", node.addr);
    let http = reqwest::Client::new();
    let session: Value = http
        .post(format!("{base}/api/sessions"))
        .header("x-auth-token", admin())
        .json(&SessionSpec::default().body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = session["id"].as_str().unwrap();
    let room: Value = http
        .post(format!("{base}/api/video-calls/generate-room/{sid}"))
        .header("x-auth-token", client_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["roomId"].as_str().unwrap().to_owned();
    call_on(&format!("ws://{}", node.addr), &room).await;
    let store = signalgrid::store::open(&s).await.unwrap();
    let wait = async {
        while store.webhook_stats().await.unwrap().waiting != 7 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(WAIT, wait).await.is_err() {
        let lines: Vec<String> = node.stderr.try_iter().collect();
        panic!("not queued: {:?}; node said {lines:#?}; receiver {:#?}", store.webhook_stats().await, rx.log());
    }
    rx.until("a refused attempt", |l| !l.is_empty()).await;
    node.kill9();

    rx.answer(200);
    let node = proc::NodeProc::serve(bin());
    rx.until("every event", |l| l.iter().filter(|r| r.ok()).count() >= 7).await;
    drained(&store).await;
    let log = rx.log();
    assert_eq!(acked_kinds(&log), call_events(false), "{log:#?}");
    check_deliveries(&log);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_seat_is_reconnecting_then_reconnected_and_a_timeout_is_a_leave() {
    let rx = Receiver::start().await;
    let url = rx.url();
    let node = TestNode::start_with(|s| {
        hooks(s, &url);
        s.resume.window_ms = 500;
    })
    .await;
    let (_, room) = node.call().await;
    let base = ws_base(&node);
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.join(&room).await;
    rx.until("the call's start", |l| l.len() >= 3).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    b.join(&room).await;
    a.next_event("user-joined").await;

    let seat = b.drop_socket();
    a.next_event("user-reconnecting").await;
    let b = WsClient::resume(&base, &seat).await;
    assert_eq!(b.hello["resumed"], true, "{}", b.hello);
    a.next_event("user-reconnected").await;
    rx.until("reconnected", |l| l.iter().any(|r| r.kind() == "participant.reconnected")).await;
    a.send("leave-room", json!({ "roomId": room })).await;
    rx.until("the first leave", |l| l.iter().any(|r| r.kind() == "participant.left")).await;
    // Lost again, and not resumed: the window runs out (`timeout`) and the room is empty.
    b.drop_socket();
    rx.until("room.finished", |l| l.iter().any(|r| r.kind() == "room.finished")).await;
    drained(&app_store(&node)).await;

    let log = rx.log();
    let want = [
        "room.started",
        "participant.joined",
        "call.started",
        "participant.joined",
        "participant.reconnecting",
        "participant.reconnected",
        "participant.left",
        "participant.reconnecting",
        "participant.left",
        "room.finished",
    ];
    assert_eq!(kinds(&log), want, "{log:#?}");
    check_deliveries(&log);
    let data: Vec<Value> = log.iter().map(|r| r.json()["data"].clone()).collect();
    for d in [&data[4], &data[5], &data[7], &data[8]] {
        assert_eq!(d["socketId"], seat.socket_id.as_str(), "{d}");
        assert_eq!(d["userId"], "psy-1");
    }
    assert_eq!(data[8]["reason"], "timeout");
    assert_ne!(log[4].id, log[7].id, "each absence is an event of its own");
    drop(a);
    node.stop().await;
}

/// The waiting room's events (PROTOCOL.md sections 7 and 10), in the room's stream: a client
/// who waits is `participant.waiting`; denied, `participant.denied`; waiting again and
/// admitted, `participant.admitted` followed by `participant.joined`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_admitted_and_denied_clients_are_events_of_the_room() {
    let rx = Receiver::start().await;
    let url = rx.url();
    let node = TestNode::start_with(|s| hooks(s, &url)).await;
    let mut body = SessionSpec::default().body();
    body["waitingRoom"] = json!(true);
    let res = node.post("/api/sessions", Some(&admin())).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let session = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let room = node.room_for(&session, "client-1").await;

    let mut host = WsClient::connect(&node, &psy_token()).await;
    host.join(&room).await;
    rx.until("the call's start", |l| l.len() >= 3).await;
    let mut client = WsClient::connect(&node, &client_token()).await;
    for admit in [false, true] {
        client.send("join-room", json!({ "roomId": room })).await;
        client.next_event("waiting").await;
        host.next_event("participant-waiting").await;
        if admit {
            host.send("admit", json!({ "socketId": client.socket_id })).await;
            client.next_event("room-joined").await;
            host.next_event("user-joined").await;
        } else {
            host.send("deny", json!({ "socketId": client.socket_id })).await;
            client.expect_error("ADMISSION_DENIED").await;
            host.next_event("user-left").await;
        }
    }
    client.send("leave-room", json!({ "roomId": room })).await;
    host.next_event("user-left").await;
    host.send("leave-room", json!({ "roomId": room })).await;
    rx.until("room.finished", |l| l.iter().any(|r| r.kind() == "room.finished")).await;
    drained(&app_store(&node)).await;

    let log = rx.log();
    let want = [
        "room.started",
        "participant.joined",
        "call.started",
        "participant.waiting",
        "participant.denied",
        "participant.waiting",
        "participant.admitted",
        "participant.joined",
        "participant.left",
        "participant.left",
        "room.finished",
    ];
    assert_eq!(kinds(&log), want, "{log:#?}");
    check_deliveries(&log);
    for r in &log[3..=8] {
        let d = &r.json()["data"];
        assert_eq!((d["roomId"].as_str(), d["sessionId"].as_str()), (Some(room.as_str()), Some(session.as_str())));
        assert_eq!((d["socketId"].as_str(), d["userId"].as_str()), (Some(client.socket_id.as_str()), Some("client-1")));
    }
    assert_eq!(log[7].json()["data"]["role"], "client", "the admitted client's join is a full participant.joined");
    assert_ne!(log[3].id, log[5].id, "each wait is an event of its own");
    client.close().await;
    host.close().await;
    node.stop().await;
}
