//! `[cluster]`: clustering over NATS (connection, credentials, liveness, the publish queue).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{redact, redact_url};

/// Clustering over NATS. Without `nats_url` a node runs alone.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS server(s), comma-separated (`nats://host:4222`).
    pub nats_url: Option<String>,
    /// Nodes with the same name form one cluster; subjects start `signalgrid.<name>.`.
    pub name: String,
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    pub nats_token: Option<String>,
    /// A NATS credentials file (JWT + nkey).
    pub nats_creds_path: Option<PathBuf>,
    /// CA certificate (PEM) to verify the NATS server; implies TLS.
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS with NATS.
    pub nats_tls_cert: Option<PathBuf>,
    pub nats_tls_key: Option<PathBuf>,
    /// How often a node announces itself, in milliseconds.
    pub presence_ms: u64,
    /// A node not heard from for this long is dead: its members leave their rooms.
    pub dead_after_ms: u64,
    /// The queue of frames waiting to be published to NATS.
    pub queue: PublishQueueSettings,
}

/// The node's queue of frames for other nodes (relays and room events), between the actors
/// and the NATS client. Bounded in bytes, so that a NATS outage cannot grow a node's memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishQueueSettings {
    /// Bytes the queue may hold (payload, subject and a fixed per-frame overhead); frames
    /// beyond it are dropped and counted.
    pub max_bytes: usize,
    /// A relay that waited longer than this, in milliseconds, is dropped instead of
    /// published: a late offer or ICE candidate is worse than a lost one (WebRTC retries).
    pub relay_max_age_ms: u64,
}

impl Default for PublishQueueSettings {
    fn default() -> Self {
        PublishQueueSettings { max_bytes: 4 * 1024 * 1024, relay_max_age_ms: 1_000 }
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            nats_url: None,
            name: "default".into(),
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_creds_path: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            presence_ms: 1_000,
            dead_after_ms: 5_000,
            queue: PublishQueueSettings::default(),
        }
    }
}

impl fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("name", &self.name)
            .field("nats_user", &self.nats_user)
            .field("nats_password", &redact(&self.nats_password))
            .field("nats_token", &redact(&self.nats_token))
            .field("nats_creds_path", &self.nats_creds_path)
            .field("nats_tls_ca", &self.nats_tls_ca)
            .field("nats_tls_cert", &self.nats_tls_cert)
            .field("nats_tls_key", &self.nats_tls_key)
            .field("presence_ms", &self.presence_ms)
            .field("dead_after_ms", &self.dead_after_ms)
            .field("queue", &self.queue)
            .finish()
    }
}
