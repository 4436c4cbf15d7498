//! The platform's document shapes: `sessions`, `users` (read for display names) and
//! `auditlogs`, and their conversion to and from the domain types.
//!
//! Owns field names and BSON types (documented in docs/storage.md). Does no I/O.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime as BsonDate, Document};
use signalgrid_actors::session::{
    AuditAction, AuditEntry, NewSession, Party, PaymentStatus, Session, SessionStatus, SessionType,
};

use super::super::outbox::OutboxOp;
use super::super::seal::{field, kid_of, Keyring, SealError};

/// Why a stored document could not be read as a domain value.
#[derive(Debug, thiserror::Error)]
#[error("{collection} document {id}: field {field} missing or of the wrong type")]
pub struct BadDocument {
    pub collection: &'static str,
    pub id: String,
    pub field: &'static str,
}

/// Why an `auditlogs` document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditDocError {
    #[error(transparent)]
    Bad(#[from] BadDocument),
    /// A sealed field does not open (names the kid).
    #[error("auditlogs document {id}: {source}")]
    Seal {
        id: String,
        #[source]
        source: SealError,
    },
}

/// A user reference: an ObjectId when the id is 24 hex digits (the platform's users), else
/// the id string itself (users of an identity provider that are not platform users).
pub fn user_ref(id: &str) -> Bson {
    match ObjectId::parse_str(id) {
        Ok(oid) if id.len() == 24 => Bson::ObjectId(oid),
        _ => Bson::String(id.to_owned()),
    }
}

/// The id string of a reference written by [`user_ref`] (or by the platform).
pub fn ref_str(b: &Bson) -> Option<String> {
    match b {
        Bson::ObjectId(o) => Some(o.to_hex()),
        Bson::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A session id as a filter value; None for ids that are not ObjectIds (no such session).
pub fn session_oid(id: &str) -> Option<ObjectId> {
    if id.len() != 24 {
        return None;
    }
    ObjectId::parse_str(id).ok()
}

pub fn date(t: DateTime<Utc>) -> BsonDate {
    BsonDate::from_millis(t.timestamp_millis())
}

pub fn date_ms(ms: i64) -> BsonDate {
    BsonDate::from_millis(ms)
}

fn chrono_of(d: &BsonDate) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(d.timestamp_millis())
}

fn opt_date(d: &Document, k: &str) -> Option<DateTime<Utc>> {
    d.get_datetime(k).ok().and_then(chrono_of)
}

fn int(d: &Document, k: &str) -> Option<i64> {
    match d.get(k)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(v.round() as i64),
        _ => None,
    }
}

fn opt_str(d: &Document, k: &str) -> Option<String> {
    d.get_str(k).ok().map(str::to_owned)
}

/// The new `sessions` document (with the seed's defaults for the video call fields;
/// `meetingLink` is left out, not null, so the sparse unique index ignores it).
pub fn new_session(id: ObjectId, n: &NewSession, now: DateTime<Utc>) -> Document {
    doc! {
        "_id": id,
        "client": user_ref(&n.client.id),
        "psychologist": user_ref(&n.psychologist.id),
        "sessionDate": date(n.session_date),
        "duration": n.duration_minutes,
        "sessionType": n.session_type.as_str(),
        "status": n.status.as_str(),
        "paymentStatus": n.payment_status.as_str(),
        "isVideoCall": true,
        "videoCallStarted": Bson::Null,
        "videoCallEnded": Bson::Null,
        "callDuration": 0_i64,
        "recordingEnabled": false,
        "recordingUrl": Bson::Null,
        "accessCount": 0_i64,
        "createdAt": date(now),
        "updatedAt": date(now),
        "waitingRoom": n.waiting_room,
    }
}

/// The two user references of a session document.
pub fn party_refs(d: &Document) -> Vec<Bson> {
    ["client", "psychologist"].iter().filter_map(|k| d.get(*k).cloned()).collect()
}

