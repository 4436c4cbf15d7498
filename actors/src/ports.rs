//! The traits the edges fulfil: where sessions are stored (`Store`), who is in which room
//! across the cluster (`Membership`), and how frames reach other nodes (`Bus`).
//!
//! Implementations live outside this crate: the embedded and MongoDB stores in the binary,
//! the in-process and NATS membership/bus in `signalgrid-cluster`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::protocol::MediaState;
use crate::session::{AuditCursor, AuditEntry, AuditFilter, AuditPage, NewSession, Session, SessionPatch};
use crate::webhook::{Attempt, ClaimedEvent, QueuedEvent, WebhookStats};
use crate::{ConnId, NodeId, RoomId};

/// A store failure. `Unavailable` is transient (retry later; REST says 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

/// What ending a call did. (Returned once per call end, so the size gap between the variants
/// does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EndOutcome {
    /// The session now has `videoCallEnded`, `callDuration`, status Completed (this call or an
    /// earlier one: ending is idempotent and keeps the first end).
    Ended(Session),
    /// No `videoCallStarted`: nothing changed.
    NotStarted,
}

/// A started call not yet ended, as the sweep that ends calls by themselves sees it
/// (PROTOCOL.md section 8, "Calls end by themselves"; `crate::auto_end`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCall {
    pub session: Session,
    /// Since when the call's room has had no member, as recorded (`Store::room_empty`);
    /// None when nothing is recorded (it has members, or nobody has noticed yet).
    pub empty_since: Option<DateTime<Utc>>,
}

/// Durable sessions and audit trail. All writes are atomic per session and idempotent where
/// the contract says so, so that several nodes may share one store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError>;
    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// The session whose `meetingLink` is `room_id`.
    async fn session_by_room(&self, room_id: &str) -> Result<Option<Session>, StoreError>;
    /// Sets `meetingLink` to `candidate` unless it already has one; returns the session
    /// either way (None if there is no such session).
    async fn ensure_room(&self, id: &str, candidate: &str) -> Result<Option<Session>, StoreError>;
    /// Sets `videoCallStarted` (keeping an earlier one) and status In Progress.
    async fn mark_started(&self, id: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError>;
    /// Sets `videoCallEnded`, `callDuration` (from the stored start), status Completed.
    async fn mark_ended(&self, id: &str, at: DateTime<Utc>) -> Result<Option<EndOutcome>, StoreError>;
    /// `mark_ended`, also saying whether this very write ended the call (`true`) or found it
    /// ended already (`false`). The compare-and-set that lets exactly one of several nodes
    /// ending one call at the same instant record it (PROTOCOL.md section 8). A store that
    /// cannot tell (MongoDB away) answers `Unavailable` instead of guessing.
    async fn mark_ended_once(&self, id: &str, at: DateTime<Utc>) -> Result<Option<(EndOutcome, bool)>, StoreError>;
    /// Records that room `room` has had no member since `at` (Unix ms precision) and returns
    /// the time now kept: `overwrite` replaces a time already recorded (the room has just
    /// emptied again), otherwise a recorded time is kept (a sweep noticing it late).
    async fn room_empty(&self, room: &str, at: DateTime<Utc>, overwrite: bool) -> Result<DateTime<Utc>, StoreError>;
    /// Forgets room `room`'s empty-since time (it has members again, or its call ended).
    async fn room_occupied(&self, room: &str) -> Result<(), StoreError>;
    /// Up to `max` calls started and not ended (`videoCallStarted` set, `videoCallEnded`
    /// not), oldest start first, each with its room's empty-since time.
    async fn open_calls(&self, max: usize) -> Result<Vec<OpenCall>, StoreError>;
    /// Changes the fields `patch` sets (in one write); returns the stored session after it,
    /// None if there is no such session (`PATCH /api/sessions/:id`).
    async fn update_session(&self, id: &str, patch: &SessionPatch) -> Result<Option<Session>, StoreError>;
    /// `lastAccessedAt = at`, `accessCount += 1`.
    async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// The audit trail of one session, oldest first.
    async fn audit_trail(&self, session_id: &str) -> Result<Vec<AuditEntry>, StoreError>;
    /// At most `limit` entries matching `filter`, newest first (by timestamp, then by the
    /// store's id), strictly after `after` when given: a seek on (timestamp, id), never an
    /// offset, so pages stay stable while entries arrive (PROTOCOL.md section 10).
    async fn audit_page(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, StoreError>;
    /// How many entries match `filter`.
    async fn audit_count(&self, filter: &AuditFilter) -> Result<u64, StoreError>;
    /// Deletes up to `max` of the oldest entries with a timestamp before `before`; returns
    /// how many went. One bounded batch, so a caller purging a large backlog loops and
    /// other store calls run between its batches (retention, PROTOCOL.md section 9).
    async fn purge_audit(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError>;
    /// Answers when the store can serve requests (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Makes every acknowledged write durable (called on shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    // The durable webhook queue (PROTOCOL.md section 7; `crate::webhook`, docs/storage.md).

    /// Adds `events` to the queue in their order, each kept or not by its `rule`, in one
    /// atomic step per event. While `max_waiting` events wait, further ones are dropped:
    /// returns how many of `events` were. Within a room, delivery follows the events'
    /// `created_at`, then the order of first insertion: an event a node queues late (its
    /// store write was slow) still goes before the room's later events that wait.
    async fn enqueue_webhooks(&self, events: Vec<QueuedEvent>, max_waiting: u64) -> Result<usize, StoreError> {
        let _ = (events, max_waiting);
        Err(StoreError::Other("this store keeps no webhook queue".into()))
    }
    /// Claims for `owner`, until `lease_until`, at most `max` events that are each the first
    /// waiting event of their room (by `created_at`, then insertion), due by `now` (`next attempt <= now`) and not claimed by a
    /// lease still running. Atomic: two nodes never hold a claim on one event at once.
    async fn claim_webhooks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let _ = (owner, now, lease_until, max);
        Ok(Vec::new())
    }
    /// Records what an attempt at event `id` came to (and releases `owner`'s claim).
    async fn webhook_attempted(
        &self,
        id: &str,
        owner: &str,
        attempt: Attempt,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _ = (id, owner, attempt, now);
        Ok(())
    }
    /// How many events wait, and the oldest one's `createdAt`.
    async fn webhook_stats(&self) -> Result<WebhookStats, StoreError> {
        Ok(WebhookStats::default())
    }
    /// Deletes up to `max` events delivered or given up before `before`; returns how many.
    async fn purge_webhooks(&self, before: DateTime<Utc>, max: usize) -> Result<u64, StoreError> {
        let _ = (before, max);
        Ok(0)
    }
}

/// One member of a room (a seat), wherever it is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub conn_id: ConnId,
    pub user_id: String,
    pub user_name: String,
    pub user_role: String,
    pub node_id: NodeId,
    /// Since when the seat has had no socket (Unix ms), while it waits for a resume
    /// (PROTOCOL.md section 6); None while connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away_since_ms: Option<i64>,
    /// The member's last `media-state` (PROTOCOL.md section 8), once it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaState>,
    /// A client in the waiting room: listed so that every node's hosts see it, but not in
    /// the room (no seat taken, no route, told nothing) until a host admits it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
    /// When the seat joined the room (Unix ms; 0 when unknown). Names its webhook events
    /// and gives `participant.left` its `durationSeconds`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub joined_at_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Member {
    pub fn is_away(&self) -> bool {
        self.away_since_ms.is_some()
    }

    /// A host (PROTOCOL.md section 10): a psychologist or an admin, who may admit and deny.
    pub fn is_host(&self) -> bool {
        matches!(self.user_role.as_str(), "psychologist" | "admin")
    }
}

