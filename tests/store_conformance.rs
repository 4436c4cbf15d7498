//! One conformance suite for the `Store` trait, run against every store: the embedded SQLite
//! store and the MongoDB store (on a real secantusd server, a fresh database per test).
//! Each case takes an `Arc<dyn Store>` and checks only what the trait promises.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use signalgrid_actors::ports::{EndOutcome, Store};
use signalgrid_actors::session::{
    now_ms, AuditAction, AuditEntry, NewSession, Party, PaymentStatus, SessionStatus, SessionType,
};
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, Rule};

/// A store under test and what must outlive it (its directory).
struct Subject {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn embedded() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = signalgrid::store::EmbeddedStore::open(dir.path()).unwrap();
    Subject { store: Arc::new(store), _dir: dir }
}

async fn mongo() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let cfg = signalgrid::store::MongoConfig {
        uri: common::mongo::shared().uri(),
        database: common::mongo::fresh_database(),
        data_dir: dir.path().to_owned(),
        start_unready: false,
        outbox_max: 1000,
    };
    let store = signalgrid::store::MongoStore::open(&cfg).await.expect("open the MongoDB store");
    Subject { store: Arc::new(store), _dir: dir }
}

fn new_session(client: &str, psy: &str, status: SessionStatus) -> NewSession {
    NewSession {
        client: Party { id: client.into(), name: format!("Name of {client}") },
        psychologist: Party { id: psy.into(), name: format!("Name of {psy}") },
        session_date: now_ms() + Duration::minutes(5),
        duration_minutes: 50,
        session_type: SessionType::Individual,
        payment_status: PaymentStatus::Paid,
        status,
        // Sessions of clients named `…-w` have a waiting room (`waiting_room_round_trips`).
        waiting_room: client.ends_with("-w"),
    }
}

fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

const UNKNOWN: &str = "507f1f77bcf86cd799439011";

async fn create_and_read(st: Arc<dyn Store>) {
    let n = new_session("5f0000000000000000000001", "psy-a", SessionStatus::Scheduled);
    let s = st.create_session(n.clone()).await.unwrap();
    assert_eq!(s.id.len(), 24);
    assert_eq!(s.client, n.client);
    assert_eq!(s.psychologist, n.psychologist);
    assert_eq!(s.session_date, ms(n.session_date));
    assert_eq!((s.duration_minutes, s.session_type, s.status), (50, SessionType::Individual, SessionStatus::Scheduled));
    assert_eq!(s.payment_status, PaymentStatus::Paid);
    assert_eq!(s.meeting_link, None);
    assert!(s.is_video_call && !s.recording_enabled);
    assert_eq!((s.video_call_started, s.video_call_ended, s.call_duration), (None, None, None));
    assert_eq!((s.recording_url.clone(), s.access_count), (None, 0));
    assert_eq!(st.session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(st.session(UNKNOWN).await.unwrap(), None);
    assert_eq!(st.session("not-an-id").await.unwrap(), None);
    assert_eq!(st.session_by_room("room-none").await.unwrap(), None);
}

async fn waiting_room_round_trips(st: Arc<dyn Store>) {
    let waits = st.create_session(new_session("c-wait-w", "p-wait", SessionStatus::Scheduled)).await.unwrap();
    assert!(waits.waiting_room);
    assert!(st.session(&waits.id).await.unwrap().unwrap().waiting_room);
    let plain = st.create_session(new_session("c-plain", "p-plain", SessionStatus::Scheduled)).await.unwrap();
    assert!(!st.session(&plain.id).await.unwrap().unwrap().waiting_room);
}

async fn room_is_set_once(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-room", "p-room", SessionStatus::Scheduled)).await.unwrap();
    let first = st.ensure_room(&s.id, "room-first").await.unwrap().unwrap();
    assert_eq!(first.meeting_link.as_deref(), Some("room-first"));
    let again = st.ensure_room(&s.id, "room-second").await.unwrap().unwrap();
    assert_eq!(again.meeting_link.as_deref(), Some("room-first"));
    assert_eq!(st.session_by_room("room-first").await.unwrap().map(|s| s.id), Some(s.id.clone()));
    assert_eq!(st.session_by_room("room-second").await.unwrap(), None);
    assert_eq!(st.ensure_room(UNKNOWN, "room-x").await.unwrap(), None);
    // Sessions without a room do not collide with each other (sparse uniqueness).
    let other = st.create_session(new_session("c-room2", "p-room2", SessionStatus::Scheduled)).await.unwrap();
    assert_eq!(st.session(&other.id).await.unwrap().unwrap().meeting_link, None);
}

async fn racing_rooms_agree(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-race", "p-race", SessionStatus::Scheduled)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (st, id) = (st.clone(), s.id.clone());
            tokio::spawn(async move { st.ensure_room(&id, &format!("room-race-{i}")).await })
        })
        .collect();
    let mut links = Vec::new();
    for t in tasks {
        links.push(t.await.unwrap().unwrap().unwrap().meeting_link.unwrap());
    }
    links.dedup();
    assert_eq!(links.len(), 1, "one room id for everyone: {links:?}");
}

