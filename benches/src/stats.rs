//! Latency histograms, error counts, the server's memory, and the report.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded (larger values are clamped): 60 s, in ns.
const MAX_NS: u64 = 60_000_000_000;
/// Shards of the shared relay histogram (readers pick one by index).
const SHARDS: usize = 16;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, MAX_NS, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1_000, MAX_NS));
}

/// A histogram many tasks record into, in shards to keep lock contention low.
pub struct Shared {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    pub fn new() -> Shared {
        Shared { shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect() }
    }

    /// Records a batch of values into shard `i % SHARDS`.
    pub fn record_all(&self, i: usize, values: &[u64]) {
        let mut h = self.shards[i % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
        for &v in values {
            record(&mut h, v);
        }
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

/// Percentiles in milliseconds (µs resolution).
#[derive(Debug, Serialize, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_ms: Option<f64>,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>, with_p999: bool) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: with_p999.then(|| ms(h.value_at_quantile(0.999))),
            max_ms: ms(h.max()),
        }
    }

    pub fn of_values(values: &[u64]) -> Latency {
        let mut h = histogram();
        for &v in values {
            record(&mut h, v);
        }
        Latency::of(&h, false)
    }
}

/// Error codes seen, with counts.
#[derive(Debug, Default)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, code: impl Into<String>, n: u64) {
        if n > 0 {
            *self.0.entry(code.into()).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: Errors) {
        for (k, v) in other.0 {
            self.add(k, v);
        }
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// VmRSS of several processes added up, in KiB; None when `pids` is empty or one cannot
/// be read (a node that exited).
pub fn rss_kib_sum(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// The run's result, printed as one JSON object.
#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub mode: &'static str,
    pub urls: Vec<String>,
    pub connections_requested: usize,
    pub connections: usize,
    pub pairs: usize,
    pub setup_secs: f64,
    pub open_secs: f64,
    pub connect_latency: Latency,
    pub join_latency: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<crate::resume::ResumeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_cpu: Option<CpuReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<crate::calls::CallsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<crate::webhook::WebhookReport>,
    pub errors: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_connection: Option<f64>,
}

/// The relay phase's figures.
#[derive(Debug, Serialize, Default)]
pub struct RelayReport {
    /// Target total msgs/s (0: as fast as the window allows).
    pub target_rate: u64,
    pub window: u64,
    /// Size of one client frame (a 7-digit seq, an 11-digit stamp).
    pub frame_bytes: usize,
    pub duration_secs: f64,
    pub sent: u64,
    pub delivered: u64,
    /// Refused by the server with an `error` frame (counted under `errors` too).
    pub refused: u64,
    /// Sent, neither delivered nor refused by the end of the drain.
    pub lost: u64,
    /// Delivered messages per second over the sending period.
    pub delivered_per_sec: f64,
    pub sent_per_sec: f64,
    pub latency: Latency,
}

/// CPU time (user + system) of a process so far, in seconds; `pid` None means this process.
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// CPU time (user + system) of several processes added up, in seconds; None when `pids` is
/// empty or one cannot be read (a node that exited: its time is gone with it).
pub fn cpu_secs_sum(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_secs(Some(*p))).sum()
}

/// Busy CPU time of the whole machine so far (all but idle and iowait), in seconds.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?;
    Some(busy as f64 / 100.0)
}

/// Cores used during the relay phase (CPU seconds / wall seconds).
#[derive(Debug, Serialize, Default)]
pub struct CpuReport {
    /// The whole machine, softirq (loopback TCP) and other processes included.
    pub machine_cores: f64,
    pub generator_cores: f64,
    /// The `--server-pid` processes together (with `--server-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cores: Option<f64>,
    /// CPU time of the `--server-pid` processes over the relay phase (utime + stime from
    /// /proc/PID/stat, in 10 ms ticks) divided by the messages delivered, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_us_per_delivered: Option<f64>,
    /// How many `--server-pid`s were summed.
    pub server_pids: usize,
}
