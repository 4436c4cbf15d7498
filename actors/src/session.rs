//! The platform's appointment (a `Session`, with the video call fields) and the audit trail.
//!
//! Field names on the wire are the seed platform's (camelCase, `meetingLink`, `callDuration`,
//! ...). Owns the data shapes only; storing them is a `Store`'s job.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SessionType {
    Individual,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SessionStatus {
    Scheduled,
    #[serde(rename = "In Progress")]
    InProgress,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    Paid,
    Pending,
    Failed,
    Refunded,
}

macro_rules! wire_names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name used on the wire and in the store.
            pub fn as_str(self) -> &'static str { match self { $(Self::$v => $s),* } }
            /// Parses the wire name.
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some(Self::$v),)* _ => None } }
        }
    };
}
wire_names!(SessionType { Individual => "Individual", Group => "Group" });
wire_names!(SessionStatus {
    Scheduled => "Scheduled", InProgress => "In Progress", Completed => "Completed", Cancelled => "Cancelled"
});
wire_names!(PaymentStatus { Paid => "paid", Pending => "pending", Failed => "failed", Refunded => "refunded" });

/// One side of a session: a user id and the name to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Party {
    pub id: String,
    pub name: String,
}

/// A session as stored, video call fields included (null when unset). Deserialize: rooms
/// pass it between nodes when it changes (`RoomEvent::Session`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub client: Party,
    pub psychologist: Party,
    pub session_date: DateTime<Utc>,
    pub duration_minutes: i64,
    pub session_type: SessionType,
    pub status: SessionStatus,
    pub payment_status: PaymentStatus,
    pub meeting_link: Option<String>,
    pub is_video_call: bool,
    pub video_call_started: Option<DateTime<Utc>>,
    pub video_call_ended: Option<DateTime<Utc>>,
    pub call_duration: Option<i64>,
    pub recording_enabled: bool,
    pub recording_url: Option<String>,
    pub last_accessed_at: Option<DateTime<Utc>>,
    pub access_count: i64,
    pub created_at: DateTime<Utc>,
    /// Clients wait until a host admits them (PROTOCOL.md section 8).
    pub waiting_room: bool,
}

/// What a caller provides to create a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub client: Party,
    pub psychologist: Party,
    pub session_date: DateTime<Utc>,
    pub duration_minutes: i64,
    pub session_type: SessionType,
    pub payment_status: PaymentStatus,
    pub status: SessionStatus,
    /// Clients wait until a host admits them (default: config `rooms.waiting_room`).
    pub waiting_room: bool,
}

/// What `PATCH /api/sessions/:id` may change (`None`: left as it is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPatch {
    pub payment_status: Option<PaymentStatus>,
    pub status: Option<SessionStatus>,
    pub session_date: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    /// `waitingRoom` (PROTOCOL.md section 8): clients who join from now on wait, or do not.
    pub waiting_room: Option<bool>,
}

impl SessionPatch {
    /// Applies the patch to `s` (the stores write the same fields).
    pub fn apply(&self, s: &mut Session) {
        if let Some(p) = self.payment_status {
            s.payment_status = p;
        }
        if let Some(st) = self.status {
            s.status = st;
        }
        if let Some(d) = self.session_date {
            s.session_date = d;
        }
        if let Some(m) = self.duration_minutes {
            s.duration_minutes = m;
        }
        if let Some(w) = self.waiting_room {
            s.waiting_room = w;
        }
    }
}

/// The audit trail's actions: the seed's five, then v2's (PROTOCOL.md section 10, "Audit
/// API"). `AuditRead` is someone reading the trail through `GET /api/audit` or the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    JoinAttempt,
    JoinSuccess,
    CallStart,
    CallEnd,
    Error,
    AuditRead,
    Waiting,
    Admitted,
    Denied,
    Kicked,
    Ejected,
    Resumed,
    /// How many chat messages a participant sent in a room (never their text), written when
    /// it leaves the room (PROTOCOL.md section 8).
    Chat,
}
wire_names!(AuditAction {
    JoinAttempt => "join_attempt", JoinSuccess => "join_success", CallStart => "call_start",
    CallEnd => "call_end", Error => "error", AuditRead => "audit_read", Waiting => "waiting",
    Admitted => "admitted", Denied => "denied", Kicked => "kicked", Ejected => "ejected", Resumed => "resumed",
    Chat => "chat"
});

/// One audit record: who did what to which session, from where.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub session_id: String,
    pub user_id: String,
    pub action: AuditAction,
    pub timestamp: DateTime<Utc>,
    pub metadata: serde_json::Value,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

/// Which audit entries a read or a count covers (PROTOCOL.md section 10, "Audit API"). Every
/// field set must match; `from` and `to` are inclusive, at millisecond precision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub action: Option<AuditAction>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A place in the audit trail read newest first: the last entry a page returned, as its
/// timestamp (ms since the epoch) and the store's unique id for it (SQLite row id in decimal,
/// MongoDB ObjectId in hex). The next page holds the entries strictly older in
/// (timestamp, id) order, so entries written meanwhile are neither repeated nor skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub timestamp_ms: i64,
    pub id: String,
}

/// One page of the audit trail, newest first. `next` is None on the last page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<AuditCursor>,
}

/// Where a request or connection came from, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The current time at millisecond precision (what stores and the wire keep).
pub fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Makes a new 24-hex-digit id in the shape of a MongoDB ObjectId (time, random, counter).
pub fn new_object_id(now: DateTime<Utc>) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let secs = now.timestamp() as u32;
    let rnd = uuid::Uuid::new_v4();
    let r = rnd.as_bytes();
    let c = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    format!("{secs:08x}{:02x}{:02x}{:02x}{:02x}{:02x}{c:06x}", r[0], r[1], r[2], r[3], r[4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_24_hex_and_distinct() {
        let now = Utc::now();
        let a = new_object_id(now);
        let b = new_object_id(now);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn status_names_round_trip() {
        for s in
            [SessionStatus::Scheduled, SessionStatus::InProgress, SessionStatus::Completed, SessionStatus::Cancelled]
        {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
