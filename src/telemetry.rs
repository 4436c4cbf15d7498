//! Process-wide observability: the `tracing` subscriber (text or JSON, level from settings)
//! and the Prometheus recorder behind the `metrics` facade (installed once per process).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use signalgrid_config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

use crate::redact::{RedactingStderr, Redactor};

/// Installs the log subscriber, writing to stderr through `redactor` (no secret reaches the
/// output, at any level, from any crate). Errors if the level filter does not parse.
pub fn init_logs(cfg: &LogSettings, redactor: Redactor) -> Result<(), String> {
    let filter = EnvFilter::try_new(&cfg.level).map_err(|e| format!("invalid log.level {:?}: {e}", cfg.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr(redactor));
    let res = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    res.map_err(|e| e.to_string())
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