async fn start_and_end(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-call", "p-call", SessionStatus::Scheduled)).await.unwrap();
    let t0 = now_ms();
    assert_eq!(st.mark_ended(&s.id, t0).await.unwrap(), Some(EndOutcome::NotStarted));
    let started = st.mark_started(&s.id, t0).await.unwrap().unwrap();
    assert_eq!((started.video_call_started, started.status), (Some(t0), SessionStatus::InProgress));
    let again = st.mark_started(&s.id, t0 + Duration::minutes(1)).await.unwrap().unwrap();
    assert_eq!(again.video_call_started, Some(t0), "the first start is kept");
    let end = t0 + Duration::minutes(45);
    let Some(EndOutcome::Ended(ended)) = st.mark_ended(&s.id, end).await.unwrap() else { panic!("not ended") };
    assert_eq!(
        (ended.video_call_ended, ended.call_duration, ended.status),
        (Some(end), Some(45), SessionStatus::Completed)
    );
    let later = st.mark_ended(&s.id, end + Duration::minutes(10)).await.unwrap();
    assert_eq!(later, Some(EndOutcome::Ended(ended.clone())), "the first end is kept");
    let restarted = st.mark_started(&s.id, end + Duration::minutes(11)).await.unwrap().unwrap();
    assert_eq!((restarted.status, restarted.video_call_started), (SessionStatus::Completed, Some(t0)));
    assert_eq!(st.session(&s.id).await.unwrap(), Some(ended));
    assert_eq!(st.mark_started(UNKNOWN, t0).await.unwrap(), None);
    assert_eq!(st.mark_ended(UNKNOWN, t0).await.unwrap(), None);
}

async fn cancelled_stays_cancelled(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-cx", "p-cx", SessionStatus::Cancelled)).await.unwrap();
    let t = now_ms();
    let started = st.mark_started(&s.id, t).await.unwrap().unwrap();
    assert_eq!((started.status, started.video_call_started), (SessionStatus::Cancelled, Some(t)));
}

async fn touch_counts(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-touch", "p-touch", SessionStatus::Scheduled)).await.unwrap();
    let t = now_ms();
    st.touch(&s.id, t - Duration::seconds(5)).await.unwrap();
    st.touch(&s.id, t).await.unwrap();
    let s = st.session(&s.id).await.unwrap().unwrap();
    assert_eq!((s.access_count, s.last_accessed_at), (2, Some(t)));
}

