//! Webhook events (PROTOCOL.md section 7): what happened in rooms and calls, built here and
//! handed, in the order this node saw it, to the store's durable queue. Delivery is the
//! binary's (src/webhooks); the queue is the store's (`Store::enqueue_webhooks` and after).
//!
//! Who emits what (docs/integration.md, "Webhooks"): every node whose RoomActor applies a
//! membership change emits the events of that change, and the store keeps each event once:
//!
//! - `participant.*` have ids derived from the room, the seat and the seat's join time (and
//!   for `reconnecting`/`reconnected`, the time it went away), so the copies several nodes
//!   emit for one change are one event; the store ignores an id it already holds.
//! - `room.started` is kept only when the room is not already live in the store, and makes it
//!   live; `room.finished` only when it is live, and ends it (with `durationSeconds` from the
//!   live row's start). The store does both atomically.
//! - `call.started` / `call.ended` come from the node whose store write started or ended the
//!   call (the first start and the first end win in the store, so once per call).
//!
//! A node emits, for a room, everything it sees from the moment its RoomActor starts (its
//! first read of membership counts as the members' joins), in order, through one writer.
//! So each node's copy of a room's stream is in causal order. Delivery follows `createdAt`
//! within a room, then the store's order of first insertion: `participant.joined` before its
//! `left`, `room.started` first and `room.finished` last, and a `call.started` queued only
//! after its start's store write (a short call's `room.finished` may be queued first) still
//! goes before `room.finished`.
//!
//! Must not: talk HTTP or sign anything (the deliverer does, at each attempt).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::ports::{LeaveReason, Member, Store, StoreError};
use crate::RoomId;

/// How the store decides whether to keep an event (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Kept unless an event with the same id is already queued (or was delivered).
    Unique,
    /// Kept only if the room is not live; makes it live from `createdAt`.
    RoomStarted,
    /// Kept only if the room is live; ends it and sets `data.durationSeconds` (whole seconds
    /// from the live row's start to this event's `createdAt`).
    RoomFinished,
}

/// An event ready for the durable queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// The event's `id` (a UUID-shaped hex string).
    pub id: String,
    /// The ordering key: the room id, or `session:<id>` for a call event without a room.
    pub room: String,
    /// `type`, e.g. `participant.joined`.
    pub kind: &'static str,
    pub created_at: DateTime<Utc>,
    /// The whole payload, `{"id","type","createdAt","data"}`: sent verbatim on every attempt.
    pub body: Value,
    pub rule: Rule,
}

/// An event a node claimed for one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    pub id: String,
    pub room: String,
    pub created_at: DateTime<Utc>,
    /// The raw JSON body (the signature covers exactly these bytes).
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Receivers (URLs) that already answered 2xx: not sent again.
    pub acked: Vec<String>,
}

/// What one attempt at a claimed event came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Every receiver answered 2xx: done; the room's next event may go.
    Delivered,
    /// Not every receiver answered 2xx: try again at `next_at`, skipping `acked`.
    Retry { next_at: DateTime<Utc>, acked: Vec<String> },
    /// Past `webhooks.max_age_secs`: given up; the room's next event may go.
    GiveUp,
}

/// The queue at a glance (metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Events waiting for delivery.
    pub waiting: u64,
    /// `createdAt` of the oldest waiting event.
    pub oldest: Option<DateTime<Utc>>,
}

/// Event types.
pub mod kind {
    pub const ROOM_STARTED: &str = "room.started";
    pub const ROOM_FINISHED: &str = "room.finished";
    pub const JOINED: &str = "participant.joined";
    pub const LEFT: &str = "participant.left";
    pub const RECONNECTING: &str = "participant.reconnecting";
    pub const RECONNECTED: &str = "participant.reconnected";
    pub const WAITING: &str = "participant.waiting";
    pub const ADMITTED: &str = "participant.admitted";
    pub const DENIED: &str = "participant.denied";
    pub const CALL_STARTED: &str = "call.started";
    pub const CALL_ENDED: &str = "call.ended";
}

