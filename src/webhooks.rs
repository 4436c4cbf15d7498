//! Webhook delivery (PROTOCOL.md section 7; docs/integration.md, "Webhooks"): every node
//! runs one deliverer, which takes events from the store's durable queue and `POST`s them,
//! signed, to `webhooks.urls`.
//!
//! One delivery per event for the whole cluster: a node delivers only the events it has
//! claimed in the store, and a claim is atomic and leased (the lease outlasts an attempt:
//! the per-attempt timeout times the URLs, plus a margin). Only the oldest waiting event of
//! a room can be claimed, so a room's next event waits for the earlier ones' 2xx (or their
//! giving up). A node that dies mid-attempt leaves its claim to run out; another node then
//! attempts the event again (the only case where a receiver sees an id twice without
//! having failed an attempt: it never acknowledged the first).
//!
//! Retries: exponential backoff from `webhooks.retry_initial_ms` (doubling, capped at
//! `retry_max_ms`), each delay shortened by a random jitter of up to half, until the event is
//! `max_age_secs` old; then it is given up (logged, counted) and the room's queue moves on.
//!
//! Must not: decide which events exist or their order (the domain and the store do).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use metrics::{counter, gauge};
use rand::Rng;
use sha2::Sha256;
use signalgrid_actors::ports::Store;
use signalgrid_actors::webhook::{Attempt, ClaimedEvent};
use signalgrid_config::WebhookSettings;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub const DELIVERED: &str = "signalgrid_webhooks_delivered_total";
pub const FAILED_ATTEMPTS: &str = "signalgrid_webhook_attempts_failed_total";
pub const GIVEN_UP: &str = "signalgrid_webhooks_given_up_total";
pub const WAITING: &str = "signalgrid_webhooks_waiting";
pub const OLDEST_AGE: &str = "signalgrid_webhooks_oldest_waiting_seconds";

/// Events claimed (and attempted concurrently) at most per round.
const CLAIM_MAX: usize = 64;
/// Added to the lease beyond the attempts' timeouts.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often the waiting gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// `x-signalgrid-signature` for `body` at Unix second `t`: `t=<t>,v1=<hex HMAC-SHA256(secret,
/// "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The delay before attempt `attempts + 1` (after `attempts` failed ones), jitter included.
pub fn backoff(s: &WebhookSettings, attempts: u32) -> Duration {
    let base = s.retry_initial_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let d = base.min(s.retry_max_ms).max(1);
    let jitter = rand::rng().random_range(0..=d / 2);
    Duration::from_millis(d - jitter)
}

/// A running deliverer; [`WebhookTask::stop`] ends it.
pub struct WebhookTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebhookTask {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Deliverer {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    secret: String,
    /// This process's name on its claims (the node id and a random incarnation: a node
    /// restarted under the same id does not take its earlier run's claims for its own).
    owner: String,
    client: reqwest::Client,
}

/// Starts the deliverer of a node (None when `webhooks.urls` is empty). `stored` wakes it
/// when the node's own events reach the store.
pub fn start(
    store: Arc<dyn Store>,
    settings: &WebhookSettings,
    node_id: &str,
    stored: Arc<Notify>,
) -> Option<WebhookTask> {
    if !settings.enabled() {
        return None;
    }
    let client = match reqwest::Client::builder().timeout(Duration::from_millis(settings.timeout_ms)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook HTTP client could not be built; no deliveries from this node");
            return None;
        }
    };
    let d = Deliverer {
        store,
        settings: settings.clone(),
        secret: settings.secret.clone().unwrap_or_default(),
        owner: format!("{node_id}/{}", uuid::Uuid::new_v4().simple()),
        client,
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(d.run(stopped, stored));
    Some(WebhookTask { stop, task })
}

impl Deliverer {
    fn lease(&self) -> chrono::Duration {
        let per = Duration::from_millis(self.settings.timeout_ms) * self.settings.urls.len() as u32;
        chrono::Duration::from_std(per + LEASE_MARGIN).unwrap_or(chrono::Duration::seconds(60))
    }

