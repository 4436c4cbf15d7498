//! signalgrid: WebRTC signaling for a therapy platform's video calls.
//!
//! This crate is a node's edges and wiring; the domain lives in `signalgrid-actors`.
//! - [`cli`]: the command line (`serve`, `token`, `session create`, `admin`, `audit`, `store`).
//! - [`admin_cli`]: `signalgrid admin`, the operator's view of a cluster.
//! - [`audit_cli`]: `signalgrid audit export`, `store purge`, and a node's retention task.
//! - [`server`]: starting a node on a bound listener (plain or TLS) and shutting it down.
//! - [`conn_caps`]: caps on open connections per client IP and in total, at accept.
//! - [`body_deadline`]: the deadline for a whole request body.
//! - [`forwarded`]: the client's address behind a trusted load balancer (`X-Forwarded-For`).
//! - [`app`]: the state the edges share.
//! - [`http`]: REST on warp: routes, error shape, request context, rate limits.
//! - [`ws`]: the WebSocket upgrade and the per-socket read/write task.
//! - [`auth`]: verifying and minting JWTs.
//! - [`ice`]: STUN/TURN settings for clients.
//! - [`store`]: `Store` implementations (the embedded SQLite store).
//! - [`telemetry`]: logs and the Prometheus recorder.
//! - [`redact`]: masks secrets in every log line.
//! - [`webhooks`]: delivering the store's queued webhook events, signed, with retries.

pub mod admin_cli;
pub mod app;
pub mod audit_cli;
pub mod auth;
pub mod body_deadline;
pub mod cli;
pub mod conn_caps;
pub mod forwarded;
pub mod http;
pub mod ice;
pub mod redact;
pub mod server;
pub mod store;
pub mod store_cli;
pub mod telemetry;
pub mod webhooks;
pub mod ws;

pub use signalgrid_config::Settings;
