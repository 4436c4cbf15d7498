//! Where sessions and the audit trail are kept. The `Store` trait itself is a port of the
//! domain (`signalgrid_actors::ports::Store`); this module holds its implementations and
//! chooses one from the settings. It owns no rules about calls.
//!
//! - [`embedded`]: SQLite in one file under the data directory (the default; several node
//!   processes on one host may share the file).
//! - [`mongo`]: the platform's MongoDB (`store.mongodb_uri`), with a durable [`outbox`] on
//!   the node for call records written while MongoDB is unreachable.

pub mod embedded;
pub mod mongo;
pub mod outbox;
pub mod retention;

use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use mongo::{MongoConfig, MongoStore};
pub use signalgrid_actors::ports::{EndOutcome, Store, StoreError};
use signalgrid_config::Settings;

/// The store the settings select: MongoDB when `store.mongodb_uri` is set, else the embedded
/// one in `data_dir`.
pub async fn open(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    let Some(uri) = &settings.store.mongodb_uri else {
        return Ok(Arc::new(EmbeddedStore::open(&settings.data_dir)?));
    };
    // The outbox gauge needs the process's recorder installed before its first value.
    crate::telemetry::metrics();
    let cfg = MongoConfig {
        uri: uri.clone(),
        database: settings.store.mongodb_database.clone(),
        data_dir: settings.data_dir.clone(),
        start_unready: settings.store.start_unready,
        outbox_max: settings.store.outbox_max,
    };
    Ok(Arc::new(MongoStore::open(&cfg).await?))
}