/// Why a member left a room: `user-left`'s `reason` (PROTOCOL.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// `leave-room`, or a close frame 1000/1001 from the client.
    Left,
    /// The same user joined from another connection.
    Replaced,
    /// An operator removed the participant.
    Kicked,
    /// An operator closed the room.
    RoomClosed,
    /// The resume window ran out while the seat was away.
    Timeout,
    /// Removed by the session's rules (section 8).
    Ejected,
    /// A waiting client a host turned away (only hosts hear of it: the client was never in
    /// the room).
    Denied,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Replaced => "replaced",
            LeaveReason::Kicked => "kicked",
            LeaveReason::RoomClosed => "room_closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Ejected => "ejected",
            LeaveReason::Denied => "denied",
        }
    }
}

/// A member that the change producing a snapshot removed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    pub conn_id: ConnId,
    pub reason: LeaveReason,
}

/// A room's members at one revision. Revisions grow with every change, so a node that sees
/// snapshots out of order (or twice) keeps the newest and notifies each change once.
/// `departed` says why members left in the change that made this revision (a node that
/// missed a revision falls back to `left`, or `timeout` for a member that was away).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub revision: u64,
    pub members: Vec<Member>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departed: Vec<Departure>,
}

impl RoomSnapshot {
    /// Why `conn` left in the change that made this snapshot, if it said.
    pub fn reason(&self, conn: &str) -> Option<LeaveReason> {
        self.departed.iter().find(|d| *d.conn_id == *conn).map(|d| d.reason)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("room is full")]
    Full,
    /// `settle_waiting` named a connection that is not waiting in the room.
    #[error("no such waiting member")]
    NotWaiting,
    #[error("membership unavailable: {0}")]
    Unavailable(String),
}

