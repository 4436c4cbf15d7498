//! MongoDB going away while a call runs: REST answers 503 STORE_UNAVAILABLE, /readyz is
//! false, the call keeps relaying and can be ended, and the records MongoDB missed (call
//! end, audit entries) wait in the node's outbox until MongoDB is back (restarted on the
//! same port and storage), then are written: the session record ends up complete.
//! Also: MongoDB unreachable at start-up (an error, or a not-ready node that recovers).

mod common;

use std::time::Instant;

use common::mongo::{fresh_database, MongoServer};
use common::{client_token, psy_token, TestNode, WsClient, WAIT};
use serde_json::{json, Value};
use signalgrid::store::{MongoConfig, MongoStore};
use signalgrid_actors::ports::{Store, StoreError};
use signalgrid_actors::session::AuditAction;

/// The value of the outbox gauge on the node's /metrics.
async fn outbox_pending(node: &TestNode) -> f64 {
    let text = node.get("/metrics", None).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("signalgrid_store_outbox_pending "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(-1.0)
}

/// Sends `event` (payload under `key`) from one client to the other and checks it arrives.
async fn relay(from: &mut WsClient, to: &mut WsClient, event: &str, key: &str) {
    from.send(event, json!({ key: { "sdp": format!("{event}-sdp") }, "to": to.socket_id })).await;
    let got = to.next_event(event).await;
    assert_eq!(got["from"], from.socket_id.as_str(), "{got}");
    assert_eq!(got[key]["sdp"], format!("{event}-sdp"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_mid_call_then_outbox_drains() {
    let storage = tempfile::tempdir().unwrap();
    let mut mongo = MongoServer::start_in(storage.path());
    // Short server selection: each request while MongoDB is away fails within a second.
    let (uri, db) = (format!("{}?serverSelectionTimeoutMS=1000", mongo.uri()), fresh_database());
    let node = TestNode::start_with(|s| {
        s.store.mongodb_uri = Some(uri.clone());
        s.store.mongodb_database = db.clone();
    })
    .await;
    let (id, room) = node.call().await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    a.join(&room).await;
    b.join(&room).await;
    a.next_event("user-joined").await;
    relay(&mut a, &mut b, "offer", "offer").await;
    // The joins' records (start, accesses) are written after the joins are announced: wait
    // (bounded) until they are in, so that the outage below starts with a settled record.
    let deadline = Instant::now() + WAIT;
    loop {
        let s: Value = node
            .get(&format!("/api/sessions/{id}"), Some(&common::admin()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["accessCount"] == 2 && s["videoCallStarted"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "join records not written: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    mongo.kill();

    let res = node.get(&format!("/api/video-calls/can-join/{id}"), Some(&client_token())).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE", "{body}");
    let res = node.post(&format!("/api/video-calls/end/{id}"), Some(&psy_token())).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let ready = node.get("/readyz", None).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    // The call goes on without MongoDB, and can be ended.
    relay(&mut b, &mut a, "answer", "answer").await;
    relay(&mut a, &mut b, "ice-candidate", "candidate").await;
    a.send("call-ended", json!({ "roomId": room })).await;
    let ended_a = a.next_event("call-ended").await;
    let ended_b = b.next_event("call-ended").await;
    assert_eq!(ended_a, ended_b);
    assert_eq!(ended_a["endedBy"], "client-1", "{ended_a}");
    assert!(outbox_pending(&node).await >= 1.0, "the end waits in the outbox");

    mongo.restart();

    // Bounded wait for the outbox to drain (the node replays it on its own).
    let deadline = Instant::now() + WAIT * 2;
    while outbox_pending(&node).await != 0.0 {
        assert!(Instant::now() < deadline, "outbox did not drain");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = node.get("/readyz", None).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // The record, read back through a separate client.
    let dir = tempfile::tempdir().unwrap();
    let cfg = MongoConfig {
        uri: uri.clone(),
        database: db.clone(),
        data_dir: dir.path().into(),
        start_unready: false,
        outbox_max: 10,
    };
    let check = MongoStore::open(&cfg).await.unwrap();
    let s = check.session(&id).await.unwrap().unwrap();
    assert!(s.video_call_started.is_some() && s.video_call_ended.is_some(), "{s:?}");
    assert_eq!(s.call_duration, ended_a["duration"].as_i64(), "{s:?}");
    assert_eq!(s.status.as_str(), "Completed");
    assert_eq!(s.access_count, 2, "{s:?}");
    let trail = check.audit_trail(&id).await.unwrap();
    let actions: Vec<AuditAction> = trail.iter().map(|e| e.action).collect();
    assert!(actions.contains(&AuditAction::CallStart), "{actions:?}");
    let end = trail.iter().find(|e| e.action == AuditAction::CallEnd).expect("call_end audited");
    assert_eq!(end.metadata["via"], "call-ended");
    assert_eq!(end.user_id, "client-1");
    a.close().await;
    b.close().await;
}

/// A call end reaches MongoDB even when the node that hears it never saw the session (its
/// cache lost it, or another node ran the call): during the outage the caller hears 503,
/// the end waits in that node's outbox, and once MongoDB is back the record is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_for_a_session_this_node_never_saw_is_kept_through_an_outage() {
    let storage = tempfile::tempdir().unwrap();
    let mut mongo = MongoServer::start_in(storage.path());
    let db = fresh_database();
    let open = |dir: &std::path::Path| MongoConfig {
        uri: format!("{}?serverSelectionTimeoutMS=1000", mongo.uri()),
        database: db.clone(),
        data_dir: dir.to_owned(),
        start_unready: false,
        outbox_max: 10,
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Node A runs the call; node B has never read the session.
    let a = MongoStore::open(&open(dir_a.path())).await.unwrap();
    let b = MongoStore::open(&open(dir_b.path())).await.unwrap();
    let party = |id: &str| signalgrid_actors::session::Party { id: id.into(), name: id.into() };
    let session = a
        .create_session(signalgrid_actors::session::NewSession {
            client: party("c-outage"),
            psychologist: party("p-outage"),
            session_date: signalgrid_actors::session::now_ms(),
            duration_minutes: 50,
            session_type: signalgrid_actors::session::SessionType::Individual,
            payment_status: signalgrid_actors::session::PaymentStatus::Paid,
            status: signalgrid_actors::session::SessionStatus::Scheduled,
            waiting_room: false,
        })
        .await
        .unwrap();
    let started = chrono::Utc::now() - chrono::Duration::minutes(30);
    a.mark_started(&session.id, started).await.unwrap();

    mongo.kill();
    let ended = started + chrono::Duration::minutes(30);
    let err = b.mark_ended(&session.id, ended).await.expect_err("B cannot say how the call ended");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(b.outbox_pending(), 1, "the end waits in B's outbox");

    mongo.restart();
    let deadline = Instant::now() + WAIT * 2;
    while b.outbox_pending() != 0 {
        assert!(Instant::now() < deadline, "B's outbox did not drain");
        let _ = b.drain_outbox().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let s = a.session(&session.id).await.unwrap().unwrap();
    assert_eq!(s.video_call_ended.map(|t| t.timestamp_millis()), Some(ended.timestamp_millis()), "{s:?}");
    assert_eq!(s.call_duration, Some(30), "{s:?}");
    assert_eq!(s.status.as_str(), "Completed");
}

fn unreachable_cfg(port: u16, dir: &std::path::Path, start_unready: bool) -> MongoConfig {
    MongoConfig {
        uri: format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=500"),
        database: fresh_database(),
        data_dir: dir.to_owned(),
        start_unready,
        outbox_max: 10,
    }
}

#[tokio::test]
async fn unreachable_at_start_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let err = MongoStore::open(&unreachable_cfg(port, dir.path(), false)).await.err().expect("open fails");
    let StoreError::Unavailable(msg) = err else { panic!("unexpected {err:?}") };
    assert!(msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("unreachable"), "{msg}");
    let err = MongoStore::open(&unreachable_cfg(port, dir.path(), false)).await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_unready_becomes_ready_when_mongo_comes() {
    let storage = tempfile::tempdir().unwrap();
    let mut mongo = MongoServer::start_in(storage.path());
    let port = mongo.port;
    mongo.kill();
    let data = tempfile::tempdir().unwrap();
    let store = MongoStore::open(&unreachable_cfg(port, data.path(), true)).await.expect("starts not ready");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
    mongo.restart();
    let deadline = Instant::now() + WAIT * 2;
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "store never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn serve_exits_non_zero_when_mongo_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signalgrid"))
        .args(["--data-dir", data.path().to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .args(["--mongodb-uri", &format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=500")])
        .env("VIDEO_CALL_JWT_SECRET", "test-secret-signalgrid-0123456789")
        .env_remove("SIGNALGRID_MONGODB_URI")
        .output()
        .expect("run signalgrid");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable") && err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