/// Events this node could not hand to the store (writer queue full, or the store's bound).
pub const DROPPED: &str = "signalgrid_webhooks_dropped_total";

/// ISO 8601 with milliseconds, UTC (`2026-05-01T10:00:00.000Z`).
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A UUID-shaped id derived from `parts`: the same parts give the same id on every node.
pub fn derived_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let x: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An event before the writer knows its session (found from the room when not given).
struct Pending {
    id: String,
    kind: &'static str,
    room: Option<RoomId>,
    session_id: Option<String>,
    at: DateTime<Utc>,
    data: Map<String, Value>,
    rule: Rule,
}

/// Events waiting for the writer at most; past this they are dropped (and counted).
const QUEUE: usize = 65_536;
/// Events handed to the store at once (one transaction in SQLite).
const BATCH: usize = 256;
/// Rooms whose session the writer remembers.
const SESSIONS_MAX: usize = 10_000;

/// This node's event emitter: off unless webhooks are configured.
#[derive(Default)]
pub struct Events {
    enabled: bool,
    max_waiting: u64,
    pending: Arc<AtomicUsize>,
    queue: OnceLock<tokio::sync::mpsc::Sender<Pending>>,
    /// Notified each time the writer has put events in the store (the deliverer waits on it).
    stored: Arc<tokio::sync::Notify>,
}

