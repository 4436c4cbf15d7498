//! The MongoDB store against a real secantusd server: documents in the platform's shapes
//! (ObjectId references to `users`, the seed's field names and types, the indexes), the
//! handling of users and ids that are not ObjectIds, and two nodes racing generate-room for
//! one session getting one room id.

mod common;

use std::sync::Arc;

use common::mongo::{fresh_database, shared};
use common::{admin, token, SessionSpec, TestNode};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use signalgrid::store::{MongoConfig, MongoStore};
use signalgrid_actors::identity::Role;
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::{now_ms, NewSession, Party, PaymentStatus, SessionStatus, SessionType};

async fn open(database: &str, dir: &tempfile::TempDir) -> MongoStore {
    let cfg = MongoConfig {
        uri: shared().uri(),
        database: database.into(),
        data_dir: dir.path().into(),
        start_unready: false,
        outbox_max: 10,
    };
    MongoStore::open(&cfg).await.expect("open the MongoDB store")
}

fn new_session(client: &str, psy: &str) -> NewSession {
    NewSession {
        client: Party { id: client.into(), name: "Client Name".into() },
        psychologist: Party { id: psy.into(), name: "Dr. Name".into() },
        session_date: now_ms(),
        duration_minutes: 50,
        session_type: SessionType::Group,
        payment_status: PaymentStatus::Pending,
        status: SessionStatus::Scheduled,
        waiting_room: false,
    }
}

#[tokio::test]
async fn documents_have_the_platform_shape() {
    let (db, dir) = (fresh_database(), tempfile::tempdir().unwrap());
    let store = open(&db, &dir).await;
    // A platform user that exists already keeps its name.
    let psy = ObjectId::new();
    let users = store.client().database(&db).collection::<Document>("users");
    users.insert_one(doc! { "_id": psy, "name": "Dr. Platform", "email": "dr@example.org" }).await.unwrap();
    let client = ObjectId::new();
    let s = store.create_session(new_session(&client.to_hex(), &psy.to_hex())).await.unwrap();
    assert_eq!(s.psychologist.name, "Dr. Platform");
    assert_eq!(s.client.name, "Client Name");
    let u = users.find_one(doc! { "_id": psy }).await.unwrap().unwrap();
    assert_eq!(u.get_str("email").unwrap(), "dr@example.org");

    let sessions = store.client().database(&db).collection::<Document>("sessions");
    let d = sessions.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(d.get_object_id("_id").unwrap().to_hex(), s.id);
    assert_eq!(d.get("client"), Some(&Bson::ObjectId(client)));
    assert_eq!(d.get("psychologist"), Some(&Bson::ObjectId(psy)));
    assert!(d.get_datetime("sessionDate").is_ok() && d.get_datetime("createdAt").is_ok());
    assert_eq!((d.get_str("sessionType").unwrap(), d.get_str("status").unwrap()), ("Group", "Scheduled"));
    assert_eq!(d.get_str("paymentStatus").unwrap(), "pending");
    assert!(d.get("meetingLink").is_none(), "no link yet: left out for the sparse index");
    assert!(d.get_bool("isVideoCall").unwrap());
    assert!(!d.get_bool("recordingEnabled").unwrap());
    assert_eq!(d.get("videoCallStarted"), Some(&Bson::Null));
    assert_eq!(d.get_i64("callDuration").unwrap(), 0);
    assert_eq!(d.get_i64("accessCount").unwrap(), 0);

    store.ensure_room(&s.id, "room-shape").await.unwrap();
    let t = now_ms();
    store.mark_started(&s.id, t).await.unwrap();
    store.touch(&s.id, t).await.unwrap();
    store.mark_ended(&s.id, t + chrono::Duration::minutes(30)).await.unwrap();
    let d = sessions.find_one(doc! { "meetingLink": "room-shape" }).await.unwrap().unwrap();
    assert_eq!(d.get_str("status").unwrap(), "Completed");
    assert_eq!(d.get_datetime("videoCallStarted").unwrap().timestamp_millis(), t.timestamp_millis());
    assert!(d.get_datetime("videoCallEnded").is_ok() && d.get_datetime("lastAccessedAt").is_ok());
    assert_eq!(d.get_i64("callDuration").unwrap(), 30);
    assert_eq!(d.get_i64("accessCount").unwrap(), 1);

    // Indexes: meetingLink unique and sparse, the audit trail by session and time.
    let names: Vec<Document> = sessions
        .list_indexes()
        .await
        .unwrap()
        .map_ok(|m| {
            let mut d = m.keys;
            if let Some(o) = m.options {
                d.insert("unique", o.unique.unwrap_or(false));
                d.insert("sparse", o.sparse.unwrap_or(false));
            }
            d
        })
        .try_collect()
        .await
        .unwrap();
    assert!(names.contains(&doc! { "meetingLink": 1, "unique": true, "sparse": true }), "{names:?}");
    // Opening again (another node, a restart) finds the indexes there.
    open(&db, &dir).await;
}

