//! Process-wide observability: the `tracing` subscriber (text or JSON, level from settings)
//! and the Prometheus recorder behind the `metrics` facade (installed once per process).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use signalgrid_actors::telemetry as node;
use signalgrid_cluster::nats::metrics as cluster;
use signalgrid_config::{LogFormat, LogSettings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::redact::{RedactingStderr, Redactor};

/// Installs the log subscriber, writing to stderr through `redactor` (no secret reaches the
/// output, at any level, from any crate). Errors if the level filter does not parse.
pub fn init_logs(cfg: &LogSettings, redactor: Redactor) -> Result<(), String> {
    let filter = EnvFilter::try_new(&cfg.level).map_err(|e| format!("invalid log.level {:?}: {e}", cfg.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr(redactor));
    let res = match cfg.format {
        LogFormat::Text => builder.finish().with(no_payload_traces()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).finish().with(no_payload_traces()).try_init(),
    };
    res.map_err(|e| e.to_string())
}

/// Libraries whose `trace` lines hold whole payloads: the WebSocket library (every frame:
/// clients' SDP and ICE candidates, with their addresses, and a client's junk frames, so a
/// client could inflate the log at will) and the NATS client (every message between nodes:
/// relayed frames and room membership, with display names).
const PAYLOAD_TRACERS: [&str; 2] = ["tungstenite", "async_nats"];

/// Drops those libraries' `trace` lines, whatever `log.level` says. Our own lines say what
/// happened to a frame or message without its contents.
fn no_payload_traces<S: tracing::Subscriber>() -> impl tracing_subscriber::Layer<S> {
    tracing_subscriber::filter::filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE && PAYLOAD_TRACERS.iter().any(|t| meta.target().contains(t)))
    })
}

/// The process's metrics handle; the first call installs the recorder and its upkeep task.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets =
                [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            announce();
            let h = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    h.run_upkeep();
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}

/// Every metric a node exports, with its help text: counters, gauges, histograms. Docs:
/// docs/operations.md (Metrics) and docs/cluster.md (Cluster metrics).
const COUNTERS: &[(&str, &str)] = &[
    (node::MESSAGES_RELAYED, "Offers, answers and ICE candidates relayed, by event"),
    (node::WS_EVENTS, "join-room, leave-room and call-ended handled, by event"),
    (node::WS_ERRORS, "error frames sent to WebSocket clients, by code"),
    (node::SLOW_CONSUMERS, "Clients closed because their outbound queue overflowed"),
    (node::ROOM_RESTARTS, "Room actors restarted after a failure"),
    (node::REST_REQUESTS, "REST requests, by route and status"),
    (node::AUTH_FAILURES, "Refused tokens, by edge (rest, ws)"),
    (
        node::RATE_LIMITED,
        "Requests, frames or WebSocket upgrades refused by a rate limit, by edge (rest, ws, ws_connect)",
    ),
    (node::RESUMES, "Resume attempts, by result (resumed, lost, or the RESUME_FAILED reason)"),
    (node::REPLAYED, "Frames replayed to resumed sockets"),
    (node::BUFFER_OVERFLOWS, "Seats that dropped a frame they owed (their buffer's bounds)"),
    (cluster::FORWARDS_SENT, "Frames forwarded to other nodes over NATS"),
    (cluster::FORWARDS_RECEIVED, "Frames received from other nodes over NATS"),
    (cluster::NATS_ERRORS, "NATS operations that failed"),
    (cluster::NATS_RECONNECTS, "Reconnections to NATS"),
    (cluster::CAS_RETRIES, "Membership compare-and-set retries"),
    (cluster::DEAD_NODES, "Members removed because their node stopped answering"),
    (cluster::PUBLISH_DROPPED, "Frames for other nodes dropped, by reason (queue_full, disconnected, stale)"),
    (crate::conn_caps::CONNECTIONS_REFUSED, "Connections refused at accept by a cap, by reason (per_ip, total)"),
    (crate::webhooks::DELIVERED, "Webhook events delivered (every URL answered 2xx) by this node"),
    (
        crate::webhooks::FAILED_ATTEMPTS,
        "Webhook POSTs that got no 2xx, by reason (status, timeout, connect); each is retried",
    ),
    (crate::webhooks::GIVEN_UP, "Webhook events given up after webhooks.max_age_secs"),
    (
        signalgrid_actors::webhook::DROPPED,
        "Webhook events not queued: the node's queue was full, or webhooks.max_waiting events waited",
    ),
];
const GAUGES: &[(&str, &str)] = &[
    (node::CONNECTIONS, "Open WebSockets on this node"),
    (node::ROOMS, "Rooms with members on this node"),
    (node::SEATS_AWAY, "Seats on this node waiting for their client to resume"),
    (crate::store::outbox::PENDING_GAUGE, "Call records waiting in the outbox for MongoDB"),
    (cluster::PUBLISH_QUEUE_BYTES, "Bytes waiting in the publish queue for NATS"),
    (crate::conn_caps::CONNECTIONS_OPEN, "Open HTTP connections, WebSockets included"),
    (crate::webhooks::WAITING, "Webhook events waiting for delivery in the store (the whole cluster's)"),
    (crate::webhooks::OLDEST_AGE, "Age in seconds of the oldest webhook event waiting for delivery"),
];
const HISTOGRAMS: &[(&str, &str)] = &[
    (node::RELAY_LATENCY, "From reading a relay frame to queueing it for its target"),
    (node::REST_LATENCY, "REST handling time, by route"),
    (node::RESUME_LATENCY, "From a resume request to the seat's new socket attached"),
];

/// Describes every metric and registers it at zero (without labels), so `/metrics` lists
/// each from the start: dashboards and alert rules (deploy/grafana, deploy/prometheus) then
/// see 0 instead of no data on a node that has not yet used one.
fn announce() {
    for &(name, help) in COUNTERS {
        describe_counter!(name, help);
        counter!(name).increment(0);
    }
    for &(name, help) in GAUGES {
        describe_gauge!(name, help);
        gauge!(name).increment(0.0);
    }
    // Described only: a node without NATS must not report itself disconnected.
    describe_gauge!(cluster::CONNECTED, "1 while the node's NATS connection is up, 0 while it is lost");
    for &(name, help) in HISTOGRAMS {
        describe_histogram!(name, Unit::Seconds, help);
        let _registered = histogram!(name);
    }
}
