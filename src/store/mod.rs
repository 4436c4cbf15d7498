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
pub mod pace;
pub mod retention;
pub mod seal;

use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use mongo::{MongoConfig, MongoStore};
pub use signalgrid_actors::ports::{EndOutcome, Store, StoreError};
use signalgrid_config::Settings;

/// The store the settings select: MongoDB when `store.mongodb_uri` is set, else the embedded
/// one in `data_dir`. With `store.encryption_keys`, it seals what it writes about people
/// ([`seal`]). Errors: a malformed key (naming its kid), stored values sealed with a kid not
/// configured (naming it), the store's own failures.
pub async fn open(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match open_kind(settings).await? {
        Opened::Embedded(s) => Arc::new(s),
        Opened::Mongo(s) => Arc::new(s),
    })
}

/// [`open`] for a maintenance command that writes in batches (`store purge`): the embedded
/// store then checkpoints after its own commits
/// ([`EmbeddedStore::checkpoint_after_commits`]).
pub async fn open_for_maintenance(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match open_kind(settings).await? {
        Opened::Embedded(s) => {
            s.checkpoint_after_commits().await?;
            Arc::new(s)
        }
        Opened::Mongo(s) => Arc::new(s),
    })
}

/// [`open_for_maintenance`], as the store's `rotate-key` side.
pub async fn open_reseal(settings: &Settings) -> Result<Box<dyn seal::Reseal>, StoreError> {
    Ok(match open_kind(settings).await? {
        Opened::Embedded(s) => {
            s.checkpoint_after_commits().await?;
            Box::new(s)
        }
        Opened::Mongo(s) => Box::new(s),
    })
}

enum Opened {
    Embedded(EmbeddedStore),
    Mongo(MongoStore),
}

async fn open_kind(settings: &Settings) -> Result<Opened, StoreError> {
    let keys = seal::Keyring::from_settings(settings)?;
    let Some(uri) = &settings.store.mongodb_uri else {
        return Ok(Opened::Embedded(EmbeddedStore::open_with(&settings.data_dir, keys)?));
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
    Ok(Opened::Mongo(MongoStore::open_with(&cfg, keys).await?))
}
