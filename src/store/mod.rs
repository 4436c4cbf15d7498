//! Where sessions and the audit trail are kept. The `Store` trait itself is a port of the
//! domain (`signalgrid_actors::ports::Store`); this module holds its implementations.
//!
//! - [`embedded`]: SQLite in one file under the data directory (the default; several node
//!   processes on one host may share the file).

pub mod embedded;

pub use embedded::EmbeddedStore;
pub use signalgrid_actors::ports::{EndOutcome, Store, StoreError};