/// Reads a `sessions` document; `names` maps user id to display name (from `users`).
pub fn session_from(d: &Document, names: &HashMap<String, String>) -> Result<Session, BadDocument> {
    let id = d.get_object_id("_id").map(|o| o.to_hex()).unwrap_or_default();
    let bad = |field| BadDocument { collection: "sessions", id: id.clone(), field };
    let party = |k: &'static str| -> Result<Party, BadDocument> {
        let pid = d.get(k).and_then(ref_str).ok_or_else(|| bad(k))?;
        let name = names.get(&pid).cloned().unwrap_or_default();
        Ok(Party { id: pid, name })
    };
    let ended = opt_date(d, "videoCallEnded");
    Ok(Session {
        id: id.clone(),
        client: party("client")?,
        psychologist: party("psychologist")?,
        session_date: opt_date(d, "sessionDate").ok_or_else(|| bad("sessionDate"))?,
        duration_minutes: int(d, "duration").unwrap_or(0),
        session_type: d.get_str("sessionType").ok().and_then(SessionType::parse).ok_or_else(|| bad("sessionType"))?,
        status: d.get_str("status").ok().and_then(SessionStatus::parse).ok_or_else(|| bad("status"))?,
        payment_status: d
            .get_str("paymentStatus")
            .ok()
            .and_then(PaymentStatus::parse)
            .ok_or_else(|| bad("paymentStatus"))?,
        meeting_link: opt_str(d, "meetingLink"),
        is_video_call: d.get_bool("isVideoCall").unwrap_or(true),
        video_call_started: opt_date(d, "videoCallStarted"),
        video_call_ended: ended,
        // The seed's default is 0; a duration only means something once the call ended.
        call_duration: ended.map(|_| int(d, "callDuration").unwrap_or(0)),
        recording_enabled: d.get_bool("recordingEnabled").unwrap_or(false),
        recording_url: opt_str(d, "recordingUrl"),
        last_accessed_at: opt_date(d, "lastAccessedAt"),
        access_count: int(d, "accessCount").unwrap_or(0),
        created_at: opt_date(d, "createdAt")
            .or_else(|| d.get_object_id("_id").ok().and_then(|o| chrono_of(&o.timestamp())))
            .ok_or_else(|| bad("createdAt"))?,
        // Sessions written by the platform without the field have no waiting room.
        waiting_room: d.get_bool("waitingRoom").unwrap_or(false),
    })
}

/// An audit entry as an outbox record, with the document id it will be written under.
/// With keys, `ipAddress`, `userAgent` and `metadata` (as its JSON text) are sealed here,
/// so neither the outbox file nor the document holds their plaintext.
pub fn audit_op(e: &AuditEntry, k: &Keyring) -> OutboxOp {
    let metadata = if k.is_enabled() {
        serde_json::Value::String(k.seal(field::METADATA, &e.metadata.to_string()))
    } else {
        e.metadata.clone()
    };
    OutboxOp::Audit {
        doc_id: ObjectId::new().to_hex(),
        session_id: e.session_id.clone(),
        user_id: e.user_id.clone(),
        action: e.action.as_str().to_owned(),
        timestamp_ms: e.timestamp.timestamp_millis(),
        metadata,
        ip_address: k.seal_opt(field::IP_ADDRESS, e.ip_address.as_deref()),
        user_agent: k.seal_opt(field::USER_AGENT, e.user_agent.as_deref()),
    }
}

