//! The MongoDB part in calls that end by themselves (PROTOCOL.md section 8;
//! `signalgrid_actors::auto_end`): `signalgridroomidle`, one document per room whose members
//! have all left (`_id` the room id, `emptySince`), removed when it has members again or its
//! call ended. Single guarded operations only (an upsert, a delete, a read).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Client, Collection};
use signalgrid_actors::ports::{EndOutcome, OpenCall, StoreError};

use super::db::store_err;
use super::docs::date;
use super::replay::unavailable;
use super::Inner;

/// The rooms' empty-since times.
#[derive(Clone)]
pub struct Idle {
    rooms: Collection<Document>,
}

fn since(d: &Document) -> Option<DateTime<Utc>> {
    d.get_datetime("emptySince").ok().and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()))
}

impl Idle {
    pub fn new(client: &Client, database: &str) -> Idle {
        Idle { rooms: client.database(database).collection("signalgridroomidle") }
    }

    /// Records `room` empty since `at` (replacing a recorded time with `overwrite`); returns
    /// the time kept.
    pub async fn empty(&self, room: &str, at: DateTime<Utc>, overwrite: bool) -> Result<DateTime<Utc>, StoreError> {
        let update = if overwrite {
            doc! { "$set": { "emptySince": date(at) } }
        } else {
            doc! { "$setOnInsert": { "emptySince": date(at) } }
        };
        match self.rooms.update_one(doc! { "_id": room }, update).upsert(true).await {
            Ok(_) => {}
            // Two upserts of one new room: the other inserted it; its time is kept.
            Err(e) if matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000) => {}
            Err(e) => return Err(store_err(e)),
        }
        let kept = self.rooms.find_one(doc! { "_id": room }).await.map_err(store_err)?;
        Ok(kept.as_ref().and_then(since).unwrap_or(at))
    }

    pub async fn occupied(&self, room: &str) -> Result<(), StoreError> {
        self.rooms.delete_one(doc! { "_id": room }).await.map_err(store_err).map(|_| ())
    }

    /// The recorded times of these rooms (those that have one).
    pub async fn of(&self, rooms: &[String]) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut found = self.rooms.find(doc! { "_id": { "$in": rooms } }).await.map_err(store_err)?;
        let mut out = HashMap::new();
        while let Some(d) = found.try_next().await.map_err(store_err)? {
            if let (Ok(room), Some(t)) = (d.get_str("_id"), since(&d)) {
                out.insert(room.to_owned(), t);
            }
        }
        Ok(out)
    }
}

impl Inner {
    /// `Store::mark_ended_once`. Never from the outbox: while call records wait there, who
    /// ended a call is not known, so the answer is `Unavailable`.
    pub(super) async fn end_once(&self, id: &str, at: DateTime<Utc>) -> Result<Option<(EndOutcome, bool)>, StoreError> {
        if self.must_queue().await {
            return Err(unavailable());
        }
        let res = self.db.end_once(id, at).await;
        self.note(&res);
        let out = res?;
        if let Some((EndOutcome::Ended(s), _)) = &out {
            self.remember(s);
        }
        Ok(out)
    }

    /// `Store::open_calls`: the sessions, then their rooms' times.
    pub(super) async fn open_calls(&self, max: usize) -> Result<Vec<OpenCall>, StoreError> {
        let res = async {
            let sessions = self.db.open_calls(max).await?;
            let rooms: Vec<String> = sessions.iter().filter_map(|s| s.meeting_link.clone()).collect();
            let since = self.idle.of(&rooms).await?;
            Ok(sessions
                .into_iter()
                .map(|s| {
                    let empty_since = s.meeting_link.as_ref().and_then(|r| since.get(r).copied());
                    OpenCall { session: s, empty_since }
                })
                .collect())
        }
        .await;
        self.note(&res);
        res
    }
}