async fn audit_trail_in_order(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-audit", "p-audit", SessionStatus::Scheduled)).await.unwrap();
    let t = now_ms();
    let entries: Vec<AuditEntry> =
        [AuditAction::JoinAttempt, AuditAction::JoinSuccess, AuditAction::CallStart, AuditAction::CallEnd]
            .into_iter()
            .enumerate()
            .map(|(i, action)| AuditEntry {
                session_id: s.id.clone(),
                user_id: if i % 2 == 0 { "5f0000000000000000000009".into() } else { "user-x".into() },
                action,
                timestamp: t + Duration::milliseconds(i as i64),
                metadata: json!({ "step": i, "roomId": "room-a", "nested": { "ok": true } }),
                ip_address: (i == 0).then(|| "127.0.0.1".to_owned()),
                user_agent: (i == 1).then(|| "test-agent".to_owned()),
            })
            .collect();
    for e in &entries {
        st.audit(e.clone()).await.unwrap();
    }
    st.audit(AuditEntry { session_id: UNKNOWN.into(), ..entries[0].clone() }).await.unwrap();
    assert_eq!(st.audit_trail(&s.id).await.unwrap(), entries);
    assert_eq!(st.audit_trail("5f00000000000000000000ff").await.unwrap(), vec![]);
}

/// Calls that end by themselves (PROTOCOL.md section 8): only the write that ended a call
/// says so, even for the same instant; rooms keep their first empty time unless told to
/// overwrite; open calls list started, not ended calls with their room's time.
async fn calls_end_once(st: Arc<dyn Store>) {
    let s = st.create_session(new_session("c-auto", "p-auto", SessionStatus::Scheduled)).await.unwrap();
    let room = st.ensure_room(&s.id, "room-auto-1").await.unwrap().unwrap().meeting_link.unwrap();
    let t0 = now_ms();
    assert_eq!(st.mark_ended_once(&s.id, t0).await.unwrap(), Some((EndOutcome::NotStarted, false)));
    st.mark_started(&s.id, t0).await.unwrap();
    let open = st.open_calls(100).await.unwrap();
    let mine = open.iter().find(|c| c.session.id == s.id).expect("listed while open");
    assert_eq!(mine.empty_since, None);

    let t1 = t0 + Duration::seconds(3);
    assert_eq!(st.room_empty(&room, t1, false).await.unwrap(), t1);
    assert_eq!(st.room_empty(&room, t1 + Duration::seconds(1), false).await.unwrap(), t1, "the first time is kept");
    let t2 = t1 + Duration::seconds(2);
    assert_eq!(st.room_empty(&room, t2, true).await.unwrap(), t2, "overwritten");
    let open = st.open_calls(100).await.unwrap();
    assert_eq!(open.iter().find(|c| c.session.id == s.id).unwrap().empty_since, Some(t2));
    st.room_occupied(&room).await.unwrap();
    let open = st.open_calls(100).await.unwrap();
    assert_eq!(open.iter().find(|c| c.session.id == s.id).unwrap().empty_since, None);

    let Some((EndOutcome::Ended(first), true)) = st.mark_ended_once(&s.id, t2).await.unwrap() else {
        panic!("the first end is this write's")
    };
    assert_eq!((first.video_call_ended, first.status), (Some(t2), SessionStatus::Completed));
    let again = st.mark_ended_once(&s.id, t2).await.unwrap();
    assert_eq!(again, Some((EndOutcome::Ended(first), false)), "the same instant again is not this write's");
    assert!(st.open_calls(100).await.unwrap().iter().all(|c| c.session.id != s.id), "no longer open");
    assert_eq!(st.mark_ended_once(UNKNOWN, t0).await.unwrap(), None);
}