/// Shared room membership. Every change is atomic across the cluster (compare-and-set):
/// capacity and replace-on-rejoin hold even when several nodes admit members at once.
#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Admits `member`, removing any other connection of the same user, unless the room
    /// would then hold more than `capacity` members. Returns the room after the change.
    async fn join(&self, room: &RoomId, member: Member, capacity: usize) -> Result<RoomSnapshot, MembershipError>;
    /// Removes these connections (those present) for `reason`; returns the room after the
    /// change.
    async fn leave(
        &self,
        room: &RoomId,
        conns: &[ConnId],
        reason: LeaveReason,
    ) -> Result<RoomSnapshot, MembershipError>;
    /// Settles waiting member `conn` (the waiting room, PROTOCOL.md section 8) in one
    /// atomic change: `admit` makes it a member within `capacity` (`Full` if there is no
    /// seat), otherwise it is removed with reason `Denied`. `NotWaiting` (nothing changed) if
    /// `conn` is not a waiting member of the room.
    async fn settle_waiting(
        &self,
        room: &RoomId,
        conn: &str,
        admit: bool,
        capacity: usize,
    ) -> Result<RoomSnapshot, MembershipError>;
    /// The room as it is now (revision 0 and no members for an unknown room).
    async fn snapshot(&self, room: &RoomId) -> Result<RoomSnapshot, MembershipError>;
    /// Every room that has members.
    async fn rooms(&self) -> Result<Vec<RoomId>, MembershipError>;
    /// The room that holds seat `conn`, and its entry: one read per room with members (only
    /// a resume whose node died asks).
    async fn find(&self, conn: &str) -> Result<Option<(RoomId, Member)>, MembershipError> {
        for room in self.rooms().await? {
            if let Some(m) = self.snapshot(&room).await?.members.into_iter().find(|m| *m.conn_id == *conn) {
                return Ok(Some((room, m)));
            }
        }
        Ok(None)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("no route to node {0}")]
    NoRoute(String),
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// What nodes tell each other about a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RoomEvent {
    /// The room's membership changed; here is the new state.
    Membership(RoomSnapshot),
    /// A frame for every member except `except` (e.g. `call-ended`).
    Frame { frame: String, except: Option<ConnId> },
    /// An operator closed the room: every member is disconnected.
    Close,
    /// Disconnect these members with `code` (an operator's kick: `KICKED`), wherever they
    /// are connected; the node holding each one does it.
    Remove { conns: Vec<ConnId>, code: crate::errors::ErrorCode },
    /// The room's session changed (`PATCH /api/sessions/:id`): every node checks its own
    /// members against the session's rules again and reschedules the time limits.
    Session(Box<Session>),
}

/// The envelope of a relayed frame: the room it belongs to, its sender and its target. The
/// receiving node uses them to keep "as if on one node" ordering (a frame from a member it
/// has not yet announced waits until `user-joined` for that member is queued) and isolation
/// (sender and target must both be members of `room`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub room: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// Carries frames and room events between nodes. Delivery is at most once: a lost relay is
/// a lost ICE candidate or offer, which WebRTC clients retry or renegotiate; a lost
/// membership event is repaired by the next one or by the room's periodic resync.
pub trait Bus: Send + Sync + 'static {
    /// Sends an encoded frame to connection `delivery.to` on node `node`.
    fn deliver(&self, node: &NodeId, delivery: Delivery<'_>, frame: String) -> Result<(), BusError>;
    /// Tells every node watching `room` (this one included) about it.
    fn publish(&self, room: &RoomId, event: &RoomEvent) -> Result<(), BusError>;
    /// Starts receiving `room`'s events here (a room got local members).
    fn watch_room(&self, room: &RoomId);
    /// Stops receiving them (the room's last local member left).
    fn unwatch_room(&self, room: &RoomId);
    /// Asks `node` to hand seat `req.conn_id` over to this node (a resume that arrived here,
    /// PROTOCOL.md section 6). `Unreachable` when no node answers (it died, or there is no
    /// cluster).
    fn hand_over(&self, node: &NodeId, req: HandOverRequest) -> BoxFuture<Result<HandedOver, HandOverError>> {
        let _ = (node, req);
        Box::pin(async { Err(HandOverError::Unreachable) })
    }
}

/// A boxed future, for the async parts of object-safe ports.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A resume that arrived on another node: "give me this seat".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandOverRequest {
    pub conn_id: ConnId,
    /// The client's resume token, checked by the node that holds the seat.
    pub token: String,
    /// The last `seq` the client processed.
    pub last_seq: u64,
    /// The user of the resuming client's JWT.
    pub user_id: String,
    /// The node that takes the seat.
    pub to_node: NodeId,
}

/// A seat's room, as a hand-over carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatRoom {
    pub room_id: RoomId,
    pub session_id: String,
    pub member: Member,
}

/// What a seat's old node gives its new one: everything to carry on with nothing lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandedOver {
    /// The `seq` the next frame gets.
    pub next_seq: u64,
    /// The frames owed: `seq > last_seq`, in order, as sent (each with its `seq`).
    pub frames: Vec<(u64, String)>,
    pub room: Option<SeatRoom>,
    /// The resume token generation the new node issues next.
    pub generation: u64,
}

/// Why a hand-over did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum HandOverError {
    #[error("resume refused: {0}")]
    Refused(crate::seat::ResumeFailure),
    #[error("the seat's node did not answer")]
    Unreachable,
}

/// The ports a node is started with.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub membership: Arc<dyn Membership>,
    pub bus: Arc<dyn Bus>,
}