    async fn run(self, mut stop: watch::Receiver<bool>, stored: Arc<Notify>) {
        let me = Arc::new(self);
        let poll = Duration::from_millis(me.settings.poll_ms);
        let mut stats_at = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            let woken = stored.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = Utc::now();
            let claimed = match me.store.claim_webhooks(&me.owner, now, now + me.lease(), CLAIM_MAX).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook events could not be claimed; retrying");
                    Vec::new()
                }
            };
            let busy = !claimed.is_empty();
            let mut attempts = tokio::task::JoinSet::new();
            for ev in claimed {
                let me = me.clone();
                attempts.spawn(async move { me.deliver(ev).await });
            }
            while attempts.join_next().await.is_some() {}
            if tokio::time::Instant::now() >= stats_at {
                stats_at = tokio::time::Instant::now() + STATS_EVERY;
                me.report().await;
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = woken => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn report(&self) {
        match self.store.webhook_stats().await {
            Ok(s) => {
                gauge!(WAITING).set(s.waiting as f64);
                let age = s.oldest.map_or(0.0, |t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
                gauge!(OLDEST_AGE).set(age);
            }
            Err(e) => tracing::debug!(error = %e, "webhook queue stats unavailable"),
        }
    }

    /// One attempt at `ev` (to every URL that has not acknowledged it yet), recorded.
    async fn deliver(&self, ev: ClaimedEvent) {
        let t = Utc::now().timestamp();
        let sig = signature(&self.secret, t, &ev.body);
        let mut acked = ev.acked.clone();
        for url in self.settings.urls.iter().filter(|u| !ev.acked.contains(u)) {
            let res = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("x-signalgrid-event-id", &ev.id)
                .header("x-signalgrid-signature", &sig)
                .body(ev.body.clone())
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => acked.push(url.clone()),
                Ok(r) => {
                    counter!(FAILED_ATTEMPTS, "reason" => "status").increment(1);
                    tracing::info!(event = %ev.id, status = r.status().as_u16(), "webhook attempt refused");
                }
                Err(e) => {
                    let reason = if e.is_timeout() { "timeout" } else { "connect" };
                    counter!(FAILED_ATTEMPTS, "reason" => reason).increment(1);
                    tracing::info!(event = %ev.id, error = %e, "webhook attempt failed");
                }
            }
        }
        let now = Utc::now();
        let attempt = if self.settings.urls.iter().all(|u| acked.contains(u)) {
            counter!(DELIVERED).increment(1);
            Attempt::Delivered
        } else if now - ev.created_at >= max_age(&self.settings) {
            counter!(GIVEN_UP).increment(1);
            tracing::error!(event = %ev.id, room = %ev.room, attempts = ev.attempts + 1, "webhook event given up");
            Attempt::GiveUp
        } else {
            let next_at =
                now + chrono::Duration::from_std(backoff(&self.settings, ev.attempts + 1)).unwrap_or_default();
            Attempt::Retry { next_at: next_at.min(ev.created_at + max_age(&self.settings)), acked }
        };
        if let Err(e) = self.store.webhook_attempted(&ev.id, &self.owner, attempt, now).await {
            // The claim runs out and the event is attempted again.
            tracing::warn!(event = %ev.id, error = %e, "webhook attempt not recorded");
        }
    }
}

fn max_age(s: &WebhookSettings) -> chrono::Duration {
    chrono::Duration::seconds(s.max_age_secs.min(i64::MAX as u64) as i64)
}

/// `createdAt` of an event as `DateTime` (tests and tools).
pub fn parse_created_at(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_stripe_style() {
        // HMAC-SHA256("secret", "1.{}"), computed independently with Python's hmac module.
        assert_eq!(
            signature("secret", 1, "{}"),
            "t=1,v1=1122767b193110cfec322b6f199b599edbf608ed087f2d27afb0b97d99523908"
        );
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let s = WebhookSettings { retry_initial_ms: 1000, retry_max_ms: 5000, ..WebhookSettings::default() };
        for _ in 0..100 {
            let first = backoff(&s, 1).as_millis();
            assert!((500..=1000).contains(&first), "{first}");
            let third = backoff(&s, 3).as_millis();
            assert!((2000..=4000).contains(&third), "{third}");
            let late = backoff(&s, 40).as_millis();
            assert!((2500..=5000).contains(&late), "{late}");
        }
    }
}
