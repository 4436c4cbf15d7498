//! The MongoDB operations themselves: one method per `Store` call, each a single guarded
//! write (or an optimistic compare-and-set) so that nodes sharing the database cannot
//! interleave a read-then-write. Also the client options and the start-up indexes.
//!
//! Owns the driver calls and error classification. Does not queue, cache or retry: that is
//! `MongoStore`'s job (mongo/mod.rs, mongo/records.rs, mongo/replay.rs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, IndexModel};
use signalgrid_actors::ports::{EndOutcome, StoreError};
use signalgrid_actors::rules::call_duration_minutes;
use signalgrid_actors::session::{AuditEntry, NewSession, Session, SessionPatch, SessionStatus};

use super::docs::{self, date, party_refs, session_from, session_oid, user_ref};
use crate::store::outbox::OutboxOp;
use crate::store::seal::Keyring;

/// Server error codes that mean "not now" (primary stepping down, shutting down, network).
const TRANSIENT_CODES: &[i32] = &[6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436];
const DUPLICATE_KEY: i32 = 11000;

/// Maps a driver error: unreachable/transient → `Unavailable` (REST 503), else `Other`.
pub fn store_err(e: mongodb::error::Error) -> StoreError {
    let transient = match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. } => true,
        ErrorKind::Command(c) => TRANSIENT_CODES.contains(&c.code),
        _ => e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError"),
    };
    if transient {
        StoreError::Unavailable(format!("MongoDB: {e}"))
    } else {
        StoreError::Other(format!("MongoDB: {e}"))
    }
}

pub(super) fn is_duplicate(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

fn bad(e: docs::BadDocument) -> StoreError {
    StoreError::Other(e.to_string())
}

/// Client options from a URI, with short failure detection unless the URI sets its own.
pub async fn client_options(uri: &str) -> Result<ClientOptions, StoreError> {
    let mut o = ClientOptions::parse(uri).await.map_err(|e| StoreError::Other(format!("invalid MongoDB URI: {e}")))?;
    o.server_selection_timeout.get_or_insert(Duration::from_secs(2));
    o.connect_timeout.get_or_insert(Duration::from_secs(2));
    o.heartbeat_freq.get_or_insert(Duration::from_millis(500));
    o.app_name.get_or_insert_with(|| "signalgrid".to_owned());
    Ok(o)
}

/// The hosts of a URI's options, for error messages (never the credentials).
pub fn hosts(o: &ClientOptions) -> String {
    o.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",")
}

/// The collections of one database, and the keys that seal audit fields.
#[derive(Clone)]
pub struct Db {
    client: Client,
    sessions: Collection<Document>,
    users: Collection<Document>,
    audit: Collection<Document>,
    seal_keys: Collection<Document>,
    keys: Arc<Keyring>,
}

/// Signalgrid's own list of the kids that may have sealed an `auditlogs` field
/// (`{ _id: kid, firstUsed: date }`; src/store/mongo/reseal.rs).
pub const SEAL_KEYS: &str = "signalgridsealkeys";

impl Db {
    pub fn new(options: ClientOptions, database: &str, keys: Arc<Keyring>) -> Result<Db, StoreError> {
        let client = Client::with_options(options).map_err(store_err)?;
        let db = client.database(database);
        Ok(Db {
            sessions: db.collection("sessions"),
            users: db.collection("users"),
            audit: db.collection("auditlogs"),
            seal_keys: db.collection(SEAL_KEYS),
            keys,
            client,
        })
    }

    /// The keys that seal and open audit fields.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The list of kids in use.
    pub fn seal_keys(&self) -> &Collection<Document> {
        &self.seal_keys
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.sessions.client().database("admin").run_command(doc! { "ping": 1 }).await.map_err(store_err)?;
        Ok(())
    }

    /// Creates the indexes (a no-op when they exist with the same options).
    pub async fn create_indexes(&self) -> Result<(), StoreError> {
        let link = IndexModel::builder()
            .keys(doc! { "meetingLink": 1 })
            .options(IndexOptions::builder().unique(true).sparse(true).build())
            .build();
        self.sessions.create_index(link).await.map_err(store_err)?;
        let trail = IndexModel::builder().keys(doc! { "sessionId": 1, "timestamp": 1 }).build();
        self.audit.create_index(trail).await.map_err(store_err)?;
        // Audit reads page newest first and retention purges oldest first, both on this.
        let by_time = IndexModel::builder().keys(doc! { "timestamp": 1, "_id": 1 }).build();
        self.audit.create_index(by_time).await.map_err(store_err)?;
        // The sweep of calls that end by themselves reads started, not ended calls.
        let open = IndexModel::builder().keys(doc! { "videoCallEnded": 1, "videoCallStarted": 1 }).build();
        self.sessions.create_index(open).await.map_err(store_err)?;
        Ok(())
    }

