//! The MongoDB webhook queue (PROTOCOL.md section 7; docs/storage.md, "Webhook queue"):
//!
//! - `signalgridwebhooks`: one document per event, `_id` the event id, `seq` its place in
//!   the queue (from a counter in `signalgridcounters`, taken by `$inc` just before the
//!   insert), `state` 0 waiting / 1 delivered / 2 given up, the claim (`leaseUntil`,
//!   `leaseOwner`) and the next attempt (`nextAt`).
//! - `signalgridwebhookrooms`: the live rooms (`_id` the room id, `startedAt`).
//!
//! Every decision is one guarded operation: an event is kept by inserting its `_id` (a
//! duplicate key means another node kept it), a room goes live by inserting its row and
//! ends by `findOneAndDelete`, and a claim is a `findOneAndUpdate` on a waiting event whose
//! lease has run out. Driver calls only; `MongoStore` records whether MongoDB answered.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, IndexModel};
use signalgrid_actors::ports::StoreError;
use signalgrid_actors::webhook::{Attempt, ClaimedEvent, QueuedEvent, Rule, WebhookStats};

use super::db::store_err;
use super::docs::date;

/// Waiting events read at most when looking for each room's oldest (rooms whose oldest
/// lies further back wait for a later poll).
const SCAN: i64 = 10_000;

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

fn time(d: &Document, key: &str) -> DateTime<Utc> {
    d.get_datetime(key).ok().and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis())).unwrap_or_default()
}

/// The queue's collections in one database.
#[derive(Clone)]
pub struct Queue {
    events: Collection<Document>,
    rooms: Collection<Document>,
    counters: Collection<Document>,
}

impl Queue {
    pub fn new(client: &Client, database: &str) -> Queue {
        let db = client.database(database);
        Queue {
            events: db.collection("signalgridwebhooks"),
            rooms: db.collection("signalgridwebhookrooms"),
            counters: db.collection("signalgridcounters"),
        }
    }

    pub async fn create_indexes(&self) -> Result<(), StoreError> {
        let waiting = IndexModel::builder()
            .keys(doc! { "state": 1, "seq": 1 })
            .options(IndexOptions::builder().name("state_1_seq_1".to_owned()).build())
            .build();
        self.events.create_index(waiting).await.map_err(store_err)?;
        // The order of delivery within a room (`claim`).
        let by_time = IndexModel::builder()
            .keys(doc! { "state": 1, "createdAt": 1, "seq": 1 })
            .options(IndexOptions::builder().name("state_1_createdAt_1_seq_1".to_owned()).build())
            .build();
        self.events.create_index(by_time).await.map_err(store_err)?;
        let finished = IndexModel::builder().keys(doc! { "state": 1, "finishedAt": 1 }).build();
        self.events.create_index(finished).await.map_err(store_err)?;
        Ok(())
    }

    async fn next_seq(&self) -> Result<i64, StoreError> {
        let d = self
            .counters
            .find_one_and_update(doc! { "_id": "webhooks" }, doc! { "$inc": { "seq": 1_i64 } })
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(store_err)?
            .ok_or_else(|| StoreError::Other("webhook counter missing after upsert".into()))?;
        match d.get("seq") {
            Some(Bson::Int64(n)) => Ok(*n),
            Some(Bson::Int32(n)) => Ok(i64::from(*n)),
            _ => Err(StoreError::Other("webhook counter is not a number".into())),
        }
    }

    /// See `Store::enqueue_webhooks`.
    pub async fn enqueue(&self, events: &[QueuedEvent], max_waiting: u64) -> Result<usize, StoreError> {
        let mut waiting = self.events.count_documents(doc! { "state": 0 }).await.map_err(store_err)?;
        let mut dropped = 0;
        for e in events {
            if self
                .events
                .find_one(doc! { "_id": &e.id })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(store_err)?
                .is_some()
            {
                continue;
            }
            if waiting >= max_waiting {
                dropped += 1;
                continue;
            }
            let body = match e.rule {
                Rule::Unique => e.body.to_string(),
                Rule::RoomStarted => {
                    match self.rooms.insert_one(doc! { "_id": &e.room, "startedAt": date(e.created_at) }).await {
                        Ok(_) => e.body.to_string(),
                        Err(err) if is_duplicate(&err) => continue,
                        Err(err) => return Err(store_err(err)),
                    }
                }
                Rule::RoomFinished => {
                    let Some(live) =
                        self.rooms.find_one_and_delete(doc! { "_id": &e.room }).await.map_err(store_err)?
                    else {
                        continue;
                    };
                    let started = time(&live, "startedAt");
                    let mut body = e.body.clone();
                    body["data"]["durationSeconds"] = ((e.created_at - started).num_seconds().max(0)).into();
                    body.to_string()
                }
            };
            let seq = self.next_seq().await?;
            let d = doc! {
                "_id": &e.id, "seq": seq, "room": &e.room, "kind": e.kind, "createdAt": date(e.created_at),
                "body": body, "state": 0, "attempts": 0, "nextAt": date(e.created_at),
                "leaseUntil": date(DateTime::<Utc>::UNIX_EPOCH), "acked": Vec::<String>::new(),
            };
            match self.events.insert_one(d).await {
                Ok(_) => waiting += 1,
                Err(err) if is_duplicate(&err) => {}
                Err(err) => return Err(store_err(err)),
            }
        }
        Ok(dropped)
    }

