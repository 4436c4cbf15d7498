//! Calls end by themselves (PROTOCOL.md section 8, last bullet), on real nodes with a short
//! `rooms.empty_timeout_ms`: a call whose members all closed their sockets ends at the last
//! leave, once (session Completed, one `call_end` audit entry with reason `empty`, one
//! `call.ended` webhook with `endedBy: null` at a real receiver); a member who rejoins keeps
//! it going; a seat away in its resume window holds it open; the session's window ending
//! ends it with reason `window_end`; across two nodes it ends once; a call held wholly by a
//! node killed with kill -9 is ended by the survivor, and still once when the killed node
//! comes back at once under the same id. Runs on the embedded store, or on MongoDB with
//! SIGNALGRID_TEST_STORE=mongo.

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;
#[path = "common/proc.rs"]
mod proc;
#[path = "common/receiver.rs"]
mod receiver;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cluster_support::{node_with, NatsServer};
#[allow(unused_imports)]
use common::*;
use receiver::{Received, Receiver};
use serde_json::{json, Value};
use signalgrid::Settings;
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::{AuditAction, Session, SessionStatus};

/// The empty timeout of these tests (ms).
const TIMEOUT_MS: u64 = 1_500;

fn quick(s: &mut Settings, hook: &str) {
    s.rooms.empty_timeout_ms = TIMEOUT_MS;
    s.webhooks.urls = vec![hook.to_owned()];
    s.webhooks.secret = Some("whsec-auto-end-0123456789".into());
    s.webhooks.retry_initial_ms = 50;
    s.webhooks.retry_max_ms = 200;
    s.webhooks.poll_ms = 50;
}

fn app_store(n: &TestNode) -> Arc<dyn Store> {
    n.server.as_ref().unwrap().app.store.clone()
}

