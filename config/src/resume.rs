//! `[resume]`: how long a seat outlives its socket and what it keeps meanwhile
//! (PROTOCOL.md section 6).

use serde::Deserialize;

/// The resume window and the bounds of a seat's replay buffer.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeSettings {
    /// How long a seat whose socket was lost (no close frame, any close code but 1000/1001,
    /// heartbeat timeout, drain, node death) keeps its place, in milliseconds. Default 30,000.
    pub window_ms: u64,
    /// Most frames a seat keeps for replay (sent but not acknowledged, or owed while away).
    /// Default 4,096: more than `limits.outbound_queue`, so that a client dropped as a slow
    /// consumer can still resume.
    pub buffer_frames: usize,
    /// Most bytes of frames a seat keeps for replay. Default 1 MiB.
    pub buffer_bytes: usize,
    /// Key of the HMAC-SHA256 that signs resume tokens; every node of a cluster needs the
    /// same one. Unset: derived from `auth.jwt_secret`; with neither (public-key tokens
    /// only), a random key per process, so that seats resume only on the node that holds
    /// them.
    pub secret: Option<String>,
}

impl Default for ResumeSettings {
    fn default() -> Self {
        ResumeSettings { window_ms: 30_000, buffer_frames: 4096, buffer_bytes: 1024 * 1024, secret: None }
    }
}

impl std::fmt::Debug for ResumeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeSettings")
            .field("window_ms", &self.window_ms)
            .field("buffer_frames", &self.buffer_frames)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("secret", &if self.secret.is_some() { "<set>" } else { "<unset>" })
            .finish()
    }
}