#[tokio::test]
async fn audit_documents_use_object_id_references() {
    let (db, dir) = (fresh_database(), tempfile::tempdir().unwrap());
    let store = open(&db, &dir).await;
    let user = ObjectId::new();
    let s = store.create_session(new_session(&user.to_hex(), "psy-external")).await.unwrap();
    let entry = signalgrid_actors::session::AuditEntry {
        session_id: s.id.clone(),
        user_id: user.to_hex(),
        action: signalgrid_actors::session::AuditAction::JoinAttempt,
        timestamp: now_ms(),
        metadata: serde_json::json!({ "roomId": "r" }),
        ip_address: Some("10.0.0.1".into()),
        user_agent: Some("ua".into()),
    };
    store.audit(entry).await.unwrap();
    let logs = store.client().database(&db).collection::<Document>("auditlogs");
    let d = logs.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(d.get_object_id("sessionId").unwrap().to_hex(), s.id);
    assert_eq!(d.get_object_id("userId").unwrap(), user);
    assert_eq!(d.get_str("action").unwrap(), "join_attempt");
    assert!(d.get_datetime("timestamp").is_ok());
    assert_eq!(d.get_document("metadata").unwrap(), &doc! { "roomId": "r" });
    assert_eq!((d.get_str("ipAddress").unwrap(), d.get_str("userAgent").unwrap()), ("10.0.0.1", "ua"));
    // A user id that is not an ObjectId is kept as a string reference.
    let sessions = store.client().database(&db).collection::<Document>("sessions");
    let sd = sessions.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(sd.get_str("psychologist").unwrap(), "psy-external");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_generate_room_get_one_room() {
    let db = fresh_database();
    let uri = shared().uri();
    let start = |db: String, uri: String| {
        TestNode::start_with(move |s| {
            s.store.mongodb_uri = Some(uri);
            s.store.mongodb_database = db;
        })
    };
    let n1 = Arc::new(start(db.clone(), uri.clone()).await);
    let n2 = Arc::new(start(db.clone(), uri.clone()).await);
    let client = token("client-1", Role::Client);
    for _ in 0..5 {
        let res = n1.post("/api/sessions", Some(&admin())).json(&SessionSpec::default().body()).send().await.unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let path = format!("/api/video-calls/generate-room/{id}");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let node = if i % 2 == 0 { n1.clone() } else { n2.clone() };
                let (path, client) = (path.clone(), client.clone());
                tokio::spawn(async move {
                    let res = node.post(&path, Some(&client)).send().await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.json::<serde_json::Value>().await.unwrap()["roomId"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        let mut rooms = Vec::new();
        for t in tasks {
            rooms.push(t.await.unwrap());
        }
        rooms.dedup();
        assert_eq!(rooms.len(), 1, "one room id: {rooms:?}");
        let via_n2 = n2.get(&format!("/api/sessions/{id}"), Some(&admin())).send().await.unwrap();
        let s: serde_json::Value = via_n2.json().await.unwrap();
        assert_eq!(s["meetingLink"], rooms[0].as_str());
    }
}
