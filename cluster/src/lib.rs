//! Implementations of the domain's cluster traits (`Membership`, `Bus`).
//!
//! - [`local`]: in-process versions for a single node with no NATS;
//! - [`nats`]: the cluster over NATS (JetStream KV membership, core NATS delivery, liveness,
//!   admin request/reply).

pub mod local;
pub mod nats;

pub use local::{LocalBus, LocalMembership};