    /// See `Store::claim_webhooks`.
    pub async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let mut cur = self
            .events
            .find(doc! { "state": 0 })
            .sort(doc! { "createdAt": 1, "seq": 1 })
            .projection(doc! { "room": 1, "nextAt": 1, "leaseUntil": 1 })
            .limit(SCAN)
            .await
            .map_err(store_err)?;
        let mut seen = std::collections::HashSet::new();
        let mut due = Vec::new();
        while let Some(d) = cur.try_next().await.map_err(store_err)? {
            let room = d.get_str("room").unwrap_or_default().to_owned();
            if !seen.insert(room) {
                continue;
            }
            if time(&d, "nextAt") <= now && time(&d, "leaseUntil") <= now {
                due.push(d.get_str("_id").unwrap_or_default().to_owned());
                if due.len() >= max {
                    break;
                }
            }
        }
        drop(cur);
        let mut claimed = Vec::new();
        for id in due {
            let got = self
                .events
                .find_one_and_update(
                    doc! { "_id": &id, "state": 0, "leaseUntil": { "$lte": date(now) } },
                    doc! { "$set": { "leaseUntil": date(lease_until), "leaseOwner": owner } },
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(store_err)?;
            if let Some(d) = got {
                claimed.push(ClaimedEvent {
                    id,
                    room: d.get_str("room").unwrap_or_default().to_owned(),
                    created_at: time(&d, "createdAt"),
                    body: d.get_str("body").unwrap_or_default().to_owned(),
                    attempts: d.get_i32("attempts").unwrap_or_default().max(0) as u32,
                    acked: d
                        .get_array("acked")
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(claimed)
    }

    /// See `Store::webhook_attempted`.
    pub async fn attempted(
        &self,
        id: &str,
        owner: &str,
        attempt: Attempt,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let released = doc! { "leaseUntil": date(DateTime::<Utc>::UNIX_EPOCH), "leaseOwner": Bson::Null };
        let (filter, update) = match attempt {
            Attempt::Delivered | Attempt::GiveUp => {
                let state = if attempt == Attempt::Delivered { 1 } else { 2 };
                let mut set = released;
                set.insert("state", state);
                set.insert("finishedAt", date(now));
                (doc! { "_id": id, "state": 0 }, doc! { "$set": set, "$inc": { "attempts": 1 } })
            }
            Attempt::Retry { next_at, acked } => {
                let mut set = released;
                set.insert("nextAt", date(next_at));
                set.insert("acked", acked);
                (doc! { "_id": id, "state": 0, "leaseOwner": owner }, doc! { "$set": set, "$inc": { "attempts": 1 } })
            }
        };
        self.events.update_one(filter, update).await.map_err(store_err)?;
        Ok(())
    }

    pub async fn stats(&self) -> Result<WebhookStats, StoreError> {
        let waiting = self.events.count_documents(doc! { "state": 0 }).await.map_err(store_err)?;
        let oldest = self
            .events
            .find_one(doc! { "state": 0 })
            .sort(doc! { "createdAt": 1, "seq": 1 })
            .projection(doc! { "createdAt": 1 })
            .await
            .map_err(store_err)?
            .map(|d| time(&d, "createdAt"));
        Ok(WebhookStats { waiting, oldest })
    }

    pub async fn purge(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
        let ids: Vec<Bson> = self
            .events
            .find(doc! { "state": { "$in": [1, 2] }, "finishedAt": { "$lt": date(before) } })
            .projection(doc! { "_id": 1 })
            .limit(max as i64)
            .await
            .map_err(store_err)?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(store_err)?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let r = self.events.delete_many(doc! { "_id": { "$in": ids } }).await.map_err(store_err)?;
        Ok(r.deleted_count)
    }
}