    /// Reads a session document with its parties' names.
    async fn load(&self, filter: Document) -> Result<Option<Session>, StoreError> {
        let Some(d) = self.sessions.find_one(filter).await.map_err(store_err)? else { return Ok(None) };
        self.with_names(&d).await.map(Some)
    }

    async fn with_names(&self, d: &Document) -> Result<Session, StoreError> {
        let refs = party_refs(d);
        let mut names = HashMap::new();
        let mut users = self.users.find(doc! { "_id": { "$in": refs } }).await.map_err(store_err)?;
        while let Some(u) = users.try_next().await.map_err(store_err)? {
            if let (Some(id), Ok(name)) = (u.get("_id").and_then(docs::ref_str), u.get_str("name")) {
                names.insert(id, name.to_owned());
            }
        }
        session_from(d, &names).map_err(bad)
    }

    async fn by_id(&self, id: &str) -> Result<Option<Session>, StoreError> {
        match session_oid(id) {
            Some(oid) => self.load(doc! { "_id": oid }).await,
            None => Ok(None),
        }
    }

    /// Inserts the session; a party missing from `users` is added with its name (a platform
    /// user that exists is never changed).
    pub async fn create_session(&self, n: NewSession, now: DateTime<Utc>) -> Result<Session, StoreError> {
        for p in [&n.client, &n.psychologist] {
            self.users
                .update_one(
                    doc! { "_id": user_ref(&p.id) },
                    doc! { "$setOnInsert": { "name": &p.name, "createdAt": date(now) } },
                )
                .upsert(true)
                .await
                .map_err(store_err)?;
        }
        let id = ObjectId::new();
        self.sessions.insert_one(docs::new_session(id, &n, now)).await.map_err(store_err)?;
        self.by_id(&id.to_hex()).await?.ok_or_else(|| StoreError::Other("inserted session vanished".into()))
    }

