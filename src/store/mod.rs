//! Where sessions and the audit trail are kept. The `Store` trait itself is a port of the
//! domain (`signalgrid_actors::ports::Store`); this module holds its implementations.
//!
//! - [`embedded`]: SQLite in one file under the data directory (the default; several node
//!   processes on one host may share the file).

pub mod embedded;

use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use signalgrid_actors::ports::{EndOutcome, Store, StoreError};
use signalgrid_config::Settings;

/// The store the settings select: the embedded one in `data_dir` unless a MongoDB URI is set.
pub async fn open(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    if settings.store.mongodb_uri.is_some() {
        return Err(StoreError::Other("the MongoDB store is not available in this build".into()));
    }
    Ok(Arc::new(EmbeddedStore::open(&settings.data_dir)?))
}
