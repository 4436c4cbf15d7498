//! signalgrid's domain: what a call is and how its participants meet.
//!
//! Map of the crate:
//! - [`errors`]: the contract's error codes, their HTTP status and default message: the one
//!   place a failure becomes a code.
//! - [`identity`]: who is calling (from a verified token; never from a message body).
//! - [`session`]: the platform's appointment (a `Session`), the audit trail entries.
//! - [`rules`]: join rules, the time window and call duration, as pure functions.
//! - [`protocol`]: WebSocket frames: decoding client events, encoding server events.
//! - [`ports`]: the traits the edges fulfil: `Store`, `Membership`, `Bus`.
//! - [`budget`], [`intake`]: what a client may send (frames and bytes a second), and how
//!   much of it may wait for its actor.
//! - [`outbound`]: the bounded per-connection send queue (a full one disconnects the client).
//! - [`room`], [`rooms`]: the RoomActor and its supervisor/registry.
//! - [`connection`], [`connections`]: the ConnectionActor and its supervisor.
//! - [`control`]: the server API's side: rooms, kicks, closes and session changes for the
//!   whole cluster.
//! - [`node`]: the supervision tree of one node and the handle the edges use.
//! - [`telemetry`]: metric names and pre-registered handles for the hot path.
//! - [`webhook`]: webhook events: who emits which, their ids and payloads, the node's writer.
//!
//! This crate imports no NATS, HTTP framework or database client: it only names traits.

pub mod auto_end;
pub mod budget;
pub mod connection;
pub mod connections;
pub mod control;
pub mod ctx;
pub mod errors;
pub mod identity;
pub mod intake;
pub mod msg;
pub mod node;
pub mod outbound;
pub mod ports;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod rooms;
pub mod routing;
pub mod rules;
pub mod seat;
pub mod session;
pub mod telemetry;
pub mod webhook;

/// Opaque, cluster-unique connection id (the seed's `socketId`).
pub type ConnId = std::sync::Arc<str>;
/// A room id: the session's `meetingLink`.
pub type RoomId = std::sync::Arc<str>;
/// A node's id.
pub type NodeId = std::sync::Arc<str>;

/// Makes a new connection id: 128 random bits, hex, no dashes.
pub fn new_conn_id() -> ConnId {
    uuid::Uuid::new_v4().simple().to_string().into()
}
