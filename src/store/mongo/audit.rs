//! Reading, counting and purging `auditlogs`: pages newest first by (timestamp, `_id`),
//! and bounded purge batches (the oldest first). Driver calls only; the caller
//! (`MongoStore`) records whether MongoDB answered.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use mongodb::Collection;
use signalgrid_actors::ports::StoreError;
use signalgrid_actors::session::{AuditCursor, AuditFilter, AuditPage};

use super::super::seal::Keyring;
use super::db::store_err;
use super::docs::{audit_from, date, date_ms, user_ref};

/// The query document of a filter, strictly after `after` when given.
fn query(f: &AuditFilter, after: Option<&AuditCursor>) -> Document {
    let mut q = Document::new();
    if let Some(s) = &f.session_id {
        q.insert("sessionId", user_ref(s));
    }
    if let Some(u) = &f.user_id {
        q.insert("userId", user_ref(u));
    }
    if let Some(a) = f.action {
        q.insert("action", a.as_str());
    }
    let mut range = Document::new();
    if let Some(t) = f.from {
        range.insert("$gte", date(t));
    }
    if let Some(t) = f.to {
        range.insert("$lte", date(t));
    }
    if !range.is_empty() {
        q.insert("timestamp", range);
    }
    if let Some(c) = after {
        // A cursor from another store kind has no ObjectId: it then stands after every
        // entry of its millisecond.
        let id = ObjectId::parse_str(&c.id).unwrap_or_else(|_| ObjectId::from_bytes([0xff; 12]));
        let at = date_ms(c.timestamp_ms);
        q.insert(
            "$or",
            vec![
                Bson::Document(doc! { "timestamp": { "$lt": at } }),
                Bson::Document(doc! { "timestamp": at, "_id": { "$lt": id } }),
            ],
        );
    }
    q
}

/// One page, newest first; reads one entry more than `limit` to know whether more follow.
pub async fn page(
    coll: &Collection<Document>,
    k: &Keyring,
    f: &AuditFilter,
    after: Option<&AuditCursor>,
    limit: usize,
) -> Result<AuditPage, StoreError> {
    let mut cur = coll
        .find(query(f, after))
        .sort(doc! { "timestamp": -1, "_id": -1 })
        .limit(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))
        .await
        .map_err(store_err)?;
    let mut out = AuditPage::default();
    let mut last = None;
    while let Some(d) = cur.try_next().await.map_err(store_err)? {
        if out.entries.len() == limit {
            out.next = last;
            break;
        }
        let e = audit_from(&d, k).map_err(|e| StoreError::Other(e.to_string()))?;
        let id = d.get_object_id("_id").map(|o| o.to_hex()).unwrap_or_default();
        last = Some(AuditCursor { timestamp_ms: e.timestamp.timestamp_millis(), id });
        out.entries.push(e);
    }
    Ok(out)
}

pub async fn count(coll: &Collection<Document>, f: &AuditFilter) -> Result<u64, StoreError> {
    coll.count_documents(query(f, None)).await.map_err(store_err)
}

/// Deletes up to `max` of the oldest entries before `before`: their ids first (one bounded
/// read), then one `deleteMany` on those ids.
pub async fn purge(coll: &Collection<Document>, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
    let mut cur = coll
        .find(doc! { "timestamp": { "$lt": date(before) } })
        .sort(doc! { "timestamp": 1, "_id": 1 })
        .projection(doc! { "_id": 1 })
        .limit(i64::try_from(max).unwrap_or(i64::MAX))
        .await
        .map_err(store_err)?;
    let mut ids = Vec::new();
    while let Some(d) = cur.try_next().await.map_err(store_err)? {
        if let Some(id) = d.get("_id") {
            ids.push(id.clone());
        }
    }
    if ids.is_empty() {
        return Ok(0);
    }
    let res = coll.delete_many(doc! { "_id": { "$in": ids } }).await.map_err(store_err)?;
    Ok(res.deleted_count)
}