impl Events {
    /// Emits events only when `enabled`; the store keeps at most `max_waiting` waiting.
    pub fn new(enabled: bool, max_waiting: u64) -> Events {
        Events { enabled, max_waiting, ..Events::default() }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Notified whenever this node's writer has put events in the store.
    pub fn stored(&self) -> Arc<tokio::sync::Notify> {
        self.stored.clone()
    }

    fn push(&self, p: Pending, store: &Arc<dyn Store>) {
        if !self.enabled {
            return;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            let (pending, stored) = (self.pending.clone(), self.stored.clone());
            tokio::spawn(writer(rx, store.clone(), self.max_waiting, pending, stored));
            tx
        });
        self.pending.fetch_add(1, Ordering::AcqRel);
        if queue.try_send(p).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(DROPPED).increment(1);
            tracing::error!("webhook event dropped: the node's event queue is full");
        }
    }

    /// Waits until the events emitted so far are in the store (or `timeout` passed).
    pub async fn settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// What a membership change means for the platform: `was_empty`/`now_empty` say whether
    /// the room had members before and after it. Waiting clients (PROTOCOL.md sections 7, 8
    /// and 10): an `added` member that waits is `participant.waiting`; an `admitted` one is
    /// `participant.admitted` then `participant.joined`; a waiting member removed with reason
    /// `denied` is `participant.denied` (other removals of a waiting member are
    /// `participant.left`, so each `waiting` is closed by one `admitted`, `denied` or `left`).
    #[allow(clippy::too_many_arguments)]
    pub fn room_changed(
        &self,
        store: &Arc<dyn Store>,
        room: &RoomId,
        was_empty: bool,
        now_empty: bool,
        removed: &[(Member, LeaveReason)],
        added: &[Member],
        admitted: &[Member],
        away: &[Member],
        back: &[(Member, i64)],
    ) {
        if !self.enabled {
            return;
        }
        let now = Utc::now();
        let ev = |id: String, kind, data: Value, rule| Pending {
            id,
            kind,
            room: Some(room.clone()),
            session_id: None,
            at: now,
            data: match data {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            rule,
        };
        // Named after the room's first member as this node saw it, so that a late copy of an
        // earlier life's `room.started` is known to the store and cannot open a new life.
        if let Some(first) = added.iter().filter(|_| was_empty).min_by_key(|m| (m.joined_at_ms, m.conn_id.clone())) {
            let id = derived_id(&[room, &first.conn_id, &first.joined_at_ms.to_string(), kind::ROOM_STARTED]);
            self.push(ev(id, kind::ROOM_STARTED, json!({}), Rule::RoomStarted), store);
        }
        let seat = |m: &Member| json!({ "socketId": &*m.conn_id, "userId": m.user_id, "role": m.user_role, "nodeId": &*m.node_id });
        let joined_at = |m: &Member| m.joined_at_ms.to_string();
        let plain = |m: &Member| json!({ "socketId": &*m.conn_id, "userId": m.user_id });
        for m in added {
            if m.waiting {
                let id = derived_id(&[room, &m.conn_id, &joined_at(m), kind::WAITING]);
                self.push(ev(id, kind::WAITING, plain(m), Rule::Unique), store);
                continue;
            }
            let id = derived_id(&[room, &m.conn_id, &joined_at(m), kind::JOINED]);
            self.push(ev(id, kind::JOINED, seat(m), Rule::Unique), store);
        }
        for m in admitted {
            let id = derived_id(&[room, &m.conn_id, &joined_at(m), kind::ADMITTED]);
            self.push(ev(id, kind::ADMITTED, plain(m), Rule::Unique), store);
            let id = derived_id(&[room, &m.conn_id, &joined_at(m), kind::JOINED]);
            self.push(ev(id, kind::JOINED, seat(m), Rule::Unique), store);
        }
        for m in away {
            let away = m.away_since_ms.unwrap_or_default().to_string();
            let id = derived_id(&[room, &m.conn_id, &joined_at(m), &away, kind::RECONNECTING]);
            let data = json!({ "socketId": &*m.conn_id, "userId": m.user_id });
            self.push(ev(id, kind::RECONNECTING, data, Rule::Unique), store);
        }
        for (m, away_since) in back {
            let id = derived_id(&[room, &m.conn_id, &joined_at(m), &away_since.to_string(), kind::RECONNECTED]);
            let data = json!({ "socketId": &*m.conn_id, "userId": m.user_id });
            self.push(ev(id, kind::RECONNECTED, data, Rule::Unique), store);
        }
        for (m, reason) in removed {
            if m.waiting && *reason == LeaveReason::Denied {
                let id = derived_id(&[room, &m.conn_id, &joined_at(m), kind::DENIED]);
                self.push(ev(id, kind::DENIED, plain(m), Rule::Unique), store);
                continue;
            }
            let id = derived_id(&[room, &m.conn_id, &joined_at(m), kind::LEFT]);
            let mut data = seat(m);
            data["reason"] = json!(reason.as_str());
            let secs = if m.joined_at_ms > 0 { (now.timestamp_millis() - m.joined_at_ms).max(0) / 1000 } else { 0 };
            data["durationSeconds"] = json!(secs);
            self.push(ev(id, kind::LEFT, data, Rule::Unique), store);
        }
        if now_empty && !was_empty {
            self.push(ev(random_id(), kind::ROOM_FINISHED, json!({}), Rule::RoomFinished), store);
        }
    }

    /// `call.started`: this node's store write started the call at `at`.
    pub fn call_started(&self, store: &Arc<dyn Store>, session_id: &str, room: Option<&RoomId>, at: DateTime<Utc>) {
        let data = json!({ "startedAt": iso(at) });
        self.call_event(store, kind::CALL_STARTED, session_id, room, at, data);
    }

    /// `call.ended`: this node's store write ended the call at `at` (`ended_by`: the user who
    /// sent `call-ended`, None when the call ended by itself).
    pub fn call_ended(
        &self,
        store: &Arc<dyn Store>,
        session_id: &str,
        room: Option<&RoomId>,
        at: DateTime<Utc>,
        duration_minutes: i64,
        ended_by: Option<&str>,
    ) {
        let data = json!({ "endedAt": iso(at), "durationMinutes": duration_minutes, "endedBy": ended_by });
        self.call_event(store, kind::CALL_ENDED, session_id, room, at, data);
    }

    fn call_event(
        &self,
        store: &Arc<dyn Store>,
        kind: &'static str,
        session_id: &str,
        room: Option<&RoomId>,
        at: DateTime<Utc>,
        data: Value,
    ) {
        let Value::Object(data) = data else { return };
        let id = derived_id(&[session_id, kind, &at.timestamp_millis().to_string()]);
        let p = Pending {
            id,
            kind,
            room: room.cloned(),
            session_id: Some(session_id.to_owned()),
            at,
            data,
            rule: Rule::Unique,
        };
        self.push(p, store);
    }
}

