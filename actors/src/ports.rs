//! The traits the edges fulfil: where sessions are stored (`Store`), who is in which room
//! across the cluster (`Membership`), and how frames reach other nodes (`Bus`).
//!
//! Implementations live outside this crate: the embedded and MongoDB stores in the binary,
//! the in-process and NATS membership/bus in `signalgrid-cluster`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::session::{AuditEntry, NewSession, Session};
use crate::{ConnId, NodeId, RoomId};

/// A store failure. `Unavailable` is transient (retry later; REST says 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

/// What ending a call did.
#[derive(Debug, Clone, PartialEq)]
pub enum EndOutcome {
    /// The session now has `videoCallEnded`, `callDuration`, status Completed (this call or an
    /// earlier one: ending is idempotent and keeps the first end).
    Ended(Session),
    /// No `videoCallStarted`: nothing changed.
    NotStarted,
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
    async fn mark_started(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError>;
    /// Sets `videoCallEnded`, `callDuration` (from the stored start), status Completed.
    async fn mark_ended(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<EndOutcome>, StoreError>;
    /// `lastAccessedAt = at`, `accessCount += 1`.
    async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// The audit trail of one session, oldest first.
    async fn audit_trail(&self, session_id: &str) -> Result<Vec<AuditEntry>, StoreError>;
    /// Answers when the store can serve requests (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Makes every acknowledged write durable (called on shutdown).
    async fn flush(&self) -> Result<(), StoreError>;
}

/// One member of a room, wherever it is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub conn_id: ConnId,
    pub user_id: String,
    pub user_name: String,
    pub user_role: String,
    pub node_id: NodeId,
}

/// What a successful join changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// The room's members after the join, the joiner included.
    pub members: Vec<Member>,
    /// The same user's earlier connection, which the join replaced.
    pub replaced: Option<Member>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("room is full")]
    Full,
    #[error("membership unavailable: {0}")]
    Unavailable(String),
}

/// Shared room membership. `join` is atomic across the cluster: capacity and
/// replace-on-rejoin hold even when several nodes admit members at the same instant.
#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Admits `member`, replacing a member with the same user id, unless that would put more
    /// than `capacity` members in the room.
    async fn join(
        &self,
        room: &RoomId,
        member: Member,
        capacity: usize,
    ) -> Result<JoinOutcome, MembershipError>;
    /// Removes a connection; returns it if it was a member.
    async fn leave(&self, room: &RoomId, conn: &ConnId) -> Result<Option<Member>, MembershipError>;
    /// The room's members (empty for an unknown room).
    async fn members(&self, room: &RoomId) -> Result<Vec<Member>, MembershipError>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("no route to node {0}")]
    NoRoute(String),
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Carries frames between nodes. Delivery is at most once: a lost frame is a lost ICE
/// candidate or offer, which WebRTC clients already retry or renegotiate.
pub trait Bus: Send + Sync + 'static {
    /// Sends an encoded frame to connection `to` on node `node`.
    fn deliver(&self, node: &NodeId, to: &ConnId, frame: String) -> Result<(), BusError>;
    /// Sends an encoded frame to every member of `room` on other nodes, except `except`.
    fn broadcast(
        &self,
        room: &RoomId,
        frame: String,
        except: Option<&ConnId>,
    ) -> Result<(), BusError>;
}

/// The ports a node is started with.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub membership: Arc<dyn Membership>,
    pub bus: Arc<dyn Bus>,
}
