//! Implementations of the domain's cluster traits (`Membership`, `Bus`).
//!
//! For now: [`local`], the in-process versions for a single node with no NATS. The NATS
//! versions (JetStream KV membership, core NATS delivery) will live beside it.

pub mod local;

pub use local::{LocalBus, LocalMembership};