/// The payload of `p` for session `session_id`.
fn queued(p: Pending, session_id: Option<String>) -> QueuedEvent {
    let room_key = match (&p.room, &session_id) {
        (Some(r), _) => r.to_string(),
        (None, Some(s)) => format!("session:{s}"),
        (None, None) => String::new(),
    };
    let mut data = Map::new();
    data.insert("roomId".into(), p.room.as_deref().map_or(Value::Null, |r| json!(r)));
    data.insert("sessionId".into(), session_id.map_or(Value::Null, Value::String));
    data.extend(p.data);
    let body = json!({ "id": p.id, "type": p.kind, "createdAt": iso(p.at), "data": data });
    QueuedEvent { id: p.id, room: room_key, kind: p.kind, created_at: p.at, body, rule: p.rule }
}

/// The one writer of a node: takes what is queued (up to a batch), finds each event's
/// session, and hands the batch to the store in order. A store that is away is retried (the
/// batch keeps its place) until it answers.
async fn writer(
    mut rx: tokio::sync::mpsc::Receiver<Pending>,
    store: Arc<dyn Store>,
    max_waiting: u64,
    pending: Arc<AtomicUsize>,
    stored: Arc<tokio::sync::Notify>,
) {
    let mut sessions: HashMap<RoomId, String> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len();
        let mut events = Vec::with_capacity(n);
        for p in batch.drain(..) {
            let session = match (&p.session_id, &p.room) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(room)) => session_of(&*store, &mut sessions, room).await,
                (None, None) => None,
            };
            events.push(queued(p, session));
        }
        let mut pause = Duration::from_millis(100);
        loop {
            match store.enqueue_webhooks(events.clone(), max_waiting).await {
                Ok(dropped) => {
                    if dropped > 0 {
                        metrics::counter!(DROPPED).increment(dropped as u64);
                        tracing::error!(dropped, max_waiting, "webhook events dropped: too many waiting");
                    }
                    break;
                }
                Err(StoreError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "webhook events wait for the store");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    metrics::counter!(DROPPED).increment(n as u64);
                    tracing::error!(error = %e, count = n, "webhook events not queued");
                    break;
                }
            }
        }
        pending.fetch_sub(n, Ordering::AcqRel);
        stored.notify_one();
    }
}

/// The session of `room` (its `meetingLink`), remembered.
async fn session_of(store: &dyn Store, cache: &mut HashMap<RoomId, String>, room: &RoomId) -> Option<String> {
    if let Some(s) = cache.get(room) {
        return Some(s.clone());
    }
    for _ in 0..20 {
        match store.session_by_room(room).await {
            Ok(Some(s)) => {
                if cache.len() >= SESSIONS_MAX {
                    cache.clear();
                }
                cache.insert(room.clone(), s.id.clone());
                return Some(s.id);
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(room = %room, error = %e, "session of a webhook event not found yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_uuid_shaped() {
        let a = derived_id(&["room", "seat", "1", kind::JOINED]);
        assert_eq!(a, derived_id(&["room", "seat", "1", kind::JOINED]));
        assert_ne!(a, derived_id(&["room", "seat", "2", kind::JOINED]));
        assert_ne!(derived_id(&["ab", "c"]), derived_id(&["a", "bc"]));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn payload_shape() {
        let p = Pending {
            id: "e1".into(),
            kind: kind::CALL_STARTED,
            room: None,
            session_id: None,
            at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            data: json!({ "startedAt": "x" }).as_object().unwrap().clone(),
            rule: Rule::Unique,
        };
        let q = queued(p, Some("s1".into()));
        assert_eq!(q.room, "session:s1");
        assert_eq!(
            q.body,
            json!({ "id": "e1", "type": "call.started", "createdAt": "2023-11-14T22:13:20.123Z",
                    "data": { "roomId": null, "sessionId": "s1", "startedAt": "x" } })
        );
    }
}
