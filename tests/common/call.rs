//! Helpers for the call-itself tests (PROTOCOL.md section 8): waiting-room sessions, the
//! audit trail through `GET /api/audit`, and a search of the node's whole store (the SQLite
//! files of its data directory, or its MongoDB database) for a string.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use crate::common::{admin, mongo, SessionSpec, TestNode, WAIT};

/// A fresh joinable session (client-1 / psy-1 unless `spec` says otherwise) with
/// `waitingRoom: waiting`, and its room id.
pub async fn session_with(node: &TestNode, spec: &SessionSpec, waiting: bool) -> (String, String) {
    let mut body = spec.body();
    body["waitingRoom"] = Value::Bool(waiting);
    let res = node.post("/api/sessions", Some(&admin())).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201, "session creation failed");
    let s: Value = res.json().await.unwrap();
    assert_eq!(s["waitingRoom"], waiting, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let room = node.room_for(&id, &spec.client).await;
    (id, room)
}

/// A waiting-room Individual session (client-1 / psy-1) and its room.
pub async fn waiting_call(node: &TestNode) -> (String, String) {
    session_with(node, &SessionSpec::default(), true).await
}

/// The session's audit entries with `action`, once there are at least `n` (the audit log is
/// written in the background: waits for it, bounded by `WAIT`).
pub async fn audit_entries(node: &TestNode, session: &str, action: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let q = format!("/api/audit?sessionId={session}&action={action}");
        let res = node.get(&q, Some(&admin())).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        if entries.len() >= n {
            return entries;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {n} {action} entries for {session}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `needle` is anywhere in the node's store: every document of its MongoDB database
/// (SIGNALGRID_TEST_STORE=mongo), or the bytes of every file in its data directory (the
/// SQLite file, its WAL and shared memory).
pub async fn store_contains(node: &TestNode, needle: &str) -> bool {
    if mongo::nodes_on_mongo() {
        let client = mongodb::Client::with_uri_str(mongo::shared().uri()).await.unwrap();
        let db = client.database(&mongo::database_for(node.data.path()));
        for name in db.list_collection_names().await.unwrap() {
            let coll = db.collection::<mongodb::bson::Document>(&name);
            let mut cursor = coll.find(mongodb::bson::doc! {}).await.unwrap();
            while cursor.advance().await.unwrap() {
                let doc = cursor.deserialize_current().unwrap();
                if format!("{doc:?}").contains(needle) {
                    return true;
                }
            }
        }
        return false;
    }
    files_contain(node.data.path(), needle.as_bytes())
}

/// Whether any file under `dir` contains `needle`.
pub fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map_while(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
            }
        }
    }
    false
}
