//! `[drain]`: how a draining node lets its clients go (PROTOCOL.md section 6, "Drain").

use serde::Deserialize;

/// How a draining node closes its sockets: in batches, so that the clients resuming on the
/// other nodes do not all arrive at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainSettings {
    /// Sockets told `NODE_DRAINING` (close 1012) at once; at least 1.
    pub batch_size: usize,
    /// Wait between two batches, in milliseconds (0: no wait). The drain's own deadline
    /// still bounds the whole drain: sockets not told by then are told at once.
    pub batch_interval_ms: u64,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings { batch_size: 500, batch_interval_ms: 500 }
    }
}
