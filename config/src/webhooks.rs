//! `[webhooks]`: signed event deliveries to the platform's backend (PROTOCOL.md section 7).

use serde::Deserialize;

/// Where webhook events go, how they are signed, and how long they are retried.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Receivers: every event is `POST`ed to each (an event counts as delivered once every
    /// URL answered 2xx). Empty (the default): no events are queued.
    pub urls: Vec<String>,
    /// Key of the HMAC-SHA256 in `x-signalgrid-signature`; required when `urls` is set.
    pub secret: Option<String>,
    /// How long an event is retried, counted from its `createdAt`, in seconds. Default
    /// 86,400 (24 hours). Past it, the event is given up (and the room's next one goes).
    pub max_age_secs: u64,
    /// The first retry's delay, in milliseconds (default 1,000); each later one doubles, up
    /// to `retry_max_ms`, each with a random jitter of up to half its length taken off.
    pub retry_initial_ms: u64,
    /// The longest delay between two attempts, in milliseconds. Default 60,000.
    pub retry_max_ms: u64,
    /// One attempt's time limit (connect, send, answer), in milliseconds. Default 10,000.
    pub timeout_ms: u64,
    /// Most events waiting in the store for delivery; events past it are dropped (and
    /// logged, and counted). Default 100,000.
    pub max_waiting: u64,
    /// How often a node looks in the store for events due (its own events wake it at once),
    /// in milliseconds. Default 250.
    pub poll_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            urls: Vec::new(),
            secret: None,
            max_age_secs: 86_400,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            timeout_ms: 10_000,
            max_waiting: 100_000,
            poll_ms: 250,
        }
    }
}

impl WebhookSettings {
    /// Whether events are produced at all.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &self.urls.iter().map(|u| crate::redact_url(u)).collect::<Vec<_>>())
            .field("secret", &if self.secret.is_some() { "<set>" } else { "<unset>" })
            .field("max_age_secs", &self.max_age_secs)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_waiting", &self.max_waiting)
            .field("poll_ms", &self.poll_ms)
            .finish()
    }
}