/// The `auditlogs` document of an [`OutboxOp::Audit`] (None for other records).
pub fn audit_doc(op: &OutboxOp) -> Option<Document> {
    let OutboxOp::Audit { doc_id, session_id, user_id, action, timestamp_ms, metadata, ip_address, user_agent } = op
    else {
        return None;
    };
    let id = ObjectId::parse_str(doc_id).unwrap_or_default();
    let meta = match mongodb::bson::to_bson(metadata) {
        Ok(b @ Bson::Document(_)) => b,
        // Sealed (a string), kept as it is.
        Ok(Bson::String(sealed)) if kid_of(&sealed).is_some() => Bson::String(sealed),
        Ok(other) => Bson::Document(doc! { "value": other }),
        Err(_) => Bson::Document(Document::new()),
    };
    let opt = |v: &Option<String>| v.clone().map(Bson::String).unwrap_or(Bson::Null);
    Some(doc! {
        "_id": id,
        "sessionId": user_ref(session_id),
        "userId": user_ref(user_id),
        "action": action.as_str(),
        "timestamp": date_ms(*timestamp_ms),
        "metadata": meta,
        "ipAddress": opt(ip_address),
        "userAgent": opt(user_agent),
    })
}

/// Reads an `auditlogs` document, its sealed fields opened with `k` (plaintext ones, written
/// before keys were set, as they are).
pub fn audit_from(d: &Document, k: &Keyring) -> Result<AuditEntry, AuditDocError> {
    let id = d.get_object_id("_id").map(|o| o.to_hex()).unwrap_or_default();
    let bad = |field| BadDocument { collection: "auditlogs", id: id.clone(), field };
    let sealed = |source| AuditDocError::Seal { id: id.clone(), source };
    let metadata = match d.get("metadata") {
        Some(Bson::String(s)) if kid_of(s).is_some() => {
            let text = k.open(field::METADATA, s).map_err(sealed)?;
            serde_json::from_str(&text).map_err(|_| bad("metadata"))?
        }
        Some(b) => b.clone().into_relaxed_extjson(),
        None => serde_json::json!({}),
    };
    let open = |name: &str| k.open_opt(name, d.get_str(name).ok()).map_err(sealed);
    Ok(AuditEntry {
        session_id: d.get("sessionId").and_then(ref_str).ok_or_else(|| bad("sessionId"))?,
        user_id: d.get("userId").and_then(ref_str).ok_or_else(|| bad("userId"))?,
        action: d.get_str("action").ok().and_then(AuditAction::parse).ok_or_else(|| bad("action"))?,
        timestamp: opt_date(d, "timestamp").ok_or_else(|| bad("timestamp"))?,
        metadata,
        ip_address: open(field::IP_ADDRESS)?,
        user_agent: open(field::USER_AGENT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_refs_keep_object_ids_and_strings() {
        let oid = "507f1f77bcf86cd799439011";
        assert_eq!(user_ref(oid), Bson::ObjectId(ObjectId::parse_str(oid).unwrap()));
        assert_eq!(user_ref("client-1"), Bson::String("client-1".into()));
        assert_eq!(ref_str(&user_ref(oid)).as_deref(), Some(oid));
        assert_eq!(ref_str(&user_ref("client-1")).as_deref(), Some("client-1"));
    }

    #[test]
    fn audit_round_trip() {
        let e = AuditEntry {
            session_id: "507f1f77bcf86cd799439011".into(),
            user_id: "u-1".into(),
            action: AuditAction::CallEnd,
            timestamp: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            metadata: serde_json::json!({ "duration": 45, "via": "rest" }),
            ip_address: Some("127.0.0.1".into()),
            user_agent: None,
        };
        let none = Keyring::default();
        let d = audit_doc(&audit_op(&e, &none)).unwrap();
        assert_eq!(audit_from(&d, &none).unwrap(), e);
        let k = Keyring::parse("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        let sealed = audit_doc(&audit_op(&e, &k)).unwrap();
        for f in ["metadata", "ipAddress"] {
            assert!(sealed.get_str(f).unwrap().starts_with("sg1:k1:"), "{sealed}");
        }
        assert!(!format!("{sealed}").contains("127.0.0.1") && !format!("{sealed}").contains("rest"));
        assert_eq!(audit_from(&sealed, &k).unwrap(), e);
        assert!(audit_from(&sealed, &none).unwrap_err().to_string().contains("\"k1\""));
    }
}
