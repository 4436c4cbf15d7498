//! The MongoDB store's side of sealing at rest: which kids the `auditlogs` fields use
//! (checked at start-up) and `rotate-key`'s batches (PROTOCOL.md section 9;
//! docs/security.md). Only `auditlogs` is signalgrid's to seal: the platform's `sessions`
//! and `users` are never rewritten.
//!
//! The collection `signalgridsealkeys` lists every kid that may have sealed a field: a store
//! opened with keys adds its first kid before it writes anything, and `rotate-key` removes
//! the others only after a full scan found no field left under them. At start-up, the kids
//! of that list and of the newest 1,000 audit entries must all be configured.

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use signalgrid_actors::ports::StoreError;

use super::db::{is_duplicate, store_err, Db};
use super::MongoStore;
use crate::store::seal::{field, kid_of, Keyring, Reseal, RotateBatch, RotateCounts, Rows, SealError};

/// Audit entries whose kids are read at start-up besides the list.
const SAMPLE: i64 = 1000;
/// Updates of one batch in flight at once.
const UPDATES_IN_FLIGHT: usize = 16;

/// The kids of a document's sealed fields.
fn kids(d: &Document) -> impl Iterator<Item = &str> {
    [field::IP_ADDRESS, field::USER_AGENT, field::METADATA]
        .into_iter()
        .filter_map(|f| d.get_str(f).ok().and_then(kid_of))
}

/// Fails naming the kids of stored fields that the store's keys lack; then records the
/// first kid as in use.
pub async fn check_kids(db: &Db) -> Result<(), StoreError> {
    let mut found: Vec<String> = Vec::new();
    let mut listed = db.seal_keys().find(doc! {}).await.map_err(store_err)?;
    while let Some(d) = listed.try_next().await.map_err(store_err)? {
        if let Ok(kid) = d.get_str("_id") {
            found.push(kid.to_owned());
        }
    }
    let mut newest = db
        .audit_logs()
        .find(doc! {})
        .sort(doc! { "_id": -1 })
        .limit(SAMPLE)
        .projection(doc! { field::IP_ADDRESS: 1, field::USER_AGENT: 1, field::METADATA: 1 })
        .await
        .map_err(store_err)?;
    while let Some(d) = newest.try_next().await.map_err(store_err)? {
        found.extend(kids(&d).map(str::to_owned));
    }
    db.keys().check_known(found.iter().map(String::as_str))?;
    if let Some(kid) = db.keys().current_kid() {
        let at = mongodb::bson::DateTime::now();
        match db.seal_keys().insert_one(doc! { "_id": kid, "firstUsed": at }).await {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(store_err(e)),
        }
    }
    Ok(())
}

/// The `$set` of a document's fields not sealed with the first key yet (empty: none).
fn resealed(k: &Keyring, d: &Document, counts: &mut RotateCounts) -> Result<Document, SealError> {
    let mut set = Document::new();
    for f in [field::IP_ADDRESS, field::USER_AGENT] {
        if let Ok(v) = d.get_str(f) {
            if let Some(new) = k.reseal(f, v)? {
                counts.note(v);
                set.insert(f, new);
            }
        }
    }
    match d.get(field::METADATA) {
        Some(Bson::String(v)) => {
            if let Some(new) = k.reseal(field::METADATA, v)? {
                counts.note(v);
                set.insert(field::METADATA, new);
            }
        }
        // Plaintext written before keys were set: sealed as its JSON text, as new entries are.
        Some(b @ Bson::Document(_)) => {
            let text = b.clone().into_relaxed_extjson().to_string();
            counts.sealed += 1;
            set.insert(field::METADATA, k.seal(field::METADATA, &text));
        }
        _ => {}
    }
    Ok(set)
}

/// Whether a document has a field not sealed with the first key.
fn off_current(k: &Keyring, d: &Document) -> bool {
    [field::IP_ADDRESS, field::USER_AGENT, field::METADATA].into_iter().any(|f| match d.get(f) {
        Some(Bson::String(v)) => k.needs_reseal(v),
        Some(Bson::Document(_)) => true,
        _ => false,
    })
}

#[async_trait]
impl Reseal for MongoStore {
    fn rows(&self) -> &'static [Rows] {
        &[Rows::Audit]
    }

    /// Reads up to `max` entries by `_id` after `after`, then rewrites the changed ones with
    /// one `updateOne` each (16 at a time). Each update is atomic and a re-run skips what is
    /// done, so an interrupted batch is completed by the next run.
    async fn reseal_batch(&self, rows: Rows, after: Option<String>, max: usize) -> Result<RotateBatch, StoreError> {
        let db = &self.inner.db;
        let k = db.keys();
        if !k.is_enabled() {
            return Err(SealError::NoKeys.into());
        }
        if rows != Rows::Audit {
            return Ok(RotateBatch::default());
        }
        let filter = match after.as_deref().map(ObjectId::parse_str) {
            Some(Ok(oid)) => doc! { "_id": { "$gt": oid } },
            _ => doc! {},
        };
        let mut cur = db
            .audit_logs()
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(max).unwrap_or(i64::MAX))
            .projection(doc! { field::IP_ADDRESS: 1, field::USER_AGENT: 1, field::METADATA: 1 })
            .await
            .map_err(store_err)?;
        let mut out = RotateBatch::default();
        let mut updates = Vec::new();
        while let Some(d) = cur.try_next().await.map_err(store_err)? {
            let Ok(id) = d.get_object_id("_id") else { continue };
            out.counts.rows += 1;
            out.next = Some(id.to_hex());
            let set =
                resealed(k, &d, &mut out.counts).map_err(|e| StoreError::Other(format!("auditlogs {id}: {e}")))?;
            if !set.is_empty() {
                updates.push((id, set));
            }
        }
        out.counts.rows_changed = updates.len() as u64;
        let coll = db.audit_logs();
        futures_util::stream::iter(updates)
            .map(|(id, set)| async move { coll.update_one(doc! { "_id": id }, doc! { "$set": set }).await })
            .buffer_unordered(UPDATES_IN_FLIGHT)
            .map_err(store_err)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(out)
    }

    async fn not_current(&self) -> Result<u64, StoreError> {
        let db = &self.inner.db;
        if !db.keys().is_enabled() {
            return Err(SealError::NoKeys.into());
        }
        let mut cur = db
            .audit_logs()
            .find(doc! {})
            .projection(doc! { field::IP_ADDRESS: 1, field::USER_AGENT: 1, field::METADATA: 1 })
            .await
            .map_err(store_err)?;
        let mut n = 0;
        while let Some(d) = cur.try_next().await.map_err(store_err)? {
            n += u64::from(off_current(db.keys(), &d));
        }
        Ok(n)
    }

    async fn retire_other_kids(&self) -> Result<Vec<String>, StoreError> {
        let db = &self.inner.db;
        let kid = db.keys().current_kid().ok_or(SealError::NoKeys)?;
        let mut gone = Vec::new();
        let mut cur = db.seal_keys().find(doc! { "_id": { "$ne": kid } }).await.map_err(store_err)?;
        while let Some(d) = cur.try_next().await.map_err(store_err)? {
            gone.extend(d.get_str("_id").ok().map(str::to_owned));
        }
        db.seal_keys().delete_many(doc! { "_id": { "$in": &gone } }).await.map_err(store_err)?;
        Ok(gone)
    }
}