/// Waits (bounded: three `WAIT`s) until the session's call has ended; None if it did not.
async fn wait_ended(store: &Arc<dyn Store>, id: &str) -> Option<Session> {
    let wait = async {
        loop {
            let s = store.session(id).await.unwrap().unwrap();
            if s.video_call_ended.is_some() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT * 3, wait).await.ok()
}

/// Waits (bounded) until the session's call has ended; returns the session.
async fn ended(store: &Arc<dyn Store>, id: &str) -> Session {
    wait_ended(store, id).await.expect("the call ends by itself")
}

/// As `ended`, and if the call does not end, fails with what the survivor sees: the open
/// calls with their empty times, and the room's shared membership.
async fn ended_or_explain(survivor: &TestNode, store: &Arc<dyn Store>, id: &str, room: &str) -> Session {
    if let Some(s) = wait_ended(store, id).await {
        return s;
    }
    let open = store.open_calls(10).await;
    let app = &survivor.server.as_ref().unwrap().app;
    let members = app.node.ctx().ports.membership.snapshot(&room.into()).await;
    panic!("the call did not end by itself: open calls {open:?}; membership of {room}: {members:?}")
}

/// The `call_end` entries of the session's audit trail, once there is one (audit entries
/// are written in the background, after the end).
async fn call_ends(store: &Arc<dyn Store>, id: &str) -> Vec<Value> {
    let wait = async {
        loop {
            let trail = store.audit_trail(id).await.unwrap();
            let ends: Vec<Value> =
                trail.into_iter().filter(|e| e.action == AuditAction::CallEnd).map(|e| e.metadata).collect();
            if !ends.is_empty() {
                return ends;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("a call_end audit entry")
}

fn of_kind(log: &[Received], kind: &str) -> Vec<Value> {
    log.iter().filter(|r| r.ok() && r.kind() == kind).map(|r| r.json()).collect()
}

fn at(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// Checks one automatic end with `reason`: Completed, one audit entry, one `call.ended`
/// (after the room's events are delivered) with `endedBy: null` and the stored end.
async fn check_once(store: &Arc<dyn Store>, rx: &Receiver, s: &Session, reason: &str) {
    assert_eq!(s.status, SessionStatus::Completed);
    let ends = call_ends(store, &s.id).await;
    assert_eq!(ends.len(), 1, "one call_end entry: {ends:?}");
    assert_eq!(ends[0]["reason"], reason, "{ends:?}");
    let log = rx.until("call.ended", |l| l.iter().any(|r| r.ok() && r.kind() == "call.ended")).await;
    let hooks = of_kind(&log, "call.ended");
    assert_eq!(hooks.len(), 1, "{log:#?}");
    let d = &hooks[0]["data"];
    assert_eq!(d["endedBy"], Value::Null);
    assert_eq!(d["sessionId"], s.id.as_str());
    assert_eq!(at(&d["endedAt"]), s.video_call_ended.unwrap());
    assert_eq!(d["durationMinutes"], json!(s.call_duration.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_whose_members_closed_their_sockets_ends_at_the_last_leave_once() {
    let rx = Receiver::start().await;
    let url = rx.url();
    let node = TestNode::start_with(|s| quick(s, &url)).await;
    let store = app_store(&node);
    let (session, room) = node.call().await;
    let (a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    a.close().await;
    b.next_event("user-left").await;
    let before_last = chrono::Utc::now();
    b.close().await;

    let s = ended(&store, &session).await;
    check_once(&store, &rx, &s, "empty").await;
    let log = rx.until("room.finished", |l| l.iter().any(|r| r.kind() == "room.finished")).await;
    let finished = at(&of_kind(&log, "room.finished")[0]["createdAt"]);
    let end = s.video_call_ended.unwrap();
    // The moment the last member left (when the room finished), not when the timeout ran out.
    assert!(end >= before_last - chrono::Duration::milliseconds(1), "{end} before the last close {before_last}");
    assert!((end - finished).num_milliseconds().abs() < i64::try_from(TIMEOUT_MS / 2).unwrap(), "{end} vs {finished}");
    assert_eq!(s.call_duration, Some(0));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_who_rejoins_keeps_the_call_going() {
    let rx = Receiver::start().await;
    let url = rx.url();
    let node = TestNode::start_with(|s| quick(s, &url)).await;
    let store = app_store(&node);
    let (session, room) = node.call().await;
    // A second call, emptied after the first one's rejoin: its end is the test's clock (the
    // empty timeout has passed for the first call's emptiness too when it comes).
    let other = SessionSpec { client: "client-2".into(), psychologist: "psy-2".into(), ..SessionSpec::default() };
    let other_id = node.create_session(&other).await["id"].as_str().unwrap().to_owned();
    let other_room = node.room_for(&other_id, "client-2").await;
    let (a, b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let mut c = WsClient::connect(&node, &token("client-2", signalgrid_actors::identity::Role::Client)).await;
    c.join(&other_room).await;
    a.close().await;
    b.close().await;
    rx.until("the room emptied", |l| l.iter().any(|r| r.kind() == "room.finished")).await;
    // At once back in the room.
    let mut back = WsClient::connect(&node, &client_token()).await;
    back.join(&room).await;
    let rejoined = chrono::Utc::now();
    c.close().await;
    let clock = ended(&store, &other_id).await;
    assert_eq!(call_ends(&store, &other_id).await[0]["reason"], "empty");

    let s = store.session(&session).await.unwrap().unwrap();
    assert_eq!(s.video_call_ended, None, "the first call went on: {s:?}");
    // Still going: a host joins and the rejoined client hears of it.
    let mut p = WsClient::connect(&node, &psy_token()).await;
    p.join(&room).await;
    back.next_event("user-joined").await;
    p.close().await;
    back.close().await;
    let s = ended(&store, &session).await;
    assert!(s.video_call_ended.unwrap() >= clock.video_call_ended.unwrap().max(rejoined), "{s:?}");
    assert_eq!(call_ends(&store, &session).await.len(), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seat_away_in_its_resume_window_holds_the_call_open() {
    const WINDOW_MS: u64 = 3 * TIMEOUT_MS;
    let rx = Receiver::start().await;
    let url = rx.url();
    let node = TestNode::start_with(|s| {
        quick(s, &url);
        // Longer than the empty timeout: an away seat that did not count would let it end.
        s.resume.window_ms = WINDOW_MS;
    })
    .await;
    let store = app_store(&node);
    let (session, room) = node.call().await;
    let (a, mut b) = pair_in_room(&ws_base(&node), &ws_base(&node), &room).await;
    let dropped = chrono::Utc::now();
    a.drop_socket();
    b.next_event("user-reconnecting").await;
    b.close().await;
    // The away seat counted as a member until its window ran out (`user-left` timeout).
    let s = ended(&store, &session).await;
    let end = s.video_call_ended.unwrap();
    let window = chrono::Duration::milliseconds(i64::try_from(WINDOW_MS).unwrap());
    assert!(end >= dropped + window, "ended at {end}, before the away seat's window ran out ({dropped} + window)");
    check_once(&store, &rx, &s, "empty").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_end_of_the_sessions_window_ends_the_call() {
    let rx = Receiver::start().await;
    let url = rx.url();
    let node = TestNode::start_with(|s| {
        quick(s, &url);
        s.rooms.grace_minutes = 0;
    })
    .await;
    let store = app_store(&node);
    // One minute long, begun 58 s ago: its window ends in about 2 s, with both still in.
    let date =
        DateTime::from_timestamp_millis((Utc::now() - chrono::Duration::seconds(58)).timestamp_millis()).unwrap();
    let mut body = SessionSpec { duration: 1, ..SessionSpec::default() }.body();
    body["sessionDate"] = json!(date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let res = node.post("/api/sessions", Some(&admin())).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let session = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let room = node.room_for(&session, "client-1").await;
    let mut a = WsClient::connect(&node, &client_token()).await;
    a.join(&room).await;
    let mut b = WsClient::connect(&node, &psy_token()).await;
    b.join(&room).await;
    for c in [&mut a, &mut b] {
        // `session-ending` warnings come first.
        let removed = loop {
            let f = c.next().await;
            if f["event"] == "error" {
                break f;
            }
        };
        assert_eq!(removed["data"]["code"], "OUTSIDE_TIME_WINDOW", "{removed}");
    }
    let s = ended(&store, &session).await;
    assert_eq!(s.video_call_ended, Some(date + chrono::Duration::minutes(1)), "ended at the window's end");
    check_once(&store, &rx, &s, "window_end").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_across_two_nodes_ends_once() {
    let rx = Receiver::start().await;
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let (url, hook) = (nats.url(), rx.url());
    let start = |id: &'static str| node_with(&url, "ae", &data, id, |s| quick(s, &hook));
    let n1 = start("n1").await;
    let n2 = start("n2").await;
    let store = app_store(&n1);
    let (session, room) = n1.call().await;
    let (a, mut b) = pair_in_room(&ws_base(&n1), &ws_base(&n2), &room).await;
    assert_eq!((a.node_id.as_str(), b.node_id.as_str()), ("n1", "n2"));
    a.close().await;
    b.next_event("user-left").await;
    b.close().await;
    let s = ended(&store, &session).await;
    check_once(&store, &rx, &s, "empty").await;
    // Both nodes swept after the end too: still one of each.
    let later = rx.until("room.finished", |l| l.iter().any(|r| r.kind() == "room.finished")).await;
    assert_eq!(of_kind(&later, "call.ended").len(), 1);
    assert_eq!(call_ends(&store, &session).await.len(), 1);
    n2.stop().await;
    n1.stop().await;
}

/// A call held wholly by a node process that is killed with kill -9: the survivor's sweep
/// of the dead node empties the room, and the call ends once; `restart`: the killed node
/// comes back at once under the same id (and ends calls too).
async fn a_call_on_a_killed_node_ends_once(restart: bool) {
    const WINDOW_MS: &str = "1000";
    let rx = Receiver::start().await;
    let nats = NatsServer::start();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let mongo_db = common::mongo::nodes_on_mongo().then(|| common::mongo::database_for(data.path()));
    let survivor = node_with(&nats.url(), "k9", &data, "survivor", |s| {
        s.resume.window_ms = 1_000;
        quick(s, &rx.url());
    })
    .await;
    let victim_cmd = || {
        let mut c = proc::cmd(data.path());
        c.env("SIGNALGRID_PRESENCE_MS", "200")
            .env("SIGNALGRID_DEAD_AFTER_MS", "1500")
            .env(common::resume::WINDOW_ENV, WINDOW_MS)
            .env("SIGNALGRID_EMPTY_TIMEOUT_MS", TIMEOUT_MS.to_string())
            .env("SIGNALGRID_WEBHOOK_URLS", rx.url())
            .env("SIGNALGRID_WEBHOOK_SECRET", "whsec-auto-end-0123456789")
            .env("SIGNALGRID_WEBHOOK_POLL_MS", "50");
        if let Some(db) = &mongo_db {
            c.env("SIGNALGRID_MONGODB_URI", common::mongo::shared().uri()).env("SIGNALGRID_MONGODB_DATABASE", db);
        }
        proc::NodeProc::serve_with(c, &["--nats-url", &nats.url(), "--cluster", "k9", "--node-id", "victim"])
    };
    let mut victim = victim_cmd();
    let store = app_store(&survivor);
    let (session, room) = survivor.call().await;
    let base = format!("ws://{}", victim.addr);
    let (a, b) = pair_in_room(&base, &base, &room).await;
    assert_eq!((a.node_id.as_str(), b.node_id.as_str()), ("victim", "victim"));
    let killed = chrono::Utc::now();
    victim.kill9();
    let again = restart.then(victim_cmd);
    let s = ended_or_explain(&survivor, &store, &session, &room).await;
    assert!(s.video_call_ended.unwrap() >= killed, "{s:?}");
    check_once(&store, &rx, &s, "empty").await;
    drop((a, b, again));
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_on_a_node_killed_with_kill_9_is_ended_by_the_survivor() {
    a_call_on_a_killed_node_ends_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_on_a_node_killed_and_restarted_at_once_ends_once() {
    a_call_on_a_killed_node_ends_once(true).await;
}