/// A room's webhook events are claimed in the order they happened (`created_at`), then of
/// insertion: an event a node queued late (its call start's store write was slow) still goes
/// before the room's later events that wait; other rooms are not held up.
async fn webhooks_go_in_time_order(st: Arc<dyn Store>) {
    let t0 = ms(now_ms()) - Duration::seconds(60);
    let ev = |id: &str, room: &str, at: DateTime<Utc>| QueuedEvent {
        id: id.into(),
        room: room.into(),
        kind: "participant.joined",
        created_at: at,
        body: json!({ "id": id }),
        rule: Rule::Unique,
    };
    let queued = vec![
        ev("e-later", "room-a", t0 + Duration::seconds(2)),
        ev("e-earlier", "room-a", t0 + Duration::seconds(1)),
        ev("e-tie-first", "room-b", t0 + Duration::seconds(3)),
        ev("e-tie-second", "room-b", t0 + Duration::seconds(3)),
    ];
    assert_eq!(st.enqueue_webhooks(queued, 100).await.unwrap(), 0, "none dropped");
    let now = ms(now_ms());
    let lease = now + Duration::seconds(30);
    let ids = |c: Vec<ClaimedEvent>| {
        let mut v: Vec<String> = c.into_iter().map(|e| e.id).collect();
        v.sort();
        v
    };
    let first = ids(st.claim_webhooks("node-x", now, lease, 10).await.unwrap());
    assert_eq!(first, ["e-earlier", "e-tie-first"], "each room's first event by time, then insertion");
    for id in &first {
        st.webhook_attempted(id, "node-x", Attempt::Delivered, now).await.unwrap();
    }
    let second = ids(st.claim_webhooks("node-x", now, lease, 10).await.unwrap());
    assert_eq!(second, ["e-later", "e-tie-second"]);
}

async fn ping_and_flush(st: Arc<dyn Store>) {
    st.ping().await.unwrap();
    st.flush().await.unwrap();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded_store {
            $(#[tokio::test]
            async fn $case() {
                let s = super::embedded().await;
                super::$case(s.store.clone()).await;
            })*
        }
        mod mongo_store {
            $(#[tokio::test]
            async fn $case() {
                let s = super::mongo().await;
                super::$case(s.store.clone()).await;
            })*
        }
    };
}

conformance!(
    create_and_read,
    waiting_room_round_trips,
    room_is_set_once,
    racing_rooms_agree,
    start_and_end,
    cancelled_stays_cancelled,
    touch_counts,
    audit_trail_in_order,
    ping_and_flush,
    calls_end_once,
    webhooks_go_in_time_order,
);

/// A store file made before sessions had `waiting_room` (its sessions table as it was) gains
/// the column when opened: its sessions read back without a waiting room, and new ones keep
/// theirs.
#[tokio::test]
async fn an_older_store_file_gains_the_waiting_room_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(signalgrid::store::embedded::FILE_NAME);
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE sessions (
            id TEXT PRIMARY KEY, client_id TEXT NOT NULL, client_name TEXT NOT NULL,
            psychologist_id TEXT NOT NULL, psychologist_name TEXT NOT NULL, session_date INTEGER NOT NULL,
            duration_minutes INTEGER NOT NULL, session_type TEXT NOT NULL, status TEXT NOT NULL,
            payment_status TEXT NOT NULL, meeting_link TEXT UNIQUE, is_video_call INTEGER NOT NULL DEFAULT 1,
            video_call_started INTEGER, video_call_ended INTEGER, call_duration INTEGER,
            recording_enabled INTEGER NOT NULL DEFAULT 0, recording_url TEXT, last_accessed_at INTEGER,
            access_count INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
         INSERT INTO sessions (id, client_id, client_name, psychologist_id, psychologist_name, session_date,
            duration_minutes, session_type, status, payment_status, created_at)
            VALUES ('5f00000000000000000000aa', 'c', 'C', 'p', 'P', 0, 50, 'Individual', 'Scheduled', 'paid', 0);",
    )
    .unwrap();
    drop(old);
    let st = signalgrid::store::EmbeddedStore::open(dir.path()).unwrap();
    let before = st.session("5f00000000000000000000aa").await.unwrap().expect("the older session");
    assert!(!before.waiting_room);
    let new = st.create_session(new_session("c-new-w", "p-new", SessionStatus::Scheduled)).await.unwrap();
    assert!(st.session(&new.id).await.unwrap().unwrap().waiting_room);
}