    pub async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.by_id(id).await
    }

    pub async fn session_by_room(&self, room: &str) -> Result<Option<Session>, StoreError> {
        self.load(doc! { "meetingLink": room }).await
    }

    /// Find-and-modify guarded by "no link yet": of racing nodes exactly one sets it.
    pub async fn ensure_room(&self, id: &str, candidate: &str) -> Result<Option<Session>, StoreError> {
        let Some(oid) = session_oid(id) else { return Ok(None) };
        let set = self
            .sessions
            .find_one_and_update(
                doc! { "_id": oid, "meetingLink": Bson::Null },
                doc! { "$set": { "meetingLink": candidate, "updatedAt": date(Utc::now()) } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(store_err)?;
        match set {
            Some(d) => self.with_names(&d).await.map(Some),
            None => self.by_id(id).await,
        }
    }

    /// One `$set` of the fields the patch names (and `updatedAt`).
    pub async fn update_session(&self, id: &str, p: &SessionPatch) -> Result<Option<Session>, StoreError> {
        let Some(oid) = session_oid(id) else { return Ok(None) };
        let mut set = doc! { "updatedAt": date(Utc::now()) };
        if let Some(v) = p.payment_status {
            set.insert("paymentStatus", v.as_str());
        }
        if let Some(v) = p.status {
            set.insert("status", v.as_str());
        }
        if let Some(v) = p.session_date {
            set.insert("sessionDate", date(v));
        }
        if let Some(v) = p.duration_minutes {
            set.insert("duration", v);
        }
        if let Some(v) = p.waiting_room {
            set.insert("waitingRoom", v);
        }
        let d = self
            .sessions
            .find_one_and_update(doc! { "_id": oid }, doc! { "$set": set })
            .return_document(ReturnDocument::After)
            .await
            .map_err(store_err)?;
        match d {
            Some(d) => self.with_names(&d).await.map(Some),
            None => Ok(None),
        }
    }

    pub async fn mark_started(&self, id: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        let Some(oid) = session_oid(id) else { return Ok(None) };
        self.sessions
            .update_one(
                doc! { "_id": oid, "videoCallStarted": Bson::Null },
                doc! { "$set": { "videoCallStarted": date(at), "updatedAt": date(Utc::now()) } },
            )
            .await
            .map_err(store_err)?;
        let done =
            [SessionStatus::Completed.as_str(), SessionStatus::Cancelled.as_str(), SessionStatus::InProgress.as_str()];
        self.sessions
            .update_one(
                doc! { "_id": oid, "status": { "$nin": done.to_vec() } },
                doc! { "$set": { "status": SessionStatus::InProgress.as_str() } },
            )
            .await
            .map_err(store_err)?;
        self.by_id(id).await
    }

    /// Compare-and-set on "started at S, not ended": the first end wins, later ones read it.
    pub async fn mark_ended(&self, id: &str, at: DateTime<Utc>) -> Result<Option<EndOutcome>, StoreError> {
        Ok(self.end_once(id, at).await?.map(|(end, _)| end))
    }

    /// `mark_ended`, and whether this update ended the call (it matched "not ended").
    pub async fn end_once(&self, id: &str, at: DateTime<Utc>) -> Result<Option<(EndOutcome, bool)>, StoreError> {
        let Some(oid) = session_oid(id) else { return Ok(None) };
        let Some(s) = self.by_id(id).await? else { return Ok(None) };
        let Some(started) = s.video_call_started else { return Ok(Some((EndOutcome::NotStarted, false))) };
        if s.video_call_ended.is_some() {
            return Ok(Some((EndOutcome::Ended(s), false)));
        }
        let res = self
            .sessions
            .update_one(
                doc! { "_id": oid, "videoCallStarted": date(started), "videoCallEnded": Bson::Null },
                doc! { "$set": {
                    "videoCallEnded": date(at),
                    "callDuration": call_duration_minutes(started, at),
                    "status": SessionStatus::Completed.as_str(),
                    "updatedAt": date(Utc::now()),
                } },
            )
            .await
            .map_err(store_err)?;
        let s = self.by_id(id).await?.ok_or_else(|| StoreError::Other("session vanished while ending".into()))?;
        Ok(Some((EndOutcome::Ended(s), res.modified_count == 1)))
    }

    /// Up to `max` sessions whose call started and has not ended, oldest start first.
    pub async fn open_calls(&self, max: usize) -> Result<Vec<Session>, StoreError> {
        let mut found = self
            .sessions
            .find(doc! { "videoCallEnded": Bson::Null, "videoCallStarted": { "$ne": Bson::Null } })
            .sort(doc! { "videoCallStarted": 1 })
            .limit(i64::try_from(max).unwrap_or(i64::MAX))
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        while let Some(d) = found.try_next().await.map_err(store_err)? {
            out.push(self.with_names(&d).await?);
        }
        Ok(out)
    }

    pub async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(oid) = session_oid(id) else { return Ok(()) };
        self.sessions
            .update_one(
                doc! { "_id": oid },
                doc! { "$max": { "lastAccessedAt": date(at) }, "$inc": { "accessCount": 1 } },
            )
            .await
            .map_err(store_err)?;
        Ok(())
    }

    /// A replayed access: skipped when the session shows this access (or a later one)
    /// already, so a write that landed before its reply was lost is not counted twice.
    async fn touch_replay(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(oid) = session_oid(id) else { return Ok(()) };
        let filter =
            doc! { "_id": oid, "$or": [{ "lastAccessedAt": { "$lt": date(at) } }, { "lastAccessedAt": Bson::Null }] };
        self.sessions
            .update_one(filter, doc! { "$set": { "lastAccessedAt": date(at) }, "$inc": { "accessCount": 1 } })
            .await
            .map_err(store_err)?;
        Ok(())
    }

    /// Writes an audit record; one already written under the same id counts as written.
    pub async fn audit(&self, op: &OutboxOp) -> Result<(), StoreError> {
        let Some(d) = docs::audit_doc(op) else { return Ok(()) };
        match self.audit.insert_one(d).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    pub async fn audit_trail(&self, session_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let mut cur = self
            .audit
            .find(doc! { "sessionId": user_ref(session_id) })
            .sort(doc! { "timestamp": 1, "_id": 1 })
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        while let Some(d) = cur.try_next().await.map_err(store_err)? {
            out.push(docs::audit_from(&d, &self.keys).map_err(|e| StoreError::Other(e.to_string()))?);
        }
        Ok(out)
    }

    /// Applies one outbox record (idempotent: a record that did land before is a no-op).
    pub async fn apply(&self, op: &OutboxOp) -> Result<(), StoreError> {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now);
        match op {
            OutboxOp::Start { session_id, at_ms } => self.mark_started(session_id, at(*at_ms)).await.map(|_| ()),
            OutboxOp::End { session_id, at_ms } => self.mark_ended(session_id, at(*at_ms)).await.map(|_| ()),
            OutboxOp::Touch { session_id, at_ms } => self.touch_replay(session_id, at(*at_ms)).await,
            OutboxOp::Audit { .. } => self.audit(op).await,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `auditlogs` collection (read and purged by [`super::audit`]).
    pub fn audit_logs(&self) -> &Collection<Document> {
        &self.audit
    }
}
